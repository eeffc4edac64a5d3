/* C ABI tests of the runtime (section RUNTIME of orchestra.h): posts from many threads all run,
 * in order per thread, on the I/O thread; timers fire, repeat, stop; every user_data_free runs
 * exactly once; orc_runtime_free runs what was accepted and refuses what comes after; NULL
 * arguments; an embedded runtime (no thread: run by this thread through orc_runtime_fd and
 * orc_runtime_run_once). ctest also runs this program under valgrind (no leak, no error). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>
#include "orc_test.h"

static void nothing(void *ud) { (void)ud; }

static void test_options_and_nulls(void) {
    orc_runtime_options_t o;
    orc_runtime_options_init(&o);
    CHECK(o.struct_size == sizeof o);
    CHECK(o.name == NULL);
    CHECK_RC(orc_runtime_options_init_sized(NULL, sizeof o), ORC_EINVAL);
    CHECK_RC(orc_runtime_options_init_sized(&o, 4), ORC_EINVAL);
    orc_runtime_t *rt = NULL;
    CHECK_RC(orc_runtime_new(NULL, NULL), ORC_EINVAL);
    orc_runtime_options_t bad;
    memset(&bad, 0, sizeof bad);
    CHECK_RC(orc_runtime_new(&bad, &rt), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "orc_runtime_options_init") != NULL);
    orc_runtime_options_init(&o);
    o.name = "\xff";
    CHECK_RC(orc_runtime_new(&o, &rt), ORC_EINVAL);
    CHECK(rt == NULL);
    o.name = "test-rt";
    CHECK_OK(orc_runtime_new(&o, &rt));
    CHECK_RC(orc_runtime_post(NULL, nothing, NULL), ORC_EINVAL);
    CHECK_RC(orc_runtime_post(rt, NULL, NULL), ORC_EINVAL);
    uint64_t id = 0;
    CHECK_RC(orc_runtime_timer_start(NULL, 1, 0, nothing, NULL, NULL, &id), ORC_EINVAL);
    CHECK_RC(orc_runtime_timer_start(rt, 1, 0, NULL, NULL, NULL, &id), ORC_EINVAL);
    CHECK_RC(orc_runtime_timer_start(rt, 1, 0, nothing, NULL, NULL, NULL), ORC_EINVAL);
    CHECK_RC(orc_runtime_timer_stop(NULL, 1), ORC_EINVAL);
    CHECK_RC(orc_runtime_timer_stop(rt, 12345), ORC_ENOTFOUND);
    CHECK(orc_runtime_is_io_thread(NULL) == 0);
    CHECK(orc_runtime_is_io_thread(rt) == 0);
    orc_runtime_free(rt);
    orc_runtime_free(NULL);
}

/* ---- posts from several threads: every one runs once, on the I/O thread, in order per poster */
enum { POSTERS = 4, POSTS = 5000 };
struct post_state {
    orc_runtime_t *rt;
    atomic_int ran;
    atomic_int off_thread;      /* jobs that ran somewhere else than the I/O thread */
    int last_seen[POSTERS];     /* only touched on the I/O thread */
    atomic_int out_of_order;
};
struct post_job { struct post_state *st; int poster; int seq; };

static void run_job(void *ud) {
    struct post_job *j = ud;
    struct post_state *st = j->st;
    if (!orc_runtime_is_io_thread(st->rt)) atomic_fetch_add(&st->off_thread, 1);
    if (j->seq != st->last_seen[j->poster] + 1) atomic_fetch_add(&st->out_of_order, 1);
    st->last_seen[j->poster] = j->seq;
    atomic_fetch_add(&st->ran, 1);
    free(j);
}

struct poster_arg { struct post_state *st; int poster; int failures; };
static void *poster(void *arg) {
    struct poster_arg *a = arg;
    for (int i = 1; i <= POSTS; i++) {
        struct post_job *j = malloc(sizeof *j);
        j->st = a->st; j->poster = a->poster; j->seq = i;
        if (orc_runtime_post(a->st->rt, run_job, j) != ORC_OK) { free(j); a->failures++; }
    }
    return NULL;
}

static void test_posts(void) {
    struct post_state st;
    memset(&st, 0, sizeof st);
    CHECK_OK(orc_runtime_new(NULL, &st.rt));
    pthread_t t[POSTERS];
    struct poster_arg args[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        args[i] = (struct poster_arg){ &st, i, 0 };
        CHECK(pthread_create(&t[i], NULL, poster, &args[i]) == 0);
    }
    int failures = 0;
    for (int i = 0; i < POSTERS; i++) { pthread_join(t[i], NULL); failures += args[i].failures; }
    CHECK(failures == 0);
    /* free runs every accepted job before it returns */
    orc_runtime_free(st.rt);
    CHECK(atomic_load(&st.ran) == POSTERS * POSTS);
    CHECK(atomic_load(&st.off_thread) == 0);
    CHECK(atomic_load(&st.out_of_order) == 0);
}

