/* orchestra-demo: the main job until the hub exists. It drives the library through the C ABI
 * only, the way a C user would, and prints what it did:
 *   1. builds a task.stream envelope, encodes it as JSON and MessagePack, decodes it back;
 *   2. compresses and encrypts its payload, and shows that a tampered copy is refused;
 *   3. routes messages by subject with wildcards and a middleware;
 *   4. moves messages between threads through a bounded priority queue;
 *   5. prints the metrics in Prometheus text.
 * Exits 0 when every step did what it should. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "orchestra.h"

#define TRY(call) do { int rc_ = (call); if (rc_ != ORC_OK) { \
    fprintf(stderr, "demo: %s failed: %s (%s)\n", #call, orc_err_name(rc_), orc_last_error()); \
    exit(1); } } while (0)

static const char *field(const orc_msg_t *m, orc_field_t f, size_t *len) {
    const char *p = NULL;
    *len = 0;
    return orc_msg_get(m, f, &p, len) == ORC_OK ? p : "";
}

/* --- 1 + 2: codec ------------------------------------------------------------------------ */
static void codec_demo(void) {
    orc_msg_t *msg;
    TRY(orc_msg_new("task.stream", 11, &msg));
    TRY(orc_msg_set(msg, ORC_FIELD_SOURCE, "agent-3", 7));
    TRY(orc_msg_set(msg, ORC_FIELD_TARGET, "web:42", 6));
    TRY(orc_msg_header_set(msg, "traceId", 7, "abc123", 6));
    TRY(orc_msg_set_priority(msg, ORC_PRIORITY_HIGH));
    char payload[2048];
    int n = snprintf(payload, sizeof payload, "{\"taskId\":\"t-17\",\"type\":\"stdout\",\"data\":\"");
    while (n < 1800) n += snprintf(payload + n, sizeof payload - n, "step %d ok; ", n);
    n += snprintf(payload + n, sizeof payload - n, "\"}");
    TRY(orc_msg_set_payload(msg, ORC_CONTENT_JSON, payload, (size_t)n));

    char json[4096];
    size_t json_len = 0;
    TRY(orc_msg_encode(msg, ORC_FORMAT_JSON, json, sizeof json, &json_len));
    void *mp = NULL;
    size_t mp_len = 0;
    TRY(orc_msg_encode_alloc(msg, ORC_FORMAT_MSGPACK, &mp, &mp_len));
    printf("1. codec: task.stream envelope is %zu bytes as JSON, %zu as MessagePack\n", json_len, mp_len);
    printf("   %.120s...\n", json);

    orc_msg_t *back;
    TRY(orc_msg_decode(ORC_FORMAT_MSGPACK, mp, mp_len, NULL, &back));
    size_t a, b;
    const char *id1 = field(msg, ORC_FIELD_ID, &a), *id2 = field(back, ORC_FIELD_ID, &b);
    printf("   decoded from MessagePack: id %.*s, same as sent: %s\n", (int)b, id2,
           a == b && memcmp(id1, id2, a) == 0 ? "yes" : "NO");
    orc_buf_free(mp);

    int compressed = 0;
    TRY(orc_msg_compress(back, 256, &compressed));
    const void *data; size_t plen; orc_content_type_t ct;
    TRY(orc_msg_payload(back, &data, &plen, &ct));
    printf("2. payload %d bytes, compressed to %zu bytes (%s)\n", n, plen, compressed ? "deflate" : "kept");
    orc_cipher_t *cipher;
    TRY(orc_cipher_new("demo secret", 11, "demo salt", 9, &cipher));
    TRY(orc_msg_encrypt(back, cipher));
    void *sealed = NULL; size_t sealed_len = 0;
    TRY(orc_msg_encode_alloc(back, ORC_FORMAT_MSGPACK, &sealed, &sealed_len));
    /* Flip one byte near the end (inside the ciphertext or tag) and try to open it. */
    ((unsigned char *)sealed)[sealed_len - 5] ^= 0x01;
    orc_msg_t *tampered;
    TRY(orc_msg_decode(ORC_FORMAT_MSGPACK, sealed, sealed_len, NULL, &tampered));
    int rc = orc_msg_decrypt(tampered, cipher);
    printf("   encrypted (AES-256-GCM); a copy with one flipped byte: %s (%s)\n", orc_err_name(rc), orc_last_error());
    if (rc != ORC_ECRYPTO) exit(1);
    TRY(orc_msg_decrypt(back, cipher));
    TRY(orc_msg_decompress(back, 1 << 20));
    TRY(orc_msg_payload(back, &data, &plen, &ct));
    printf("   decrypted and inflated again: %zu bytes, equal to the original: %s\n", plen,
           plen == (size_t)n && memcmp(data, payload, plen) == 0 ? "yes" : "NO");
    orc_buf_free(sealed);
    orc_msg_release(tampered);
    orc_cipher_free(cipher);
    orc_msg_release(back);
    orc_msg_release(msg);

    orc_msg_t *bad = NULL;
    rc = orc_msg_decode(ORC_FORMAT_JSON, "{\"id\":\"1\",\"type\":\"x\",}", 22, NULL, &bad);
    printf("   broken JSON is refused: %s: %s\n", orc_err_name(rc), orc_last_error());
}

