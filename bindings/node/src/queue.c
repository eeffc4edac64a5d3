/*
 * Queue: a JS object over an orc_queue_t.
 *
 * Sharing. A queue may be used from several JS environments at once (the main thread and
 * worker_threads, each loading this addon). The orc_queue_t lives in an nq_shared block with
 * an atomic reference count: every Queue object holds one reference, and the last one frees the
 * queue, so no environment can free it under another. queue.share() returns a token (a BigInt,
 * which postMessage and workerData can carry) holding one reference; Queue.fromShared(token)
 * in any thread takes that reference over. Each token is used once.
 *
 * Waiting without blocking the JS thread. The library gives each queue a readiness eventfd
 * (orc_queue_fd): readable while the queue has messages or is closed or failed. queue._wait()
 * returns a Promise resolved when that fd is readable, watched by a uv_poll_t on the
 * environment's own libuv loop (napi_get_uv_event_loop). lib/index.js then pops a batch with
 * timeout 0 and waits again on ORC_EAGAIN. We chose this over a worker thread blocked in
 * orc_queue_pop plus a napi_threadsafe_function because it is what the fd exists for
 * (docs/abi.md, Threads; the same path Python's asyncio takes): no extra thread per queue, no
 * thread hop and no cross-thread hand-off per wake-up, a whole batch per wake-up, nothing to
 * join at exit, and closing or failing the queue wakes the waiter through the same fd.
 *
 * Per environment there is one uv_poll_t per queue (libuv allows only one watcher per fd and
 * loop), shared by every Queue object of that queue in that environment, with a list of
 * pending promises. The poll is started only while someone waits, so an idle queue does not
 * keep the process alive, and a waiting iterator does (like a socket read). Each poll
 * registers an async cleanup hook, so a worker that is terminated while waiting closes its
 * handle before its loop is closed.
 */
#include "addon.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* ------------------------------------------------------------------ shared queue */

typedef struct nq_shared {
    orc_queue_t *q;
    int fd;                /* readiness eventfd (owned by the queue) */
    atomic_long refs;
} nq_shared;

static void shared_retain(nq_shared *s) { atomic_fetch_add(&s->refs, 1); }

/* Takes a reference unless the count already reached 0 (the queue is being freed). */
static bool shared_try_retain(nq_shared *s) {
    long n = atomic_load(&s->refs);
    while (n > 0)
        if (atomic_compare_exchange_weak(&s->refs, &n, n + 1)) return true;
    return false;
}

static void shared_release(nq_shared *s) {
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        orc_queue_free(s->q);
        free(s);
    }
}

/* Tokens from share(): id -> one reference, taken by fromShared. Process-wide (all threads
 * load the same addon image). */
typedef struct token { uint64_t id; nq_shared *s; struct token *next; } token;
static pthread_mutex_t tokens_lock = PTHREAD_MUTEX_INITIALIZER;
static token *tokens;
static uint64_t next_token = 1;

/* ----------------------------------------------------------------- readiness poll */

typedef struct nq_poll {
    uv_poll_t handle;             /* handle.data = this */
    struct nq_poll *next;         /* in env->polls while open */
    orc_node_env *envd;           /* NULL once closing */
    nq_shared *shared;            /* one reference, released when the handle is closed */
    long users;                   /* Queue objects of this environment using it */
    napi_deferred *waiters;
    size_t nwaiters, cap;
    napi_async_context actx;
    napi_ref resource;
    napi_async_cleanup_hook_handle hook;
    bool active, closing, closed;
} nq_poll;

typedef struct nq_wrap {
    nq_shared *shared;
    nq_poll *poll;                /* created by the first _wait() */
} nq_wrap;

static void poll_closed(uv_handle_t *h) {
    nq_poll *p = h->data;
    p->closed = true;
    if (p->hook) napi_remove_async_cleanup_hook(p->hook);
    p->hook = NULL;
    shared_release(p->shared);
    p->shared = NULL;
    if (p->users == 0) free(p);
}

/* Stops watching: unlinks from the environment, settles or forgets the waiters and closes the
 * handle (freed by poll_closed, or by the last user after it). `teardown`: the environment is
 * being torn down, so no JS may run and the waiters are dropped. */
