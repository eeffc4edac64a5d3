/* C ABI tests of the agent SDK (orc_agent_*): argument checking, the event queue, and real
 * exchanges over 127.0.0.1 with a small hub peer made of orc_server_* that plays the hub side
 * of the protocol just enough: it checks the registration signature with the known secret,
 * assigns tasks, checks what the agent sends and in which order, drops the connection and
 * checks the re-registration (inFlight, nothing before agent.registered, the outbox filtered
 * by assignedTasks), times a registration out (CONN_002) and refuses one (AUTH_001). With
 * two such peers and a port nobody listens on, an agent of several hub URLs fails over round
 * robin and carries its outbox to the hub that keeps its task. */
#define _GNU_SOURCE
#include "orc_test.h"

#include <math.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static const char SECRET[] = "s3cret";

/* ------------------------------------------------------------------ small JSON helpers */

/* The string value of the first "key":"..." in `json` (compact, no escapes in the value). */
static int json_str(const char *json, const char *key, char *out, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":\"", key);
    const char *p = strstr(json, pat);
    if (!p) return 0;
    p += strlen(pat);
    const char *e = strchr(p, '"');
    if (!e || (size_t)(e - p) >= cap) return 0;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = 0;
    return 1;
}

/* The integer value of the first "key":N in `json`. */
static int json_int(const char *json, const char *key, long long *out) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    if (!p) return 0;
    char *end = NULL;
    *out = strtoll(p + strlen(pat), &end, 10);
    return end != p + strlen(pat);
}

static int has(const char *json, const char *fragment) { return json && strstr(json, fragment) != NULL; }

/* --------------------------------------------------------------------------- the peer */

typedef struct {
    orc_server_t *server;
    orc_queue_t *q;
    int heartbeats;
    char last_heartbeat[1024];
} peer_t;

enum { EV_OPEN, EV_MESSAGE, EV_CLOSE, EV_NONE };

static void peer_start(orc_runtime_t *rt, peer_t *p) {
    memset(p, 0, sizeof *p);
    orc_queue_options_t qo;
    orc_queue_options_init(&qo);
    CHECK_OK(orc_queue_new(&qo, &p->q));
    orc_server_options_t so;
    orc_server_options_init(&so);
    so.queue = p->q;
    so.queue_events = 1;
    CHECK_OK(orc_server_new(rt, &so, &p->server));
    CHECK_OK(orc_server_start(p->server));
}

static void peer_stop(peer_t *p) {
    orc_server_free(p->server);
    orc_queue_free(p->q);
}

/* The next transport event: EV_OPEN/EV_MESSAGE/EV_CLOSE with its connection id, or EV_NONE
 * when nothing came within timeout_ms. For EV_MESSAGE *env is the decoded envelope and *json
 * its payload as a NUL-terminated copy (free both). */
static int peer_next(peer_t *p, int64_t timeout_ms, uint64_t *conn, orc_msg_t **env, char **json) {
    if (env) *env = NULL;
    if (json) *json = NULL;
    orc_msg_t *m = NULL;
    if (orc_queue_pop(p->q, timeout_ms, &m) != ORC_OK) return EV_NONE;
    size_t tl = 0;
    const char *type = orc_msg_type(m, &tl);
    if (conn) *conn = orc_msg_connection_id(m);
    int kind = EV_NONE;
    if (tl == 7 && memcmp(type, "ws.open", 7) == 0) kind = EV_OPEN;
    else if (tl == 8 && memcmp(type, "ws.close", 8) == 0) kind = EV_CLOSE;
    else if (tl == 10 && memcmp(type, "ws.message", 10) == 0) {
        kind = EV_MESSAGE;
        const void *data = NULL;
        size_t len = 0;
        CHECK_OK(orc_msg_payload(m, &data, &len, NULL));
        orc_msg_t *e = NULL;
        CHECK_OK(orc_msg_decode(ORC_FORMAT_JSON, data, len, NULL, &e));
        const void *pd = NULL;
        size_t pl = 0;
        char *text = NULL;
        if (e && orc_msg_payload(e, &pd, &pl, NULL) == ORC_OK) {
            text = malloc(pl + 1);
            memcpy(text, pd, pl);
            text[pl] = 0;
        }
        if (env) *env = e; else orc_msg_release(e);
        if (json) *json = text; else free(text);
    }
    orc_msg_release(m);
    return kind;
}

/* The next envelope from the agent that is not a heartbeat (heartbeats are counted), within
 * 10 s; NULL (and a failed check) otherwise. *json gets its payload (free it). */
static orc_msg_t *peer_recv(peer_t *p, uint64_t want_conn, char **json) {
    for (int i = 0; i < 10000; i++) {
        uint64_t conn = 0;
        orc_msg_t *env = NULL;
        char *text = NULL;
        int kind = peer_next(p, 10000, &conn, &env, &text);
        if (kind == EV_NONE) break;
        if (kind != EV_MESSAGE || conn != want_conn) {
            fprintf(stderr, "peer: unexpected transport event %d on connection %llu\n", kind, (unsigned long long)conn);
            orc_msg_release(env);
            free(text);
            CHECK(0);
            return NULL;
        }
        size_t tl = 0;
        const char *type = orc_msg_type(env, &tl);
        if (tl == 15 && memcmp(type, "agent.heartbeat", 15) == 0) {
            p->heartbeats++;
            snprintf(p->last_heartbeat, sizeof p->last_heartbeat, "%s", text ? text : "");
            orc_msg_release(env);
            free(text);
            continue;
        }
        *json = text;
        return env;
    }
    CHECK(!"no message from the agent within 10 s");
    return NULL;
}

/* Expects the next envelope to be of `type`; returns its payload (free it) or NULL. */
static char *expect(peer_t *p, uint64_t conn, const char *type, orc_msg_t **env_out) {
    char *json = NULL;
    orc_msg_t *env = peer_recv(p, conn, &json);
    if (!env) return NULL;
    size_t tl = 0;
    const char *t = orc_msg_type(env, &tl);
    int ok = tl == strlen(type) && memcmp(t, type, tl) == 0;
    if (!ok) fprintf(stderr, "peer: expected %s, got %.*s %s\n", type, (int)tl, t, json ? json : "");
    CHECK(ok);
    if (env_out) *env_out = env; else orc_msg_release(env);
    return json;
}

static uint64_t expect_open(peer_t *p) {
    uint64_t conn = 0;
    int kind = peer_next(p, 10000, &conn, NULL, NULL);
    CHECK(kind == EV_OPEN);
    return conn;
}

/* Expects the close of `want_conn`, after any heartbeats the agent sent on it before it heard
 * the close (counted: a registered agent sends them at any time). Anything else fails. */
static void expect_close(peer_t *p, uint64_t want_conn) {
    for (int i = 0; i < 10000; i++) {
        uint64_t conn = 0;
        orc_msg_t *env = NULL;
        char *text = NULL;
        int kind = peer_next(p, 10000, &conn, &env, &text);
        size_t tl = 0;
        const char *type = kind == EV_MESSAGE && env ? orc_msg_type(env, &tl) : "";
        int heartbeat = kind == EV_MESSAGE && conn == want_conn && tl == 15 && memcmp(type, "agent.heartbeat", 15) == 0;
        if (heartbeat) p->heartbeats++;
        else if (kind != EV_CLOSE || conn != want_conn)
            fprintf(stderr, "peer: expected the close of connection %llu, got event %d on connection %llu: %.*s %s\n",
                    (unsigned long long)want_conn, kind, (unsigned long long)conn, (int)tl, type, text ? text : "");
        orc_msg_release(env);
        free(text);
        if (heartbeat) continue;
        CHECK(kind == EV_CLOSE && conn == want_conn);
        return;
    }
    CHECK(!"only heartbeats on the connection, no close");
}

