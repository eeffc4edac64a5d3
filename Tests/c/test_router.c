/* C ABI tests of the subject router: subject grammar, subscribe/publish/unsubscribe, middleware
 * (stop, replace, failure), handler failure isolation, the unhandled hook, user_data_free
 * called exactly once, statistics, NULL and invalid arguments, concurrent publishers. */
#include <pthread.h>
#include <stdlib.h>
#include "orc_test.h"

#define S(lit) lit, (sizeof lit - 1)

static orc_msg_t *new_msg(const char *type) {
    orc_msg_t *m = NULL;
    CHECK_OK(orc_msg_new(type, strlen(type), &m));
    return m;
}

/* A handler's user_data: counts calls and frees, remembers the last message pointer. */
struct probe {
    int calls;
    int frees;
    int fail;            /* value the handler returns */
    orc_msg_t *last;
};

static int on_msg(void *ud, orc_msg_t *msg) {
    struct probe *p = ud;
    p->calls++;
    p->last = msg;
    return p->fail;
}

static void on_free(void *ud) { ((struct probe *)ud)->frees++; }

static void on_dead(void *ud, orc_msg_t *msg) {
    struct probe *p = ud;
    p->calls++;
    p->last = msg;
}

static void test_subjects(void) {
    CHECK_OK(orc_subject_validate(S("task.stream"), 0));
    CHECK_OK(orc_subject_validate(S("task.*.>"), 1));
    CHECK_RC(orc_subject_validate(S("a..b"), 1), ORC_EINVAL);
    CHECK(strcmp(orc_last_error(), "pattern \"a..b\": empty token at byte 2") == 0);
    CHECK_RC(orc_subject_validate(S(""), 0), ORC_EINVAL);
    CHECK_RC(orc_subject_validate(S("a."), 0), ORC_EINVAL);
    CHECK_RC(orc_subject_validate(S("a.>.b"), 1), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "must be the last token") != NULL);
    CHECK_RC(orc_subject_validate(S("a.*"), 0), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "not allowed in a published subject") != NULL);
    CHECK_OK(orc_subject_validate(S("a*.b>"), 0));        /* mixed tokens are literals */
    CHECK_RC(orc_subject_validate(NULL, 3, 0), ORC_EINVAL);
    CHECK_RC(orc_subject_validate(NULL, 0, 0), ORC_EINVAL); /* empty */

    CHECK_RC(orc_subject_matches(S("a.*"), S("a")), 0);
    CHECK_RC(orc_subject_matches(S("a.*"), S("a.b")), 1);
    CHECK_RC(orc_subject_matches(S("a.*"), S("a.b.c")), 0);
    CHECK_RC(orc_subject_matches(S(">"), S("x.y.z")), 1);
    CHECK_RC(orc_subject_matches(S("a.>"), S("a")), 0);
    CHECK_RC(orc_subject_matches(S("a.>"), S("a.b.c")), 1);
    CHECK_RC(orc_subject_matches(S("a.*.c"), S("a.b.c")), 1);
    CHECK_RC(orc_subject_matches(S("a.>.c"), S("a.b.c")), ORC_EINVAL);
    CHECK_RC(orc_subject_matches(S("a.b"), S("a.*")), ORC_EINVAL);
}

