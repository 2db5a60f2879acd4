#!/bin/sh
# test_events.sh - the telemetry commands driven from the shell: foundation-ctl
# emit and sampler set, foundation-inspect events (text, --json, --name,
# --follow with --count, a gap seen as lost events, SIGTERM, the segment
# destroyed under it) and samplers.  JSON is checked with python3's parser.
#
# usage: test_events.sh BIN_DIR
set -eu

bin=${1:?usage: test_events.sh BIN_DIR}
ctl="$bin/foundation-ctl"
inspect="$bin/foundation-inspect"
export FOUNDATION_NO_AUTOREAPER=1 # no process.down events in the ring
seg="fdn-events-$$"
export FOUNDATION_SEGMENT="$seg"
tmp=$(mktemp -d)
follower=""
passed=0
. "$(dirname "$0")/tools_lib.sh"

cleanup() {
	if [ -n "$follower" ]; then kill -9 "$follower" 2>/dev/null || true; fi
	"$ctl" destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# lines WHAT PYTHON-EXPR: every line of $tmp/fol parses as JSON; L is the list.
lines() {
	python3 -c "import json,sys; L=[json.loads(l) for l in open(sys.argv[1]) if l.strip()]; sys.exit(0 if ($2) else 1)" \
		"$tmp/fol" || fail "$1: JSON lines check failed: $2"
	ok
}

# wait_for PID SECONDS: the process ends within the time (its status in $st).
wait_for() {
	n=0
	while kill -0 "$1" 2>/dev/null; do
		n=$((n + 1))
		[ "$n" -le $(($2 * 10)) ] || fail "process $1 still runs after $2 s"
		sleep 0.1
	done
	if wait "$1"; then st=0; else st=$?; fi
}

# until_lines N: the follower has printed at least N lines (10 s at most).
until_lines() {
	n=0
	while [ "$(wc -l <"$tmp/fol")" -lt "$1" ]; do
		n=$((n + 1))
		[ "$n" -le 100 ] || fail "the follower printed fewer than $1 lines"
		sleep 0.1
	done
}

# ---- a ring of 16 -------------------------------------------------------------
run 0 "create" "$ctl" create --entries 100 --processes 64 --threads 64 --events 16
run 0 "emit alpha" "$ctl" emit test.alpha --measure n=3 --measure d=0.5 --attr who=me \
	--attr "tags=[a,b]"
run 0 "events text" "$inspect" events
out_has "events text" "ring: 16 records, 1 events written, 0 overwritten"
grep -qE "^[0-9T:.-]+Z +[0-9]+ +[0-9]+ +1 +test\.alpha +n=3,d=0\.5 +who=me,tags=\[a,b\]$" \
	"$tmp/out" || fail "events text: no aligned row for test.alpha"
ok
run 0 "events json" "$inspect" --json events
json "events json" "d['segment']=='$seg' and d['capacity']==16 and d['written']==1 and d['overwritten']==0 and d['count']==1 and d['lost']==0"
json "events json event" "d['events'][0]['name']=='test.alpha' and d['events'][0]['ticket']==0 and d['events'][0]['seq']==1 and d['events'][0]['pid']>0 and d['events'][0]['tid']==d['events'][0]['pid'] and d['events'][0]['time_ns']>1600000000*10**9 and d['events'][0]['mono_ns']>0"
json "events json values" "d['events'][0]['measurements']=={'n':3.0,'d':0.5} and d['events'][0]['attributes']=={'who':'me','tags':['a','b']} and d['events'][0]['truncated'] is False"

# ---- overwriting: the ring keeps the newest 16 -----------------------------------
run 0 "emit beta x30" "$ctl" emit test.beta --count 30
run 0 "events after overwrite" "$inspect" --json events
json "events after overwrite" "d['written']==31 and d['overwritten']==15 and d['count']==16 and all(e['name']=='test.beta' for e in d['events']) and [e['ticket'] for e in d['events']]==list(range(15,31))"
run 0 "events --name" "$inspect" --json events --name test.alpha
json "events --name (overwritten)" "d['count']==0"
run 0 "emit alpha again" "$ctl" emit test.alpha
run 0 "events --name" "$inspect" --json events --name test --count 2
json "events --name --count" "d['count']==2"
run 0 "events --name alpha" "$inspect" --json events --name test.alpha
json "events --name alpha" "d['count']==1 and d['events'][0]['name']=='test.alpha'"

# ---- --follow --count ------------------------------------------------------------------
: >"$tmp/fol" # empty before it starts: until_lines must not read an old one
"$inspect" --json events --follow --name test.f --count 3 --timeout 30 >"$tmp/fol" 2>&1 &
follower=$!
run 0 "emit f x3" "$ctl" emit test.f --measure k=1 --count 3
wait_for "$follower" 15
follower=""
[ "$st" -eq 0 ] || fail "follow --count: exit status $st"
ok
# The follower starts at the oldest record of the ring; on a slow machine
# (qemu) the three emits may overwrite up to three older records before it
# reads them, and those count as lost.  The three new events are never lost.
lines "follow --count" "(lambda E, lost: [e['measurements'] for e in E]==[{'k':1.0}]*3 and [e['seq'] for e in E]==[1,2,3] and L[-1]=={'end':'count','events':3,'lost':lost} and lost<=3 and len(L)==len(E)+1+sum(1 for e in L if 'lost' in e and 'end' not in e))([e for e in L if 'name' in e and e['name']=='test.f'], sum(e['lost'] for e in L if 'lost' in e and 'end' not in e))"

# ---- a follower that falls behind reports the gap ----------------------------------
: >"$tmp/fol" # empty before it starts: until_lines must not read an old one
"$inspect" --json events --follow --name test.g --timeout 4 >"$tmp/fol" 2>&1 &
follower=$!
run 0 "emit g" "$ctl" emit test.g
until_lines 1
kill -STOP "$follower"
run 0 "emit g x40" "$ctl" emit test.g --count 40
kill -CONT "$follower"
wait_for "$follower" 15
follower=""
[ "$st" -eq 0 ] || fail "follow with a gap: exit status $st"
ok
# The follower starts at the oldest event in the ring, so an emit may also
# overwrite older events (other names) before it reads them: those count as
# lost too.  Every one of the 41 test.g events is printed once or lost.
lines "follow gap" "L[-1]['end']=='timeout' and (lambda n, lost, t: n<=41 and n+lost>=41 and len(set(t))==n and L[-1]['events']==n and L[-1]['lost']==lost and lost>=24)(sum(1 for e in L if 'name' in e), sum(e['lost'] for e in L if 'lost' in e and 'end' not in e), [e['ticket'] for e in L if 'name' in e])"

# ---- SIGTERM ends a follower cleanly ----------------------------------------------------
: >"$tmp/fol"
"$inspect" events --follow >"$tmp/fol" 2>&1 &
follower=$!
until_lines 1
kill -TERM "$follower"
wait_for "$follower" 10
follower=""
[ "$st" -eq 0 ] || fail "follow, SIGTERM: exit status $st"
ok
grep -qE "^-- [0-9]+ events, [0-9]+ lost \(interrupted\)$" "$tmp/fol" || fail "follow, SIGTERM: no end line"
ok

# ---- samplers --------------------------------------------------------------------------
run 0 "sampler set" "$ctl" sampler set test.beta "reservoir(5)"
run 0 "emit beta x9" "$ctl" emit test.beta --count 9
run 0 "samplers" "$inspect" --json samplers
json "samplers" "[s for s in d['samplers'] if s['name']=='test.beta']==[{'name':'test.beta','sampler':'reservoir(5)','total':39,'sampled':35,'probability':35/39}] and d['count']==len(d['samplers'])"
run 0 "samplers text" "$inspect" samplers
grep -qE "^test\.beta +reservoir\(5\) +39 +35 +0\.8974$" "$tmp/out" || fail "samplers text: no row"
ok
run 0 "sampler reset-stats" "$ctl" sampler reset-stats test.beta
run 0 "samplers after reset" "$inspect" --json samplers
json "samplers after reset" "[s for s in d['samplers'] if s['name']=='test.beta']==[{'name':'test.beta','sampler':'reservoir(5)','total':0,'sampled':0,'probability':1}]"
run 0 "emit beta after reset" "$ctl" emit test.beta --count 2
run 0 "samplers counting again" "$inspect" --json samplers
json "samplers counting again" "[(s['total'],s['sampled']) for s in d['samplers'] if s['name']=='test.beta']==[(2,0)]"
run 1 "reset-stats, no sampler" "$ctl" sampler reset-stats test.never.seen
err_is "reset-stats, no sampler" "foundation-ctl: sampler reset-stats \"test.never.seen\": not found"
run 1 "reset-stats, bad name" "$ctl" sampler reset-stats "bad name"
run 2 "reset-stats, no name" "$ctl" sampler reset-stats
run 1 "bad sampler" "$ctl" sampler set test.beta "random(2)"
err_is "bad sampler" "foundation-ctl: sampler \"random(2)\": invalid sampler"
run 1 "bad event name" "$ctl" emit "bad name"
err_is "bad event name" "foundation-ctl: emit \"bad name\": invalid event name"
run 2 "sampler usage" "$ctl" sampler get test.beta
run 2 "bad --count" "$inspect" events --count abc
run 2 "--follow elsewhere" "$inspect" stats --follow

# ---- the segment destroyed under a follower ----------------------------------------------
: >"$tmp/fol" # empty before it starts: until_lines must not read an old one
"$inspect" --json events --follow --timeout 60 >"$tmp/fol" 2>&1 &
follower=$!
until_lines 1
run 0 "check" "$inspect" check
out_has "check" "0 violations"
run 0 "destroy" "$ctl" destroy
wait_for "$follower" 10
follower=""
[ "$st" -eq 0 ] || fail "follow, destroyed: exit status $st"
ok
lines "follow, destroyed" "L[-1]['end']=='destroyed'"

echo "$passed passed, 0 failed"
