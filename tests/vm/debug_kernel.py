#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Build the debug kernel of the VM tests (DESIGN section 12): Debian 12's
own kernel source (linux-source-6.1, the generic kernel's version) with a
small config, `make tinyconfig` plus debug_kernel/debug.config (what the
QEMU guest needs, vmgenid as a module, lockdep, KASAN, kmemleak, list and
fortify checks).

The result is kept in CACHE/debug-kernel-<key>, <key> a digest of every
input: the source tarball, the fragment, the recipe below (the source of
_make_tree and its constants) and the compiler's version. The same inputs
reuse the build; a change builds again. Layout, as vmctl.Kernel expects:

  root/boot/vmlinuz-<abi>              bzImage
  root/boot/vmlinux-<abi>              the ELF image QEMU boots through PVH
  root/boot/config-<abi>               its .config
  root/usr/src/linux-headers-<abi>/    the build tree, objects pruned: KDIR
                                       for out-of-tree modules
  root/lib/modules/vmgenid.ko          the kernel's own vmgenid driver
  build.json                           abi, build seconds, size

vmctl.py (--kernel debug, VMCTL_KERNEL=debug) calls build(); run alone,
this file builds (or finds) the kernel and prints build.json.
"""

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = '/usr/src/linux-source-6.1.tar.xz'
SOURCE_PACKAGE = 'linux-source-6.1'
FRAGMENT = os.path.join(HERE, 'debug_kernel', 'debug.config')
CC = 'gcc-12'
LOCALVERSION = '-vmgenid-debug'
JOBS = 2


class BuildError(Exception):
	"""The kernel could not be built; the message says why."""


class Missing(BuildError):
	"""Something the build needs is not installed (a test skips)."""


def _sh(cmd, cwd=None, logf=None, timeout=None):
	"""Run cmd; its output goes to logf (or is returned)."""
	try:
		res = subprocess.run(cmd, cwd=cwd, timeout=timeout, text=True,
				     stdout=logf or subprocess.PIPE,
				     stderr=subprocess.STDOUT)
	except FileNotFoundError as e:
		raise Missing('%s: %s' % (cmd[0], e)) from None
	except subprocess.TimeoutExpired:
		raise BuildError('%s: timed out after %s s' %
				 (' '.join(cmd), timeout)) from None
	if res.returncode != 0:
		raise BuildError('%s: exit %d%s' % (
			' '.join(cmd), res.returncode,
			'' if logf else '\n' + res.stdout[-3000:]))
	return res.stdout


def _fragment_settings(path):
	"""{option: value} of a config fragment; 'n' for '# X is not set'."""
	want = {}
	with open(path) as f:
		for line in f:
			m = re.match(r'^(CONFIG_\w+)=(.*)$', line.strip()) or \
			    re.match(r'^# (CONFIG_\w+) is not set$', line.strip())
			if m:
				want[m.group(1)] = m.group(2) \
					if m.lastindex == 2 else 'n'
	return want


def _make_tree(src, logf):
	"""The recipe: configure and build the tree in src, then prune what
	an out-of-tree module build does not need. Part of the cache key."""
	make = ['nice', '-n', '10', 'make', 'ARCH=x86_64', 'CC=' + CC,
		'HOSTCC=' + CC, 'LOCALVERSION=' + LOCALVERSION,
		'KBUILD_BUILD_USER=vmctl', 'KBUILD_BUILD_HOST=debug-kernel']
	_sh(make + ['tinyconfig'], src, logf)
	_sh(['scripts/kconfig/merge_config.sh', '-m', '.config', FRAGMENT],
	    src, logf)
	_sh(make + ['olddefconfig'], src, logf)
	# merge_config.sh only warns when Kconfig drops a setting: refuse
	have = _fragment_settings(os.path.join(src, '.config'))
	lost = ['%s=%s (got %s)' % (k, v, have.get(k, 'n'))
		for k, v in _fragment_settings(FRAGMENT).items()
		if have.get(k, 'n') != v]
	if lost:
		raise BuildError('the config lost settings of %s: %s' %
				 (FRAGMENT, ', '.join(lost)))
	_sh(make + ['-j%d' % JOBS, 'bzImage', 'vmlinux', 'modules'], src, logf)
	# a module build needs the config, the generated headers, the host
	# tools (scripts/, objtool) and Module.symvers, not the objects
	for dirpath, dirs, files in os.walk(src):
		rel = os.path.relpath(dirpath, src)
		if rel.split(os.sep)[0] in ('scripts', 'tools'):
			dirs[:] = []
			continue
		for f in files:
			if f.endswith('.o') or f.startswith('.tmp_vmlinux'):
				os.unlink(os.path.join(dirpath, f))
	shutil.rmtree(os.path.join(src, 'Documentation'), ignore_errors=True)


def _source_digest():
	"""sha256 of the source tarball, remembered by size and mtime next to
	the cache (hashing 140 MB costs about a second)."""
	try:
		st = os.stat(SOURCE)
	except OSError:
		raise Missing('%s missing (apt-get install %s)' %
			      (SOURCE, SOURCE_PACKAGE)) from None
	h = hashlib.sha256()
	with open(SOURCE, 'rb') as f:
		for chunk in iter(lambda: f.read(1 << 20), b''):
			h.update(chunk)
	return h.hexdigest(), st


def cache_key():
	"""A digest of every input of the build."""
	if not shutil.which(CC):
		raise Missing('%s not found (apt-get install %s)' % (CC, CC))
	digest, _ = _source_digest()
	h = hashlib.sha256()
	h.update(b'source ' + digest.encode() + b'\n')
	with open(FRAGMENT, 'rb') as f:
		h.update(b'fragment\n' + f.read())
	h.update(b'recipe\n' + inspect.getsource(_make_tree).encode())
	h.update(repr((CC, LOCALVERSION, JOBS)).encode())
	h.update(_sh([CC, '--version']).splitlines()[0].encode())
	return h.hexdigest()[:16]


def build(cache, log=print):
	"""Build the kernel once per key; return build.json's contents plus
	'root' (the unpacked layout above). Concurrent callers wait."""
	key = cache_key()
	base = os.path.join(cache, 'debug-kernel-' + key)
	os.makedirs(base, exist_ok=True)
	info_path = os.path.join(base, 'build.json')
	with open(os.path.join(base, '.lock'), 'w') as lockf:
		fcntl.flock(lockf, fcntl.LOCK_EX)
		with contextlib.suppress(OSError, ValueError), \
		     open(info_path) as f:
			info = json.load(f)
			info['root'] = os.path.join(base, 'root')
			return info
		for old in os.listdir(base):
			if old not in ('.lock',):
				p = os.path.join(base, old)
				if os.path.isdir(p):
					shutil.rmtree(p)
				else:
					os.unlink(p)
		t0 = time.monotonic()
		log('debug kernel %s: building in %s (about an hour on 2 '
		    'busy cores; log in build.log)' % (key, base))
		src = os.path.join(base, 'src')
		os.makedirs(src)
		with open(os.path.join(base, 'build.log'), 'w') as logf:
			_sh(['tar', '-xf', SOURCE, '-C', src,
			     '--strip-components=1'], logf=logf)
			try:
				_make_tree(src, logf)
			except BuildError as e:
				logf.flush()
				with open(os.path.join(base, 'build.log')) as f:
					tail = f.read()[-3000:]
				raise BuildError('%s\n%s' % (e, tail)) from None
		abi = _sh(['make', '-s', 'LOCALVERSION=' + LOCALVERSION,
			   'kernelrelease'], cwd=src).strip()
		root = os.path.join(base, 'root')
		boot = os.path.join(root, 'boot')
		os.makedirs(boot)
		os.makedirs(os.path.join(root, 'lib', 'modules'))
		os.makedirs(os.path.join(root, 'usr', 'src'))
		shutil.move(os.path.join(src, 'vmlinux'),
			    os.path.join(boot, 'vmlinux-' + abi))
		shutil.copy(os.path.join(src, 'arch/x86/boot/bzImage'),
			    os.path.join(boot, 'vmlinuz-' + abi))
		shutil.copy(os.path.join(src, '.config'),
			    os.path.join(boot, 'config-' + abi))
		shutil.copy(os.path.join(src, 'drivers/virt/vmgenid.ko'),
			    os.path.join(root, 'lib', 'modules', 'vmgenid.ko'))
		os.rename(src, os.path.join(root, 'usr', 'src',
					    'linux-headers-' + abi))
		size = int(_sh(['du', '-sb', base]).split()[0])
		info = {'key': key, 'abi': abi,
			'build_seconds': round(time.monotonic() - t0),
			'size_bytes': size, 'cc': CC,
			'source': SOURCE_PACKAGE + ' ' + _sh(
				['dpkg-query', '-W', '-f', '${Version}',
				 SOURCE_PACKAGE]).strip()}
		with open(info_path + '.tmp', 'w') as f:
			json.dump(info, f, indent=1)
		os.rename(info_path + '.tmp', info_path)
		log('debug kernel %s (%s) built in %d s, %.1f GB' %
		    (key, abi, info['build_seconds'], size / 1e9))
		info['root'] = root
		return info


def main():
	ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	ap.add_argument('--cache', default=os.environ.get('VMCTL_CACHE') or (
		'/var/cache/libvmgenid' if os.geteuid() == 0 else
		os.path.expanduser('~/.cache/libvmgenid')))
	ap.add_argument('--key', action='store_true',
			help='print the cache key and exit')
	args = ap.parse_args()
	try:
		if args.key:
			print(cache_key())
			return 0
		info = build(args.cache,
			     log=lambda m: print(m, file=sys.stderr, flush=True))
	except Missing as e:
		print('SKIP: %s' % e)
		return 77
	except BuildError as e:
		print('debug kernel: %s' % e, file=sys.stderr)
		return 1
	print(json.dumps(info, indent=1))
	return 0


if __name__ == '__main__':
	sys.exit(main())
