# SPDX-License-Identifier: MIT
"""One QEMU process and its QMP socket: start, serial log, control port,
save and restore; QEMU killed however the harness ends; the choice of
accelerator."""

import contextlib
import ctypes
import fcntl
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from .common import (BOOT_MARKER, KVM_PROBE_TIMEOUT, HarnessError, Skip,
		     log, phase, run)
from .initramfs import build_initramfs


# ------------------------------------------------------------------ QMP ---

class QMP:
	"""A minimal QMP client: one command at a time, events kept apart."""

	def __init__(self, path, deadline):
		self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		while True:
			try:
				self.sock.connect(path)
				break
			except (FileNotFoundError, ConnectionRefusedError):
				if time.monotonic() > deadline:
					raise HarnessError('QMP socket %s never '
							   'came up' % path)
				time.sleep(0.02)
		self.buf = b''
		self.events = []
		self._recv(deadline)		# greeting
		self.cmd('qmp_capabilities')

	def _recv(self, deadline):
		while b'\n' not in self.buf:
			left = deadline - time.monotonic()
			if left <= 0:
				raise HarnessError('QMP: no answer in time')
			self.sock.settimeout(left)
			try:
				data = self.sock.recv(65536)
			except socket.timeout:
				continue
			if not data:
				raise HarnessError('QMP: connection closed')
			self.buf += data
		line, self.buf = self.buf.split(b'\n', 1)
		return json.loads(line)

	def cmd(self, name, timeout=30, **args):
		msg = {'execute': name}
		if args:
			msg['arguments'] = args
		self.sock.sendall(json.dumps(msg).encode() + b'\n')
		deadline = time.monotonic() + timeout
		while True:
			r = self._recv(deadline)
			if 'event' in r:
				self.events.append(r)
				continue
			if 'error' in r:
				raise HarnessError('QMP %s: %s' %
						   (name, r['error']))
			return r.get('return')

	def close(self):
		with contextlib.suppress(OSError):
			self.sock.close()


# ------------------------------------------------------------------- VM ---

_live = set()


def _kill_all():
	for vm in list(_live):
		vm.kill()


def _on_signal(signum, frame):
	# meson stops a test with SIGTERM: unwind so QEMU gets killed
	raise SystemExit(128 + signum)


def _die_with_parent():
	# QEMU must not outlive a harness that was SIGKILLed
	with contextlib.suppress(Exception):
		ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def qemu_binary():
	q = shutil.which('qemu-system-x86_64')
	if not q:
		raise Skip('qemu-system-x86_64 not found (apt-get install '
			   '--no-install-recommends qemu-system-x86)')
	return q


