#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Boot a Debian kernel under QEMU with a vmgenid device, run test programs
in it, save it to a file and restore clones from that file.

Library and command line in one file, standard library only. See README.md
next to this file for the guest conventions and the command line.
"""

import argparse
import contextlib
import ctypes
import fcntl
import fnmatch
import glob
import gzip
import hashlib
import json
import lzma
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

SKIP = 77
TCG_BOOT_TIMEOUT = 240		# kernel to /init under TCG takes ~6 s idle
KVM_PROBE_TIMEOUT = 12	# over twice what TCG needs for the same boot
BOOT_MARKER = 'vmctl: booted'
END_MARKER = 'vmctl: end'
FORK_LINE = 'crng reseeded due to virtual machine fork'


class Skip(Exception):
	"""The environment cannot run the VM tests: exit 77 with the reason."""


class HarnessError(Exception):
	"""Something failed that should have worked."""


_t0 = time.monotonic()
_timings = []		# (step, seconds), for the closing summary


def log(msg):
	print('vmctl: [%7.2f] %s' % (time.monotonic() - _t0, msg), flush=True)


@contextlib.contextmanager
def phase(name):
	"""Print how long a step took; the figures go into reports."""
	start = time.monotonic()
	log('%s ...' % name)
	try:
		yield
	finally:
		took = time.monotonic() - start
		_timings.append((name, took))
		log('%s took %.2f s' % (name, took))


def timings():
	"""One line: every step's duration so far and the total."""
	return '; '.join('%s %.1f s' % t for t in _timings) + \
		'; total %.1f s' % (time.monotonic() - _t0)


def run(cmd, timeout=600, **kw):
	"""Run a command, return its stdout; fail with its stderr."""
	try:
		res = subprocess.run(cmd, stdout=subprocess.PIPE,
				     stderr=subprocess.PIPE, text=True,
				     timeout=timeout, **kw)
	except subprocess.TimeoutExpired:
		raise HarnessError('%s: timed out after %d s' %
				   (' '.join(cmd), timeout)) from None
	except FileNotFoundError as e:
		raise HarnessError('%s: %s' % (cmd[0], e)) from None
	if res.returncode != 0:
		raise HarnessError('%s: exit %d\n%s%s' %
				   (' '.join(cmd), res.returncode,
				    res.stdout[-2000:], res.stderr[-2000:]))
	return res.stdout


# ---------------------------------------------------------------- fetch ---

# The kernels a Debian 12 VM may run (DESIGN section 8), by the name that
# --kernel and VMCTL_KERNEL take: how apt names today's ABI of each, and what
# such an ABI looks like (to reuse a cached one when apt is unusable).
#   generic  linux-image-amd64 -> 6.1.0-N-amd64, CONFIG_VMGENID=y
#   cloud    linux-image-cloud-amd64 -> 6.1.0-N-cloud-amd64, no vmgenid
#            driver at all (# CONFIG_VIRT_DRIVERS is not set)
#   6.12     the newest linux-image-6.12.N+deb12-amd64 in Debian 12's
#            archive (bookworm's security and updates suites carry it)
#   debug    not from apt: Debian 12's linux-source-6.1 built with lockdep,
#            KASAN and kmemleak by debug_kernel.py (DESIGN section 12),
#            vmgenid a module that /init loads unless VMGENID_DRIVER=none
KERNELS = {
	'generic': ('linux-image-amd64', r'\d+\.\d+\.\d+-\d+-amd64'),
	'cloud': ('linux-image-cloud-amd64', r'\d+\.\d+\.\d+-\d+-cloud-amd64'),
	'6.12': (None, r'6\.12\.\d+\+deb12-amd64'),
	'debug': ('debug', r'\d+\.\d+\.\d+-vmgenid-debug'),
}
# The ones a Debian 12 system installs from apt (the system test's)
DEBIAN_KERNELS = [n for n, (meta, _) in KERNELS.items() if meta != 'debug']
DEFAULT_KERNEL = 'generic'	# the quickest: a PVH vmlinux boots in 3-6 s


def kernel_name(name=None):
	"""The kernel to use: name if given, else $VMCTL_KERNEL, else
	generic."""
	name = name or os.environ.get('VMCTL_KERNEL') or DEFAULT_KERNEL
	if name not in KERNELS:
		raise HarnessError('unknown kernel %r (VMCTL_KERNEL or --kernel: '
				   'one of %s)' % (name, ', '.join(KERNELS)))
	return name


class Kernel:
	"""An unpacked Debian kernel: image, module headers, busybox."""

	def __init__(self, root, abi, name=None):
		self.root = root
		self.abi = abi
		self.name = name or next(
			(n for n, (_, rx) in KERNELS.items()
			 if re.fullmatch(rx, abi)), abi)
		self.vmlinuz = os.path.join(root, 'boot', 'vmlinuz-' + abi)
		self.kdir = os.path.join(root, 'usr', 'src',
					 'linux-headers-' + abi)
		self.busybox = os.path.join(root, 'bin', 'busybox')
		self.vmlinux = os.path.join(root, 'boot', 'vmlinux-' + abi)
		# The debug kernel's: modules of its own for the initramfs
		# ({name: .ko}), the guest memory it needs at least (MB) and
		# kernel command-line words of its own.
		self.extra_modules = {}
		self.min_mem = 0
		self.append = ''
		# whether its vmlinux boots through the PVH entry
		self.pvh = True
		# how much slower than a production kernel it runs: the
		# harness's waits and /init's program timeout scale by it
		self.slowdown = 1

	@property
	def image(self):
		"""What QEMU boots: the uncompressed vmlinux through its PVH
		entry when we have it (TCG takes 3-5 s to boot it against 15-25
		s for the xz bzImage, most of which the decompressor spends);
		VMCTL_BZIMAGE=1 boots the bzImage as a boot loader would. The
		cloud kernel's bzImage is LZ4 (no vmlinux is unpacked from it)
		and boots in about 3 s as it is."""
		if os.environ.get('VMCTL_BZIMAGE') != '1' and self.pvh and \
		   os.path.exists(self.vmlinux):
			return self.vmlinux
		return self.vmlinuz

	@property
	def boot_method(self):
		return 'PVH vmlinux' if self.image == self.vmlinux else 'bzImage'

	def cc(self):
		"""The compiler the headers were configured with (gcc-12 for
		every Debian 12 kernel so far), from CONFIG_CC_VERSION_TEXT;
		Debian's headers set CC to the same name, so make uses it."""
		conf = os.path.join(self.kdir, 'include', 'config', 'auto.conf')
		with open(conf) as f:
			m = re.search(r'^CONFIG_CC_VERSION_TEXT="?(\S+)', f.read(),
				      re.M)
		if not m:
			raise HarnessError('%s: no CONFIG_CC_VERSION_TEXT' % conf)
		return m.group(1)

	def complete(self):
		return all(os.path.exists(p) for p in
			   (self.vmlinuz, self.kdir, self.busybox,
			    os.path.join(self.root, '.complete')))


