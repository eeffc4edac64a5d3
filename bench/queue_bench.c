/* Queue benchmarks through the C ABI, each beside its baseline in the same process:
 *
 *   throughput  one producer thread, one consumer thread, messages with a 64-bit payload,
 *               single push/pop and batches of 256; baseline: a plain C ring buffer guarded by
 *               a mutex and two condition variables (below), moving the same message pointers.
 *               Messages cycle through a pool of 1024 (hot in cache, as when a producer
 *               pushes what it just built); each push hands over a reference (retain before
 *               push, release after pop) for both.
 *   handoff     push one message to a reader blocked in pop, wait until it is taken (the
 *               reader answers on a second queue), repeat; baseline: the same ping-pong over
 *               two eventfds. With the default options a reader that finds the queue empty
 *               polls for spin_us (20 us) before it sleeps; handoff.sleeping sets spin_us = 0.
 * ORC_BENCH_SPIN_US=N sets spin_us of the throughput queues (for experiments).
 *
 * Output: one JSON object per line: {"name": ..., "value": ..., "unit": ...}.
 * Usage: queue_bench [--quick] [name-prefix]   (only the metrics whose name starts with the
 * prefix, baseline included, e.g. "queue.single" for profiling one case; a trailing '$' asks for
 * exactly that name) */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include "orchestra.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, int rc) {
    fprintf(stderr, "%s failed: %s: %s\n", what, orc_err_name(rc), orc_last_error());
    exit(1);
}

/* ------------------------------------------------------------------ baseline ring */
typedef struct {
    void **slots;
    size_t cap, head, count;
    pthread_mutex_t mu;
    pthread_cond_t not_empty, not_full;
    int waiting_readers, waiting_writers;
} ring_t;

static void ring_init(ring_t *r, size_t cap) {
    r->slots = calloc(cap, sizeof(void *));
    r->cap = cap; r->head = r->count = 0;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->not_empty, NULL);
    pthread_cond_init(&r->not_full, NULL);
    r->waiting_readers = r->waiting_writers = 0;
}

static void ring_push_n(ring_t *r, void **items, size_t n) {
    pthread_mutex_lock(&r->mu);
    size_t done = 0;
    while (done < n) {
        while (r->count == r->cap) {
            r->waiting_writers++;
            pthread_cond_wait(&r->not_full, &r->mu);
            r->waiting_writers--;
        }
        while (done < n && r->count < r->cap) {
            r->slots[(r->head + r->count) % r->cap] = items[done++];
            r->count++;
        }
        if (r->waiting_readers) pthread_cond_signal(&r->not_empty);
    }
    pthread_mutex_unlock(&r->mu);
}

static size_t ring_pop_n(ring_t *r, void **out, size_t max) {
    pthread_mutex_lock(&r->mu);
    while (r->count == 0) {
        r->waiting_readers++;
        pthread_cond_wait(&r->not_empty, &r->mu);
        r->waiting_readers--;
    }
    size_t n = 0;
    while (n < max && r->count > 0) {
        out[n++] = r->slots[r->head];
        r->head = (r->head + 1) % r->cap;
        r->count--;
    }
    if (r->waiting_writers) pthread_cond_signal(&r->not_full);
    pthread_mutex_unlock(&r->mu);
    return n;
}

/* ------------------------------------------------------------------ throughput */
enum { QCAP = 4096, POOL = 1024, MAXBATCH = 256 };

/* Messages cycle through a pool, as in a real producer that pushes what it just built (hot in
 * cache); each push hands over a reference (orc_msg_retain before, orc_msg_release after the
 * pop), for the ring and the queue alike, so both move reference-counted messages the same way
 * and differ only in the queue operations. */
typedef struct {
    int use_orc;
    size_t batch;
    size_t n;
    orc_msg_t **pool;
    ring_t ring;
    orc_queue_t *q;
} tp_t;