static void poll_close(napi_env env, nq_poll *p, bool teardown) {
    if (p->closing) return;
    p->closing = true;
    if (p->envd) {
        nq_poll **pp = &p->envd->polls;
        while (*pp && *pp != p) pp = &(*pp)->next;
        if (*pp) *pp = p->next;
        p->envd = NULL;
    }
    if (!teardown) {
        for (size_t i = 0; i < p->nwaiters; i++) {
            napi_value err = orc_node_make_error(env, ORC_ECLOSED, "the Queue object was garbage collected while waiting");
            if (err) napi_reject_deferred(env, p->waiters[i], err);
        }
        napi_async_destroy(env, p->actx);
    }
    if (p->resource) napi_delete_reference(env, p->resource);
    p->resource = NULL;
    free(p->waiters);
    p->waiters = NULL;
    p->nwaiters = p->cap = 0;
    uv_close((uv_handle_t *)&p->handle, poll_closed);
}

static void poll_cleanup_hook(napi_async_cleanup_hook_handle handle, void *arg) {
    nq_poll *p = arg;
    p->hook = handle;
    if (p->closing) {
        /* Already closing: poll_closed removes the hook. */
        return;
    }
    napi_env env = p->envd ? p->envd->env : NULL;
    poll_close(env, p, true);
}

static void poll_ready(uv_poll_t *h, int status, int events) {
    (void)events;
    nq_poll *p = h->data;
    uv_poll_stop(h);
    p->active = false;
    if (!p->envd || p->nwaiters == 0) return;
    napi_env env = p->envd->env;
    napi_deferred *waiters = p->waiters;
    size_t n = p->nwaiters;
    p->waiters = NULL;
    p->nwaiters = p->cap = 0;

    napi_handle_scope hs;
    napi_callback_scope cs = NULL;
    napi_value resource, result;
    if (napi_open_handle_scope(env, &hs) != napi_ok) { free(waiters); return; }
    if (napi_get_reference_value(env, p->resource, &resource) == napi_ok)
        napi_open_callback_scope(env, resource, p->actx, &cs);
    if (status < 0) {
        char buf[200];
        snprintf(buf, sizeof buf, "waiting for the queue's readiness fd failed: %s", uv_strerror(status));
        result = orc_node_make_error(env, ORC_EIO, buf);
    } else {
        napi_get_undefined(env, &result);
    }
    for (size_t i = 0; i < n; i++) {
        if (status < 0) napi_reject_deferred(env, waiters[i], result);
        else napi_resolve_deferred(env, waiters[i], result);
    }
    free(waiters);
    /* Closing the callback scope runs the microtasks: the woken iterators pop their batches
     * (and may wait again, restarting the poll) before control returns to libuv. */
    if (cs) napi_close_callback_scope(env, cs);
    napi_close_handle_scope(env, hs);
}

static nq_poll *poll_get(napi_env env, orc_node_env *d, nq_shared *s) {
    for (nq_poll *p = d->polls; p; p = p->next)
        if (p->shared == s) {
            p->users++;
            return p;
        }
    uv_loop_t *loop = NULL;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok || !loop) {
        orc_node_throw_napi(env, "napi_get_uv_event_loop");
        return NULL;
    }
    nq_poll *p = calloc(1, sizeof *p);
    if (!p) {
        orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
        return NULL;
    }
    int rc = uv_poll_init(loop, &p->handle, s->fd);
    if (rc < 0) {
        free(p);
        char buf[200];
        snprintf(buf, sizeof buf, "uv_poll_init on the queue's readiness fd failed: %s", uv_strerror(rc));
        napi_throw(env, orc_node_make_error(env, ORC_EIO, buf));
        return NULL;
    }
    p->handle.data = p;
    p->envd = d;
    p->shared = s;
    shared_retain(s);
    p->users = 1;
    napi_value resource, name;
    if (napi_create_object(env, &resource) != napi_ok ||
        napi_create_reference(env, resource, 1, &p->resource) != napi_ok ||
        napi_create_string_utf8(env, "orchestra.Queue.wait", NAPI_AUTO_LENGTH, &name) != napi_ok ||
        napi_async_init(env, resource, name, &p->actx) != napi_ok ||
        napi_add_async_cleanup_hook(env, poll_cleanup_hook, p, &p->hook) != napi_ok) {
        orc_node_throw_napi(env, "queue wait setup");
        p->next = NULL;
        p->envd = NULL;
        p->users = 0;
        p->closing = true;
        if (p->resource) napi_delete_reference(env, p->resource);
        p->resource = NULL;
        uv_close((uv_handle_t *)&p->handle, poll_closed);
        return NULL;
    }
    p->next = d->polls;
    d->polls = p;
    return p;
}

/* The last user of a poll went away (its Queue object was finalized). */
static void poll_unuse(napi_env env, nq_poll *p) {
    if (--p->users > 0) return;
    if (!p->closing) poll_close(env, p, false);
    else if (p->closed) free(p);
}

