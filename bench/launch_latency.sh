#!/bin/sh
# launch_latency.sh - create and attach latency of two builds, interleaved:
# bench/launch_latency.c compiled against each build's shared library and
# run in turns of 5 rounds until each has ROUNDS, so that both see the same
# machine load; prints the median and the 90th percentile (ms) of each.
#
#   sh bench/launch_latency.sh BUILD_A BUILD_B [ROUNDS]    (default 50)
#
# A build directory is a configured and built tree (its libfoundation.so
# and tools/foundation-reaperd are used; its sources' public headers).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
rounds=${3:-50}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
n=0
for b in "$1" "$2"; do
	n=$((n + 1))
	b=$(cd "$b" && pwd)
	src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$b/CMakeCache.txt")
	cc -O2 -o "$tmp/bench$n" "$here/launch_latency.c" -I"$src/lib/include" -L"$b" \
		-Wl,-rpath,"$b" -lfoundation
	echo "$b" >"$tmp/dir$n"
done
done_rounds=0
while [ "$done_rounds" -lt "$rounds" ]; do
	for n in 1 2; do
		b=$(cat "$tmp/dir$n")
		FOUNDATION_REAPERD="$b/tools/foundation-reaperd" "$tmp/bench$n" 5 "$n" >>"$tmp/samples"
	done
	done_rounds=$((done_rounds + 5))
done
for n in 1 2; do
	echo "build $n: $(cat "$tmp/dir$n")"
	for op in create attach bare; do
		awk -v n="$n" -v op="$op" '$1 == n && $2 == op { print $3 }' "$tmp/samples" |
			sort -g >"$tmp/s"
		c=$(wc -l <"$tmp/s")
		med=$(sed -n "$(((c + 1) / 2))p" "$tmp/s")
		p90=$(sed -n "$(((c * 9 + 9) / 10))p" "$tmp/s")
		printf '  %-6s median %8s ms   p90 %8s ms   (%d runs)\n' "$op" "$med" "$p90" "$c"
	done
done