def _apt_update_once(state):
	if state.get('updated'):
		return False
	state['updated'] = True
	log('apt-get update (package lists look stale or missing)')
	try:
		run(['apt-get', 'update'], timeout=300)
	except HarnessError as e:
		log('apt-get update failed: %s' % e)
	return True


def _apt_show(pkg):
	"""The candidate version's control fields of a package."""
	out = run(['apt-cache', 'show', '--no-all-versions', pkg])
	fields = {}
	key = None
	for line in out.splitlines():
		if not line.strip():
			break
		if line[0] in ' \t' and key:
			fields[key] += ' ' + line.strip()
			continue
		key, _, val = line.partition(':')
		fields[key] = val.strip()
	return fields


def _has_candidate(pkgs):
	"""The names among pkgs that apt can install (a Candidate version)."""
	out = run(['apt-cache', 'policy'] + list(pkgs))
	return set(re.findall(r'^(\S+):\n\s+Installed:.*\n\s+Candidate:\s*'
			      r'(?!\(none\))\S+', out, re.M))


def _newest_612():
	"""The newest linux-image-6.12.N+deb12-amd64 that apt offers."""
	names = [n for n in run(['apt-cache', 'pkgnames',
				 'linux-image-6.12.']).split()
		 if re.fullmatch(r'linux-image-' + KERNELS['6.12'][1], n)]
	if not names:
		return None
	names = sorted(_has_candidate(names),
		       key=lambda n: int(re.search(r'6\.12\.(\d+)', n)
					.group(1)))
	return names[-1][len('linux-image-'):] if names else None


def kernel_abi(apt_state, name=DEFAULT_KERNEL):
	"""The ABI of kernel name today, e.g. 6.1.0-57-amd64 for generic."""
	meta, rx = KERNELS[name]
	while True:
		try:
			if meta is None:
				abi = _newest_612()
				if abi:
					return abi
			else:
				out = run(['apt-cache', 'depends', meta])
				m = re.search(r'^\s*Depends:\s*linux-image-(%s)\s*$'
					      % rx, out, re.M)
				if m:
					return m.group(1)
		except HarnessError:
			pass
		if not _apt_update_once(apt_state):
			raise Skip('apt-cache does not know %s' %
				   (meta or 'linux-image-6.12.*+deb12-amd64'))


def _apt_lists_key():
	"""A digest of what apt answers from: the package lists, sources and
	pins. Same digest, same answer; apt-cache itself takes 1-4 s a call
	here (no pkgcache.bin), several calls per test."""
	parts = []
	for pattern in ('/var/lib/apt/lists/*', '/etc/apt/sources.list',
			'/etc/apt/sources.list.d/*', '/etc/apt/preferences',
			'/etc/apt/preferences.d/*'):
		for path in sorted(glob.glob(pattern)):
			with contextlib.suppress(OSError):
				st = os.stat(path)
				if stat.S_ISREG(st.st_mode):
					parts.append('%s %d %d' % (
						path, st.st_size, st.st_mtime_ns))
	return hashlib.sha256('\n'.join(parts).encode()).hexdigest()


def _resolve_abi(cache, name, apt_state):
	"""kernel_abi(), remembered in the cache while the apt lists stay
	the same."""
	memo = os.path.join(cache, 'abi-%s.json' % name)
	key = _apt_lists_key()
	with contextlib.suppress(OSError, ValueError), open(memo) as f:
		got = json.load(f)
		if got.get('apt') == key and got.get('abi'):
			return got['abi']
	abi = kernel_abi(apt_state, name)
	# an apt-get update inside kernel_abi() changed the lists: digest again
	with open(memo + '.tmp', 'w') as f:
		json.dump({'apt': _apt_lists_key(), 'abi': abi}, f)
	os.rename(memo + '.tmp', memo)
	return abi


def common_headers(abi):
	"""The common headers package of an ABI's headers: the cloud
	kernel's use the same one as the generic kernel of its version."""
	return 'linux-headers-%s-common' % re.sub(r'(-cloud)?-amd64$', '', abi)


def _header_deps(abi):
	"""(common package, kbuild package=version) from the headers' Depends."""
	deps = _apt_show('linux-headers-' + abi).get('Depends', '')
	common = kbuild = None
	for dep in deps.split(','):
		dep = dep.split('|')[0].strip()
		m = re.match(r'(\S+)\s*(?:\(\s*[<>=]+\s*([^)\s]+)\s*\))?', dep)
		if not m:
			continue
		name, ver = m.group(1), m.group(2)
		if name.startswith('linux-headers-') and \
		   name.endswith('-common'):
			common = name
		elif name.startswith('linux-kbuild-'):
			kbuild = name + ('=' + ver if ver else '')
	expect = common_headers(abi)
	if common != expect:
		raise HarnessError('linux-headers-%s depends on %s, expected %s'
				   % (abi, common, expect))
	if not kbuild:
		raise HarnessError('linux-headers-%s: no linux-kbuild in %r'
				   % (abi, deps))
	return common, kbuild


def _apt_download(pkgs, dest, apt_state):
	# Downloading into a root-owned directory makes apt warn that its
	# sandbox user cannot write there; the download is fine as root.
	cmd = ['apt-get', 'download', '-o', 'APT::Sandbox::User=root'] + pkgs
	while True:
		try:
			run(cmd, cwd=dest, timeout=300)
			return
		except HarnessError as e:
			if not _apt_update_once(apt_state):
				raise Skip('apt-get download failed: %s' % e)


