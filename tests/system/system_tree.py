# SPDX-License-Identifier: MIT
"""What each run makes of the cached base image (base_image.py): a copy
with the project's .debs installed by apt in a chroot as a user would
(`apt-get update`, `apt-get install ./x.deb`; DKMS builds the module, and
once more for each kernel it did not build for), the OpenSSL provider
enabled as the README says, the test's services (guest/), and the disk
(`mke2fs -t ext4 -d`, nothing mounted on the host).
"""

import glob
import os
import shutil
import subprocess
import threading

import base_image
from base_image import vmctl

HERE = os.path.dirname(os.path.abspath(__file__))
GUEST = os.path.join(HERE, 'guest')
PROVIDER_LINE = '.include /usr/share/libvmgenid/vmgenid-provider.cnf'
# guest/ file -> (path in the image, mode)
GUEST_FILES = {
	'sysimg-agent': ('/usr/local/lib/sysimg/sysimg-agent', 0o755),
	'tokens.py': ('/usr/local/lib/sysimg/tokens.py', 0o755),
	'tokens.js': ('/usr/local/lib/sysimg/tokens.js', 0o644),
	'sysimg-agent.service': ('/etc/systemd/system/sysimg-agent.service',
				 0o644),
	'sysimg-tokens-python.service':
		('/etc/systemd/system/sysimg-tokens-python.service', 0o644),
	'sysimg-tokens-node.service':
		('/etc/systemd/system/sysimg-tokens-node.service', 0o644),
	'sysimg-tokens-python-control.service':
		('/etc/systemd/system/sysimg-tokens-python-control.service',
		 0o644),
	'sysimg-tokens-node-control.service':
		('/etc/systemd/system/sysimg-tokens-node-control.service',
		 0o644),
	'sysimg-tokens-node-preload.service':
		('/etc/systemd/system/sysimg-tokens-node-preload.service',
		 0o644),
	'sysimg-nginx-control.service':
		('/etc/systemd/system/sysimg-nginx-control.service', 0o644),
	'nginx-tls.conf': ('/etc/nginx/conf.d/sysimg-tls.conf', 0o644),
	'nginx-control.conf': ('/etc/nginx/nginx-control.conf', 0o644),
	'50-sysimg': ('/etc/vmgenid/restore.d/50-sysimg', 0o755),
	'80-sysimg.network': ('/etc/systemd/network/80-sysimg.network',
			      0o644),
}
UNITS = ['sysimg-agent.service', 'sysimg-tokens-python.service',
	 'sysimg-tokens-node.service', 'sysimg-tokens-python-control.service',
	 'sysimg-tokens-node-control.service',
	 'sysimg-tokens-node-preload.service',
	 'sysimg-nginx-control.service', 'systemd-networkd.service']

# Runs in the chroot, under `sh -e`; $1.. are the kernels' ABIs.
CHROOT_SCRIPT = r'''
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# as a user would: the .debs by path, apt resolves their dependencies
apt-get install -y -q $(ls /tmp/sysimg-debs/*.deb | grep -v -e -dbgsym_ -e -dev_)
ver=$(dpkg-query -W -f='${Version}' sysgenid-dkms)
ver=${ver%%-*}
# DKMS built the module for the newest kernel (the running one is the
# host's); a kernel installed later gets it from DKMS's kernel hook
for abi in "$@"; do
	if ! dkms status -m sysgenid -k "$abi" | grep -q installed; then
		dkms install -m sysgenid -v "$ver" -k "$abi"
	fi
done
dkms status -m sysgenid
# TLS certificate for both nginx servers, made before the provider is on
mkdir -p /etc/ssl/sysimg
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-days 3650 -subj /CN=sysimg -keyout /etc/ssl/sysimg/key.pem \
	-out /etc/ssl/sysimg/cert.pem 2>/dev/null
# the control's configuration: the system's as it was, without the provider
cp /etc/ssl/openssl.cnf /etc/ssl/openssl-noprovider.cnf
'''


def _chroot(root, script, args, logpath):
	"""Run script in root with /proc and /dev, in a private mount
	namespace: the mounts go when it ends, however it ends."""
	wrapper = ('set -e; r=$1; shift; mount -t proc proc "$r/proc"; '
		   'mount --rbind /dev "$r/dev"; '
		   'exec chroot "$r" /bin/sh -ec "$0" sysimg "$@"')
	cmd = ['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
	       wrapper, script, root] + list(args)
	with open(logpath, 'a') as log:
		res = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
				     timeout=3600)
	if res.returncode != 0:
		with open(logpath) as f:
			tail = f.read()[-4000:]
		raise vmctl.HarnessError('chroot script: exit %d (log %s)\n%s'
					 % (res.returncode, logpath, tail))


def _debs(debs_dir):
	debs = sorted(glob.glob(os.path.join(debs_dir, '*.deb')))
	if not debs:
		raise vmctl.HarnessError('no .deb in %s' % debs_dir)
	return debs


