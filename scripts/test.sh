#!/usr/bin/env bash
# test.sh [KIND] - install deps, build, run every test, print the totals.
# KIND: debug (default), asan, tsan, clang, release. HETMM_LONG=1 for long
# randomized runs, HETMM_SEED=N to replay a seed.
# Ends with "N passed, N failed" and exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:-debug}
scripts/deps.sh
dir=$(scripts/build.sh "$kind" | tail -1)
suite_args=(--no-suite long)
if [ "$kind" = tsan ]; then
	# The concurrent suites; TSan slows everything else down for nothing.
	suite_args=(--suite concurrent)
	export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp"
fi
if [ "$kind" = asan ]; then
	export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fi
status=0
meson test -C "$dir" --num-processes 2 --print-errorlogs "${suite_args[@]}" \
	>"$dir/test-output.txt" 2>&1 || status=$?
grep -E "^ *[0-9]+/[0-9]+ " "$dir/test-output.txt" || true
python3 scripts/tap_total.py "$dir/meson-logs/testlog.json" "$kind" || status=1
if [ "$status" != 0 ]; then
	echo "--- failures (full log: $dir/meson-logs/testlog.txt) ---"
	grep -B2 -A30 -E "not ok|FAIL|ERROR|Sanitizer" "$dir/meson-logs/testlog.txt" | head -150 || true
fi
exit "$status"
