/* ws_loadgen: a WebSocket load generator for bench/ (bench/ws_bench.py drives it).
 *
 * One thread, epoll, non-blocking sockets and its own minimal RFC 6455 client: the HTTP
 * upgrade (Sec-WebSocket-Accept checked), masked binary (or text) frames out, unmasked server
 * frames in (fragmented messages, ping -> pong, close). No extensions.
 *
 * Modes (one JSON line of results on stdout; progress and errors on stderr):
 *   rtt         N connections (--conns), M-byte messages (--size), one message in flight per
 *               connection: send, wait for the whole echo, check it, send the next. Runs
 *               --warmup seconds unmeasured, then --duration seconds or --count round trips
 *               (whichever comes first; the smoke test checks that --count was reached).
 *               Reports round trips/s, MB/s and the latency distribution (p50/p90/p99/p99.9,
 *               from a log-linear histogram with 1/64 relative bucket width).
 *   throughput  the same with --size 1048576 and --conns 1 as defaults; reports MB/s (10^6
 *               bytes of message payload echoed per second) beside the rest.
 *   idle        opens N connections, prints {"ready": N, ...} when all are open, then keeps them
 *               open (answering pings) until stdin reaches EOF or a line arrives, or SIGINT /
 *               SIGTERM / SIGUSR1; then closes them and prints the result line.
 *
 * Every echoed message is compared with what was sent: its first 8 bytes carry the
 * connection's round-trip counter (as ASCII hex, so text frames stay UTF-8), the rest a fixed
 * random (or, for text, ASCII) pattern; a stale or corrupted echo counts as an error and the
 * exit status is 1. A masked frame is built once per connection with a random masking key; only
 * the counter's 8 bytes are re-masked per message (the key is not renewed per frame: a server
 * cannot tell, and the load generator stays cheap).
 *
 * The load generator also reports its own CPU time (getrusage) over the measured window, so
 * that a run against bench/raw_echo shows whether the load generator is what limits a result.
 *
 * Build: cc -O2 ws_loadgen.c -lcrypto (bench/run builds it through CMake as build/ws_loadgen).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { ST_CONNECTING, ST_HS_RECV, ST_OPEN, ST_CLOSED };
enum { MODE_RTT, MODE_THROUGHPUT, MODE_IDLE };

#define RBUF_SIZE (256 * 1024)
#define HS_MAX 4096
#define TAG_STDIN UINT64_MAX
#define TAG_SIGNAL (UINT64_MAX - 1)

struct conn {
    int fd;
    uint8_t state;
    uint8_t out_armed;     /* EPOLLOUT requested */
    uint8_t in_flight;     /* a message was sent and its echo is not complete */
    uint8_t pong_pending;  /* a pong waits for the current frame's write to finish */
    uint8_t closing;       /* server sent close */
    uint32_t attempts;
    /* handshake */
    char *hs;              /* request while connecting, then the response being read */
    uint32_t hs_len, hs_off;
    char accept[32];       /* expected Sec-WebSocket-Accept */
    /* outgoing frame (built once; only the stamp bytes change) */
    uint8_t *frame;
    size_t frame_len, frame_hdr, woff;
    uint8_t mask[4];
    /* incoming frame parser */
    uint8_t hdr[14];
    uint8_t hdr_have, hdr_need;
    uint8_t opcode;        /* opcode of the frame being read */
    uint8_t fin;
    uint8_t msg_opcode;    /* opcode of the data message being assembled (continuations) */
    uint64_t pay_left;     /* payload bytes of the current frame still to come */
    uint64_t msg_off;      /* payload bytes of the current data message so far */
    uint8_t ctrl[125];
    uint8_t ctrl_len;
    uint8_t pong[125];
    uint8_t pong_len;
    /* measurement */
    uint8_t stamp[8];
    uint64_t seq;
    uint64_t t_send;
};

static struct {
    int mode;
    const char *host;
    int port;
    const char *path;
    long conns;
    size_t size;
    double duration, warmup, connect_timeout;
    uint64_t count;
    int text;
    int concurrency;
    int src_addrs;
    int quiet;
    int server_pid;
} opt = {MODE_RTT, "127.0.0.1", 0, "/", 100, 64, 5.0, 0.5, 60.0, 0, 0, 64, 1, 0, 0};

