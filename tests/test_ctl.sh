#!/bin/sh
# test_ctl.sh - foundation-ctl as a client: get, query --where with every
# operator of fdn_query, --json on every command that prints (checked by a
# JSON parser) and refused by the others, the typed attribute syntax and
# every bad form of it, update without attributes, strict numbers in every
# program, lower-case one-line messages.
#
# usage: test_ctl.sh BIN_DIR   ($FOUNDATION_REAPERD, if set, names the reaper)
set -eu

bin=${1:?usage: test_ctl.sh BIN_DIR}
ctl="$bin/foundation-ctl"
inspect="$bin/foundation-inspect"
FOUNDATION_REAPERD=${FOUNDATION_REAPERD:-$bin/foundation-reaperd}
export FOUNDATION_REAPERD
unset FOUNDATION_NO_AUTOREAPER
seg="fdn-ctl-$$"
export FOUNDATION_SEGMENT="$seg"
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

# usage_err WHAT CMD...: exit 2, one line on stderr, lower-case after the
# program's name, ending with the pointer to --help.
usage_err() {
	what=$1
	shift
	run 2 "$what" "$@"
	[ "$(wc -l <"$tmp/err")" -eq 1 ] || fail "$what: stderr is not one line"
	grep -qE '^foundation-[a-z]+: [^A-Z].* \(see foundation-[a-z]+( [a-z]+)? --help\)$' \
		"$tmp/err" || fail "$what: not a one-line lower-case usage error"
	ok
}

# ---- create (--json) -------------------------------------------------------------
run 0 "create --json" "$ctl" --json create --entries 1000 --processes 64 --threads 64
json "create --json" "d=={'segment':'$seg','created':True}"

sleep 300 >/dev/null 2>&1 </dev/null &
P1=$!
sleep 300 >/dev/null 2>&1 </dev/null &
P2=$!
sleep 300 >/dev/null 2>&1 </dev/null &
P3=$!
sleepers="$P1 $P2 $P3"

# ---- typed attributes --------------------------------------------------------------
run 0 "register gpu-1" "$ctl" register gpu-1 --pid "$P1" --attr capability=gpu \
	--attr health_status=ok --attr load:=3 --attr ratio:=1.5 --attr spare:=true \
	--attr tags=[a,b] --attr version=5 --attr empty=[]
run 0 "register sql-1" "$ctl" register sql-1 --pid "$P2" --attr capability=sql \
	--attr health_status=ok --attr load:=7 --attr ratio:=-2e3 --attr spare:=false \
	--attr tags=[c]
run 0 "register web-1" "$ctl" register web-1 --pid "$P3" --attr capability=http \
	--attr health_status=degraded --attr load:=1
run 0 "get gpu-1 --json" "$ctl" get gpu-1 --json
json "typed values" "d['segment']=='$seg' and d['key']=='gpu-1' and d['pid']==$P1 \
	and d['registered_ns']>0 and d['attributes']=={'capability':'gpu','health_status':'ok', \
	'load':3,'ratio':1.5,'spare':True,'tags':['a','b'],'version':'5','empty':[]} \
	and type(d['attributes']['load']) is int and type(d['attributes']['ratio']) is float"
run 0 "get gpu-1" "$ctl" get gpu-1
grep -qE "^gpu-1 +$P1 +[0-9T:.-]+Z +capability=gpu,health_status=ok,load=3,ratio=1.5,spare=true,tags=\[a,b\],version=5,empty=\[\]\$" \
	"$tmp/out" || fail "get gpu-1: no aligned row"
ok
out_has "get gpu-1" "KEY"
run 1 "get missing" "$ctl" get nope
err_is "get missing" "foundation-ctl: get \"nope\": not found"
usage_err "get without KEY" "$ctl" get

# Every malformed value is refused (exit 2), never stored as a string.
for bad in 'n:=5x' 'n:=1e999' 'n:=99999999999999999999' 'n:=' 'n:=0x10' 'n:=inf' \
	'n:=nan' 'n:= 5' 'n:=+5' 'b:=yes' 'l=[a,b' 'l=[a,,b]' 'l=[a,]' '=x' ':=5' 'noequals' \
	"$(printf 'n%064d=x' 0)"; do
	usage_err "bad attribute '$bad'" "$ctl" register bad-1 --pid "$P1" --attr "$bad"
	grep -qF -- "register --attr \"$bad\":" "$tmp/err" || fail "bad attribute '$bad': message"
	ok
