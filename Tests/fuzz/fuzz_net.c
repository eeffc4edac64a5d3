/* libFuzzer targets for OrchestraNet's sans-I/O parsers (the WebSocket frame decoder, the
 * HTTP/1.1 head parsers and the handshake). They call fuzz-only Swift entry points
 * (Tests/fuzz/NetFuzzEntry.swift) that build.sh compiles into the instrumented build only;
 * liborchestra.so does not export them. ORC_FUZZ_ENTRY picks the entry point. */
#include <stddef.h>
#include <stdint.h>

#ifndef ORC_FUZZ_ENTRY
#define ORC_FUZZ_ENTRY orc_fuzz_ws_frames
#endif

int ORC_FUZZ_ENTRY(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return ORC_FUZZ_ENTRY(data, size);
}