static int ep;
static struct conn *conns;
static uint8_t *payload;          /* expected payload (bytes 0..7 are the stamp) */
static uint8_t rbuf[RBUF_SIZE];
static struct sockaddr_in dst;
static uint64_t errors, open_now, failed, closed_by_server, pings;
static long next_to_start, pending_connects;
static int measuring, stop_flag;
static uint64_t rt_count, rt_bytes;
static char first_error[256];

/* ---------------------------------------------------------------- histogram (nanoseconds) */
#define SUB_BITS 6
#define SUB (1u << SUB_BITS)
#define HBUCKETS ((64 - SUB_BITS) * SUB + SUB)
static uint64_t hist[HBUCKETS];
static uint64_t hist_n, hist_max, hist_sum;

static unsigned hist_index(uint64_t v) {
    if (v < SUB) return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned shift = msb - SUB_BITS;
    return (shift + 1) * SUB + (unsigned)((v >> shift) & (SUB - 1));
}
static double hist_value(unsigned i) { /* middle of bucket i */
    if (i < SUB) return i;
    unsigned shift = i / SUB - 1;
    uint64_t lo = ((uint64_t)SUB + (i % SUB)) << shift;
    return (double)lo + (double)(1ull << shift) / 2.0;
}
static void hist_add(uint64_t v) {
    hist[hist_index(v)]++;
    hist_n++;
    hist_sum += v;
    if (v > hist_max) hist_max = v;
}
static double hist_pct(double p) {
    if (!hist_n) return 0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)hist_n + 0.5);
    if (rank < 1) rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HBUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank) { double v = hist_value(i); return v > (double)hist_max ? (double)hist_max : v; }
    }
    return (double)hist_max;
}

/* ---------------------------------------------------------------- helpers */
static inline uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { /* xorshift64* */
    rng_state ^= rng_state >> 12; rng_state ^= rng_state << 25; rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static void die(const char *fmt, ...) {
    va_list ap; va_start(ap, fmt);
    fprintf(stderr, "ws_loadgen: "); vfprintf(stderr, fmt, ap); fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}
static void note_error(struct conn *c, const char *fmt, ...) {
    errors++;
    if (!first_error[0]) {
        va_list ap; va_start(ap, fmt);
        int n = snprintf(first_error, sizeof first_error, "conn %ld: ", c ? (long)(c - conns) : -1L);
        vsnprintf(first_error + n, sizeof first_error - (size_t)n, fmt, ap);
        va_end(ap);
        if (!opt.quiet) fprintf(stderr, "ws_loadgen: %s\n", first_error);
    }
}
/* first_error as a JSON string body: quotes, backslashes and control bytes become '?' */
static const char *json_safe(char *s) {
    for (char *p = s; *p; p++)
        if (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) *p = '?';
    return s;
}
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

static void ep_mod(struct conn *c, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.u64 = (uint64_t)(c - conns)};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl MOD: %s", strerror(errno));
}

static void conn_close(struct conn *c) {
    if (c->fd >= 0) {
        close(c->fd); /* also removes it from the epoll set */
        c->fd = -1;
    }
    if (c->state == ST_OPEN) open_now--;
    if (c->state == ST_CONNECTING || c->state == ST_HS_RECV) pending_connects--;
    c->state = ST_CLOSED;
    free(c->hs); c->hs = NULL;
    free(c->frame); c->frame = NULL;
}

