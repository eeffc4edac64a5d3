/*
 * orchestra.h - the C API of liborchestra, the real-time messaging core for AI-agent
 * orchestration.
 *
 * OVERVIEW
 *   liborchestra is written in Swift and exported through this header as a stable C ABI.
 *   Python (ctypes) and Node (N-API) bindings wrap the same functions.
 *
 * CONVENTIONS (see docs/abi.md)
 *   - Names: functions orc_<object>_<verb>, types orc_<object>_t, constants ORC_*.
 *     Handles are opaque pointers.
 *   - Errors: every fallible function returns int: ORC_OK (0) or a negative ORC_E* code.
 *     orc_strerror(code) and orc_err_name(code) describe a code; orc_last_error() gives the
 *     calling thread's detailed message for the last failed call. A callback is never invoked
 *     for a call that failed.
 *   - Objects are made through an out-parameter: int orc_queue_new(const orc_queue_options_t *,
 *     orc_queue_t **out). Options structs are first filled by orc_<object>_options_init(&opts),
 *     so fields can be added later without breaking callers. orc_<object>_free(NULL) is a no-op.
 *   - Ownership: what the library allocates, the library frees (orc_*_free, orc_msg_release,
 *     orc_buf_free). Input bytes are copied unless a function says it borrows them. Pointers
 *     returned into a message stay valid while the caller holds a reference and does not change
 *     that field. Byte data is always pointer + length, never NUL-terminated by assumption.
 *   - Callbacks take `void *user_data` first; a registration may also take a user_data_free
 *     function, called exactly once when the library lets go of user_data.
 *   - Nothing that crosses this boundary can crash the caller: NULL pointers, bad lengths,
 *     invalid UTF-8 and calls in the wrong state return an error code.
 *
 * THREADS
 *   Any thread may call the API unless a function says otherwise. Messages are not
 *   synchronised: build or change a message on one thread, then share it read-only (retain it
 *   for each holder). Queues, routers and metrics registries are thread-safe. Each function's
 *   comment ends with the threads that may call it.
 */
#ifndef ORCHESTRA_H
#define ORCHESTRA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== VERSION AND ERRORS */

#define ORC_VERSION_MAJOR 0
#define ORC_VERSION_MINOR 1
#define ORC_VERSION_PATCH 0
/** The version this header describes, as one number: major * 10000 + minor * 100 + patch. */
#define ORC_VERSION_NUMBER (ORC_VERSION_MAJOR * 10000 + ORC_VERSION_MINOR * 100 + ORC_VERSION_PATCH)

/** The library's version as major * 10000 + minor * 100 + patch. Compare it with
 *  ORC_VERSION_NUMBER to detect a header/library mismatch. Any thread. */
int orc_version(void);

/** The library's version as a static string, e.g. "0.1.0". Any thread. */
const char *orc_version_string(void);

#define ORC_OK          0    /* success */
#define ORC_EINVAL     (-1)  /* invalid argument (NULL pointer, bad length, bad option) */
#define ORC_ENOMEM     (-2)  /* out of memory */
#define ORC_EPARSE     (-3)  /* malformed input (JSON, MessagePack, base64, deflate data) */
#define ORC_ETOOBIG    (-4)  /* a size or depth limit was exceeded */
#define ORC_EAGAIN     (-5)  /* the operation would block (e.g. pop on an empty queue) */
#define ORC_ETIMEDOUT  (-6)  /* a timeout expired */
#define ORC_ECLOSED    (-7)  /* the object is closed (a closed queue that has been drained) */
#define ORC_EFAILED    (-8)  /* the object was failed with orc_queue_fail(); see orc_last_error() */
#define ORC_EFULL      (-9)  /* a bounded queue is full (reject policy, or block timed out) */
#define ORC_ENOSPC    (-10)  /* the caller's buffer is too small; the needed size is reported */
#define ORC_ECRYPTO   (-11)  /* authentication failed (tampered data, wrong key) or a crypto error */
#define ORC_ENOTFOUND (-12)  /* no such item (header, subscription, metric) */
#define ORC_ESTATE    (-13)  /* the object is in the wrong state for this call */
#define ORC_ENOTSUP   (-14)  /* not supported */
#define ORC_EVERSION  (-15)  /* unsupported version */
#define ORC_EIO       (-16)  /* I/O or system call error */
#define ORC_EINTERNAL (-17)  /* a bug in liborchestra: please report it */

/** A static description of `code` ("invalid argument"); "unknown error code" for a value not
 *  in the table. Never NULL. Any thread. */
const char *orc_strerror(int code);

/** The constant's name for `code` ("ORC_EINVAL"); "ORC_EUNKNOWN" for an unknown value.
 *  Never NULL. Any thread. */
const char *orc_err_name(int code);