done
run 1 "nothing stored by a bad attribute" "$ctl" get bad-1
usage_err "bad merge attribute" "$ctl" merge gpu-1 --attr n:=1.5.5
usage_err "bad emit attribute" "$ctl" emit test.x --attr l=[

# ---- query --where: every operator ----------------------------------------------
# q WHAT EXPECTED-KEYS --where ...: query --json returns exactly those keys.
q() {
	qwhat=$1
	keys=$2
	shift 2
	run 0 "query $qwhat" "$ctl" query --json "$@"
	json "query $qwhat" "d['segment']=='$seg' and [e['key'] for e in d['entries']]==[$keys] \
		and d['count']==len(d['entries'])"
}
q "all" "'gpu-1','sql-1','web-1'"
q "=" "'gpu-1','sql-1'" --where health_status=ok
q "= list contains" "'gpu-1'" --where tags=a
q "= list equal" "'sql-1'" --where tags=[c]
q ":= int" "'sql-1'" --where load:=7
q ":= double" "'gpu-1'" --where ratio:=1.5
q ":= bool" "'sql-1'" --where spare:=false
q "= string is not a number" "" --where load=7
q "!=" "'web-1'" --where health_status!=ok
q "!:=" "'gpu-1','web-1'" --where load!:=7
q "<" "'gpu-1','web-1'" --where 'load<5'
q "<=" "'gpu-1','web-1'" --where 'load<=3'
q ">" "'sql-1'" --where 'load>3'
q ">=" "'gpu-1','sql-1'" --where 'load>=3'
q "< double" "'sql-1'" --where 'ratio<0.5'
q "< string" "'gpu-1'" --where 'capability<http'
q "> string" "'sql-1'" --where 'capability>http'
q "in" "'gpu-1','sql-1'" --where 'capability in gpu,sql'
q "in brackets" "'gpu-1'" --where 'capability in [gpu]'
q "in list attribute" "'sql-1'" --where 'tags in c,d'
q "not in" "'web-1'" --where 'capability not in gpu,sql'
q "not in absent" "'sql-1','web-1'" --where 'version not in 5'
q "three criteria" "'gpu-1'" --where 'health_status=ok' --where 'load<5' \
	--where 'capability in gpu,sql'
run 0 "query text" "$ctl" query --where 'capability in gpu,sql'
grep -qE "^sql-1 +$P2 +[0-9T:.-]+Z +capability=sql," "$tmp/out" || fail "query text: row"
ok
for bad in 'load' 'load~5' '<5' 'load in ' 'load in a,,b' 'load<[a]' 'load:=x' \
	'load<99999999999999999999' 'load not in'; do
	usage_err "bad where '$bad'" "$ctl" query --where "$bad"
	grep -qF -- "query --where \"$bad\":" "$tmp/err" || fail "bad where '$bad': message"
	ok
done

# ---- update: attributes required unless --clear ------------------------------------
usage_err "update without attributes" "$ctl" update web-1
err_is "update without attributes" \
	"foundation-ctl: update \"web-1\": no --attr given (--clear removes every attribute) (see foundation-ctl update --help)"
run 0 "web-1 kept its attributes" "$ctl" get web-1 --json
json "web-1 kept its attributes" "d['attributes']['capability']=='http'"
usage_err "update --clear with --attr" "$ctl" update web-1 --clear --attr a=b
run 0 "update --clear" "$ctl" update web-1 --clear
run 0 "web-1 cleared" "$ctl" get web-1 --json
json "web-1 cleared" "d['attributes']=={}"
run 0 "update typed" "$ctl" update web-1 --attr load:=2
run 0 "web-1 updated" "$ctl" get web-1 --json
json "web-1 updated" "d['attributes']=={'load':2}"

# ---- --json everywhere it applies, refused where it does not -------------------
run 0 "flags get --json" "$ctl" flags get use_shm_registry --json
json "flags get --json" "d=={'segment':'$seg','flag':'use_shm_registry','value':100,'enabled':True}"
run 0 "flags list --json" "$ctl" --json flags list
json "flags list --json" "d['segment']=='$seg' and d['count']==len(d['flags'])>0 \
	and all(set(f)=={'name','value','default'} for f in d['flags'])"
run 0 "reaper status --json" "$ctl" reaper status --json
json "reaper status --json" "d['segment']=='$seg' and d['reaper_pid']>0"
run 0 "reaper stop --json" "$ctl" reaper stop --json
json "reaper stop --json" "d['segment']=='$seg' and d['stopped_pid']>0"
run 1 "reaper status --json, none" "$ctl" reaper status --json
json "reaper status --json, none" "d['segment']=='$seg' and d['reaper_pid']==0 and d['stopped'] \
	and d['why'].startswith('stopped by') and set(d)=={'segment','reaper_pid','stopped', \
	'launches','last_launch','why'}"
run 0 "reaper start --json" "$ctl" reaper start --json
json "reaper start --json" "d['segment']=='$seg' and d['reaper_pid']>0"
for cmd in "register k --pid $P1" "unregister k" "update k --clear" "merge k --attr a=b" \
	"sampler set x always" "emit x" "wait k --timeout 1" "flags set use_shm_spans on" \
	"flags create x" "flags reset" "stage migrate 1" "stage emergency why"; do
	# shellcheck disable=SC2086 # the words of the command
	usage_err "$cmd --json" "$ctl" $cmd --json
	grep -q -- "--json: prints nothing" "$tmp/err" || fail "$cmd --json: message"
	ok
done
usage_err "inspect --json metrics" "$inspect" --json metrics
err_is "inspect --json metrics" \
	"foundation-inspect: metrics --json: metrics prints the Prometheus text format only (see foundation-inspect metrics --help)"

# ---- numbers are parsed strictly in every program ----------------------------------
usage_err "--entries 10x" "$ctl" --segment "$seg-n" create --entries 10x
usage_err "--entries -1" "$ctl" --segment "$seg-n" create --entries -1
usage_err "--entries ' 5'" "$ctl" --segment "$seg-n" create --entries " 5"
usage_err "--heap 1Q" "$ctl" --segment "$seg-n" create --heap 1Q
usage_err "--mode 0689" "$ctl" --segment "$seg-n" create --mode 0689
usage_err "--pid 12abc" "$ctl" register k --pid 12abc
usage_err "--pid 0" "$ctl" register k --pid 0
usage_err "--timeout 1.5" "$ctl" wait k --timeout 1.5
usage_err "--count 1e3" "$ctl" emit x --count 1e3
usage_err "--measure n=inf" "$ctl" emit x --measure n=inf
usage_err "--measure n=0x10" "$ctl" emit x --measure n=0x10
usage_err "--measure n=" "$ctl" emit x --measure n=
usage_err "stage migrate 1x" "$ctl" stage migrate 1x
usage_err "inspect --count 5x" "$inspect" events --count 5x
usage_err "inspect --pid -3" "$inspect" graveyard --pid -3
for w in 3x 1 17 "" -2 " 3"; do
	usage_err "demo --workers '$w'" "$bin/foundation-demo" --workers "$w"
done
err_is "demo --workers ' 3'" \
	"foundation-demo: --workers \" 3\": not a number 2..16 (see foundation-demo --help)"
usage_err "demo --bogus" "$bin/foundation-demo" --bogus
usage_err "reaperd --bogus" "$bin/foundation-reaperd" --bogus
err_is "reaperd --bogus" "foundation-reaperd: --bogus: unknown option (see foundation-reaperd --help)"
usage_err "reaperd --segment" "$bin/foundation-reaperd" --segment
usage_err "reaperd extra" "$bin/foundation-reaperd" --segment "$seg" extra
[ ! -e "/dev/shm/$seg-n" ] || fail "a refused create made a segment"
ok

# ---- failures: one lower-case line, exit 1 -------------------------------------------
run 1 "reaper stop of a missing segment" "$ctl" --segment "$seg-missing" reaper status
err_is "missing segment" "foundation-ctl: segment \"$seg-missing\": segment not found"

# ---- destroy (--json) ---------------------------------------------------------------
run 0 "destroy --json" "$ctl" destroy --json
json "destroy --json" "d=={'segment':'$seg','destroyed':True}"

echo "$passed passed, 0 failed"
