/* C ABI tests for the envelope codec, compression and cipher (section CODEC of orchestra.h).
 *
 * Usage: test_codec [corpus-dir ...]
 * Every file in each corpus directory is a malformed envelope (*.json -> ORC_FORMAT_JSON,
 * anything else -> ORC_FORMAT_MSGPACK) and must fail with ORC_EPARSE or ORC_ETOOBIG. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "orc_test.h"

#define S(lit) lit, (sizeof(lit) - 1)

static int has(const char *needle) { return strstr(orc_last_error(), needle) != NULL; }

static orc_msg_t *sample(void) {
    orc_msg_t *m = NULL;
    if (orc_msg_new(S("task.stream"), &m) != ORC_OK) return NULL;
    orc_msg_set_id(m, S("id-1"));
    orc_msg_set_timestamp(m, 1700000000123LL);
    orc_msg_set_source(m, S("agent \"one\" ✓"));
    orc_msg_set_ttl(m, 5000);
    orc_msg_set_priority(m, ORC_PRIORITY_HIGH);
    orc_msg_header_set(m, S("traceId"), S("t\n1"));
    orc_msg_header_set_json(m, S("n"), S("[1,2.5,{\"k\":null}]"));
    orc_msg_set_payload(m, ORC_CONTENT_JSON, S("{\"text\":\"héllo\",\"ok\":true}"));
    return m;
}

static void test_options(void) {
    orc_decode_options_t o;
    memset(&o, 0, sizeof o);
    orc_decode_options_init(&o);
    CHECK(o.struct_size == sizeof o && o.max_size == 16u << 20 && o.max_depth == 64);
    CHECK_RC(orc_decode_options_init_sized(NULL, sizeof o), ORC_EINVAL);
    CHECK_RC(orc_decode_options_init_sized(&o, 4), ORC_EINVAL);
}

static void test_encode_sizing(void) {
    orc_msg_t *m = sample();
    CHECK(m != NULL);
    for (int f = ORC_FORMAT_JSON; f <= ORC_FORMAT_MSGPACK; f++) {
        size_t need = 0;
        CHECK_RC(orc_msg_encode(m, (orc_format_t)f, NULL, 0, &need), ORC_ENOSPC);
        CHECK(need > 50);
        CHECK(has("the buffer holds 0"));
        char *buf = malloc(need + 8);
        if (!buf) continue;
        memset(buf, 'Z', need + 8);
        size_t got = 1;
        CHECK_RC(orc_msg_encode(m, (orc_format_t)f, buf, need - 1, &got), ORC_ENOSPC);
        CHECK(got == need && buf[0] == 'Z');   /* untouched */
        CHECK_OK(orc_msg_encode(m, (orc_format_t)f, buf, need, &got));
        CHECK(got == need && buf[need] == 'Z');
        void *alloc = NULL;
        size_t alen = 0;
        CHECK_OK(orc_msg_encode_alloc(m, (orc_format_t)f, &alloc, &alen));
        CHECK(alloc != NULL && alen == need && memcmp(alloc, buf, need) == 0);
        if (f == ORC_FORMAT_JSON) {
            static const char expect[] = "{\"id\":\"id-1\",\"type\":\"task.stream\",\"timestamp\":1700000000123,"
                "\"version\":\"1.0\",\"source\":\"agent \\\"one\\\" ✓\",\"ttl\":5000,\"priority\":2,"
                "\"headers\":{\"traceId\":\"t\\n1\",\"n\":[1,2.5,{\"k\":null}]},"
                "\"payload\":{\"text\":\"héllo\",\"ok\":true}}";
            CHECK(alen == sizeof expect - 1 && memcmp(alloc, expect, alen) == 0);
        }
        /* decode, then re-encode to the same bytes */
        orc_msg_t *d = NULL;
        CHECK_OK(orc_msg_decode((orc_format_t)f, alloc, alen, NULL, &d));
        void *again = NULL;
        size_t again_len = 0;
        CHECK_OK(orc_msg_encode_alloc(d, (orc_format_t)f, &again, &again_len));
        CHECK(again_len == alen && again != NULL && memcmp(again, alloc, alen) == 0);
        size_t n = 0;
        const char *src = orc_msg_source(d, &n);
        CHECK(src != NULL && n == strlen("agent \"one\" ✓") && memcmp(src, "agent \"one\" ✓", n) == 0);
        orc_buf_free(again);
        orc_buf_free(alloc);
        orc_msg_release(d);
        free(buf);
    }
    size_t n = 0;
    char small[4];
    void *p = NULL;
    CHECK_RC(orc_msg_encode(NULL, ORC_FORMAT_JSON, small, sizeof small, &n), ORC_EINVAL);
    CHECK_RC(orc_msg_encode(m, ORC_FORMAT_JSON, small, sizeof small, NULL), ORC_EINVAL);
    CHECK_RC(orc_msg_encode(m, ORC_FORMAT_JSON, NULL, 10, &n), ORC_EINVAL);
    CHECK_RC(orc_msg_encode(m, (orc_format_t)2, small, sizeof small, &n), ORC_EINVAL);
    CHECK(has("unknown format 2"));
    CHECK_RC(orc_msg_encode_alloc(m, ORC_FORMAT_MSGPACK, NULL, &n), ORC_EINVAL);
    CHECK_RC(orc_msg_encode_alloc(m, ORC_FORMAT_MSGPACK, &p, NULL), ORC_EINVAL);
    orc_buf_free(NULL);
    orc_msg_release(m);

    /* A message that JSON can carry but MessagePack cannot. */
    orc_msg_t *big = NULL;
    CHECK_OK(orc_msg_new(S("t"), &big));
    CHECK_OK(orc_msg_set_payload(big, ORC_CONTENT_JSON, S("[123456789012345678901234567890]")));
    CHECK_OK(orc_msg_encode_alloc(big, ORC_FORMAT_JSON, &p, &n));
    orc_buf_free(p);
    CHECK_RC(orc_msg_encode_alloc(big, ORC_FORMAT_MSGPACK, &p, &n), ORC_EINVAL);
    CHECK(has("out of MessagePack range"));
    orc_msg_release(big);
}

