/* raw_echo: the cheapest WebSocket echo server we could write, the ceiling against which
 * bench/ws_loadgen is measured (if the load generator saturates its core against this server,
 * the load generator, not the server, limits the result).
 *
 * One thread, epoll (level-triggered), non-blocking sockets. It answers the HTTP upgrade
 * (Sec-WebSocket-Key -> Sec-WebSocket-Accept, nothing else is checked) and then echoes frames
 * as a stream: each client frame header becomes a server frame header with the same FIN,
 * opcode and length (no mask), and payload bytes are unmasked as they arrive and written
 * straight back, so a message is never buffered whole and fragmentation is preserved. A ping
 * is answered by a pong with the same payload, a client pong is dropped, a close is echoed
 * and the connection closed. No UTF-8 check, no size limit, no extensions. When a write would
 * block, the rest is kept and the connection is not read until it has drained.
 *
 * usage: raw_echo --port N [--host 127.0.0.1] [--corrupt-every N]
 *
 * --corrupt-every N flips one payload bit in every Nth data frame: for the smoke test that
 * checks that ws_loadgen notices a wrong echo (bench/ws_bench.py --smoke).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF_SIZE (256 * 1024)
#define HS_MAX 8192

struct conn {
    int fd;
    uint8_t open;         /* handshake done */
    uint8_t closing;      /* close echoed: close once the output has drained */
    uint8_t drop;         /* current frame is not echoed (a client pong) */
    uint8_t in_payload;   /* header done, payload bytes pending */
    uint8_t corrupt;      /* --corrupt-every: flip a bit of this frame's payload */
    uint8_t opcode;
    uint8_t hdr_have, hdr_need;
    uint8_t hdr[14];
    uint8_t mask[4];
    uint32_t mask_pos;
    uint64_t pay_left;
    char *hs;             /* request bytes until the handshake is done */
    uint32_t hs_len;
    uint8_t *out;         /* output that did not fit in the socket */
    size_t out_len, out_off, out_cap;
};

static int ep;
static uint8_t rbuf[RBUF_SIZE];
static uint8_t obuf[RBUF_SIZE + 64];
static volatile sig_atomic_t stop;
static unsigned long corrupt_every, data_frames;

static void on_signal(int s) { (void)s; stop = 1; }

static void base64(const uint8_t *in, size_t n, char *out) {
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0, o = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63]; out[o++] = t[(v >> 6) & 63]; out[o++] = t[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = t[v >> 18]; out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = 0;
}

static void conn_free(struct conn *c) {
    close(c->fd);
    free(c->hs);
    free(c->out);
    free(c);
}

static void ep_set(struct conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes out[]; what does not fit is kept in c->out. Returns -1 if the connection died. */
static int send_bytes(struct conn *c, const uint8_t *p, size_t n) {
    if (c->out_len == c->out_off) {
        while (n) {
            ssize_t w = write(c->fd, p, n);
            if (w < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN) break;
                return -1;
            }
            p += w; n -= (size_t)w;
        }
        if (!n) return 0;
        c->out_len = c->out_off = 0;
        ep_set(c, EPOLLOUT); /* stop reading until drained */
    }
    if (c->out_len + n > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 65536;
        while (cap < c->out_len + n) cap *= 2;
        uint8_t *b = realloc(c->out, cap);
        if (!b) return -1;
        c->out = b; c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    return 0;
}

static inline void unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4], uint32_t pos) {
    size_t i = 0;
    while (i < n && ((pos + i) & 3)) { dst[i] = src[i] ^ mask[(pos + i) & 3]; i++; }
    uint32_t m32;
    memcpy(&m32, mask, 4);
    uint64_t m64 = (uint64_t)m32 << 32 | m32;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= m64;
        memcpy(dst + i, &v, 8);
    }
    for (; i < n; i++) dst[i] = src[i] ^ mask[(pos + i) & 3];
}