class VM:
	"""One QEMU process. The serial console (ttyS0) goes to <dir>/<name>.log,
	the control port (ttyS1) to a unix socket, QMP to another."""

	def __init__(self, kernel, initrd, workdir, name, env=None,
		     accel='tcg', append='', mem=512, incoming=None,
		     guid='auto', smp=1):
		self.kernel = kernel
		self.initrd = initrd
		self.name = name
		self.env = dict(env or {})
		self.accel = accel
		self.append = append
		self.mem = max(mem, kernel.min_mem)
		self.workdir = workdir
		self.logpath = os.path.join(workdir, name + '.log')
		self.errpath = os.path.join(workdir, name + '.qemu.log')
		# unix socket paths are limited to 108 bytes: keep them short
		self.sockdir = tempfile.mkdtemp(prefix='vmctl.')
		self.qmp_path = os.path.join(self.sockdir, 'qmp')
		self.ctl_path = os.path.join(self.sockdir, 'ctl')
		self.incoming = incoming
		# 'auto' (QEMU's default): a new ID per QEMU process, so each
		# restore is a new generation; a fixed one simulates a
		# hypervisor that forgets to change it (negative tests)
		self.guid = guid
		self.smp = smp
		self.proc = None
		self.qmp = None
		self.ctl = None
		self.ctlbuf = b''
		self.shell_n = 0	# commands sent to the guest's shell loop
		self.logpos = 0
		self.logtext = ''

	def cmdline(self):
		"""Everything that must be identical between a saved VM and its
		restored clones; -incoming is added on top."""
		words = ['console=ttyS0', 'panic=-1', 'quiet']
		if self.kernel.append:
			words.append(self.kernel.append)
		words += ['%s=%s' % kv for kv in sorted(self.env.items())]
		if self.append:
			words.append(self.append)
		# knobs for every VM of a run, e.g. a shorter fuzz on the extra
		# kernels in CI: VMCTL_APPEND='SYSGENID_FUZZ_SECONDS=15'
		if os.environ.get('VMCTL_APPEND'):
			words.append(os.environ['VMCTL_APPEND'])
		cpu = ['-cpu', 'max']
		return [qemu_binary(), '-machine', 'q35', '-accel', self.accel,
			*cpu, '-m', str(self.mem), '-smp', str(self.smp),
			'-nographic', '-no-reboot', '-nodefaults',
			'-kernel', self.kernel.image, '-initrd', self.initrd,
			'-append', ' '.join(words),
			'-device', 'vmgenid,guid=' + self.guid,
			'-chardev', 'file,id=con,path=' + self.logpath,
			'-serial', 'chardev:con',
			'-chardev', 'socket,id=ctl,path=%s,server=on,wait=off'
			% self.ctl_path,
			'-serial', 'chardev:ctl',
			'-monitor', 'none',
			'-qmp', 'unix:%s,server=on,wait=off' % self.qmp_path]

	def start(self, timeout=30):
		cmd = self.cmdline()
		if self.incoming:
			cmd += ['-incoming', 'exec:cat ' +
				shlex.quote(self.incoming)]
		open(self.logpath, 'w').close()
		self.logpos = 0
		self.logtext = ''
		with open(self.errpath, 'w') as err:
			err.write('# ' + shlex.join(cmd) + '\n')
			err.flush()
			self.proc = subprocess.Popen(
				cmd, stdin=subprocess.DEVNULL, stdout=err,
				stderr=err, preexec_fn=_die_with_parent)
		_live.add(self)
		self.qmp = QMP(self.qmp_path, time.monotonic() + timeout)
		return self

	def alive(self):
		return self.proc is not None and self.proc.poll() is None

	def _qemu_err(self):
		with contextlib.suppress(OSError), open(self.errpath) as f:
			return f.read()[-2000:]
		return ''

	def read_log(self):
		"""The whole serial log so far."""
		with open(self.logpath, 'rb') as f:
			f.seek(self.logpos)
			data = f.read()
		self.logpos += len(data)
		self.logtext += data.decode('utf-8', 'replace')
		return self.logtext

	def wait_for(self, pattern, timeout, start=0):
		"""Wait until the serial log matches pattern (a regex) at or
		after offset start; return the match. Fails early if QEMU
		exits."""
		rx = re.compile(pattern, re.M)
		deadline = time.monotonic() + timeout
		while True:
			alive = self.alive()
			m = rx.search(self.read_log(), start)
			if m:
				return m
			if not alive:
				raise HarnessError(
					'%s: QEMU exited (%s) before %r\n%s' %
					(self.name, self.proc.returncode,
					 pattern, self._qemu_err()))
			if time.monotonic() > deadline:
				raise HarnessError('%s: no %r within %d s' %
						   (self.name, pattern, timeout))
			time.sleep(0.05)

	def wait_exit(self, timeout):
		try:
			return self.proc.wait(timeout)
		except subprocess.TimeoutExpired:
			raise HarnessError('%s: QEMU still running after %d s'
					   % (self.name, timeout)) from None

	# Control channel: the guest's /dev/ttyS1.
	def _ctl_connect(self, timeout=10):
		if self.ctl:
			return
		s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
		deadline = time.monotonic() + timeout
		while True:
			try:
				s.connect(self.ctl_path)
				break
			except (FileNotFoundError, ConnectionRefusedError):
				if time.monotonic() > deadline:
					raise HarnessError('%s: no ctl socket'
							   % self.name)
				time.sleep(0.02)
		self.ctl = s

	def send(self, line):
		"""Send one line to the guest's /dev/ttyS1."""
		self._ctl_connect()
		self.ctl.sendall(line.encode() + b'\n')

	def wait_phase(self, ph, timeout=60, resend_every=15):
		"""Wait until /init says it runs phase ph, which send() gave it.
		Sends the line again every resend_every s until then: once, a
		clone restored on a loaded TCG host never read it (/init still
		in its read of ttyS1 after 180 s, the other clone fine). /init
		skips lines that are not what it waits for, so a repeat that
		was not needed does no harm. Each resend is logged."""
		pattern = r'^vmctl: phase %s\r?$' % re.escape(ph)
		deadline = time.monotonic() + timeout
		while True:
			left = deadline - time.monotonic()
			try:
				return self.wait_for(pattern,
						     max(min(resend_every, left), 0))
			except HarnessError:
				if not self.alive() or left <= resend_every:
					raise
			log('%s: no "vmctl: phase %s" within %d s: sending it '
			    'again' % (self.name, ph, resend_every))
			self.send(ph)

	def recv_line(self, timeout):
		"""One line the guest wrote to /dev/ttyS1."""
		self._ctl_connect()
		deadline = time.monotonic() + timeout
		while b'\n' not in self.ctlbuf:
			left = deadline - time.monotonic()
			if left <= 0:
				raise HarnessError('%s: nothing on ctl within '
						   '%d s' % (self.name, timeout))
			self.ctl.settimeout(left)
			with contextlib.suppress(socket.timeout):
				data = self.ctl.recv(4096)
				if not data:
					raise HarnessError('%s: ctl closed'
							   % self.name)
				self.ctlbuf += data
		line, self.ctlbuf = self.ctlbuf.split(b'\n', 1)
		return line.decode('utf-8', 'replace').rstrip('\r')

	def shell(self, command, timeout=120):
		"""Run a command in a guest booted with VMCTL_SHELL=1; return
		its exit status. Its output is in the serial log."""
		start = len(self.read_log())
		self.shell_n += 1
		self.send(command)
		m = self.wait_for(r'^vmctl: done %d rc=(\d+)' % self.shell_n,
				  timeout, start)
		return int(m.group(1))

	# Save and restore (DESIGN section 8).
	def save(self, path, timeout=120):
		"""Stop the guest, migrate its state into path, quit QEMU."""
		with contextlib.suppress(FileNotFoundError):
			os.unlink(path)
		t0 = time.monotonic()
		self.qmp.cmd('stop')
		# 7.2 caps migration at 128 MiB/s by default; a file is local
		self.qmp.cmd('migrate-set-parameters',
			     **{'max-bandwidth': 8 << 30})
		t1 = time.monotonic()
		self.qmp.cmd('migrate', uri='exec:cat > ' + shlex.quote(path))
		info = self._wait_migration(timeout)
		t2 = time.monotonic()
		self.qmp.cmd('quit')
		self.wait_exit(30)
		self.close()
		ram = info.get('ram', {})
		log('%s saved: stop %.2f s, migrate %.2f s (%.1f MB, QEMU says '
		    '%s ms), quit %.2f s' %
		    (self.name, t1 - t0, t2 - t1,
		     ram.get('transferred', 0) / 1e6, info.get('total-time', '?'),
		     time.monotonic() - t2))

	def _wait_migration(self, timeout):
		deadline = time.monotonic() + timeout
		while True:
			info = self.qmp.cmd('query-migrate')
			st = info.get('status')
			if st == 'completed':
				return info
			if st in ('failed', 'cancelled'):
				raise HarnessError('%s: migration %s\n%s' %
						   (self.name, st,
						    self._qemu_err()))
			if not self.alive():
				raise HarnessError('%s: QEMU exited during '
						   'migration\n%s' %
						   (self.name, self._qemu_err()))
			if time.monotonic() > deadline:
				raise HarnessError('%s: migration not done in '
						   '%d s (%s)' %
						   (self.name, timeout, st))
			time.sleep(0.05)

	def restore_from(self, path, name):
		"""A new VM with the same command line that will load path.
		Call start() then resume() on it."""
		clone = VM(self.kernel, self.initrd, self.workdir, name,
			   self.env, self.accel, self.append, self.mem,
			   incoming=path, guid=self.guid, smp=self.smp)
		# the guest's shell loop goes on counting where it was saved
		clone.shell_n = self.shell_n
		return clone

	def resume(self, timeout=120):
		"""Wait until the incoming state is loaded, then run the guest."""
		self._wait_migration(timeout)
		if self.qmp.cmd('query-status').get('status') != 'running':
			self.qmp.cmd('cont')

	def close(self):
		if self.qmp:
			self.qmp.close()
			self.qmp = None
		if self.ctl:
			with contextlib.suppress(OSError):
				self.ctl.close()
			self.ctl = None
		shutil.rmtree(self.sockdir, ignore_errors=True)

	def kill(self):
		if self.proc and self.proc.poll() is None:
			self.proc.kill()
			with contextlib.suppress(subprocess.TimeoutExpired):
				self.proc.wait(10)
		self.close()
		_live.discard(self)


