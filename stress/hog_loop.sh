#!/bin/sh
# hog_loop.sh - every stress program's short run, N rounds in a row
# (default 10), with two CPU hogs (busy loops) beside them: the stress
# programs must hold on a machine that is never idle.  Stops at the first
# failing round (exit 1) and prints one summary line either way:
#
#   hog_loop: rounds=N passed=P failed_round=R seconds=S
#
#   sh stress/hog_loop.sh [ROUNDS [BUILD_DIR]]
#
# BUILD_DIR (default build) must hold a build made by
# `sh cmake/bootstrap.sh test`; the hogs are stopped on every exit.
set -eu

cd "$(dirname "$0")/.."
rounds=${1:-10}
dir=${2:-build}
case "$rounds" in
'' | *[!0-9]* | 0)
	echo "usage: sh stress/hog_loop.sh [ROUNDS [BUILD_DIR]] (ROUNDS >= 1)" >&2
	exit 2
	;;
esac
if [ ! -f "$dir/CTestTestfile.cmake" ]; then
	echo "hog_loop: no build in $dir: run sh cmake/bootstrap.sh test first" >&2
	exit 2
fi

hogs=""
stop_hogs() {
	for h in $hogs; do
		kill "$h" 2>/dev/null || true
		wait "$h" 2>/dev/null || true
	done
	hogs=""
}
trap stop_hogs EXIT
trap 'stop_hogs; exit 130' INT
trap 'stop_hogs; exit 143' TERM

for _ in 1 2; do
	sh -c 'while :; do :; done' &
	hogs="$hogs $!"
done

start=$(date +%s)
passed=0
failed=0
i=1
while [ "$i" -le "$rounds" ]; do
	echo "hog_loop: round $i of $rounds (load $(cut -d' ' -f1-3 /proc/loadavg))"
	if ctest --test-dir "$dir" -L stress --output-on-failure --timeout 600; then
		passed=$((passed + 1))
	else
		failed=$i
		break
	fi
	i=$((i + 1))
done
stop_hogs
echo "hog_loop: rounds=$rounds passed=$passed failed_round=$failed" \
	"seconds=$(($(date +%s) - start))"
[ "$failed" -eq 0 ]
