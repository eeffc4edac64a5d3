/*
 * Shared plumbing of the Node addon (N-API, NAPI_VERSION 8): per-environment data, errors as
 * JS Errors with a `code`, argument conversion and wrapping of library handles.
 *
 * The addon is a thin wrapper over include/orchestra.h: it converts values and handles and
 * calls the C ABI; protocol logic stays in the library (docs/abi.md). Each part lives in its own
 * file with one init function called from addon.c:
 *   message.c  Message (orc_msg_t)         queue.c  Queue (orc_queue_t)
 *   ws.c       Runtime, Server, Client, Connection (orc_runtime_*, orc_server_*, orc_client_*,
 *              orc_conn_*)
 *   agent.c    Agent (orc_agent_*)
 *   pump.c     the event pump both use: events from the I/O thread to JS through one
 *              napi_threadsafe_function per object, and the lifetime of the object's context
 */
#ifndef ORC_NODE_ADDON_H
#define ORC_NODE_ADDON_H

#include <node_api.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "orchestra.h"

struct nq_poll;
struct pump;

/* Per-environment state (main thread and every worker_thread get their own), stored with
 * napi_set_instance_data and freed when the environment is torn down. */
typedef struct orc_node_env {
    napi_env env;
    napi_ref message_ctor;       /* the Message class */
    napi_ref queue_ctor;         /* the Queue class */
    napi_ref adopt_sentinel;     /* private object: "construct around the pending handle" */
    orc_msg_t *adopt_msg;        /* the message the next sentinel construction adopts */
    void *adopt_queue;           /* the shared queue the next sentinel construction adopts */
    struct nq_poll *polls;       /* readiness watchers of queues on this env's loop */
    struct pump *pumps;          /* live servers, clients and agents (pump.c) */
    bool uses_shared_runtime;    /* holds a reference to the process-wide runtime (ws.c) */
    bool closing;                /* the environment's cleanup has run: make nothing new */
} orc_node_env;

orc_node_env *orc_node_env_get(napi_env env);

/* Type tags: napi_unwrap is only called on objects carrying the expected tag, so calling a
 * Message method on a Queue (or any other object) throws instead of misreading memory. */
extern const napi_type_tag orc_node_tag_message;
extern const napi_type_tag orc_node_tag_queue;
extern const napi_type_tag orc_node_tag_runtime, orc_node_tag_server, orc_node_tag_client, orc_node_tag_conn;

/* The orc_queue_t of a Queue object (borrowed: valid while the object lives), or NULL with a
 * TypeError thrown. */
orc_queue_t *orc_node_queue_unwrap(napi_env env, napi_value v);

/* Throws a JS Error for a failed library call: message = orc_last_error() of this thread
 * (orc_strerror(code) when empty), `code` = "ORC_EFULL", `errno` = -9. Returns NULL so a
 * callback can `return orc_node_throw(env, rc);`. */
napi_value orc_node_throw(napi_env env, int code);

/* Throws an Error (or TypeError when `type_error`) with `code` = orc_err_name(code) and the
 * given message, for argument problems the addon finds before calling the library. */
napi_value orc_node_throw_msg(napi_env env, int code, bool type_error, const char *message);

/* Makes the Error object orc_node_throw would throw, without throwing it. */
napi_value orc_node_make_error(napi_env env, int code, const char *message);

/* Evaluates a napi call; on failure throws (unless an exception is already pending) and
 * returns NULL from the calling function. */