static void peer_send(peer_t *p, uint64_t conn, const char *json) {
    CHECK_OK(orc_server_send(p->server, conn, ORC_WS_TEXT, (const uint8_t *)json, strlen(json)));
}

/* Answers the agent.register `reg` with agent.registered listing `assigned` (a JSON array)
 * and releases `reg`. */
static void send_registered(peer_t *p, uint64_t conn, orc_msg_t *reg, int heartbeat_ms, const char *assigned) {
    size_t idl = 0;
    const char *rid = reg ? orc_msg_id(reg, &idl) : "";
    char buf[2048];
    snprintf(buf, sizeof buf, "{\"id\":\"r\",\"type\":\"agent.registered\",\"correlationId\":\"%.*s\",\"payload\":"
             "{\"success\":true,\"agentId\":\"a1\",\"protocol\":1,\"heartbeatIntervalMs\":%d,\"leaseMs\":15000,"
             "\"assignedTasks\":%s}}", (int)idl, rid, heartbeat_ms, assigned);
    orc_msg_release(reg);
    peer_send(p, conn, buf);
}

/* Checks an agent.register payload: ids, a 32-hex-digit nonce, the signature, the clock. */
static void check_register(const char *json, const char *nonce_not, char *nonce_out) {
    char agent[64] = "", key[64] = "", nonce[128] = "", sig[128] = "";
    long long ts = 0;
    CHECK(json_str(json, "agentId", agent, sizeof agent) && strcmp(agent, "a1") == 0);
    CHECK(json_str(json, "keyId", key, sizeof key) && strcmp(key, "k1") == 0);
    CHECK(json_str(json, "nonce", nonce, sizeof nonce) && strlen(nonce) == 32 && strspn(nonce, "0123456789abcdef") == 32);
    CHECK(nonce_not == NULL || strcmp(nonce, nonce_not) != 0);
    CHECK(json_int(json, "timestamp", &ts));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    CHECK(llabs((long long)now.tv_sec * 1000 - ts) < 300000);
    CHECK(json_str(json, "signature", sig, sizeof sig));
    char data[256];
    int n = snprintf(data, sizeof data, "%s\n%lld\n%s", agent, ts, nonce);
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), SECRET, (int)strlen(SECRET), (const unsigned char *)data, (size_t)n, mac, &ml);
    char hex[65];
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    CHECK(ml == 32 && strcmp(hex, sig) == 0);
    CHECK(has(json, "\"capabilities\":[\"shell\",\"python\"]"));
    CHECK(has(json, "\"maxConcurrency\":2"));
    CHECK(has(json, "\"metadata\":{\"zone\":\"eu\"}"));
    if (nonce_out) snprintf(nonce_out, 64, "%s", nonce);
}

/* ---------------------------------------------------------------------- agent helpers */

static void agent_options(orc_agent_options_t *o, const char *url) {
    static const char *caps[] = {"shell", "python"};
    orc_agent_options_init(o);
    o->url = url;
    o->agent_id = "a1";
    o->name = "builder-1";
    o->version = "1.2.0";
    o->capabilities = caps;
    o->capabilities_count = 2;
    o->metadata_json = "{\"zone\":\"eu\"}";
    o->max_concurrency = 2;
    o->key_id = "k1";
    o->secret = (const uint8_t *)SECRET;
    o->secret_len = strlen(SECRET);
    o->reconnect_initial_delay_ms = 10;
    o->reconnect_max_delay_ms = 50;
}

/* The next event within 10 s (NULL and a failed check otherwise). */
static orc_agent_event_t *next_event(orc_agent_t *a) {
    orc_agent_event_t *ev = NULL;
    int rc = orc_agent_next_event(a, 10000, &ev);
    CHECK_RC(rc, ORC_OK);
    return rc == ORC_OK ? ev : NULL;
}

/* The event's kind by orc_agent_event_get_kind, which must agree with the older
 * orc_agent_event_kind; -1 when they differ or the call fails. */
static int kind_of(const orc_agent_event_t *ev) {
    orc_agent_event_kind_t k;
    if (orc_agent_event_get_kind(ev, &k) != ORC_OK) return -1;
    return (int)k == orc_agent_event_kind(ev) ? (int)k : -1;
}

static int is_state(const orc_agent_event_t *ev, orc_agent_state_t s) {
    return ev && kind_of(ev) == ORC_AGENT_EVENT_STATE && orc_agent_event_state(ev) == s;
}

static int is_task_event(const orc_agent_event_t *ev, int kind, const char *task_id, uint32_t attempt) {
    size_t len = 0;
    const char *id = ev ? orc_agent_event_task_id(ev, &len) : NULL;
    return ev && kind_of(ev) == kind && id && len == strlen(task_id) &&
           memcmp(id, task_id, len) == 0 && id[len] == 0 && orc_agent_event_attempt(ev) == attempt;
}

/* Checks a task.stream payload. */
static void check_stream(const char *json, const char *task, long long seq, const char *type, const char *data) {
    char s[256];
    long long v = -1;
    CHECK(json_str(json, "taskId", s, sizeof s) && strcmp(s, task) == 0);
    CHECK(json_int(json, "seq", &v) && v == seq);
    CHECK(json_str(json, "type", s, sizeof s) && strcmp(s, type) == 0);
    char want[300];
    snprintf(want, sizeof want, "\"data\":\"%s\"", data);
    CHECK(has(json, want));
    if (!has(json, want)) fprintf(stderr, "  stream payload: %s\n", json);
}

/* ------------------------------------------------------------------------------ tests */

