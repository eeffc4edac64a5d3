/*
 * echo-client: a WebSocket client on liborchestra that echoes what it receives.
 *
 *   echo-client URL [--deflate] [--compress-threshold BYTES] [--ca FILE] [--insecure]
 *
 * For wss:// URLs the server's certificate is checked against the system's CAs and --ca FILE
 * (PEM); --insecure turns checking off (tests only).
 * Connects to URL (ws://host:port/path), sends every text and binary message it receives
 * back with the same opcode, and exits 0 after the closing handshake (whoever started it),
 * 1 if the connection failed or ended without one.
 */
#include <orchestra.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static int done = 0, exit_code = 1;

static void on_message(void *user_data, orc_conn_t *conn, int opcode, const uint8_t *data, size_t len) {
    (void)user_data;
    int rc = orc_conn_send(conn, opcode, data, len);
    if (rc < 0 && rc != ORC_ECLOSED) fprintf(stderr, "echo-client: send: %s\n", orc_last_error());
}

static void on_close(void *user_data, orc_conn_t *conn, int code, const char *reason, int clean) {
    (void)user_data; (void)conn;
    fprintf(stderr, "echo-client: closed with %d%s%s (%s)\n", code, *reason ? ": " : "", reason,
            clean ? "clean" : "not clean");
    pthread_mutex_lock(&lock);
    exit_code = clean ? 0 : 1;
    pthread_mutex_unlock(&lock);
}

static void on_state(void *user_data, orc_client_t *client, orc_client_state_t state, const char *reason) {
    (void)user_data; (void)client;
    if (state != ORC_CLIENT_CLOSED) return;
    if (*reason) fprintf(stderr, "echo-client: %s\n", reason);
    pthread_mutex_lock(&lock);
    done = 1;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv) {
    const char *url = NULL, *ca = NULL;
    int deflate = 0, insecure = 0;
    long long threshold = -1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--deflate") == 0) deflate = 1;
        else if (strcmp(argv[i], "--insecure") == 0) insecure = 1;
        else if (strcmp(argv[i], "--ca") == 0 && i + 1 < argc) ca = argv[++i];
        else if (strcmp(argv[i], "--compress-threshold") == 0 && i + 1 < argc) threshold = atoll(argv[++i]);
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: echo-client URL [--deflate] [--compress-threshold BYTES] [--ca FILE] [--insecure]\n");
            return 0;
        } else if (!url) url = argv[i];
        else { fprintf(stderr, "usage: echo-client URL [--deflate] [--compress-threshold BYTES] [--ca FILE] [--insecure]\n"); return 2; }
    }
    if (!url) { fprintf(stderr, "usage: echo-client URL [--deflate] [--compress-threshold BYTES] [--ca FILE] [--insecure]\n"); return 2; }

    orc_runtime_t *rt = NULL;
    if (orc_runtime_new(NULL, &rt) != ORC_OK) {
        fprintf(stderr, "echo-client: runtime: %s\n", orc_last_error());
        return 1;
    }
    orc_client_options_t opts;
    orc_client_options_init(&opts);
    opts.ws.deflate = deflate;
    if (threshold >= 0) opts.ws.compression_threshold = (size_t)threshold;  /* 0: compress all */
    opts.ws.ping_interval_ms = 0;
    opts.ws.max_buffered = 64u << 20;
    opts.ws.high_watermark = 16u << 20;
    opts.callbacks.on_message = on_message;
    opts.callbacks.on_close = on_close;
    opts.on_state = on_state;
    opts.tls_ca_file = ca;
    opts.tls_verify_peer = !insecure;
    orc_client_t *client = NULL;
    if (orc_client_new(rt, url, &opts, &client) != ORC_OK || orc_client_connect(client) != ORC_OK) {
        fprintf(stderr, "echo-client: %s\n", orc_last_error());
        orc_client_free(client);
        orc_runtime_free(rt);
        return 1;
    }
    pthread_mutex_lock(&lock);
    while (!done) pthread_cond_wait(&done_cond, &lock);
    int code = exit_code;
    pthread_mutex_unlock(&lock);
    orc_client_free(client);
    orc_runtime_free(rt);
    return code;
}
