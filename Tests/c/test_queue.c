/* C ABI tests of the message queue: policies, lanes, TTL, batches, readiness fd, blocking
 * pops and pushes woken by push and close (pthreads), fail, stats, drop callbacks, NULL args. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include "orc_test.h"

static orc_msg_t *new_msg(int priority) {
    orc_msg_t *m = NULL;
    CHECK_OK(orc_msg_new("test.msg", 8, &m));
    if (m && priority >= 0) CHECK_OK(orc_msg_set_priority(m, priority));
    return m;
}

static orc_queue_t *new_queue(size_t capacity, orc_queue_policy_t policy, int64_t push_timeout_ms) {
    orc_queue_options_t o;
    orc_queue_options_init(&o);
    o.capacity = capacity;
    o.policy = policy;
    o.push_timeout_ms = push_timeout_ms;
    o.name = "test";
    orc_queue_t *q = NULL;
    CHECK_OK(orc_queue_new(&o, &q));
    return q;
}

static int readable(int fd) {
    struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* Drop-callback recorder. */
struct drops { int n; int reasons[16]; orc_msg_t *msgs[16]; int freed; };
static void on_drop(void *ud, orc_msg_t *msg, orc_drop_reason_t reason) {
    struct drops *d = ud;
    if (d->n < 16) { d->reasons[d->n] = (int)reason; d->msgs[d->n] = msg; }
    d->n++;
}
static void on_free(void *ud) { ((struct drops *)ud)->freed++; }

static void test_options_and_nulls(void) {
    orc_queue_options_t o;
    orc_queue_options_init(&o);
    CHECK(o.struct_size == sizeof o);
    CHECK(o.capacity == 65536);
    CHECK(o.policy == ORC_POLICY_BLOCK);
    CHECK(o.push_timeout_ms < 0);
    CHECK_RC(orc_queue_options_init_sized(NULL, sizeof o), ORC_EINVAL);
    CHECK_RC(orc_queue_options_init_sized(&o, 4), ORC_EINVAL);

    orc_queue_t *q = NULL;
    CHECK_RC(orc_queue_new(NULL, NULL), ORC_EINVAL);
    orc_queue_options_t bad;
    memset(&bad, 0, sizeof bad);
    CHECK_RC(orc_queue_new(&bad, &q), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "orc_queue_options_init") != NULL);
    CHECK(q == NULL);
    orc_queue_options_init(&o);
    o.policy = (orc_queue_policy_t)7;
    CHECK_RC(orc_queue_new(&o, &q), ORC_EINVAL);
    orc_queue_options_init(&o);
    o.capacity = (size_t)-1;
    CHECK_RC(orc_queue_new(&o, &q), ORC_EINVAL);

    CHECK_OK(orc_queue_new(NULL, &q));
    orc_msg_t *out = NULL;
    CHECK_RC(orc_queue_push(NULL, NULL), ORC_EINVAL);
    CHECK_RC(orc_queue_push(q, NULL), ORC_EINVAL);
    CHECK_RC(orc_queue_pop(q, 0, NULL), ORC_EINVAL);
    CHECK_RC(orc_queue_pop(NULL, 0, &out), ORC_EINVAL);
    CHECK_RC(orc_queue_pop(q, 0, &out), ORC_EAGAIN);
    CHECK(out == NULL);
    CHECK_RC(orc_queue_pop(q, 5, &out), ORC_ETIMEDOUT);
    size_t count = 99;
    orc_msg_t *buf[4];
    CHECK_RC(orc_queue_pop_batch(q, buf, 0, 0, &count), ORC_EINVAL);
    CHECK(count == 0);
    CHECK_RC(orc_queue_pop_batch(q, NULL, 4, 0, &count), ORC_EINVAL);
    CHECK_RC(orc_queue_pop_batch(q, buf, 4, 0, NULL), ORC_EINVAL);
    CHECK_RC(orc_queue_fd(q, NULL), ORC_EINVAL);
    CHECK_RC(orc_queue_fail(q, 1, NULL, 3), ORC_EINVAL);
    CHECK_RC(orc_queue_fail(q, 1, "\xff", 1), ORC_EINVAL);
    CHECK_RC(orc_queue_set_drop_callback(q, NULL, NULL, free), ORC_EINVAL);
    CHECK_RC(orc_queue_stats(q, NULL), ORC_EINVAL);
    orc_queue_stats_t st;
    st.struct_size = 8;
    CHECK_RC(orc_queue_stats(q, &st), ORC_EINVAL);
    CHECK(orc_queue_depth(NULL) == 0);
    CHECK_RC(orc_queue_close(NULL), ORC_EINVAL);
    orc_queue_free(NULL);
    orc_queue_free(q);
}

