#!/usr/bin/env bash
# cli_test.sh HETMM - the hetmm command's contract, as TAP:
# exit codes, one-line errors, JSON that parses, a clean default run.
set -u
HETMM=$1
n=0
fails=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fails=$((fails + 1)); echo "not ok $n - $1"; }
check() { # description, expected exit, command...
	local desc=$1 want=$2
	shift 2
	"$@" >/tmp/cli_out.$$ 2>/tmp/cli_err.$$
	local got=$?
	if [ "$got" = "$want" ]; then ok "$desc"; else nok "$desc (exit $got, want $want)"; cat /tmp/cli_err.$$ | sed 's/^/# /'; fi
}
echo "1..14"
check "help exits 0" 0 "$HETMM" --help
check "run --help exits 0" 0 "$HETMM" run --help
check "bench --help exits 0" 0 "$HETMM" bench --help
check "no command exits 2" 2 "$HETMM"
check "unknown command exits 2" 2 "$HETMM" frob
check "unknown option exits 2" 2 "$HETMM" run --frob
check "unknown workload exits 2" 2 "$HETMM" run nosuch
check "bad --ram exits 2" 2 "$HETMM" run --ram 3M
check "bad --fail exits 2" 2 "$HETMM" run --fail 'alloc_pages:nth=0'
check "unknown bench exits 2" 2 "$HETMM" bench nosuch
"$HETMM" run --threads 1 >/dev/null 2>/tmp/cli_err.$$ --nope
lines=$(wc -l </tmp/cli_err.$$)
if [ "$lines" = 1 ]; then ok "errors are one line"; else nok "errors are one line ($lines lines)"; fi
check "default workload runs clean" 0 "$HETMM" run --seed 5
if "$HETMM" run --json --seed 5 | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["check"]["hetmm_check"]=="ok"; assert d["phys"]["pages_in_use_at_end"]==0' 2>/tmp/cli_err.$$; then
	ok "--json parses and reports a clean check"
else
	nok "--json parses and reports a clean check"
fi
if "$HETMM" run --seed 5 --fail 'alloc_pages:prob=0.02,seed=1;copy_page:every=7' >/tmp/cli_out.$$ 2>&1 &&
	grep -q "hetmm_check *ok" /tmp/cli_out.$$; then
	ok "injected failures leave the machine consistent"
else
	nok "injected failures leave the machine consistent"
fi
rm -f /tmp/cli_out.$$ /tmp/cli_err.$$
exit $((fails > 0))