/* Called when the environment's instance data is freed (addon.c). */
void orc_node_queue_env_gone(orc_node_env *d) {
    for (nq_poll *p = d->polls; p; p = p->next) p->envd = NULL;
    d->polls = NULL;
}


/* ------------------------------------------------------------------ drop handler */
/*
 * queue.onDrop(fn) delivers every message the queue drops (overflow, expired, freed) to fn
 * on the JS thread that registered it, through a napi_threadsafe_function: the library calls
 * the drop callback on whichever thread caused the drop (a worker's push, a pop, the last
 * free), which retains the message and queues it to the tsfn without blocking.
 *
 * Two owners can end the registration, on different threads: the queue (handler replaced, or
 * queue freed: user_data_free) and the registering environment (torn down: the tsfn's
 * finalizer). The context's mutex orders them. The context does not keep the queue alive (that
 * would be a cycle); the finalizer reaches the queue only through shared_try_retain while
 * holding the mutex, which user_data_free also needs before the queue's memory goes.
 */
typedef struct drop_ctx {
    pthread_mutex_t lock;
    nq_shared *shared;          /* weak; NULL once the queue let go */
    napi_threadsafe_function tsfn;
    bool tsfn_gone;             /* finalized: never call it again */
    int refs;                   /* queue side + tsfn side */
} drop_ctx;

typedef struct drop_item { orc_msg_t *msg; orc_drop_reason_t reason; } drop_item;

static void drop_ctx_unref(drop_ctx *c) {
    pthread_mutex_lock(&c->lock);
    int left = --c->refs;
    pthread_mutex_unlock(&c->lock);
    if (left == 0) {
        pthread_mutex_destroy(&c->lock);
        free(c);
    }
}

/* Library thread: any thread that caused the drop. */
static void drop_cb(void *user_data, orc_msg_t *msg, orc_drop_reason_t reason) {
    drop_ctx *c = user_data;
    drop_item *item = malloc(sizeof *item);
    if (!item) return;
    item->msg = orc_msg_retain(msg);
    item->reason = reason;
    pthread_mutex_lock(&c->lock);
    napi_status st = c->tsfn_gone ? napi_closing : napi_call_threadsafe_function(c->tsfn, item, napi_tsfn_nonblocking);
    pthread_mutex_unlock(&c->lock);
    if (st != napi_ok) {
        orc_msg_release(item->msg);
        free(item);
    }
}

/* Library thread: the queue no longer calls drop_cb (replaced, or queue freed). */
static void drop_user_data_free(void *user_data) {
    drop_ctx *c = user_data;
    pthread_mutex_lock(&c->lock);
    c->shared = NULL;
    if (!c->tsfn_gone) napi_release_threadsafe_function(c->tsfn, napi_tsfn_release);
    pthread_mutex_unlock(&c->lock);
    drop_ctx_unref(c);
}

/* JS thread: one dropped message. env is NULL while the tsfn is torn down with items left. */
static void drop_call_js(napi_env env, napi_value fn, void *context, void *data) {
    (void)context;
    drop_item *item = data;
    if (env == NULL || fn == NULL) {
        orc_msg_release(item->msg);
        free(item);
        return;
    }
    static const char *const reasons[] = {"unknown", "overflow", "expired", "freed"};
    const char *reason = item->reason >= 1 && item->reason <= 3 ? reasons[item->reason] : reasons[0];
    napi_value argv[2], undef, result;
    argv[0] = orc_node_message_adopt(env, item->msg);  /* takes the reference */
    free(item);
    if (!argv[0]) return;
    if (napi_create_string_utf8(env, reason, NAPI_AUTO_LENGTH, &argv[1]) != napi_ok) return;
    napi_get_undefined(env, &undef);
    napi_call_function(env, undef, fn, 2, argv, &result);  /* a throw is an uncaught exception */
}

/* JS thread: the tsfn is finalized, after the queue released it or because the environment is
 * being torn down. In the second case the queue may live on in other threads: unregister. */
static void drop_tsfn_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    drop_ctx *c = data;
    pthread_mutex_lock(&c->lock);
    c->tsfn_gone = true;
    nq_shared *s = c->shared && shared_try_retain(c->shared) ? c->shared : NULL;
    pthread_mutex_unlock(&c->lock);
    if (s) {
        /* Still registered: remove it. This waits for a drop_cb in progress, then calls
         * drop_user_data_free. (The C ABI has no "remove if it is still this one": a handler
         * another thread registers in the instant between the unlock above and this call
         * would be removed too.) */
        orc_queue_set_drop_callback(s->q, NULL, NULL, NULL);
        shared_release(s);
    }
    drop_ctx_unref(c);
}

/* ------------------------------------------------------------------------- wrap */

