#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Host-side checks of vmctl.py's parsing, without QEMU: the verdicts the VM
tests rest on (TAP lines, summaries, skips, expected failures, kernel
warnings, the headers' Makefile rewrite) must fail when they should."""

import os
import re
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vmctl  # noqa: E402


def run_block(body, prog='p', ph='abi', rc=0):
	return ('noise\nvmctl: run %s %s\n%s\nvmctl: exit %s %s rc=%d\n'
		% (prog, ph, body, prog, ph, rc))


class CheckRun(unittest.TestCase):
	def verdict(self, text, xfail=None, prog='p', ph='abi'):
		return vmctl.check_run(text, prog, ph, xfail)

	def test_pass(self):
		p, f, _ = self.verdict(run_block(
			'ok 1 - a\nok 2 - b\n2 passed, 0 failed'))
		self.assertEqual((p, f), (2, 0))

	def test_not_ok(self):
		p, f, m = self.verdict(run_block(
			'ok 1 - a\nnot ok 2 - b: why\n1 passed, 1 failed', rc=1))
		self.assertEqual(p, 1)
		self.assertGreater(f, 0)
		self.assertTrue(any('not ok 2 - b' in x for x in m))

	def test_skip_counts_as_neither(self):
		p, f, _ = self.verdict(run_block(
			'ok 1 - a\nok 2 - b # SKIP no rtc\n# 1 skipped\n'
			'1 passed, 0 failed'))
		self.assertEqual((p, f), (1, 0))

	def test_summary_must_agree(self):
		_, f, m = self.verdict(run_block('ok 1 - a\n2 passed, 0 failed'))
		self.assertEqual(f, 1)
		self.assertIn('disagrees', m[0])

	def test_missing_summary(self):
		_, f, _ = self.verdict(run_block('ok 1 - a'))
		self.assertEqual(f, 1)

	def test_no_tests(self):
		_, f, _ = self.verdict(run_block('0 passed, 0 failed'))
		self.assertEqual(f, 1)

	def test_exit_status(self):
		_, f, m = self.verdict(run_block('ok 1 - a\n1 passed, 0 failed',
						 rc=137))
		self.assertEqual(f, 1)
		self.assertIn('exit status 137', m[0])

	def test_missing_program(self):
		_, f, _ = self.verdict('vmctl: run q abi\n', prog='p')
		self.assertEqual(f, 1)

	def test_other_phase_not_taken(self):
		text = run_block('ok 1 - a\n1 passed, 0 failed', ph='before-save')
		_, f, _ = self.verdict(text, ph='after-restore')
		self.assertEqual(f, 1)

	def test_xfail(self):
		body = 'ok 1 - a\nnot ok 2 - reseed seen: no\n1 passed, 1 failed'
		_, f, _ = self.verdict(run_block(body, rc=1), xfail='reseed')
		self.assertEqual(f, 0)
		# an expected failure that passes is a failure
		body = 'ok 1 - a\nok 2 - reseed seen\n2 passed, 0 failed'
		_, f, _ = self.verdict(run_block(body), xfail='reseed')
		self.assertEqual(f, 1)
		# and other failures still count
		body = ('not ok 1 - a\nnot ok 2 - reseed seen\n'
			'0 passed, 2 failed')
		_, f, _ = self.verdict(run_block(body, rc=1), xfail='reseed')
		self.assertEqual(f, 1)


class KernelTrouble(unittest.TestCase):
	rx = re.compile(vmctl.KERNEL_TROUBLE)

	def test_matches(self):
		for line in (
			'[ 5.4] WARNING: CPU: 0 PID: 87 at x.c:4 f+0x5/0x10',
			'[ 5.4] BUG: kernel NULL pointer dereference, address: 0',
			'[ 5.4] Call Trace:',
			'[ 5.4] list_del corruption. prev->next should be x',
			'[ 9.0] INFO: task a:1 blocked for more than 120 seconds.',
			'[ 5.4] Kernel panic - not syncing: Fatal exception',
			# the debug kernel's checkers
			'[ 7.1] WARNING: possible circular locking dependency '
			'detected',
			'[ 7.1] WARNING: inconsistent lock state',
			'[ 7.1] BUG: sleeping function called from invalid '
			'context at kernel/locking/mutex.c:580',
			'[ 7.1] WARNING: suspicious RCU usage',
			'[ 7.1] BUG: KASAN: slab-use-after-free in f+0x1/0x2',
			'[ 7.1] ODEBUG: free active (active state 0) object',
			'[ 9.3] kmemleak: 2 new suspected memory leaks (see '
			'/sys/kernel/debug/kmemleak)'):
			self.assertTrue(self.rx.search(line), line)

	def test_ignores(self):
		for line in (
			'[ 5.4] sysgenid: loading out-of-tree module taints '
			'kernel.',
			'[ 5.4] sysgenid: module verification failed: signature '
			'and/or required key missing - tainting kernel',
			'[ 5.5] random: crng reseeded due to virtual machine fork',
			'ok 3 - unload while in use: EBUSY'):
			self.assertFalse(self.rx.search(line), line)

	def test_busybox_grep_syntax(self):
		# /init hands the same pattern to busybox grep -E (POSIX ERE):
		# no Python-only constructs
		self.assertNotIn('(?', vmctl.KERNEL_TROUBLE)
		self.assertNotIn('\\d', vmctl.KERNEL_TROUBLE)


class Kmemleak(unittest.TestCase):
	LOG = '''vmctl: kmemleak: unreferenced object 0xffff888003a1c000 (size 64):
vmctl: kmemleak:   comm "insmod", pid 71, jiffies 4294672000 (age 9.1s)
vmctl: kmemleak:   backtrace:
vmctl: kmemleak:     [<ffffffff8133>] kmalloc_trace+0x26/0x60
vmctl: kmemleak:     [<ffffffffc0a1>] sysgenid_init+0x3a/0x1000 [sysgenid]
vmctl: kmemleak after-tests scanned
vmctl: rmmod sysgenid rc=0
vmctl: kmemleak after-unload scanned
'''

	def test_report(self):
		leaks = vmctl.kmemleak_leaks(self.LOG)
		self.assertEqual(len(leaks), 1)
		self.assertIn('(size 64)', leaks[0])
		self.assertIn('sysgenid_init', leaks[0])

	def test_clean(self):
		self.assertEqual(vmctl.kmemleak_leaks(
			'vmctl: kmemleak after-tests scanned\n'), [])

	def test_kernel_ok(self):
		class Fake:
			name = 'vm'

			def __init__(self, text):
				self.text = text

			def read_log(self):
				return self.text
		self.assertFalse(vmctl.kernel_ok(Fake(self.LOG)))
		clean = 'vmctl: kmemleak after-tests scanned\n' \
			'vmctl: rmmod sysgenid rc=0\n'
		self.assertTrue(vmctl.kernel_ok(Fake(clean)))
		# a module that would not unload at the end holds something
		self.assertFalse(vmctl.kernel_ok(Fake(
			'vmctl: rmmod sysgenid rc=1\n')))


class HeadersMakefile(unittest.TestCase):
	def test_rewrite(self):
		with tempfile.TemporaryDirectory() as root:
			abi = '6.1.0-99-amd64'
			k = vmctl.Kernel(root, abi)
			common = os.path.join(root, 'usr', 'src',
					      'linux-headers-6.1.0-99-common')
			os.makedirs(k.kdir)
			os.makedirs(common)
			open(os.path.join(common, 'Makefile'), 'w').close()
			mk = os.path.join(k.kdir, 'Makefile')
			with open(mk, 'w') as f:
				f.write('include /usr/src/linux-headers-6.1.0-99-'
					'common/Makefile\n')
			vmctl._rewrite_headers_makefile(k)
			with open(mk) as f:
				text = f.read()
			self.assertNotIn('/usr/src', text)
			self.assertIn('../linux-headers-6.1.0-99-common/Makefile',
				      text)
			self.assertTrue(text.endswith('\n'))
			# a second pass finds nothing to rewrite: an error, not
			# a silent success
			with self.assertRaises(vmctl.HarnessError):
				vmctl._rewrite_headers_makefile(k)


class KernelChoice(unittest.TestCase):
	def setUp(self):
		self.saved = os.environ.pop('VMCTL_KERNEL', None)

	def tearDown(self):
		os.environ.pop('VMCTL_KERNEL', None)
		if self.saved is not None:
			os.environ['VMCTL_KERNEL'] = self.saved

	def test_precedence(self):
		self.assertEqual(vmctl.kernel_name(), 'generic')
		os.environ['VMCTL_KERNEL'] = 'cloud'
		self.assertEqual(vmctl.kernel_name(), 'cloud')
		# the option wins over the environment
		self.assertEqual(vmctl.kernel_name('6.12'), '6.12')

	def test_unknown(self):
		os.environ['VMCTL_KERNEL'] = 'rt'
		with self.assertRaises(vmctl.HarnessError):
			vmctl.kernel_name()
		with self.assertRaises(SystemExit):
			vmctl.main(['fetch'])

	def test_abi_names(self):
		for abi, name in (('6.1.0-57-amd64', 'generic'),
				  ('6.1.0-57-cloud-amd64', 'cloud'),
				  ('6.12.117+deb12-amd64', '6.12')):
			self.assertEqual(vmctl.Kernel('/x', abi).name, name)
			for other, (_, rx) in vmctl.KERNELS.items():
				self.assertEqual(bool(re.fullmatch(rx, abi)),
						 other == name, (abi, other))

	def test_common_headers(self):
		# the cloud headers depend on the generic -common package
		self.assertEqual(vmctl.common_headers('6.1.0-57-cloud-amd64'),
				 'linux-headers-6.1.0-57-common')
		self.assertEqual(vmctl.common_headers('6.1.0-57-amd64'),
				 'linux-headers-6.1.0-57-common')
		self.assertEqual(vmctl.common_headers('6.12.117+deb12-amd64'),
				 'linux-headers-6.12.117+deb12-common')


class ModuleKey(unittest.TestCase):
	def test_key(self):
		class K:
			abi = '6.1.0-99-amd64'

			def cc(self):
				return 'gcc-12'
		with tempfile.TemporaryDirectory() as src:
			def write(name, text):
				with open(os.path.join(src, name), 'w') as f:
					f.write(text)
			write('a.c', 'int a;\n')
			k1 = vmctl._module_key(K(), src)
			# build products do not change what is built
			write('a.o', 'junk')
			write('.a.o.cmd', 'junk')
			self.assertEqual(vmctl._module_key(K(), src), k1)
			# a source change does
			write('a.c', 'int b;\n')
			k2 = vmctl._module_key(K(), src)
			self.assertNotEqual(k2, k1)
			write('b.h', '')
			self.assertNotEqual(vmctl._module_key(K(), src), k2)
			# and so does another kernel
			K.abi = '6.1.0-99-cloud-amd64'
			self.assertNotEqual(vmctl._module_key(K(), src), k2)


class WaitPhase(unittest.TestCase):
	"""VM.wait_phase() against a serial log written here, without QEMU:
	the phase is sent again until /init says it runs it."""

	def vm(self, d, alive=True):
		kernel = type('K', (), {'min_mem': 0})()
		vm = vmctl.VM(kernel, 'initrd', d, 'c1')
		self.addCleanup(lambda: os.path.isdir(vm.sockdir) and
				os.rmdir(vm.sockdir))
		open(vm.logpath, 'w').close()
		sent = []

		def send(line):
			sent.append(line)
			if len(sent) == 2:	# the second one gets through
				with open(vm.logpath, 'a') as f:
					# the serial console's line end
					f.write('vmctl: phase after-restore\r\n')
		vm.send = send
		vm.alive = lambda: alive
		vm.proc = type('P', (), {'returncode': None if alive else 1})()
		return vm, sent

	def test_resends_until_seen(self):
		with tempfile.TemporaryDirectory() as d:
			vm, sent = self.vm(d)
			vm.send('after-restore')
			vm.wait_phase('after-restore', timeout=5,
				      resend_every=0.2)
			self.assertEqual(sent, ['after-restore'] * 2)

	def test_gives_up(self):
		with tempfile.TemporaryDirectory() as d:
			vm, sent = self.vm(d)
			with self.assertRaises(vmctl.HarnessError):
				vm.wait_phase('other', timeout=0.5,
					      resend_every=0.2)
			self.assertTrue(sent)
			vm, sent = self.vm(d, alive=False)
			with self.assertRaises(vmctl.HarnessError):
				vm.wait_phase('other', timeout=5,
					      resend_every=0.2)
			self.assertEqual(sent, [])


class Distinct(unittest.TestCase):
	class Fake:
		def __init__(self, name, text):
			self.name = name
			self.text = text

		def read_log(self):
			return self.text

	def test(self):
		a = self.Fake('c1', 'vmctl-distinct: 00ff\n')
		b = self.Fake('c2', 'vmctl-distinct: 11ee\n')
		c = self.Fake('c3', 'vmctl-distinct: 00ff\n')
		self.assertTrue(vmctl.check_distinct([a, b]))
		self.assertFalse(vmctl.check_distinct([a, b, c]))


class Package(unittest.TestCase):
	"""vmctl re-exports the package vmharness: one object per name, the
	harness's state held once."""

	def test_one_object_per_name(self):
		import vmharness
		for part in vmharness.PARTS:
			for name, value in vars(part).items():
				if not name.startswith('__'):
					self.assertIs(getattr(vmctl, name), value,
						      (part.__name__, name))

	def test_state_once(self):
		from vmharness import common, qemu
		self.assertIs(vmctl._timings, common._timings)
		self.assertIs(vmctl._live, qemu._live)


if __name__ == '__main__':
	unittest.main()
