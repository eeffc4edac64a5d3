#!/usr/bin/env bash
# The shipped library: soname liborchestra.so.0, no libswift* dependency, only orc_* exported,
# and it loads in a process whose library path has no Swift toolchain.
set -euo pipefail
lib=$1
fails=0; passes=0
# (grep without -q reads all its input: with -q it may exit first, the writer then dies of
# SIGPIPE and pipefail reports a failure although the line was found.)
check() { if eval "$2"; then passes=$((passes+1)); else echo "FAILED: $1"; fails=$((fails+1)); fi; }
check "soname is liborchestra.so.0" "objdump -p '$lib' | grep 'SONAME *liborchestra.so.0$' >/dev/null"
check "no libswift dependency" "! ldd '$lib' | grep libswift >/dev/null"
check "only orc_* exported" "[ -z \"\$(nm -D --defined-only '$lib' | awk '{print \$NF}' | grep -v -E '^(orc_|_init\$|_fini\$)')\" ]"
# Load it from a copy outside the build tree with an environment that names no toolchain.
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp "$lib" "$tmp/liborchestra.so.0"
check "loads without a Swift toolchain" "env -i PATH=/usr/bin:/bin LD_LIBRARY_PATH='$tmp' /usr/bin/python3 -c 'import ctypes; l = ctypes.CDLL(\"$tmp/liborchestra.so.0\"); assert l.orc_version() > 0'"
echo "library checks: $passes passed, $fails failed"
[ "$fails" -eq 0 ]