static void test_lanes_and_fifo(void) {
    orc_queue_t *q = new_queue(0, ORC_POLICY_BLOCK, -1);
    orc_msg_t *low = new_msg(0), *n1 = new_msg(-1), *crit = new_msg(3), *n2 = new_msg(1), *high = new_msg(2);
    orc_msg_t *order[] = { crit, high, n1, n2, low };
    CHECK_OK(orc_queue_push(q, low));
    CHECK_OK(orc_queue_push(q, n1));
    CHECK_OK(orc_queue_push(q, crit));
    CHECK_OK(orc_queue_push(q, n2));
    CHECK_OK(orc_queue_push(q, high));
    CHECK(orc_queue_depth(q) == 5);
    for (int i = 0; i < 5; i++) {
        orc_msg_t *m = NULL;
        CHECK_OK(orc_queue_pop(q, 0, &m));
        CHECK(m == order[i]);
        orc_msg_release(m);
    }
    orc_queue_stats_t st;
    st.struct_size = sizeof st;
    CHECK_OK(orc_queue_stats(q, &st));
    CHECK(st.pushed == 5 && st.popped == 5 && st.depth == 0 && st.depth_high_water == 5 && st.wait_count == 5);
    orc_queue_free(q);
}

static void test_policies(void) {
    /* reject: the caller keeps the message */
    orc_queue_t *q = new_queue(2, ORC_POLICY_REJECT, 0);
    orc_msg_t *a = new_msg(-1), *b = new_msg(-1), *c = new_msg(-1);
    CHECK_OK(orc_queue_push(q, a));
    CHECK_OK(orc_queue_push(q, b));
    CHECK_RC(orc_queue_push(q, c), ORC_EFULL);
    CHECK(strstr(orc_last_error(), "full") != NULL);
    orc_msg_release(c);
    orc_queue_free(q);   /* releases a and b */

    /* drop newest: the incoming message goes to the callback */
    struct drops d = { 0 };
    q = new_queue(1, ORC_POLICY_DROP_NEWEST, 0);
    CHECK_OK(orc_queue_set_drop_callback(q, on_drop, &d, on_free));
    a = new_msg(-1); b = new_msg(-1);
    CHECK_OK(orc_queue_push(q, a));
    CHECK_OK(orc_queue_push(q, b));
    CHECK(d.n == 1 && d.msgs[0] == b && d.reasons[0] == ORC_DROP_OVERFLOW);
    orc_queue_free(q);   /* a is dropped as FREED, then user_data_free */
    CHECK(d.n == 2 && d.msgs[1] == a && d.reasons[1] == ORC_DROP_FREED);
    CHECK(d.freed == 1);

    /* drop oldest: oldest of the lowest lane <= incoming priority */
    struct drops d2 = { 0 };
    q = new_queue(2, ORC_POLICY_DROP_OLDEST, 0);
    CHECK_OK(orc_queue_set_drop_callback(q, on_drop, &d2, on_free));
    orc_msg_t *hi = new_msg(2), *lo = new_msg(0), *hi2 = new_msg(2);
    CHECK_OK(orc_queue_push(q, hi));
    CHECK_OK(orc_queue_push(q, lo));
    CHECK_OK(orc_queue_push(q, hi2));
    CHECK(d2.n == 1 && d2.msgs[0] == lo);
    orc_msg_t *m = NULL;
    CHECK_OK(orc_queue_pop(q, 0, &m)); CHECK(m == hi); orc_msg_release(m);
    CHECK_OK(orc_queue_pop(q, 0, &m)); CHECK(m == hi2); orc_msg_release(m);
    /* replacing the callback frees the old user_data once */
    CHECK_OK(orc_queue_set_drop_callback(q, NULL, NULL, NULL));
    CHECK(d2.freed == 1);
    orc_queue_stats_t st;
    st.struct_size = sizeof st;
    CHECK_OK(orc_queue_stats(q, &st));
    CHECK(st.dropped_overflow == 1);
    orc_queue_free(q);
    CHECK(d2.freed == 1);

    /* block with a timeout */
    q = new_queue(1, ORC_POLICY_BLOCK, 10);
    a = new_msg(-1); b = new_msg(-1);
    CHECK_OK(orc_queue_push(q, a));
    CHECK_RC(orc_queue_push(q, b), ORC_EFULL);
    orc_msg_release(b);
    orc_queue_free(q);
}

