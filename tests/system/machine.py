# SPDX-License-Identifier: MIT
"""The booted system: vmctl's VM (QEMU, QMP, serial log, save and restore)
booting the image's own kernel and initramfs with its disk on virtio,
QEMU's user network forwarding two host ports to the guest's TLS servers,
and the agent's report (guest/sysimg-agent) read from the serial console.
"""

import re
import types

from base_image import vmctl

AGENT_RX = re.compile(r'^SYSIMG: (\S+) ?(.*?)\r?$', re.M)
KV_RX = re.compile(r'(\w+)=("[^"]*"|\S+)')
GUEST_PORTS = (443, 4443)	# nginx with the provider, the control


class SystemVM(vmctl.VM):
	"""One QEMU process booting the system image. disk is a qcow2 path
	that every clone reuses (its backing file changes, the command line
	does not); ports are the host ports for GUEST_PORTS."""

	def __init__(self, kernel, initrd, disk, ports, workdir, name,
		     append='', mem=1024, incoming=None):
		# vmctl.VM's kernel: the image, no memory floor of its own
		super().__init__(types.SimpleNamespace(image=kernel, min_mem=0),
				 initrd, workdir, name, accel='tcg',
				 append=append, mem=mem, incoming=incoming)
		self.disk = disk
		self.ports = ports

	def cmdline(self):
		fwd = ','.join('hostfwd=tcp:127.0.0.1:%d-:%d' % (h, g)
			       for h, g in zip(self.ports, GUEST_PORTS))
		words = ['root=/dev/vda', 'rw', 'console=ttyS0', 'panic=-1',
			 'systemd.show_status=false']
		if self.append:
			words.append(self.append)
		return [vmctl.qemu_binary(), '-machine', 'q35', '-accel',
			self.accel, '-cpu', 'max', '-m', str(self.mem),
			'-smp', '1', '-nographic', '-no-reboot', '-nodefaults',
			'-kernel', self.kernel.image, '-initrd', self.initrd,
			'-append', ' '.join(words),
			'-drive', 'file=%s,if=virtio,format=qcow2' % self.disk,
			'-netdev', 'user,id=net0,' + fwd,
			'-device', 'virtio-net-pci,netdev=net0',
			'-device', 'vmgenid,guid=' + self.guid,
			'-chardev', 'file,id=con,path=' + self.logpath,
			'-serial', 'chardev:con',
			'-monitor', 'none',
			'-qmp', 'unix:%s,server=on,wait=off' % self.qmp_path]

	def restore_from(self, path, name):
		return SystemVM(self.kernel.image, self.initrd, self.disk,
				self.ports, self.workdir, name, self.append,
				self.mem, incoming=path)


def parse_kv(text):
	return {k: v.strip('"') for k, v in KV_RX.findall(text)}


class Report:
	"""The agent's lines, by kind: report.lines['proc'] is a list of
	dicts, one per process that maps libvmgenid."""

	def __init__(self, text):
		self.lines = {}
		self.raw = {}
		for kind, rest in AGENT_RX.findall(text):
			self.raw.setdefault(kind, []).append(rest)
			self.lines.setdefault(kind, []).append(parse_kv(rest))

	def first(self, kind):
		got = self.lines.get(kind)
		return got[0] if got else {}

	def last(self, kind):
		got = self.lines.get(kind)
		return got[-1] if got else {}

	def status_text(self, kind='status'):
		return '\n'.join(r.lstrip('| ') for r in self.raw.get(kind, []))


# a process line of `vmgenid status`: PID, comm (up to 16 characters,
# maybe with spaces), the source its mapping names
STATUS_PROC_RX = re.compile(r'^\s*(\d+) (.*?)\s+(not initialised|\S+)'
			    r'(?:  <- NOT PROTECTED)?$', re.M)


def status_procs(text):
	"""{pid: source} from `vmgenid status`'s process list."""
	return {pid: src for pid, _, src in STATUS_PROC_RX.findall(text)}


def boot(vm, timeout):
	"""Start vm and wait for the agent's report; return it."""
	vm.start()
	vm.wait_for(r'^SYSIMG: ready', timeout)
	return Report(vm.read_log())


def timeline(report):
	"""(module load, first service process that maps libvmgenid, its
	name) in seconds since boot, from dmesg and /proc/PID/stat."""
	mod = report.last('module').get('dmesg_s')
	mod = float(mod) if mod and mod != '?' else None
	procs = [p for p in report.lines.get('proc', [])
		 if p.get('unit', '').endswith('.service')]
	first = min(procs, key=lambda p: float(p['start_s']), default=None)
	if not first:
		return mod, None, None
	return mod, float(first['start_s']), '%s (%s)' % (first['unit'],
							  first['comm'])
