#!/bin/sh
# test_watch.sh - foundation-ctl watch and foundation-inspect changes from
# the shell: every line of a watch checked (text and JSON), --prefix,
# --from, --count, an interrupt (exit 0), a death's removals with its
# graveyard number, an overrun (exit 1), a segment made with --changes off,
# bad usage (exit 2).
#
# usage: test_watch.sh BIN_DIR   ($FOUNDATION_REAPERD, if set, names the reaper)
set -eu

bin=${1:?usage: test_watch.sh BIN_DIR}
ctl="$bin/foundation-ctl"
inspect="$bin/foundation-inspect"
FOUNDATION_REAPERD=${FOUNDATION_REAPERD:-$bin/foundation-reaperd}
export FOUNDATION_REAPERD
unset FOUNDATION_NO_AUTOREAPER
seg="fdn-watch-$$"
export FOUNDATION_SEGMENT="$seg"
tmp=$(mktemp -d)
sleepers=""
watchers=""
passed=0
. "$(dirname "$0")/tools_lib.sh"

cleanup() {
	for p in $sleepers $watchers; do
		kill -9 "$p" 2>/dev/null || true
	done
	"$ctl" --segment "$seg" destroy >/dev/null 2>&1 || true
	"$ctl" --segment "$seg-off" destroy >/dev/null 2>&1 || true
	"$ctl" --segment "$seg-tiny" destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# wait_lines FILE N: until FILE has N lines (20 s at most).
wait_lines() {
	i=0
	while [ "$(wc -l <"$1" 2>/dev/null || echo 0)" -lt "$2" ]; do
		i=$((i + 1))
		[ $i -lt 400 ] || fail "$1: fewer than $2 lines after 20 s"
		sleep 0.05
	done
}

run 0 "create" "$ctl" create --entries 1000 --processes 64 --threads 64
sleep 600 &
owner=$!
sleepers="$owner"

# A watch of svc/ started before the changes: four lines, in order.
"$ctl" watch --prefix svc/ --count 4 >"$tmp/w1" 2>"$tmp/w1.err" &
w1=$!
watchers="$w1"
sleep 0.3 # the subscription starts at the head: let it be taken first
run 0 "register svc/a" "$ctl" register svc/a --pid "$owner" --attr capability=gpu
run 0 "register other" "$ctl" register other --pid "$owner"
run 0 "update svc/a" "$ctl" update svc/a --attr weight:=2
run 0 "register svc/b" "$ctl" register svc/b --pid "$owner"
run 0 "unregister svc/a" "$ctl" unregister svc/a
wait "$w1" || fail "watch --count 4: exit status $?"
ok
cp "$tmp/w1" "$tmp/out"
# Revisions increase; they need not be consecutive (a writer preempted
# between reserving its revision and claiming its record for 10 ms has it
# voided by a waiting reader, and takes the next one).
[ "$(cut -d' ' -f2- "$tmp/out" | sed -n 1p)" = "registered pid=$owner svc/a" ] || fail "line 1"
ok
[ "$(cut -d' ' -f2- "$tmp/out" | sed -n 2p)" = "updated pid=$owner svc/a" ] || fail "line 2 (other filtered)"
ok
[ "$(cut -d' ' -f2- "$tmp/out" | sed -n 3p)" = "registered pid=$owner svc/b" ] || fail "line 3"
ok
[ "$(cut -d' ' -f2- "$tmp/out" | sed -n 4p)" = "unregistered pid=$owner svc/a" ] || fail "line 4"
ok
[ "$(wc -l <"$tmp/out")" -eq 4 ] || fail "exactly 4 lines"
ok
cut -d' ' -f1 "$tmp/out" | sort -n -c -u || fail "revisions increase"
ok
[ ! -s "$tmp/w1.err" ] || fail "watch wrote to stderr"
ok

# --from 0: the whole history, every key; JSON, one object per line.
run 0 "watch --from 0 --json" "$ctl" watch --from 0 --json --count 5
[ "$(wc -l <"$tmp/out")" -eq 5 ] || fail "5 JSON lines"
ok
python3 - "$tmp/out" "$owner" <<'EOF' || fail "JSON lines"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
owner = int(sys.argv[2])
want = [("registered", "svc/a"), ("registered", "other"), ("updated", "svc/a"),
        ("registered", "svc/b"), ("unregistered", "svc/a")]
for l, (kind, key) in zip(lines, want):
    assert l["kind"] == kind and l["key"] == key, l
    assert l["pid"] == owner and l["time_ns"] > 0 and "death" not in l, l
assert all(a["revision"] < b["revision"] for a, b in zip(lines, lines[1:]))
assert all(a["time_ns"] <= b["time_ns"] for a, b in zip(lines, lines[1:]))
EOF
ok
rb=$(sed -n 3p "$tmp/w1" | cut -d' ' -f1)
run 0 "watch --from REV --count 1" "$ctl" watch --from $((rb - 1)) --count 1
out_is "watch --from REV" "$rb registered pid=$owner svc/b"

# The owner dies: its entries' removals, with the death's number.
"$ctl" watch --prefix svc/ --json >"$tmp/w2" 2>"$tmp/w2.err" &
w2=$!
watchers="$watchers $w2"
sleep 0.3
kill -9 "$owner"
wait_lines "$tmp/w2" 1
cp "$tmp/w2" "$tmp/out"
run 0 "inspect graveyard" "$inspect" graveyard --json
cp "$tmp/out" "$tmp/gy"
cp "$tmp/w2" "$tmp/out"
python3 - "$tmp/out" "$tmp/gy" "$owner" <<'EOF' || fail "removal line"
import json, sys
l = json.loads(open(sys.argv[1]).readline())
gy = json.load(open(sys.argv[2]))
owner = int(sys.argv[3])
num = [d for d in gy["graveyard"] if d["pid"] == owner][0]["number"]
assert l["kind"] == "removed" and l["key"] == "svc/b" and l["pid"] == owner, l
assert l["death"] == num, (l, num)
EOF
ok
# Interrupted: exit 0.
kill -INT "$w2"
wait "$w2" || fail "watch after SIGINT: exit status $?"
ok

# The inspector's view of the log.
run 0 "inspect changes" "$inspect" changes --prefix svc/
out_has "inspect changes" "registered"
out_has "inspect changes" "svc/b"
out_lacks "inspect changes: prefix" " other"
run 0 "inspect changes --json" "$inspect" changes --json
json "inspect changes --json" "d['revision'] >= 7 and len(d['changes']) == 7 and [c['kind'] for c in d['changes'][5:]] == ['removed'] * 2 and d['changes'][5]['death'] == d['changes'][6]['death']"
run 0 "inspect stats" "$inspect" stats
out_has "stats: revision" "changes"

# An overrun: a 16-record log, a watch from revision 0 after 40 changes.
run 0 "create tiny" "$ctl" --segment "$seg-tiny" create --entries 100 --changes 16
sleep 600 &
sleepers="$sleepers $!"
i=0
while [ $i -lt 20 ]; do
	"$ctl" --segment "$seg-tiny" register "k$i" --pid "$!" >/dev/null
	"$ctl" --segment "$seg-tiny" unregister "k$i" >/dev/null
	i=$((i + 1))
done
run 1 "watch overrun" "$ctl" --segment "$seg-tiny" watch --from 0
err_is "watch overrun" "foundation-ctl: watch \"\": changes after revision 0 were overwritten before they were read"

# No change log.
run 0 "create --changes off" "$ctl" --segment "$seg-off" create --entries 100 --changes off
run 1 "watch without a log" "$ctl" --segment "$seg-off" watch
err_is "watch without a log" "foundation-ctl: watch \"\": segment has no change log (created with changes off)"

# Bad usage: exit 2, one line.
run 2 "watch --from x" "$ctl" watch --from x
run 2 "watch KEY" "$ctl" watch svc/
run 2 "create --changes 100" "$ctl" create --changes 100
run 2 "create --changes 8" "$ctl" create --changes 8
run 0 "watch --help" "$ctl" watch --help
out_has "watch --help" "--prefix P"

echo "$passed passed, 0 failed"