static void test_decode_errors(void) {
    orc_msg_t *m = (orc_msg_t *)(uintptr_t)1;
    CHECK_RC(orc_msg_decode(ORC_FORMAT_JSON, S("{\"id\" 1}"), NULL, &m), ORC_EPARSE);
    CHECK(m == NULL);
    CHECK(strcmp(orc_last_error(), "invalid JSON at byte 6: expected ':' after object key") == 0);
    CHECK_RC(orc_msg_decode(ORC_FORMAT_JSON, S("{\"id\":\"1\",\"type\":\"t\",\"ttl\":2.5}"), NULL, &m), ORC_EPARSE);
    CHECK(has("\"ttl\" must be an integer, got 2.5"));
    CHECK_RC(orc_msg_decode(ORC_FORMAT_JSON, S("{\"type\":\"t\"}"), NULL, &m), ORC_EPARSE);
    CHECK(has("missing required field \"id\""));
    CHECK_RC(orc_msg_decode(ORC_FORMAT_MSGPACK, "\x82\xa2id\xdb\xff\xff\xff\xff", 9, NULL, &m), ORC_EPARSE);
    CHECK(has("str 32 declares 4294967295 bytes but only 0 remain"));
    CHECK_RC(orc_msg_decode(ORC_FORMAT_JSON, NULL, 3, NULL, &m), ORC_EINVAL);
    CHECK_RC(orc_msg_decode(ORC_FORMAT_JSON, S("{}"), NULL, NULL), ORC_EINVAL);
    CHECK_RC(orc_msg_decode((orc_format_t)7, S("{}"), NULL, &m), ORC_EINVAL);
    CHECK_RC(orc_msg_decode(ORC_FORMAT_JSON, NULL, 0, NULL, &m), ORC_EPARSE);

    orc_decode_options_t o;
    memset(&o, 0, sizeof o);
    CHECK_RC(orc_msg_decode(ORC_FORMAT_JSON, S("{\"id\":\"1\",\"type\":\"t\"}"), &o, &m), ORC_EINVAL);
    CHECK(has("options not initialised with orc_decode_options_init"));
    orc_decode_options_init(&o);
    o.max_size = 10;
    CHECK_RC(orc_msg_decode(ORC_FORMAT_JSON, S("{\"id\":\"1\",\"type\":\"t\"}"), &o, &m), ORC_ETOOBIG);
    CHECK(has("the limit is 10"));
    orc_decode_options_init(&o);
    o.max_depth = 2;
    CHECK_RC(orc_msg_decode(ORC_FORMAT_JSON, S("{\"id\":\"1\",\"type\":\"t\",\"payload\":[[1]]}"), &o, &m), ORC_ETOOBIG);
    CHECK(has("depth limit of 2"));
    CHECK_OK(orc_msg_decode(ORC_FORMAT_JSON, S("{\"id\":\"1\",\"type\":\"t\",\"payload\":[1]}"), &o, &m));
    orc_msg_release(m);
    o.max_depth = 0;
    CHECK_RC(orc_msg_decode(ORC_FORMAT_JSON, S("{\"id\":\"1\",\"type\":\"t\"}"), &o, &m), ORC_EINVAL);
    o.max_depth = 100000;
    CHECK_RC(orc_msg_decode(ORC_FORMAT_JSON, S("{\"id\":\"1\",\"type\":\"t\"}"), &o, &m), ORC_EINVAL);
    CHECK(has("outside 1...256"));
}

