/*
 * The event pump: how the library's events reach JavaScript, and the lifetime of the context
 * they go through. One copy, used by ws.c (Server, Client) and agent.c (Agent).
 *
 * Delivery. The library calls a part's callbacks on its I/O thread. Each callback copies what
 * it needs into an item, and pump_post appends the item to the context's list under a mutex
 * and, when the list was empty, calls the context's napi_threadsafe_function once
 * (non-blocking; the tsfn's own queue is unbounded). On the JS thread the tsfn's call_js takes
 * the whole list and hands each item to the part's deliver function, in the order the library
 * produced them. One tsfn call per batch rather than per event: under load the I/O thread
 * appends to a list the JS thread has not taken yet, and no tsfn call is made at all. The
 * dispatch function is held weakly (the JS object holds it strongly), so an unreferenced object
 * can be collected; its events are then dropped. While the object keeps the process alive
 * (pump_set_ref) the tsfn is ref'd and the dispatch function held strongly.
 *
 * Lifetime. A context is shared by its owners, each dropping one reference: the library
 * (user_data_free, on the I/O thread, once it stops calling the callbacks), the tsfn (its
 * finalizer, on the JS thread: after the release in pump_free, or when the environment is torn
 * down), the JS side (the external's finalizer), and each loan: an object of the part's that
 * posts back to the context from any thread (an agent's task slot), returned with
 * pump_return. The mutex orders "the tsfn may be called" against the release and the
 * finalizer. pump_free frees the library object on the JS thread; the tsfn is released then,
 * or, while loans are out, when the last comes back, so that they can still post.
 *
 * The environment keeps a list of its live contexts and frees them at its cleanup
 * (pump_free_all), before the shared runtime goes.
 */
#include "addon.h"

#include <stdio.h>
#include <stdlib.h>

static void drop_list(pump *p, pump_item *list) {
    for (pump_item *it = list, *n; it; it = n) {
        n = it->next;
        p->ops->drop(p, it);
    }
}

void pump_retain(pump *p) {
    pthread_mutex_lock(&p->lock);
    p->refs++;
    pthread_mutex_unlock(&p->lock);
}

void pump_unref(pump *p) {
    pthread_mutex_lock(&p->lock);
    int left = --p->refs;
    pump_item *list = left == 0 ? p->head : NULL;
    if (left == 0) p->head = p->tail = NULL;
    pthread_mutex_unlock(&p->lock);
    if (left == 0) {
        drop_list(p, list);
        pthread_mutex_destroy(&p->lock);
        free(p);
    }
}

bool pump_post(pump *p, pump_item *it) {
    it->next = NULL;
    pthread_mutex_lock(&p->lock);
    if (!p->tsfn_live) {
        pthread_mutex_unlock(&p->lock);
        p->ops->drop(p, it);
        return false;
    }
    if (p->tail) p->tail->next = it;
    else p->head = it;
    p->tail = it;
    if (!p->scheduled) {
        if (napi_call_threadsafe_function(p->tsfn, NULL, napi_tsfn_nonblocking) == napi_ok) p->scheduled = true;
        /* napi_closing: the environment is going away; the finalizer drops the list. */
    }
    pthread_mutex_unlock(&p->lock);
    return true;
}

napi_value pump_call(napi_env env, napi_value recv, napi_value fn, size_t argc, const napi_value *argv) {
    napi_value result;
    if (!recv) napi_get_undefined(env, &recv);
    if (napi_call_function(env, recv, fn, argc, argv, &result) == napi_ok) return result;
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {   /* a throwing listener is an uncaught exception, as for any event */
        napi_value exc;
        napi_get_and_clear_last_exception(env, &exc);
        napi_fatal_exception(env, exc);
    }
    return NULL;
}

/* JS thread: deliver the listed items. env is NULL when the tsfn is being torn down. */
static void call_js(napi_env env, napi_value unused_fn, void *context, void *data) {
    (void)unused_fn;
    (void)data;
    pump *p = context;
    pthread_mutex_lock(&p->lock);
    pump_item *list = p->head;
    p->head = p->tail = NULL;
    p->scheduled = false;
    pthread_mutex_unlock(&p->lock);
    if (!env) {
        drop_list(p, list);
        return;
    }
    napi_value fn = NULL;
    if (p->dispatch && napi_get_reference_value(env, p->dispatch, &fn) != napi_ok) fn = NULL;
    for (pump_item *it = list, *n; it; it = n) {
        n = it->next;
        napi_handle_scope hs;
        if (napi_open_handle_scope(env, &hs) != napi_ok) {
            p->ops->drop(p, it);
            continue;
        }
        p->ops->deliver(env, p, fn, it);
        napi_close_handle_scope(env, hs);
    }
}

/* JS thread: the tsfn is gone (released by pump_free, or the environment is torn down). */
static void tsfn_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    pump *p = data;
    pthread_mutex_lock(&p->lock);
    p->tsfn_live = false;
    pump_item *list = p->head;
    p->head = p->tail = NULL;
    pthread_mutex_unlock(&p->lock);
    drop_list(p, list);
    pump_unref(p);
}

