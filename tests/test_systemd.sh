#!/bin/sh
# test_systemd.sh - the reaper as systemd runs it (foundation-reaperd@.service).
#
#  1. systemd-analyze verify accepts the unit the build made (its ExecStart
#     pointed at the reaper just built), and the cluster agent's unit
#     (foundation-mirrord@.service) likewise when the agent was built.
#  2. The reaper started as the unit starts it (--foreground --wait, the
#     notification socket in $NOTIFY_SOCKET), as an unprivileged user
#     (setpriv to nobody when run as root), before its segment exists: it
#     says READY=1 and waits; the application (the same user) creates the
#     segment; the reaper takes the lease and reaps a death; a second one
#     stands by and takes over when the first is killed; after a destroy it
#     waits again and takes the new segment; SIGTERM ends it with 0.
#  3. As root against that user's segment it exits 1 saying what to set.
#
# Skipped (exit 77, the reason printed) without systemd-analyze, or when
# root cannot switch to nobody.  Bounds are generous (10 s waits for what
# takes milliseconds): the machine may be busy.
# usage: test_systemd.sh BIN_DIR UNIT_FILE [MIRRORD_UNIT_FILE]
set -eu
bin=$(cd "$1" && pwd)
unit=$2
munit=${3:-}
tmp=$(mktemp -d)
passed=0
seg="fdn-test-unit-$$"
pids=""
. "$(dirname "$0")/tools_lib.sh"
# The unit's reaper runs as nobody through setpriv from BIN_DIR: the cross
# build's programs would need the qemu wrappers there too (not done yet).
if skip_if_emulated "the reaper run as its unit runs it (setpriv, another user)"; then
	rm -rf "$tmp"
	exit 77
fi

cleanup() {
	for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
	"$bin/foundation-ctl" --segment "$seg" destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

command -v systemd-analyze >/dev/null 2>&1 || {
	echo "SKIP: systemd-analyze is not installed (package systemd)"
	exit 77
}

# ---- 1. the unit file ---------------------------------------------------------------
mkdir "$tmp/units"
sed "s|^ExecStart=.*/foundation-reaperd |ExecStart=$bin/foundation-reaperd |" "$unit" \
	>"$tmp/units/foundation-reaperd@.service"
grep -q "^ExecStart=$bin/foundation-reaperd --foreground --wait --segment %i$" \
	"$tmp/units/foundation-reaperd@.service" || fail "unit: no ExecStart of the expected form"
ok
grep -q "^Type=notify$" "$unit" || fail "unit: not Type=notify"
ok
# --man=no: the man page named in Documentation= is installed, not here.
run 0 "systemd-analyze verify" systemd-analyze verify --man=no \
	"$tmp/units/foundation-reaperd@$seg.service"
# Warnings are printed with status 0: any line naming the unit is one.
if grep -q "foundation-reaperd" "$tmp/out" "$tmp/err"; then fail "systemd-analyze verify warns"; fi
ok

# The cluster agent's unit: the same checks, when the agent was built (it
# needs libcurl and json-c; verify refuses an ExecStart that does not exist).
if [ -n "$munit" ] && [ -x "$bin/foundation-mirrord" ]; then
	sed "s|^ExecStart=.*/foundation-mirrord |ExecStart=$bin/foundation-mirrord |" "$munit" \
		>"$tmp/units/foundation-mirrord@.service"
	grep -q "^ExecStart=$bin/foundation-mirrord --wait --segment %i \$MIRRORD_OPTIONS$" \
		"$tmp/units/foundation-mirrord@.service" ||
		fail "mirrord unit: no ExecStart of the expected form"
	ok
	grep -q "^After=.*foundation-reaperd@%i.service" "$munit" ||
		fail "mirrord unit: not ordered after its segment's reaper"
	ok
	run 0 "systemd-analyze verify (mirrord)" systemd-analyze verify --man=no \
		"$tmp/units/foundation-mirrord@$seg.service"
	if grep -q "foundation-mirrord" "$tmp/out" "$tmp/err"; then
		fail "systemd-analyze verify warns (mirrord)"
	fi
	ok
else
	echo "mirrord unit: not verified (foundation-mirrord not built)"
fi

# ---- 2. as the unit runs it, as an unprivileged user ----------------------------------
if [ "$(id -u)" -eq 0 ]; then
	command -v setpriv >/dev/null 2>&1 || {
		echo "SKIP: running as root without setpriv (util-linux) to become nobody"
		echo "$passed passed, 0 failed"
		exit 77
	}
	uid=$(id -u nobody) gid=$(id -g nobody) || {
		echo "SKIP: running as root and there is no user nobody"
		exit 77
	}
	# A command, not a function: "$as cmd &" leaves cmd's pid in $! (setpriv
	# and env exec what they run).
	as="setpriv --reuid=$uid --regid=$gid --clear-groups"
	$as test -x "$bin/foundation-reaperd" || {
		echo "SKIP: nobody cannot run $bin/foundation-reaperd (a directory above is private)"
		exit 77
	}
else
	as="" # already unprivileged: the deployment's shape
fi
chmod 755 "$tmp"

# The service manager's end of the notification protocol: every datagram
# one line, its fields joined by " | ".
sock="$tmp/notify.sock"
python3 -u -c '
import socket, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "a") as out:
    while True:
        out.write(s.recv(4096).decode().replace("\n", " | ") + "\n")
        out.flush()