static void test_arguments(void) {
    orc_router_t *r = NULL;
    uint64_t id = 0;
    struct probe p = {0};
    CHECK_RC(orc_router_new(NULL), ORC_EINVAL);
    orc_router_free(NULL);
    CHECK_OK(orc_router_new(&r));
    CHECK(r != NULL);
    CHECK_RC(orc_router_subscribe(NULL, S("a"), on_msg, &p, on_free, &id), ORC_EINVAL);
    CHECK_RC(orc_router_subscribe(r, S("a"), NULL, &p, on_free, &id), ORC_EINVAL);
    CHECK_RC(orc_router_subscribe(r, S("a"), on_msg, &p, on_free, NULL), ORC_EINVAL);
    CHECK_RC(orc_router_subscribe(r, NULL, 1, on_msg, &p, on_free, &id), ORC_EINVAL);
    CHECK_RC(orc_router_subscribe(r, S("a..b"), on_msg, &p, on_free, &id), ORC_EINVAL);
    CHECK(p.frees == 0);                        /* a failed registration takes nothing */
    CHECK_RC(orc_router_unsubscribe(r, 12345), ORC_ENOTFOUND);
    CHECK_RC(orc_router_unsubscribe(NULL, 1), ORC_EINVAL);
    CHECK_RC(orc_router_use(r, NULL, NULL, NULL), ORC_EINVAL);
    CHECK_RC(orc_router_on_unhandled(NULL, on_dead, NULL, NULL), ORC_EINVAL);
    CHECK_RC(orc_router_publish(r, NULL, NULL), ORC_EINVAL);
    orc_msg_t *m = new_msg("a");
    CHECK_RC(orc_router_publish(NULL, m, NULL), ORC_EINVAL);
    orc_publish_result_t small = { .struct_size = 4 };
    CHECK_RC(orc_router_publish(r, m, &small), ORC_EINVAL);
    CHECK_OK(orc_msg_set_type(m, S("a.*")));
    CHECK_RC(orc_router_publish(r, m, NULL), ORC_EINVAL);   /* wildcard subject */
    orc_router_stats_t st = { .struct_size = sizeof st - 1 };
    CHECK_RC(orc_router_stats(r, &st), ORC_EINVAL);
    CHECK_RC(orc_router_stats(r, NULL), ORC_EINVAL);
    st.struct_size = sizeof st;
    CHECK_OK(orc_router_stats(r, &st));
    CHECK(st.published == 0 && st.subscriptions == 0);
    orc_msg_release(m);
    orc_router_free(r);
    CHECK(p.frees == 0);
}

static void test_delivery_and_free_once(void) {
    orc_router_t *r = NULL;
    CHECK_OK(orc_router_new(&r));
    struct probe exact = {0}, star = {0}, tail = {0}, failing = {.fail = 1}, other = {0}, dead = {0};
    uint64_t id_exact = 0, id_star = 0, id_tail = 0, id_fail = 0, id_other = 0;
    CHECK_OK(orc_router_subscribe(r, S("task.stream"), on_msg, &exact, on_free, &id_exact));
    CHECK_OK(orc_router_subscribe(r, S("task.*"), on_msg, &star, on_free, &id_star));
    CHECK_OK(orc_router_subscribe(r, S("task.>"), on_msg, &tail, on_free, &id_tail));
    CHECK_OK(orc_router_subscribe(r, S("*.stream"), on_msg, &failing, on_free, &id_fail));
    CHECK_OK(orc_router_subscribe(r, S("agent.register"), on_msg, &other, NULL, &id_other));
    CHECK(id_exact != 0 && id_exact != id_star && id_star != id_tail);
    CHECK_OK(orc_router_on_unhandled(r, on_dead, &dead, on_free));

    orc_msg_t *m = new_msg("task.stream");
    orc_publish_result_t res = { .struct_size = sizeof res };
    CHECK_OK(orc_router_publish(r, m, &res));
    CHECK(res.matched == 4 && res.failed == 1 && !res.stopped && !res.unhandled);
    CHECK(exact.calls == 1 && star.calls == 1 && tail.calls == 1 && failing.calls == 1 && other.calls == 0);
    CHECK(exact.last == m);
    CHECK(dead.calls == 0);

    CHECK_OK(orc_msg_set_type(m, S("task.stream.part")));
    CHECK_OK(orc_router_publish(r, m, &res));
    CHECK(res.matched == 1 && tail.calls == 2 && star.calls == 1);

    CHECK_OK(orc_msg_set_type(m, S("nobody.listens")));
    CHECK_OK(orc_router_publish(r, m, &res));
    CHECK(res.matched == 0 && res.unhandled == 1 && dead.calls == 1 && dead.last == m);

    /* user_data_free: once, right after unsubscribe when no publish is running. */
    CHECK_OK(orc_router_unsubscribe(r, id_exact));
    CHECK(exact.frees == 1);
    CHECK_RC(orc_router_unsubscribe(r, id_exact), ORC_ENOTFOUND);
    CHECK(exact.frees == 1);
    CHECK_OK(orc_msg_set_type(m, S("task.stream")));
    CHECK_OK(orc_router_publish(r, m, &res));
    CHECK(res.matched == 3 && exact.calls == 1);

    /* Replacing the unhandled hook releases the old one; NULL removes it. */
    struct probe dead2 = {0};
    CHECK_OK(orc_router_on_unhandled(r, on_dead, &dead2, on_free));
    CHECK(dead.frees == 1);
    CHECK_OK(orc_router_on_unhandled(r, NULL, NULL, NULL));
    CHECK(dead2.frees == 1);

    orc_router_stats_t st = { .struct_size = sizeof st };
    CHECK_OK(orc_router_stats(r, &st));
    CHECK(st.published == 4);
    CHECK(st.delivered == 6);              /* 3 + 1 + 0 + 2 successful handler calls */
    CHECK(st.handler_failures == 2);
    CHECK(st.unhandled == 1);
    CHECK(st.subscriptions == 4);

    orc_msg_release(m);
    orc_router_free(r);                    /* frees the remaining subscriptions' user_data */
    CHECK(exact.frees == 1 && star.frees == 1 && tail.frees == 1 && failing.frees == 1);
    CHECK(dead.frees == 1 && dead2.frees == 1);
}

