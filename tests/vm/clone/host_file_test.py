#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""clone_app on the host, no VM: the file source stands in for sysgenid.

Runs clone_app with VMGENID_SOURCE=file:TMP, bumps the counter in that file
after some tokens (in place, as a generation service would: a truncating
rewrite would pull the mapped page from under the library), and checks what
the snapshot-clone test checks within one process: one generation step,
each reseed callback once, the in-flight txn fails, and after the step the
protected RNG leaves the control's stream while before it they agree.
Exit 0 pass, 1 fail.
"""

import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from snapshot_clone import Checker, Log  # noqa: E402


def main():
	ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
	ap.add_argument('--app', required=True)
	ap.add_argument('--tokens', type=int, default=20)
	ap.add_argument('--before', type=int, default=10)
	args = ap.parse_args()

	start_count = 41
	with tempfile.TemporaryDirectory(prefix='clone-host.') as tmp:
		gen = os.path.join(tmp, 'generation')
		with open(gen, 'wb') as f:
			f.write(struct.pack('=I', start_count))
		env = dict(os.environ, VMGENID_SOURCE='file:' + gen)
		proc = subprocess.Popen(
			[args.app, '--period-ms', '5', '--after',
			 str(args.tokens)], env=env, stdout=subprocess.PIPE,
			stderr=subprocess.STDOUT, text=True)
		out = []
		try:
			want = re.compile(r'^CLONE tok seq=%d ' % args.before)
			for line in proc.stdout:
				out.append(line)
				if want.match(line):
					break
			fd = os.open(gen, os.O_WRONLY)
			os.pwrite(fd, struct.pack('=I', start_count + 1), 0)
			os.close(fd)
			deadline = time.monotonic() + 30
			for line in proc.stdout:
				out.append(line)
				if time.monotonic() > deadline:
					break
			proc.wait(timeout=30)
		finally:
			if proc.poll() is None:
				proc.kill()
				proc.wait()
	log = Log('host', ''.join(out))
	chk = Checker()
	start = log.one('start')
	if not chk.check(start is not None and start['source'] == 'file',
			 'clone_app started on the file source'):
		sys.stdout.write(''.join(out[-20:]))
		return 1
	gen0 = int(start['gen'])
	toks = log.tokens()
	before = [t for t in toks if int(t['gen']) == gen0]
	after = [t for t in toks if int(t['gen']) != gen0]
	chk.check(proc.returncode == 0 and log.one('done') is not None,
		  'clone_app finished (exit %s)' % proc.returncode)
	chk.check(before and all(t['lib'] == t['ctl'] and
				 int(t['sgid']) == start_count
				 for t in before),
		  '%d tokens before the step, protected == control' %
		  len(before))
	chk.check(len(after) == args.tokens and
		  all(int(t['gen']) == gen0 + 1 and
		      int(t['sgid']) == start_count + 1 for t in after),
		  '%d tokens after the step, generation %d, counter %d' %
		  (len(after), gen0 + 1, start_count + 1))
	chk.check(all(t['lib'] != t['ctl'] for t in after),
		  'after the step the protected RNG left the control stream')
	for name in ('chacha', 'openssl'):
		runs = [cb for cb in log.all('cb') if cb['name'] == name]
		chk.check(len(runs) == 1 and runs[0]['n'] == '1' and
			  int(runs[0]['new']) == gen0 + 1,
			  'callback %s ran once' % name)
	inf = log.one('txn-inflight-commit')
	chk.check(inf is not None and inf['ok'] == '0',
		  'the txn begun before the step did not commit')
	if chk.failures:
		sys.stdout.write(''.join(out[-40:]))
	return 1 if chk.failures else 0


if __name__ == '__main__':
	sys.exit(main())
