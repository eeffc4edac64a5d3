/* libFuzzer target over the C ABI: decode arbitrary bytes as a JSON or MessagePack envelope
 * (chosen by ORC_FUZZ_FORMAT at compile time). A decoded message must encode again in both
 * formats, and its JSON encoding must decode again: no crash, leak or hang on any input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "orchestra.h"

#ifndef ORC_FUZZ_FORMAT
#define ORC_FUZZ_FORMAT ORC_FORMAT_JSON
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    orc_msg_t *msg = NULL;
    if (orc_msg_decode(ORC_FUZZ_FORMAT, data, size, NULL, &msg) != ORC_OK) return 0;
    void *json = NULL, *mp = NULL;
    size_t json_len = 0, mp_len = 0;
    if (orc_msg_encode_alloc(msg, ORC_FORMAT_JSON, &json, &json_len) != ORC_OK) abort();
    /* MessagePack cannot carry integers beyond 64 bits, so its encoder may refuse. */
    (void)orc_msg_encode_alloc(msg, ORC_FORMAT_MSGPACK, &mp, &mp_len);
    orc_msg_t *again = NULL;
    if (orc_msg_decode(ORC_FORMAT_JSON, json, json_len, NULL, &again) != ORC_OK) abort();
    orc_msg_release(again);
    orc_buf_free(json);
    orc_buf_free(mp);
    orc_msg_release(msg);
    return 0;
}
