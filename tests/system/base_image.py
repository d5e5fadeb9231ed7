# SPDX-License-Identifier: MIT
"""The Debian 12 system image's base tree, built with mmdebstrap and cached.

Base (cached in the harness cache as system-base-<digest>/, keyed by the
package list, the candidate versions apt resolves for it and this file):
minbase + systemd, udev, kmod, the three kernels a Debian 12 VM may run
with their headers, nginx-light, openssl, nodejs, python3 and what DKMS
needs. One tree carries all three kernels: the packages other than the
kernels are the same, so one build (~1 mmdebstrap run) serves the three
boots, each of which boots its own /boot/vmlinuz-ABI and initrd with
root=/dev/vda.

What each run adds to a copy of it is in system_tree.py.
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'vm'))
import vmctl  # noqa: E402

SUITE = 'bookworm'
MIRRORS = [
	'deb http://deb.debian.org/debian bookworm main',
	'deb http://deb.debian.org/debian bookworm-updates main',
	'deb http://deb.debian.org/debian-security bookworm-security main',
]
# Everything but the kernels; the kernels come from KERNELS by their ABI.
PACKAGES = [
	'systemd-sysv', 'udev', 'kmod', 'initramfs-tools', 'nginx-light',
	'openssl', 'nodejs', 'python3', 'dkms', 'make', 'gcc-12', 'procps',
]
DISK_SIZE = '6G'
# initramfs-tools' configuration, in place before the kernels are
# installed: MODULES=list with the few modules the guest's root needs
# (initramfs/sysimg-modules) instead of MODULES=most for three kernels
INITRAMFS = os.path.join(HERE, 'initramfs')
INITRAMFS_FILES = [os.path.join(INITRAMFS, 'sysimg.conf'),
		   os.path.join(INITRAMFS, 'sysimg-modules')]
TIMEOUT = 3600		# mmdebstrap under load, three kernels' initramfs


def kernel_packages(cache):
	"""{name: abi} for generic, cloud and 6.12 (apt's answer today)."""
	state = {}
	return {name: vmctl._resolve_abi(cache, name, state)
		for name in vmctl.DEBIAN_KERNELS}


def package_list(abis):
	pkgs = list(PACKAGES)
	for abi in abis.values():
		pkgs += ['linux-image-' + abi, 'linux-headers-' + abi]
	return pkgs


def _candidates(pkgs):
	"""'name version' for each package: what apt would install today."""
	out = vmctl.run(['apt-cache', 'policy'] + pkgs)
	lines, name = [], None
	for line in out.splitlines():
		if line and not line[0].isspace() and line.endswith(':'):
			name = line[:-1]
		elif line.strip().startswith('Candidate:') and name:
			ver = line.split(':', 1)[1].strip()
			if ver == '(none)':
				raise vmctl.Skip('apt has no candidate for %s'
						 % name)
			lines.append('%s %s' % (name, ver))
	return sorted(lines)


def base_key(pkgs):
	h = hashlib.sha256()
	h.update('\n'.join(MIRRORS + _candidates(pkgs)).encode())
	for path in [os.path.abspath(__file__)] + INITRAMFS_FILES:
		with open(path, 'rb') as f:
			h.update(f.read())
	return h.hexdigest()[:16]


def _mmdebstrap(pkgs, out, logpath):
	cmd = ['mmdebstrap', '--variant=minbase', '--mode=root',
	       '--aptopt=Acquire::Check-Valid-Until "false"',
	       '--include=' + ','.join(pkgs),
	       '--setup-hook=mkdir -p "$1/etc/initramfs-tools/conf.d" '
	       '"$1/etc/initramfs-tools/hooks"',
	       '--setup-hook=cp %s "$1/etc/initramfs-tools/conf.d/"'
	       % INITRAMFS_FILES[0],
	       '--setup-hook=cp %s "$1/etc/initramfs-tools/hooks/"'
	       % INITRAMFS_FILES[1],
	       # the guest has no other way to get its name and a root fs
	       '--customize-hook=echo sysimg >"$1/etc/hostname"',
	       '--customize-hook=echo "/dev/vda / ext4 defaults 0 1" '
	       '>"$1/etc/fstab"',
	       SUITE, out] + MIRRORS
	with open(logpath, 'w') as log:
		log.write('# %s\n' % ' '.join(cmd))
		log.flush()
		res = subprocess.run(cmd, stdout=log, stderr=log,
				     timeout=TIMEOUT)
	if res.returncode != 0:
		with open(logpath) as f:
			tail = f.read()[-3000:]
		raise vmctl.HarnessError('mmdebstrap: exit %d (log %s)\n%s'
					 % (res.returncode, logpath, tail))


def base_image(cache):
	"""The cached base tree and the kernels' ABIs; built when missing."""
	if not shutil.which('mmdebstrap'):
		raise vmctl.Skip('mmdebstrap not found (apt-get install '
				 'mmdebstrap)')
	if os.geteuid() != 0:
		raise vmctl.Skip('building the image needs root (mmdebstrap '
				 '--mode=root, chroot)')
	abis = kernel_packages(cache)
	pkgs = package_list(abis)
	key = base_key(pkgs)
	path = os.path.join(cache, 'system-base-' + key)
	os.makedirs(cache, exist_ok=True)
	with open(os.path.join(cache, '.system-base.lock'), 'w') as lockf:
		fcntl.flock(lockf, fcntl.LOCK_EX)
		if os.path.exists(os.path.join(path, '.complete')):
			vmctl.log('base image: cached %s' % path)
			return path, abis
		tmp = path + '.tmp'
		shutil.rmtree(tmp, ignore_errors=True)
		with vmctl.phase('base image: mmdebstrap (%d packages + '
				 'dependencies)' % len(pkgs)):
			_mmdebstrap(pkgs, tmp, path + '.log')
		with open(os.path.join(tmp, '.complete'), 'w') as f:
			f.write('\n'.join(_candidates(pkgs)) + '\n')
		os.rename(tmp, path)
	return path, abis


if __name__ == '__main__':
	# build (or find) the base image: python3 base_image.py [CACHE]
	print(base_image(sys.argv[1] if len(sys.argv) > 1 else
			 vmctl.default_cache()))
