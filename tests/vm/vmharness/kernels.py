# SPDX-License-Identifier: MIT
"""The kernels a test VM boots: which Debian 12 kernel a name means, its
ABI as apt resolves it today, the download and unpacking of its image,
headers and busybox into the cache, and the debug kernel that
debug_kernel.py builds instead."""

import contextlib
import fcntl
import glob
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys

from .common import HarnessError, Skip, log, run


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
	# debug_kernel.py is in tests/vm, next to vmctl.py
	here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
