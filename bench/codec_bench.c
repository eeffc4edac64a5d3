/* Envelope codec benchmarks through the C ABI, on the shared benchmark envelopes
 * (bench/data/envelope_small.json and envelope_large.json):
 *
 *   codec.json.<size>.decode     orc_msg_decode(ORC_FORMAT_JSON) of the file + orc_msg_release
 *   codec.json.<size>.encode     orc_msg_encode(ORC_FORMAT_JSON) of the decoded message into a
 *                                caller buffer
 *   codec.msgpack.<size>.decode  orc_msg_decode(ORC_FORMAT_MSGPACK) of our MessagePack form of
 *                                the same envelope + orc_msg_release
 *   codec.msgpack.<size>.encode  orc_msg_encode(ORC_FORMAT_MSGPACK) of the decoded message
 *
 * The MessagePack input is produced by our own encoder from the decoded JSON before timing.
 * Before timing, every call is checked once: the JSON and MessagePack forms decode to messages
 * that encode to the same bytes, and the JSON encoding decodes back to the same JSON encoding,
 * so no timed loop measures a failing call (every timed call's return code is checked too).
 *
 * Values are MB/s (10^6 bytes per second) of the envelope's wire size in that format (the JSON
 * file's size for JSON, the MessagePack form's size for MessagePack), so for one input the
 * ratio against an anchor equals the ratio of operations per second.
 *
 * Output: one JSON object per line: {"name": ..., "value": ..., "unit": ..., "bytes": ...}.
 * Usage: codec_bench [--quick] [--data DIR] [--iters N] [--only NAME-PART]
 *   --data   folder holding envelope_small.json and envelope_large.json (default bench/data, from the project root)
 *   --iters  a fixed iteration count per metric instead of timing for a while (for callgrind)
 *   --only   only the metrics whose name contains NAME-PART (e.g. small, json.large.decode)
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "orchestra.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "codec_bench: %s failed: %s: %s\n", what, orc_err_name(rc), orc_last_error());
    exit(1);
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(1); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "cannot read %s\n", path); exit(1); }
    fclose(f);
    /* The shared files may end with a newline; the envelope is the JSON value itself. */
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) n--;
    *len = (size_t)n;
    return buf;
}

static orc_msg_t *decode(orc_format_t f, const void *data, size_t len) {
    orc_msg_t *m = NULL;
    int rc = orc_msg_decode(f, data, len, NULL, &m);
    if (rc != ORC_OK) die("orc_msg_decode", rc);
    return m;
}

/* Encodes into a new malloc'ed buffer (checks the size query path too). */
static unsigned char *encode(const orc_msg_t *m, orc_format_t f, size_t *len) {
    size_t need = 0;
    int rc = orc_msg_encode(m, f, NULL, 0, &need);
    if (rc != ORC_ENOSPC) die("orc_msg_encode (size query)", rc);
    unsigned char *buf = malloc(need);
    rc = orc_msg_encode(m, f, buf, need, len);
    if (rc != ORC_OK) die("orc_msg_encode", rc);
    if (*len != need) { fprintf(stderr, "codec_bench: size query said %zu, encode wrote %zu\n", need, *len); exit(1); }
    return buf;
}

static void same(const char *what, const unsigned char *a, size_t alen, const unsigned char *b, size_t blen) {
    if (alen != blen || memcmp(a, b, alen) != 0) {
        fprintf(stderr, "codec_bench: %s differ (%zu vs %zu bytes)\n", what, alen, blen);
        exit(1);
    }
}

static void emit(const char *name, double value, const char *unit, size_t bytes) {
    printf("{\"name\": \"%s\", \"value\": %.3f, \"unit\": \"%s\", \"bytes\": %zu}\n", name, value, unit, bytes);
    fflush(stdout);
}

typedef struct {
    double seconds;    /* time each measurement aims for */
    long fixed_iters;  /* > 0: exactly this many iterations, no calibration */
} plan_t;

/* Runs `body(ctx, n)` (n iterations) and returns seconds per iteration: calibrates n so one
 * timed batch lasts about plan->seconds / 3, runs 3 batches and keeps the median. */
typedef void (*body_fn)(void *ctx, long n);

static double per_iter(const plan_t *plan, body_fn body, void *ctx) {
    if (plan->fixed_iters > 0) {
        double t0 = now_s();
        body(ctx, plan->fixed_iters);
        return (now_s() - t0) / (double)plan->fixed_iters;
    }
    long n = 1;
    double batch = plan->seconds / 3;
    for (;;) {   /* warm-up and calibration */
        double t0 = now_s();
        body(ctx, n);
        double dt = now_s() - t0;
        if (dt > batch / 4) { n = (long)((double)n * batch / dt) + 1; break; }
        n *= 4;
    }
    double t[3];
    for (int i = 0; i < 3; i++) {
        double t0 = now_s();
        body(ctx, n);
        t[i] = (now_s() - t0) / (double)n;
    }
    /* median of 3 */
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2 - i; j++)
            if (t[j] > t[j + 1]) { double x = t[j]; t[j] = t[j + 1]; t[j + 1] = x; }
    return t[1];
}

typedef struct {
    orc_format_t format;
    const unsigned char *input;
    size_t input_len;
    const orc_msg_t *msg;
    unsigned char *buf;
    size_t cap;
} ctx_t;