static void test_compression_and_cipher(void) {
    orc_msg_t *m = NULL;
    CHECK_OK(orc_msg_new(S("task.result"), &m));
    char text[8000];
    for (size_t i = 0; i < sizeof text; i++) text[i] = "abcdefgh"[i % 8];
    CHECK_OK(orc_msg_set_payload(m, ORC_CONTENT_TEXT, text, sizeof text));
    int did = -1;
    CHECK_OK(orc_msg_compress(m, 100000, &did));
    CHECK(did == 0 && !orc_msg_is_compressed(m));
    CHECK_OK(orc_msg_compress(m, 1024, &did));
    CHECK(did == 1 && orc_msg_is_compressed(m));
    CHECK_RC(orc_msg_decompress(m, 100), ORC_ETOOBIG);
    CHECK(has("exceeds the limit of 100 bytes"));
    CHECK(orc_msg_is_compressed(m));

    orc_cipher_t *c = NULL, *wrong = NULL;
    CHECK_RC(orc_cipher_new("", 0, NULL, 0, &c), ORC_EINVAL);
    CHECK_RC(orc_cipher_new(S("k"), NULL, 3, &c), ORC_EINVAL);
    CHECK_RC(orc_cipher_new(S("k"), NULL, 0, NULL), ORC_EINVAL);
    CHECK_OK(orc_cipher_new(S("shared secret"), S("salt"), &c));
    CHECK_OK(orc_cipher_new(S("shared secret"), NULL, 0, &wrong));
    CHECK_OK(orc_msg_encrypt(m, c));
    CHECK(orc_msg_is_encrypted(m));
    CHECK_RC(orc_msg_encrypt(m, c), ORC_ESTATE);
    CHECK_RC(orc_msg_compress(m, 0, &did), ORC_ESTATE);
    CHECK_RC(orc_msg_decompress(m, 0), ORC_ESTATE);

    void *wire = NULL;
    size_t wire_len = 0;
    CHECK_OK(orc_msg_encode_alloc(m, ORC_FORMAT_MSGPACK, &wire, &wire_len));
    orc_msg_t *d = NULL;
    CHECK_OK(orc_msg_decode(ORC_FORMAT_MSGPACK, wire, wire_len, NULL, &d));
    orc_buf_free(wire);
    CHECK(orc_msg_is_encrypted(d) && orc_msg_is_compressed(d));
    CHECK_RC(orc_msg_decrypt(d, wrong), ORC_ECRYPTO);
    CHECK(has("payload authentication failed"));
    orc_msg_t *tampered = NULL;
    CHECK_OK(orc_msg_clone(d, &tampered));
    CHECK_OK(orc_msg_set_type(tampered, S("task.resulx")));
    CHECK_RC(orc_msg_decrypt(tampered, c), ORC_ECRYPTO);
    orc_msg_release(tampered);
    CHECK_OK(orc_msg_decrypt(d, c));
    CHECK_OK(orc_msg_decompress(d, 0));
    const void *p = NULL;
    size_t n = 0;
    orc_content_type_t ct = ORC_CONTENT_JSON;
    CHECK_OK(orc_msg_payload(d, &p, &n, &ct));
    CHECK(ct == ORC_CONTENT_TEXT && n == sizeof text && memcmp(p, text, n) == 0);
    CHECK_RC(orc_msg_decrypt(d, c), ORC_ESTATE);
    CHECK_RC(orc_msg_decompress(d, 0), ORC_ESTATE);
    CHECK_RC(orc_msg_encrypt(NULL, c), ORC_EINVAL);
    CHECK_RC(orc_msg_encrypt(d, NULL), ORC_EINVAL);
    CHECK_RC(orc_msg_compress(NULL, 0, NULL), ORC_EINVAL);
    orc_msg_release(d);
    orc_msg_release(m);
    orc_cipher_free(c);
    orc_cipher_free(wrong);
    orc_cipher_free(NULL);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Every regular file in `dir` must be rejected with ORC_EPARSE or ORC_ETOOBIG. */
static void run_corpus(const char *dir) {
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        int w = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (w < 0 || (size_t)w >= sizeof path) continue;
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) continue;
        FILE *f = fopen(path, "rb");
        if (!f) { CHECK(f != NULL); continue; }
        size_t cap = (size_t)st.st_size + 1, len = 0;
        unsigned char *buf = malloc(cap);
        if (buf) len = fread(buf, 1, cap, f);
        fclose(f);
        if (!buf) continue;
        orc_format_t fmt = ends_with(e->d_name, ".json") ? ORC_FORMAT_JSON : ORC_FORMAT_MSGPACK;
        orc_msg_t *m = NULL;
        int rc = orc_msg_decode(fmt, len ? buf : NULL, len, NULL, &m);
        if (rc == ORC_EPARSE || rc == ORC_ETOOBIG) {
            orc_test_passed++;
        } else {
            orc_test_failed++;
            fprintf(stderr, "%s: expected ORC_EPARSE or ORC_ETOOBIG, got %s\n", path, orc_err_name(rc));
        }
        CHECK(m == NULL && orc_last_error()[0] != '\0');
        if (getenv("ORC_TEST_VERBOSE")) printf("  %-40s %-12s %s\n", e->d_name, orc_err_name(rc), orc_last_error());
        orc_msg_release(m);
        free(buf);
        files++;
    }
    closedir(d);
    printf("corpus %s: %d files\n", dir, files);
    CHECK(files > 0);
}