static void test_ttl(void) {
    struct drops d = { 0 };
    orc_queue_t *q = new_queue(0, ORC_POLICY_BLOCK, -1);
    CHECK_OK(orc_queue_set_drop_callback(q, on_drop, &d, NULL));
    orc_msg_t *dead = new_msg(-1), *live = new_msg(-1);
    CHECK_OK(orc_msg_set_ttl(dead, 0));
    CHECK_OK(orc_msg_set_ttl(live, 60000));
    CHECK_OK(orc_queue_push(q, dead));
    CHECK_OK(orc_queue_push(q, live));
    orc_msg_t *m = NULL;
    CHECK_OK(orc_queue_pop(q, 0, &m));
    CHECK(m == live);
    orc_msg_release(m);
    CHECK(d.n == 1 && d.msgs[0] == dead && d.reasons[0] == ORC_DROP_EXPIRED);
    orc_queue_stats_t st;
    st.struct_size = sizeof st;
    CHECK_OK(orc_queue_stats(q, &st));
    CHECK(st.expired == 1);
    orc_queue_free(q);
}

static void test_batches(void) {
    orc_queue_t *q = new_queue(4, ORC_POLICY_REJECT, 0);
    orc_msg_t *in[6];
    for (int i = 0; i < 6; i++) in[i] = new_msg(-1);
    size_t accepted = 99;
    CHECK_RC(orc_queue_push_batch(q, in, 6, &accepted), ORC_EFULL);
    CHECK(accepted == 4);
    orc_msg_release(in[4]);
    orc_msg_release(in[5]);
    orc_msg_t *out[8];
    size_t n = 0;
    CHECK_OK(orc_queue_pop_batch(q, out, 3, 0, &n));
    CHECK(n == 3 && out[0] == in[0] && out[1] == in[1] && out[2] == in[2]);
    for (size_t i = 0; i < n; i++) orc_msg_release(out[i]);
    CHECK_OK(orc_queue_pop_batch(q, out, 8, -1, &n));
    CHECK(n == 1 && out[0] == in[3]);
    orc_msg_release(out[0]);
    CHECK_RC(orc_queue_pop_batch(q, out, 8, 0, &n), ORC_EAGAIN);
    CHECK(n == 0);
    /* every message of a batch is timed, also when a batch shares one push time */
    orc_queue_stats_t st;
    st.struct_size = sizeof st;
    CHECK_OK(orc_queue_stats(q, &st));
    CHECK(st.popped == 4 && st.wait_count == 4);
    /* a NULL entry stops the batch there */
    orc_msg_t *with_null[3] = { new_msg(-1), NULL, new_msg(-1) };
    CHECK_RC(orc_queue_push_batch(q, with_null, 3, &accepted), ORC_EINVAL);
    CHECK(accepted == 1);
    orc_msg_release(with_null[2]);
    CHECK_OK(orc_queue_push_batch(q, NULL, 0, &accepted));
    CHECK(accepted == 0);
    orc_queue_free(q);
}

static void test_fd(void) {
    orc_queue_t *q = new_queue(0, ORC_POLICY_BLOCK, -1);
    int fd = -1, fd2 = -1;
    CHECK_OK(orc_queue_fd(q, &fd));
    CHECK(fd >= 0);
    CHECK_OK(orc_queue_fd(q, &fd2));
    CHECK(fd == fd2);
    CHECK(!readable(fd));
    CHECK_OK(orc_queue_push(q, new_msg(-1)));
    CHECK(readable(fd));
    orc_msg_t *m = NULL;
    CHECK_OK(orc_queue_pop(q, 0, &m));
    orc_msg_release(m);
    CHECK(!readable(fd));
    CHECK_OK(orc_queue_close(q));
    CHECK(readable(fd));
    orc_queue_free(q);
}

