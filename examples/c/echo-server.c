/*
 * echo-server: a WebSocket echo server on liborchestra.
 *
 *   echo-server --port N [--host H] [--deflate] [--compress-threshold BYTES] [--max-size BYTES]
 *               [--tls-cert F --tls-key F]
 *
 * Echoes every text and binary message unchanged (pings are answered by the library) until
 * SIGTERM or SIGINT, then closes every connection with 1001 and exits 0. Prints
 * "listening on HOST:PORT" once it accepts connections (with --port 0, the port chosen).
 */
#include <orchestra.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested = 0;

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

/* Runs on the I/O thread: send the message straight back with the same opcode. */
static void on_message(void *user_data, orc_conn_t *conn, int opcode, const uint8_t *data, size_t len) {
    (void)user_data;
    int rc = orc_conn_send(conn, opcode, data, len);
    if (rc < 0 && rc != ORC_ECLOSED)
        fprintf(stderr, "echo-server: send on connection %llu: %s\n",
                (unsigned long long)orc_conn_id(conn), orc_last_error());
}

static void usage(FILE *to) {
    fprintf(to, "usage: echo-server --port N [--host H] [--deflate] [--compress-threshold BYTES]\n"
                "                   [--max-size BYTES]\n"
                "                   [--tls-cert FILE --tls-key FILE]\n");
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = -1;
    int deflate = 0;
    long long max_message = 0, threshold = -1;
    const char *cert = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--port") == 0 && v) { char *end; port = strtol(v, &end, 10); if (*end || port < 0 || port > 65535) port = -2; i++; }
        else if (strcmp(a, "--host") == 0 && v) { host = v; i++; }
        else if (strcmp(a, "--deflate") == 0) deflate = 1;
        else if ((strcmp(a, "--max-size") == 0 || strcmp(a, "--max-message") == 0) && v) { max_message = atoll(v); i++; }
        else if (strcmp(a, "--compress-threshold") == 0 && v) { threshold = atoll(v); i++; }
        else if (strcmp(a, "--tls-cert") == 0 && v) { cert = v; i++; }
        else if (strcmp(a, "--tls-key") == 0 && v) { key = v; i++; }
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { usage(stdout); return 0; }
        else { fprintf(stderr, "echo-server: unknown or incomplete argument %s\n", a); usage(stderr); return 2; }
    }
    if (port < 0) { fprintf(stderr, "echo-server: --port 0..65535 is required\n"); usage(stderr); return 2; }
    if ((cert == NULL) != (key == NULL)) {
        fprintf(stderr, "echo-server: --tls-cert and --tls-key go together\n");
        return 2;
    }

    /* Block the signals in every thread (the runtime's I/O thread inherits this mask) and wait
     * for them here with sigsuspend. */
    sigset_t mask, old;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    orc_runtime_t *rt = NULL;
    if (orc_runtime_new(NULL, &rt) != ORC_OK) {
        fprintf(stderr, "echo-server: runtime: %s\n", orc_last_error());
        return 1;
    }
    orc_server_options_t opts;
    orc_server_options_init(&opts);
    opts.host = host;
    opts.port = (uint16_t)port;
    opts.ws.deflate = deflate;
    if (threshold >= 0) opts.ws.compression_threshold = (size_t)threshold;  /* 0: compress all */
    opts.ws.ping_interval_ms = 0;           /* an echo server answers pings; it sends none */
    if (max_message > 0) {
        opts.ws.max_message_size = (size_t)max_message;
        opts.ws.max_frame_size = (size_t)max_message;
    }
    opts.ws.max_buffered = 64u << 20;       /* echoing 16 MiB messages to a slow reader */
    opts.ws.high_watermark = 16u << 20;
    opts.callbacks.on_message = on_message;
    opts.tls_cert_file = cert;               /* wss when both are given */
    opts.tls_key_file = key;

    orc_server_t *server = NULL;
    if (orc_server_new(rt, &opts, &server) != ORC_OK || orc_server_start(server) != ORC_OK) {
        fprintf(stderr, "echo-server: %s\n", orc_last_error());
        orc_server_free(server);
        orc_runtime_free(rt);
        return 1;
    }
    printf("listening on %s:%u%s\n", host, (unsigned)orc_server_port(server), cert ? " (wss)" : "");
    fflush(stdout);

    while (!stop_requested) sigsuspend(&old);

    orc_server_close(server, 1001, "server shutting down");
    /* Give closing handshakes a moment, then stop. */
    for (int i = 0; i < 100 && orc_server_connection_count(server) > 0; i++) usleep(10000);
    orc_server_free(server);
    orc_runtime_free(rt);
    return 0;
}