/* One cipher shared by several threads at once (orchestra.h says any thread may use it):
 * every thread encrypts and decrypts its own messages; all must round-trip, and a message
 * encrypted by one thread must decrypt on another. Threads count their own failures (the CHECK
 * counters are not thread-safe); main checks the totals. */
enum { CIPHER_THREADS = 4, CIPHER_ROUNDS = 300 };
struct cipher_worker { orc_cipher_t *c; int id; int failures; orc_msg_t *handoff; };

static void *cipher_thread(void *arg) {
    struct cipher_worker *w = arg;
    char text[64];
    for (int i = 0; i < CIPHER_ROUNDS; i++) {
        int n = snprintf(text, sizeof text, "{\"worker\":%d,\"round\":%d}", w->id, i);
        orc_msg_t *m = NULL;
        if (orc_msg_new(S("task.stream"), &m) != ORC_OK) { w->failures++; continue; }
        const void *p = NULL;
        size_t len = 0;
        orc_content_type_t ct;
        if (orc_msg_set_payload(m, ORC_CONTENT_JSON, text, (size_t)n) != ORC_OK
            || orc_msg_encrypt(m, w->c) != ORC_OK
            || orc_msg_decrypt(m, w->c) != ORC_OK
            || orc_msg_payload(m, &p, &len, &ct) != ORC_OK
            || len != (size_t)n || memcmp(p, text, len) != 0) {
            w->failures++;
        }
        if (i == CIPHER_ROUNDS - 1 && orc_msg_encrypt(m, w->c) == ORC_OK) {
            w->handoff = m;   /* decrypted by another thread after the join */
        } else {
            orc_msg_release(m);
        }
    }
    return NULL;
}