static void wrap_finalize(napi_env env, void *data, void *hint) {
    (void)hint;
    nq_wrap *w = data;
    if (w->poll) poll_unuse(env, w->poll);
    shared_release(w->shared);
    free(w);
}

static nq_wrap *unwrap_queue(napi_env env, napi_value v) {
    bool tagged = false;
    void *w = NULL;
    napi_valuetype t;
    if (v && napi_typeof(env, v, &t) == napi_ok && t == napi_object &&
        napi_check_object_type_tag(env, v, &orc_node_tag_queue, &tagged) == napi_ok && tagged &&
        napi_unwrap(env, v, &w) == napi_ok && w)
        return w;
    orc_node_throw_msg(env, ORC_EINVAL, true, "expected a Queue");
    return NULL;
}

orc_queue_t *orc_node_queue_unwrap(napi_env env, napi_value v) {
    nq_wrap *w = unwrap_queue(env, v);
    return w ? w->shared->q : NULL;
}

static nq_wrap *this_queue(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
    napi_value self;
    size_t zero = 0;
    if (napi_get_cb_info(env, info, argc ? argc : &zero, argv, &self, NULL) != napi_ok) {
        orc_node_throw_napi(env, "napi_get_cb_info");
        return NULL;
    }
    return unwrap_queue(env, self);
}

