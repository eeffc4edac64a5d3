/* C ABI tests of WebSocket servers, clients and connections: a server and a client of ours in
 * one process over 127.0.0.1 (callbacks and queue delivery), the HTTP hooks, broadcast,
 * send by connection id, stats, and bad arguments. */
#define _GNU_SOURCE
#include "orc_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    pthread_mutex_t lock;
    int opens, closes, messages, drains, pongs, states[5];
    int last_close_code, last_clean;
    char last_text[256];
    size_t bytes;
    uint64_t last_conn_id;
    char path[64];
} seen_t;

static seen_t server_seen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, {0}, 0, 0, {0}, 0, 0, {0}};
static seen_t client_seen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, 0, {0}, 0, 0, {0}, 0, 0, {0}};
static int freed_user_data = 0;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits up to 10 s for *counter >= want (read under the lock). */
static int wait_for(seen_t *s, const int *counter, int want) {
    int64_t end = now_ms() + 10000;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        int v = *counter;
        pthread_mutex_unlock(&s->lock);
        if (v >= want) return 1;
        if (now_ms() > end) return 0;
        usleep(1000);
    }
}

static void s_open(void *ud, orc_conn_t *c) {
    seen_t *s = ud;
    pthread_mutex_lock(&s->lock);
    s->opens++;
    s->last_conn_id = orc_conn_id(c);
    snprintf(s->path, sizeof s->path, "%s", orc_conn_path(c) ? orc_conn_path(c) : "(null)");
    pthread_mutex_unlock(&s->lock);
}

static void s_message(void *ud, orc_conn_t *c, int opcode, const uint8_t *data, size_t len) {
    seen_t *s = ud;
    pthread_mutex_lock(&s->lock);
    s->messages++;
    s->bytes += len;
    if (opcode == ORC_WS_TEXT && len < sizeof s->last_text) {
        memcpy(s->last_text, data, len);
        s->last_text[len] = 0;
    }
    pthread_mutex_unlock(&s->lock);
    if (s == &server_seen) (void)orc_conn_send(c, opcode, data, len);   /* echo */
}

static void s_close(void *ud, orc_conn_t *c, int code, const char *reason, int clean) {
    (void)c; (void)reason;
    seen_t *s = ud;
    pthread_mutex_lock(&s->lock);
    s->closes++;
    s->last_close_code = code;
    s->last_clean = clean;
    pthread_mutex_unlock(&s->lock);
}

static void s_pong(void *ud, orc_conn_t *c, uint64_t rtt) {
    (void)c;
    seen_t *s = ud;
    pthread_mutex_lock(&s->lock);
    if (rtt > 0) s->pongs++;
    pthread_mutex_unlock(&s->lock);
}

static void c_state(void *ud, orc_client_t *client, orc_client_state_t st, const char *reason) {
    (void)client; (void)reason;
    seen_t *s = ud;
    pthread_mutex_lock(&s->lock);
    if ((int)st >= 0 && (int)st < 5) s->states[st]++;
    pthread_mutex_unlock(&s->lock);
}

static void free_both(void *a, void *b) {
    (void)a; (void)b;
    freed_user_data++;
}

static int on_upgrade(void *ud, const orc_http_request_t *req, orc_http_response_t *resp) {
    (void)ud;
    for (size_t i = 0; i < req->header_count; i++) {
        if (strcasecmp(req->headers[i].name, "authorization") == 0 && strcmp(req->headers[i].value, "Bearer good") == 0)
            return 0;
    }
    static const char body[] = "missing or wrong token\n";
    resp->status = 401;
    resp->content_type = "text/plain";
    resp->body = (const uint8_t *)body;
    resp->body_len = sizeof body - 1;
    return 1;
}

static int on_http(void *ud, const orc_http_request_t *req, orc_http_response_t *resp) {
    (void)ud;
    if (strcmp(req->path, "/health") != 0) return 1;
    static const char body[] = "{\"status\":\"ok\"}";
    resp->status = 200;
    resp->content_type = "application/json";
    resp->body = (const uint8_t *)body;
    resp->body_len = sizeof body - 1;
    return 0;
}

