#!/bin/sh
# busy_loop.sh - the README's test command on a busy machine: run
# `sh cmake/bootstrap.sh test` N times in a row (default 10) while
# `stress-ng --cpu 2` keeps two CPUs busy beside it.  Stops at the first
# failing round (exit 1) and prints one summary line either way:
#
#   busy_loop: rounds=N passed=P failed_round=R seconds=S
#
#   sh tests/busy_loop.sh [N]
#
# stress-ng (Debian package stress-ng) is installed with apt-get when
# missing and run as root; otherwise the command to run is printed and the
# script stops.  stress-ng is stopped on every exit (also on a signal).
set -eu

cd "$(dirname "$0")/.."
rounds=${1:-10}
case "$rounds" in
'' | *[!0-9]*)
	echo "usage: sh tests/busy_loop.sh [ROUNDS]" >&2
	exit 2
	;;
esac
[ "$rounds" -ge 1 ] || {
	echo "busy_loop: ROUNDS must be at least 1" >&2
	exit 2
}

if ! command -v stress-ng >/dev/null 2>&1; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "busy_loop: installing stress-ng"
		DEBIAN_FRONTEND=noninteractive apt-get update -q
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q stress-ng
	else
		echo "busy_loop: stress-ng is missing; run this, then run me again:" >&2
		echo "  sudo apt-get install -y stress-ng" >&2
		exit 1
	fi
fi

hog=""
stop_hog() {
	if [ -n "$hog" ]; then
		kill "$hog" 2>/dev/null || true
		wait "$hog" 2>/dev/null || true
		hog=""
	fi
}
trap stop_hog EXIT
trap 'stop_hog; exit 130' INT
trap 'stop_hog; exit 143' TERM

stress-ng --cpu 2 --timeout 0 --quiet &
hog=$!
sleep 1
kill -0 "$hog" 2>/dev/null || {
	echo "busy_loop: stress-ng did not start" >&2
	exit 1
}

start=$(date +%s)
passed=0
failed=0
i=1
while [ "$i" -le "$rounds" ]; do
	echo "busy_loop: round $i of $rounds (load $(cut -d' ' -f1-3 /proc/loadavg))"
	if sh cmake/bootstrap.sh test; then
		passed=$((passed + 1))
	else
		failed=$i
		break
	fi
	i=$((i + 1))
done
stop_hog
echo "busy_loop: rounds=$rounds passed=$passed failed_round=$failed" \
	"seconds=$(($(date +%s) - start))"
[ "$failed" -eq 0 ]