static bool attach(napi_env env, napi_value obj, nq_shared *s) {
    nq_wrap *w = calloc(1, sizeof *w);
    if (!w) {
        shared_release(s);
        orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
        return false;
    }
    w->shared = s;
    if (napi_type_tag_object(env, obj, &orc_node_tag_queue) != napi_ok ||
        napi_wrap(env, obj, w, wrap_finalize, NULL, NULL) != napi_ok) {
        shared_release(s);
        free(w);
        orc_node_throw_napi(env, "napi_wrap");
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------- constructor */

static bool opt_int64(napi_env env, napi_value obj, const char *key, int64_t *out, bool *present) {
    bool has = false;
    napi_value v;
    *present = false;
    if (napi_has_named_property(env, obj, key, &has) != napi_ok) return false;
    if (!has) return true;
    if (napi_get_named_property(env, obj, key, &v) != napi_ok) return false;
    if (orc_node_is_nullish(env, v)) return true;
    if (!orc_node_get_int64(env, v, key, out)) return false;
    *present = true;
    return true;
}

static bool parse_policy(napi_env env, napi_value v, orc_queue_policy_t *out) {
    static const struct { const char *name; orc_queue_policy_t p; } names[] = {
        {"block", ORC_POLICY_BLOCK}, {"reject", ORC_POLICY_REJECT},
        {"dropOldest", ORC_POLICY_DROP_OLDEST}, {"dropNewest", ORC_POLICY_DROP_NEWEST},
    };
    napi_valuetype t;
    char s[32];
    size_t n;
    if (napi_typeof(env, v, &t) == napi_ok && t == napi_string &&
        napi_get_value_string_utf8(env, v, s, sizeof s, &n) == napi_ok) {
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
            if (strcmp(s, names[i].name) == 0) {
                *out = names[i].p;
                return true;
            }
    }
    orc_node_throw_msg(env, ORC_EINVAL, true, "policy must be 'block', 'reject', 'dropOldest' or 'dropNewest'");
    return false;
}

static napi_value queue_ctor(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], self, target;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
    NAPI_CALL(env, napi_get_new_target(env, info, &target));
    if (target == NULL) return orc_node_throw_msg(env, ORC_EINVAL, true, "Queue must be called with new");

    orc_node_env *d = orc_node_env_get(env);
    if (argc >= 1 && d && d->adopt_queue) {
        napi_value sentinel;
        bool same = false;
        NAPI_CALL(env, napi_get_reference_value(env, d->adopt_sentinel, &sentinel));
        NAPI_CALL(env, napi_strict_equals(env, argv[0], sentinel, &same));
        if (same) {
            nq_shared *s = d->adopt_queue;
            d->adopt_queue = NULL;
            return attach(env, self, s) ? self : NULL;
        }
    }

    orc_queue_options_t opts;
    orc_queue_options_init(&opts);
    char name[256];
    if (argc >= 1 && !orc_node_is_nullish(env, argv[0])) {
        napi_value o = argv[0], v;
        napi_valuetype t;
        NAPI_CALL(env, napi_typeof(env, o, &t));
        if (t != napi_object) return orc_node_throw_msg(env, ORC_EINVAL, true, "Queue options must be an object");
        int64_t x;
        bool has;
        if (!opt_int64(env, o, "capacity", &x, &has)) return NULL;
        if (has) {
            if (x < 0) return orc_node_throw_msg(env, ORC_EINVAL, true, "capacity must be >= 0 (0 = unbounded)");
            opts.capacity = (size_t)x;
        }
        if (!opt_int64(env, o, "pushTimeoutMs", &x, &has)) return NULL;
        if (has) opts.push_timeout_ms = x;
        if (!opt_int64(env, o, "spinUs", &x, &has)) return NULL;
        if (has) {
            if (x < 0 || x > 1000000) return orc_node_throw_msg(env, ORC_EINVAL, true, "spinUs must be 0..1000000");
            opts.spin_us = (int32_t)x;
        }
        NAPI_CALL(env, napi_has_named_property(env, o, "policy", &has));
        if (has) {
            NAPI_CALL(env, napi_get_named_property(env, o, "policy", &v));
            if (!orc_node_is_nullish(env, v) && !parse_policy(env, v, &opts.policy)) return NULL;
        }
        NAPI_CALL(env, napi_has_named_property(env, o, "name", &has));
        if (has) {
            NAPI_CALL(env, napi_get_named_property(env, o, "name", &v));
            if (!orc_node_is_nullish(env, v)) {
                size_t n = 0;
                NAPI_CALL(env, napi_typeof(env, v, &t));
                if (t != napi_string) return orc_node_throw_msg(env, ORC_EINVAL, true, "name must be a string");
                NAPI_CALL(env, napi_get_value_string_utf8(env, v, NULL, 0, &n));
                if (n >= sizeof name) return orc_node_throw_msg(env, ORC_EINVAL, true, "name is longer than 255 bytes");
                NAPI_CALL(env, napi_get_value_string_utf8(env, v, name, sizeof name, &n));
                if (strlen(name) != n) return orc_node_throw_msg(env, ORC_EINVAL, true, "name must not contain NUL");
                opts.name = name;
            }
        }
    }
    nq_shared *s = calloc(1, sizeof *s);
    if (!s) return orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
    int rc = orc_queue_new(&opts, &s->q);
    if (rc == ORC_OK) rc = orc_queue_fd(s->q, &s->fd);
    if (rc != ORC_OK) {
        orc_queue_free(s->q);
        free(s);
        return orc_node_throw(env, rc);
    }
    atomic_init(&s->refs, 1);
    return attach(env, self, s) ? self : NULL;
}

/* ---------------------------------------------------------------- producers */

static napi_value push(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    nq_wrap *w = this_queue(env, info, &argc, argv);
    if (!w) return NULL;
    if (argc < 1) return orc_node_throw_msg(env, ORC_EINVAL, true, "push(message)");
    orc_msg_t *msg = orc_node_message_unwrap(env, argv[0]);
    if (!msg) return NULL;
    orc_msg_retain(msg);  /* the queue's reference; the JS object keeps its own */
    int rc = orc_queue_push(w->shared->q, msg);
    if (rc != ORC_OK) {
        orc_msg_release(msg);
        return orc_node_throw(env, rc);
    }
    return NULL;
}

/* pushBatch(messages) -> number taken. Throws when the first message is refused; otherwise
 * returns how many were taken (the rest stay with the caller), as orc_queue_push_batch. */
static napi_value push_batch(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    nq_wrap *w = this_queue(env, info, &argc, argv);
    if (!w) return NULL;
    bool is_array = false;
    if (argc < 1 || napi_is_array(env, argv[0], &is_array) != napi_ok || !is_array)
        return orc_node_throw_msg(env, ORC_EINVAL, true, "pushBatch(messages: Message[])");
    uint32_t n = 0;
    NAPI_CALL(env, napi_get_array_length(env, argv[0], &n));
    if (n == 0) {
        napi_value zero;
        napi_create_uint32(env, 0, &zero);
        return zero;
    }
    orc_msg_t *stack[64];
    orc_msg_t **msgs = n <= 64 ? stack : malloc(sizeof *msgs * n);
    if (!msgs) return orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
    uint32_t got = 0;
    for (; got < n; got++) {
        napi_value el;
        if (napi_get_element(env, argv[0], got, &el) != napi_ok) break;
        orc_msg_t *m = orc_node_message_unwrap(env, el);
        if (!m) break;
        msgs[got] = orc_msg_retain(m);
    }
    napi_value result = NULL;
    if (got == n) {
        size_t accepted = 0;
        int rc = orc_queue_push_batch(w->shared->q, msgs, n, &accepted);
        for (size_t i = accepted; i < n; i++) orc_msg_release(msgs[i]);
        if (rc != ORC_OK && accepted == 0) orc_node_throw(env, rc);
        else napi_create_double(env, (double)accepted, &result);
    } else {
        for (uint32_t i = 0; i < got; i++) orc_msg_release(msgs[i]);
    }
    if (msgs != stack) free(msgs);
    return result;
}

/* ---------------------------------------------------------------- consumers */

/* tryPop() -> Message | null (empty). Throws ORC_ECLOSED (closed and drained), ORC_EFAILED. */
static napi_value try_pop(napi_env env, napi_callback_info info) {
    nq_wrap *w = this_queue(env, info, NULL, NULL);
    if (!w) return NULL;
    orc_msg_t *msg = NULL;
    int rc = orc_queue_pop(w->shared->q, 0, &msg);
    if (rc == ORC_EAGAIN) {
        napi_value n;
        napi_get_null(env, &n);
        return n;
    }
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    return orc_node_message_adopt(env, msg);
}

/* popBatch(max = 256, timeoutMs = 0) -> Message[] ([] when nothing came). A timeout other than
 * 0 blocks the calling JS thread: meant for worker threads; use the async iterator or pop()
 * on a thread that must stay responsive. Throws ORC_ECLOSED / ORC_EFAILED. */
static napi_value pop_batch(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    nq_wrap *w = this_queue(env, info, &argc, argv);
    if (!w) return NULL;
    int64_t max = 256, timeout = 0;
    if (argc >= 1 && !orc_node_is_nullish(env, argv[0]) && !orc_node_get_int64(env, argv[0], "max", &max)) return NULL;
    if (argc >= 2 && !orc_node_is_nullish(env, argv[1]) && !orc_node_get_int64(env, argv[1], "timeoutMs", &timeout)) return NULL;
    if (max < 1 || max > 65536) return orc_node_throw_msg(env, ORC_EINVAL, true, "max must be 1..65536");
    orc_msg_t *stack[256];
    orc_msg_t **out = max <= 256 ? stack : malloc(sizeof *out * (size_t)max);
    if (!out) return orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
    size_t n = 0;
    int rc = orc_queue_pop_batch(w->shared->q, out, (size_t)max, timeout, &n);
    napi_value arr = NULL;
    if (rc == ORC_EAGAIN || rc == ORC_ETIMEDOUT) {
        n = 0;
    } else if (rc != ORC_OK) {
        if (out != stack) free(out);
        return orc_node_throw(env, rc);
    }
    size_t i = 0;
    if (napi_create_array_with_length(env, n, &arr) == napi_ok) {
        for (; i < n; i++) {
            napi_value m = orc_node_message_adopt(env, out[i]);  /* takes the reference */
            if (!m || napi_set_element(env, arr, (uint32_t)i, m) != napi_ok) {
                i++;
                arr = NULL;
                break;
            }
        }
    } else {
        orc_node_throw_napi(env, "napi_create_array_with_length");
    }
    for (; i < n; i++) orc_msg_release(out[i]);
    if (out != stack) free(out);
    return arr;
}

/* _wait() -> Promise<void>, resolved when the readiness fd is readable (messages, closed or
 * failed). Does not pop. */
static napi_value wait_readable(napi_env env, napi_callback_info info) {
    nq_wrap *w = this_queue(env, info, NULL, NULL);
    if (!w) return NULL;
    orc_node_env *d = orc_node_env_get(env);
    if (!d) return orc_node_throw_msg(env, ORC_EINTERNAL, false, "addon environment data missing");
    if (w->poll && w->poll->closing) {
        return orc_node_throw_msg(env, ORC_ESTATE, false, "the environment is shutting down");
    }
    if (!w->poll && !(w->poll = poll_get(env, d, w->shared))) return NULL;
    nq_poll *p = w->poll;
    if (p->nwaiters == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 4;
        napi_deferred *nw = realloc(p->waiters, cap * sizeof *nw);
        if (!nw) return orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
        p->waiters = nw;
        p->cap = cap;
    }
    napi_value promise;
    napi_deferred def;
    NAPI_CALL(env, napi_create_promise(env, &def, &promise));
    if (!p->active) {
        int rc = uv_poll_start(&p->handle, UV_READABLE, poll_ready);
        if (rc < 0) {
            char buf[200];
            snprintf(buf, sizeof buf, "uv_poll_start on the queue's readiness fd failed: %s", uv_strerror(rc));
            napi_reject_deferred(env, def, orc_node_make_error(env, ORC_EIO, buf));
            return promise;
        }
        p->active = true;
    }
    p->waiters[p->nwaiters++] = def;
    return promise;
}

/* ---------------------------------------------------------------- control */

static napi_value close_queue(napi_env env, napi_callback_info info) {
    nq_wrap *w = this_queue(env, info, NULL, NULL);
    if (!w) return NULL;
    int rc = orc_queue_close(w->shared->q);
    return rc == ORC_OK ? NULL : orc_node_throw(env, rc);
}

/* fail(message = '', code = ORC_EFAILED) */
static napi_value fail_queue(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    nq_wrap *w = this_queue(env, info, &argc, argv);
    if (!w) return NULL;
    int64_t code = ORC_EFAILED;
    if (argc >= 2 && !orc_node_is_nullish(env, argv[1]) && !orc_node_get_int64(env, argv[1], "code", &code)) return NULL;
    if (code < INT32_MIN || code > INT32_MAX) return orc_node_throw_msg(env, ORC_EINVAL, true, "code must fit in 32 bits");
    char stack[512];
    orc_node_bytes b = {"", 0, NULL};
    if (argc >= 1 && !orc_node_is_nullish(env, argv[0]) &&
        !orc_node_get_bytes(env, argv[0], "message", true, stack, sizeof stack, &b)) return NULL;
    int rc = orc_queue_fail(w->shared->q, (int)code, b.ptr, b.len);
    free(b.heap);
    return rc == ORC_OK ? NULL : orc_node_throw(env, rc);
}

static napi_value get_depth(napi_env env, napi_callback_info info) {
    nq_wrap *w = this_queue(env, info, NULL, NULL);
    if (!w) return NULL;
    napi_value v;
    NAPI_CALL(env, napi_create_double(env, (double)orc_queue_depth(w->shared->q), &v));
    return v;
}

static napi_value get_fd(napi_env env, napi_callback_info info) {
    nq_wrap *w = this_queue(env, info, NULL, NULL);
    if (!w) return NULL;
    napi_value v;
    NAPI_CALL(env, napi_create_int32(env, w->shared->fd, &v));
    return v;
}

static napi_value stats(napi_env env, napi_callback_info info) {
    nq_wrap *w = this_queue(env, info, NULL, NULL);
    if (!w) return NULL;
    orc_queue_stats_t s;
    memset(&s, 0, sizeof s);
    s.struct_size = sizeof s;
    int rc = orc_queue_stats(w->shared->q, &s);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    const struct { const char *name; uint64_t v; } f[] = {
        {"pushed", s.pushed}, {"popped", s.popped}, {"handedOff", s.handed_off},
        {"droppedOverflow", s.dropped_overflow}, {"expired", s.expired}, {"rejected", s.rejected},
        {"blockedPushes", s.blocked_pushes}, {"depth", s.depth}, {"depthHighWater", s.depth_high_water},
        {"waitP50Ns", s.wait_p50_ns}, {"waitP95Ns", s.wait_p95_ns}, {"waitP99Ns", s.wait_p99_ns},
        {"waitMaxNs", s.wait_max_ns}, {"waitCount", s.wait_count},
    };
    napi_value obj;
    NAPI_CALL(env, napi_create_object(env, &obj));
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        napi_value v;
        NAPI_CALL(env, napi_create_double(env, (double)f[i].v, &v));
        NAPI_CALL(env, napi_set_named_property(env, obj, f[i].name, v));
    }
    return obj;
}