/* A plain HTTP GET over a blocking socket; returns the whole response (malloc'd). */
static char *http_get(uint16_t port, const char *path) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return NULL; }
    char req[256];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) { close(fd); return NULL; }
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    for (;;) {
        ssize_t r = read(fd, out + len, cap - len - 1);
        if (r <= 0) break;
        len += (size_t)r;
        if (len + 1 >= cap) break;
    }
    out[len] = 0;
    close(fd);
    return out;
}

static void test_bad_arguments(orc_runtime_t *rt) {
    orc_server_options_t so;
    orc_server_t *server = (orc_server_t *)1;
    CHECK_RC(orc_server_options_init_sized(NULL, sizeof so), ORC_EINVAL);
    CHECK_RC(orc_server_options_init_sized(&so, 8), ORC_EINVAL);
    orc_server_options_init(&so);
    CHECK_RC(orc_server_new(NULL, &so, &server), ORC_EINVAL);
    CHECK(server == NULL);   /* *out is cleared before anything can fail */
    CHECK_RC(orc_server_new(rt, NULL, &server), ORC_EINVAL);
    CHECK_RC(orc_server_new(rt, &so, NULL), ORC_EINVAL);
    so.ws.low_watermark = so.ws.high_watermark + 1;
    CHECK_RC(orc_server_new(rt, &so, &server), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "low_watermark") != NULL);
    CHECK(server == NULL);
    orc_server_options_init(&so);
    so.ws.slow_consumer = (orc_slow_consumer_t)7;
    CHECK_RC(orc_server_new(rt, &so, &server), ORC_EINVAL);
    orc_server_options_init(&so);
    so.path_count = 1;   /* paths NULL */
    CHECK_RC(orc_server_new(rt, &so, &server), ORC_EINVAL);
    orc_server_options_init(&so);
    so.host = "no-such-host.invalid";
    CHECK_OK(orc_server_new(rt, &so, &server));
    CHECK_RC(orc_server_start(server), ORC_EIO);
    orc_server_free(server);
    orc_server_free(NULL);

    orc_client_t *client = NULL;
    CHECK_RC(orc_client_new(rt, "http://x/", NULL, &client), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "ws://") != NULL);
    CHECK_RC(orc_client_new(rt, NULL, NULL, &client), ORC_EINVAL);
    CHECK_RC(orc_client_new(rt, "wss://127.0.0.1:1/", NULL, &client), ORC_OK);   /* system CAs */
    orc_client_free(client);
    client = NULL;
    orc_client_options_t bad_ca;
    orc_client_options_init(&bad_ca);
    bad_ca.tls_ca_file = "/nonexistent/ca.pem";
    CHECK_RC(orc_client_new(rt, "wss://127.0.0.1:1/", &bad_ca, &client), ORC_EIO);
    CHECK(strstr(orc_last_error(), "/nonexistent/ca.pem") != NULL);
    CHECK(client == NULL);
    CHECK_RC(orc_client_new(rt, "ws://127.0.0.1:1/", NULL, &client), ORC_OK);
    CHECK_RC(orc_client_send(client, 9, (const uint8_t *)"x", 1), ORC_EINVAL);
    CHECK_RC(orc_client_send(client, ORC_WS_TEXT, NULL, 5), ORC_EINVAL);
    CHECK_RC(orc_client_close(client, 1005, NULL), ORC_EINVAL);   /* may not be sent */
    CHECK_RC(orc_client_close(client, 70000, NULL), ORC_EINVAL);
    CHECK(orc_client_state(client) == ORC_CLIENT_CONNECTING);
    CHECK(orc_client_state(NULL) == ORC_CLIENT_CLOSED);
    orc_client_free(client);
    CHECK_RC(orc_conn_send(NULL, ORC_WS_TEXT, NULL, 0), ORC_EINVAL);
    CHECK(orc_conn_id(NULL) == 0);
    CHECK(orc_conn_path(NULL) == NULL);
    CHECK(orc_msg_connection_id(NULL) == 0);
    CHECK(orc_server_port(NULL) == 0);
}