def _rewrite_headers_makefile(kernel):
	"""The arch headers include the common Makefile by the absolute path
	it has when installed; point that one include at our copy, relative
	to the including Makefile so that the cache can move."""
	mk = os.path.join(kernel.kdir, 'Makefile')
	with open(mk) as f:
		text = f.read()
	pat = re.compile(r'^include[ \t]+/usr/src/(linux-headers-\S+-common)/'
			 r'Makefile[ \t]*$', re.M)
	m = pat.search(text)
	if not m:
		raise HarnessError('%s: no include of the common Makefile' % mk)
	common = os.path.join(kernel.root, 'usr', 'src', m.group(1))
	if not os.path.isfile(os.path.join(common, 'Makefile')):
		raise HarnessError('%s: missing' % common)
	text = pat.sub('include $(dir $(lastword $(MAKEFILE_LIST)))../%s/'
		       'Makefile' % m.group(1), text)
	with open(mk, 'w') as f:
		f.write(text)


def _extract_vmlinux(kernel):
	"""Unpack the ELF kernel from the bzImage, if it has a PVH entry (QEMU
	can load it directly then) and is xz-compressed (Debian's choice)."""
	config = os.path.join(kernel.root, 'boot', 'config-' + kernel.abi)
	with contextlib.suppress(OSError), open(config) as f:
		if 'CONFIG_PVH=y' not in f.read().split('\n'):
			return
	with open(kernel.vmlinuz, 'rb') as f:
		data = f.read()
	at = data.find(b'\xfd7zXZ\x00')
	if at < 0:
		log('bzImage not xz-compressed: booting it as it is')
		return
	try:
		elf = lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(data[at:])
	except lzma.LZMAError as e:
		log('cannot unpack the bzImage (%s): booting it as it is' % e)
		return
	if elf[:4] != b'\x7fELF':
		return
	with open(kernel.vmlinux + '.tmp', 'wb') as f:
		f.write(elf)
	os.rename(kernel.vmlinux + '.tmp', kernel.vmlinux)


def _fetch_debug(cache):
	"""The debug kernel: built by debug_kernel.py from Debian 12's
	linux-source-6.1 (the first time: about an hour on 2 busy cores, so
	CI builds it before the tests), plus busybox-static."""
	here = os.path.dirname(os.path.abspath(__file__))
	if here not in sys.path:
		sys.path.insert(0, here)
	import debug_kernel
	try:
		info = debug_kernel.build(cache, log)
	except debug_kernel.Missing as e:
		raise Skip('debug kernel: %s' % e) from None
	except debug_kernel.BuildError as e:
		raise HarnessError('debug kernel: %s' % e) from None
	kernel = Kernel(info['root'], info['abi'], 'debug')
	kernel.extra_modules = {'vmgenid': os.path.join(
		kernel.root, 'lib', 'modules', 'vmgenid.ko')}
	# KASAN's shadow is an eighth of memory, kmemleak and lockdep keep
	# their own tables: 512 MB (the others' size) is tight
	kernel.min_mem = 1024
	# lockdep and KASAN reports are long: keep them all until /init
	# greps the log (the default 128 KB ring wraps during the fuzz)
	kernel.append = 'log_buf_len=8M'
	# Its IO-APIC timer check times out under TCG on a busy host and
	# panics ("IO-APIC + timer doesn't work!"); KVM guests skip it too
	kernel.append += ' no_timer_check'
	# Its vmlinux has the PVH note, but QEMU exits at once when it boots
	# it that way (before any console output; not investigated): the
	# gzip bzImage boots in about 18 s under TCG
	kernel.pvh = False
	# KASAN, lockdep and kmemleak: 2-4 times slower under TCG (the ABI
	# test took 200-390 s against 60-90 s on generic, on a busy host)
	kernel.slowdown = 3
	kernel.append += ' VMCTL_PROG_TIMEOUT=%d' % (240 * kernel.slowdown)
	base = os.path.dirname(kernel.root)
	with open(os.path.join(base, '.busybox.lock'), 'w') as lockf:
		fcntl.flock(lockf, fcntl.LOCK_EX)
		if not kernel.complete():
			debs = os.path.join(base, 'debs')
			shutil.rmtree(debs, ignore_errors=True)
			os.makedirs(debs)
			_apt_download(['busybox-static'], debs, {})
			for deb in os.listdir(debs):
				run(['dpkg-deb', '-x', os.path.join(debs, deb),
				     kernel.root])
			shutil.rmtree(debs, ignore_errors=True)
			with open(os.path.join(kernel.root, '.complete'),
				  'w') as f:
				f.write('debug kernel %s + busybox-static\n'
					% info['key'])
	if not kernel.complete():
		raise HarnessError('debug kernel incomplete in ' + base)
	log('kernel debug (%s): %s, built in %d s' %
	    (kernel.abi, base, info['build_seconds']))
	return kernel


def vmgenid_driver_loaded(kernel, append=''):
	"""Whether the guest will have a vmgenid driver: the kernel's own
	on generic and 6.12, none on cloud; on the debug kernel the module
	that /init loads unless VMGENID_DRIVER=none (the last such word of
	append and $VMCTL_APPEND)."""
	if kernel.name != 'debug':
		return kernel.name != 'cloud'
	words = (append + ' ' + os.environ.get('VMCTL_APPEND', '')).split()
	want = [w.split('=', 1)[1] for w in words
		if w.startswith('VMGENID_DRIVER=')]
	return not want or want[-1] != 'none'