static void decode_loop(void *p, long n) {
    ctx_t *c = p;
    for (long i = 0; i < n; i++) {
        orc_msg_t *m = NULL;
        int rc = orc_msg_decode(c->format, c->input, c->input_len, NULL, &m);
        if (rc != ORC_OK) die("orc_msg_decode", rc);
        orc_msg_release(m);
    }
}

static void encode_loop(void *p, long n) {
    ctx_t *c = p;
    size_t len = 0;
    for (long i = 0; i < n; i++) {
        int rc = orc_msg_encode(c->msg, c->format, c->buf, c->cap, &len);
        if (rc != ORC_OK) die("orc_msg_encode", rc);
    }
    if (len != c->input_len) { fprintf(stderr, "codec_bench: encode wrote %zu bytes, expected %zu\n", len, c->input_len); exit(1); }
}

static const char *only = NULL;   /* --only: run the metrics whose name contains this */

static int wanted(const char *name) { return !only || strstr(name, only) != NULL; }

static void bench_file(const plan_t *plan, const char *dir, const char *size) {
    char path[4096];
    snprintf(path, sizeof path, "%s/envelope_%s.json", dir, size);
    size_t json_len;
    unsigned char *json = read_file(path, &json_len);

    /* Prepare and check everything the timed loops will do. */
    orc_msg_t *from_json = decode(ORC_FORMAT_JSON, json, json_len);
    size_t enc_json_len, mp_len, enc_json2_len, mp2_len, enc_json3_len;
    unsigned char *enc_json = encode(from_json, ORC_FORMAT_JSON, &enc_json_len);
    unsigned char *mp = encode(from_json, ORC_FORMAT_MSGPACK, &mp_len);
    orc_msg_t *from_mp = decode(ORC_FORMAT_MSGPACK, mp, mp_len);
    unsigned char *enc_json2 = encode(from_mp, ORC_FORMAT_JSON, &enc_json2_len);
    unsigned char *mp2 = encode(from_mp, ORC_FORMAT_MSGPACK, &mp2_len);
    same("JSON encodings of the JSON- and MessagePack-decoded messages", enc_json, enc_json_len, enc_json2, enc_json2_len);
    same("MessagePack encodings of the JSON- and MessagePack-decoded messages", mp, mp_len, mp2, mp2_len);
    orc_msg_t *again = decode(ORC_FORMAT_JSON, enc_json, enc_json_len);
    unsigned char *enc_json3 = encode(again, ORC_FORMAT_JSON, &enc_json3_len);
    same("JSON encodings before and after a JSON round trip", enc_json, enc_json_len, enc_json3, enc_json3_len);
    if (enc_json_len != json_len) {
        /* Same fields, our key order; the sizes must agree or we measure different work. */
        fprintf(stderr, "codec_bench: our JSON encoding is %zu bytes, the file %zu\n", enc_json_len, json_len);
        exit(1);
    }
    orc_msg_release(again);
    free(enc_json3);
    free(enc_json2);
    free(mp2);

    size_t cap = (json_len > mp_len ? json_len : mp_len) + 64;
    unsigned char *buf = malloc(cap);
    char name[128];
    struct { const char *fmt; orc_format_t f; const unsigned char *in; size_t len; } forms[2] = {
        {"json", ORC_FORMAT_JSON, json, json_len},
        {"msgpack", ORC_FORMAT_MSGPACK, mp, mp_len},
    };
    for (int i = 0; i < 2; i++) {
        ctx_t c = {forms[i].f, forms[i].in, forms[i].len, from_json, buf, cap};
        snprintf(name, sizeof name, "codec.%s.%s.decode", forms[i].fmt, size);
        if (wanted(name)) {
            double dt = per_iter(plan, decode_loop, &c);
            emit(name, (double)forms[i].len / dt / 1e6, "MB/s", forms[i].len);
        }
        /* Encode the message decoded from the same format. */
        c.msg = forms[i].f == ORC_FORMAT_JSON ? from_json : from_mp;
        snprintf(name, sizeof name, "codec.%s.%s.encode", forms[i].fmt, size);
        if (wanted(name)) {
            double dt = per_iter(plan, encode_loop, &c);
            emit(name, (double)forms[i].len / dt / 1e6, "MB/s", forms[i].len);
        }
    }
    free(buf);
    free(mp);
    free(enc_json);
    free(json);
    orc_msg_release(from_mp);
    orc_msg_release(from_json);
}

int main(int argc, char **argv) {
    plan_t plan = {1.5, 0};
    const char *dir = "bench/data";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) plan.seconds = 0.5;
        else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) dir = argv[++i];
        else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) plan.fixed_iters = atol(argv[++i]);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else { fprintf(stderr, "usage: codec_bench [--quick] [--data DIR] [--iters N] [--only NAME-PART]\n"); return 2; }
    }
    if (!only || strstr("codec.json.small.decode codec.json.small.encode codec.msgpack.small.decode codec.msgpack.small.encode", only))
        bench_file(&plan, dir, "small");
    if (!only || strstr("codec.json.large.decode codec.json.large.encode codec.msgpack.large.decode codec.msgpack.large.encode", only))
        bench_file(&plan, dir, "large");
    return 0;
}