static void test_arguments(orc_runtime_t *rt) {
    orc_agent_options_t o;
    CHECK_RC(orc_agent_options_init_sized(NULL, sizeof o), ORC_EINVAL);
    CHECK_RC(orc_agent_options_init_sized(&o, 8), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "struct_size") != NULL);

    orc_agent_t *a = NULL;
    agent_options(&o, "ws://127.0.0.1:9/agent");
    CHECK_RC(orc_agent_new(NULL, &o, &a), ORC_EINVAL);
    CHECK_RC(orc_agent_new(rt, NULL, &a), ORC_EINVAL);
    CHECK_RC(orc_agent_new(rt, &o, NULL), ORC_EINVAL);
    orc_agent_options_t raw;
    memset(&raw, 0, sizeof raw);
    CHECK_RC(orc_agent_new(rt, &raw, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "orc_agent_options_init") != NULL);

    o.url = NULL;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "url") != NULL);
    o.url = "http://127.0.0.1:9/agent";
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "ws://") != NULL);
    agent_options(&o, "ws://127.0.0.1:9/agent");
    o.agent_id = NULL;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "agent_id") != NULL);
    o.agent_id = "";
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "agent_id") != NULL);
    o.agent_id = "a\xff";
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "UTF-8") != NULL);
    agent_options(&o, "ws://127.0.0.1:9/agent");
    o.key_id = NULL;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "key_id") != NULL);
    agent_options(&o, "ws://127.0.0.1:9/agent");
    o.secret_len = 0;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "secret") != NULL);
    o.secret = NULL;
    o.secret_len = 4;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "secret") != NULL);
    agent_options(&o, "ws://127.0.0.1:9/agent");
    o.metadata_json = "[1]";
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "metadata_json") != NULL);
    o.metadata_json = "{\"a\":";
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "metadata_json") != NULL);
    agent_options(&o, "ws://127.0.0.1:9/agent");
    o.capabilities = NULL;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "capabilities") != NULL);
    agent_options(&o, "ws://127.0.0.1:9/agent");
    o.max_concurrency = 0;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "max_concurrency") != NULL);
    agent_options(&o, "ws://127.0.0.1:9/agent");
    o.reconnect_initial_delay_ms = 0;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(a == NULL);

    /* Several hubs: urls with url_count instead of url, never both; every entry a URL. */
    static const char *two[] = {"ws://127.0.0.1:9/agent", "ws://127.0.0.1:10/agent"};
    static const char *holed[] = {"ws://127.0.0.1:9/agent", NULL};
    static const char *badurl[] = {"ws://127.0.0.1:9/agent", "http://127.0.0.1:10/agent"};
    agent_options(&o, NULL);
    o.urls = two;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);   /* url_count 0: url is required */
    CHECK(strstr(orc_last_error(), "url is required") != NULL);
    o.url_count = 2;
    o.url = two[0];
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "not both") != NULL);
    o.url = NULL;
    o.urls = NULL;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "urls") != NULL);
    o.urls = holed;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "urls[1]") != NULL);
    o.urls = badurl;
    CHECK_RC(orc_agent_new(rt, &o, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "http://127.0.0.1:10/agent") != NULL);
    o.urls = two;
    CHECK_OK(orc_agent_new(rt, &o, &a));
    size_t index = 7;
    const char *u = orc_agent_url(a, &index);
    CHECK(u && u != two[0] && strcmp(u, two[0]) == 0 && index == 0);   /* the agent's copy */
    orc_agent_free(a);
    a = NULL;
    index = 7;
    CHECK(orc_agent_url(NULL, &index) == NULL && index == 0);

    /* A program built against the header before urls (its struct ends there) keeps working:
     * init writes nothing past its struct_size, and new reads nothing past it. */
    const size_t old_size = offsetof(orc_agent_options_t, urls);
    orc_agent_options_t old;
    memset(&old, 0xee, sizeof old);
    CHECK_OK(orc_agent_options_init_sized(&old, old_size));
    CHECK(old.struct_size == old_size && old.tls_verify == 1 && old.max_concurrency == 1 && old.url == NULL);
    int untouched = 1;
    for (size_t i = old_size; i < sizeof old; i++) untouched &= ((unsigned char *)&old)[i] == 0xee;
    CHECK(untouched);
    CHECK_RC(orc_agent_options_init_sized(&old, old_size - 1), ORC_EINVAL);
    old.url = two[1];
    old.agent_id = "a1";
    old.key_id = "k1";
    old.secret = (const uint8_t *)SECRET;
    old.secret_len = strlen(SECRET);
    CHECK_OK(orc_agent_new(rt, &old, &a));   /* urls, url_count: 0xee bytes, not read */
    u = orc_agent_url(a, &index);
    CHECK(u && strcmp(u, two[1]) == 0 && index == 0);
    orc_agent_free(a);
    a = NULL;
    old.struct_size = old_size - 1;
    CHECK_RC(orc_agent_new(rt, &old, &a), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "orc_agent_options_init") != NULL);

    /* A valid agent, never started. */
    agent_options(&o, "ws://127.0.0.1:9/agent");
    CHECK_OK(orc_agent_new(rt, &o, &a));
    CHECK(orc_agent_state(a) == ORC_AGENT_CONNECTING);
    CHECK(orc_agent_state(NULL) == ORC_AGENT_CLOSED);

    /* Actions: arguments first, then the in-flight check. */
    CHECK_RC(orc_agent_accept(NULL, "t1", 1), ORC_EINVAL);
    CHECK_RC(orc_agent_accept(a, NULL, 1), ORC_EINVAL);
    CHECK_RC(orc_agent_accept(a, "", 1), ORC_EINVAL);
    CHECK_RC(orc_agent_accept(a, "t\xc3", 1), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "UTF-8") != NULL);
    CHECK_RC(orc_agent_accept(a, "t1", 1), ORC_ENOTFOUND);
    CHECK(strstr(orc_last_error(), "t1") != NULL);
    CHECK_RC(orc_agent_reject(a, "t1", 1, "busy"), ORC_ENOTFOUND);
    CHECK_RC(orc_agent_progress(a, "t1", 1, 101.0, NULL), ORC_EINVAL);
    CHECK_RC(orc_agent_progress(a, "t1", 1, -1.0, NULL), ORC_EINVAL);
    CHECK_RC(orc_agent_progress(a, "t1", 1, NAN, NULL), ORC_EINVAL);
    CHECK_RC(orc_agent_progress(a, "t1", 1, 50.0, "half"), ORC_ENOTFOUND);
    CHECK_RC(orc_agent_stream(a, "t1", 1, "stdout", (const uint8_t *)"ok\xff", 3), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "byte 2") != NULL);
    CHECK_RC(orc_agent_stream(a, "t1", 1, "video", (const uint8_t *)"ok", 2), ORC_EINVAL);
    CHECK_RC(orc_agent_stream(a, "t1", 1, NULL, (const uint8_t *)"ok", 2), ORC_EINVAL);
    CHECK_RC(orc_agent_stream(a, "t1", 1, "stdout", NULL, 2), ORC_EINVAL);
    CHECK_RC(orc_agent_stream(a, "t1", 1, "stdout", (const uint8_t *)"ok", 2), ORC_ENOTFOUND);
    CHECK_RC(orc_agent_result(a, "t1", 1, 1, "{\"exitCode\":", NULL), ORC_EPARSE);
    CHECK_RC(orc_agent_result(a, "t1", 1, 0, NULL, "bad \xfe"), ORC_EINVAL);
    CHECK_RC(orc_agent_result(a, "t1", 1, 1, "{\"exitCode\":0}", NULL), ORC_ENOTFOUND);
    CHECK_RC(orc_agent_worker_output(a, "t1", 1, "robot", "hi", NULL), ORC_EINVAL);
    CHECK_RC(orc_agent_worker_output(a, "t1", 1, "assistant", "hi", "[]"), ORC_EINVAL);
    CHECK_RC(orc_agent_worker_status(a, "t1", 1, "sleeping", NULL), ORC_EINVAL);
    CHECK_RC(orc_agent_worker_status(a, "t1", 1, "running", NULL), ORC_ENOTFOUND);

    /* The event queue: nothing yet. */
    orc_agent_event_t *ev = NULL;
    CHECK_RC(orc_agent_next_event(NULL, 0, &ev), ORC_EINVAL);
    CHECK_RC(orc_agent_next_event(a, 0, NULL), ORC_EINVAL);
    CHECK_RC(orc_agent_next_event(a, 0, &ev), ORC_EAGAIN);
    CHECK_RC(orc_agent_next_event(a, 30, &ev), ORC_ETIMEDOUT);
    CHECK(ev == NULL);
    int fd = -1;
    CHECK_RC(orc_agent_fd(a, NULL), ORC_EINVAL);
    CHECK_RC(orc_agent_fd(NULL, &fd), ORC_EINVAL);
    CHECK_OK(orc_agent_fd(a, &fd));
    CHECK(fd >= 0);
    struct pollfd pfd = {fd, POLLIN, 0};
    CHECK(poll(&pfd, 1, 0) == 0);

    /* Getters and frees are NULL-safe. */
    size_t len = 7;
    CHECK(orc_agent_event_kind(NULL) == ORC_EINVAL);
    orc_agent_event_kind_t kind = ORC_AGENT_EVENT_TASK;
    CHECK_RC(orc_agent_event_get_kind(NULL, &kind), ORC_EINVAL);
    CHECK(kind == ORC_AGENT_EVENT_TASK);   /* untouched on an error */
    CHECK(orc_agent_event_attempt(NULL) == 0);
    CHECK(orc_agent_event_state(NULL) == ORC_AGENT_CLOSED);
    CHECK(orc_agent_event_task_id(NULL, &len) == NULL && len == 0);
    CHECK(orc_agent_event_reason(NULL, NULL) == NULL);
    orc_agent_event_free(NULL);
    orc_agent_free(NULL);
    CHECK_RC(orc_agent_start(NULL), ORC_EINVAL);
    CHECK_RC(orc_agent_close(NULL), ORC_EINVAL);

    /* Close: a STATE CLOSED event, the fd readable, then ORC_ECLOSED; actions fail. */
    CHECK_OK(orc_agent_close(a));
    CHECK(orc_agent_state(a) == ORC_AGENT_CLOSED);
    CHECK(poll(&pfd, 1, 10000) == 1);
    ev = next_event(a);
    CHECK(is_state(ev, ORC_AGENT_CLOSED));
    CHECK(orc_agent_event_task_id(ev, &len) == NULL);
    CHECK(orc_agent_event_reason(ev, &len) != NULL && len > 0);
    orc_agent_event_view_t sv;
    sv.struct_size = sizeof sv;
    CHECK_OK(orc_agent_event_view(ev, &sv));
    CHECK(sv.kind == ORC_AGENT_EVENT_STATE && sv.state == ORC_AGENT_CLOSED && sv.attempt == 0);
    CHECK(sv.task_id == NULL && sv.reason && sv.reason_len == len && strlen(sv.reason) == len);
    orc_agent_event_free(ev);
    CHECK_RC(orc_agent_next_event(a, 1000, &ev), ORC_ECLOSED);
    CHECK(poll(&pfd, 1, 0) == 1);   /* closed stays readable */
    CHECK_RC(orc_agent_accept(a, "t1", 1), ORC_ECLOSED);
    CHECK_RC(orc_agent_start(a), ORC_ECLOSED);
    CHECK_OK(orc_agent_close(a));
    orc_agent_free(a);
}