/* Turns client frames in p[0..n) into server frames; returns -1 to drop the connection. */
static int echo_frames(struct conn *c, const uint8_t *p, size_t n) {
    size_t o = 0;
    while (n || (c->in_payload && !c->pay_left)) {
        if (!c->in_payload) { /* header: 2 bytes, then the extended length and the mask */
            size_t k = c->hdr_need - c->hdr_have;
            if (k > n) k = n;
            memcpy(c->hdr + c->hdr_have, p, k);
            c->hdr_have += (uint8_t)k; p += k; n -= k;
            if (c->hdr_have < c->hdr_need) break;
            uint8_t l = c->hdr[1] & 0x7f;
            if (c->hdr_need == 2) {
                if (!(c->hdr[1] & 0x80)) return -1; /* client frames are masked */
                c->hdr_need = l == 126 ? 8 : l == 127 ? 14 : 6;
                continue;
            }
            size_t h = 2;
            uint64_t len = l;
            if (l == 126) { len = (uint64_t)c->hdr[2] << 8 | c->hdr[3]; h = 4; }
            else if (l == 127) { len = 0; for (int i = 2; i < 10; i++) len = len << 8 | c->hdr[i]; h = 10; }
            memcpy(c->mask, c->hdr + h, 4);
            c->mask_pos = 0;
            c->pay_left = len;
            c->opcode = c->hdr[0] & 0x0f;
            c->drop = c->opcode == 0xA;
            c->corrupt = c->opcode < 8 && len && corrupt_every && ++data_frames % corrupt_every == 0;
            if (!c->drop) { /* the same header without the mask bit and key */
                obuf[o] = c->opcode == 0x9 ? (uint8_t)((c->hdr[0] & 0xf0) | 0xA) : c->hdr[0];
                obuf[o + 1] = l;
                memcpy(obuf + o + 2, c->hdr + 2, h - 2);
                o += h;
            }
            c->hdr_have = 0; c->hdr_need = 2;
            c->in_payload = 1;
        }
        size_t k = c->pay_left < n ? (size_t)c->pay_left : n;
        if (!c->drop) {
            unmask(obuf + o, p, k, c->mask, c->mask_pos);
            if (c->corrupt && k) { obuf[o + k - 1] ^= 0x10; c->corrupt = 0; }
            o += k;
        }
        c->mask_pos += (uint32_t)k;
        c->pay_left -= k; p += k; n -= k;
        if (!c->pay_left) {
            c->in_payload = 0;
            if (c->opcode == 0x8) { c->closing = 1; break; } /* nothing after a close */
        }
    }
    if (o && send_bytes(c, obuf, o) < 0) return -1;
    return 0;
}

static int handshake(struct conn *c) {
    if (!c->hs) { c->hs = malloc(HS_MAX); if (!c->hs) return -1; }
    ssize_t r = read(c->fd, c->hs + c->hs_len, HS_MAX - 1 - c->hs_len);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    if (r <= 0) return -1;
    c->hs_len += (uint32_t)r;
    c->hs[c->hs_len] = 0;
    char *end = strstr(c->hs, "\r\n\r\n");
    if (!end) return c->hs_len >= HS_MAX - 1 ? -1 : 0;
    char *key = strcasestr(c->hs, "\r\nSec-WebSocket-Key:");
    if (!key || key > end) return -1;
    key += 20;
    while (*key == ' ') key++;
    size_t klen = strcspn(key, " \r\n");
    char cat[128];
    if (klen > 64) return -1;
    memcpy(cat, key, klen);
    memcpy(cat + klen, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
    uint8_t digest[SHA_DIGEST_LENGTH];
    SHA1((const uint8_t *)cat, klen + 36, digest);
    char acc[32];
    base64(digest, sizeof digest, acc);
    char resp[256];
    int rl = snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
    c->open = 1;
    c->hdr_have = 0; c->hdr_need = 2;
    if (send_bytes(c, (const uint8_t *)resp, (size_t)rl) < 0) return -1;
    size_t used = (size_t)(end + 4 - c->hs), extra = c->hs_len - used;
    int ret = 0;
    if (extra) {
        uint8_t tmp[HS_MAX];
        memcpy(tmp, end + 4, extra);
        ret = echo_frames(c, tmp, extra);
    }
    free(c->hs); c->hs = NULL;
    return ret;
}

static int on_readable(struct conn *c) {
    if (!c->open) return handshake(c);
    for (int loops = 0; loops < 4; loops++) {
        ssize_t r = read(c->fd, rbuf, sizeof rbuf);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
        if (r <= 0) return -1;
        if (echo_frames(c, rbuf, (size_t)r) < 0) return -1;
        if (c->closing && c->out_off == c->out_len) return -1; /* close echoed */
        if (c->out_off != c->out_len || (size_t)r < sizeof rbuf) return 0;
    }
    return 0;
}

static int on_writable(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t w = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (w < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return 0;
            return -1;
        }
        c->out_off += (size_t)w;
    }
    c->out_off = c->out_len = 0;
    if (c->out_cap > (1u << 20)) { free(c->out); c->out = NULL; c->out_cap = 0; }
    if (c->closing) return -1;
    ep_set(c, EPOLLIN);
    return 0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--corrupt-every")) corrupt_every = strtoul(argv[i + 1], NULL, 10);
    }
    if (port <= 0) { fprintf(stderr, "usage: raw_echo --port N [--host H] [--corrupt-every N]\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { fprintf(stderr, "raw_echo: bad host %s\n", host); return 2; }
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
        perror("raw_echo: bind/listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    struct epoll_event evs[256];
    while (!stop) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) { if (errno == EINTR) continue; perror("epoll_wait"); return 1; }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (!c) {
                for (int k = 0; k < 64; k++) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    if (!nc) { close(fd); continue; }
                    nc->fd = fd;
                    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
                }
                continue;
            }
            int r = 0;
            if (evs[i].events & EPOLLOUT) r = on_writable(c);
            else if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) r = on_readable(c);
            if (r < 0) conn_free(c);
        }
    }
    return 0;
}
