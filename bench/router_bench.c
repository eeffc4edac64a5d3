/* Router dispatch benchmark through the C ABI (issue 2: "Router dispatch with 10,000
 * subscriptions costs at most 1.5x dispatch with 10").
 *
 * Two routers are built in the same process:
 *   10   the ten subscriptions below (BASE): what the benchmark messages match, plus two
 *        fillers that match none of them but give the tree the same shape (a root `*` branch,
 *        several `session.<n>` children);
 *   10k  the same ten plus 9,990 realistic subscriptions that match none of the benchmark
 *        messages: agent.<id>.task.*, agent.<id>.heartbeat, session.<n>.>,
 *        tenant.<t>.agent.*.log, task.kind<i>, *.<i>.status.
 * Then the same fixed set of messages (MSGS) is published round-robin with orc_router_publish;
 * each message reaches 1 to 3 handlers, the same ones in both routers, so the only work that
 * differs per dispatch is the lookup in the larger tree (bigger literal maps, the `*` branches
 * the extra patterns add on the subjects' paths).
 *
 * Before timing, every message is published once to each router and the handler calls are
 * checked one by one against the expected subscriptions (and the extra subscriptions must see
 * nothing); after timing, the total handler calls are checked again, so the benchmark cannot
 * measure a router that does nothing.
 *
 * Output: one JSON object per line like queue_bench:
 *   router.dispatch.10k.baseline  ns per orc_router_publish, router with 10 subscriptions
 *   router.dispatch.10k           ns per orc_router_publish, router with 10,000 subscriptions
 * (bench/run compares them: ratio = baseline / 10k, target 1/1.5 = 0.67).
 * Each figure is the median of ROUNDS timed rounds, the two routers alternating.
 * Usage: router_bench [--quick] [metric-name | name-prefix]   (a full metric name selects only
 * that router's timed rounds, e.g. for callgrind; both routers are always built and verified) */
#define _GNU_SOURCE
#include <stdarg.h>
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
    fprintf(stderr, "%s failed: %s: %s\n", what, orc_err_name(rc), orc_last_error());
    exit(1);
}

static void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "router_bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

/* ------------------------------------------------------------------ subscriptions */
enum { NBASE = 10, NTOTAL = 10000, NMSGS = 8, ROUNDS_FULL = 7, ROUNDS_QUICK = 3 };

static const char *const BASE[NBASE] = {
    "agent.42.task.*",      /* 0 */
    "agent.42.heartbeat",   /* 1 */
    "agent.*.heartbeat",    /* 2 */
    "session.7.>",          /* 3 */
    "session.*.end",        /* 4 */
    "task.stream",          /* 5 */
    "task.>",               /* 6 */
    "hub.agents.register",  /* 7 */
    "*.43.status",          /* 8: filler, matches no message below */
    "session.8.>",          /* 9: filler, matches no message below */
};

/* The messages, and for each the BASE subscriptions it must reach (-1 ends the list). */
static const struct { const char *subject; int expect[4]; } MSGS[NMSGS] = {
    {"agent.42.task.run", {0, -1}},
    {"agent.42.heartbeat", {1, 2, -1}},
    {"session.7.stream.chunk", {3, -1}},
    {"session.7.end", {3, 4, -1}},
    {"task.stream", {5, 6, -1}},
    {"task.stream.chunk", {6, -1}},
    {"hub.agents.register", {7, -1}},
    {"agent.42.task.cancel", {0, -1}},
};

/* Calls per BASE subscription, and calls to any of the extra subscriptions (must stay 0). */
static uint64_t base_calls[NBASE];
static uint64_t extra_calls;

static int on_msg(void *user_data, orc_msg_t *msg) {
    (void)msg;
    ++*(uint64_t *)user_data;
    return 0;
}

static void sub(orc_router_t *r, const char *pattern, uint64_t *counter) {
    uint64_t id = 0;
    int rc = orc_router_subscribe(r, pattern, strlen(pattern), on_msg, counter, NULL, &id);
    if (rc != ORC_OK) die("orc_router_subscribe", rc);
}

/* The 9,990 extra patterns, none of which matches a subject in MSGS. */
static size_t add_extras(orc_router_t *r) {
    char p[64];
    size_t n = 0;
#define ADD(...) do { snprintf(p, sizeof p, __VA_ARGS__); sub(r, p, &extra_calls); n++; } while (0)
    for (int i = 1000; i < 4000; i++) ADD("agent.%d.task.*", i);          /* 3000 */
    for (int i = 1000; i < 3000; i++) ADD("agent.%d.heartbeat", i);       /* 2000 */
    for (int i = 1000; i < 3000; i++) ADD("session.%d.>", i);             /* 2000 */
    for (int i = 0; i < 1000; i++) ADD("tenant.%d.agent.*.log", i);       /* 1000 */
    for (int i = 0; i < 990; i++) ADD("task.kind%d", i);                  /*  990 */
    for (int i = 5000; i < 6000; i++) ADD("*.%d.status", i);              /* 1000 */
#undef ADD
    return n;
}

static orc_router_t *make_router(int extras) {
    orc_router_t *r = NULL;
    int rc = orc_router_new(&r);
    if (rc != ORC_OK) die("orc_router_new", rc);
    for (int i = 0; i < NBASE; i++) sub(r, BASE[i], &base_calls[i]);
    size_t total = NBASE + (extras ? add_extras(r) : 0);
    orc_router_stats_t st;
    memset(&st, 0, sizeof st);
    st.struct_size = sizeof st;
    rc = orc_router_stats(r, &st);
    if (rc != ORC_OK) die("orc_router_stats", rc);
    if (st.subscriptions != total || total != (size_t)(extras ? NTOTAL : NBASE))
        fail("router has %llu subscriptions, expected %zu", (unsigned long long)st.subscriptions, total);
    return r;
}