/* onDrop(fn | null): fn(message, reason) for every message the queue drops; one handler per
 * queue (a later call, from any thread, replaces it). */
static napi_value on_drop(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    nq_wrap *w = this_queue(env, info, &argc, argv);
    if (!w) return NULL;
    if (argc < 1 || orc_node_is_nullish(env, argv[0])) {
        int rc = orc_queue_set_drop_callback(w->shared->q, NULL, NULL, NULL);
        return rc == ORC_OK ? NULL : orc_node_throw(env, rc);
    }
    napi_valuetype t;
    NAPI_CALL(env, napi_typeof(env, argv[0], &t));
    if (t != napi_function) return orc_node_throw_msg(env, ORC_EINVAL, true, "onDrop(handler): handler must be a function or null");
    drop_ctx *c = calloc(1, sizeof *c);
    if (!c) return orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
    pthread_mutex_init(&c->lock, NULL);
    c->shared = w->shared;
    c->refs = 2;
    napi_value name;
    NAPI_CALL(env, napi_create_string_utf8(env, "orchestra.Queue.onDrop", NAPI_AUTO_LENGTH, &name));
    if (napi_create_threadsafe_function(env, argv[0], NULL, name, 0, 1, c, drop_tsfn_finalize, NULL,
                                        drop_call_js, &c->tsfn) != napi_ok) {
        pthread_mutex_destroy(&c->lock);
        free(c);
        orc_node_throw_napi(env, "napi_create_threadsafe_function");
        return NULL;
    }
    /* A handler alone does not keep the process alive. */
    napi_unref_threadsafe_function(env, c->tsfn);
    int rc = orc_queue_set_drop_callback(w->shared->q, drop_cb, c, drop_user_data_free);
    if (rc != ORC_OK) {
        /* Not registered: user_data_free will not run; release the tsfn (its finalizer drops
         * the tsfn side) and the queue side here. */
        pthread_mutex_lock(&c->lock);
        c->shared = NULL;
        napi_release_threadsafe_function(c->tsfn, napi_tsfn_release);
        pthread_mutex_unlock(&c->lock);
        drop_ctx_unref(c);
        return orc_node_throw(env, rc);
    }
    return NULL;
}

