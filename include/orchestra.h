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
/* @@SECTION ROUTER@@ */

/* ============================================================================ METRICS */
/* @@SECTION METRICS@@ */

#ifdef __cplusplus
}
#endif

#endif /* ORCHESTRA_H */