/* A task attempt's data (orc_agent_event_set_task_data): how often its data_free ran; with
 * `agent` set, data_free also calls into the agent (which would deadlock if the agent held a
 * lock of its own around data_free) and keeps what the call returned. */
typedef struct {
    int freed;
    orc_agent_t *agent;
    int agent_rc;
} tdata_t;
static void tdata_free(void *p) {
    tdata_t *d = p;
    if (d->agent) d->agent_rc = orc_agent_accept(d->agent, "no-such-task", 1);
    __atomic_add_fetch(&d->freed, 1, __ATOMIC_SEQ_CST);
}
static int tdata_freed(tdata_t *d) { return __atomic_load_n(&d->freed, __ATOMIC_SEQ_CST); }

/* The main exchange: register, tasks, stream order, results, heartbeats, an error, input;
 * then the peer drops the connection and checks the re-registration. */
static void test_exchange(orc_runtime_t *rt) {
    peer_t p;
    peer_start(rt, &p);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/agent", orc_server_port(p.server));
    orc_agent_options_t o;
    agent_options(&o, url);
    orc_agent_t *a = NULL;
    CHECK_OK(orc_agent_new(rt, &o, &a));
    CHECK_OK(orc_agent_start(a));
    CHECK_OK(orc_agent_start(a));   /* idempotent */

    /* 1. Registration. */
    uint64_t c1 = expect_open(&p);
    orc_msg_t *env = NULL;
    char *json = expect(&p, c1, "agent.register", &env);
    char nonce1[64] = "";
    if (json) {
        check_register(json, NULL, nonce1);
        CHECK(has(json, "\"inFlight\":[]"));
    }
    free(json);
    send_registered(&p, c1, env, 100, "[]");
    orc_agent_event_t *ev = next_event(a);
    CHECK(is_state(ev, ORC_AGENT_REGISTERED));
    orc_agent_event_free(ev);
    CHECK(orc_agent_state(a) == ORC_AGENT_REGISTERED);

    /* 2. Tasks: t1 (sent twice: the duplicate is ignored), t2, t3. */
    const char *assign1 = "{\"id\":\"m1\",\"type\":\"task.assign\",\"headers\":{\"traceId\":\"tr1\"},\"payload\":"
        "{\"taskId\":\"t1\",\"attempt\":1,\"agentId\":\"a1\",\"task\":{\"type\":\"shell\",\"tool\":\"custom\","
        "\"capabilities\":[\"shell\"],\"parameters\":{\"command\":\"echo hi\"},\"priority\":\"normal\"}}}";
    peer_send(&p, c1, assign1);
    peer_send(&p, c1, assign1);
    peer_send(&p, c1, "{\"id\":\"m2\",\"type\":\"task.assign\",\"payload\":{\"taskId\":\"t2\",\"attempt\":1,\"task\":{}}}");
    peer_send(&p, c1, "{\"id\":\"m3\",\"type\":\"task.assign\",\"payload\":{\"taskId\":\"t3\",\"attempt\":2,\"task\":{\"parameters\":{\"n\":3}}}}");
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_TASK, "t1", 1));
    size_t len = 0;
    const char *t = orc_agent_event_params_json(ev, &len);
    CHECK(t && len == strlen("{\"command\":\"echo hi\"}") && strcmp(t, "{\"command\":\"echo hi\"}") == 0);
    t = orc_agent_event_task_json(ev, &len);
    CHECK(t && strstr(t, "\"tool\":\"custom\"") != NULL && len == strlen(t));
    t = orc_agent_event_payload_json(ev, &len);
    CHECK(t && strstr(t, "\"agentId\":\"a1\"") != NULL);
    /* The view: the same strings as the getters, absent fields NULL with length 0. */
    orc_agent_event_view_t v;
    memset(&v, 0x5a, sizeof v);
    v.struct_size = sizeof v;
    CHECK_OK(orc_agent_event_view(ev, &v));
    CHECK(v.struct_size == sizeof v && v.kind == ORC_AGENT_EVENT_TASK && v.attempt == 1);
    CHECK(v.state == ORC_AGENT_CLOSED);
    CHECK(v.task_id && v.task_id_len == 2 && strcmp(v.task_id, "t1") == 0);
    CHECK(v.payload_json == t && v.payload_json_len == len);
    CHECK(v.input == NULL && v.input_len == 0 && v.reason == NULL && v.reason_len == 0);
    CHECK(v.code == NULL && v.code_len == 0);
    v.struct_size = sizeof v - 1;
    CHECK_RC(orc_agent_event_view(ev, &v), ORC_EINVAL);
    CHECK_RC(orc_agent_event_view(ev, NULL), ORC_EINVAL);
    v.struct_size = sizeof v;
    CHECK_RC(orc_agent_event_view(NULL, &v), ORC_EINVAL);
    CHECK_RC(orc_agent_event_get_kind(ev, NULL), ORC_EINVAL);
    /* Each attempt takes one pointer of ours; the later events about it carry it. */
    static tdata_t d1, d2, d3, d5;
    d1.agent = d5.agent = a;
    CHECK(orc_agent_event_task_data(ev) == NULL);
    CHECK(orc_agent_event_task_data(NULL) == NULL);
    CHECK_RC(orc_agent_event_set_task_data(NULL, &d1, tdata_free), ORC_EINVAL);
    CHECK_RC(orc_agent_event_set_task_data(ev, NULL, tdata_free), ORC_EINVAL);
    CHECK_OK(orc_agent_event_set_task_data(ev, &d1, tdata_free));
    CHECK(orc_agent_event_task_data(ev) == &d1);
    CHECK_RC(orc_agent_event_set_task_data(ev, &d2, tdata_free), ORC_ESTATE);
    CHECK(orc_agent_event_task_data(ev) == &d1 && tdata_freed(&d2) == 0);   /* a refused one is still ours */
    orc_agent_event_free(ev);
    CHECK(tdata_freed(&d1) == 0);   /* t1 is in flight: the agent holds it */
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_TASK, "t2", 1));   /* not the duplicate t1 */
    t = orc_agent_event_params_json(ev, &len);
    CHECK(t && strcmp(t, "{}") == 0);
    CHECK_OK(orc_agent_event_set_task_data(ev, &d2, tdata_free));
    orc_agent_event_free(ev);
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_TASK, "t3", 2));
    CHECK_OK(orc_agent_event_set_task_data(ev, &d3, NULL));   /* no free function: nothing is called */
    orc_agent_event_free(ev);

    /* 3. What the agent sends arrives in call order, streams numbered per task attempt. */
    CHECK_OK(orc_agent_accept(a, "t1", 1));
    CHECK_OK(orc_agent_stream(a, "t1", 1, "stdout", (const uint8_t *)"line1\n", 6));
    CHECK_OK(orc_agent_stream(a, "t1", 1, "stdout", (const uint8_t *)"line2 \xc3\xa9", 8));
    CHECK_OK(orc_agent_progress(a, "t1", 1, 50.0, "half"));
    CHECK_OK(orc_agent_stream(a, "t1", 1, "stderr", (const uint8_t *)"", 0));
    CHECK_OK(orc_agent_worker_status(a, "t1", 1, "running", NULL));
    CHECK(tdata_freed(&d1) == 0);
    CHECK_OK(orc_agent_result(a, "t1", 1, 1, "{\"exitCode\":0}", NULL));
    CHECK(tdata_freed(&d1) == 1);   /* out of flight, no event left (the I/O thread let go of
                                     * t1's TASK event before it made t3's): freed in the call */
    CHECK(d1.agent_rc == ORC_ENOTFOUND);   /* ... after the agent's lock was released */
    CHECK_RC(orc_agent_stream(a, "t1", 1, "stdout", (const uint8_t *)"late", 4), ORC_ENOTFOUND);
    CHECK_RC(orc_agent_stream(a, "t1", 2, "stdout", (const uint8_t *)"x", 1), ORC_ENOTFOUND);
    CHECK_OK(orc_agent_accept(a, "t2", 1));
    CHECK_OK(orc_agent_stream(a, "t2", 1, "log", (const uint8_t *)"x", 1));

    env = NULL;
    json = expect(&p, c1, "task.accepted", &env);
    CHECK(has(json, "\"taskId\":\"t1\"") && has(json, "\"attempt\":1"));
    const char *hv = NULL;
    size_t hl = 0;
    CHECK(env && orc_msg_header_get(env, "traceId", 7, &hv, &hl, NULL) == ORC_OK && hl == 3 && memcmp(hv, "tr1", 3) == 0);
    orc_msg_release(env);
    free(json);
    json = expect(&p, c1, "task.stream", NULL);
    if (json) check_stream(json, "t1", 0, "stdout", "line1\\n");
    free(json);
    json = expect(&p, c1, "task.stream", NULL);
    if (json) check_stream(json, "t1", 1, "stdout", "line2 \xc3\xa9");
    free(json);
    json = expect(&p, c1, "task.progress", NULL);
    CHECK(has(json, "\"progress\":50") && has(json, "\"currentStep\":\"half\""));
    free(json);
    json = expect(&p, c1, "task.stream", NULL);
    if (json) check_stream(json, "t1", 2, "stderr", "");
    free(json);
    json = expect(&p, c1, "worker.status", NULL);
    CHECK(has(json, "\"status\":\"running\"") && has(json, "\"agentId\":\"a1\""));
    free(json);
    json = expect(&p, c1, "task.result", NULL);
    long long duration = -1;
    CHECK(has(json, "\"success\":true") && has(json, "\"result\":{\"exitCode\":0}"));
    CHECK(json && json_int(json, "duration", &duration) && duration >= 0);
    free(json);
    json = expect(&p, c1, "task.accepted", NULL);
    CHECK(has(json, "\"taskId\":\"t2\""));
    free(json);
    json = expect(&p, c1, "task.stream", NULL);
    if (json) check_stream(json, "t2", 0, "log", "x");
    free(json);

    /* 4. Heartbeats: every 100 ms; wait for one after the result (load: t2 and t3). */
    int hb = p.heartbeats;
    for (int i = 0; i < 100 && p.heartbeats < hb + 2; i++) {
        uint64_t conn = 0;
        orc_msg_t *m = NULL;
        char *text = NULL;
        int kind = peer_next(&p, 10000, &conn, &m, &text);
        CHECK(kind == EV_MESSAGE);
        size_t tl = 0;
        const char *type = m ? orc_msg_type(m, &tl) : "";
        CHECK(tl == 15 && memcmp(type, "agent.heartbeat", 15) == 0);
        if (tl == 15 && memcmp(type, "agent.heartbeat", 15) == 0) {
            p.heartbeats++;
            snprintf(p.last_heartbeat, sizeof p.last_heartbeat, "%s", text ? text : "");
        }
        orc_msg_release(m);
        free(text);
        if (kind != EV_MESSAGE) break;
    }
    CHECK(p.heartbeats >= hb + 2);
    CHECK(has(p.last_heartbeat, "\"agentId\":\"a1\"") && has(p.last_heartbeat, "\"systemInfo\":{\"cpu\":"));
    CHECK(has(p.last_heartbeat, "\"memory\":") && has(p.last_heartbeat, "\"disk\":") && has(p.last_heartbeat, "\"load\":2"));

    /* 5. An error about a task, input, a cancel for a task not in flight (ignored). */
    peer_send(&p, c1, "{\"id\":\"e1\",\"type\":\"error\",\"correlationId\":\"x\",\"payload\":{\"code\":\"PARAM_001\","
                      "\"message\":\"task.stream: bad seq\",\"details\":{\"taskId\":\"t2\",\"attempt\":1}}}");
    peer_send(&p, c1, "{\"id\":\"c0\",\"type\":\"task.cancel\",\"payload\":{\"taskId\":\"t9\",\"attempt\":1}}");
    peer_send(&p, c1, "{\"id\":\"i1\",\"type\":\"worker.input\",\"payload\":{\"agentId\":\"a1\",\"taskId\":\"t2\",\"input\":\"yes\\n\"}}");
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_ERROR, "t2", 1));
    t = orc_agent_event_code(ev, &len);
    CHECK(t && len == 9 && strcmp(t, "PARAM_001") == 0);
    t = orc_agent_event_reason(ev, &len);
    CHECK(t && strcmp(t, "task.stream: bad seq") == 0);
    CHECK(orc_agent_event_task_data(ev) == &d2);
    CHECK_RC(orc_agent_event_set_task_data(ev, &d5, tdata_free), ORC_EINVAL);   /* not a TASK event */
    orc_agent_event_free(ev);
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_INPUT, "t2", 1));
    t = orc_agent_event_input(ev, &len);
    CHECK(t && len == 4 && strcmp(t, "yes\n") == 0);
    CHECK(orc_agent_event_task_data(ev) == &d2);
    orc_agent_event_free(ev);
    CHECK(tdata_freed(&d2) == 0);

    /* 6. The peer drops the connection. While the agent is not registered, what it sends
     * waits: for t2 (still the agent's) and for t3 (re-assigned by the hub meanwhile).
     * Heartbeats (every 100 ms) go on until the agent hears the close, so some may reach the
     * peer ahead of it. The close is made once one waits in the peer's queue (the agent sends
     * nothing else now): the close then comes behind a heartbeat every run, not only when
     * one happens to fall between section 4 and here. */
    int hb6 = p.heartbeats;
    for (int i = 0; i < 2000 && orc_queue_depth(p.q) == 0; i++) usleep(5000);   /* 10 s at most */
    CHECK(orc_queue_depth(p.q) > 0);
    CHECK_OK(orc_server_close_connection(p.server, c1, 1001, "hub restart"));
    ev = next_event(a);
    CHECK(is_state(ev, ORC_AGENT_DISCONNECTED));
    t = orc_agent_event_reason(ev, &len);
    CHECK(t && strstr(t, "1001") != NULL);
    orc_agent_event_free(ev);
    CHECK_OK(orc_agent_stream(a, "t2", 1, "stdout", (const uint8_t *)"offline1", 8));
    CHECK_OK(orc_agent_stream(a, "t3", 2, "stdout", (const uint8_t *)"lost", 4));
    CHECK_OK(orc_agent_progress(a, "t2", 1, 75.0, NULL));

    expect_close(&p, c1);   /* after the heartbeats sent before it */
    CHECK(p.heartbeats > hb6);
    uint64_t conn = 0;
    uint64_t c2 = expect_open(&p);
    CHECK(c2 != c1);
    env = NULL;
    json = expect(&p, c2, "agent.register", &env);
    if (json) {
        check_register(json, nonce1, NULL);
        CHECK(has(json, "\"inFlight\":[{\"taskId\":\"t2\",\"attempt\":1},{\"taskId\":\"t3\",\"attempt\":2}]"));
        if (!has(json, "\"inFlight\":[{")) fprintf(stderr, "  register: %s\n", json);
    }
    free(json);
    /* Sent now, certainly before agent.registered: it waits too. */
    CHECK_OK(orc_agent_stream(a, "t2", 1, "stdout", (const uint8_t *)"offline2", 8));
    ev = next_event(a);
    CHECK(is_state(ev, ORC_AGENT_CONNECTING));
    orc_agent_event_free(ev);
    /* Nothing may come before agent.registered. */
    {
        char *early = NULL;
        int kind = peer_next(&p, 300, &conn, NULL, &early);
        if (kind != EV_NONE)
            fprintf(stderr, "peer: before agent.registered (on %llu), event %d on connection %llu: %s\n", (unsigned long long)c2, kind,
                    (unsigned long long)conn, early ? early : "");
        CHECK(kind == EV_NONE);
        free(early);
    }

    send_registered(&p, c2, env, 60000, "[\"t2\"]");
    ev = next_event(a);
    CHECK(is_state(ev, ORC_AGENT_REGISTERED));
    orc_agent_event_free(ev);
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_CANCEL, "t3", 2));
    t = orc_agent_event_reason(ev, &len);
    CHECK(t && strstr(t, "re-assigned") != NULL);
    CHECK(orc_agent_event_task_data(ev) == &d3);   /* out of flight, but the event holds it */
    orc_agent_event_free(ev);
    CHECK_RC(orc_agent_stream(a, "t3", 2, "stdout", (const uint8_t *)"x", 1), ORC_ENOTFOUND);

    /* The outbox, in order, without t3's message; then live sends. */
    CHECK_OK(orc_agent_result(a, "t2", 1, 0, NULL, "exit 3"));
    CHECK(tdata_freed(&d2) == 1);
    json = expect(&p, c2, "task.stream", NULL);
    if (json) check_stream(json, "t2", 1, "stdout", "offline1");
    free(json);
    json = expect(&p, c2, "task.progress", NULL);
    CHECK(has(json, "\"taskId\":\"t2\"") && has(json, "\"progress\":75"));
    free(json);
    json = expect(&p, c2, "task.stream", NULL);
    if (json) check_stream(json, "t2", 2, "stdout", "offline2");
    free(json);
    json = expect(&p, c2, "task.result", NULL);
    CHECK(has(json, "\"success\":false") && has(json, "\"error\":\"exit 3\"") && !has(json, "\"result\""));
    free(json);

    /* 7. A cancel for an in-flight task. */
    peer_send(&p, c2, "{\"id\":\"m4\",\"type\":\"task.assign\",\"payload\":{\"taskId\":\"t4\",\"attempt\":1,\"task\":{}}}");
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_TASK, "t4", 1));
    orc_agent_event_free(ev);
    peer_send(&p, c2, "{\"id\":\"c1\",\"type\":\"task.cancel\",\"payload\":{\"taskId\":\"t4\",\"attempt\":1}}");
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_CANCEL, "t4", 1));
    t = orc_agent_event_reason(ev, &len);
    CHECK(t && strcmp(t, "cancelled by the hub") == 0);
    CHECK(orc_agent_event_task_data(ev) == NULL);   /* t4 got none */
    orc_agent_event_free(ev);
    CHECK_RC(orc_agent_accept(a, "t4", 1), ORC_ENOTFOUND);

    /* A task attempt still in flight when the agent closes: its data goes with the close. */
    peer_send(&p, c2, "{\"id\":\"m5\",\"type\":\"task.assign\",\"payload\":{\"taskId\":\"t5\",\"attempt\":1,\"task\":{}}}");
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_TASK, "t5", 1));
    CHECK_OK(orc_agent_event_set_task_data(ev, &d5, tdata_free));
    orc_agent_event_free(ev);
    CHECK(tdata_freed(&d5) == 0);

    /* 8. Close: the peer sees the close, the agent reports CLOSED, then ORC_ECLOSED. */
    CHECK_OK(orc_agent_close(a));
    CHECK(peer_next(&p, 10000, &conn, NULL, NULL) == EV_CLOSE && conn == c2);
    ev = next_event(a);
    CHECK(is_state(ev, ORC_AGENT_CLOSED));
    orc_agent_event_free(ev);
    /* The close dropped the in-flight set; the I/O thread, which made the CLOSED event after it
     * let go of t5's TASK event, holds nothing either: freed once, outside the agent's lock. */
    CHECK(tdata_freed(&d5) == 1);
    CHECK(d5.agent_rc == ORC_ECLOSED);
    CHECK_RC(orc_agent_next_event(a, 1000, &ev), ORC_ECLOSED);
    orc_agent_free(a);
    peer_stop(&p);
}