static void test_echo_hooks_and_broadcast(orc_runtime_t *rt) {
    orc_server_options_t so;
    orc_server_options_init(&so);
    so.callbacks.on_open = s_open;
    so.callbacks.on_message = s_message;
    so.callbacks.on_close = s_close;
    so.callbacks.user_data = &server_seen;
    so.on_upgrade = on_upgrade;
    so.on_http = on_http;
    so.user_data_free = free_both;
    const char *paths[] = {"/ws"};
    so.paths = paths;
    so.path_count = 1;
    orc_server_t *server = NULL;
    CHECK_OK(orc_server_new(rt, &so, &server));
    CHECK_OK(orc_server_start(server));
    CHECK_RC(orc_server_start(server), ORC_ESTATE);
    uint16_t port = orc_server_port(server);
    CHECK(port != 0);

    char *r = http_get(port, "/health");
    CHECK(r && strncmp(r, "HTTP/1.1 200 ", 13) == 0 && strstr(r, "\r\n\r\n{\"status\":\"ok\"}"));
    free(r);
    r = http_get(port, "/other");
    CHECK(r && strncmp(r, "HTTP/1.1 404 ", 13) == 0);
    free(r);

    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/ws", port);
    /* Without the token: refused with 401; no reconnect: closed. */
    orc_client_options_t co;
    orc_client_options_init(&co);
    co.callbacks.user_data = &client_seen;
    co.callbacks.on_message = s_message;
    co.callbacks.on_pong = s_pong;
    co.on_state = c_state;
    orc_client_t *client = NULL;
    CHECK_OK(orc_client_new(rt, url, &co, &client));
    CHECK_OK(orc_client_connect(client));
    CHECK(wait_for(&client_seen, &client_seen.states[ORC_CLIENT_CLOSED], 1));
    orc_client_free(client);

    orc_http_header_t auth = {"Authorization", "Bearer good"};
    co.headers = &auth;
    co.header_count = 1;
    CHECK_OK(orc_client_new(rt, url, &co, &client));
    CHECK_RC(orc_client_send(client, ORC_WS_TEXT, (const uint8_t *)"early", 5), ORC_OK);   /* offline buffer */
    CHECK_OK(orc_client_connect(client));
    CHECK(wait_for(&client_seen, &client_seen.states[ORC_CLIENT_OPEN], 1));
    CHECK(wait_for(&server_seen, &server_seen.opens, 1));
    pthread_mutex_lock(&server_seen.lock);
    CHECK(strcmp(server_seen.path, "/ws") == 0);
    uint64_t conn_id = server_seen.last_conn_id;
    pthread_mutex_unlock(&server_seen.lock);
    CHECK(orc_server_connection_count(server) == 1);

    CHECK(wait_for(&client_seen, &client_seen.messages, 1));   /* "early" echoed */
    CHECK_OK(orc_client_send(client, ORC_WS_TEXT, (const uint8_t *)"héllo", 6));
    CHECK(wait_for(&client_seen, &client_seen.messages, 2));
    pthread_mutex_lock(&client_seen.lock);
    CHECK(strcmp(client_seen.last_text, "héllo") == 0);
    pthread_mutex_unlock(&client_seen.lock);

    /* Server to client by id, and broadcast. */
    CHECK_OK(orc_server_send(server, conn_id, ORC_WS_TEXT, (const uint8_t *)"by id", 5));
    CHECK_RC(orc_server_send(server, conn_id + 1000, ORC_WS_TEXT, (const uint8_t *)"x", 1), ORC_ENOTFOUND);
    CHECK(wait_for(&client_seen, &client_seen.messages, 3));
    CHECK_OK(orc_server_broadcast(server, ORC_WS_BINARY, (const uint8_t *)"\x00\x01\x02", 3));
    CHECK(wait_for(&client_seen, &client_seen.messages, 4));
    CHECK_RC(orc_server_broadcast(server, 8, (const uint8_t *)"x", 1), ORC_EINVAL);

    CHECK_OK(orc_client_ping(client));
    CHECK(wait_for(&client_seen, &client_seen.pongs, 1));
    orc_conn_stats_t st;
    CHECK_OK(orc_client_stats(client, &st));
    CHECK(st.rtt_us > 0);
    CHECK(st.messages_in == 4);
    CHECK(st.bytes_out > 0 && st.bytes_in > 0);

    CHECK_OK(orc_client_close(client, 1000, "done"));
    CHECK(wait_for(&client_seen, &client_seen.states[ORC_CLIENT_CLOSED], 2));
    CHECK(wait_for(&server_seen, &server_seen.closes, 1));
    pthread_mutex_lock(&server_seen.lock);
    CHECK(server_seen.last_close_code == 1000 && server_seen.last_clean == 1);
    pthread_mutex_unlock(&server_seen.lock);
    CHECK_RC(orc_client_send(client, ORC_WS_TEXT, (const uint8_t *)"late", 4), ORC_ECLOSED);
    orc_client_free(client);
    CHECK_OK(orc_server_close(server, 1001, NULL));
    orc_server_free(server);
}