/* A handler that unsubscribes itself: its user_data_free waits until the handler returned. */
struct self_unsub { orc_router_t *r; uint64_t id; int calls; int frees; int frees_seen_inside; };

static int unsub_self(void *ud, orc_msg_t *msg) {
    struct self_unsub *s = ud;
    (void)msg;
    s->calls++;
    CHECK_OK(orc_router_unsubscribe(s->r, s->id));
    s->frees_seen_inside = s->frees;
    return 0;
}

static void self_free(void *ud) { ((struct self_unsub *)ud)->frees++; }

static void test_unsubscribe_inside_handler(void) {
    orc_router_t *r = NULL;
    CHECK_OK(orc_router_new(&r));
    struct self_unsub s = { .r = r, .frees_seen_inside = -1 };
    CHECK_OK(orc_router_subscribe(r, S("once"), unsub_self, &s, self_free, &s.id));
    orc_msg_t *m = new_msg("once");
    orc_publish_result_t res = { .struct_size = sizeof res };
    CHECK_OK(orc_router_publish(r, m, &res));
    CHECK(s.calls == 1 && s.frees_seen_inside == 0 && s.frees == 1);
    CHECK_OK(orc_router_publish(r, m, &res));
    CHECK(s.calls == 1 && res.unhandled == 1);
    orc_msg_release(m);
    orc_router_free(r);
    CHECK(s.frees == 1);
}

/* Middleware: tag 0 replaces "in.move" by a new "out.moved" message, tag 1 stops "in.drop",
 * tag 2 fails on "in.fail" (returns -5) and returns 7 (not an action) on "in.weird". */
struct mw { int tag; int calls; int frees; orc_msg_t *match; orc_msg_t *made; };

static int middleware(void *ud, orc_msg_t *msg, orc_msg_t **replace) {
    struct mw *w = ud;
    w->calls++;
    if (w->match == NULL || msg != w->match) return ORC_ROUTE_CONTINUE;
    switch (w->tag) {
    case 0:
        CHECK_OK(orc_msg_new(S("out.moved"), &w->made));
        *replace = w->made;                /* ownership passes to the router */
        return ORC_ROUTE_CONTINUE;
    case 1: return ORC_ROUTE_STOP;
    case 2: return -5;
    default: return 7;
    }
}

static void mw_free(void *ud) { ((struct mw *)ud)->frees++; }