/* ---- timers */
struct timer_state {
    orc_runtime_t *rt;
    atomic_int fired_once, fired_repeat, freed, fired_stopped;
    atomic_int order_ok;
    uint64_t repeat_id;
};
static void fire_once(void *ud) { struct timer_state *s = ud; atomic_fetch_add(&s->fired_once, 1); }
static void fire_repeat(void *ud) {
    struct timer_state *s = ud;
    /* a repeating timer stops itself from its own callback after 3 runs */
    if (atomic_fetch_add(&s->fired_repeat, 1) + 1 == 3) {
        if (orc_runtime_timer_stop(s->rt, s->repeat_id) != ORC_OK) atomic_store(&s->order_ok, 0);
    }
}
static void fire_stopped(void *ud) { struct timer_state *s = ud; atomic_fetch_add(&s->fired_stopped, 1); }
static void free_ud(void *ud) { struct timer_state *s = ud; atomic_fetch_add(&s->freed, 1); }

static void test_timers(void) {
    struct timer_state s;
    memset(&s, 0, sizeof s);
    atomic_store(&s.order_ok, 1);
    CHECK_OK(orc_runtime_new(NULL, &s.rt));
    uint64_t once = 0, stopped = 0, forever = 0;
    CHECK_OK(orc_runtime_timer_start(s.rt, 5, 0, fire_once, &s, free_ud, &once));
    CHECK(once != 0);
    CHECK_OK(orc_runtime_timer_start(s.rt, 1, 2, fire_repeat, &s, free_ud, &s.repeat_id));
    CHECK_OK(orc_runtime_timer_start(s.rt, 60000, 0, fire_stopped, &s, free_ud, &stopped));
    CHECK_OK(orc_runtime_timer_start(s.rt, 60000, 60000, fire_stopped, &s, free_ud, &forever));
    CHECK_OK(orc_runtime_timer_stop(s.rt, stopped));
    CHECK_RC(orc_runtime_timer_stop(s.rt, stopped), ORC_ENOTFOUND);
    /* wait (bounded) for the one-shot and the self-stopping timers */
    for (int i = 0; i < 2000 && (atomic_load(&s.fired_once) < 1 || atomic_load(&s.fired_repeat) < 3); i++) usleep(1000);
    usleep(20000);   /* a stopped repeating timer must not fire again */
    CHECK(atomic_load(&s.fired_once) == 1);
    CHECK(atomic_load(&s.fired_repeat) == 3);
    CHECK(atomic_load(&s.order_ok) == 1);
    CHECK_RC(orc_runtime_timer_stop(s.rt, once), ORC_ENOTFOUND);   /* one-shot: gone once fired */
    orc_runtime_free(s.rt);   /* stops `forever` */
    CHECK(atomic_load(&s.fired_stopped) == 0);
    CHECK(atomic_load(&s.freed) == 4);   /* every timer's user_data_free, exactly once */
}

/* ---- free refuses later posts; free from inside a job */
struct self_free { orc_runtime_t *rt; atomic_int done; };
static void free_from_inside(void *ud) {
    struct self_free *sf = ud;
    orc_runtime_free(sf->rt);   /* on the I/O thread: starts the shutdown */
    atomic_store(&sf->done, 1);
}

static void test_shutdown(void) {
    orc_runtime_t *rt = NULL;
    CHECK_OK(orc_runtime_new(NULL, &rt));
    struct self_free sf = { rt, 0 };
    CHECK_OK(orc_runtime_post(rt, free_from_inside, &sf));
    for (int i = 0; i < 5000 && !atomic_load(&sf.done); i++) usleep(1000);
    CHECK(atomic_load(&sf.done) == 1);
    usleep(20000);   /* the I/O thread finishes, detaches and frees the runtime */
}

/* ---- an embedded runtime: no thread; this thread runs it when its descriptor is readable */
static int readable(int fd, int ms) {
    struct pollfd p = { .fd = fd, .events = POLLIN };
    return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}
