# SPDX-License-Identifier: MIT
"""Out-of-tree module builds against a fetched kernel's headers, kept in
the cache under the digest of their inputs."""

import fcntl
import fnmatch
import hashlib
import os
import shutil

from .common import HarnessError, Skip, log, run


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