/* ---------------------------------------------------------------- sharing */

/* share() -> bigint token holding one reference, for Queue.fromShared in any thread. */
static napi_value share(napi_env env, napi_callback_info info) {
    nq_wrap *w = this_queue(env, info, NULL, NULL);
    if (!w) return NULL;
    token *t = malloc(sizeof *t);
    if (!t) return orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
    shared_retain(w->shared);
    t->s = w->shared;
    pthread_mutex_lock(&tokens_lock);
    t->id = next_token++;
    t->next = tokens;
    tokens = t;
    pthread_mutex_unlock(&tokens_lock);
    napi_value v;
    NAPI_CALL(env, napi_create_bigint_uint64(env, t->id, &v));
    return v;
}

/* Queue.fromShared(token) -> Queue over the same orc_queue_t; consumes the token. */
static napi_value from_shared(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    uint64_t id = 0;
    bool lossless = false;
    napi_valuetype t;
    if (argc < 1 || napi_typeof(env, argv[0], &t) != napi_ok || t != napi_bigint ||
        napi_get_value_bigint_uint64(env, argv[0], &id, &lossless) != napi_ok || !lossless)
        return orc_node_throw_msg(env, ORC_EINVAL, true, "Queue.fromShared(token): token must be a bigint from queue.share()");
    nq_shared *s = NULL;
    pthread_mutex_lock(&tokens_lock);
    for (token **pp = &tokens; *pp; pp = &(*pp)->next)
        if ((*pp)->id == id) {
            token *found = *pp;
            *pp = found->next;
            s = found->s;
            free(found);
            break;
        }
    pthread_mutex_unlock(&tokens_lock);
    if (!s) return orc_node_throw_msg(env, ORC_ENOTFOUND, false, "unknown queue token (each token from share() can be used once)");

    orc_node_env *d = orc_node_env_get(env);
    napi_value ctor, sentinel, obj;
    if (!d || napi_get_reference_value(env, d->queue_ctor, &ctor) != napi_ok ||
        napi_get_reference_value(env, d->adopt_sentinel, &sentinel) != napi_ok) {
        shared_release(s);
        return orc_node_throw_msg(env, ORC_EINTERNAL, false, "queue class missing");
    }
    d->adopt_queue = s;
    napi_status st = napi_new_instance(env, ctor, 1, &sentinel, &obj);
    if (d->adopt_queue) {
        shared_release(d->adopt_queue);
        d->adopt_queue = NULL;
    }
    if (st != napi_ok) {
        orc_node_throw_napi(env, "napi_new_instance(Queue)");
        return NULL;
    }
    return obj;
}

