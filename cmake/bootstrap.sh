#!/bin/sh
# bootstrap.sh - set up a Debian 12 machine, build, and run one job.
#
#   sh cmake/bootstrap.sh demo           install what is missing, build, run foundation-demo
#   sh cmake/bootstrap.sh test           install what is missing, build, run every test
#   sh cmake/bootstrap.sh test-sanitize  the same in an ASan+UBSan build (build-asan/)
#   sh cmake/bootstrap.sh stress-tsan    the stress programs (short) under ThreadSanitizer
#   sh cmake/bootstrap.sh bench          build in Release, run the benchmarks, write
#                                        bench/results/*.json and bench/results/bench.png
#   sh cmake/bootstrap.sh format-check   fail if a C file is not clang-formatted
#   sh cmake/bootstrap.sh fuzz           build the libFuzzer target (clang, build-fuzz/)
#                                        and run it FUZZ_RUNS times from stress/corpus
#
# Missing Debian packages are installed with apt-get when run as root;
# otherwise the exact command to run is printed and the script stops.
set -eu

cd "$(dirname "$0")/.."
job=${1:-}
[ $# -gt 0 ] && shift
jobs=$(nproc 2>/dev/null || echo 2)

need="build-essential cmake pkg-config liburcu-dev libxxhash-dev libcriterion-dev liblmdb-dev"
case "$job" in
bench) need="$need redis-server gnuplot-nox python3" ;;
format-check) need="clang-format" ;;
fuzz) need="$need clang libclang-rt-14-dev" ;;
# test_prometheus scrapes with a real Prometheus server and queries it with
# curl; the shell tests check JSON with python3.
test | test-sanitize) need="$need prometheus curl python3" ;;
demo | stress-tsan) ;;
*)
	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac

missing=""
for p in $need; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" -eq 0 ]; then
		echo "bootstrap: installing:$missing"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -q
		apt-get install -y -q $missing
	else
		echo "bootstrap: missing packages:$missing" >&2
		echo "bootstrap: run this, then run me again:" >&2
		echo "  sudo apt-get install -y$missing" >&2
		exit 1
	fi
fi

build() { # build DIR CMAKE-ARGS...
	dir=$1
	shift
	cmake -S . -B "$dir" "$@"
	cmake --build "$dir" -j "$jobs"
}

case "$job" in
demo)
	build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
	./build/tools/foundation-demo
	;;
test)
	build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFOUNDATION_WERROR=ON
	ctest --test-dir build --output-on-failure --timeout 900
	;;
test-sanitize)
	build build-asan -DCMAKE_BUILD_TYPE=Debug -DFOUNDATION_SANITIZE=ON -DFOUNDATION_WERROR=ON
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		LSAN_OPTIONS=suppressions="$PWD/cmake/lsan.supp" \
		ctest --test-dir build-asan --output-on-failure --timeout 1800 -LE "bench|install"
	;;
stress-tsan)
	# Only the stress programs (Criterion cannot run under TSan) and the
	# tools they run; 4-second runs keep the job short.  No -Werror: GCC
	# warns (-Wtsan) that TSan does not model atomic_thread_fence, which
	# the read lock's heavy path uses (stress/tsan.supp says what TSan
	# checks here).
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFOUNDATION_TSAN=ON \
		-DFOUNDATION_BENCH=OFF -DSTRESS_SECONDS=4
	cmake --build build-tsan -j "$jobs" --target stress_killstorm stress_readers \
		stress_reaperkill stress_pidreuse stress_pause stress_overload stress_corrupt
	TSAN_OPTIONS="suppressions=$PWD/stress/tsan.supp halt_on_error=1 second_deadlock_stack=1" \
		ctest --test-dir build-tsan --output-on-failure --timeout 600 -L stress
	;;
fuzz)
	# The target over damaged segments (stress/fuzz_segment.c) with its
	# seeds; new inputs go to a scratch directory, not to stress/corpus.
	# FUZZ_RUNS (default 20000) executions take well under a minute.
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFOUNDATION_FUZZ=ON \
		-DFOUNDATION_BENCH=OFF
	cmake --build build-fuzz -j "$jobs" --target fuzz_segment
	scratch=$(mktemp -d)
	trap 'rm -rf "$scratch"' EXIT
	root=$PWD
	(cd "$scratch" && "$root/build-fuzz/stress/fuzz_segment" -runs="${FUZZ_RUNS:-20000}" \
		-timeout=10 -max_len=200000 -print_final_stats=1 "$scratch" "$root/stress/corpus")
	;;
bench)
	# Arguments after `bench` go to fdn-bench (e.g. --sizes 10000,100000).
	build build-release -DCMAKE_BUILD_TYPE=Release
	mkdir -p bench/results
	{
		echo "nproc: $(nproc)"
		grep -m1 "model name" /proc/cpuinfo || true
		echo "kernel: $(uname -r)"
		echo "loadavg at start: $(cat /proc/loadavg)"
	} | tee bench/results/machine.txt
	./build-release/bench/fdn-bench --json-file bench/results/lookup.json "$@"
	FOUNDATION_REAPERD="$PWD/build-release/tools/foundation-reaperd" \
		./build-release/bench/fdn-bench-registry --json-file bench/results/registry.json
	./build-release/bench/fdn-bench-services --json-file bench/results/services.json | tee bench/results/services.txt
	echo "loadavg at end: $(cat /proc/loadavg)" | tee -a bench/results/machine.txt
	sh bench/plot.sh bench/results/bench.png bench/results/lookup.json \
		bench/results/registry.json
	;;
format-check)
	files=$(git ls-files '*.c' '*.h')
	bad=""
	for f in $files; do
		clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || bad="$bad $f"
	done
	if [ -n "$bad" ]; then
		echo "format-check: not formatted per .clang-format:$bad" >&2
		echo "format-check: fix with: clang-format -i$bad" >&2
		exit 1
	fi
	echo "format-check: all $(echo "$files" | wc -w) C files formatted"
	;;
esac