#define NAPI_CALL(env, call)                                                      \
    do {                                                                          \
        if ((call) != napi_ok) {                                                  \
            orc_node_throw_napi(env, #call);                                      \
            return NULL;                                                          \
        }                                                                         \
    } while (0)
void orc_node_throw_napi(napi_env env, const char *what);

/* Bytes of a JS value: a string (as UTF-8; lone surrogates become U+FFFD) or a Buffer /
 * TypedArray / DataView / ArrayBuffer. The result points into `stack` when it fits, else into
 * a malloc'd block stored in *heap (free it with free()). Returns false with an exception
 * thrown when the value is none of these. */
typedef struct orc_node_bytes {
    const char *ptr;
    size_t len;
    char *heap;
} orc_node_bytes;
bool orc_node_get_bytes(napi_env env, napi_value v, const char *what, bool strings_only,
                        char *stack, size_t stack_cap, orc_node_bytes *out);

/* Optional arguments: true when `v` is undefined or null. */
bool orc_node_is_nullish(napi_env env, napi_value v);

/* Reads a number argument as int64 (integral, finite); throws a TypeError otherwise. */
bool orc_node_get_int64(napi_env env, napi_value v, const char *what, int64_t *out);

/* A JS string for ptr+len of UTF-8 (NULL when the value could not be made). */
napi_value orc_node_string(napi_env env, const char *ptr, size_t len);

/* Wraps a message reference the caller owns in a new Message object (the object takes the
 * reference; it is released by the object's finalizer or msg.release()). On failure the
 * reference is released and NULL returned with an exception pending. Used by the queue and,
 * later, by Client/Server to hand received messages to JS. */
napi_value orc_node_message_adopt(napi_env env, orc_msg_t *msg);

/* The message of a Message object (borrowed), or NULL with a TypeError thrown. */
orc_msg_t *orc_node_message_unwrap(napi_env env, napi_value v);

/* ------------------------------------------- shared by ws.c and agent.c (defined in ws.c) */

/* A runtime with the references of the objects made on it. */
typedef struct nrt {
    orc_runtime_t *rt;
    _Atomic long refs;
} nrt;
void nrt_retain(nrt *r);
/* JS threads only (the last release frees the runtime, joining its I/O thread). */
void nrt_release(nrt *r);
/* The runtime for a new object: options.runtime (a Runtime handle), or the process-wide one.
 * Returns a reference, or NULL with an exception thrown. */
nrt *pick_runtime(napi_env env, napi_value options);

/* The pointer of an external carrying `tag`, or NULL with a TypeError ("expected a <what>
 * handle") thrown. */
void *unwrap_ext(napi_env env, napi_value v, const napi_type_tag *tag, const char *what);

/* Options: absent, undefined and null keys are "not given" (out left unchanged). Each throws
 * a clear TypeError/Error naming the key and returns false on a bad value. */
typedef struct strpool {  /* strings kept alive until the options are consumed */
    char **items;
    size_t n, cap;
} strpool;
void pool_free(strpool *p);
char *pool_str(napi_env env, strpool *p, napi_value v, const char *what);
bool get_prop(napi_env env, napi_value obj, const char *key, napi_value *out);
bool opt_num(napi_env env, napi_value obj, const char *key, int64_t min, int64_t max, int64_t *out, bool *has);
bool opt_bool(napi_env env, napi_value obj, const char *key, int *out);
bool opt_str(napi_env env, strpool *p, napi_value obj, const char *key, const char **out);
bool opt_strs(napi_env env, strpool *p, napi_value obj, const char *key, const char ***out, size_t *count);

/* -------------------------------------------------- the event pump (pump.c; see there) */

typedef struct pump_item {
    struct pump_item *next;
} pump_item;

struct pump;
typedef struct pump_ops {
    const char *what;   /* "server", "client", "agent": for "the agent was freed" */
    /* JS thread: hands one item to `fn`, the object's dispatch function (NULL when it is gone:
     * then only let go of what the item holds), and frees the item. */
    void (*deliver)(napi_env env, struct pump *p, napi_value fn, pump_item *it);
    /* Any thread, no JS: frees an item that will not be delivered. */
    void (*drop)(struct pump *p, pump_item *it);
    /* JS thread: frees the library object (orc_*_free); no callback of it runs afterwards. */
    void (*free_object)(struct pump *p);
} pump_ops;

/* The first member of every context ws.c and agent.c make. */
typedef struct pump {
    pthread_mutex_t lock;
    int refs;                   /* library + tsfn + JS external + one per loan */
    int loans;                  /* objects out that post back (an agent's task slots) */
    napi_threadsafe_function tsfn;
    bool tsfn_live;             /* neither released nor finalized: may be called */
    bool scheduled;             /* a tsfn call is on its way for the current list */
    pump_item *head, *tail;
    const pump_ops *ops;

    /* JS thread only. */
    napi_env env;
    napi_ref dispatch;          /* weak unless refd: the JS object's dispatch function */
    bool freed;                 /* free_object done */
    bool refd;                  /* keeps the process alive */
    nrt *runtime;               /* the reference the object holds */
    struct pump *next_live;     /* in the environment's list while not freed */
} pump;

/* A context of `size` bytes (a struct whose first member is a pump) with its tsfn, holding
 * `runtime` (a reference the caller gives it; on failure it stays the caller's). `dispatch` is
 * the JS function that receives the events. Two references: the JS side's and the tsfn's;
 * pump_retain adds the library's before the context is handed to it. NULL with an exception
 * thrown. */
void *pump_new(napi_env env, size_t size, napi_value dispatch, const char *name, const pump_ops *ops, nrt *runtime);
void pump_retain(pump *p);
void pump_unref(pump *p);
/* Any thread: queues an item (the first of a batch schedules one tsfn call). False when the
 * tsfn is gone: the item was dropped. */
bool pump_post(pump *p, pump_item *it);
/* JS thread: calls fn(...argv) on recv (NULL: undefined); a throw becomes an uncaught
 * exception. The result, or NULL. */
napi_value pump_call(napi_env env, napi_value recv, napi_value fn, size_t argc, const napi_value *argv);
/* The JS owner of a context that holds its library object: an external carrying `tag`. */
napi_value pump_external(napi_env env, pump *p, const napi_type_tag *tag);
/* After orc_*_new with the context as user_data (the library's reference added): its
 * external, or for rc < 0 the error thrown, the reference dropped and pump_new undone. */
napi_value pump_made(napi_env env, pump *p, int rc, const napi_type_tag *tag);
/* A context whose library object could not be made: undo pump_new. */
void pump_abandon(napi_env env, pump *p);
/* JS thread: frees the library object now (idempotent); what it still posts is dropped. */
void pump_free(napi_env env, pump *p);
/* Environment cleanup: frees every live context of the environment. */
void pump_free_all(orc_node_env *d);
/* Loans: an object that may post to the context from any thread after pump_free (the tsfn
 * stays until the last is returned). pump_return: any thread. */
void pump_lend(pump *p);
void pump_return(pump *p);
/* The context of an external carrying `tag` ("expected a <type> handle" otherwise); with
 * `live`, ORC_ECLOSED once freed. NULL with an exception thrown. */
void *pump_unwrap(napi_env env, napi_value v, const napi_type_tag *tag, const char *type, bool live);
/* JS thread: whether the object keeps the process alive (and its dispatch function strong). */
void pump_set_ref(napi_env env, pump *p, bool want);

/* Part initialisers (one per file). */
napi_value orc_node_init_message(napi_env env, napi_value exports, orc_node_env *data);
napi_value orc_node_init_queue(napi_env env, napi_value exports, orc_node_env *data);
napi_value orc_node_init_ws(napi_env env, napi_value exports, orc_node_env *data);
napi_value orc_node_init_agent(napi_env env, napi_value exports, orc_node_env *data);

#endif