/* --- 3: router --------------------------------------------------------------------------- */
static int on_task(void *ud, orc_msg_t *m) {
    size_t len;
    const char *t = field(m, ORC_FIELD_TYPE, &len);
    printf("   [%s] got %.*s\n", (const char *)ud, (int)len, t);
    return 0;
}

static int stamp(void *ud, orc_msg_t *m, orc_msg_t **replace) {
    (void)ud; (void)replace;
    return orc_msg_header_set(m, "routedBy", 8, "demo", 4) == ORC_OK ? ORC_ROUTE_CONTINUE : -1;
}

static void dead_letter(void *ud, orc_msg_t *m) {
    size_t len;
    const char *t = field(m, ORC_FIELD_TYPE, &len);
    printf("   [%s] nobody subscribed to %.*s\n", (const char *)ud, (int)len, t);
}

static orc_router_t *router_demo(orc_metrics_t *metrics) {
    orc_router_t *r;
    TRY(orc_router_new(&r));
    TRY(orc_metrics_register_router(metrics, r, "demo", 4));
    uint64_t s1, s2;
    TRY(orc_router_subscribe(r, "task.*", 6, on_task, "task.*", NULL, &s1));
    TRY(orc_router_subscribe(r, "agent.>", 7, on_task, "agent.>", NULL, &s2));
    TRY(orc_router_use(r, stamp, NULL, NULL));
    TRY(orc_router_on_unhandled(r, dead_letter, "unhandled", NULL));
    printf("3. router: subscribed task.* and agent.>\n");
    const char *subjects[] = {"task.submit", "agent.worker.output", "session.join"};
    for (int i = 0; i < 3; i++) {
        orc_msg_t *m;
        TRY(orc_msg_new(subjects[i], strlen(subjects[i]), &m));
        TRY(orc_router_publish(r, m, NULL));
        orc_msg_release(m);
    }
    uint64_t bad;
    int rc = orc_router_subscribe(r, "task..x", 7, on_task, NULL, NULL, &bad);
    printf("   pattern \"task..x\" is refused: %s: %s\n", orc_err_name(rc), orc_last_error());
    return r;   /* kept until the metrics are printed */
}

/* --- 4: queue ---------------------------------------------------------------------------- */
enum { ITEMS = 100000 };

static void *producer(void *arg) {
    orc_queue_t *q = arg;
    for (int i = 0; i < ITEMS; i++) {
        orc_msg_t *m;
        TRY(orc_msg_new("work.item", 9, &m));
        TRY(orc_msg_set_priority(m, i % 1000 == 0 ? ORC_PRIORITY_CRITICAL : ORC_PRIORITY_NORMAL));
        TRY(orc_queue_push(q, m));   /* blocks while the queue is full */
    }
    TRY(orc_queue_close(q));
    return NULL;
}

static orc_queue_t *queue_demo(orc_metrics_t *metrics) {
    orc_queue_options_t o;
    orc_queue_options_init(&o);
    o.capacity = 1024;
    o.policy = ORC_POLICY_BLOCK;
    o.push_timeout_ms = -1;
    o.name = "demo";
    orc_queue_t *q;
    TRY(orc_queue_new(&o, &q));
    TRY(orc_metrics_register_queue(metrics, q, "demo", 4));
    pthread_t t;
    pthread_create(&t, NULL, producer, q);
    size_t total = 0, batches = 0;
    orc_msg_t *batch[256];
    for (;;) {
        size_t got = 0;
        int rc = orc_queue_pop_batch(q, batch, 256, -1, &got);
        if (rc == ORC_ECLOSED) break;
        TRY(rc);
        for (size_t i = 0; i < got; i++) orc_msg_release(batch[i]);
        total += got;
        batches++;
    }
    pthread_join(t, NULL);
    orc_queue_stats_t s;
    s.struct_size = sizeof s;
    TRY(orc_queue_stats(q, &s));
    printf("4. queue: %zu messages from a producer thread in %zu batches (capacity 1024, %llu producer waits)\n",
           total, batches, (unsigned long long)s.blocked_pushes);
    printf("   depth high-water %llu, wait p50 %.1f us, p99 %.1f us\n", (unsigned long long)s.depth_high_water,
           s.wait_p50_ns / 1000.0, s.wait_p99_ns / 1000.0);
    if (total != ITEMS) exit(1);
    return q;   /* kept until the metrics are printed */
}

int main(void) {
    printf("liborchestra %s\n", orc_version_string());
    orc_metrics_t *metrics;
    TRY(orc_metrics_new(&metrics));
    codec_demo();
    orc_router_t *router = router_demo(metrics);
    orc_queue_t *queue = queue_demo(metrics);
    static const char runs_help[] = "Times this demo ran to the metrics step";
    TRY(orc_metrics_set_help(metrics, "demo_runs_total", 15, runs_help, sizeof runs_help - 1));
    TRY(orc_metrics_counter_add(metrics, "demo_runs_total", 15, 1));
    void *text = NULL;
    size_t text_len = 0;
    TRY(orc_metrics_render(metrics, ORC_METRICS_PROMETHEUS, &text, &text_len));
    printf("5. metrics (Prometheus text, %zu bytes):\n%.*s", text_len, (int)text_len, (const char *)text);
    orc_buf_free(text);
    orc_queue_free(queue);
    orc_router_free(router);
    orc_metrics_free(metrics);
    printf("demo: all steps done\n");
    return 0;
}