/* A thread that pops with an infinite timeout. */
struct popper { orc_queue_t *q; int rc; orc_msg_t *msg; };
static void *pop_thread(void *arg) {
    struct popper *p = arg;
    p->rc = orc_queue_pop(p->q, -1, &p->msg);
    return NULL;
}
struct pusher { orc_queue_t *q; orc_msg_t *msg; int rc; };
static void *push_thread(void *arg) {
    struct pusher *p = arg;
    p->rc = orc_queue_push(p->q, p->msg);
    return NULL;
}

/* Waits until `n` readers wait in a pop of q (polling or asleep): then they have blocked.
 * Bounded (10 s) so that a reader that never blocks fails the CHECK instead of hanging. */
static int readers_waiting(orc_queue_t *q, size_t n) {
    for (int i = 0; i < 10000; i++) {
        if (orc_queue_waiting_readers(q) == n) return 1;
        usleep(1000);
    }
    return 0;
}

/* Waits until the queue's stats count `n` pushes that had to wait for room. Bounded too. */
static int pushes_blocked(orc_queue_t *q, uint64_t n) {
    orc_queue_stats_t st;
    for (int i = 0; i < 10000; i++) {
        st.struct_size = sizeof st;
        if (orc_queue_stats(q, &st) == ORC_OK && st.blocked_pushes == n) return 1;
        usleep(1000);
    }
    return 0;
}

static void test_blocking(void) {
    /* a blocked pop is woken by a push and gets that message */
    orc_queue_t *q = new_queue(0, ORC_POLICY_BLOCK, -1);
    struct popper p = { q, 1, NULL };
    pthread_t t;
    CHECK(orc_queue_waiting_readers(q) == 0);
    CHECK(orc_queue_waiting_readers(NULL) == 0);
    CHECK(pthread_create(&t, NULL, pop_thread, &p) == 0);
    CHECK(readers_waiting(q, 1));
    orc_msg_t *m = new_msg(-1);
    CHECK_OK(orc_queue_push(q, m));
    pthread_join(t, NULL);
    CHECK_RC(p.rc, ORC_OK);
    CHECK(p.msg == m);
    orc_msg_release(p.msg);
    CHECK(orc_queue_waiting_readers(q) == 0);

    /* blocked pops are woken by close */
    struct popper ps[3] = { { q, 1, NULL }, { q, 1, NULL }, { q, 1, NULL } };
    pthread_t ts[3];
    for (int i = 0; i < 3; i++) CHECK(pthread_create(&ts[i], NULL, pop_thread, &ps[i]) == 0);
    CHECK(readers_waiting(q, 3));
    CHECK_OK(orc_queue_close(q));
    for (int i = 0; i < 3; i++) {
        pthread_join(ts[i], NULL);
        CHECK_RC(ps[i].rc, ORC_ECLOSED);
        CHECK(ps[i].msg == NULL);
    }
    CHECK_RC(orc_queue_push(q, m = new_msg(-1)), ORC_ECLOSED);
    orc_msg_release(m);
    orc_queue_free(q);

    /* a blocked push is woken by a pop, another by close */
    q = new_queue(1, ORC_POLICY_BLOCK, -1);
    CHECK_OK(orc_queue_push(q, new_msg(-1)));
    struct pusher pu = { q, new_msg(-1), 1 };
    CHECK(pthread_create(&t, NULL, push_thread, &pu) == 0);
    CHECK(pushes_blocked(q, 1));
    CHECK_OK(orc_queue_pop(q, -1, &m));
    orc_msg_release(m);
    pthread_join(t, NULL);
    CHECK_RC(pu.rc, ORC_OK);
    struct pusher pu2 = { q, new_msg(-1), 1 };
    CHECK(pthread_create(&t, NULL, push_thread, &pu2) == 0);
    CHECK(pushes_blocked(q, 2));
    CHECK_OK(orc_queue_close(q));
    pthread_join(t, NULL);
    CHECK_RC(pu2.rc, ORC_ECLOSED);
    orc_msg_release(pu2.msg);
    CHECK_OK(orc_queue_pop(q, -1, &m));   /* drains, then closed */
    CHECK(m == pu.msg);
    orc_msg_release(m);
    CHECK_RC(orc_queue_pop(q, -1, &m), ORC_ECLOSED);
    orc_queue_stats_t st;
    st.struct_size = sizeof st;
    CHECK_OK(orc_queue_stats(q, &st));
    CHECK(st.blocked_pushes == 2);
    orc_queue_free(q);
}

/* Readers that find the queue empty poll for spin_us before they sleep: a polling reader must
 * get a pushed message, and close/fail must end its wait like a sleeping reader's. */