/** The calling thread's detailed message for its last failed call, e.g.
 *  "invalid JSON at byte 17: expected ':' after object key". "" if no call failed yet. The
 *  string stays valid until the next failing call on the same thread. Never NULL. Any thread. */
const char *orc_last_error(void);

/** Frees a buffer the library allocated (orc_msg_encode_alloc, orc_metrics_render_alloc, ...).
 *  NULL is a no-op. Any thread. */
void orc_buf_free(void *buf);

/* ============================================================================ MESSAGE */
/* @@SECTION MESSAGE@@ */

/* ============================================================================== CODEC */
/* @@SECTION CODEC@@ */

/* ============================================================================== QUEUE */
/* @@SECTION QUEUE@@ */

/* ============================================================================= ROUTER */
/*
 * A router delivers messages to handlers by subject: the message's type, a dot-separated list
 * of non-empty tokens such as "task.stream". A subscription pattern may use two wildcard
 * tokens: "*" matches exactly one token ("task.*" matches "task.stream", not "task" nor
 * "task.a.b") and ">" matches one or more trailing tokens and must be the last token
 * ("task.>" matches "task.a" and "task.a.b", not "task"; ">" alone matches every subject).
 * A token that mixes a wildcard character with text ("a*", ">b") is an ordinary literal, as in
 * NATS. Subjects and patterns are at most 65536 bytes and 256 tokens; empty tokens ("a..b",
 * ".a", "a.") are rejected, and a published subject may not contain a "*" or ">" token.
 *
 * Publishing runs the middleware in registration order (each may rewrite, replace or stop the
 * message), then every matching handler in subscription order, on the publishing thread. A
 * handler's failure is counted and does not stop the other handlers. A message no handler
 * received goes to the unhandled (dead letter) hook. Matching walks a subject tree: its cost
 * depends on the subject's tokens, not on how many subscriptions exist.
 *
 * Routers are thread-safe. No lock is held while a callback runs, so callbacks may subscribe,
 * unsubscribe or publish on the same router (recursion depth is the caller's responsibility).
 * Every user_data_free is called exactly once, when the router lets go of user_data: after the
 * subscription is removed (or the hook replaced, or the router freed) AND after every publish
 * that was using it has returned, on whichever thread that happens. It is not called when the
 * registering call fails.
 */

#ifndef ORC_MSG_T_DEFINED
#define ORC_MSG_T_DEFINED
/** A message (see MESSAGE). Repeated here so this section stands alone; C11/C++ allow it. */
typedef struct orc_msg orc_msg_t;
#endif

/** A subject router. Thread-safe. */
typedef struct orc_router orc_router_t;

/** A subscription handler. `msg` is borrowed for the call (orc_msg_retain it to keep it).
 *  Return 0 for success; any other value counts as a handler failure. */
typedef int (*orc_handler_cb)(void *user_data, orc_msg_t *msg);

/** What a middleware returns. */
typedef enum {
    ORC_ROUTE_CONTINUE = 0,  /* pass the message on */
    ORC_ROUTE_STOP = 1       /* drop it: no handler and no unhandled hook sees it */
} orc_route_action_t;

/** A middleware. `msg` is borrowed for the call; the middleware may change it in place (the
 *  publisher's message is changed) or replace it: store in *replace a message the middleware
 *  owns a reference to (orc_msg_new, orc_msg_clone, or orc_msg_retain) and the router takes
 *  that reference; the replacement is what later middleware and the handlers see.
 *  Return ORC_ROUTE_CONTINUE or ORC_ROUTE_STOP; a negative value (or any other value) is a
 *  middleware failure: the message is stopped and counted in middleware_failures. A
 *  replacement stored together with a failure or a stop is released by the router. */
typedef int (*orc_middleware_cb)(void *user_data, orc_msg_t *msg, orc_msg_t **replace);

/** The unhandled (dead letter) hook: receives each message no handler received (not those
 *  stopped by middleware). `msg` is borrowed for the call. */
typedef void (*orc_unhandled_cb)(void *user_data, orc_msg_t *msg);

/** The outcome of one orc_router_publish. Set struct_size = sizeof(orc_publish_result_t). */
typedef struct orc_publish_result {
    size_t struct_size;
    uint32_t matched;          /* handlers invoked */
    uint32_t failed;           /* invoked handlers that returned non-zero */
    int stopped;               /* 1 if a middleware stopped the message (ORC_ROUTE_STOP or failure) */
    int middleware_failed;     /* 1 if the stop was a middleware failure */
    int unhandled;             /* 1 if no handler was invoked (the unhandled hook got it) */
} orc_publish_result_t;

