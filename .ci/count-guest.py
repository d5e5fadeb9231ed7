#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""'N passed, M failed' of the suite-`guest` tests in one meson JSON log,
the failing names after it. Usage: count-guest.py LOG 'NAME NAME ...' (the
suite's test names: one missing from the log is a failure, not a smaller
count). Shared by .ci/guest-kernels.sh and .ci/debug-kernel.sh."""
import json
import sys

path = sys.argv[1]
missing = set(sys.argv[2].split())
passed, bad = 0, []
try:
	with open(path) as log:
		for line in log:
			t = json.loads(line)
			# "project:suite+suite / name"
			suites = t['name'].split(' / ')[0].split(':')[-1].split('+')
			name = t['name'].split(' / ')[-1]
			if 'guest' not in suites:
				continue
			missing.discard(name)
			if t['result'] in ('OK', 'EXPECTEDFAIL'):
				passed += 1
			else:
				bad.append('%s: %s' % (name, t['result']))
except OSError as e:
	bad.append('no log: %s' % e)
bad += ['%s: not run' % name for name in sorted(missing)]
if passed == 0 and not bad:
	bad.append('no guest test ran')
print('%d passed, %d failed' % (passed, len(bad)))
for b in bad:
	print('  ' + b)