static orc_queue_t *new_polling_queue(int32_t spin_us) {
    orc_queue_options_t o;
    orc_queue_options_init(&o);
    o.capacity = 0;
    o.spin_us = spin_us;
    orc_queue_t *q = NULL;
    CHECK_OK(orc_queue_new(&o, &q));
    return q;
}

static void test_polling_readers(void) {
    orc_queue_options_t o;
    orc_queue_options_init(&o);
    CHECK(o.spin_us == 20);
    orc_queue_t *q = NULL;
    o.spin_us = -1;
    CHECK_RC(orc_queue_new(&o, &q), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "spin") != NULL);
    o.spin_us = 1000001;
    CHECK_RC(orc_queue_new(&o, &q), ORC_EINVAL);
    CHECK(q == NULL);

    /* a reader polling for up to a second gets a message pushed meanwhile */
    q = new_polling_queue(1000000);
    struct popper p = { q, 1, NULL };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, pop_thread, &p) == 0);
    CHECK(readers_waiting(q, 1));
    orc_msg_t *m = new_msg(-1);
    CHECK_OK(orc_queue_push(q, m));
    pthread_join(t, NULL);
    CHECK_RC(p.rc, ORC_OK);
    CHECK(p.msg == m);
    orc_msg_release(p.msg);
    /* a pop whose timeout is shorter than the poll time times out */
    CHECK_RC(orc_queue_pop(q, 30, &m), ORC_ETIMEDOUT);
    CHECK(orc_queue_waiting_readers(q) == 0);   /* a reader that gave up no longer counts */
    /* close ends polling waits */
    struct popper ps[2] = { { q, 1, NULL }, { q, 1, NULL } };
    pthread_t ts[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&ts[i], NULL, pop_thread, &ps[i]) == 0);
    CHECK(readers_waiting(q, 2));
    CHECK_OK(orc_queue_close(q));
    for (int i = 0; i < 2; i++) {
        pthread_join(ts[i], NULL);
        CHECK_RC(ps[i].rc, ORC_ECLOSED);
    }
    orc_queue_free(q);

    /* fail ends a polling wait */
    q = new_polling_queue(1000000);
    struct popper pf = { q, 1, NULL };
    CHECK(pthread_create(&t, NULL, pop_thread, &pf) == 0);
    CHECK(readers_waiting(q, 1));
    CHECK_OK(orc_queue_fail(q, 3, "gone", 4));
    pthread_join(t, NULL);
    CHECK_RC(pf.rc, ORC_EFAILED);
    orc_queue_free(q);

    /* spin_us = 0: readers sleep at once, and are still woken by a push */
    q = new_polling_queue(0);
    struct popper p0 = { q, 1, NULL };
    CHECK(pthread_create(&t, NULL, pop_thread, &p0) == 0);
    CHECK(readers_waiting(q, 1));
    m = new_msg(-1);
    CHECK_OK(orc_queue_push(q, m));
    pthread_join(t, NULL);
    CHECK_RC(p0.rc, ORC_OK);
    CHECK(p0.msg == m);
    orc_msg_release(m);
    orc_queue_free(q);
}

static void test_fail(void) {
    orc_queue_t *q = new_queue(0, ORC_POLICY_BLOCK, -1);
    struct popper p = { q, 1, NULL };
    pthread_t t;
    CHECK(pthread_create(&t, NULL, pop_thread, &p) == 0);
    CHECK(readers_waiting(q, 1));
    CHECK_OK(orc_queue_fail(q, 17, "agent crashed", 13));
    pthread_join(t, NULL);
    CHECK_RC(p.rc, ORC_EFAILED);
    orc_msg_t *m = NULL;
    CHECK_RC(orc_queue_pop(q, 0, &m), ORC_EFAILED);
    CHECK(strcmp(orc_last_error(), "agent crashed") == 0);
    m = new_msg(-1);
    CHECK_RC(orc_queue_push(q, m), ORC_EFAILED);
    orc_msg_release(m);
    orc_queue_free(q);
}

static orc_msg_t *text_msg(const char *text, size_t len) {
    orc_msg_t *m = new_msg(-1);
    if (m) CHECK_OK(orc_msg_set_payload(m, ORC_CONTENT_TEXT, text, len));
    return m;
}

