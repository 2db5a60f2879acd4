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
#   sh cmake/bootstrap.sh arm64          cross-compile for arm64 (build-arm64/, the
#                                        gcc-aarch64-linux-gnu toolchain and :arm64
#                                        packages through multiarch) and run the unit,
#                                        multiproc and short stress tests under
#                                        qemu-user; prints "SKIP: ..." and exits 0
#                                        when the package mirror has no arm64 packages
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
# curl; the shell tests check JSON with python3; test_changefeed_uv runs a
# libuv loop.  foundation-mirrord talks to etcd's JSON gateway with libcurl
# and json-c; its tests start a real etcd (etcd-server, /usr/bin/etcd) on
# loopback and use etcdctl (etcd-client) and openssl for the TLS certificates.
test | test-sanitize) need="$need prometheus curl python3 libuv1-dev etcd-server etcd-client libcurl4-openssl-dev libjson-c-dev openssl" ;;
demo | stress-tsan) ;;
# The host's side of the cross build; the :arm64 packages follow below.
arm64) need="cmake pkg-config python3 gcc-aarch64-linux-gnu qemu-user" ;;
*)
	sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
	;;
esac

# arm64: the architecture is enabled (multiarch) before any install, so a
# mirror without arm64 indexes is found out first.
if [ "$job" = arm64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "bootstrap: the arm64 architecture is not enabled; run this, then run me again:" >&2
		echo "  sudo dpkg --add-architecture arm64 && sudo apt-get update" >&2
		exit 1
	fi
	echo "bootstrap: dpkg --add-architecture arm64; apt-get update"
	dpkg --add-architecture arm64
	apt-get update -q || true
fi

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

# The arm64 job (cross build, tests under qemu-user).
arm64_job() {
	t0=$(date +%s)
	triple=aarch64-linux-gnu
	# The C library the programs run on under qemu, and the libraries the
	# build needs, as :arm64 packages installed beside the
	# host's (Multi-Arch: same): liburcu, xxhash, and LMDB for fdn-bench.
	dev="libc6:arm64 liburcu-dev:arm64 libxxhash-dev:arm64 liblmdb-dev:arm64"
	# Criterion's runtime dependencies that coexist with the host's.
	crit_deps="libgit2-1.5:arm64 libffi8:arm64"
	unavailable=""
	for p in $dev $crit_deps libcriterion3:arm64 libcriterion-dev:arm64 libnanomsg5:arm64; do
		apt-cache policy "$p" 2>/dev/null | grep -q 'Candidate: [0-9]' ||
			unavailable="$unavailable $p"
	done
	case "$unavailable" in
	*liburcu-dev:arm64* | *libxxhash-dev:arm64*)
		echo "SKIP: arm64: the package mirror offers no arm64 build of:$unavailable" \
			"(the library needs liburcu-dev and libxxhash-dev for arm64); nothing built"
		return 0
		;;
	esac
	[ -z "$unavailable" ] || echo "arm64: not offered for arm64 by the mirror:$unavailable"
	want=""
	for p in $dev $crit_deps; do
		case "$unavailable" in *" $p"*) continue ;; esac
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
			want="$want $p"
	done
	if [ -n "$want" ]; then
		if [ "$(id -u)" -ne 0 ]; then
			echo "bootstrap: missing arm64 packages:$want" >&2
			echo "bootstrap: run this, then run me again:" >&2
			echo "  sudo apt-get install -y --no-install-recommends$want" >&2
			return 1
		fi
		echo "bootstrap: installing:$want"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $want
	fi

	# Criterion for arm64 cannot be installed beside the host's:
	# libcriterion3:arm64 needs libnanomsg5:arm64, which is not Multi-Arch
	# and would replace libnanomsg5:amd64 (removing the host's Criterion).
	# Its three packages are unpacked into build-arm64/target-root instead,
	# with a criterion.pc of our own naming that prefix.
	root=$PWD/build-arm64/target-root
	crit=1
	case "$unavailable" in *criterion* | *nanomsg* | *libgit2* | *libffi8*) crit=0 ;; esac
	if [ "$crit" = 1 ] && [ ! -e "$root/usr/lib/$triple/pkgconfig/criterion.pc" ]; then
		dl=$(mktemp -d)
		chmod 777 "$dl" # apt-get download fetches as the _apt user
		if (cd "$dl" && apt-get download -q libcriterion3:arm64 libcriterion-dev:arm64 \
			libnanomsg5:arm64); then
			rm -rf "$root"
			mkdir -p "$root"
			for d in "$dl"/*.deb; do dpkg-deb -x "$d" "$root"; done
			cat >"$root/usr/lib/$triple/pkgconfig/criterion.pc" <<-EOF
				prefix=$root/usr
				includedir=\${prefix}/include
				libdir=\${prefix}/lib/$triple

				Name: criterion
				Description: Criterion for arm64, unpacked by cmake/bootstrap.sh arm64
				Version: 2.4.1
				Libs: -L\${libdir} -lcriterion -Wl,-rpath-link,\${libdir}
				Cflags: -I\${includedir}
			EOF
		else
			crit=0
		fi
		rm -rf "$dl"
	fi
	lmdb=ON
	case "$unavailable" in *liblmdb-dev*) lmdb=OFF ;; esac

	build build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo -DFOUNDATION_WERROR=ON -DFDN_TARGET_EXTRA_ROOT="$root" \
		-DFOUNDATION_CRITERION="$([ "$crit" = 1 ] && echo ON || echo OFF)" \
		-DFOUNDATION_BENCH="$lmdb" -DSTRESS_SECONDS=3
	echo "arm64: built in $(($(date +%s) - t0)) s (benchmarks built, not run: timings" \
		"under an emulator mean nothing)"
	[ "$crit" = 1 ] || echo "arm64: SKIP: the Criterion test programs (no Criterion for arm64" \
		"from the mirror); the shell and stress tests still run"

	# Criterion's runner execs the test program for each test: the kernel
	# can exec an arm64 binary only through a binfmt_misc handler.  As root,
	# with none registered for aarch64 (Debian's qemu-user-binfmt makes one),
	# register ours for the job's length and remove it on every exit path.
	binfmt=/proc/sys/fs/binfmt_misc
	if [ "$crit" = 1 ] && [ "$(id -u)" = 0 ] && ! grep -qs '^interpreter .*qemu-aarch64' \
		"$binfmt"/* 2>/dev/null; then
		[ -e "$binfmt/register" ] || mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null || true
		qemu=$(command -v qemu-aarch64 || true)
		if [ -w "$binfmt/register" ] && [ -n "$qemu" ]; then
			# The aarch64 ELF header (e_ident, e_type EXEC or DYN, e_machine 183).
			magic='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
			mask='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'
			if printf '%s' ":fdn-qemu-aarch64:M::$magic:$mask:$qemu:" >"$binfmt/register" 2>/dev/null; then
				trap 'echo -1 >'"$binfmt"'/fdn-qemu-aarch64 2>/dev/null || true' EXIT
				trap 'exit 1' INT TERM
				echo "arm64: registered binfmt_misc handler fdn-qemu-aarch64 -> $qemu for this job"
			fi
		fi
	fi
	# Criterion's runner must work under this qemu: one test of test_errors
	# must pass.  (Criterion's BoxFort runs every test in a new exec of the
	# test program; without binfmt_misc the kernel cannot exec an arm64
	# binary, and the runner stops with "Could not spawn test instance".)
	skip_label="bench|install"
	if [ "$crit" = 1 ]; then
		probe=$(FOUNDATION_NO_AUTOREAPER=1 timeout -s KILL 60 build-arm64/qemu-bin/qemu-run \
			build-arm64/tests/test_errors -j1 \
			--filter 'errors/version_of_headers_and_library' 2>&1) && pst=0 || pst=$?
		if [ "$pst" -eq 0 ]; then
			echo "arm64: Criterion runs under qemu-user: the Criterion tests run"
		else
			skip_label="$skip_label|criterion"
			echo "arm64: SKIP: the Criterion test programs (built, not run) under qemu-user:" \
				"Criterion's runner execs the test program for each test, which needs" \
				"binfmt_misc; it said: $(echo "$probe" | head -n 1) (status $pst)"
		fi
	fi
	echo "arm64: left out: benchmarks (label bench), install_consumer (label install:" \
		"it builds a host consumer)"
	st=0
	# Of the Criterion programs, those that run under qemu-user in the job's
	# time: test_registry takes over 10 minutes there, and programs whose
	# tests fork while other threads run (test_trace, test_telemetry and
	# the ones after them) make qemu 7.2 itself abort ("cpu == current_cpu").
	crit_qemu='^(test_errors|test_attrs|test_segment|test_table|test_corrupt|test_metrics|test_multiproc|test_rcu|test_crash|test_lookup)$'
	case "$skip_label" in
	*criterion*) ;;
	*)
		echo "arm64: SKIP: the other Criterion programs (too slow under emulation, or" \
			"qemu-user aborts on fork with threads running); the native jobs run them"
		ctest --test-dir build-arm64 --output-on-failure --timeout 300 -L criterion \
			-R "$crit_qemu" || st=1
		skip_label="$skip_label|criterion"
		;;
	esac
	ctest --test-dir build-arm64 --output-on-failure --timeout 300 -L 'unit|multiproc' \
		-LE "$skip_label" || st=1
	# The stress programs' short runs, if the time left allows (the whole
	# job must stay under 12 minutes).
	spent=$(($(date +%s) - t0))
	if [ "$spent" -lt 540 ]; then
		ctest --test-dir build-arm64 --output-on-failure --timeout 120 -L stress || st=1
	else
		echo "arm64: SKIP: the stress programs' short runs (label stress): $spent s" \
			"spent already, the job's budget is 12 minutes"
	fi
	echo "arm64: done in $(($(date +%s) - t0)) s"
	return $st
}

case "$job" in
arm64) arm64_job ;;
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
	# It stops after FUZZ_RUNS executions (default 20000) or FUZZ_SECONDS
	# (default 240), whichever comes first: an input that attaches walks a
	# whole segment (the populated seed is 11 MB), 8-24 executions a
	# second on 2 cores.
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFOUNDATION_FUZZ=ON \
		-DFOUNDATION_BENCH=OFF
	cmake --build build-fuzz -j "$jobs" --target fuzz_segment
	scratch=$(mktemp -d)
	trap 'rm -rf "$scratch"' EXIT
	root=$PWD
	(cd "$scratch" && "$root/build-fuzz/stress/fuzz_segment" -runs="${FUZZ_RUNS:-20000}" \
		-max_total_time="${FUZZ_SECONDS:-240}" -timeout=10 -max_len=200000 -print_final_stats=1 "$scratch" "$root/stress/corpus")
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