/* ---------------------------------------------------------------- connecting */
static void conn_start(struct conn *c) {
    c->attempts++;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s (raise ulimit -n?)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (opt.src_addrs > 1) { /* spread over 127.0.0.x source addresses */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + (uint32_t)((c - conns) % opt.src_addrs));
        if (bind(fd, (struct sockaddr *)&src, sizeof src) < 0) die("bind: %s", strerror(errno));
    }
    c->fd = fd;
    c->state = ST_CONNECTING;
    pending_connects++;
    int r = connect(fd, (struct sockaddr *)&dst, sizeof dst);
    if (r < 0 && errno != EINPROGRESS) die("connect: %s", strerror(errno));
    /* the upgrade request */
    uint8_t key[16];
    for (int i = 0; i < 16; i += 8) { uint64_t v = rnd(); memcpy(key + i, &v, 8); }
    char key64[32];
    base64(key, 16, key64);
    char cat[80];
    snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key64);
    uint8_t digest[SHA_DIGEST_LENGTH];
    SHA1((const uint8_t *)cat, strlen(cat), digest);
    base64(digest, sizeof digest, c->accept);
    free(c->hs);
    c->hs = malloc(HS_MAX);
    if (!c->hs) die("out of memory");
    c->hs_len = (uint32_t)snprintf(c->hs, HS_MAX,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
        opt.path, opt.host, opt.port, key64);
    c->hs_off = 0;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u64 = (uint64_t)(c - conns)};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl ADD: %s", strerror(errno));
    c->out_armed = 1;
}

static void start_more(void) {
    while (next_to_start < opt.conns && pending_connects < opt.concurrency)
        conn_start(&conns[next_to_start++]);
}

static void connect_failed(struct conn *c, const char *why) {
    conn_close(c);
    if (c->attempts < 3) { /* e.g. a reset while the server's accept queue was full */
        conn_start(c);
        return;
    }
    failed++;
    note_error(c, "connect/handshake failed: %s", why);
}

static void build_frame(struct conn *c) {
    size_t n = opt.size, h;
    uint8_t hdr[14];
    hdr[0] = 0x80 | (opt.text ? 1 : 2);
    if (n < 126) { hdr[1] = 0x80 | (uint8_t)n; h = 2; }
    else if (n <= 0xffff) { hdr[1] = 0x80 | 126; hdr[2] = (uint8_t)(n >> 8); hdr[3] = (uint8_t)n; h = 4; }
    else { hdr[1] = 0x80 | 127; for (int i = 0; i < 8; i++) hdr[2 + i] = (uint8_t)(n >> (56 - 8 * i)); h = 10; }
    uint32_t m = (uint32_t)rnd();
    memcpy(c->mask, &m, 4);
    memcpy(hdr + h, c->mask, 4);
    h += 4;
    c->frame = malloc(h + n);
    if (!c->frame) die("out of memory");
    memcpy(c->frame, hdr, h);
    for (size_t i = 0; i < n; i++) c->frame[h + i] = payload[i] ^ c->mask[i & 3];
    c->frame_hdr = h;
    c->frame_len = h + n;
}

static void handshake_done(struct conn *c) {
    free(c->hs); c->hs = NULL;
    c->state = ST_OPEN;
    pending_connects--;
    open_now++;
    c->hdr_have = 0; c->hdr_need = 2; c->pay_left = 0; c->msg_off = 0; c->msg_opcode = 0;
    if (opt.mode != MODE_IDLE) build_frame(c);
}

/* ---------------------------------------------------------------- sending */
static void stamp(struct conn *c) {
    static const char hex[] = "0123456789abcdef";
    uint32_t v = (uint32_t)c->seq;
    for (int i = 0; i < 8; i++) c->stamp[i] = (uint8_t)hex[(v >> (28 - 4 * i)) & 15];
    size_t k = opt.size < 8 ? opt.size : 8;
    for (size_t i = 0; i < k; i++) c->frame[c->frame_hdr + i] = c->stamp[i] ^ c->mask[i & 3];
}

static void send_pong_now(struct conn *c) {
    uint8_t f[2 + 4 + 125];
    uint32_t m = (uint32_t)rnd();
    f[0] = 0x8A; f[1] = 0x80 | c->pong_len;
    memcpy(f + 2, &m, 4);
    for (int i = 0; i < c->pong_len; i++) f[6 + i] = c->pong[i] ^ f[2 + (i & 3)];
    ssize_t w = write(c->fd, f, 6u + c->pong_len); /* tiny: all or nothing in practice */
    (void)w;
    c->pong_pending = 0;
}

