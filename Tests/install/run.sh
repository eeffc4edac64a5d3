#!/usr/bin/env bash
# Installs the built library into a fresh prefix, then builds and runs one consumer through
# pkg-config and one through find_package(orchestra).
set -euo pipefail
build=$1; src=$2
prefix=$(mktemp -d /tmp/orc-prefix.XXXXXX)
work=$(mktemp -d /tmp/orc-consumer.XXXXXX)
trap 'rm -rf "$prefix" "$work"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(find "$prefix" -name 'liborchestra.so.0' -printf '%h\n' | head -1)
test -f "$prefix/include/orchestra.h"

# pkg-config
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -std=c11 -Wall -Wextra -Werror "$src/Tests/install/consumer/main.c" \
   $(pkg-config --cflags --libs orchestra) -o "$work/consumer-pkgconfig"
LD_LIBRARY_PATH="$libdir" "$work/consumer-pkgconfig"

# find_package
cmake -S "$src/Tests/install/consumer" -B "$work/cmake-build" -G Ninja \
      -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake-build" >/dev/null
LD_LIBRARY_PATH="$libdir" "$work/cmake-build/consumer"
echo "install consumers: 2 passed, 0 failed"
