#!/bin/sh
# readme_example.sh - the C example in README.md compiles against the
# headers and the static library just built, and runs as it says.
# usage: readme_example.sh SOURCE_DIR BUILD_DIR [BIN_DIR]
# BIN_DIR holds the tools as the tests run them (BUILD_DIR/tools; in a cross
# build the emulator's wrappers, and qemu-run for the example itself).  $CC
# names the compiler (default cc).
set -eu
src=${1:?usage: readme_example.sh SOURCE_DIR BUILD_DIR [BIN_DIR]}
build=${2:?usage: readme_example.sh SOURCE_DIR BUILD_DIR [BIN_DIR]}
bin=${3:-$build/tools}
run=""
if [ -x "$bin/qemu-run" ]; then run="$bin/qemu-run"; fi
tmp=$(mktemp -d)
seg="fdn-readme-$$"
cleanup() {
	FOUNDATION_NO_AUTOREAPER=1 "$bin/foundation-ctl" --segment "$seg" destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
sed -n '/<!-- readme-example:begin -->/,/<!-- readme-example:end -->/p' "$src/README.md" |
	sed '/^<!--/d; /^```/d' >"$tmp/worker.c"
[ -s "$tmp/worker.c" ] || { echo "FAIL: no example found in README.md" >&2; exit 1; }
# A sanitizer build's library needs the same runtime in the program.
san=""
if nm "$build/libfoundation.a" 2>/dev/null | grep -q __asan_; then
	san="-fsanitize=address,undefined"
fi
"${CC:-cc}" -std=c11 -Wall -Wextra -Werror $san -I"$src/lib/include" -o "$tmp/worker" "$tmp/worker.c" \
	"$build/libfoundation.a" $(pkg-config --libs liburcu-memb liburcu-cds libxxhash) -lpthread -lm
export FOUNDATION_SEGMENT="$seg" FOUNDATION_NO_AUTOREAPER=1
"$bin/foundation-ctl" create --entries 100 >/dev/null
out=$($run "$tmp/worker")
echo "$out" | grep -qE '^worker-[0-9]+ is pid [0-9]+$' || { echo "FAIL: output: $out" >&2; exit 1; }
"$bin/foundation-inspect" events --name app.job | grep -q 'app.job.done' ||
	{ echo "FAIL: the example's event is not in the ring" >&2; exit 1; }
echo "README example: $out"