static void *tp_producer(void *arg) {
    tp_t *t = arg;
    orc_msg_t *staged[MAXBATCH];
    for (size_t i = 0; i < t->n; i += t->batch) {
        size_t k = t->n - i < t->batch ? t->n - i : t->batch;
        for (size_t j = 0; j < k; j++) {
            staged[j] = t->pool[(i + j) % POOL];
            orc_msg_retain(staged[j]);
        }
        if (!t->use_orc) {
            ring_push_n(&t->ring, (void **)staged, k);
        } else if (k == 1) {
            int rc = orc_queue_push(t->q, staged[0]);
            if (rc != ORC_OK) die("orc_queue_push", rc);
        } else {
            size_t accepted = 0;
            while (accepted < k) {
                size_t a = 0;
                int rc = orc_queue_push_batch(t->q, &staged[accepted], k - accepted, &a);
                if (rc != ORC_OK && rc != ORC_EFULL) die("orc_queue_push_batch", rc);
                accepted += a;
            }
        }
    }
    return NULL;
}

static void *tp_consumer(void *arg) {
    tp_t *t = arg;
    orc_msg_t *got_msgs[MAXBATCH];
    size_t got = 0;
    while (got < t->n) {
        size_t c = 0;
        if (!t->use_orc) {
            c = ring_pop_n(&t->ring, (void **)got_msgs, t->batch);
        } else if (t->batch == 1) {
            int rc = orc_queue_pop(t->q, -1, &got_msgs[0]);
            if (rc != ORC_OK) die("orc_queue_pop", rc);
            c = 1;
        } else {
            int rc = orc_queue_pop_batch(t->q, got_msgs, t->batch, -1, &c);
            if (rc != ORC_OK) die("orc_queue_pop_batch", rc);
        }
        for (size_t j = 0; j < c; j++, got++) {
            if (got_msgs[j] != t->pool[got % POOL]) { fprintf(stderr, "order violated at %zu\n", got); exit(1); }
            orc_msg_release(got_msgs[j]);
        }
    }
    return NULL;
}

static double throughput(int use_orc, size_t batch, size_t n, orc_msg_t *template_msg) {
    tp_t t;
    memset(&t, 0, sizeof t);
    t.use_orc = use_orc; t.batch = batch; t.n = n;
    t.pool = malloc(POOL * sizeof *t.pool);
    for (size_t i = 0; i < POOL; i++) {
        int rc = orc_msg_clone(template_msg, &t.pool[i]);
        if (rc != ORC_OK) die("orc_msg_clone", rc);
    }
    if (use_orc) {
        orc_queue_options_t o;
        orc_queue_options_init(&o);
        o.capacity = QCAP;
        o.policy = ORC_POLICY_BLOCK;
        o.push_timeout_ms = -1;
        if (getenv("ORC_BENCH_SPIN_US")) o.spin_us = atoi(getenv("ORC_BENCH_SPIN_US"));
        int rc = orc_queue_new(&o, &t.q);
        if (rc != ORC_OK) die("orc_queue_new", rc);
    } else {
        ring_init(&t.ring, QCAP);
    }
    pthread_t p, c;
    double t0 = now_s();
    pthread_create(&c, NULL, tp_consumer, &t);
    pthread_create(&p, NULL, tp_producer, &t);
    pthread_join(p, NULL);
    pthread_join(c, NULL);
    double dt = now_s() - t0;
    if (use_orc) orc_queue_free(t.q); else free(t.ring.slots);
    for (size_t i = 0; i < POOL; i++) orc_msg_release(t.pool[i]);
    free(t.pool);
    return (double)n / dt;
}

/* ------------------------------------------------------------------ hand-off */
typedef struct {
    int use_orc;
    size_t rounds;
    int efd_ping, efd_pong;
    orc_queue_t *ping, *pong;
} ho_t;

static void *ho_echo(void *arg) {
    ho_t *h = arg;
    for (size_t i = 0; i < h->rounds; i++) {
        if (h->use_orc) {
            orc_msg_t *m = NULL;
            int rc = orc_queue_pop(h->ping, -1, &m);
            if (rc != ORC_OK) die("orc_queue_pop", rc);
            rc = orc_queue_push(h->pong, m);
            if (rc != ORC_OK) die("orc_queue_push", rc);
        } else {
            uint64_t v;
            if (read(h->efd_ping, &v, 8) != 8) { perror("read"); exit(1); }
            if (write(h->efd_pong, &v, 8) != 8) { perror("write"); exit(1); }
        }
    }
    return NULL;
}