/* Callback mode: a registration that gets no answer (CONN_002: reconnect), then one the hub
 * refuses (AUTH_001: failed for good, no reconnection). */
typedef struct {
    pthread_mutex_t lock;
    int events, states[5], freed, io_thread;
    char code[32], reason[256];
    orc_runtime_t *rt;
} seen_t;

static void on_event(void *ud, orc_agent_t *agent, const orc_agent_event_t *ev) {
    seen_t *s = ud;
    pthread_mutex_lock(&s->lock);
    s->events++;
    if (orc_runtime_is_io_thread(s->rt)) s->io_thread++;
    if (agent != NULL && orc_agent_event_kind(ev) == ORC_AGENT_EVENT_STATE) {
        orc_agent_state_t st = orc_agent_event_state(ev);
        if ((int)st >= 0 && (int)st < 5) s->states[st]++;
        const char *c = orc_agent_event_code(ev, NULL);
        snprintf(s->code, sizeof s->code, "%s", c ? c : "");
        const char *r = orc_agent_event_reason(ev, NULL);
        snprintf(s->reason, sizeof s->reason, "%s", r ? r : "");
    }
    pthread_mutex_unlock(&s->lock);
}

static void on_free(void *ud) {
    seen_t *s = ud;
    pthread_mutex_lock(&s->lock);
    s->freed++;
    pthread_mutex_unlock(&s->lock);
}