def fetch(cache, name=None):
	"""Download and unpack a kernel (name: generic, cloud or 6.12; by
	default $VMCTL_KERNEL, else generic), its headers, kbuild and
	busybox-static into cache/<abi>/root, once; later calls reuse it.
	The debug kernel is built instead (_fetch_debug)."""
	name = kernel_name(name)
	os.makedirs(cache, exist_ok=True)
	if name == 'debug':
		return _fetch_debug(cache)
	apt_state = {}
	abi = None
	try:
		abi = _resolve_abi(cache, name, apt_state)
	except Skip:
		# Offline: any complete cache of this kernel will do.
		for d in sorted(os.listdir(cache), reverse=True):
			if not re.fullmatch(KERNELS[name][1], d):
				continue
			k = Kernel(os.path.join(cache, d, 'root'), d, name)
			if k.complete():
				log('apt unusable, reusing cached kernel ' + d)
				return k
		raise
	base = os.path.join(cache, abi)
	os.makedirs(base, exist_ok=True)
	kernel = Kernel(os.path.join(base, 'root'), abi, name)
	# Tests run in parallel: one of them fetches, the others wait.
	with open(os.path.join(base, '.lock'), 'w') as lockf:
		fcntl.flock(lockf, fcntl.LOCK_EX)
		if kernel.complete():
			log('kernel %s (%s): cached in %s, boots the %s' %
			    (name, abi, base, kernel.boot_method))
			return kernel
		common, kbuild = _header_deps(abi)
		image = 'linux-image-%s-unsigned' % abi
		if image not in _has_candidate([image]):
			image = 'linux-image-' + abi
		pkgs = [image, 'linux-headers-' + abi, common, kbuild,
			'busybox-static']
		debs = os.path.join(base, 'debs')
		shutil.rmtree(debs, ignore_errors=True)
		os.makedirs(debs)
		log('apt-get download ' + ' '.join(pkgs))
		_apt_download(pkgs, debs, apt_state)
		tmp = kernel.root + '.tmp'
		shutil.rmtree(tmp, ignore_errors=True)
		os.makedirs(tmp)
		for deb in sorted(os.listdir(debs)):
			path = os.path.join(debs, deb)
			if deb.startswith('linux-image-'):
				# Only ./boot: the 390 MB of modules are not
				# needed, ours is loaded from the initramfs.
				tar = subprocess.Popen(
					['dpkg-deb', '--fsys-tarfile', path],
					stdout=subprocess.PIPE)
				run(['tar', '-x', '-C', tmp, './boot'],
				    stdin=tar.stdout)
				tar.stdout.close()
				if tar.wait() != 0:
					raise HarnessError('dpkg-deb failed on '
							   + deb)
			else:
				run(['dpkg-deb', '-x', path, tmp])
		shutil.rmtree(kernel.root, ignore_errors=True)
		os.rename(tmp, kernel.root)
		_rewrite_headers_makefile(kernel)
		shutil.rmtree(debs, ignore_errors=True)
		_extract_vmlinux(kernel)
		with open(os.path.join(kernel.root, '.complete'), 'w') as f:
			f.write(' '.join(pkgs) + '\n')
		if not kernel.complete():
			raise HarnessError('unpacked kernel incomplete in ' + base)
		return kernel


# --------------------------------------------------------------- module ---

# What Kbuild leaves next to the sources.
_BUILD_JUNK = ('*.o', '*.ko', '*.mod', '*.mod.c', '*.cmd', '.*.cmd',
	       'Module.symvers', 'modules.order')


def _module_key(kernel, src):
	"""A digest of everything a module build depends on: the kernel, its
	compiler, whether pahole is there (module BTF), every source file."""
	h = hashlib.sha256(('%s|%s|%s\n' % (
		kernel.abi, kernel.cc(), bool(shutil.which('pahole')))).encode())
	for dirpath, dirs, files in os.walk(src):
		dirs.sort()
		for f in sorted(files):
			if any(fnmatch.fnmatch(f, p) for p in _BUILD_JUNK):
				continue
			path = os.path.join(dirpath, f)
			h.update(os.path.relpath(path, src).encode() + b'\0')
			with open(path, 'rb') as fh:
				h.update(fh.read())
			h.update(b'\0')
	return h.hexdigest()[:16]


def build_module(kernel, src, out):
	"""Build an out-of-tree module from a copy of src in out (Kbuild
	writes its objects next to the sources, and the source tree is not
	ours to litter); return the list of .ko files. The .ko files are kept
	in the cache under a digest of the sources (_module_key): the next
	test against the same kernel and sources copies them instead of
	building again (20-45 s under load)."""
	cc = kernel.cc()
	if not shutil.which(cc):
		raise Skip('%s not found (the headers of kernel %s were '
			   'configured with it)' % (cc, kernel.abi))
	shutil.rmtree(out, ignore_errors=True)
	shutil.copytree(src, out, symlinks=True,
			ignore=shutil.ignore_patterns(*_BUILD_JUNK))
	# the copy, not src: what is built is what was hashed
	key = _module_key(kernel, out)
	store = os.path.join(os.path.dirname(kernel.root), 'modules')
	kept = os.path.join(store, key)
	os.makedirs(store, exist_ok=True)
	with open(os.path.join(store, '.lock'), 'w') as lockf:
		fcntl.flock(lockf, fcntl.LOCK_EX)
		if os.path.exists(os.path.join(kept, '.complete')):
			log('module: sources unchanged (%s), reusing its build'
			    % key)
			shutil.copytree(kept, out, dirs_exist_ok=True,
					ignore=shutil.ignore_patterns(
						'.complete'))
		else:
			run(['make', '-C', out, 'KDIR=' + kernel.kdir],
			    timeout=300)
		kos = []
		for dirpath, _, files in os.walk(out):
			kos += [os.path.join(dirpath, f) for f in files
				if f.endswith('.ko')]
		if not kos:
			raise HarnessError('make in %s built no .ko' % out)
		if not os.path.exists(os.path.join(kept, '.complete')):
			# one build per kernel kept: the sources' latest
			for old in os.listdir(store):
				if old != '.lock':
					shutil.rmtree(os.path.join(store, old),
						      ignore_errors=True)
			for ko in kos:
				dst = os.path.join(kept, os.path.relpath(ko, out))
				os.makedirs(os.path.dirname(dst), exist_ok=True)
				shutil.copy(ko, dst)
			open(os.path.join(kept, '.complete'), 'w').close()
	return sorted(kos)


# ------------------------------------------------------------ initramfs ---