/* orc_queue_pop_payloads: payloads back to back in the caller's buffer, in order; a message
 * without payload has length 0; the first one that does not fit is handed over, unreleased. */
static void test_pop_payloads(void) {
    orc_queue_t *q = new_queue(0, ORC_POLICY_BLOCK, -1);
    char buf[16];
    size_t lens[8], count = 99;
    orc_content_type_t types[8];
    orc_msg_t *over = (orc_msg_t *)1;
    CHECK_RC(orc_queue_pop_payloads(q, 0, buf, sizeof buf, lens, types, 8, &count, &over), ORC_EAGAIN);
    CHECK(count == 0 && over == NULL);
    /* bad arguments */
    CHECK_RC(orc_queue_pop_payloads(NULL, 0, buf, sizeof buf, lens, types, 8, &count, &over), ORC_EINVAL);
    CHECK_RC(orc_queue_pop_payloads(q, 0, buf, sizeof buf, NULL, types, 8, &count, &over), ORC_EINVAL);
    CHECK_RC(orc_queue_pop_payloads(q, 0, buf, sizeof buf, lens, NULL, 8, &count, &over), ORC_EINVAL);
    CHECK_RC(orc_queue_pop_payloads(q, 0, buf, sizeof buf, lens, types, 0, &count, &over), ORC_EINVAL);
    CHECK_RC(orc_queue_pop_payloads(q, 0, buf, sizeof buf, lens, types, 8, NULL, &over), ORC_EINVAL);
    CHECK_RC(orc_queue_pop_payloads(q, 0, buf, sizeof buf, lens, types, 8, &count, NULL), ORC_EINVAL);
    CHECK_RC(orc_queue_pop_payloads(q, 0, NULL, 4, lens, types, 8, &count, &over), ORC_EINVAL);
    CHECK_RC(orc_queue_pop_payloads(q, 0, buf, (size_t)-1, lens, types, 8, &count, &over), ORC_EINVAL);

    CHECK_OK(orc_queue_push(q, text_msg("abc", 3)));
    CHECK_OK(orc_queue_push(q, new_msg(-1)));              /* no payload */
    CHECK_OK(orc_queue_push(q, text_msg("defgh", 5)));
    CHECK_OK(orc_queue_push(q, text_msg("0123456789", 10)));  /* 8 bytes left: does not fit */
    CHECK_OK(orc_queue_push(q, text_msg("z", 1)));
    CHECK_OK(orc_queue_pop_payloads(q, 0, buf, sizeof buf, lens, types, 8, &count, &over));
    CHECK(count == 3 && lens[0] == 3 && lens[1] == 0 && lens[2] == 5);
    CHECK(types[0] == ORC_CONTENT_TEXT && types[2] == ORC_CONTENT_TEXT);
    CHECK(memcmp(buf, "abcdefgh", 8) == 0);
    CHECK(over != NULL);
    if (over) {
        const void *p = NULL;
        size_t n = 0;
        CHECK_OK(orc_msg_payload(over, &p, &n, NULL));
        CHECK(n == 10 && memcmp(p, "0123456789", 10) == 0);
        orc_msg_release(over);
    }
    CHECK(orc_queue_depth(q) == 1);
    /* max bounds the batch; a first message bigger than the whole buffer is handed over */
    CHECK_OK(orc_queue_push(q, text_msg("0123456789abcdefXYZ", 19)));
    CHECK_OK(orc_queue_pop_payloads(q, 0, buf, sizeof buf, lens, types, 1, &count, &over));
    CHECK(count == 1 && lens[0] == 1 && buf[0] == 'z' && over == NULL);
    CHECK_OK(orc_queue_pop_payloads(q, 0, buf, sizeof buf, lens, types, 8, &count, &over));
    CHECK(count == 0 && over != NULL);
    if (over) orc_msg_release(over);
    /* closed and drained */
    CHECK_OK(orc_queue_close(q));
    CHECK_RC(orc_queue_pop_payloads(q, 0, buf, sizeof buf, lens, types, 8, &count, &over), ORC_ECLOSED);
    CHECK(count == 0 && over == NULL);
    orc_queue_free(q);
}

int main(void) {
    test_options_and_nulls();
    test_lanes_and_fifo();
    test_policies();
    test_ttl();
    test_batches();
    test_pop_payloads();
    test_fd();
    test_blocking();
    test_polling_readers();
    test_fail();
    return orc_test_finish("test_queue");
}
