#!/bin/sh
# changefeed_example.sh - the epoll example of docs/changefeed.md compiles
# against the headers and the static library just built, and runs: it sees
# its own register and unregister after an (empty) snapshot.
# usage: changefeed_example.sh SOURCE_DIR BUILD_DIR [BIN_DIR]
set -eu
src=${1:?usage: changefeed_example.sh SOURCE_DIR BUILD_DIR [BIN_DIR]}
build=${2:?usage: changefeed_example.sh SOURCE_DIR BUILD_DIR [BIN_DIR]}
bin=${3:-$build/tools}
run=""
if [ -x "$bin/qemu-run" ]; then run="$bin/qemu-run"; fi
tmp=$(mktemp -d)
seg="fdn-cfexample-$$"
cleanup() {
	FOUNDATION_NO_AUTOREAPER=1 "$bin/foundation-ctl" --segment "$seg" destroy >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT
sed -n '/<!-- changefeed-example:begin -->/,/<!-- changefeed-example:end -->/p' "$src/docs/changefeed.md" |
	sed '/^<!--/d; /^```/d' >"$tmp/follow.c"
[ -s "$tmp/follow.c" ] || { echo "FAIL: no example found in docs/changefeed.md" >&2; exit 1; }
san=""
if nm "$build/libfoundation.a" 2>/dev/null | grep -q __asan_; then
	san="-fsanitize=address,undefined"
fi
"${CC:-cc}" -std=gnu11 -Wall -Wextra -Werror $san -I"$src/lib/include" -o "$tmp/follow" "$tmp/follow.c" \
	"$build/libfoundation.a" $(pkg-config --libs liburcu-memb liburcu-cds libxxhash) -lpthread -lm
export FOUNDATION_SEGMENT="$seg" FOUNDATION_NO_AUTOREAPER=1
"$bin/foundation-ctl" create --entries 100 >/dev/null
out=$($run "$tmp/follow")
echo "$out" | grep -qE '^1 registered worker/me pid [0-9]+$' || { echo "FAIL: output: $out" >&2; exit 1; }
echo "$out" | grep -qE '^2 unregistered worker/me pid [0-9]+$' || { echo "FAIL: output: $out" >&2; exit 1; }
echo "changefeed example: $(echo "$out" | tr '\n' ';')"
