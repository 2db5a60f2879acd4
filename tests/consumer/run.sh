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
export LD_LIBRARY_PATH="$prefix/lib"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
cc -o "$prefix/consumer-pc" "$here/consumer.c" $(pkg-config --cflags --libs foundation)
"$prefix/consumer-pc"
cmake -S "$here" -B "$prefix/build" -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$prefix/build" >/dev/null
"$prefix/build/consumer"