INIT_SCRIPT = r'''#!/bin/busybox sh
# Generated by vmctl.py. Settings come from the kernel command line:
#   VMCTL_MODULES  .ko names in /lib/modules to insmod, comma separated
#   VMCTL_INSMOD_ARGS  parameters for each of them (e.g. sci_path=0)
#   VMCTL_PROGS    program names in /tests to run, comma separated
#   VMCTL_PHASES   phases, comma separated; each program runs as
#                  /tests/PROG KO PHASE; before every phase but the first,
#                  /init waits until the host sends the phase name on ttyS1
#   VMCTL_SHELL=1  after the phases, run shell commands read from ttyS1
#   VMCTL_PROG_TIMEOUT  seconds a program may run (default 240), then KILL
#   VMGENID_DRIVER=none  do not load /lib/modules/vmgenid.ko (the debug
#                  kernel's driver, loaded first by default): our module
#                  then binds the ACPI device itself
KERNEL_TROUBLE='@KERNEL_TROUBLE@'
/bin/busybox mkdir -p /proc /sys /dev /tmp /run
/bin/busybox mount -t devtmpfs dev /dev
# No /dev/console in the archive (making one needs root): take it now.
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t tmpfs tmp /tmp
# kmemleak (the debug kernel): what boot left unreferenced is not ours
kmemleak=
if [ -d /sys/kernel/debug ] &&
   mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null &&
   [ -w /sys/kernel/debug/kmemleak ]; then
	kmemleak=/sys/kernel/debug/kmemleak
	echo scan >$kmemleak
	echo clear >$kmemleak
fi
# SeaBIOS leaves escape codes without a newline: start a fresh line
echo
echo "vmctl: booted $(uname -r)"

# The control channel: the second serial port, raw, on fd 3.
if [ -e /dev/ttyS1 ]; then
	stty -F /dev/ttyS1 raw -echo
	exec 3<>/dev/ttyS1
fi

if [ -e /lib/modules/vmgenid.ko ] && [ "${VMGENID_DRIVER:-load}" = load ]
then
	insmod /lib/modules/vmgenid.ko
	echo "vmctl: insmod vmgenid rc=$?"
fi

oldifs=$IFS
IFS=,
for m in $VMCTL_MODULES; do
	insmod /lib/modules/$m.ko $VMCTL_INSMOD_ARGS
	echo "vmctl: insmod $m rc=$?"
done
ko=/lib/modules/${VMCTL_MODULES%%,*}.ko
first=1
for ph in ${VMCTL_PHASES:-abi}; do
	if [ -z "$first" ]; then
		echo "vmctl: await $ph"
		while IFS= read -r line <&3; do
			[ "$line" = "$ph" ] && break
		done
	fi
	first=
	echo "vmctl: phase $ph"
	for p in $VMCTL_PROGS; do
		echo "vmctl: run $p $ph"
		IFS=$oldifs
		# a hung program fails alone (rc 137), the run goes on
		timeout -s KILL ${VMCTL_PROG_TIMEOUT:-240} /tests/$p "$ko" "$ph"
		echo "vmctl: exit $p $ph rc=$?"
		IFS=,
	done
done
IFS=$oldifs

if [ "$VMCTL_SHELL" = 1 ]; then
	echo "vmctl: shell"
	n=0
	while IFS= read -r line <&3; do
		n=$((n + 1))
		[ "$line" = exit ] && break
		sh -c "$line"
		echo "vmctl: done $n rc=$?"
	done
fi
# kmemleak: a scan after the tests, and one after unloading every module
# (the latest first); the host fails on any "unreferenced object"
kmemleak_report() {
	if echo scan >$kmemleak; then
		sed 's/^/vmctl: kmemleak: /' $kmemleak
		echo "vmctl: kmemleak $1 scanned"
	else
		echo "vmctl: kmemleak $1 scan failed"
	fi
}
if [ -n "$kmemleak" ]; then
	kmemleak_report after-tests
	for m in $(cut -d' ' -f1 /proc/modules); do
		rmmod $m
		echo "vmctl: rmmod $m rc=$?"
	done
	kmemleak_report after-unload
fi
# 'quiet' hides kernel warnings from the console: the host fails on these
dmesg | grep -E "$KERNEL_TROUBLE" | sed 's/^/vmctl: kernel: /'
echo "vmctl: end"
poweroff -f
'''


# Kernel log lines that mean a kernel or module bug, whatever the tests say.
# Most reports of the debug kernel's checkers start with "WARNING:" or
# "BUG:" (lockdep, might_sleep, KASAN); the rest are named too, and so are
# lockdep's headlines, should a kernel print them on their own.
KERNEL_TROUBLE = (r'WARNING:|BUG:|Oops|Call Trace|general protection|'
		  r'UBSAN:|KASAN:|refcount_t:|list_add corruption|'
		  r'list_del corruption|'
		  r'blocked for more than|Kernel panic|stack-protector|'
		  r'kernel tried to execute|unable to handle|'
		  r'possible circular locking|possible recursive locking|'
		  r'inconsistent lock state|'
		  r'sleeping function called from invalid context|'
		  r'suspicious RCU usage|bad unlock balance|'
		  r'lock held when returning|trying to register non-static key|'
		  r'ODEBUG:|suspected memory leaks|'
		  r'memory leak detector disabled|Memory pool empty')


def _ldd_deps(path):
	"""Shared libraries and loader of a dynamic program, [] if static."""
	res = subprocess.run(['ldd', path], stdout=subprocess.PIPE,
			     stderr=subprocess.STDOUT, text=True)
	if res.returncode != 0:
		# "not a dynamic executable" (static) is not an error
		return []
	deps = []
	for line in res.stdout.splitlines():
		m = re.search(r'(?:=>\s*)?(/\S+)\s+\(0x', line)
		if m:
			deps.append(m.group(1))
		elif '=> not found' in line:
			raise HarnessError('%s: %s' % (path, line.strip()))
	return deps


def _install(src, root, dest, mode=None):
	dst = os.path.join(root, dest.lstrip('/'))
	os.makedirs(os.path.dirname(dst), exist_ok=True)
	shutil.copy(src, dst)	# follows symlinks: we want the file
	if mode is not None:
		os.chmod(dst, mode)


