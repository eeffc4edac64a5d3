#!/usr/bin/env bash
# Builds the libFuzzer targets: the Swift sources compiled with -sanitize=fuzzer,address
# (coverage-guided, AddressSanitizer) into static libraries, and each C target in Tests/fuzz
# linked against them, so the fuzzer drives the library through the C ABI.
# Usage: build.sh <source-dir> <out-dir>
set -euo pipefail
src=$1; out=$2
mkdir -p "$out"
export PATH="/opt/swift/usr/bin:$PATH"
inc=(-I "$src/Sources/CZlib" -I "$src/Sources/CSSL" -I "$src/Sources/COrchestra")
flags=(-O -parse-as-library -sanitize=fuzzer,address)
cd "$out"
mapfile -t core < <(find "$src/Sources/OrchestraCore" -name '*.swift' | sort)
mapfile -t abi < <(find "$src/Sources/Orchestra" -name '*.swift' | sort)
swiftc "${flags[@]}" "${inc[@]}" -emit-library -static -emit-module -module-name OrchestraCore \
  "${core[@]}" -o libOrchestraCore.a
swiftc "${flags[@]}" "${inc[@]}" -I . -emit-library -static -module-name Orchestra \
  "${abi[@]}" -o libOrchestra.a
build_target() {  # name, extra C flags
  clang -c -g -O1 -fsanitize=fuzzer-no-link,address -I "$src/include" $2 \
    "$src/Tests/fuzz/fuzz_decode.c" -o "$1.o"
  swiftc -sanitize=fuzzer,address "$1.o" libOrchestra.a libOrchestraCore.a -lz -lssl -lcrypto \
    -o "$1" 2> "$1.link.log" || { cat "$1.link.log"; exit 1; }
}
build_target fuzz_json "-DORC_FUZZ_FORMAT=ORC_FORMAT_JSON"
build_target fuzz_msgpack "-DORC_FUZZ_FORMAT=ORC_FORMAT_MSGPACK"
echo "fuzz targets built in $out"
