#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Totals the meson test logs (meson-logs/testlog*.json) of every build dir
given: one line per log, then the closing line 'N passed, N failed, N skipped'.
With --no-skips, any skipped test fails the run."""
import glob
import json
import sys

no_skips = "--no-skips" in sys.argv
dirs = [a for a in sys.argv[1:] if a != "--no-skips"]
total = {"passed": 0, "failed": 0, "skipped": 0}
skipped = []
for path in sorted(p for d in dirs
                   for p in glob.glob(f"{d}/meson-logs/testlog*.json")):
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    with open(path) as log:
        for line in log:
            test = json.loads(line)
            result = test["result"]
            if result in ("OK", "EXPECTEDFAIL"):
                counts["passed"] += 1
            elif result == "SKIP":
                counts["skipped"] += 1
                skipped.append(f"{path}: {test['name']}")
            else:
                counts["failed"] += 1
    print(f"{path}: {counts['passed']} passed, {counts['failed']} failed,"
          f" {counts['skipped']} skipped")
    for key in total:
        total[key] += counts[key]
print(f"{total['passed']} passed, {total['failed']} failed,"
      f" {total['skipped']} skipped")
if no_skips and skipped:
    # CI installs everything the tests need, so a skip there is a failure.
    print("skipped, and --no-skips forbids it:\n  " + "\n  ".join(skipped))
    sys.exit(1)
if total["passed"] == 0:
    print("no test passed: nothing was checked")
    sys.exit(1)
sys.exit(1 if total["failed"] else 0)