def build_initramfs(kernel, out, modules=(), progs=(), files=()):
	"""Pack busybox, /init, modules (to /lib/modules/NAME.ko), programs
	(to /tests/NAME, with their libraries) and files ((src, dest) pairs)
	into a gzipped newc archive."""
	stage = tempfile.mkdtemp(prefix='initramfs.', dir=os.path.dirname(out))
	try:
		_install(kernel.busybox, stage, '/bin/busybox', 0o755)
		applets = run([kernel.busybox, '--list-full']).split()
		for a in applets:
			link = os.path.join(stage, a)
			if os.path.lexists(link):
				continue
			os.makedirs(os.path.dirname(link), exist_ok=True)
			os.symlink('/bin/busybox', link)
		with open(os.path.join(stage, 'init'), 'w') as f:
			f.write(INIT_SCRIPT.replace('@KERNEL_TROUBLE@',
						    KERNEL_TROUBLE))
		os.chmod(os.path.join(stage, 'init'), 0o755)
		for ko in list(modules) + list(kernel.extra_modules.values()):
			_install(ko, stage,
				 '/lib/modules/' + os.path.basename(ko))
		for p in progs:
			_install(p, stage, '/tests/' + os.path.basename(p), 0o755)
			for lib in _ldd_deps(p):
				if not os.path.lexists(os.path.join(
						stage, lib.lstrip('/'))):
					_install(lib, stage, lib)
		for src, dest in files:
			_install(src, stage, dest)
		names = ['.']
		for dirpath, dirs, fnames in os.walk(stage):
			rel = os.path.relpath(dirpath, stage)
			for n in sorted(dirs) + sorted(fnames):
				names.append(os.path.normpath(
					os.path.join(rel, n)))
		cpio = subprocess.run(
			[kernel.busybox, 'cpio', '-o', '-H', 'newc'],
			input=('\n'.join(names) + '\n').encode(), cwd=stage,
			stdout=subprocess.PIPE, stderr=subprocess.PIPE,
			timeout=120)
		if cpio.returncode != 0:
			raise HarnessError('cpio: ' + cpio.stderr.decode())
		with gzip.open(out + '.tmp', 'wb', compresslevel=6) as f:
			f.write(cpio.stdout)
		os.rename(out + '.tmp', out)
	finally:
		shutil.rmtree(stage, ignore_errors=True)
	return out


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


def restore_clones(vm, path, names, parallel=True, timeout=120):
	"""Restore one clone per name from a saved file, all at once (they
	load concurrently) or one after the other; return them running."""
	clones = [vm.restore_from(path, n) for n in names]
	if parallel:
		for c in clones:
			c.start()
		for c in clones:
			c.resume(timeout)
	else:
		for c in clones:
			c.start()
			c.resume(timeout)
	return clones


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


# ------------------------------------------------------------- results ---

TAP_RX = re.compile(r'^(not ok|ok) (\d+) - (.*?)\s*$', re.M)
SUM_RX = re.compile(r'^(\d+) passed, (\d+) failed\s*$', re.M)


def check_run(text, prog, ph, xfail=None):
	"""Parse one program's output between its run/exit markers; return
	(passed, failed, messages). Tests whose name matches the regex xfail
	must fail (at least one must), and then the exit status is not
	checked: negative runs prove that a check can fail."""
	m = re.search(r'^vmctl: run %s %s\s*$(.*?)^vmctl: exit %s %s rc=(\d+)'
		      % (re.escape(prog), re.escape(ph), re.escape(prog),
			 re.escape(ph)), text, re.M | re.S)
	if not m:
		return 0, 1, ['%s %s: no run/exit markers' % (prog, ph)]
	out, rc = m.group(1), int(m.group(2))
	results = TAP_RX.findall(out)
	xrx = re.compile(xfail) if xfail else None
	fails = ['%s %s: not ok %s - %s' % (prog, ph, n, name)
		 for st, n, name in results if st == 'not ok'
		 and not (xrx and xrx.search(name))]
	if xrx:
		xfailed = [n for st, n, name in results
			   if st == 'not ok' and xrx.search(name)]
		xpassed = [n for st, n, name in results
			   if st == 'ok' and xrx.search(name)]
		if not xfailed or xpassed:
			fails.append('%s %s: expected failure %r: failed %s, '
				     'passed %s' % (prog, ph, xfail,
						    xfailed, xpassed))
		else:
			log('%s %s: expected failures: %s' %
			    (prog, ph, ' '.join(xfailed)))
	# "ok N - name # SKIP why" counts as neither passed nor failed
	passed = sum(1 for st, _, name in results
		     if st == 'ok' and '# SKIP' not in name)
	skipped = sum(1 for st, _, name in results
		      if st == 'ok' and '# SKIP' in name)
	s = SUM_RX.findall(out)
	if not results:
		fails.append('%s %s: no ok/not ok lines' % (prog, ph))
	if not s:
		fails.append('%s %s: no "N passed, N failed" line' % (prog, ph))
	elif (int(s[-1][0]), int(s[-1][1])) != \
			(passed, len(results) - passed - skipped):
		fails.append('%s %s: summary %s passed, %s failed disagrees with '
			     'the ok lines' % (prog, ph, s[-1][0], s[-1][1]))
	if rc != 0 and not xrx:
		fails.append('%s %s: exit status %d' % (prog, ph, rc))
	return passed, len(fails), fails


def report(vm, runs, xfail=None):
	text = vm.read_log()
	total_p = total_f = 0
	msgs = []
	for prog, ph in runs:
		p, f, m = check_run(text, prog, ph, xfail)
		total_p += p
		total_f += f
		msgs += m
	for line in msgs:
		log('FAIL ' + line)
	log('%s: %d passed, %d failures' % (vm.name, total_p, total_f))
	return total_f == 0


DISTINCT_RX = re.compile(r'^vmctl-distinct: (\S+)\s*$', re.M)


def check_distinct(clones):
	"""Values that guest programs print as 'vmctl-distinct: X' after the
	restore must differ between clones: equal values mean the clones
	shared state that should have been renewed."""
	seen = {}
	ok = True
	for c in clones:
		for val in DISTINCT_RX.findall(c.read_log()):
			if val in seen:
				log('FAIL %s and %s both printed %s' %
				    (seen[val], c.name, val))
				ok = False
			seen[val] = c.name
	if seen:
		log('%d distinct values across %d clones' % (len(seen),
							    len(clones)))
	return ok


def dump_log(vm):
	print('----- %s serial log (%s) -----' % (vm.name, vm.logpath))
	print(vm.read_log().rstrip())
	print('----- end of %s -----' % vm.name, flush=True)


# ----------------------------------------------------------------- main ---