# ------------------------------------------------------------------ KVM ---

def choose_accel(kernel, cache, workdir):
	"""KVM only if it boots this kernel to /init in a bounded probe; the
	verdict is cached per kernel and QEMU. VMCTL_ACCEL overrides."""
	forced = os.environ.get('VMCTL_ACCEL')
	if forced:
		return forced
	if not os.access('/dev/kvm', os.R_OK | os.W_OK):
		return 'tcg'
	qver = run([qemu_binary(), '--version']).splitlines()[0]
	key = '%s|%s|%s' % (kernel.abi, os.path.basename(kernel.image), qver)
	vpath = os.path.join(cache, 'kvm-verdict.json')
	with open(os.path.join(cache, '.kvm.lock'), 'w') as lockf:
		fcntl.flock(lockf, fcntl.LOCK_EX)
		verdicts = {}
		with contextlib.suppress(OSError, ValueError), \
		     open(vpath) as f:
			verdicts = json.load(f)
		if key in verdicts:
			return verdicts[key]
		initrd = build_initramfs(kernel,
					 os.path.join(workdir, 'probe.cpio.gz'))
		vm = VM(kernel, initrd, workdir, 'kvm-probe', accel='kvm')
		accel = 'tcg'
		with phase('KVM probe (%d s max)' % KVM_PROBE_TIMEOUT):
			try:
				vm.start()
				vm.wait_for('^' + BOOT_MARKER, KVM_PROBE_TIMEOUT)
				accel = 'kvm'
			except HarnessError as e:
				log('KVM unusable: %s' % str(e).splitlines()[0])
			finally:
				vm.kill()
		verdicts[key] = accel
		with open(vpath + '.tmp', 'w') as f:
			json.dump(verdicts, f)
		os.rename(vpath + '.tmp', vpath)
		return accel