static int wait_state(seen_t *s, orc_agent_state_t st, int count) {
    for (int i = 0; i < 10000; i++) {
        pthread_mutex_lock(&s->lock);
        int v = s->states[st];
        pthread_mutex_unlock(&s->lock);
        if (v >= count) return 1;
        usleep(1000);
    }
    return 0;
}

static void test_refused(orc_runtime_t *rt) {
    peer_t p;
    peer_start(rt, &p);
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/agent", orc_server_port(p.server));
    static seen_t s = {PTHREAD_MUTEX_INITIALIZER, 0, {0}, 0, 0, "", "", NULL};
    s.rt = rt;
    orc_agent_options_t o;
    agent_options(&o, url);
    o.request_timeout_ms = 200;
    o.on_event = on_event;
    o.user_data = &s;
    o.user_data_free = on_free;
    orc_agent_t *a = NULL;
    CHECK_OK(orc_agent_new(rt, &o, &a));
    orc_agent_event_t *ev = NULL;
    CHECK_RC(orc_agent_next_event(a, 0, &ev), ORC_ESTATE);
    int fd = -1;
    CHECK_RC(orc_agent_fd(a, &fd), ORC_ESTATE);
    CHECK_OK(orc_agent_start(a));

    /* No answer: the agent gives up on this connection (CONN_002) and registers again. */
    uint64_t c1 = expect_open(&p);
    free(expect(&p, c1, "agent.register", NULL));
    CHECK(wait_state(&s, ORC_AGENT_DISCONNECTED, 1));
    pthread_mutex_lock(&s.lock);
    CHECK(strcmp(s.code, "CONN_002") == 0);
    pthread_mutex_unlock(&s.lock);
    uint64_t conn = 0;
    CHECK(peer_next(&p, 10000, &conn, NULL, NULL) == EV_CLOSE && conn == c1);
    uint64_t c2 = expect_open(&p);
    orc_msg_t *env = NULL;
    free(expect(&p, c2, "agent.register", &env));
    size_t idl = 0;
    const char *rid = env ? orc_msg_id(env, &idl) : "";
    char buf[512];
    snprintf(buf, sizeof buf, "{\"id\":\"e1\",\"type\":\"error\",\"correlationId\":\"%.*s\",\"payload\":"
             "{\"code\":\"AUTH_001\",\"message\":\"bad signature\",\"timestamp\":1}}", (int)idl, rid);
    orc_msg_release(env);
    peer_send(&p, c2, buf);
    CHECK_OK(orc_server_close_connection(p.server, c2, 1008, "auth"));
    CHECK(wait_state(&s, ORC_AGENT_FAILED, 1));
    CHECK(orc_agent_state(a) == ORC_AGENT_FAILED);
    pthread_mutex_lock(&s.lock);
    CHECK(strcmp(s.code, "AUTH_001") == 0 && strstr(s.reason, "bad signature") != NULL);
    pthread_mutex_unlock(&s.lock);
    CHECK(peer_next(&p, 10000, &conn, NULL, NULL) == EV_CLOSE && conn == c2);
    /* No reconnection with the refused credentials (the backoff is 10..50 ms). */
    CHECK(peer_next(&p, 500, &conn, NULL, NULL) == EV_NONE);
    CHECK_RC(orc_agent_start(a), ORC_ECLOSED);
    CHECK_OK(orc_agent_close(a));
    CHECK(orc_agent_state(a) == ORC_AGENT_FAILED);
    orc_agent_free(a);
    pthread_mutex_lock(&s.lock);
    CHECK(s.freed == 1);
    CHECK(s.events > 0 && s.io_thread == s.events);
    CHECK(s.states[ORC_AGENT_REGISTERED] == 0 && s.states[ORC_AGENT_FAILED] == 1);
    int events = s.events;
    pthread_mutex_unlock(&s.lock);
    usleep(50000);
    pthread_mutex_lock(&s.lock);
    CHECK(s.events == events);   /* nothing after orc_agent_free */
    pthread_mutex_unlock(&s.lock);
    peer_stop(&p);
}

