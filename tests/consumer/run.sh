#!/bin/sh
# Install the build into a scratch prefix, then build and run a consumer
# against it four ways: through pkg-config (shared, then --static) and
# through find_package(Foundation) (Foundation::foundation, then
# Foundation::foundation_static).  The shared library's soname is
# libfoundation.so.MAJOR.
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
	bin/foundation-mirrord share/man/man1/foundation-mirrord.1 share/doc/foundation/cluster.md \
	share/man/man1/foundation-reaperd.1 share/man/man1/foundation-inspect.1 \
	share/man/man1/foundation-ctl.1 share/man/man1/foundation-demo.1 \
	include/foundation/foundation.h include/foundation/spans.h include/foundation/context.h \
	include/foundation/flags.h include/foundation/telemetry.h lib/pkgconfig/foundation.pc \
	lib/cmake/Foundation/FoundationConfig.cmake share/doc/foundation/operations.md \
	share/doc/foundation/examples/owner.conf; do
	[ -e "$prefix/$f" ] || {
		echo "not installed: $f" >&2
		exit 1
	}
done
for u in foundation-reaperd@.service foundation-mirrord@.service; do
	find "$prefix" -name "$u" | grep -q . || {
		echo "not installed: the systemd unit $u" >&2
		exit 1
	}
done
major=$(sed -n 's/^#define FDN_VERSION_MAJOR \([0-9]*\)$/\1/p' "$prefix/include/foundation/common.h")
[ -e "$prefix/lib/libfoundation.so.$major" ] || {
	echo "not installed: lib/libfoundation.so.$major" >&2
	exit 1
}
soname=$(readelf -d "$prefix/lib/libfoundation.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
[ "$soname" = "libfoundation.so.$major" ] || {
	echo "soname is '$soname', expected libfoundation.so.$major" >&2
	exit 1
}
export LD_LIBRARY_PATH="$prefix/lib"
# The reaper the library starts is the one installed beside it, found from
# where the library was loaded: no $FOUNDATION_REAPERD, and the configured
# path (CMAKE_INSTALL_PREFIX/bin) is not this scratch prefix.  A program
# that links the library statically finds it beside itself only, so the
# static consumers (built in $prefix, not in its bin) are told.
unset FOUNDATION_REAPERD FOUNDATION_NO_AUTOREAPER
reaperd=$(readlink -f "$prefix/bin/foundation-reaperd")
# reaper_is OUTPUT-FILE: the consumer said it ran the installed reaper.
reaper_is() {
	grep -qxF "consumer: reaper $reaperd" "$1" || {
		cat "$1" >&2
		echo "the consumer's reaper is not $reaperd" >&2
		exit 1
	}
}
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# needs_lib PROGRAM YES|NO: whether PROGRAM needs libfoundation.so at run time.
needs_lib() {
	if readelf -d "$1" | grep -q "NEEDED.*libfoundation\.so"; then has=YES; else has=NO; fi
	[ "$has" = "$2" ] || {
		echo "$1: needs libfoundation.so: $has, expected $2" >&2
		exit 1
	}
}
cc -o "$prefix/consumer-pc" "$here/consumer.c" $(pkg-config --cflags --libs foundation)
needs_lib "$prefix/consumer-pc" YES
"$prefix/consumer-pc" >"$prefix/out"
reaper_is "$prefix/out"
cc -o "$prefix/consumer-pc-static" "$here/consumer.c" $(pkg-config --cflags foundation) \
	"$prefix/lib/libfoundation.a" $(pkg-config --libs --static foundation | sed 's/-lfoundation//')
needs_lib "$prefix/consumer-pc-static" NO
FOUNDATION_REAPERD="$prefix/bin/foundation-reaperd" "$prefix/consumer-pc-static" >"$prefix/out"
reaper_is "$prefix/out"
for target in foundation foundation_static; do
	cmake -S "$here" -B "$prefix/build-$target" -DCMAKE_PREFIX_PATH="$prefix" \
		-DFOUNDATION_TARGET=$target >"$prefix/cmake.log" 2>&1 || {
		cat "$prefix/cmake.log" >&2
		echo "find_package(Foundation) with Foundation::$target failed" >&2
		exit 1
	}
	cmake --build "$prefix/build-$target" >/dev/null
	needs_lib "$prefix/build-$target/consumer" "$([ $target = foundation ] && echo YES || echo NO)"
	if [ $target = foundation ]; then
		"$prefix/build-$target/consumer" >"$prefix/out"
	else
		FOUNDATION_REAPERD="$prefix/bin/foundation-reaperd" "$prefix/build-$target/consumer" \
			>"$prefix/out"
	fi
	reaper_is "$prefix/out"
done
echo "install_consumer: pkg-config and find_package, shared and static: OK"
