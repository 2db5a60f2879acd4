#!/bin/sh
# test_flags_tools.sh - `foundation-ctl flags|stage` and `foundation-inspect
# flags|stages`, driven the way an operator would: read the defaults, set
# and create flags, walk the stages up and back down, an emergency
# rollback, every error path (exit 1 with one line, or 2 for bad usage),
# the history in text and JSON, reset, and a clean check at the end.
#
# usage: test_flags_tools.sh BIN_DIR   (the directory holding the tools)
#
# Every assertion counts; the first failure prints what failed, the
# command's output and exits 1.  "N passed, 0 failed" is printed only when
# every assertion held.
set -eu

bin=${1:?usage: test_flags_tools.sh BIN_DIR}
ctl="$bin/foundation-ctl"
inspect="$bin/foundation-inspect"
export FOUNDATION_NO_AUTOREAPER=1 # nothing here dies: no reaper needed
unset FOUNDATION_FLAGS
seg="fdn-flagtools-$$"
export FOUNDATION_SEGMENT="$seg"
tmp=$(mktemp -d)
passed=0
. "$(dirname "$0")/tools_lib.sh"

cleanup() {
	"$ctl" --segment "$seg" destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# ---- help and usage ------------------------------------------------------------
run 0 "ctl flags --help" "$ctl" flags --help
out_has "ctl flags --help" "flags set NAME VALUE"
run 0 "ctl stage --help" "$ctl" stage --help
out_has "ctl stage --help" "rollback N [--reason R]"
run 0 "inspect stages --help" "$inspect" stages --help
out_has "inspect stages --help" "history"
run 2 "flags, no sub-command" "$ctl" flags
err_is "flags, no sub-command" \
	"foundation-ctl: flags: missing set, get, list, create or reset (see foundation-ctl flags --help)"
run 2 "flags bogus" "$ctl" flags bogus
run 2 "flags set NAME" "$ctl" flags set use_shm_spans
run 2 "flags get A B" "$ctl" flags get a b
run 2 "stage, no sub-command" "$ctl" stage
run 2 "stage migrate x" "$ctl" stage migrate x
err_is "stage migrate x" \
	"foundation-ctl: stage migrate \"x\": not a stage number (see foundation-ctl stage --help)"
run 2 "stage emergency, no reason" "$ctl" stage emergency
run 2 "stage migrate --reason" "$ctl" stage migrate 1 --reason r
run 2 "inspect flags extra" "$inspect" flags extra

# ---- no segment yet ------------------------------------------------------------
run 1 "flags list, no segment" "$ctl" flags list
err_is "flags list, no segment" "foundation-ctl: segment \"$seg\": segment not found"
run 1 "inspect flags, no segment" "$inspect" flags
run 0 "create" "$ctl" create --entries 1000 --processes 64 --threads 64

# ---- defaults: the stage-3 profile -----------------------------------------------
run 0 "flags get" "$ctl" flags get use_shm_registry
out_is "flags get" "on"
run 0 "flags get enforce" "$ctl" flags get enforce_no_local_state
out_is "flags get enforce" "off"
run 0 "inspect flags" "$inspect" --json flags
out_has "inspect flags" "\"stage\":3,"
out_has "inspect flags" "{\"name\":\"use_shm_spans\",\"value\":100,\"enabled\":true,\"default\":100,\"builtin\":true,\"changed_ns\":0}"
out_has "inspect flags" "\"count\":7}"

# ---- set, create, get, list -------------------------------------------------------
run 0 "flags set 25" "$ctl" flags set use_shm_spans 25
run 0 "flags get 25" "$ctl" flags get use_shm_spans
out_is "flags get 25" "25%"
run 0 "flags set off" "$ctl" flags set use_shm_spans off
run 0 "flags create" "$ctl" flags create checkout.v2 10%
run 0 "flags create default off" "$ctl" flags create dark-mode
run 0 "flags get user" "$ctl" flags get dark-mode
out_is "flags get user" "off"
run 0 "flags list" "$ctl" flags list
out_has "flags list" "checkout.v2"
out_has "flags list" "10%  (default 10%)"
run 1 "flags set 101" "$ctl" flags set use_shm_spans 101
err_is "flags set 101" \
	"foundation-ctl: flags set \"use_shm_spans\": value \"101\": percentage outside 0..100"
run 1 "flags set junk" "$ctl" flags set use_shm_spans maybe
err_is "flags set junk" \
	"foundation-ctl: flags set \"use_shm_spans\": value \"maybe\": invalid argument"
run 1 "flags set unknown" "$ctl" flags set no_such_flag on
err_is "flags set unknown" "foundation-ctl: flags set \"no_such_flag\": unknown flag"
run 1 "flags get unknown" "$ctl" flags get no_such_flag
err_is "flags get unknown" "foundation-ctl: flags get \"no_such_flag\": unknown flag"
run 1 "flags create again" "$ctl" flags create dark-mode on
err_is "flags create again" "foundation-ctl: flags create \"dark-mode\": already exists"
run 1 "flags create bad name" "$ctl" flags create "no spaces" on
err_is "flags create bad name" "foundation-ctl: flags create \"no spaces\": invalid argument"
run 0 "flags unchanged" "$ctl" flags get use_shm_spans
out_is "flags unchanged" "off"
run 0 "inspect flags text" "$inspect" flags
out_has "inspect flags text" "stage 3"
out_has "inspect flags text" "checkout.v2"
out_has "inspect flags text" "user"

# ---- stages ---------------------------------------------------------------------------
run 1 "migrate 3 at 3" "$ctl" stage migrate 3
err_is "migrate 3 at 3" "foundation-ctl: stage migrate 3 (at stage 3): invalid stage transition"
run 1 "migrate 9" "$ctl" stage migrate 9
run 1 "rollback 3 at 3" "$ctl" stage rollback 3
run 0 "migrate 4" "$ctl" stage migrate 4
run 0 "enforce on" "$ctl" flags get enforce_no_local_state
out_is "enforce on" "on"
run 0 "rollback 1" "$ctl" stage rollback 1 --reason "latency regression"
run 0 "spans off at 1" "$ctl" flags get use_shm_spans
out_is "spans off at 1" "off"
run 0 "registry on at 1" "$ctl" flags get use_shm_registry
out_is "registry on at 1" "on"
run 1 "migrate 3 at 1" "$ctl" stage migrate 3
run 0 "migrate 2" "$ctl" stage migrate 2
run 0 "emergency" "$ctl" stage emergency "pager went off"
run 0 "registry off at 0" "$ctl" flags get use_shm_registry
out_is "registry off at 0" "off"
# The registry commands refuse to act on ctl's own (process-local) registry.
sleep 300 >/dev/null 2>&1 </dev/null &
sleeper=$!
run 1 "register while local" "$ctl" register web-1 --pid "$sleeper"
err_is "register while local" \
	"foundation-ctl: segment \"$seg\": use_shm_registry is off (the registry is process-local)"
kill "$sleeper"
run 0 "user flag untouched" "$ctl" flags get checkout.v2
out_is "user flag untouched" "10%"

run 0 "inspect stages" "$inspect" --json stages
out_has "inspect stages" "\"stage\":0,"
out_has "inspect stages" "{\"stage\":1,\"name\":\"registry\",\"description\":"
out_has "inspect stages" "\"risk\":\"low\","
out_has "inspect stages" "\"risk\":\"high\","
out_has "inspect stages" "\"flags\":[\"use_shm_registry\",\"enable_migration_monitoring\"]}"
out_has "inspect stages" "\"kind\":\"stage\",\"flag\":\"\",\"from\":3,\"to\":4,\"reason\":\"migrate\"}"
out_has "inspect stages" "\"kind\":\"stage\",\"flag\":\"\",\"from\":4,\"to\":1,\"reason\":\"latency regression\"}"
out_has "inspect stages" "\"kind\":\"flag\",\"flag\":\"enforce_no_local_state\",\"from\":100,\"to\":0,\"reason\":\"latency regression\"}"
out_has "inspect stages" "\"kind\":\"stage\",\"flag\":\"\",\"from\":2,\"to\":0,\"reason\":\"pager went off\"}"
out_has "inspect stages" "\"kind\":\"alert\",\"flag\":\"emergency_rollback\",\"from\":2,\"to\":0,\"reason\":\"pager went off\"}"
out_has "inspect stages" "\"kind\":\"flag\",\"flag\":\"checkout.v2\",\"from\":-1,\"to\":10,\"reason\":\"create\"}"
# 2 sets and 2 creates; migrate 4: spans (set off by hand) and enforce + the
# stage = 3; rollback 1: 5 + 1; migrate 2: 1 + 1; emergency: 3 + 1 + the
# alert.
out_has "inspect stages" "\"history_total\":20,"
run 0 "inspect stages text" "$inspect" stages
out_has "inspect stages text" "stage 0 of 4; profiles:"
out_has "inspect stages text" "* 0 local (risk none): (everything off)"
out_has "inspect stages text" "4 enforced (risk high): use_shm_registry"
out_has "inspect stages text" "20 changes in total"
out_has "inspect stages text" "alert"
out_has "inspect stages text" "pager went off"

# ---- reset, then the checker ---------------------------------------------------------
run 0 "reset" "$ctl" flags reset
run 0 "after reset" "$inspect" --json flags
out_has "after reset" "\"stage\":3,"
out_has "after reset" "{\"name\":\"use_shm_spans\",\"value\":100,"
out_has "after reset" "{\"name\":\"checkout.v2\",\"value\":10,"
run 0 "check" "$inspect" check
out_has "check" "0 violations"
run 0 "destroy" "$ctl" destroy

echo "$passed passed, 0 failed"