/* The event's url (STATE, FAILOVER) equals `want`. */
static int url_is(const orc_agent_event_t *ev, const char *want) {
    size_t len = 0;
    const char *u = orc_agent_event_url(ev, &len);
    return u && len == strlen(want) && strcmp(u, want) == 0;
}

/* Pops the next event, checks it is STATE `st` about hub `url`, frees it. */
static void expect_state(orc_agent_t *a, orc_agent_state_t st, const char *url) {
    orc_agent_event_t *ev = next_event(a);
    CHECK(is_state(ev, st));
    CHECK(url_is(ev, url));
    if (!is_state(ev, st) || !url_is(ev, url)) {
        const char *r = ev ? orc_agent_event_reason(ev, NULL) : NULL;
        fprintf(stderr, "  wanted state %d at %s; got kind %d state %d url %s (%s)\n", (int)st, url, ev ? kind_of(ev) : -1,
                ev ? (int)orc_agent_event_state(ev) : -1, ev && orc_agent_event_url(ev, NULL) ? orc_agent_event_url(ev, NULL) : "-",
                r ? r : "");
    }
    orc_agent_event_free(ev);
}

/* Pops the next event, checks it is FAILOVER from `from` to `to`, frees it. */
static void expect_failover(orc_agent_t *a, const char *from, const char *to, const char *why) {
    orc_agent_event_t *ev = next_event(a);
    CHECK(ev && kind_of(ev) == ORC_AGENT_EVENT_FAILOVER);
    CHECK(url_is(ev, to));
    const char *r = ev ? orc_agent_event_reason(ev, NULL) : NULL;
    char next[128];
    snprintf(next, sizeof next, "; next: %s", to);
    CHECK(r && strncmp(r, from, strlen(from)) == 0 && strstr(r, why) != NULL && strstr(r, next) != NULL);
    if (!r || strstr(r, why) == NULL) fprintf(stderr, "  failover reason: %s\n", r ? r : "(none)");
    CHECK(ev && orc_agent_event_task_id(ev, NULL) == NULL && orc_agent_event_attempt(ev) == 0);
    orc_agent_event_free(ev);
}

/* Checks the agent's hub now. */
static void check_url(orc_agent_t *a, const char *want, size_t want_index) {
    size_t index = 99;
    const char *u = orc_agent_url(a, &index);
    CHECK(u && strcmp(u, want) == 0 && index == want_index);
}

/* Failover: an agent of three hub URLs (peers A and B, and a port nobody listens on) moves
 * round robin. A drops the connection: the agent goes to B (not back to A, which still
 * listens), re-registers with its tasks in flight; B keeps t1 and cancels t2 as a hub does
 * (task.cancel before agent.registered). What the agent sent meanwhile reaches B after
 * agent.registered, in order and once: t1's chunks and result, nothing of t2's. Then B drops
 * it: the next URL refuses the connection, and the agent is back with A, the first. */