struct emb_state { orc_runtime_t *rt; atomic_int ran; atomic_int off_thread; pthread_t me; atomic_int fired; };
static void emb_job(void *ud) {
    struct emb_state *s = ud;
    if (!orc_runtime_is_io_thread(s->rt) || !pthread_equal(pthread_self(), s->me)) atomic_fetch_add(&s->off_thread, 1);
    atomic_fetch_add(&s->ran, 1);
}
static void emb_fire(void *ud) { struct emb_state *s = ud; atomic_fetch_add(&s->fired, 1); }
static void *emb_poster(void *arg) {
    struct emb_state *s = arg;
    for (int i = 0; i < 1000; i++) (void)orc_runtime_post(s->rt, emb_job, s);
    return NULL;
}
static void emb_nested(void *ud) {
    struct emb_state *s = ud;
    int t = 0;
    if (orc_runtime_run_once(s->rt, &t) == ORC_ESTATE) atomic_fetch_add(&s->ran, 1000);
}
static void emb_free_inside(void *ud) { struct emb_state *s = ud; orc_runtime_free(s->rt); atomic_fetch_add(&s->ran, 1); }

static void test_embedded(void) {
    orc_runtime_options_t o;
    orc_runtime_options_init(&o);
    CHECK(o.embedded == 0);
    o.embedded = 2;
    orc_runtime_t *rt = NULL;
    CHECK_RC(orc_runtime_new(&o, &rt), ORC_EINVAL);
    /* a runtime with its own thread has nothing to run */
    CHECK_OK(orc_runtime_new(NULL, &rt));
    int fd = -1, timeout = 0;
    CHECK_RC(orc_runtime_fd(rt, &fd), ORC_ESTATE);
    CHECK_RC(orc_runtime_run_once(rt, &timeout), ORC_ESTATE);
    orc_runtime_free(rt);

    struct emb_state s;
    memset(&s, 0, sizeof s);
    s.me = pthread_self();
    o.embedded = 1;
    CHECK_OK(orc_runtime_new(&o, &s.rt));
    CHECK_RC(orc_runtime_fd(NULL, &fd), ORC_EINVAL);
    CHECK_RC(orc_runtime_fd(s.rt, NULL), ORC_EINVAL);
    CHECK_RC(orc_runtime_run_once(NULL, &timeout), ORC_EINVAL);
    CHECK_OK(orc_runtime_fd(s.rt, &fd));
    CHECK(fd >= 0);
    CHECK(!readable(fd, 0));
    pthread_t t[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&t[i], NULL, emb_poster, &s) == 0);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK(atomic_load(&s.ran) == 0);            /* nothing runs by itself */
    CHECK(readable(fd, 1000));
    CHECK_OK(orc_runtime_run_once(s.rt, NULL));
    CHECK(atomic_load(&s.ran) == 2000);         /* all of it, on this thread */
    CHECK(atomic_load(&s.off_thread) == 0);
    CHECK(orc_runtime_is_io_thread(s.rt) == 0);
    /* a timer: due after the timeout run_once returns */
    uint64_t id = 0;
    CHECK_OK(orc_runtime_timer_start(s.rt, 20, 0, emb_fire, &s, NULL, &id));
    CHECK_OK(orc_runtime_run_once(s.rt, &timeout));
    CHECK(timeout > 0 && timeout <= 20);
    for (int i = 0; i < 200 && atomic_load(&s.fired) == 0; i++) {
        (void)readable(fd, timeout < 0 || timeout > 20 ? 20 : timeout);
        CHECK_OK(orc_runtime_run_once(s.rt, &timeout));
    }
    CHECK(atomic_load(&s.fired) == 1);
    /* run_once from one of its own callbacks is refused */
    CHECK_OK(orc_runtime_post(s.rt, emb_nested, &s));
    CHECK_OK(orc_runtime_run_once(s.rt, &timeout));
    CHECK(atomic_load(&s.ran) == 3000);
    /* freed from inside a job: the shutdown ends in a later run_once, which says ECLOSED */
    CHECK_OK(orc_runtime_post(s.rt, emb_free_inside, &s));
    int rc = ORC_OK;
    for (int i = 0; i < 100 && rc == ORC_OK; i++) rc = orc_runtime_run_once(s.rt, &timeout);
    CHECK_RC(rc, ORC_ECLOSED);
    CHECK(atomic_load(&s.ran) == 3001);

    /* freed from outside with jobs waiting: they run first, on the freeing thread */
    struct emb_state s2;
    memset(&s2, 0, sizeof s2);
    s2.me = pthread_self();
    CHECK_OK(orc_runtime_new(&o, &s2.rt));
    CHECK_OK(orc_runtime_post(s2.rt, emb_job, &s2));
    orc_runtime_free(s2.rt);
    CHECK(atomic_load(&s2.ran) == 1);
    CHECK(atomic_load(&s2.off_thread) == 0);
}

int main(void) {
    test_options_and_nulls();
    test_posts();
    test_timers();
    test_shutdown();
    test_embedded();
    return orc_test_finish("test_runtime");
}