void *pump_new(napi_env env, size_t size, napi_value dispatch, const char *name, const pump_ops *ops, nrt *runtime) {
    napi_valuetype t;
    if (!dispatch || napi_typeof(env, dispatch, &t) != napi_ok || t != napi_function) {
        orc_node_throw_msg(env, ORC_EINVAL, true, "dispatch must be a function");
        return NULL;
    }
    pump *p = calloc(1, size);
    if (!p) {
        orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    p->env = env;
    p->ops = ops;
    p->refs = 2;    /* JS external + tsfn; the library's is added once it holds the context */
    napi_value resource_name;
    if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
        napi_create_threadsafe_function(env, NULL, NULL, resource_name, 0, 1, p, tsfn_finalize, p, call_js,
                                        &p->tsfn) != napi_ok) {
        pthread_mutex_destroy(&p->lock);
        free(p);
        orc_node_throw_napi(env, "napi_create_threadsafe_function");
        return NULL;
    }
    p->tsfn_live = true;
    p->runtime = runtime;
    napi_unref_threadsafe_function(env, p->tsfn);
    if (napi_create_reference(env, dispatch, 0, &p->dispatch) != napi_ok) p->dispatch = NULL;
    return p;
}

/* Under the lock: the tsfn may no longer be called; its finalizer drops one reference. */
static void release_tsfn(pump *p) {
    p->tsfn_live = false;
    napi_release_threadsafe_function(p->tsfn, napi_tsfn_release);
}

/* The finalizer of a context's external: the JS side lets go. */
static void finalize_external(napi_env env, void *data, void *hint) {
    (void)hint;
    pump *p = data;
    pump_free(env, p);
    pump_unref(p);
}

napi_value pump_external(napi_env env, pump *p, const napi_type_tag *tag) {
    napi_value v;
    if (napi_create_external(env, p, finalize_external, NULL, &v) != napi_ok ||
        napi_type_tag_object(env, v, tag) != napi_ok) {
        orc_node_throw_napi(env, "napi_create_external");
        return NULL;
    }
    orc_node_env *d = orc_node_env_get(env);
    if (d) {
        p->next_live = d->pumps;
        d->pumps = p;
    }
    return v;
}

napi_value pump_made(napi_env env, pump *p, int rc, const napi_type_tag *tag) {
    if (rc == ORC_OK) return pump_external(env, p, tag);
    pump_unref(p);   /* a failed new calls no user_data_free */
    orc_node_throw(env, rc);
    pump_abandon(env, p);
    return NULL;
}

void pump_abandon(napi_env env, pump *p) {
    p->freed = true;
    pthread_mutex_lock(&p->lock);
    release_tsfn(p);
    pthread_mutex_unlock(&p->lock);
    if (p->dispatch) napi_delete_reference(env, p->dispatch);
    p->dispatch = NULL;
    nrt_release(p->runtime);
    p->runtime = NULL;
    pump_unref(p);   /* the JS side's */
}

void pump_free(napi_env env, pump *p) {
    if (p->freed) return;
    p->freed = true;
    orc_node_env *d = orc_node_env_get(env);
    if (d) {
        for (pump **pp = &d->pumps; *pp; pp = &(*pp)->next_live)
            if (*pp == p) {
                *pp = p->next_live;
                break;
            }
    }
    p->ops->free_object(p);   /* no callback runs after it returns */
    pthread_mutex_lock(&p->lock);
    if (p->tsfn_live) {
        if (p->refd) napi_unref_threadsafe_function(env, p->tsfn);
        if (p->loans == 0) release_tsfn(p);
    }
    pthread_mutex_unlock(&p->lock);
    p->refd = false;
    if (p->dispatch) napi_delete_reference(env, p->dispatch);
    p->dispatch = NULL;
    nrt_release(p->runtime);
    p->runtime = NULL;
}

void pump_free_all(orc_node_env *d) {
    while (d->pumps) pump_free(d->env, d->pumps);
}

void pump_lend(pump *p) {
    pthread_mutex_lock(&p->lock);
    p->refs++;
    p->loans++;
    pthread_mutex_unlock(&p->lock);
}

void pump_return(pump *p) {
    pthread_mutex_lock(&p->lock);
    /* The last loan of a freed context: nothing can post any more. */
    if (--p->loans == 0 && p->freed && p->tsfn_live) release_tsfn(p);
    pthread_mutex_unlock(&p->lock);
    pump_unref(p);
}

void *pump_unwrap(napi_env env, napi_value v, const napi_type_tag *tag, const char *type, bool live) {
    pump *p = unwrap_ext(env, v, tag, type);
    if (p && live && p->freed) {
        char buf[96];
        snprintf(buf, sizeof buf, "the %s was freed", p->ops->what);
        orc_node_throw_msg(env, ORC_ECLOSED, false, buf);
        return NULL;
    }
    return p;
}

void pump_set_ref(napi_env env, pump *p, bool want) {
    pthread_mutex_lock(&p->lock);
    bool live = p->tsfn_live && !p->freed;
    pthread_mutex_unlock(&p->lock);
    if (!live || want == p->refd) return;
    /* While it keeps the process alive, the object is also kept from the garbage collector:
     * its dispatch function (which holds the object) becomes a strong reference. Otherwise an
     * active object that only its own listeners refer to would be collected, and freed,
     * mid-conversation. */
    uint32_t count;
    if (want) {
        napi_ref_threadsafe_function(env, p->tsfn);
        if (p->dispatch) napi_reference_ref(env, p->dispatch, &count);
    } else {
        napi_unref_threadsafe_function(env, p->tsfn);
        if (p->dispatch) napi_reference_unref(env, p->dispatch, &count);
    }
    p->refd = want;
}