def prepare(args):
	"""fetch + build-module + initramfs + accel: what every test needs."""
	qemu_binary()
	os.makedirs(args.workdir, exist_ok=True)
	with phase('fetch'):
		kernel = fetch(args.cache, args.kernel)
	kos = []
	if args.driver:
		with phase('build-module'):
			kos = build_module(kernel, args.driver,
					   os.path.join(args.workdir, 'module'))
	kos += args.module or []
	with phase('initramfs'):
		initrd = build_initramfs(
			kernel, os.path.join(args.workdir, 'initramfs.cpio.gz'),
			modules=kos, progs=args.prog or [],
			files=[tuple(f.split(':', 1)) if ':' in f
			       else (f, '/files/' + os.path.basename(f))
			       for f in args.file or []])
	accel = choose_accel(kernel, args.cache, args.workdir)
	log('kernel %s (%s), %s, accelerator %s' %
	    (kernel.name, kernel.abi, kernel.boot_method, accel))
	env = {}
	names = [os.path.basename(k)[:-3] for k in kos]
	if names and not args.no_insmod:
		env['VMCTL_MODULES'] = ','.join(names)
	if args.prog:
		env['VMCTL_PROGS'] = ','.join(os.path.basename(p)
					      for p in args.prog)
	return kernel, initrd, accel, env


def cmd_fetch(args):
	# stdout is for what was asked (JSON, or the headers dir): progress
	# lines go to stderr here
	with contextlib.redirect_stdout(sys.stderr):
		k = fetch(args.cache, args.kernel)
	if args.print_headers:
		# for `dkms build -k ABI --kernelsourcedir DIR` and the like
		print(k.kdir)
		return 0
	print(json.dumps({'kernel': k.name, 'abi': k.abi,
			  'vmlinuz': k.vmlinuz, 'image': k.image,
			  'boot': k.boot_method, 'kdir': k.kdir, 'cc': k.cc(),
			  'busybox': k.busybox}, indent=1))
	return 0


def cmd_build_module(args):
	k = fetch(args.cache, args.kernel)
	for ko in build_module(k, args.src, args.out):
		print(ko)
	return 0


def cmd_initramfs(args):
	k = fetch(args.cache, args.kernel)
	build_initramfs(k, args.out, modules=args.module or [],
			progs=args.prog or [],
			files=[tuple(f.split(':', 1)) for f in args.file or []])
	print(args.out)
	return 0


def cmd_run(args):
	"""Boot once, run the programs in phase 'abi' (or --phase), check."""
	kernel, initrd, accel, env = prepare(args)
	env['VMCTL_PHASES'] = args.phase
	vm = VM(kernel, initrd, args.workdir, 'run', env, accel, args.append)
	ok = False
	try:
		with phase('boot to /init'):
			vm.start()
			vm.wait_for('^' + BOOT_MARKER,
				    TCG_BOOT_TIMEOUT * kernel.slowdown)
		with phase('run programs'):
			vm.wait_for('^' + END_MARKER,
				    args.timeout * kernel.slowdown)
		vm.wait_exit(60)
		runs = [(os.path.basename(p), args.phase)
			for p in args.prog or []]
		ok = report(vm, runs) & _insmod_ok(vm) & kernel_ok(vm)
	finally:
		if not ok or args.verbose:
			dump_log(vm)
		vm.kill()
	return 0 if ok else 1


def _insmod_ok(vm):
	bad = re.findall(r'^vmctl: insmod (\S+) rc=([1-9]\d*)', vm.read_log(),
			 re.M)
	for name, rc in bad:
		log('FAIL insmod %s: rc=%s' % (name, rc))
	return not bad


def kernel_ok(vm):
	"""No kernel warning, oops or panic in the guest's log, no leak that
	kmemleak reported (the debug kernel), every module unloaded where
	/init unloads them (the same)."""
	text = vm.read_log()
	bad = kernel_trouble(text)
	for line in bad:
		log('FAIL %s: kernel: %s' % (vm.name, line))
	leaks = kmemleak_leaks(text)
	for leak in leaks:
		log('FAIL %s: kmemleak: %s' % (vm.name, leak))
	stuck = re.findall(r'^vmctl: rmmod (\S+) rc=([1-9]\d*)', text, re.M)
	for name, rc in stuck:
		log('FAIL %s: rmmod %s at the end: rc=%s' % (vm.name, name, rc))
	# a checker that stopped working proves nothing
	blind = re.findall(r'^vmctl: kmemleak (\S+) scan failed', text, re.M)
	for when in blind:
		log('FAIL %s: kmemleak scan %s failed' % (vm.name, when))
	return not bad and not leaks and not stuck and not blind


def kernel_trouble(text):
	"""The lines of a serial log that KERNEL_TROUBLE matches."""
	return [line.strip() for line in re.findall(
		r'^(?:vmctl: kernel: )?(.*(?:%s).*)$' % KERNEL_TROUBLE, text,
		re.M)]


def kmemleak_leaks(text):
	"""kmemleak's reports that /init copied into the log, one string
	each (its lines joined by ' | ')."""
	leaks = []
	for line in re.findall(r'^vmctl: kmemleak: (.*)$', text, re.M):
		line = line.rstrip()
		if line.startswith('unreferenced object'):
			leaks.append(line)
		elif leaks and line:
			leaks[-1] += ' | ' + line.strip()
	return leaks


def cmd_snapshot(args):
	"""Boot, run phase before-save, save, restore N clones, send each
	after-restore, check every program in every VM."""
	kernel, initrd, accel, env = prepare(args)
	env['VMCTL_PHASES'] = 'before-save,after-restore'
	if args.check_channel:
		env['VMCTL_SHELL'] = '1'
	vm = VM(kernel, initrd, args.workdir, 'origin', env, accel,
		args.append, guid=args.guid)
	vms = [vm]
	ok = False
	state = os.path.join(args.workdir, 'state.bin')
	try:
		with phase('boot to /init'):
			vm.start()
			vm.wait_for('^' + BOOT_MARKER,
				    TCG_BOOT_TIMEOUT * kernel.slowdown)
		with phase('before-save'):
			vm.wait_for('^vmctl: await after-restore',
				    args.timeout * kernel.slowdown)
		ok = _insmod_ok(vm)
		ok &= report(vm, [(os.path.basename(p), 'before-save')
				  for p in args.prog or []])
		with phase('save'):
			vm.save(state)
		log('saved state: %.1f MB' % (os.path.getsize(state) / 1e6))
		names = ['clone%d' % i for i in range(1, args.clones + 1)]
		# in parallel: all clones load and run at once; in sequence:
		# each runs to its end before the next one is restored
		batches = [[n] for n in names] if args.sequential else [names]
		clones = []
		for batch in batches:
			with phase('restore %s' % ' '.join(batch)):
				now = restore_clones(vm, state, batch)
			vms += now
			clones += now
			with phase('after-restore %s' % ' '.join(batch)):
				for c in now:
					c.send('after-restore')
				for c in now:
					c.wait_for('^' + END_MARKER
						   if not args.check_channel
						   else '^vmctl: shell',
						   args.timeout * kernel.slowdown)
			if args.check_channel:
				ok &= check_channel(now)
		for c in clones:
			c.wait_exit(60)
			ok &= report(c, [(os.path.basename(p), 'after-restore')
					 for p in args.prog or []], args.xfail)
			ok &= kernel_ok(c)
		ok &= check_distinct(clones)
	finally:
		if not ok or args.verbose:
			for v in vms:
				dump_log(v)
		for v in vms:
			v.kill()
		# ~90 MB per run; kept when it may help to look at a failure
		if ok and not args.keep_state:
			with contextlib.suppress(OSError):
				os.unlink(state)
	return 0 if ok else 1