/* Messages and connection events delivered into a queue; replies by connection id. */
static void test_queue_delivery(orc_runtime_t *rt) {
    orc_queue_options_t qo;
    orc_queue_options_init(&qo);
    orc_queue_t *q = NULL;
    CHECK_OK(orc_queue_new(&qo, &q));
    orc_server_options_t so;
    orc_server_options_init(&so);
    so.queue = q;
    so.queue_events = 1;
    orc_server_t *server = NULL;
    CHECK_OK(orc_server_new(rt, &so, &server));
    CHECK_OK(orc_server_start(server));
    char url[64];
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/q", orc_server_port(server));
    seen_t *cs = &client_seen;
    pthread_mutex_lock(&cs->lock);
    int before = cs->messages;
    pthread_mutex_unlock(&cs->lock);
    orc_client_options_t co;
    orc_client_options_init(&co);
    co.callbacks.user_data = cs;
    co.callbacks.on_message = s_message;
    orc_client_t *client = NULL;
    CHECK_OK(orc_client_new(rt, url, &co, &client));
    CHECK_OK(orc_client_connect(client));
    for (int i = 0; i < 100; i++) {
        char b[16];
        int n = snprintf(b, sizeof b, "m%d", i);
        CHECK_OK(orc_client_send(client, ORC_WS_TEXT, (const uint8_t *)b, (size_t)n));
    }
    orc_msg_t *m = NULL;
    CHECK_OK(orc_queue_pop(q, 10000, &m));
    size_t len = 0;
    CHECK(m && strncmp(orc_msg_type(m, &len), "ws.open", len) == 0 && len == 7);
    uint64_t id = orc_msg_connection_id(m);
    CHECK(id != 0);
    orc_msg_release(m);
    int in_order = 1;
    for (int i = 0; i < 100; i++) {
        m = NULL;
        CHECK_OK(orc_queue_pop(q, 10000, &m));
        if (!m) break;
        const void *data = NULL;
        size_t n = 0;
        orc_content_type_t ct;
        CHECK_OK(orc_msg_payload(m, &data, &n, &ct));
        char want[16];
        int wn = snprintf(want, sizeof want, "m%d", i);
        if ((size_t)wn != n || memcmp(data, want, n) != 0 || ct != ORC_CONTENT_TEXT || orc_msg_connection_id(m) != id) in_order = 0;
        if (i == 99) CHECK_OK(orc_server_send(server, id, ORC_WS_TEXT, data, n));   /* reply */
        orc_msg_release(m);
    }
    CHECK(in_order);
    CHECK(wait_for(cs, &cs->messages, before + 1));
    CHECK_OK(orc_client_close(client, 4000, "bye"));
    m = NULL;
    CHECK_OK(orc_queue_pop(q, 10000, &m));
    CHECK(m && strncmp(orc_msg_type(m, &len), "ws.close", len) == 0);
    if (m) {
        const void *data = NULL;
        size_t n = 0;
        CHECK_OK(orc_msg_payload(m, &data, &n, NULL));
        CHECK(n > 0 && memmem(data, n, "\"code\":4000", 11) != NULL);
        orc_msg_release(m);
    }
    orc_client_free(client);
    orc_server_free(server);
    orc_queue_free(q);
}

int main(void) {
    orc_runtime_t *rt = NULL;
    CHECK_OK(orc_runtime_new(NULL, &rt));
    test_bad_arguments(rt);
    test_echo_hooks_and_broadcast(rt);
    test_queue_delivery(rt);
    orc_runtime_free(rt);
    CHECK(freed_user_data == 1);
    return orc_test_finish("test_ws");
}