/* Writes what is left of the current frame; returns -1 when the connection was closed. */
static int flush_frame(struct conn *c) {
    while (c->woff < c->frame_len) {
        ssize_t w = write(c->fd, c->frame + c->woff, c->frame_len - c->woff);
        if (w < 0) {
            if (errno == EAGAIN) {
                if (!c->out_armed) { ep_mod(c, EPOLLIN | EPOLLOUT); c->out_armed = 1; }
                return 0;
            }
            if (errno == EINTR) continue;
            note_error(c, "write: %s", strerror(errno));
            conn_close(c);
            return -1;
        }
        c->woff += (size_t)w;
    }
    if (c->out_armed) { ep_mod(c, EPOLLIN); c->out_armed = 0; }
    if (c->pong_pending) send_pong_now(c);
    return 0;
}

static int send_message(struct conn *c) {
    if (stop_flag || c->closing) return 0;
    c->seq++;
    stamp(c);
    c->woff = 0;
    c->in_flight = 1;
    c->t_send = now_ns();
    return flush_frame(c);
}

/* ---------------------------------------------------------------- receiving */
static void message_done(struct conn *c) {
    if (c->msg_off != opt.size) note_error(c, "echo of %llu bytes, sent %zu", (unsigned long long)c->msg_off, opt.size);
    if (!c->in_flight) { note_error(c, "unsolicited message"); return; }
    c->in_flight = 0;
    uint64_t t = now_ns();
    if (measuring) {
        hist_add(t - c->t_send);
        rt_count++;
        rt_bytes += opt.size;
        if (opt.count && rt_count >= opt.count) stop_flag = 1;
    }
    send_message(c);
}

static int check_payload(struct conn *c, const uint8_t *p, size_t n) {
    uint64_t off = c->msg_off;
    if (off + n > opt.size) { note_error(c, "echo longer than %zu bytes", opt.size); return -1; }
    while (n && off < 8) { /* the stamp */
        if (*p != c->stamp[off]) { note_error(c, "stale or corrupted echo (counter)"); return -1; }
        p++; n--; off++;
    }
    if (n && memcmp(p, payload + off, n) != 0) { note_error(c, "corrupted echo"); return -1; }
    return 0;
}

/* Feeds received bytes through the frame parser; returns -1 when the connection was closed. */
static int feed(struct conn *c, const uint8_t *p, size_t n) {
    while (n) {
        if (c->hdr_have < c->hdr_need) { /* header bytes */
            size_t k = c->hdr_need - c->hdr_have;
            if (k > n) k = n;
            memcpy(c->hdr + c->hdr_have, p, k);
            c->hdr_have += (uint8_t)k; p += k; n -= k;
            if (c->hdr_have < c->hdr_need) return 0;
            if (c->hdr_need == 2) {
                if (c->hdr[1] & 0x80) { note_error(c, "masked server frame"); conn_close(c); return -1; }
                uint8_t l = c->hdr[1] & 0x7f;
                if (l == 126) { c->hdr_need = 4; continue; }
                if (l == 127) { c->hdr_need = 10; continue; }
                c->pay_left = l;
            } else if (c->hdr_need == 4) {
                c->pay_left = (uint64_t)c->hdr[2] << 8 | c->hdr[3];
            } else {
                uint64_t l = 0;
                for (int i = 2; i < 10; i++) l = l << 8 | c->hdr[i];
                c->pay_left = l;
            }
            c->fin = c->hdr[0] >> 7;
            c->opcode = c->hdr[0] & 0x0f;
            if (c->hdr[0] & 0x70) { note_error(c, "RSV bits set (no extension was negotiated)"); conn_close(c); return -1; }
            if (c->opcode >= 8) {
                if (c->pay_left > 125 || !c->fin) { note_error(c, "bad control frame"); conn_close(c); return -1; }
                c->ctrl_len = 0;
            } else if (c->opcode == 0) {
                if (!c->msg_opcode) { note_error(c, "continuation without a message"); conn_close(c); return -1; }
            } else {
                if (c->msg_opcode) { note_error(c, "new message inside a fragmented one"); conn_close(c); return -1; }
                if (c->opcode != (opt.text ? 1 : 2)) { note_error(c, "echo with opcode %d", c->opcode); conn_close(c); return -1; }
                c->msg_opcode = c->opcode;
                c->msg_off = 0;
            }
        }
        /* payload bytes */
        size_t k = c->pay_left < n ? (size_t)c->pay_left : n;
        if (c->opcode >= 8) {
            memcpy(c->ctrl + c->ctrl_len, p, k);
            c->ctrl_len += (uint8_t)k;
        } else if (k) {
            if (check_payload(c, p, k) < 0) { conn_close(c); return -1; }
            c->msg_off += k;
        }
        p += k; n -= k; c->pay_left -= k;
        if (c->pay_left) return 0;
        /* frame complete */
        c->hdr_have = 0; c->hdr_need = 2;
        if (c->opcode == 9) { /* ping: answer once the frame being written is out */
            pings++;
            memcpy(c->pong, c->ctrl, c->ctrl_len);
            c->pong_len = c->ctrl_len;
            c->pong_pending = 1;
            if (c->woff >= c->frame_len || !c->frame) send_pong_now(c);
        } else if (c->opcode == 8) {
            closed_by_server++;
            if (!stop_flag) note_error(c, "server closed the connection");
            conn_close(c);
            return -1;
        } else if (c->opcode < 8 && c->fin) {
            c->msg_opcode = 0;
            message_done(c);
            if (c->state != ST_OPEN) return -1;
        }
    }
    return 0;
}

