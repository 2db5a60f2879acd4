#!/bin/sh
# test_boundary.sh - the tools where the segment's memory ends: a segment
# truncated under a running reaper, an `events --follow` walking it and a
# loop of `check` (each ends with "segment truncated", exit 1, never
# SIGBUS); `foundation-ctl create` on a full tmpfs (root: an 8 MiB tmpfs in
# a private mount namespace) says how much it needed and how much was
# free, and --sparse creates anyway; the tools find a segment in
# $FOUNDATION_SHM_DIR.
#
# usage: test_boundary.sh BIN_DIR
set -eu

bin=${1:?usage: test_boundary.sh BIN_DIR}
ctl="$bin/foundation-ctl"
inspect="$bin/foundation-inspect"
reaperd="$bin/foundation-reaperd"
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
seg="fdn-boundary-$$"
export FOUNDATION_SEGMENT="$seg"
export FOUNDATION_NO_AUTOREAPER=1
passed=0
pids=""
. "$here/tools_lib.sh"

cleanup() {
	for p in $pids; do
		kill -9 "$p" 2>/dev/null || true
	done
	FOUNDATION_SHM_DIR="$tmp/shm" "$ctl" destroy >/dev/null 2>&1 || true
	"$ctl" destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# ---- $FOUNDATION_SHM_DIR: every tool finds the segment there ------------------------
mkdir "$tmp/shm"
export FOUNDATION_SHM_DIR="$tmp/shm"
run 0 "create in FOUNDATION_SHM_DIR" "$ctl" create --entries 1000 --processes 32 --threads 32
[ -f "$tmp/shm/$seg" ] || fail "no $tmp/shm/$seg"
ok
[ ! -e "/dev/shm/$seg" ] || fail "/dev/shm/$seg exists too"
ok
run 0 "register" "$ctl" register k1 --pid $$
run 0 "inspect registry" "$inspect" registry
out_has "inspect registry" "k1"
run 0 "inspect check" "$inspect" check

# ---- truncation under a running reaper and inspector --------------------------------
"$reaperd" --segment "$seg" --foreground 2>"$tmp/reaper.err" &
reaper=$!
pids="$pids $reaper"
"$inspect" events --follow >"$tmp/follow.out" 2>"$tmp/follow.err" </dev/null &
follow=$!
pids="$pids $follow"
n=0
until "$ctl" reaper status >/dev/null 2>&1; do
	n=$((n + 1))
	[ "$n" -le 100 ] || fail "the reaper did not take the lease in 10 s"
	sleep 0.1
done
ok
# A loop of checks, truncated under it: it runs until told to stop (a
# check of this small segment can take about a millisecond, so a fixed
# number of rounds could end before the truncation), at most 100 000.
(
	i=0
	while [ "$i" -lt 100000 ] && [ ! -e "$tmp/stop" ]; do
		i=$((i + 1))
		if "$inspect" check >/dev/null 2>>"$tmp/check.err"; then st=0; else st=$?; fi
		echo "$st" >>"$tmp/check.st"
	done
) &
loop=$!
pids="$pids $loop"
sleep 0.3
truncate -s 4096 "$tmp/shm/$seg"
# Something for the follower to look at (its walk touches the ring).
"$ctl" emit after.truncate >/dev/null 2>&1 || true
wait_exit() { # wait_exit PID WHAT: its exit status into $st, within 20 s
	# (in this shell: an exited child stays a zombie, which kill -0 finds,
	# until this shell waits for it; /proc/PID/stat says Z)
	n=0
	while kill -0 "$1" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$1/stat" 2>/dev/null)" != Z ]; do
		n=$((n + 1))
		[ "$n" -le 200 ] || fail "$2 still runs 20 s after the truncation"
		sleep 0.1
	done
	if wait "$1"; then st=0; else st=$?; fi
}
wait_exit "$reaper" "the reaper"
[ "$st" -eq 1 ] || fail "reaper: exit status $st, expected 1 (stderr: $(cat "$tmp/reaper.err"))"
ok
grep -q '^foundation-reaperd: segment truncated: 4096 bytes, header says [0-9]*$' \
	"$tmp/reaper.err" || fail "reaper: message ($(cat "$tmp/reaper.err"))"
ok
wait_exit "$follow" "events --follow"
# Its next look at the ring ends it: the line, exit 1 (not SIGBUS, 135).
[ "$st" -eq 1 ] || fail "events --follow: exit status $st"
ok
grep -q '^foundation-inspect: segment truncated: 4096 bytes, header says [0-9]*$' \
	"$tmp/follow.err" || fail "follow: $(cat "$tmp/follow.err")"
ok
n=0
until grep -q '^1$' "$tmp/check.st" 2>/dev/null; do
	n=$((n + 1))
	[ "$n" -le 200 ] || fail "no check failed in the 20 s after the truncation"
	sleep 0.1
done
ok
touch "$tmp/stop"
wait_exit "$loop" "the check loop"
# Every check after the truncation failed with exit 1 and the message.
if grep -qv '^[01]$' "$tmp/check.st"; then fail "check: an exit status other than 0/1: $(sort -u "$tmp/check.st" | tr '\n' ' ')"; fi
ok
[ "$(tail -n 1 "$tmp/check.st")" = 1 ] || fail "check: the last run did not fail"
ok
grep -q 'segment truncated' "$tmp/check.err" || fail "check: no 'segment truncated' line"
ok
if grep -qiv 'segment truncated' "$tmp/check.err"; then fail "check: $(grep -iv 'segment truncated' "$tmp/check.err" | head -3)"; fi
ok
rm -f "$tmp/shm/$seg"
unset FOUNDATION_SHM_DIR

# ---- a full tmpfs -----------------------------------------------------------------------
if [ "$(id -u)" -ne 0 ] || ! command -v unshare >/dev/null 2>&1; then
	echo "SKIP: full tmpfs: needs root and unshare (a tmpfs in a private mount namespace)"
else
	cat >"$tmp/full.sh" <<'EOF'
set -eu
mount --make-rprivate /
mkdir -p "$1/small"
mount -t tmpfs -o size=8m,mode=0700 tmpfs "$1/small"
export FOUNDATION_SHM_DIR="$1/small"
if "$2" create --segment big >"$1/full.out" 2>"$1/full.err"; then st=0; else st=$?; fi
echo "$st" >"$1/full.st"
ls "$1/small" >"$1/full.ls"
"$2" create --segment sparse --sparse >"$1/sparse.out" 2>"$1/sparse.err"
du -k "$1/small/sparse" | cut -f1 >"$1/sparse.du"
"$2" destroy --segment sparse
EOF
	unshare -m sh "$tmp/full.sh" "$tmp" "$ctl" || fail "full tmpfs: the script failed: $(cat "$tmp/full.err" "$tmp/sparse.err" 2>/dev/null)"
	ok
	[ "$(cat "$tmp/full.st")" = 1 ] || fail "full tmpfs: create exit status $(cat "$tmp/full.st"), expected 1"
	ok
	grep -q '^foundation-ctl: create segment "big": it needs [0-9]* bytes, .*/small has [0-9]* free: no space$' \
		"$tmp/full.err" || fail "full tmpfs: message: $(cat "$tmp/full.err")"
	ok
	[ ! -s "$tmp/full.ls" ] || fail "full tmpfs: a refused create left $(cat "$tmp/full.ls")"
	ok
	[ "$(cat "$tmp/sparse.du")" -lt 8192 ] || fail "--sparse: $(cat "$tmp/sparse.du") KiB used"
	ok
fi
echo "$passed passed, 0 failed"