static void test_failover(orc_runtime_t *rt) {
    peer_t pa, pb;
    peer_start(rt, &pa);
    peer_start(rt, &pb);
    char ua[64], ub[64];
    const char *dead = "ws://127.0.0.1:9/agent";   /* discard: nobody listens on it here */
    snprintf(ua, sizeof ua, "ws://127.0.0.1:%u/agent", orc_server_port(pa.server));
    snprintf(ub, sizeof ub, "ws://127.0.0.1:%u/agent", orc_server_port(pb.server));
    const char *urls[] = {ua, ub, dead};
    orc_agent_options_t o;
    agent_options(&o, NULL);
    o.urls = urls;
    o.url_count = 3;
    orc_agent_t *a = NULL;
    CHECK_OK(orc_agent_new(rt, &o, &a));
    check_url(a, ua, 0);
    CHECK_OK(orc_agent_start(a));

    /* 1. Registered with A, the first URL; t1 and t2 assigned; a chunk of t1 goes out live. */
    uint64_t ca = expect_open(&pa);
    orc_msg_t *env = NULL;
    char *json = expect(&pa, ca, "agent.register", &env);
    CHECK(has(json, "\"inFlight\":[]"));
    free(json);
    send_registered(&pa, ca, env, 60000, "[]");
    expect_state(a, ORC_AGENT_REGISTERED, ua);
    check_url(a, ua, 0);
    peer_send(&pa, ca, "{\"id\":\"m1\",\"type\":\"task.assign\",\"payload\":{\"taskId\":\"t1\",\"attempt\":1,\"task\":{}}}");
    peer_send(&pa, ca, "{\"id\":\"m2\",\"type\":\"task.assign\",\"payload\":{\"taskId\":\"t2\",\"attempt\":3,\"task\":{}}}");
    orc_agent_event_t *ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_TASK, "t1", 1));
    orc_agent_event_free(ev);
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_TASK, "t2", 3));
    orc_agent_event_free(ev);
    CHECK_OK(orc_agent_stream(a, "t1", 1, "stdout", (const uint8_t *)"c0", 2));
    json = expect(&pa, ca, "task.stream", NULL);
    if (json) check_stream(json, "t1", 0, "stdout", "c0");
    free(json);

    /* 2. A drops the connection: DISCONNECTED from A, then FAILOVER to B. What the agent sends
     * now waits in its outbox. */
    CHECK_OK(orc_server_close_connection(pa.server, ca, 1001, "hub going away"));
    expect_state(a, ORC_AGENT_DISCONNECTED, ua);
    expect_failover(a, ua, ub, "1001");
    CHECK_OK(orc_agent_stream(a, "t1", 1, "stdout", (const uint8_t *)"c1", 2));
    CHECK_OK(orc_agent_stream(a, "t2", 3, "stdout", (const uint8_t *)"lost", 4));
    CHECK_OK(orc_agent_stream(a, "t1", 1, "stderr", (const uint8_t *)"c2", 2));
    CHECK_OK(orc_agent_progress(a, "t2", 3, 10.0, NULL));

    /* 3. B: the registration lists both attempts; nothing else before agent.registered. */
    uint64_t conn = 0;
    CHECK(peer_next(&pa, 10000, &conn, NULL, NULL) == EV_CLOSE && conn == ca);
    uint64_t cb = expect_open(&pb);
    env = NULL;
    json = expect(&pb, cb, "agent.register", &env);
    if (json) check_register(json, NULL, NULL);
    CHECK(has(json, "\"inFlight\":[{\"taskId\":\"t1\",\"attempt\":1},{\"taskId\":\"t2\",\"attempt\":3}]"));
    if (json && !has(json, "\"inFlight\":[{")) fprintf(stderr, "  register: %s\n", json);
    free(json);
    expect_state(a, ORC_AGENT_CONNECTING, ub);
    check_url(a, ub, 1);
    CHECK_OK(orc_agent_stream(a, "t1", 1, "stdout", (const uint8_t *)"c3", 2));   /* still waits */
    CHECK(peer_next(&pb, 300, &conn, NULL, NULL) == EV_NONE);
    CHECK(peer_next(&pa, 0, &conn, NULL, NULL) == EV_NONE);   /* A, still listening, was not tried */

    /* 4. B keeps t1 and cancels t2 (it never leased t2 to this agent). */
    peer_send(&pb, cb, "{\"id\":\"x2\",\"type\":\"task.cancel\",\"payload\":{\"taskId\":\"t2\",\"attempt\":3,"
                       "\"reason\":\"re-assigned while this agent was away\"}}");
    send_registered(&pb, cb, env, 60000, "[\"t1\"]");
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_CANCEL, "t2", 3));
    const char *r = ev ? orc_agent_event_reason(ev, NULL) : NULL;
    CHECK(r && strcmp(r, "re-assigned while this agent was away") == 0);
    orc_agent_event_free(ev);
    expect_state(a, ORC_AGENT_REGISTERED, ub);
    CHECK_RC(orc_agent_stream(a, "t2", 3, "stdout", (const uint8_t *)"x", 1), ORC_ENOTFOUND);
    /* t1 goes on: a live chunk, then its result. */
    CHECK_OK(orc_agent_stream(a, "t1", 1, "stdout", (const uint8_t *)"c4", 2));
    CHECK_OK(orc_agent_result(a, "t1", 1, 1, "{\"exitCode\":0}", NULL));
    /* A new task on B, so that "nothing more of t1" is seen by what comes next. */
    peer_send(&pb, cb, "{\"id\":\"m3\",\"type\":\"task.assign\",\"payload\":{\"taskId\":\"t3\",\"attempt\":1,\"task\":{}}}");
    ev = next_event(a);
    CHECK(is_task_event(ev, ORC_AGENT_EVENT_TASK, "t3", 1));
    orc_agent_event_free(ev);
    CHECK_OK(orc_agent_accept(a, "t3", 1));

    static const struct { const char *type, *data; long long seq; } want[] = {
        {"stdout", "c1", 1}, {"stderr", "c2", 2}, {"stdout", "c3", 3}, {"stdout", "c4", 4}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        json = expect(&pb, cb, "task.stream", NULL);
        if (json) check_stream(json, "t1", want[i].seq, want[i].type, want[i].data);
        free(json);
    }
    json = expect(&pb, cb, "task.result", NULL);
    CHECK(has(json, "\"taskId\":\"t1\"") && has(json, "\"success\":true") && has(json, "\"result\":{\"exitCode\":0}"));
    free(json);
    json = expect(&pb, cb, "task.accepted", NULL);   /* t2's "lost" and progress never come */
    CHECK(has(json, "\"taskId\":\"t3\""));
    free(json);

    /* 5. B drops it: the third URL refuses the connection, and the agent wraps round to A. */
    CHECK_OK(orc_server_close_connection(pb.server, cb, 1011, "hub crashed"));
    expect_state(a, ORC_AGENT_DISCONNECTED, ub);
    expect_failover(a, ub, dead, "1011");
    expect_failover(a, dead, ua, "cannot connect");
    CHECK(peer_next(&pb, 10000, &conn, NULL, NULL) == EV_CLOSE && conn == cb);
    uint64_t ca2 = expect_open(&pa);
    env = NULL;
    json = expect(&pa, ca2, "agent.register", &env);
    CHECK(has(json, "\"inFlight\":[{\"taskId\":\"t3\",\"attempt\":1}]"));
    free(json);
    expect_state(a, ORC_AGENT_CONNECTING, ua);
    send_registered(&pa, ca2, env, 60000, "[\"t3\"]");
    expect_state(a, ORC_AGENT_REGISTERED, ua);
    check_url(a, ua, 0);
    CHECK_OK(orc_agent_result(a, "t3", 1, 1, NULL, NULL));
    json = expect(&pa, ca2, "task.result", NULL);
    CHECK(has(json, "\"taskId\":\"t3\""));
    free(json);
    CHECK(peer_next(&pb, 0, &conn, NULL, NULL) == EV_NONE);

    /* 6. Close: CLOSED about A is the last event; no failover after it. */
    CHECK_OK(orc_agent_close(a));
    CHECK(peer_next(&pa, 10000, &conn, NULL, NULL) == EV_CLOSE && conn == ca2);
    expect_state(a, ORC_AGENT_CLOSED, ua);
    CHECK_RC(orc_agent_next_event(a, 1000, &ev), ORC_ECLOSED);
    orc_agent_free(a);
    peer_stop(&pa);
    peer_stop(&pb);
}

int main(void) {
    orc_runtime_t *rt = NULL;
    CHECK_OK(orc_runtime_new(NULL, &rt));
    test_arguments(rt);
    test_exchange(rt);
    test_failover(rt);
    test_refused(rt);
    orc_runtime_free(rt);
    return orc_test_finish("test_agent");
}