static void on_readable(struct conn *c) {
    for (int loops = 0; loops < 4; loops++) {
        ssize_t r = read(c->fd, rbuf, sizeof rbuf);
        if (r > 0) {
            if (feed(c, rbuf, (size_t)r) < 0) return;
            if ((size_t)r < sizeof rbuf) return;
            continue;
        }
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (!stop_flag) note_error(c, "connection lost: %s", r == 0 ? "EOF" : strerror(errno));
        if (r == 0) closed_by_server++;
        conn_close(c);
        return;
    }
}

static void on_handshake_readable(struct conn *c) {
    ssize_t r = read(c->fd, c->hs + c->hs_len, HS_MAX - 1 - c->hs_len);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) { connect_failed(c, r == 0 ? "EOF during handshake" : strerror(errno)); return; }
    c->hs_len += (uint32_t)r;
    c->hs[c->hs_len] = 0;
    char *end = strstr(c->hs, "\r\n\r\n");
    if (!end) {
        if (c->hs_len >= HS_MAX - 1) connect_failed(c, "handshake response too long");
        return;
    }
    if (strncmp(c->hs, "HTTP/1.1 101", 12) != 0) {
        char line[80];
        snprintf(line, sizeof line, "%.*s", (int)strcspn(c->hs, "\r\n"), c->hs);
        failed++;
        note_error(c, "handshake refused: %s", line);
        conn_close(c);
        return;
    }
    char *acc = strcasestr(c->hs, "\r\nSec-WebSocket-Accept:");
    int ok = 0;
    if (acc && acc < end) {
        acc += 23;
        while (*acc == ' ') acc++;
        ok = strncmp(acc, c->accept, strlen(c->accept)) == 0;
    }
    if (!ok) { failed++; note_error(c, "bad Sec-WebSocket-Accept"); conn_close(c); return; }
    size_t extra = c->hs_len - (size_t)(end + 4 - c->hs);
    uint8_t leftover[HS_MAX];
    memcpy(leftover, end + 4, extra);
    handshake_done(c);
    ep_mod(c, EPOLLIN);
    c->out_armed = 0;
    if (extra && feed(c, leftover, extra) < 0) return;
    if (opt.mode != MODE_IDLE) send_message(c);
}

static void on_event(struct conn *c, uint32_t ev) {
    if (c->state == ST_CLOSED) return;
    if (c->state == ST_CONNECTING) {
        if (ev & (EPOLLERR | EPOLLHUP)) {
            int err = 0; socklen_t l = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            connect_failed(c, err ? strerror(err) : "hangup");
            return;
        }
        if (ev & EPOLLOUT) {
            while (c->hs_off < c->hs_len) {
                ssize_t w = write(c->fd, c->hs + c->hs_off, c->hs_len - c->hs_off);
                if (w < 0) {
                    if (errno == EAGAIN) return;
                    connect_failed(c, strerror(errno));
                    return;
                }
                c->hs_off += (uint32_t)w;
            }
            c->state = ST_HS_RECV;
            c->hs_len = 0;
            ep_mod(c, EPOLLIN);
            c->out_armed = 0;
        }
        return;
    }
    if (c->state == ST_HS_RECV) {
        if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_handshake_readable(c);
        return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        on_readable(c);
        if (c->state != ST_OPEN) return;
    }
    if ((ev & EPOLLOUT) && c->frame && c->woff < c->frame_len) flush_frame(c);
}