static void test_middleware(void) {
    orc_router_t *r = NULL;
    CHECK_OK(orc_router_new(&r));
    struct mw mover = {.tag = 0}, stopper = {.tag = 1}, failer = {.tag = 2}, weird = {.tag = 3};
    CHECK_OK(orc_router_use(r, middleware, &mover, mw_free));
    CHECK_OK(orc_router_use(r, middleware, &stopper, mw_free));
    CHECK_OK(orc_router_use(r, middleware, &failer, mw_free));
    CHECK_OK(orc_router_use(r, middleware, &weird, mw_free));
    struct probe in = {0}, out = {0}, dead = {0};
    uint64_t id;
    CHECK_OK(orc_router_subscribe(r, S("in.*"), on_msg, &in, NULL, &id));
    CHECK_OK(orc_router_subscribe(r, S("out.moved"), on_msg, &out, NULL, &id));
    CHECK_OK(orc_router_on_unhandled(r, on_dead, &dead, NULL));
    orc_publish_result_t res = { .struct_size = sizeof res };

    /* Replace: the handlers see the new message, not the original. */
    orc_msg_t *m = new_msg("in.move");
    mover.match = m;
    CHECK_OK(orc_router_publish(r, m, &res));
    CHECK(res.matched == 1 && !res.stopped);
    CHECK(in.calls == 0 && out.calls == 1 && out.last == mover.made && mover.made != NULL);
    CHECK(stopper.calls == 1 && failer.calls == 1 && weird.calls == 1);
    mover.match = NULL;
    orc_msg_release(m);

    m = new_msg("in.drop");
    stopper.match = m;
    CHECK_OK(orc_router_publish(r, m, &res));
    CHECK(res.stopped == 1 && res.middleware_failed == 0 && res.matched == 0 && res.unhandled == 0);
    CHECK(failer.calls == 1 && in.calls == 0 && dead.calls == 0);
    stopper.match = NULL;
    orc_msg_release(m);

    m = new_msg("in.fail");
    failer.match = m;
    CHECK_OK(orc_router_publish(r, m, &res));
    CHECK(res.stopped == 1 && res.middleware_failed == 1 && in.calls == 0 && weird.calls == 1);
    failer.match = NULL;
    orc_msg_release(m);

    m = new_msg("in.weird");
    weird.match = m;
    CHECK_OK(orc_router_publish(r, m, &res));
    CHECK(res.stopped == 1 && res.middleware_failed == 1 && in.calls == 0);
    weird.match = NULL;

    CHECK_OK(orc_router_publish(r, m, &res));    /* no middleware objects now */
    CHECK(res.matched == 1 && in.calls == 1);
    orc_msg_release(m);

    orc_router_stats_t st = { .struct_size = sizeof st };
    CHECK_OK(orc_router_stats(r, &st));
    CHECK(st.published == 5 && st.middleware_stops == 3 && st.middleware_failures == 2 && st.delivered == 2);
    CHECK(mover.frees == 0);
    orc_router_free(r);
    CHECK(mover.frees == 1 && stopper.frees == 1 && failer.frees == 1 && weird.frees == 1);
}

/* Concurrent publishers and subscribers. */
struct worker { orc_router_t *r; int index; int errors; };
static int counted(void *ud, orc_msg_t *msg) {
    (void)msg;
    __atomic_fetch_add((int *)ud, 1, __ATOMIC_RELAXED);
    return 0;
}
static int worker_frees;
static void worker_free(void *ud) { (void)ud; __atomic_fetch_add(&worker_frees, 1, __ATOMIC_RELAXED); }
static int worker_hits;

static void *worker_main(void *arg) {
    struct worker *w = arg;
    orc_msg_t *m = NULL;
    char type[32];
    int n = snprintf(type, sizeof type, "load.%d.x", w->index);
    if (orc_msg_new(type, (size_t)n, &m) != ORC_OK) { w->errors++; return NULL; }
    for (int i = 0; i < 300; i++) {
        uint64_t id = 0;
        if (orc_router_subscribe(w->r, type, (size_t)n, counted, &worker_hits, worker_free, &id) != ORC_OK) w->errors++;
        orc_publish_result_t res = { .struct_size = sizeof res };
        if (orc_router_publish(w->r, m, &res) != ORC_OK || res.matched < 2) w->errors++;
        if (orc_router_unsubscribe(w->r, id) != ORC_OK) w->errors++;
    }
    orc_msg_release(m);
    return NULL;
}

static void test_threads(void) {
    orc_router_t *r = NULL;
    CHECK_OK(orc_router_new(&r));
    int all = 0;
    uint64_t id;
    CHECK_OK(orc_router_subscribe(r, S("load.>"), counted, &all, NULL, &id));
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){ .r = r, .index = i };
        CHECK(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(w[i].errors == 0);
    }
    CHECK(all == 1200);
    CHECK(worker_hits == 1200);
    CHECK(worker_frees == 1200);
    orc_router_stats_t st = { .struct_size = sizeof st };
    CHECK_OK(orc_router_stats(r, &st));
    CHECK(st.published == 1200 && st.delivered == 2400 && st.subscriptions == 1);
    orc_router_free(r);
}

int main(void) {
    test_subjects();
    test_arguments();
    test_delivery_and_free_once();
    test_unsubscribe_inside_handler();
    test_middleware();
    test_threads();
    return orc_test_finish("test_router");
}
