#!/bin/sh
# test_demo.sh - the README's main job runs to the end, leaves nothing
# behind, and shows what the killed worker was doing (its spans and context
# from the graveyard).
#
# usage: test_demo.sh BIN_DIR
set -eu
bin=${1:?usage: test_demo.sh BIN_DIR}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
seg="fdn-demo-test-$$"
"$bin/foundation-demo" --segment "$seg" >"$out" 2>&1 || {
	cat "$out"
	echo "FAIL: foundation-demo exited non-zero" >&2
	exit 1
}
fail() {
	cat "$out"
	echo "FAIL: $*" >&2
	exit 1
}
# The graveyard section: the dead worker's three spans, aborted, and its context.
sed -n '/^\$ foundation-inspect --segment .* graveyard --pid/,/^Statistics/p' "$out" >"$out.g"
grep -qE '^ +0 +serve +[0-9a-f]{32} .* aborted +worker=1$' "$out.g" || fail "graveyard: no serve span"
grep -qE '^ +1 +handle_request .* aborted +route=/orders$' "$out.g" || fail "graveyard: no handle_request span"
grep -qE '^ +2 +query_db .* aborted +table=orders$' "$out.g" || fail "graveyard: no query_db span"
grep -q 'context: tenant=globex,order_id=4701' "$out.g" || fail "graveyard: no context"
grep -qE '^ +[0-9]+ +[0-9]+ +SIGKILL ' "$out.g" || fail "graveyard: the death is not recorded as SIGKILL"
rm -f "$out.g"
grep -qE 'demo\.worker\.ready +queue_depth=15 +node=node-b$' "$out" || fail "no worker event in the ring"
grep -qE 'foundation\.process\.down +pid=[0-9]+,exit_signal=9,' "$out" || fail "no process.down event"
grep -qE '^use_shm_spans +on +on +built-in' "$out" || fail "no flags table"
grep -q '^0 violations$' "$out" || fail "the check found violations"
grep -q 'demo OK$' "$out" || fail "no 'demo OK'"
[ ! -e "/dev/shm/$seg" ] || fail "the segment was left behind"
if pgrep -f "foundation-reaperd --segment $seg" >/dev/null; then
	sleep 1
	! pgrep -f "foundation-reaperd --segment $seg" >/dev/null || fail "its reaper was left running"
fi
echo "demo OK: graveyard spans and context shown, nothing left behind"
