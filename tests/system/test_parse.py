#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The system test's verdicts on the host, without QEMU or root: the
ServerHello parse, the agent's report, the boot timeline, the comparison
of clones and the expectations (each one shown able to fail)."""

import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clones  # noqa: E402
import machine  # noqa: E402

# `openssl s_client -msg` (OpenSSL 3.0), one TLS 1.3 handshake
HELLO = '''>>> TLS 1.3, Handshake [length 0137], ClientHello
    01 00 01 33 03 03 00 11
<<< TLS 1.3, Handshake [length 007a], ServerHello
    02 00 00 76 03 03 b3 63 86 a7 9f 7b f8 55 50 31
    ac 3b 65 09 30 df c6 62 5c 43 b2 47 f6 c9 ca 5d
    25 e1 7b 66 2f d1 20 4b 50 fd 7c 32 6c 2f 1e 57
    b1 ce 99 4b 41 d5 d3 e6 0c 48 59 47 80 27 fd ce
<<< TLS 1.2, RecordHeader [length 0005]
'''

REPORT = '''[   30.1] something
SYSIMG: module loaded=yes mode=acpi guid_page="offered (GUID at byte 40)" dmesg_s=3.512345
SYSIMG: load-unit ActiveState=active Result=success UnitFileState=enabled
SYSIMG: node owner=root group=sysgenid mode=664
SYSIMG: proc pid=310 comm=nginx unit=nginx.service sysgenid=yes start_s=12.40
SYSIMG: proc pid=311 comm=nginx unit=nginx.service sysgenid=yes start_s=12.90
SYSIMG: proc pid=290 comm=python3 unit=sysimg-tokens-python.service sysgenid=no start_s=11.02
SYSIMG: proc pid=99 comm=sh unit=session-1.scope sysgenid=no start_s=1.00
SYSIMG: status | race-free:          yes
SYSIMG: ready uptime=40.00
'''


class Parse(unittest.TestCase):
	def test_server_random(self):
		m = clones.HELLO_RX.search(HELLO)
		self.assertTrue(m)
		data = bytes.fromhex(''.join(m.group(1).split()))
		self.assertEqual(data[6:38].hex(),
				 'b36386a79f7bf8555031ac3b650930df'
				 'c6625c43b247f6c9ca5d25e17b662fd1')

	def test_report(self):
		r = machine.Report(REPORT)
		self.assertEqual(r.first('module')['guid_page'],
				 'offered (GUID at byte 40)')
		self.assertEqual(len(r.lines['proc']), 4)
		self.assertIn('race-free:          yes', r.status_text())
		mod, first, who = machine.timeline(r)
		# the scope's process is no service; the earliest service
		self.assertEqual((mod, first), (3.512345, 11.02))
		self.assertIn('sysimg-tokens-python.service', who)


class Status(unittest.TestCase):
	def test_status_procs(self):
		text = ('SYSIMG: status | source:             none\n'
			'SYSIMG: status | processes:          3 use libvmgenid\n'
			'SYSIMG: status |       412 nginx            '
			'none-waiting\n'
			'SYSIMG: status |       420 my prog          sysgenid\n'
			'SYSIMG: status |       431 python3          none  '
			'<- NOT PROTECTED\n'
			'SYSIMG: status |       440 node             '
			'not initialised\n')
		got = machine.status_procs(machine.Report(text).status_text())
		self.assertEqual(got, {'412': 'none-waiting', '420': 'sysgenid',
				       '431': 'none', '440': 'not initialised'})


class LateGap(unittest.TestCase):
	def test_only_nginx_master(self):
		import system_test
		procs = [{'pid': '336', 'unit': 'nginx.service', 'sysgenid': 'yes'},
			 {'pid': '334', 'unit': 'nginx.service', 'sysgenid': 'no'},
			 {'pid': '211', 'unit': 'py.service', 'sysgenid': 'no'}]
		left = system_test.late_known_gap(procs)
		self.assertEqual([p['pid'] for p in left], ['336', '211'])
		# a master that switched stays in the checks
		procs[1]['sysgenid'] = 'yes'
		self.assertEqual(len(system_test.late_known_gap(procs)), 3)


class Loader(unittest.TestCase):
	def test_who_loaded(self):
		import system_test
		unit = {'Result': 'success',
			'ExecMainStartTimestampMonotonic': '32825393',
			'ExecMainExitTimestampMonotonic': '34339229'}
		self.assertEqual(system_test.who_loaded(33.45, unit),
				 'sysgenid-load.service')
		# loaded after the unit ran (udev, a late modprobe)
		self.assertNotEqual(system_test.who_loaded(40.0, unit),
				    'sysgenid-load.service')
		# the unit masked or skipped
		self.assertNotEqual(system_test.who_loaded(33.45, {}),
				    'sysgenid-load.service')


class Tokens(unittest.TestCase):
	def test_last_seqs(self):
		log = ('TOK py-ssl 7 aa\nTOK py-ssl 8 bb\nTOK node-bytes 3 cc\n'
		       'TOK node-preload-uuid 5 u\n'
		       'TOK py-random 9 d')	# the save cut the tick
		# a service's highest number, plus the backlog's tick
		self.assertEqual(clones.last_seqs(log),
				 {'py-ssl': 10, 'py-random': 10, 'node-bytes': 4,
				  'node-preload-uuid': 6})
		self.assertEqual(clones.service_of('py-control-random'),
				 'py-control')
		self.assertEqual(clones.service_of('node-preload-math'),
				 'node-preload')


def result(name, **values):
	r = clones.CloneResult(name)
	for k, v in values.items():
		r.values[k.replace('_', '-')] = v
	return r


class Compare(unittest.TestCase):
	def test_repeats(self):
		res = [result('a', py_ssl=['1', '2'], nginx=['x']),
		       result('b', py_ssl=['3', '2'], nginx=['y'])]
		table = clones.compare(res)
		self.assertEqual(table['py-ssl'], (2, 4, 1, 2))
		self.assertEqual(table['nginx'], (2, 2, 0, 0))
		# the same value twice in one clone is no repeat across clones
		self.assertEqual(clones.compare([result('a', nginx=['x', 'x'])])
				 ['nginx'], (1, 2, 0, 0))

	def test_verdicts(self):
		a = result('a')
		b = result('b')
		for s in clones.STREAMS:
			a.values[s] = [s + 'a']
			b.values[s] = [s + 'b']
		# every control repeats
		for s, (_, want) in clones.STREAMS.items():
			if want == 'repeats':
				b.values[s] = [s + 'a']
		lines, bad = clones.verdicts(clones.compare([a, b]), 2)
		self.assertEqual(bad, [])
		self.assertEqual(len(lines), len(clones.STREAMS))
		# a repeat where 0 is wanted fails
		b.values['py-ssl'] = ['py-ssla']
		_, bad = clones.verdicts(clones.compare([a, b]), 2)
		self.assertEqual(len(bad), 1)
		self.assertTrue(bad[0].startswith('py-ssl'))
		# ... unless the expectation says report
		_, bad = clones.verdicts(clones.compare([a, b]), 2,
					 {'py-ssl': 'report'})
		self.assertEqual(bad, [])
		# a control that does not repeat fails
		b.values['nginx-control'] = ['other']
		_, bad = clones.verdicts(clones.compare([a, b]), 2,
					 {'py-ssl': 'report'})
		self.assertEqual(len(bad), 1)
		self.assertTrue(bad[0].startswith('nginx-control'))
		# a stream missing from a clone fails unless reported only
		del b.values['py-ssl']
		_, bad = clones.verdicts(clones.compare([a, b]), 2,
					 {'nginx-control': 'report'})
		self.assertEqual(len(bad), 1)


class Machine(unittest.TestCase):
	"""SystemVM against vmctl.VM as it is today, without booting: a
	change to the shared driver that the system image does not follow
	fails here, not after the image is built."""

	def test_command_line(self):
		with tempfile.TemporaryDirectory() as d:
			vm = machine.SystemVM('/k/vmlinuz', '/k/initrd', '/d.qcow2',
					      [8443, 8444], d, 'saved', 'quiet')
			words = vm.cmdline()
			self.assertIn('vmgenid,guid=auto', words)
			self.assertIn('/k/vmlinuz', words)
			self.assertIn('hostfwd=tcp:127.0.0.1:8443-:443,'
				      'hostfwd=tcp:127.0.0.1:8444-:4443',
				      ' '.join(words))
			self.assertTrue(any(w.endswith(' quiet') for w in words))
			clone = vm.restore_from(os.path.join(d, 'state'), 'c0')
			# the same machine; only its console and QMP paths differ
			def same(ws):
				return [w for w in ws if d not in w and
					'vmctl.' not in w]
			self.assertEqual(same(clone.cmdline()), same(words))
			self.assertEqual(clone.incoming, os.path.join(d, 'state'))
			for v in (vm, clone):
				shutil.rmtree(v.sockdir)


if __name__ == '__main__':
	unittest.main()