/** Router counters. Set struct_size = sizeof(orc_router_stats_t) before orc_router_stats. */
typedef struct orc_router_stats {
    size_t struct_size;
    uint64_t published;           /* valid messages passed to orc_router_publish */
    uint64_t delivered;           /* handler calls that returned 0 */
    uint64_t handler_failures;    /* handler calls that returned non-zero */
    uint64_t middleware_stops;    /* messages stopped by middleware (stop or failure) */
    uint64_t middleware_failures; /* of those, stopped by a middleware failure */
    uint64_t unhandled;           /* messages no handler received */
    uint64_t subscriptions;       /* live subscriptions */
} orc_router_stats_t;

/** Creates an empty router; *out owns it (free it with orc_router_free).
 *  Errors: ORC_EINVAL (out is NULL). Any thread. */
int orc_router_new(orc_router_t **out);

/** Frees the router: drops every subscription, middleware and hook, calling their
 *  user_data_free functions. NULL is a no-op. No other call on `r` may be running or start
 *  later (a callback may not free its own router). Any thread. */
void orc_router_free(orc_router_t *r);

/** Subscribes `cb` to subjects matching `pattern` (pattern_len bytes, copied) and stores the
 *  new subscription's id (never 0) in *subscription_id. The router owns user_data until it
 *  calls user_data_free (may be NULL) once, as described above; if this call fails, it does
 *  not take user_data. Errors: ORC_EINVAL (NULL r, cb or subscription_id, invalid pattern:
 *  orc_last_error() says what and where), ORC_ETOOBIG (pattern too long or too many tokens).
 *  Any thread, including from inside a callback of this router. */
int orc_router_subscribe(orc_router_t *r, const char *pattern, size_t pattern_len,
                         orc_handler_cb cb, void *user_data, void (*user_data_free)(void *),
                         uint64_t *subscription_id);

/** Removes a subscription. Publishes that start afterwards do not call its handler; a publish
 *  already running on another thread may still be inside it. Its user_data_free runs once no
 *  publish uses it (possibly before this returns). Errors: ORC_EINVAL (NULL r), ORC_ENOTFOUND
 *  (unknown or already removed id). Any thread, including from inside a callback. */
int orc_router_unsubscribe(orc_router_t *r, uint64_t subscription_id);

/** Appends a middleware; middleware runs in the order added, before any handler. The router
 *  owns user_data until orc_router_free (then user_data_free, may be NULL, is called once).
 *  Errors: ORC_EINVAL (NULL r or cb). Any thread. */
int orc_router_use(orc_router_t *r, orc_middleware_cb cb, void *user_data,
                   void (*user_data_free)(void *));

/** Sets the unhandled hook, replacing (and releasing, via its user_data_free) the previous
 *  one; cb = NULL removes the hook (user_data and user_data_free are then ignored).
 *  Errors: ORC_EINVAL (NULL r). Any thread. */
int orc_router_on_unhandled(orc_router_t *r, orc_unhandled_cb cb, void *user_data,
                            void (*user_data_free)(void *));

/** Publishes `msg` (borrowed; middleware may change it in place): runs the middleware, then the
 *  matching handlers, on the calling thread, then the unhandled hook if no handler ran. If
 *  `result` is not NULL (with result->struct_size set) it receives the outcome. Handler and
 *  middleware failures are reported in *result and the stats, not as an error code. Errors
 *  (then no callback runs): ORC_EINVAL (NULL r or msg, result->struct_size too small, or the
 *  subject is empty, has an empty token or contains a wildcard token), ORC_ETOOBIG (subject
 *  too long or too many tokens). Any thread, including from inside a callback. */
int orc_router_publish(orc_router_t *r, orc_msg_t *msg, orc_publish_result_t *result);

/** Copies the router's counters into *out (set out->struct_size = sizeof *out first).
 *  Errors: ORC_EINVAL (NULL argument, struct_size smaller than this library's struct).
 *  Any thread. */
int orc_router_stats(const orc_router_t *r, orc_router_stats_t *out);

/** Checks a subject (is_pattern = 0) or a subscription pattern (is_pattern != 0) of `len`
 *  bytes. Returns ORC_OK, or ORC_EINVAL / ORC_ETOOBIG with orc_last_error() explaining what is
 *  wrong and where (e.g. "pattern \"a..b\": empty token at byte 2"). Any thread. */
int orc_subject_validate(const char *subject, size_t len, int is_pattern);

/** Whether `subject` (no wildcards) matches `pattern`: 1 if it does, 0 if not, or a negative
 *  error code (ORC_EINVAL, ORC_ETOOBIG) if either is invalid. Any thread. */
int orc_subject_matches(const char *pattern, size_t pattern_len, const char *subject,
                        size_t subject_len);

/* ============================================================================ METRICS */
/* @@SECTION METRICS@@ */

#ifdef __cplusplus
}
#endif

#endif /* ORCHESTRA_H */
