#!/bin/sh
# test_tools.sh - foundation-ctl and foundation-inspect, driven the way a user
# would: create a segment, register three sleeping processes, find them,
# SIGKILL one and watch its entry vanish and its death be recorded, try the
# error paths, then kill the rest and destroy the segment.
#
# usage: test_tools.sh BIN_DIR   (the directory holding the two tools and
# foundation-reaperd; $FOUNDATION_REAPERD, if set, names the reaper)
#
# Every assertion counts; the first failure prints what failed, the
# command's output and exits 1.  "N passed, 0 failed" is printed only when
# every assertion held.
set -eu

bin=${1:?usage: test_tools.sh BIN_DIR}
ctl="$bin/foundation-ctl"
inspect="$bin/foundation-inspect"
FOUNDATION_REAPERD=${FOUNDATION_REAPERD:-$bin/foundation-reaperd}
export FOUNDATION_REAPERD
unset FOUNDATION_NO_AUTOREAPER # entries of dead pids must be reaped
seg="fdn-tools-$$"
missing="fdn-tools-missing-$$"
export FOUNDATION_SEGMENT="$seg" # the tools' default; some calls say --segment
tmp=$(mktemp -d)
sleepers=""
passed=0
. "$(dirname "$0")/tools_lib.sh"

cleanup() {
	for p in $sleepers; do
		kill -9 "$p" 2>/dev/null || true
	done
	"$ctl" --segment "$seg" destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# eventually STATUS WHAT STRING CMD...: run CMD until its output has STRING
# (at most 10 s).  The reaper records a death in the graveyard just after
# the dead process's entries vanish, so a watcher can be first.
eventually() {
	want=$1
	what=$2
	string=$3
	shift 3
	n=0
	while :; do
		if "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; then st=0; else st=$?; fi
		[ "$st" -eq "$want" ] || fail "$what: exit status $st, expected $want"
		if grep -qF -- "$string" "$tmp/out"; then break; fi
		n=$((n + 1))
		[ "$n" -le 100 ] || fail "$what: output lacks '$string' after 10 s"
		sleep 0.1 2>/dev/null || sleep 1
	done
	ok
}

# A JSON number field of the last output: json_num NAME
json_num() {
	sed -n "s/.*\"$1\":\([0-9-]*\).*/\1/p" "$tmp/out" | head -n 1
}

# ---- help ----------------------------------------------------------------------
run 0 "ctl --help" "$ctl" --help
out_has "ctl --help" "usage: foundation-ctl"
run 0 "ctl register --help" "$ctl" register --help
out_has "ctl register --help" "register KEY --pid PID"
run 0 "inspect --help" "$inspect" --help
out_has "inspect --help" "usage: foundation-inspect"
run 0 "inspect check --help" "$inspect" check --help
out_has "inspect check --help" "check"

# ---- versions: every program prints its own name and the library's version -------
ver=$(sed -n 's/^#define FDN_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\)$/\2/p' \
	"$(dirname "$0")/../lib/include/foundation/common.h" | paste -sd.)
for p in foundation-ctl foundation-inspect foundation-demo foundation-reaperd; do
	run 0 "$p --version" "$bin/$p" --version
	out_is "$p --version" "$p $ver"
done

# ---- create ----------------------------------------------------------------------
run 0 "create" "$ctl" create --entries 1000 --processes 64 --threads 64
out_has "create" "created segment \"$seg\""
run 1 "create again" "$ctl" --segment "$seg" create
err_is "create again" "foundation-ctl: create segment \"$seg\": already exists"

# ---- register three sleepers -----------------------------------------------------
for i in 1 2 3; do
	sleep 300 >/dev/null 2>&1 </dev/null &
	eval "P$i=$!"
	sleepers="$sleepers $!"
	run 0 "register web-$i" "$ctl" register "web-$i" --pid "$!" --attr capability=http \
		--attr health_status=ok --attr "load:=$i"
done
run 1 "register web-1 again" "$ctl" register web-1 --pid "$P2" --attr capability=http
err_is "register web-1 again" "foundation-ctl: register \"web-1\": already exists (held by pid $P1)"

run 0 "registry" "$inspect" --json registry
for i in 1 2 3; do
	eval "p=\$P$i"
	out_has "registry" "\"key\":\"web-$i\",\"pid\":$p,"
done
out_has "registry" "\"capability\":\"http\""
out_has "registry" "\"load\":2"
out_has "registry" "\"count\":3}"
json "registry fields" "d['segment']=='$seg' and d['count']==3 \
	and [e['key'] for e in d['entries']]==['web-1','web-2','web-3'] \
	and [e['pid'] for e in d['entries']]==[$P1,$P2,$P3] \
	and all(e['registered_ns']>0 for e in d['entries']) \
	and d['entries'][1]['attributes']=={'capability':'http','health_status':'ok','load':2}"
run 0 "registry text" "$inspect" registry
grep -qE "^web-2 +$P2 +[0-9T:.-]+Z +capability=http,health_status=ok,load=2\$" "$tmp/out" ||
	fail "registry text: no aligned row for web-2"
ok
run 0 "find capability=http" "$inspect" --json registry --attr capability=http
out_has "find capability=http" "\"count\":3}"
run 0 "find load:=2 (not indexed)" "$inspect" registry --attr load:=2
out_has "find load:=2" "web-2"
out_lacks "find load:=2" "web-1"
run 0 "find load=2 (a string)" "$inspect" --json registry --attr load=2
out_has "find load=2 (a string)" "\"count\":0}"
run 0 "registry text" "$inspect" --segment "$seg" registry --prefix web-
grep -q "^web-1 *$P1 .*capability=http,health_status=ok,load=1" "$tmp/out" ||
	fail "registry text: no aligned row for web-1"
ok

# ---- update, merge, unregister, wait -------------------------------------------
run 0 "merge web-3" "$ctl" merge web-3 --attr health_status=degraded
run 0 "find degraded" "$inspect" registry --json --attr health_status=degraded
out_has "find degraded" "\"key\":\"web-3\""
out_has "find degraded" "\"load\":3"
out_has "find degraded" "\"count\":1}"
run 0 "update web-3" "$ctl" update web-3 --attr capability=http --attr load:=3
run 0 "find degraded after update" "$inspect" registry --json --attr health_status=degraded
out_has "find degraded after update" "\"count\":0}"
run 0 "register job-x" "$ctl" register job-x --pid "$P2" --attr tags=[a,b]
run 0 "wait job-x present" "$ctl" wait job-x --timeout 1000
run 0 "unregister job-x" "$ctl" unregister job-x
run 1 "unregister job-x again" "$ctl" unregister job-x
err_is "unregister job-x again" "foundation-ctl: unregister \"job-x\": not found"
run 0 "wait job-x gone" "$ctl" wait job-x --gone --timeout 1000
run 1 "wait for nothing" "$ctl" wait nothing --timeout 200
err_is "wait for nothing" "foundation-ctl: wait \"nothing\": timed out after 200 ms"

run 0 "processes" "$inspect" --json processes
out_has "processes" "\"pid\":$P1,\"state\":\"live\""
json "processes fields" "set([$P1,$P2,$P3]) <= {p['pid'] for p in d['processes']} \
	and all(p['state'] in ('live','dead','left') and p['ident']>0 and p['slot']>=0 \
	and p['ident_kind'] in ('pidfs','starttime') for p in d['processes'])"
run 0 "processes text" "$inspect" processes
grep -qE "^ *[0-9]+ +$P1 +live " "$tmp/out" || fail "processes text: no live row for $P1"
ok

# ---- a death ---------------------------------------------------------------------
kill -9 "$P1"
run 0 "wait web-1 gone" "$ctl" wait web-1 --gone --timeout 10000
run 0 "registry after kill" "$inspect" --json registry
out_lacks "registry after kill" "\"key\":\"web-1\""
out_lacks "registry after kill" "\"pid\":$P1,"
out_has "registry after kill" "\"key\":\"web-2\""
out_has "registry after kill" "\"count\":2}"
eventually 0 "graveyard" "\"pid\":$P1,\"signal\":" "$inspect" --json graveyard
# SIGKILL, or -1 (unknown) when the shell reaped the zombie before the reaper
# could read its status and the kernel keeps no exit information (< 6.15).
grep -qE "\"pid\":$P1,\"signal\":(9|-1),\"status\":-1," "$tmp/out" ||
	fail "graveyard: pid $P1 not recorded as killed"
ok
run 0 "graveyard text" "$inspect" graveyard
grep -qE "^ *[0-9]+ +$P1 +(SIGKILL|\?) " "$tmp/out" || fail "graveyard text: no row for $P1"
ok
run 0 "check" "$inspect" check
out_has "check" "0 violations"
run 0 "stats" "$inspect" --json stats
[ "$(json_num reaper_pid)" -gt 0 ] || fail "stats: no reaper running"
ok
[ "$(json_num deaths_total)" -ge 1 ] || fail "stats: no death counted"
ok
json "stats fields" "d['processes']['used']>=3 and d['trace_slots']['capacity']==256 \
	and d['registry_entries']==2 and [t['name'] for t in d['tables']]==['main','index']"
run 0 "stats text" "$inspect" stats
out_has "stats text" "trace slots    0 / 256 in use"
run 0 "metrics" "$inspect" metrics
python3 "$(dirname "$0")/promcheck.py" <"$tmp/out" >/dev/null 2>"$tmp/err" ||
	fail "metrics: not valid Prometheus exposition format"
ok
out_has "metrics" "foundation_registry_entries{segment=\"$seg\"} 2"
out_has "metrics" "foundation_reaper_latency_seconds_count{segment=\"$seg\"} 1"
out_has "metrics" "foundation_deaths_total{segment=\"$seg\"} 1"
run 0 "dump" "$inspect" dump
json "dump" "sorted(d)==['changes','check','cluster','events','flags','graveyard','processes','registry','samplers', \
	'segment','spans','stages','stats'] and d['registry']['count']==2 \
	and d['graveyard']['graveyard'][0]['pid']==$P1 and d['check']['count']==0 and d['cluster']=={'agent':False}"

# ---- errors ------------------------------------------------------------------------
run 2 "unknown command" "$ctl" frobnicate
err_is "unknown command" "foundation-ctl: frobnicate: unknown command (see foundation-ctl --help)"
run 2 "unknown option" "$inspect" registry --bogus
run 2 "missing --pid" "$ctl" register k
run 2 "bad number" "$ctl" register k --pid abc
run 2 "no command" "$inspect"
run 2 "bad --pid" "$inspect" spans --pid abc
err_is "bad --pid" "foundation-inspect: spans --pid \"abc\": not a process id (see foundation-inspect spans --help)"
run 2 "--pid on registry" "$inspect" registry --pid 1
run 0 "spans, none held" "$inspect" spans
out_has "spans, none held" "no thread holds spans or a context"
run 0 "spans json" "$inspect" --json spans
out_has "spans json" "\"threads\":[],\"count\":0,\"skipped\":0}"
run 1 "missing segment (inspect)" "$inspect" --segment "$missing" registry
err_is "missing segment (inspect)" "foundation-inspect: segment \"$missing\": segment not found"
run 1 "missing segment (ctl)" "$ctl" --segment "$missing" unregister web-2
err_is "missing segment (ctl)" "foundation-ctl: segment \"$missing\": segment not found"
# Bad attribute text is bad usage, refused before the segment is touched.
run 2 "bad attribute" "$ctl" register x --pid 1 --attr =bad
err_is "bad attribute" "foundation-ctl: register --attr \"=bad\": missing attribute name (see foundation-ctl register --help)"
run 2 "bad attribute (inspect)" "$inspect" registry --attr n:=x
err_is "bad attribute (inspect)" "foundation-inspect: registry --attr \"n:=x\": after := an integer, a number or true/false (see foundation-inspect registry --help)"

# ---- the rest die --------------------------------------------------------------------
kill -9 "$P2" "$P3"
run 0 "wait web-2 gone" "$ctl" wait web-2 --gone --timeout 10000
run 0 "wait web-3 gone" "$ctl" wait web-3 --gone --timeout 10000
run 0 "registry empty" "$inspect" --json registry
out_has "registry empty" "\"count\":0}"
eventually 0 "graveyard all" "\"pid\":$P2," "$inspect" --json graveyard
eventually 0 "graveyard all" "\"pid\":$P3," "$inspect" --json graveyard
run 0 "check at the end" "$inspect" --json check
out_has "check at the end" "\"count\":0,\"notes\":["

# ---- the reaper, from the shell ----------------------------------------------------
run 0 "reaper status" "$ctl" reaper status
grep -qE '^reaper pid [0-9]+ watches segment' "$tmp/out" || fail "reaper status: no pid"
ok
run 0 "reaper stop" "$ctl" reaper stop
grep -qE '^stopped reaper pid [0-9]+; none starts until `foundation-ctl reaper start`$' \
	"$tmp/out" || fail "reaper stop"
ok
run 1 "reaper status, stopped" "$ctl" reaper status
out_is "reaper status, stopped" "no reaper running: stopped by \`foundation-ctl reaper stop\`: \
none starts until \`foundation-ctl reaper start\`"
# The stop holds: a writer (register attaches and writes) starts none.
run 0 "register while stopped" "$ctl" register stopped-k --pid $$
run 1 "reaper status, still stopped" "$ctl" reaper status
out_has "reaper status, still stopped" "stopped by"
run 0 "unregister while stopped" "$ctl" unregister stopped-k
run 0 "reaper stop, none" "$ctl" reaper stop
out_has "reaper stop, none" "no reaper was running"
run 0 "reaper start" "$ctl" reaper start
grep -qE '^reaper pid [0-9]+ watches segment' "$tmp/out" || fail "reaper start: no pid"
ok
run 0 "stats: the reaper" "$inspect" --json stats
json "stats: the reaper" "d['reaper']['pid']==d['reaper_pid']>0 and not d['reaper']['stopped'] \
	and d['reaper']['launches']>=2 and d['reaper']['last_launch']['error'] is None"
run 2 "reaper bad" "$ctl" reaper frob
err_is "reaper bad" "foundation-ctl: reaper frob: unknown sub-command (see foundation-ctl reaper --help)"

# ---- a segment for a group: mode 0660 is refused unless allowed --------------------
grp="$seg-grp"
run 0 "create 0660" env FOUNDATION_ALLOW_FOREIGN=1 FOUNDATION_NO_AUTOREAPER=1 \
	"$ctl" --segment "$grp" create --mode 0660 --entries 100
run 1 "0660 refused" "$inspect" --segment "$grp" stats
err_is "0660 refused" "foundation-inspect: segment \"$grp\": segment is writable by other users"
run 0 "0660 allowed" env FOUNDATION_ALLOW_FOREIGN=1 "$inspect" --segment "$grp" stats
run 0 "destroy 0660" env FOUNDATION_ALLOW_FOREIGN=1 "$ctl" --segment "$grp" destroy

# ---- destroy: the segment and its reaper go ---------------------------------------
run 0 "stats before destroy" "$inspect" --json stats
reaper=$(json_num reaper_pid)
run 0 "destroy" "$ctl" destroy
out_has "destroy" "destroyed segment \"$seg\""
run 1 "stats after destroy" "$inspect" stats
err_is "stats after destroy" "foundation-inspect: segment \"$seg\": segment not found"
n=0
while kill -0 "$reaper" 2>/dev/null; do
	n=$((n + 1))
	[ "$n" -le 20 ] || fail "reaper $reaper still runs after destroy"
	sleep 1
done
ok

echo "$passed passed, 0 failed"
