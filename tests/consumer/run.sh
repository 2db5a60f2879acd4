#!/bin/sh
# Install the build into a scratch prefix, then build and run a consumer
# against it twice: through pkg-config and through find_package(Foundation).
# usage: run.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1
here=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
# Everything a user expects in place: programs, man pages, headers, the
# systemd unit, the pkg-config and CMake files.
for f in bin/foundation-reaperd bin/foundation-inspect bin/foundation-ctl bin/foundation-demo \
	share/man/man1/foundation-reaperd.1 share/man/man1/foundation-inspect.1 \
	share/man/man1/foundation-ctl.1 share/man/man1/foundation-demo.1 \
	include/foundation/foundation.h include/foundation/spans.h include/foundation/context.h \
	include/foundation/flags.h include/foundation/telemetry.h lib/pkgconfig/foundation.pc \
	lib/cmake/Foundation/FoundationConfig.cmake; do
	[ -e "$prefix/$f" ] || {
		echo "not installed: $f" >&2
		exit 1
	}
done
find "$prefix" -name 'foundation-reaperd@.service' | grep -q . || {
	echo "not installed: the systemd unit" >&2
	exit 1
}
export LD_LIBRARY_PATH="$prefix/lib"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc -o "$prefix/consumer-pc" "$here/consumer.c" $(pkg-config --cflags --libs foundation)
"$prefix/consumer-pc"
cmake -S "$here" -B "$prefix/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/build" >/dev/null
"$prefix/build/consumer"
