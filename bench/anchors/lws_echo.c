/* lws_echo: a WebSocket echo server on libwebsockets (Debian's libwebsockets-dev, 4.1.6), an
 * anchor for bench/ws_bench.py.
 *
 *   lws_echo --port N [--host 127.0.0.1] [--libuv] [--rx-buffer BYTES]
 *
 * Default event loop: lws's own poll() loop. --libuv: lws's libuv backend (Debian ships it as
 * the evlib plugin libwebsockets-evlib_uv.so, loaded by lws_create_context; the context fails
 * to be created if the plugin is missing). The loop in use is printed on stderr.
 *
 * Echo: every message (text or binary, fragmented or not) is collected whole, up to 64 MiB,
 * queued, and sent back as one message of the same type when the connection is writable; a
 * message larger than 64 KiB goes out as 64 KiB fragments, one lws_write per WRITEABLE
 * callback (the way lws asks large messages to be written). No permessage-deflate, no pings
 * from the server. Settings otherwise lws's defaults; --rx-buffer sets the protocol's
 * rx_buffer_size (0 = lws's default, 4096 bytes; lws allocates it per connection).
 */
#include <libwebsockets.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGE (64u << 20)
#define TX_CHUNK 65536

struct msg {
    struct msg *next;
    size_t len, cap, sent;
    int binary;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the payload */
};

struct pss {
    struct msg *head, *tail; /* messages waiting to be echoed */
    struct msg *rx;          /* message being received */
};

static volatile int interrupted;

static void on_signal(int s) { (void)s; interrupted = 1; }

static struct msg *msg_grow(struct msg *m, size_t need) {
    size_t cap = m ? m->cap : 0;
    if (m && cap >= need) return m;
    size_t ncap = cap ? cap : 256;
    while (ncap < need) ncap *= 2;
    struct msg *n = realloc(m, sizeof *n + LWS_PRE + ncap);
    if (!n) return NULL;
    if (!m) { n->len = 0; n->sent = 0; n->next = NULL; }
    n->cap = ncap;
    return n;
}

static int callback_echo(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len) {
    struct pss *pss = user;
    switch (reason) {
    case LWS_CALLBACK_ESTABLISHED:
        memset(pss, 0, sizeof *pss);
        break;
    case LWS_CALLBACK_RECEIVE: {
        if (lws_is_first_fragment(wsi) && pss->rx) pss->rx->len = 0;
        size_t have = pss->rx ? pss->rx->len : 0;
        if (have + len > MAX_MESSAGE) return -1;
        struct msg *m = msg_grow(pss->rx, have + len);
        if (!m) return -1;
        pss->rx = m;
        if (lws_is_first_fragment(wsi)) m->binary = lws_frame_is_binary(wsi);
        memcpy(m->buf + LWS_PRE + have, in, len);
        m->len = have + len;
        if (lws_is_final_fragment(wsi)) {
            m->sent = 0;
            m->next = NULL;
            if (pss->tail) pss->tail->next = m; else pss->head = m;
            pss->tail = m;
            pss->rx = NULL;
            lws_callback_on_writable(wsi);
        }
        break;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        struct msg *m = pss->head;
        if (!m) break;
        size_t n = m->len - m->sent;
        if (n > TX_CHUNK) n = TX_CHUNK;
        int start = m->sent == 0, end = m->sent + n == m->len;
        int flags = lws_write_ws_flags(m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT, start, end);
        /* lws_write may write into the LWS_PRE bytes before the pointer: for a later
           fragment those are payload bytes already sent, so they can be overwritten */
        if (lws_write(wsi, m->buf + LWS_PRE + m->sent, n, (enum lws_write_protocol)flags) < (int)n) return -1;
        m->sent += n;
        if (end) {
            pss->head = m->next;
            if (!pss->head) pss->tail = NULL;
            free(m);
        }
        if (pss->head) lws_callback_on_writable(wsi);
        break;
    }
    case LWS_CALLBACK_CLOSED:
        while (pss->head) { struct msg *m = pss->head; pss->head = m->next; free(m); }
        pss->tail = NULL;
        free(pss->rx);
        pss->rx = NULL;
        break;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

int main(int argc, char **argv) {
    int port = 0, libuv = 0;
    size_t rx_buffer = 0;
    const char *host = "127.0.0.1";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc) port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc) host = argv[++i];
        else if (!strcmp(argv[i], "--rx-buffer") && i + 1 < argc) rx_buffer = (size_t)atol(argv[++i]);
        else if (!strcmp(argv[i], "--libuv")) libuv = 1;
        else { fprintf(stderr, "usage: lws_echo --port N [--host H] [--libuv] [--rx-buffer BYTES]\n"); return 2; }
    }
    if (port <= 0) { fprintf(stderr, "lws_echo: --port is required\n"); return 2; }

    struct lws_protocols protocols[] = {
        {"echo", callback_echo, sizeof(struct pss), rx_buffer, 0, NULL, TX_CHUNK},
        {NULL, NULL, 0, 0, 0, NULL, 0},
    };
    lws_set_log_level(LLL_ERR | LLL_WARN, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = port;
    info.iface = host;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    if (libuv) info.options |= LWS_SERVER_OPTION_LIBUV;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    if (libuv) {
        /* under libuv, lws_service() runs the loop; let the signals end the process */
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
    }
    struct lws_context *ctx = lws_create_context(&info);
    if (!ctx) { fprintf(stderr, "lws_echo: lws_create_context failed%s\n", libuv ? " (libuv evlib plugin missing?)" : ""); return 1; }
    fprintf(stderr, "lws_echo: libwebsockets %s, event loop %s, port %d\n", lws_get_library_version(), libuv ? "libuv" : "poll", port);
    while (!interrupted)
        if (lws_service(ctx, 0) < 0 || libuv) break;
    lws_context_destroy(ctx);
    return 0;
}