/* ------------------------------------------------------------------------- init */

#define METHOD(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_default_method, NULL}
#define GETTER(name, fn) {name, NULL, NULL, fn, NULL, NULL, napi_configurable, NULL}

napi_value orc_node_init_queue(napi_env env, napi_value exports, orc_node_env *d) {
    napi_property_descriptor props[] = {
        METHOD("push", push),
        METHOD("pushBatch", push_batch),
        METHOD("tryPop", try_pop),
        METHOD("popBatch", pop_batch),
        METHOD("_wait", wait_readable),
        METHOD("close", close_queue),
        METHOD("fail", fail_queue),
        METHOD("stats", stats),
        METHOD("share", share),
        METHOD("onDrop", on_drop),
        GETTER("depth", get_depth),
        GETTER("fd", get_fd),
        {"fromShared", NULL, from_shared, NULL, NULL, NULL, napi_static | napi_writable | napi_configurable, NULL},
    };
    napi_value cls;
    NAPI_CALL(env, napi_define_class(env, "Queue", NAPI_AUTO_LENGTH, queue_ctor, NULL,
                                     sizeof props / sizeof props[0], props, &cls));
    NAPI_CALL(env, napi_create_reference(env, cls, 1, &d->queue_ctor));
    NAPI_CALL(env, napi_set_named_property(env, exports, "Queue", cls));
    return exports;
}
