#!/bin/sh
# test_demo.sh - the README's main job runs to the end, leaves nothing
# behind, and shows what the killed worker was doing (its spans and context
# from the graveyard).  Stopped early -- foundation-demo | head -3 (SIGPIPE),
# SIGTERM, SIGINT -- it leaves no process (workers, guardian, reaper) and no
# segment either.
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

# gone SEG WHAT: within 10 s, no /dev/shm/SEG and no process of it (the
# demo, its workers and guardian, the reaper: all have "--segment SEG").
gone() {
	n=0
	while [ -e "/dev/shm/$1" ] || pgrep -f -- "--segment $1( |\$)" >/dev/null; do
		n=$((n + 1))
		if [ "$n" -gt 100 ]; then
			pgrep -af -- "--segment $1( |\$)" >&2 || true
			ls -l "/dev/shm/$1" >&2 2>/dev/null || true
			fail "$2: left behind after 10 s"
		fi
		sleep 0.1
	done
}

# A segment that exists already: the demo refuses it and leaves it alone
# (its guardian removes only a segment the demo created).
seg1="$seg-exists"
"$bin/foundation-ctl" --segment "$seg1" create --entries 100 >/dev/null
st=0
"$bin/foundation-demo" --segment "$seg1" >"$out" 2>&1 || st=$?
[ "$st" -eq 1 ] || fail "existing segment: exit status $st, expected 1"
grep -q "create segment: already exists" "$out" || fail "existing segment: no message"
sleep 0.5
[ -e "/dev/shm/$seg1" ] || fail "existing segment: removed by the demo"
"$bin/foundation-ctl" --segment "$seg1" destroy >/dev/null
gone "$seg1" "existing segment"

# SIGPIPE: the reader goes after three lines.
seg2="$seg-pipe"
"$bin/foundation-demo" --segment "$seg2" | head -3 >"$out"
[ "$(wc -l <"$out")" -eq 3 ] || fail "| head -3: not three lines"
grep -q "^created segment \"$seg2\"" "$out" || fail "| head -3: no first line"
gone "$seg2" "foundation-demo | head -3"

# SIGTERM and SIGINT once its workers run: the demo is stopped (SIGSTOP) as
# soon as it reports them all registered, and before it kills one; then sent
# the signal and continued.  (A background job of a script ignores SIGINT;
# env gives the demo the default.)
for sig in TERM INT; do
	s3="$seg-$sig"
	tries=0
	while :; do
		env --default-signal=INT "$bin/foundation-demo" --segment "$s3" --workers 2 \
			>"$out" 2>&1 </dev/null &
		d=$!
		end=$(($(date +%s) + 10))
		until grep -q "^The registry: each worker" "$out" || [ "$(date +%s)" -ge "$end" ]; do
			:
		done
		kill -STOP "$d" 2>/dev/null || true
		# demo + guardian + 2 workers + reaper, none killed yet
		if ! grep -q "SIGKILL worker-1" "$out" && kill -0 "$d" 2>/dev/null &&
			[ "$(pgrep -c -f -- "--segment $s3( |\$)" || true)" -ge 5 ]; then
			break
		fi
		# too late (or too early): let it finish, clean, try again
		kill -CONT "$d" 2>/dev/null || true
		wait "$d" || true
		gone "$s3" "demo (ran to the end)"
		tries=$((tries + 1))
		[ "$tries" -lt 10 ] || fail "SIG$sig: could not stop the demo while its workers ran"
	done
	kill -"$sig" "$d"
	kill -CONT "$d"
	st=0
	wait "$d" || st=$?
	[ "$st" -gt 128 ] || fail "SIG$sig: the demo exited with $st, not by the signal"
	gone "$s3" "demo stopped by SIG$sig"
done

echo "demo OK: graveyard spans and context shown, nothing left behind (also after | head -3, SIGTERM, SIGINT)"