/* spin_us < 0: the queue's default. */
static double handoff(int use_orc, size_t rounds, orc_msg_t *template_msg, int spin_us) {
    ho_t h;
    memset(&h, 0, sizeof h);
    h.use_orc = use_orc; h.rounds = rounds;
    orc_msg_t *m = NULL;
    if (use_orc) {
        orc_queue_options_t o;
        orc_queue_options_init(&o);
        if (spin_us >= 0) o.spin_us = spin_us;
        if (orc_queue_new(&o, &h.ping) != ORC_OK || orc_queue_new(&o, &h.pong) != ORC_OK) die("orc_queue_new", -1);
        int rc = orc_msg_clone(template_msg, &m);
        if (rc != ORC_OK) die("orc_msg_clone", rc);
    } else {
        h.efd_ping = eventfd(0, 0);
        h.efd_pong = eventfd(0, 0);
    }
    pthread_t echo;
    pthread_create(&echo, NULL, ho_echo, &h);
    double t0 = now_s();
    for (size_t i = 0; i < rounds; i++) {
        if (use_orc) {
            int rc = orc_queue_push(h.ping, m);
            if (rc != ORC_OK) die("orc_queue_push", rc);
            rc = orc_queue_pop(h.pong, -1, &m);
            if (rc != ORC_OK) die("orc_queue_pop", rc);
        } else {
            uint64_t v = 1;
            if (write(h.efd_ping, &v, 8) != 8) { perror("write"); exit(1); }
            if (read(h.efd_pong, &v, 8) != 8) { perror("read"); exit(1); }
        }
    }
    double dt = now_s() - t0;
    pthread_join(echo, NULL);
    if (use_orc) { orc_msg_release(m); orc_queue_free(h.ping); orc_queue_free(h.pong); }
    else { close(h.efd_ping); close(h.efd_pong); }
    return dt / (double)rounds * 1e9;   /* ns per round trip (two hand-offs) */
}

static const char *only = NULL;

static int wanted(const char *name) {
    if (only == NULL) return 1;
    size_t n = strlen(only);
    if (n > 0 && only[n - 1] == '$') return strlen(name) == n - 1 && strncmp(name, only, n - 1) == 0;
    return strncmp(name, only, n) == 0;
}

static void emit(const char *name, double value, const char *unit) {
    printf("{\"name\": \"%s\", \"value\": %.3f, \"unit\": \"%s\"}\n", name, value, unit);
    fflush(stdout);
}

int main(int argc, char **argv) {
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) quick = 1;
        else only = argv[i];
    }
    size_t n = quick ? 100000 : 1000000;
    size_t rounds = quick ? 5000 : 50000;
    orc_msg_t *tmpl = NULL;
    int rc = orc_msg_new("bench.item", 10, &tmpl);
    if (rc != ORC_OK) die("orc_msg_new", rc);
    uint64_t payload = 0x0123456789abcdefULL;
    rc = orc_msg_set_payload(tmpl, ORC_CONTENT_BINARY, &payload, sizeof payload);
    if (rc != ORC_OK) die("orc_msg_set_payload", rc);

    /* Interleave ours and the baseline so drift on a noisy machine hits both. */
    if (wanted("queue.single.baseline")) emit("queue.single.baseline", throughput(0, 1, n, tmpl), "msg/s");
    if (wanted("queue.single")) emit("queue.single", throughput(1, 1, n, tmpl), "msg/s");
    if (wanted("queue.batch256.baseline")) emit("queue.batch256.baseline", throughput(0, 256, n * 4, tmpl), "msg/s");
    if (wanted("queue.batch256")) emit("queue.batch256", throughput(1, 256, n * 4, tmpl), "msg/s");
    if (wanted("queue.handoff.baseline")) emit("queue.handoff.baseline", handoff(0, rounds, tmpl, -1), "ns/roundtrip");
    if (wanted("queue.handoff")) emit("queue.handoff", handoff(1, rounds, tmpl, -1), "ns/roundtrip");
    /* the same with polling off (spin_us = 0): the reader is asleep in the kernel, as in the
     * eventfd baseline */
    if (wanted("queue.handoff.sleeping")) emit("queue.handoff.sleeping", handoff(1, rounds, tmpl, 0), "ns/roundtrip");
    orc_msg_release(tmpl);
    return 0;
}
