#!/bin/sh
# test_upgrade.sh - the upgrade procedure of docs/operations.md, walked: a
# segment of another format (its header's major rewritten, as an older
# release would have made it) is refused by every program with both
# formats named and what to do; then the procedure -- stop its processes,
# destroy, re-create, register again -- gives a working segment.
#
# usage: test_upgrade.sh BIN_DIR
set -eu

bin=${1:?usage: test_upgrade.sh BIN_DIR}
ctl="$bin/foundation-ctl"
inspect="$bin/foundation-inspect"
reaperd="$bin/foundation-reaperd"
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
seg="fdn-upgrade-$$"
export FOUNDATION_SEGMENT="$seg"
export FOUNDATION_NO_AUTOREAPER=1
passed=0
. "$here/tools_lib.sh"
cleanup() {
	"$ctl" destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

run 0 "create" "$ctl" create --entries 1000 --processes 32 --threads 32
run 0 "register" "$ctl" register svc --pid $$
path=${FOUNDATION_SHM_DIR:-/dev/shm}/$seg
[ -f "$path" ] || fail "no segment file $path"
ok
# The header's format major (bytes 8-9, little-endian) as an older release wrote it.
printf '\002\000' | dd of="$path" bs=1 seek=8 conv=notrunc status=none
msg='version mismatch: made in format 2\.[0-9]*, this build reads format [0-9]*\.x: stop its processes, destroy and re-create it'
run 1 "ctl get, other format" "$ctl" get svc
grep -q "^foundation-ctl: segment \"$seg\": $msg (docs/operations.md)\$" "$tmp/err" ||
	fail "ctl: message: $(cat "$tmp/err")"
ok
run 1 "inspect, other format" "$inspect" registry
grep -q "^foundation-inspect: segment \"$seg\": $msg (docs/operations.md)\$" "$tmp/err" ||
	fail "inspect: message: $(cat "$tmp/err")"
ok
run 1 "reaperd, other format" "$reaperd" --foreground --segment "$seg"
grep -q "^foundation-reaperd: segment \"$seg\": $msg\$" "$tmp/err" ||
	fail "reaperd: message: $(cat "$tmp/err")"
ok
# The procedure: its processes stopped (none here), destroy, re-create,
# register again.
run 0 "destroy the old segment" "$ctl" destroy
[ ! -e "$path" ] || fail "destroy left $path"
ok
run 0 "re-create" "$ctl" create --entries 1000 --processes 32 --threads 32
run 0 "register again" "$ctl" register svc --pid $$
run 0 "get" "$ctl" get svc
out_has "get" "svc"
run 0 "check" "$inspect" check
echo "$passed passed, 0 failed"