static void test_cipher_threads(void) {
    orc_cipher_t *c = NULL;
    CHECK_OK(orc_cipher_new(S("shared secret"), S("salt"), &c));
    struct cipher_worker w[CIPHER_THREADS];
    pthread_t t[CIPHER_THREADS];
    for (int i = 0; i < CIPHER_THREADS; i++) {
        w[i] = (struct cipher_worker){ c, i, 0, NULL };
        CHECK(pthread_create(&t[i], NULL, cipher_thread, &w[i]) == 0);
    }
    int failures = 0;
    for (int i = 0; i < CIPHER_THREADS; i++) {
        pthread_join(t[i], NULL);
        failures += w[i].failures;
    }
    CHECK(failures == 0);
    for (int i = 0; i < CIPHER_THREADS; i++) {
        CHECK(w[i].handoff != NULL);
        if (w[i].handoff) {
            CHECK_OK(orc_msg_decrypt(w[i].handoff, c));
            orc_msg_release(w[i].handoff);
        }
    }
    orc_cipher_free(c);
}

/* A JSON payload decoded from MessagePack: orc_msg_payload gives its JSON text, made on the
 * first call (from any of several threads at once, on a message shared read-only) and the same
 * pointer afterwards; encoding it to MessagePack again gives the bytes it was decoded from. */
#define PAYLOAD_THREADS 4
struct payload_reader { orc_msg_t *m; const void *p; size_t n; int rc; };

static void *payload_thread(void *arg) {
    struct payload_reader *r = arg;
    r->rc = orc_msg_payload(r->m, &r->p, &r->n, NULL);
    return NULL;
}

static void test_msgpack_payload_text(void) {
    static const char json[] = "{\"text\":\"h\u00e9llo\\n\\\"w\\\"\",\"n\":[1,-2,3.5,null,true],\"o\":{}}";
    orc_msg_t *m = NULL;
    CHECK_OK(orc_msg_new(S("task.stream"), &m));
    CHECK_OK(orc_msg_set_payload(m, ORC_CONTENT_JSON, S(json)));
    void *wire = NULL;
    size_t wire_len = 0;
    CHECK_OK(orc_msg_encode_alloc(m, ORC_FORMAT_MSGPACK, &wire, &wire_len));
    for (int round = 0; round < 20; round++) {
        orc_msg_t *d = NULL;
        CHECK_OK(orc_msg_decode(ORC_FORMAT_MSGPACK, wire, wire_len, NULL, &d));
        struct payload_reader r[PAYLOAD_THREADS];
        pthread_t t[PAYLOAD_THREADS];
        for (int i = 0; i < PAYLOAD_THREADS; i++) {
            r[i] = (struct payload_reader){ d, NULL, 0, -1 };
            CHECK(pthread_create(&t[i], NULL, payload_thread, &r[i]) == 0);
        }
        for (int i = 0; i < PAYLOAD_THREADS; i++) pthread_join(t[i], NULL);
        const void *p = NULL;
        size_t n = 0;
        orc_content_type_t ct = ORC_CONTENT_TEXT;
        CHECK_OK(orc_msg_payload(d, &p, &n, &ct));
        CHECK(ct == ORC_CONTENT_JSON && n == sizeof json - 1 && memcmp(p, json, n) == 0);
        for (int i = 0; i < PAYLOAD_THREADS; i++) CHECK(r[i].rc == ORC_OK && r[i].p == p && r[i].n == n);
        unsigned char again[512];
        size_t again_len = 0;
        CHECK_OK(orc_msg_encode(d, ORC_FORMAT_MSGPACK, again, sizeof again, &again_len));
        CHECK(again_len == wire_len && memcmp(again, wire, wire_len) == 0);
        orc_msg_release(d);
    }
    orc_buf_free(wire);
    orc_msg_release(m);
}


