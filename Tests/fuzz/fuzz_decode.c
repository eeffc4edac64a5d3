/* libFuzzer target over the C ABI: decode arbitrary bytes as a JSON or MessagePack envelope
 * (chosen by ORC_FUZZ_FORMAT at compile time). A decoded message must encode again in both
 * formats, and its JSON encoding must decode again: no crash, leak or hang on any input. Its
 * MessagePack encoding must not depend on the form it arrived in (checked below). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "orchestra.h"

#ifndef ORC_FUZZ_FORMAT
#define ORC_FUZZ_FORMAT ORC_FORMAT_JSON
#endif

/* The JSON member getters (a parsed tree, built after validation) on the same input: a
 * string they return must be as long as they say and NUL-terminated. */
static void json_getters(const uint8_t *data, size_t size) {
    char *s = NULL;
    size_t n = 0;
    static const char *paths[] = {"a", "payload.parameters.command", "", "x.y.z"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        if (orc_json_get_string((const char *)data, size, paths[i], &s, &n) == ORC_OK) {
            if (s[n] != 0) abort();
            orc_buf_free(s);
        }
        int64_t v;
        (void)orc_json_get_int((const char *)data, size, paths[i], &v);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (ORC_FUZZ_FORMAT == ORC_FORMAT_JSON) json_getters(data, size);
    orc_msg_t *msg = NULL;
    if (orc_msg_decode(ORC_FUZZ_FORMAT, data, size, NULL, &msg) != ORC_OK) return 0;
    void *json = NULL, *mp = NULL;
    size_t json_len = 0, mp_len = 0;
    if (orc_msg_encode_alloc(msg, ORC_FORMAT_JSON, &json, &json_len) != ORC_OK) abort();
    /* MessagePack cannot carry integers beyond 64 bits, so its encoder may refuse. */
    (void)orc_msg_encode_alloc(msg, ORC_FORMAT_MSGPACK, &mp, &mp_len);
    orc_msg_t *again = NULL;
    if (orc_msg_decode(ORC_FORMAT_JSON, json, json_len, NULL, &again) != ORC_OK) abort();
    /* The MessagePack encoding does not depend on the form the message arrived in: the JSON
     * round trip encodes to the same bytes (a JSON payload decoded from MessagePack is copied,
     * one decoded from JSON is transcoded), and our MessagePack decodes and encodes to itself. */
    void *mp2 = NULL;
    size_t mp2_len = 0;
    int rc2 = orc_msg_encode_alloc(again, ORC_FORMAT_MSGPACK, &mp2, &mp2_len);
    if ((rc2 == ORC_OK) != (mp != NULL)) abort();
    if (mp != NULL && (mp2_len != mp_len || memcmp(mp, mp2, mp_len) != 0)) abort();
    orc_buf_free(mp2);
    orc_msg_release(again);
    if (mp != NULL) {
        orc_msg_t *back = NULL;
        void *mp3 = NULL;
        size_t mp3_len = 0;
        if (orc_msg_decode(ORC_FORMAT_MSGPACK, mp, mp_len, NULL, &back) != ORC_OK) abort();
        if (orc_msg_encode_alloc(back, ORC_FORMAT_MSGPACK, &mp3, &mp3_len) != ORC_OK) abort();
        if (mp3_len != mp_len || memcmp(mp, mp3, mp_len) != 0) abort();
        orc_buf_free(mp3);
        orc_msg_release(back);
    }
    orc_buf_free(json);
    orc_buf_free(mp);
    orc_msg_release(msg);
    return 0;
}