/* ------------------------------------------------------------------ checks */
static size_t expected_per_cycle(void) {
    size_t n = 0;
    for (int m = 0; m < NMSGS; m++)
        for (int k = 0; MSGS[m].expect[k] >= 0; k++) n++;
    return n;
}

static uint64_t total_calls(void) {
    uint64_t t = extra_calls;
    for (int i = 0; i < NBASE; i++) t += base_calls[i];
    return t;
}

/* Publishes each message once and checks exactly the expected handlers ran. */
static void verify(orc_router_t *r, orc_msg_t **msgs) {
    for (int m = 0; m < NMSGS; m++) {
        memset(base_calls, 0, sizeof base_calls);
        extra_calls = 0;
        orc_publish_result_t res;
        memset(&res, 0, sizeof res);
        res.struct_size = sizeof res;
        int rc = orc_router_publish(r, msgs[m], &res);
        if (rc != ORC_OK) die("orc_router_publish", rc);
        uint64_t want[NBASE] = {0};
        long nwant = 0;
        for (int k = 0; MSGS[m].expect[k] >= 0; k++) { want[MSGS[m].expect[k]] = 1; nwant++; }
        for (int i = 0; i < NBASE; i++)
            if (base_calls[i] != want[i])
                fail("%s: subscription %s called %llu times, expected %llu", MSGS[m].subject, BASE[i],
                     (unsigned long long)base_calls[i], (unsigned long long)want[i]);
        if (extra_calls != 0) fail("%s: %llu calls to subscriptions it does not match", MSGS[m].subject, (unsigned long long)extra_calls);
        if ((long)res.matched != nwant || res.failed || res.stopped || res.unhandled)
            fail("%s: result.matched %u (want %ld), failed %u, stopped %d, unhandled %d", MSGS[m].subject,
                 res.matched, nwant, res.failed, res.stopped, res.unhandled);
    }
}

/* ns per orc_router_publish over `cycles` passes through MSGS; checks every handler call. */
static double time_dispatch(orc_router_t *r, orc_msg_t **msgs, size_t cycles) {
    memset(base_calls, 0, sizeof base_calls);
    extra_calls = 0;
    double t0 = now_s();
    for (size_t c = 0; c < cycles; c++) {
        for (int m = 0; m < NMSGS; m++) {
            int rc = orc_router_publish(r, msgs[m], NULL);
            if (rc != ORC_OK) die("orc_router_publish", rc);
        }
    }
    double dt = now_s() - t0;
    if (extra_calls != 0 || total_calls() != cycles * expected_per_cycle())
        fail("timed run: %llu handler calls (%llu to non-matching subscriptions), expected %zu",
             (unsigned long long)total_calls(), (unsigned long long)extra_calls, cycles * expected_per_cycle());
    return dt / (double)(cycles * NMSGS) * 1e9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static const char *only = NULL;

/* The filter selects the metric it names exactly, else every metric it is a prefix of. */
static int wanted(const char *name) {
    if (only == NULL) return 1;
    if (strcmp(only, "router.dispatch.10k") == 0 || strcmp(only, "router.dispatch.10k.baseline") == 0)
        return strcmp(name, only) == 0;
    return strncmp(name, only, strlen(only)) == 0;
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
    size_t cycles = quick ? 25000 : 125000;   /* x 8 dispatches per cycle, per round */
    int rounds = quick ? ROUNDS_QUICK : ROUNDS_FULL;

    orc_msg_t *msgs[NMSGS];
    for (int m = 0; m < NMSGS; m++) {
        int rc = orc_msg_new(MSGS[m].subject, strlen(MSGS[m].subject), &msgs[m]);
        if (rc != ORC_OK) die("orc_msg_new", rc);
        uint64_t payload = 0x0123456789abcdefULL + (uint64_t)m;
        rc = orc_msg_set_payload(msgs[m], ORC_CONTENT_BINARY, &payload, sizeof payload);
        if (rc != ORC_OK) die("orc_msg_set_payload", rc);
    }
    int want_small = wanted("router.dispatch.10k.baseline");
    int want_large = wanted("router.dispatch.10k");
    orc_router_t *small = make_router(0);
    orc_router_t *large = make_router(1);
    verify(small, msgs);
    verify(large, msgs);

    /* Warm up both, then alternate rounds so drift on a noisy machine hits both alike. */
    time_dispatch(small, msgs, cycles / 10 + 1);
    time_dispatch(large, msgs, cycles / 10 + 1);
    double t_small[ROUNDS_FULL], t_large[ROUNDS_FULL];
    for (int k = 0; k < rounds; k++) {
        if (want_small) t_small[k] = time_dispatch(small, msgs, cycles);
        if (want_large) t_large[k] = time_dispatch(large, msgs, cycles);
    }
    if (want_small) emit("router.dispatch.10k.baseline", median(t_small, rounds), "ns/dispatch");
    if (want_large) emit("router.dispatch.10k", median(t_large, rounds), "ns/dispatch");

    orc_router_free(small);
    orc_router_free(large);
    for (int m = 0; m < NMSGS; m++) orc_msg_release(msgs[m]);
    return 0;
}