static void test_json_fields(void) {
    const char *j = "{\"parameters\":{\"command\":\"echo \\\"h\\u00e9\\\"\\u0000x\",\"n\":-42,\"f\":1.5},"
                    "\"s\":\"x\",\"\":{\"\":\"empty keys\"}}";
    char *out = NULL;
    size_t n = 0;
    CHECK_OK(orc_json_get_string(j, strlen(j), "parameters.command", &out, &n));
    CHECK(n == 12 && memcmp(out, "echo \"h\xc3\xa9\"\0x", 12) == 0 && out[12] == 0);
    orc_buf_free(out);
    CHECK_OK(orc_json_get_string(j, strlen(j), "s", &out, NULL));
    CHECK(strcmp(out, "x") == 0);
    orc_buf_free(out);
    CHECK_OK(orc_json_get_string(j, strlen(j), ".", &out, NULL));
    CHECK(strcmp(out, "empty keys") == 0);
    orc_buf_free(out);
    int64_t v = 0;
    CHECK_OK(orc_json_get_int(j, strlen(j), "parameters.n", &v));
    CHECK(v == -42);
    CHECK_RC(orc_json_get_int(j, strlen(j), "parameters.f", &v), ORC_EINVAL);
    CHECK_RC(orc_json_get_int(j, strlen(j), "s", &v), ORC_EINVAL);
    CHECK_RC(orc_json_get_string(j, strlen(j), "parameters.n", &out, NULL), ORC_EINVAL);
    CHECK_RC(orc_json_get_string(j, strlen(j), "parameters.missing", &out, NULL), ORC_ENOTFOUND);
    CHECK_RC(orc_json_get_string(j, strlen(j), "s.deeper", &out, NULL), ORC_ENOTFOUND);
    CHECK_RC(orc_json_get_string(S("{\"a\":\"x\""), "a", &out, NULL), ORC_EPARSE);
    CHECK_RC(orc_json_get_string(S("{\"a\":\"x\"}"), NULL, &out, NULL), ORC_EINVAL);
    CHECK_RC(orc_json_get_string(S("{\"a\":\"x\"}"), "a", NULL, NULL), ORC_EINVAL);
    CHECK_RC(orc_json_get_string(NULL, 5, "a", &out, NULL), ORC_EINVAL);
    CHECK_RC(orc_json_get_string(S("{\"a\":\"x\"}"), "\xff", &out, NULL), ORC_EINVAL);
    CHECK_RC(orc_json_get_int(S("{\"a\":1}"), "a", NULL), ORC_EINVAL);
}

int main(int argc, char **argv) {
    test_options();
    test_encode_sizing();
    test_decode_errors();
    test_compression_and_cipher();
    test_cipher_threads();
    test_msgpack_payload_text();
    test_json_fields();
    for (int i = 1; i < argc; i++) run_corpus(argv[i]);
    return orc_test_finish("test_codec");
}
