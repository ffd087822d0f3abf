#!/usr/bin/env python3
"""Total the TAP results of a meson test run: prints 'N passed, N failed'.

Each test program prints TAP (cmocka with CMOCKA_MESSAGE_OUTPUT=TAP). A
program that crashed before finishing its plan counts as one failure more.
Exit status 1 if anything failed or nothing ran.
"""
import json
import re
import sys

log, kind = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else ""
passed = failed = skips = 0
with open(log) as f:
    for line in f:
        t = json.loads(line)
        out = t.get("stdout") or ""
        ok = len(re.findall(r"^ok \d+(?! # SKIP)", out, re.M))
        skipped = len(re.findall(r"^ok \d+ # SKIP", out, re.M))
        bad = len(re.findall(r"^not ok \d+", out, re.M))
        plan = re.search(r"^1\.\.(\d+)", out, re.M)
        if t.get("result") not in ("OK", "EXPECTEDFAIL", "SKIP") and bad == 0:
            bad = 1  # crashed, timed out, or failed outside a test case
        elif plan and ok + skipped + bad < int(plan.group(1)):
            bad += int(plan.group(1)) - ok - skipped - bad
        passed += ok
        failed += bad
        skips += skipped
label = f"{kind}: " if kind else ""
print(f"{label}{passed} passed, {failed} failed"
      + (f", {skips} skipped" if skips else ""))
sys.exit(1 if failed or passed == 0 else 0)