def build_tree(base, debs_dir, abis, workdir):
	"""The run's root tree: the base plus our packages and services."""
	root = os.path.join(workdir, 'root')
	logpath = os.path.join(workdir, 'tree.log')
	open(logpath, 'w').close()
	for old in (root, root + '.gone'):
		if os.path.exists(old):
			shutil.rmtree(old)
	with vmctl.phase('system tree: copy the base image'):
		vmctl.run(['cp', '-a', base, root], timeout=1800)
		os.unlink(os.path.join(root, '.complete'))
	dest = os.path.join(root, 'tmp', 'sysimg-debs')
	os.makedirs(dest)
	for deb in _debs(debs_dir):
		shutil.copy(deb, dest)
	# apt in the chroot resolves names as the host does; no service may
	# start in it (nothing is booted)
	resolv = os.path.join(root, 'etc', 'resolv.conf')
	if os.path.lexists(resolv):
		os.unlink(resolv)
	shutil.copy('/etc/resolv.conf', resolv)
	prc = os.path.join(root, 'usr', 'sbin', 'policy-rc.d')
	with open(prc, 'w') as f:
		f.write('#!/bin/sh\nexit 101\n')
	os.chmod(prc, 0o755)
	with vmctl.phase('system tree: apt-get install our .debs, DKMS for '
			 '%d kernels' % len(abis)):
		_chroot(root, CHROOT_SCRIPT, sorted(abis.values()), logpath)
	os.unlink(prc)
	shutil.rmtree(dest)
	_enable_provider(root)
	_install_guest_files(root)
	setup = ['systemctl enable ' + ' '.join(UNITS),
		 # the console carries the test's lines: no login prompt
		 # (its vhangup would cut the services' file descriptors)
		 'systemctl mask serial-getty@ttyS0.service',
		 'passwd -d root']
	_chroot(root, '\n'.join(setup), [], logpath)
	_check_tree(root, abis)
	return root


def _enable_provider(root):
	"""Exactly as the README says: the .include as the last line of
	/etc/ssl/openssl.cnf."""
	path = os.path.join(root, 'etc', 'ssl', 'openssl.cnf')
	with open(path) as f:
		text = f.read()
	if not text.endswith('\n'):
		text += '\n'
	with open(path, 'w') as f:
		f.write(text + PROVIDER_LINE + '\n')


def _install_guest_files(root):
	for name, (dest, mode) in GUEST_FILES.items():
		path = root + dest
		os.makedirs(os.path.dirname(path), exist_ok=True)
		shutil.copy(os.path.join(GUEST, name), path)
		os.chmod(path, mode)


def _check_tree(root, abis):
	for abi in abis.values():
		kos = glob.glob(os.path.join(root, 'lib', 'modules', abi,
					     'updates', 'dkms', 'sysgenid.ko*'))
		if not kos:
			raise vmctl.HarnessError('DKMS left no sysgenid.ko for '
						 '%s in the image' % abi)
	unit = os.path.join(root, 'etc', 'systemd', 'system',
			    'sysinit.target.wants', 'sysgenid-load.service')
	if not os.path.lexists(unit):
		raise vmctl.HarnessError('sysgenid-load.service not enabled '
					 'by the package')


def make_disk(root, workdir, abis, size=base_image.DISK_SIZE):
	"""The disk (raw ext4, from the tree) and each kernel's boot files
	beside it; the tree goes."""
	boot = {}
	bootdir = os.path.join(workdir, 'boot')
	os.makedirs(bootdir, exist_ok=True)
	for name, abi in abis.items():
		pair = []
		for f in ('vmlinuz-' + abi, 'initrd.img-' + abi):
			shutil.copy(os.path.join(root, 'boot', f), bootdir)
			pair.append(os.path.join(bootdir, f))
		boot[name] = tuple(pair)
	disk = os.path.join(workdir, 'disk.raw')
	with vmctl.phase('disk: mke2fs -t ext4 -d (%s)' % size):
		if os.path.exists(disk):
			os.unlink(disk)
		vmctl.run(['mke2fs', '-q', '-t', 'ext4', '-L', 'sysimg', '-d',
			   root, disk, size], timeout=1800)
	# 1.5 GB of small files: minutes on a loaded machine, not waited for
	gone = root + '.gone'
	os.rename(root, gone)
	threading.Thread(target=shutil.rmtree, args=(gone, True),
			 daemon=True).start()
	return disk, boot


def existing_disk(workdir, abis):
	"""The disk and boot files a kept run left in workdir, if all are
	there."""
	disk = os.path.join(workdir, 'disk.raw')
	boot = {name: (os.path.join(workdir, 'boot', 'vmlinuz-' + abi),
		       os.path.join(workdir, 'boot', 'initrd.img-' + abi))
		for name, abi in abis.items()}
	paths = [disk] + [p for pair in boot.values() for p in pair]
	if all(os.path.exists(p) for p in paths):
		return disk, boot
	return None, None