def check_channel(clones):
	"""Both directions of the control port in restored clones: a shell
	command sent by the host writes a line back through ttyS1."""
	ok = True
	lines = set()
	for c in clones:
		rc = c.shell('echo "vmctl-ctl $(cat '
			     '/proc/sys/kernel/random/uuid)" >&3', 60)
		line = c.recv_line(30)
		good = rc == 0 and re.fullmatch(r'vmctl-ctl [0-9a-f-]{36}', line)
		log('%s: control port %s: rc=%d %r' %
		    (c.name, 'ok' if good else 'FAIL', rc, line))
		ok &= bool(good) and line not in lines
		lines.add(line)
		c.send('exit')
		c.wait_for('^' + END_MARKER, 60)
	return ok


def default_cache():
	"""Where kernels, module builds and images are kept: outside any
	clone, so that a fresh one (CI) reuses them; entries are keyed by the
	digest of their inputs. $VMCTL_CACHE overrides."""
	if os.environ.get('VMCTL_CACHE'):
		return os.environ['VMCTL_CACHE']
	if os.geteuid() == 0:
		return '/var/cache/libvmgenid'
	return os.path.join(os.environ.get('XDG_CACHE_HOME') or
			    os.path.expanduser('~/.cache'), 'libvmgenid')


def main(argv=None):
	here = os.path.dirname(os.path.abspath(__file__))
	ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	ap.add_argument('--cache', default=default_cache(),
		help='download/unpack cache (default $VMCTL_CACHE, else '
		     '/var/cache/libvmgenid as root, else ~/.cache/libvmgenid)')
	ap.add_argument('--workdir', default=os.path.join(os.getcwd(),
							  'vm-work'),
			help='logs, initramfs, saved state')
	ap.add_argument('--kernel', choices=list(KERNELS),
			help='Debian 12 kernel to boot (default $VMCTL_KERNEL, '
			     'else %s)' % DEFAULT_KERNEL)
	ap.add_argument('-v', '--verbose', action='store_true',
			help='print serial logs even on success')
	sub = ap.add_subparsers(dest='cmd', required=True)

	sp = sub.add_parser('fetch', help='download and unpack the kernel; '
				    'print its paths (JSON)')
	sp.add_argument('--print-headers', action='store_true',
			help='print only the headers build dir (KDIR)')
	sp.set_defaults(fn=cmd_fetch)

	sp = sub.add_parser('build-module', help='make a module against it')
	sp.add_argument('--src', default=os.path.join(here, '..', '..',
							'driver'))
	sp.add_argument('--out', required=True)
	sp.set_defaults(fn=cmd_build_module)

	sp = sub.add_parser('initramfs', help='pack an initramfs')
	sp.add_argument('--out', required=True)
	sp.add_argument('--module', action='append')
	sp.add_argument('--prog', action='append')
	sp.add_argument('--file', action='append', help='SRC:DEST')
	sp.set_defaults(fn=cmd_initramfs)

	for name, fn, hlp in (
		('run', cmd_run, 'boot, run programs once, check'),
		('snapshot', cmd_snapshot,
		 'boot, before-save, save, restore clones, after-restore')):
		sp = sub.add_parser(name, help=hlp)
		sp.add_argument('--driver', help='module source dir to build')
		sp.add_argument('--module', action='append',
				help='a prebuilt .ko')
		sp.add_argument('--no-insmod', action='store_true',
				help='copy modules in but do not load them')
		sp.add_argument('--prog', action='append',
				help='a test program (KO PHASE argv)')
		sp.add_argument('--file', action='append',
				help='extra file, SRC[:DEST]')
		sp.add_argument('--append', default='',
				help='more kernel command line')
		sp.add_argument('--timeout', type=int, default=300,
				help='per phase, seconds')
		if name == 'run':
			sp.add_argument('--phase', default='abi')
		else:
			sp.add_argument('--clones', type=int, default=2)
			sp.add_argument('--sequential', action='store_true')
			sp.add_argument('--keep-state', action='store_true',
					help='keep the saved state file even '
					     'when the run passes')
			sp.add_argument('--check-channel', action='store_true',
					help='also test the control port in '
					     'each clone')
			sp.add_argument('--xfail', metavar='REGEX',
					help='after-restore tests named so must '
					     'fail (negative runs)')
			sp.add_argument('--guid', default='auto',
					help='vmgenid guid; a fixed one makes '
					     'clones keep the generation')
		sp.set_defaults(fn=fn)

	args = ap.parse_args(argv)
	args.cache = os.path.abspath(args.cache)
	try:
		args.kernel = kernel_name(args.kernel)
	except HarnessError as e:
		ap.error(str(e))
	args.workdir = os.path.abspath(args.workdir)
	return run_guarded(args.fn, args)


def run_guarded(fn, *args):
	"""Run a harness entry point the way every test wants it: a Skip
	exits 77, a HarnessError exits 1 with its message, and QEMU is killed
	however the run ends (meson stops a test with SIGTERM)."""
	signal.signal(signal.SIGTERM, _on_signal)
	signal.signal(signal.SIGHUP, _on_signal)
	try:
		return fn(*args)
	except Skip as e:
		print('SKIP: %s' % e, flush=True)
		return SKIP
	except HarnessError as e:
		log('ERROR: %s' % e)
		return 1
	finally:
		_kill_all()
		if _timings:
			log('timings: ' + timings())


if __name__ == '__main__':
	sys.exit(main())