' "$sock" "$tmp/notify.log" &
pids="$pids $!"
# wait_for WHAT SECONDS CMD...: until CMD succeeds.
wait_for() {
	what=$1 n=$(($2 * 10))
	shift 2
	while ! "$@" >/dev/null 2>&1; do
		n=$((n - 1))
		[ "$n" -gt 0 ] || fail "$what: not within the time"
		sleep 0.1
	done
	ok
}
wait_for "notification socket" 20 test -S "$sock"

ctl() { $as env FOUNDATION_NO_AUTOREAPER=1 "$bin/foundation-ctl" --segment "$seg" "$@"; }
holder() { ctl reaper status --json 2>/dev/null | sed -n 's/.*"reaper_pid":\([0-9]*\).*/\1/p'; }
holder_is() { [ "$(holder)" = "$1" ]; }
notified() { grep -q "$1" "$tmp/notify.log"; }
alive() { kill -0 "$1" 2>/dev/null; }

# The unit's ExecStart, its environment: NOTIFY_SOCKET and nothing of ours.
$as env -i PATH=/usr/bin:/bin NOTIFY_SOCKET="$sock" \
	"$bin/foundation-reaperd" --foreground --wait --segment "$seg" 2>"$tmp/reaper1.log" &
r1=$!
pids="$pids $r1"
wait_for "READY=1 while the segment does not exist" 10 \
	notified "READY=1 | STATUS=waiting for segment \"$seg\" to appear | MAINPID=$r1"
sleep 1
alive "$r1" || fail "the reaper exited while waiting for its segment: $(cat "$tmp/reaper1.log")"
ok

run 0 "create, as the application" ctl create --entries 1000 --processes 64 --threads 64
wait_for "the reaper takes the lease" 10 holder_is "$r1"
wait_for "STATUS reaping" 10 notified "STATUS=reaping segment \"$seg\" (pid $r1 holds the lease)"

# It reaps: an entry owned by a process that dies goes.
$as sleep 300 &
victim=$!
pids="$pids $victim"
run 0 "register" ctl register svc-1 --pid "$victim"
kill -KILL "$victim"
run 0 "the dead owner's entry goes" ctl wait svc-1 --gone --timeout 10000

# A second one stands by, and takes over when the first dies.
$as env -i PATH=/usr/bin:/bin NOTIFY_SOCKET="$sock" \
	"$bin/foundation-reaperd" --foreground --wait --segment "$seg" 2>"$tmp/reaper2.log" &
r2=$!
pids="$pids $r2"
wait_for "the second stands by" 10 \
	notified "READY=1 | STATUS=standby: reaper pid $r1 holds the lease of segment \"$seg\" | MAINPID=$r2"
holder_is "$r1" || fail "the standby took the lease from a live reaper"
ok
kill -KILL "$r1"
wait_for "the standby takes over" 10 holder_is "$r2"

# A destroy: it waits for the segment again, and takes the new one.
run 0 "destroy" ctl destroy
wait_for "waiting again after the destroy" 10 \
	notified "STATUS=waiting for segment \"$seg\" to appear | MAINPID=$r2"
alive "$r2" || fail "the reaper exited after the destroy: $(cat "$tmp/reaper2.log")"
ok
run 0 "create again" ctl create --entries 1000 --processes 64 --threads 64
wait_for "the reaper takes the new segment" 10 holder_is "$r2"

# `reaper stop`: it stands by (still running), until `reaper start`.
run 0 "reaper stop" ctl reaper stop
out_has "reaper stop" "stopped reaper pid $r2"
wait_for "STATUS stopped" 10 notified "STATUS=stopped by \`foundation-ctl reaper stop\`"
alive "$r2" || fail "the reaper exited on reaper stop"
ok
# (start waits until a reaper holds the lease: this one, or the one it
# launched, whichever took it first.)
run 0 "reaper start" $as env FOUNDATION_REAPERD="$bin/foundation-reaperd" \
	"$bin/foundation-ctl" --segment "$seg" reaper start
out_has "reaper start" "watches segment \"$seg\""

kill -TERM "$r2"
st=0
wait "$r2" || st=$?
[ "$st" -eq 0 ] || fail "SIGTERM: exit status $st, expected 0"
ok
# The listener writes what it received on its own time: the datagram was
# sent before the exit, its line may come after.
wait_for "STOPPING=1" 10 notified "STOPPING=1"

# ---- 3. as root, against the user's segment --------------------------------------------
if [ "$(id -u)" -eq 0 ]; then
	run 1 "root against nobody's segment" "$bin/foundation-reaperd" --foreground --wait \
		--segment "$seg"
	grep -q "segment owned by another user" "$tmp/err" || fail "root: no owner message"
	ok
	grep -q "User= and Group=" "$tmp/err" || fail "root: does not say what to set"
	ok
fi

echo "$passed passed, 0 failed"