/* ---------------------------------------------------------------- main */
static void usage(void) {
    fprintf(stderr,
        "usage: ws_loadgen [rtt|throughput|idle] --port N [--host 127.0.0.1] [--path /]\n"
        "       [--conns N] [--size BYTES] [--duration S] [--count K] [--warmup S] [--text]\n"
        "       [--concurrency N (handshakes at once, 64)] [--src-addrs N (127.0.0.1..N)]\n"
        "       [--connect-timeout S] [--quiet] [--server-pid PID (report its CPU time)]\n");
    exit(2);
}

/* The server's user and system CPU seconds (all its threads) from /proc/PID/stat (clock ticks,
   usually 10 ms: the measured window is seconds long). Returns -1 if unreadable. */
static int server_cpu(double *user, double *sys) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", opt.server_pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p) return -1;
    unsigned long long ut = 0, st = 0;
    /* after ")": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime(14) stime(15) */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
    double hz = (double)sysconf(_SC_CLK_TCK);
    *user = (double)ut / hz;
    *sys = (double)st / hz;
    return 0;
}

static double cpu_s(const struct timeval *tv) { return (double)tv->tv_sec + (double)tv->tv_usec / 1e6; }

int main(int argc, char **argv) {
    int size_given = 0, conns_given = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT (i + 1 < argc ? argv[++i] : (usage(), ""))
        if (!strcmp(a, "rtt")) opt.mode = MODE_RTT;
        else if (!strcmp(a, "throughput")) opt.mode = MODE_THROUGHPUT;
        else if (!strcmp(a, "idle")) opt.mode = MODE_IDLE;
        else if (!strcmp(a, "--host")) opt.host = NEXT;
        else if (!strcmp(a, "--port")) opt.port = atoi(NEXT);
        else if (!strcmp(a, "--path")) opt.path = NEXT;
        else if (!strcmp(a, "--conns")) { opt.conns = atol(NEXT); conns_given = 1; }
        else if (!strcmp(a, "--size")) { opt.size = (size_t)strtoull(NEXT, NULL, 10); size_given = 1; }
        else if (!strcmp(a, "--duration")) opt.duration = atof(NEXT);
        else if (!strcmp(a, "--count")) opt.count = strtoull(NEXT, NULL, 10);
        else if (!strcmp(a, "--warmup")) opt.warmup = atof(NEXT);
        else if (!strcmp(a, "--text")) opt.text = 1;
        else if (!strcmp(a, "--concurrency")) opt.concurrency = atoi(NEXT);
        else if (!strcmp(a, "--src-addrs")) opt.src_addrs = atoi(NEXT);
        else if (!strcmp(a, "--connect-timeout")) opt.connect_timeout = atof(NEXT);
        else if (!strcmp(a, "--quiet")) opt.quiet = 1;
        else if (!strcmp(a, "--server-pid")) opt.server_pid = atoi(NEXT);
        else usage();
#undef NEXT
    }
    if (opt.mode == MODE_THROUGHPUT) {
        if (!size_given) opt.size = 1 << 20;
        if (!conns_given) opt.conns = 1;
    }
    if (opt.port <= 0 || opt.conns <= 0 || opt.concurrency <= 0 || opt.src_addrs <= 0) usage();
    if (opt.size > ((size_t)1 << 30)) die("--size too large");
    if (opt.mode == MODE_IDLE && opt.count) die("--count is for rtt/throughput");
    signal(SIGPIPE, SIG_IGN);

    /* file descriptors: one per connection plus a few */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rlim_t want = (rlim_t)opt.conns + 64;
    if (rl.rlim_cur < want) {
        rl.rlim_cur = want < rl.rlim_max ? want : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if (rl.rlim_cur < want) die("RLIMIT_NOFILE hard limit %llu < %llu (ulimit -n)", (unsigned long long)rl.rlim_max, (unsigned long long)want);
    }

    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res;
    if (getaddrinfo(opt.host, NULL, &hints, &res) != 0) die("cannot resolve %s", opt.host);
    dst = *(struct sockaddr_in *)res->ai_addr;
    dst.sin_port = htons((uint16_t)opt.port);
    freeaddrinfo(res);

    rng_state ^= (uint64_t)getpid() << 17 ^ now_ns();
    payload = malloc(opt.size ? opt.size : 1);
    if (!payload) die("out of memory");
    for (size_t i = 0; i < opt.size; i++) payload[i] = opt.text ? (uint8_t)('a' + rnd() % 26) : (uint8_t)rnd();
    conns = calloc((size_t)opt.conns, sizeof *conns);
    if (!conns) die("out of memory");
    for (long i = 0; i < opt.conns; i++) conns[i].fd = -1;

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1: %s", strerror(errno));
    int sfd = -1;
    if (opt.mode == MODE_IDLE) {
        sigset_t ss;
        sigemptyset(&ss);
        sigaddset(&ss, SIGINT); sigaddset(&ss, SIGTERM); sigaddset(&ss, SIGUSR1);
        sigprocmask(SIG_BLOCK, &ss, NULL);
        sfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_SIGNAL};
        epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev);
    }

    /* connect everything first (messages start on each connection as soon as it is open in
       rtt/throughput mode; the warm-up covers the connection phase) */
    measuring = 0;
    uint64_t t0 = now_ns();
    uint64_t connect_deadline = t0 + (uint64_t)(opt.connect_timeout * 1e9);
    start_more();
    struct epoll_event evs[512];
    while ((long)(open_now + failed) < opt.conns) {
        if (now_ns() > connect_deadline) break;
        int n = epoll_wait(ep, evs, 512, 100);
        for (int i = 0; i < n; i++) on_event(&conns[evs[i].data.u64], evs[i].events);
        start_more();
        /* a connection that drops while others are still connecting is not retried */
        if (errors && opt.mode == MODE_IDLE && failed) break;
    }
    uint64_t t_connected = now_ns();
    double connect_s = (double)(t_connected - t0) / 1e9;
    if ((long)open_now < opt.conns) {
        fprintf(stderr, "ws_loadgen: only %llu of %ld connections open after %.1f s (%s)\n",
                (unsigned long long)open_now, opt.conns, connect_s, first_error[0] ? first_error : "timeout");
        printf("{\"mode\":\"%s\",\"conns\":%ld,\"open\":%llu,\"errors\":%llu,\"first_error\":\"%s\"}\n",
               opt.mode == MODE_IDLE ? "idle" : opt.mode == MODE_RTT ? "rtt" : "throughput",
               opt.conns, (unsigned long long)open_now, (unsigned long long)(errors ? errors : 1),
               first_error[0] ? json_safe(first_error) : "connect timeout");
        return 1;
    }

    if (opt.mode == MODE_IDLE) {
        printf("{\"ready\":%ld,\"connect_s\":%.3f}\n", opt.conns, connect_s);
        fflush(stdout);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = TAG_STDIN};
        int watch_stdin = epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev) == 0;
        uint64_t dropped_before = errors;
        for (;;) {
            int n = epoll_wait(ep, evs, 512, -1);
            if (n < 0 && errno == EINTR) continue;
            int quit = 0;
            for (int i = 0; i < n; i++) {
                if (evs[i].data.u64 == TAG_STDIN || evs[i].data.u64 == TAG_SIGNAL) quit = 1;
                else on_event(&conns[evs[i].data.u64], evs[i].events);
            }
            if (quit) break;
            if (!watch_stdin && !open_now) break;
        }
        stop_flag = 1;
        uint64_t still_open = open_now;
        static const uint8_t close_frame[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
        for (long i = 0; i < opt.conns; i++)
            if (conns[i].state == ST_OPEN) {
                ssize_t w = write(conns[i].fd, close_frame, sizeof close_frame);
                (void)w;
                conn_close(&conns[i]);
            }
        printf("{\"mode\":\"idle\",\"conns\":%ld,\"connect_s\":%.3f,\"open_at_end\":%llu,"
               "\"dropped\":%llu,\"pings\":%llu,\"errors\":%llu}\n",
               opt.conns, connect_s, (unsigned long long)still_open,
               (unsigned long long)(errors - dropped_before), (unsigned long long)pings,
               (unsigned long long)errors);
        return errors ? 1 : 0;
    }

    /* warm-up: the load runs unmeasured */
    uint64_t warm_end = t_connected + (uint64_t)(opt.warmup * 1e9);
    while (now_ns() < warm_end && open_now) {
        int n = epoll_wait(ep, evs, 512, 10);
        for (int i = 0; i < n; i++) on_event(&conns[evs[i].data.u64], evs[i].events);
    }
    /* measured window */
    struct rusage ru0, ru1;
    double su0 = 0, ss0 = 0, su1 = 0, ss1 = 0;
    int have_server = opt.server_pid > 0 && server_cpu(&su0, &ss0) == 0;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t m0 = now_ns();
    uint64_t m_end = m0 + (uint64_t)(opt.duration * 1e9); /* with --count: whichever comes first */
    measuring = 1;
    while (!stop_flag && open_now) {
        int n = epoll_wait(ep, evs, 512, 10);
        for (int i = 0; i < n; i++) on_event(&conns[evs[i].data.u64], evs[i].events);
        if (now_ns() >= m_end) break;
    }
    uint64_t m1 = now_ns();
    getrusage(RUSAGE_SELF, &ru1);
    if (have_server) have_server = server_cpu(&su1, &ss1) == 0;
    measuring = 0;
    stop_flag = 1;
    uint64_t lost = (uint64_t)opt.conns - open_now;
    static const uint8_t close_frame[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
    for (long i = 0; i < opt.conns; i++)
        if (conns[i].state == ST_OPEN) {
            if (!conns[i].in_flight || conns[i].woff >= conns[i].frame_len) {
                ssize_t w = write(conns[i].fd, close_frame, sizeof close_frame);
                (void)w;
            }
            conn_close(&conns[i]);
        }

    double secs = (double)(m1 - m0) / 1e9;
    double user = cpu_s(&ru1.ru_utime) - cpu_s(&ru0.ru_utime);
    double sys = cpu_s(&ru1.ru_stime) - cpu_s(&ru0.ru_stime);
    double rps = secs > 0 ? (double)rt_count / secs : 0;
    char server_json[256] = "";
    if (have_server) {
        double su = su1 - su0, ss = ss1 - ss0;
        snprintf(server_json, sizeof server_json,
                 ",\"server_user_s\":%.3f,\"server_sys_s\":%.3f,\"server_cpu_us_per_rt\":%.3f,\"server_user_us_per_rt\":%.3f",
                 su, ss, rt_count ? (su + ss) * 1e6 / (double)rt_count : 0, rt_count ? su * 1e6 / (double)rt_count : 0);
    }
    printf("{\"mode\":\"%s\",\"conns\":%ld,\"size\":%zu,\"text\":%s,\"seconds\":%.4f,\"connect_s\":%.3f,"
           "\"round_trips\":%llu,\"rtt_per_s\":%.1f,\"mb_per_s\":%.2f,"
           "\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,\"mean_us\":%.2f,"
           "\"loadgen_user_s\":%.4f,\"loadgen_sys_s\":%.4f,\"loadgen_cpu_us_per_rt\":%.3f,"
           "\"lost\":%llu,\"pings\":%llu,\"errors\":%llu,\"first_error\":\"%s\"%s}\n",
           opt.mode == MODE_RTT ? "rtt" : "throughput", opt.conns, opt.size, opt.text ? "true" : "false",
           secs, connect_s, (unsigned long long)rt_count, rps, secs > 0 ? (double)rt_bytes / secs / 1e6 : 0,
           hist_pct(50) / 1e3, hist_pct(90) / 1e3, hist_pct(99) / 1e3, hist_pct(99.9) / 1e3,
           (double)hist_max / 1e3, hist_n ? (double)hist_sum / (double)hist_n / 1e3 : 0,
           user, sys, rt_count ? (user + sys) * 1e6 / (double)rt_count : 0,
           (unsigned long long)lost, (unsigned long long)pings, (unsigned long long)errors, json_safe(first_error), server_json);
    return errors || !rt_count ? 1 : 0;
}
