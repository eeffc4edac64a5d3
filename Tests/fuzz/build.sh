#!/usr/bin/env bash
# Builds the libFuzzer targets: the Swift sources compiled with -sanitize=fuzzer,address
# (coverage-guided, AddressSanitizer) into static libraries, and each C target in Tests/fuzz
# linked against them, so the fuzzer drives the library through the C ABI. OrchestraNet's internal
# parsers are driven through fuzz-only Swift entry points (NetFuzzEntry.swift), compiled into the
# module here and never into liborchestra.so.
# Usage: build.sh <source-dir> <out-dir>
set -euo pipefail
src=$1; out=$2
mkdir -p "$out"
export PATH="/opt/swift/usr/bin:$PATH"
inc=(-I "$src/Sources/CZlib" -I "$src/Sources/CSSL" -I "$src/Sources/COrchestra" -I "$src/Sources/CUV" -I "$src/Sources/CSQLite")
flags=(-O -parse-as-library -sanitize=fuzzer,address -package-name orchestra)   # package: as CMake and SwiftPM build them
cd "$out"
mapfile -t core < <(find "$src/Sources/OrchestraCore" -name '*.swift' | sort)
mapfile -t abi < <(find "$src/Sources/Orchestra" -name '*.swift' | sort)
swiftc "${flags[@]}" "${inc[@]}" -emit-library -static -emit-module -module-name OrchestraCore \
  "${core[@]}" -o libOrchestraCore.a
mapfile -t net < <(find "$src/Sources/OrchestraNet" -name '*.swift' | sort)
swiftc "${flags[@]}" "${inc[@]}" -I . -emit-library -static -emit-module -module-name OrchestraNet \
  "${net[@]}" "$src/Tests/fuzz/NetFuzzEntry.swift" -o libOrchestraNetFuzz.a
for module in OrchestraWire OrchestraAgent; do   # what the C ABI imports besides Core and Net
  mapfile -t files < <(find "$src/Sources/$module" -name '*.swift' | sort)
  swiftc "${flags[@]}" "${inc[@]}" -I . -emit-library -static -emit-module -module-name $module \
    "${files[@]}" -o lib$module.a
done
swiftc "${flags[@]}" "${inc[@]}" -I . -emit-library -static -module-name Orchestra \
  "${abi[@]}" -o libOrchestra.a
build_target() {  # name, extra C flags
  clang -c -g -O1 -fsanitize=fuzzer-no-link,address -I "$src/include" $2 \
    "$src/Tests/fuzz/fuzz_decode.c" -o "$1.o"
  swiftc -sanitize=fuzzer,address "$1.o" libOrchestra.a libOrchestraAgent.a libOrchestraWire.a libOrchestraNetFuzz.a \
    libOrchestraCore.a -lz -lssl -lcrypto -luv -o "$1" 2> "$1.link.log" || { cat "$1.link.log"; exit 1; }
}
build_net_target() {  # name, entry point
  clang -c -g -O1 -fsanitize=fuzzer-no-link,address -DORC_FUZZ_ENTRY=$2 \
    "$src/Tests/fuzz/fuzz_net.c" -o "$1.o"
  swiftc -sanitize=fuzzer,address "$1.o" libOrchestraNetFuzz.a libOrchestraCore.a -lz -lssl -lcrypto -luv \
    -o "$1" 2> "$1.link.log" || { cat "$1.link.log"; exit 1; }
}
build_target fuzz_json "-DORC_FUZZ_FORMAT=ORC_FORMAT_JSON"
build_target fuzz_msgpack "-DORC_FUZZ_FORMAT=ORC_FORMAT_MSGPACK"
build_net_target fuzz_ws_frames orc_fuzz_ws_frames
build_net_target fuzz_http_head orc_fuzz_http_head
build_net_target fuzz_inflate orc_fuzz_inflate
echo "fuzz targets built in $out"
