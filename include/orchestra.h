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

/** The error table: XX(name, value, description) for every ORC_E* code, in order of value
 *  (-1, -2, ... with no gap). It is the one definition of the codes: the enum below, the
 *  library's orc_strerror/orc_err_name texts, the Swift error type, the bindings' tables and
 *  docs/abi.md are made from it or checked against it (the abi.consistency test). A program
 *  can expand it too, as libuv's UV_ERRNO_MAP:
 *      #define NAME_CASE(name, value, text) case ORC_##name: return #name;
 *      switch (rc) { ORC_ERRNO_MAP(NAME_CASE) default: return "?"; }
 *  Detailed explanations of each code: docs/abi.md, section Errors. */
#define ORC_ERRNO_MAP(XX)                                                                       \
    XX(EINVAL,      -1, "invalid argument")                                                     \
    XX(ENOMEM,      -2, "out of memory")                                                        \
    XX(EPARSE,      -3, "malformed input")                                                      \
    XX(ETOOBIG,     -4, "size or depth limit exceeded")                                         \
    XX(EAGAIN,      -5, "operation would block")                                                \
    XX(ETIMEDOUT,   -6, "timed out")                                                            \
    XX(ECLOSED,     -7, "closed")                                                               \
    XX(EFAILED,     -8, "failed (the object was put into an error state)")                      \
    XX(EFULL,       -9, "full")                                                                 \
    XX(ENOSPC,     -10, "buffer too small")                                                     \
    XX(ECRYPTO,    -11, "cryptographic failure (authentication failed or bad key)")             \
    XX(ENOTFOUND,  -12, "not found")                                                            \
    XX(ESTATE,     -13, "invalid state for this operation")                                     \
    XX(ENOTSUP,    -14, "not supported")                                                        \
    XX(EVERSION,   -15, "unsupported version")                                                  \
    XX(EIO,        -16, "I/O error")                                                            \
    XX(EINTERNAL,  -17, "internal error")                                                       \
    XX(ETLS,       -18, "TLS failure (handshake, certificate verification or a corrupt record)")

/** ORC_OK (0, success) and the ORC_E* codes of ORC_ERRNO_MAP: ORC_EINVAL (-1) ... */
typedef enum orc_errno {
    ORC_OK = 0,
#define ORC_ERRNO_ENUM_(name, value, text) ORC_##name = (value),
    ORC_ERRNO_MAP(ORC_ERRNO_ENUM_)
#undef ORC_ERRNO_ENUM_
} orc_errno_t;

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
/*
 * A message is the one envelope of every layer: id, type (a dotted subject such as
 * "task.stream"), timestamp, version, source, target, correlationId, replyTo, ttl, priority,
 * headers and a payload with a content type. Only id and type are required.
 *
 * Messages are reference counted: orc_msg_new/orc_msg_clone/orc_msg_decode return a reference
 * the caller owns; orc_msg_retain adds one, orc_msg_release drops one, and the last release
 * frees the message. A message is not synchronised: build or change it on one thread, then
 * share it read-only (one reference per holder).
 *
 * Pointers the getters return point into the message's own storage (not NUL-terminated). They
 * stay valid until that field (for header pointers: the headers) is changed or the last
 * reference is released; changing one field does not move the bytes of another.
 */

/** An envelope; opaque, reference counted. */
typedef struct orc_msg orc_msg_t;

/** Message priority: four queue lanes. An absent priority means ORC_PRIORITY_NORMAL. */
typedef enum {
    ORC_PRIORITY_LOW = 0,
    ORC_PRIORITY_NORMAL = 1,
    ORC_PRIORITY_HIGH = 2,
    ORC_PRIORITY_CRITICAL = 3
} orc_priority_t;

/** What the payload bytes are. JSON payloads hold one JSON value as text; text payloads hold
 *  UTF-8; binary payloads hold any bytes. */
typedef enum {
    ORC_CONTENT_JSON = 0,
    ORC_CONTENT_TEXT = 1,
    ORC_CONTENT_BINARY = 2
} orc_content_type_t;

/** The text fields of the envelope, for orc_msg_get/orc_msg_set. */
typedef enum {
    ORC_FIELD_ID = 0,
    ORC_FIELD_TYPE,
    ORC_FIELD_VERSION,
    ORC_FIELD_SOURCE,
    ORC_FIELD_TARGET,
    ORC_FIELD_CORRELATION_ID,
    ORC_FIELD_REPLY_TO
} orc_field_t;

/** Creates a message of `type` (type_len bytes of UTF-8, not empty) with a random UUID v4 id,
 *  the current time as timestamp and version "1.0". On success *out holds one reference
 *  (release it with orc_msg_release). Errors: ORC_EINVAL (NULL out, empty or non-UTF-8 type),
 *  ORC_ETOOBIG (type longer than 65536 bytes). Any thread. */
int orc_msg_new(const char *type, size_t type_len, orc_msg_t **out);

/** Adds a reference to `msg` and returns it; NULL returns NULL. Any thread (the message may
 *  be shared read-only across threads). */
orc_msg_t *orc_msg_retain(orc_msg_t *msg);

/** Drops a reference; the last one frees the message (pointers into it become invalid).
 *  NULL is a no-op. Any thread. */
void orc_msg_release(orc_msg_t *msg);

/** Makes an independent deep copy of `msg` (fields, headers, payload, flags). *out holds one
 *  reference. Errors: ORC_EINVAL (NULL msg or out). Any thread. */
int orc_msg_clone(const orc_msg_t *msg, orc_msg_t **out);

/** Gets a text field: *ptr and *len point at its bytes inside the message (not NUL-terminated;
 *  valid until the field is changed or the last reference is released). Errors: ORC_EINVAL
 *  (NULL argument, unknown field), ORC_ENOTFOUND (optional field absent; *ptr = NULL, *len = 0).
 *  Any thread. */
int orc_msg_get(const orc_msg_t *msg, orc_field_t field, const char **ptr, size_t *len);

/** Sets a text field to a copy of `len` bytes at `ptr` (must be UTF-8, at most 65536 bytes).
 *  (NULL, 0) clears an optional field; id and type cannot be cleared or empty.
 *  Errors: ORC_EINVAL (NULL msg, unknown field, invalid UTF-8, NULL ptr with len > 0, empty
 *  id/type), ORC_ETOOBIG. The thread that owns the message. */
int orc_msg_set(orc_msg_t *msg, orc_field_t field, const char *ptr, size_t len);

/* Convenience accessors, one per text field. The getters return a pointer into the message
 * (not NUL-terminated; valid until that field is changed or the last reference is released)
 * and store its length in *len when len is not NULL; they return NULL when the field is absent
 * or msg is NULL. The setters behave exactly like orc_msg_set. Getters: any thread; setters:
 * the thread that owns the message. */
const char *orc_msg_id(const orc_msg_t *msg, size_t *len);
int orc_msg_set_id(orc_msg_t *msg, const char *id, size_t len);
const char *orc_msg_type(const orc_msg_t *msg, size_t *len);
int orc_msg_set_type(orc_msg_t *msg, const char *type, size_t len);
const char *orc_msg_version(const orc_msg_t *msg, size_t *len);
int orc_msg_set_version(orc_msg_t *msg, const char *version, size_t len);
const char *orc_msg_source(const orc_msg_t *msg, size_t *len);
int orc_msg_set_source(orc_msg_t *msg, const char *source, size_t len);
const char *orc_msg_target(const orc_msg_t *msg, size_t *len);
int orc_msg_set_target(orc_msg_t *msg, const char *target, size_t len);
const char *orc_msg_correlation_id(const orc_msg_t *msg, size_t *len);
int orc_msg_set_correlation_id(orc_msg_t *msg, const char *correlation_id, size_t len);
const char *orc_msg_reply_to(const orc_msg_t *msg, size_t *len);
int orc_msg_set_reply_to(orc_msg_t *msg, const char *reply_to, size_t len);

/** Gets the timestamp (milliseconds since the Unix epoch) into *out_ms. Errors: ORC_EINVAL
 *  (NULL argument), ORC_ENOTFOUND (no timestamp). Any thread. */
int orc_msg_timestamp(const orc_msg_t *msg, int64_t *out_ms);

/** Sets the timestamp in milliseconds since the Unix epoch. Errors: ORC_EINVAL (NULL msg).
 *  The thread that owns the message. */
int orc_msg_set_timestamp(orc_msg_t *msg, int64_t ms);

/** Gets the time to live in milliseconds into *out_ms. Errors: ORC_EINVAL (NULL argument),
 *  ORC_ENOTFOUND (no ttl). Any thread. */
int orc_msg_ttl(const orc_msg_t *msg, int64_t *out_ms);

/** Sets the time to live in milliseconds; ms < 0 clears it. Errors: ORC_EINVAL (NULL msg).
 *  The thread that owns the message. */
int orc_msg_set_ttl(orc_msg_t *msg, int64_t ms);

/** The effective priority (an orc_priority_t value; ORC_PRIORITY_NORMAL when none is set), or
 *  ORC_EINVAL for a NULL msg. Any thread. */
int orc_msg_priority(const orc_msg_t *msg);

/** Sets the priority (0..3, see orc_priority_t). Errors: ORC_EINVAL (NULL msg, out of range).
 *  The thread that owns the message. */
int orc_msg_set_priority(orc_msg_t *msg, int priority);

/** Looks up header `key` (key_len bytes). *value and *value_len point at its value inside the
 *  message (valid until the headers are changed or the last reference is released); *is_json
 *  (if is_json is not NULL) is 1 when the value is raw JSON text (a number, object, ...) and 0
 *  for a string. Errors: ORC_EINVAL (NULL msg/value/value_len, NULL key with key_len > 0),
 *  ORC_ENOTFOUND. Any thread. */
int orc_msg_header_get(const orc_msg_t *msg, const char *key, size_t key_len,
                       const char **value, size_t *value_len, int *is_json);

/** Sets header `key` to the string `value` (both copied, both UTF-8), replacing an existing
 *  value in place or appending. Errors: ORC_EINVAL (NULL msg, NULL pointer with a length,
 *  invalid UTF-8). The thread that owns the message. */
int orc_msg_header_set(orc_msg_t *msg, const char *key, size_t key_len, const char *value, size_t value_len);

/** Sets header `key` to a JSON value given as JSON text (validated: one RFC 8259 value, depth
 *  at most 64). Errors: ORC_EINVAL (NULL msg, invalid UTF-8 key), ORC_EPARSE (invalid JSON;
 *  orc_last_error() names the byte), ORC_ETOOBIG. The thread that owns the message. */
int orc_msg_header_set_json(orc_msg_t *msg, const char *key, size_t key_len, const char *json, size_t json_len);

/** Removes header `key`. Errors: ORC_EINVAL (NULL msg), ORC_ENOTFOUND. The thread that owns
 *  the message. */
int orc_msg_header_remove(orc_msg_t *msg, const char *key, size_t key_len);

/** The number of headers; 0 for a NULL msg. Any thread. */
size_t orc_msg_header_count(const orc_msg_t *msg);

/** The header at `index` (0-based, in order of arrival), as for orc_msg_header_get. key_len,
 *  value, value_len and is_json may each be NULL if not wanted; key must not be NULL.
 *  Errors: ORC_EINVAL (NULL msg or key), ORC_ENOTFOUND (index >= count). Any thread. */
int orc_msg_header_at(const orc_msg_t *msg, size_t index, const char **key, size_t *key_len,
                      const char **value, size_t *value_len, int *is_json);

/** Gets the payload: *data and *len point into the message (valid until the payload is changed or
 *  the last reference is released; *data is non-NULL even for an empty payload);
 *  *content_type (if not NULL) receives its content type. A compressed or encrypted payload
 *  is returned as stored (see orc_msg_is_compressed/orc_msg_is_encrypted). A JSON payload is
 *  always JSON text: one decoded from MessagePack is kept as MessagePack inside the message,
 *  and the first call transcodes it to JSON text (allocating it) and keeps that text, so later
 *  calls return the same pointer. Errors: ORC_EINVAL (NULL msg, data or len), ORC_ENOTFOUND
 *  (no payload). Any thread, also several at once on a message shared read-only: the first
 *  call's text is published with an atomic compare-exchange (a thread that loses the race
 *  frees its copy and returns the winner's). */
int orc_msg_payload(const orc_msg_t *msg, const void **data, size_t *len, orc_content_type_t *content_type);

/** Sets the payload to a copy of `len` bytes at `data` with content type `ct`. JSON payloads
 *  must be one valid JSON value (depth at most 64); text payloads must be UTF-8. Clears the
 *  compressed and encrypted flags. Errors: ORC_EINVAL (NULL msg, NULL data with len > 0,
 *  unknown ct, invalid UTF-8 text), ORC_EPARSE (invalid JSON), ORC_ETOOBIG. The thread that
 *  owns the message. */
int orc_msg_set_payload(orc_msg_t *msg, orc_content_type_t ct, const void *data, size_t len);

/** Removes the payload, resets the content type to JSON and clears the compressed/encrypted
 *  flags. Errors: ORC_EINVAL (NULL msg). The thread that owns the message. */
int orc_msg_clear_payload(orc_msg_t *msg);

/** 1 if the payload holds zlib-compressed bytes (orc_msg_compress), else 0 (also for NULL).
 *  Any thread. */
int orc_msg_is_compressed(const orc_msg_t *msg);

/** 1 if the payload holds nonce | AES-256-GCM ciphertext | tag (orc_msg_encrypt), else 0
 *  (also for NULL). Any thread. */
int orc_msg_is_encrypted(const orc_msg_t *msg);

/* ============================================================================== CODEC */
/*
 * The envelope codec turns a message into bytes and back (sans I/O: no sockets involved).
 *
 * ORC_FORMAT_JSON is an RFC 8259 object with the keys id, type, timestamp, version, source,
 * target, correlationId, replyTo, ttl, priority, contentType ("application/json" when absent,
 * "text/plain", "application/octet-stream"), headers, metadata ({"compressed":true,
 * "encrypted":true, ...}), unknown keys (kept), then payload. A JSON payload is embedded as a
 * JSON value, text as a JSON string, binary (and any compressed or encrypted payload) as a
 * base64 string. Decoding then encoding keeps every field, except that empty headers/metadata
 * objects and false compressed/encrypted flags are dropped.
 *
 * ORC_FORMAT_MSGPACK is a MessagePack map with the same str keys; JSON values are carried as
 * native MessagePack values, text as str, binary/compressed/encrypted payloads as bin.
 *
 * Decoding treats input as hostile: malformed input is ORC_EPARSE and orc_last_error() says
 * what and at which byte ("invalid JSON at byte 17: expected ':' after object key"); size and
 * depth limits are ORC_ETOOBIG.
 */

/** The wire format of an encoded message. */
typedef enum {
    ORC_FORMAT_JSON = 0,
    ORC_FORMAT_MSGPACK = 1
} orc_format_t;

/** Limits for orc_msg_decode. Fill with orc_decode_options_init() before setting fields. */
typedef struct orc_decode_options {
    size_t struct_size;   /* set by orc_decode_options_init */
    size_t max_size;      /* largest input in bytes; default 16 MiB; must be > 0 */
    int max_depth;        /* deepest nesting (the envelope is level 1); default 64; 1..256 */
} orc_decode_options_t;

/** Fills `opts` with the defaults and sets struct_size. Errors: ORC_EINVAL (NULL opts or
 *  struct_size smaller than this version's struct). Any thread. */
int orc_decode_options_init_sized(orc_decode_options_t *opts, size_t struct_size);

/** Fills `opts` with the defaults for the header version the caller compiled against. */
static inline void orc_decode_options_init(orc_decode_options_t *opts) {
    (void)orc_decode_options_init_sized(opts, sizeof *opts);
}

/** Encodes `msg` into the caller's buffer `buf` of `cap` bytes and stores the encoded length
 *  in *out_len. If `cap` is too small, returns ORC_ENOSPC with *out_len = the size needed and
 *  leaves buf untouched (buf may be NULL when cap is 0, to ask for the size). Errors:
 *  ORC_EINVAL (NULL msg or out_len, NULL buf with cap > 0, unknown format, a message that
 *  cannot be encoded: invalid UTF-8, invalid JSON in a JSON field, an integer beyond 64 bits
 *  in MessagePack), ORC_ENOSPC. Any thread (msg read-only). */
int orc_msg_encode(const orc_msg_t *msg, orc_format_t format, void *buf, size_t cap, size_t *out_len);

/** Encodes `msg` into a new buffer: *out (free it with orc_buf_free) and *out_len. Errors as
 *  orc_msg_encode, plus ORC_ENOMEM; ORC_ENOSPC never happens. Any thread (msg read-only). */
int orc_msg_encode_alloc(const orc_msg_t *msg, orc_format_t format, void **out, size_t *out_len);

/** Decodes `len` bytes at `data` (copied; the message does not borrow them) into a new
 *  message: *out holds one reference. `opts` may be NULL for the defaults. Errors: ORC_EINVAL
 *  (NULL out, NULL data with len > 0, unknown format, options not initialised with
 *  orc_decode_options_init or out of range), ORC_EPARSE (malformed input, with byte offset in
 *  orc_last_error()), ORC_ETOOBIG (max_size, max_depth, a text field over 65536 bytes).
 *  Any thread. */
int orc_msg_decode(orc_format_t format, const void *data, size_t len, const orc_decode_options_t *opts, orc_msg_t **out);

/** Compresses the payload with zlib (deflate, zlib format, level 6) when it is larger than
 *  `threshold` bytes and the result is smaller, and sets the compressed flag. *compressed (if
 *  not NULL) is set to 1 if it did, 0 if not (no payload, small, incompressible or already
 *  compressed). Compress before encrypting. Errors: ORC_EINVAL (NULL msg), ORC_ESTATE (payload
 *  encrypted), ORC_ENOMEM. The thread that owns the message. */
int orc_msg_compress(orc_msg_t *msg, size_t threshold, int *compressed);

/** Decompresses a compressed payload and clears the flag; output larger than `max_size` bytes
 *  (0 means the default, 64 MiB) is refused, so a decompression bomb cannot exhaust memory.
 *  On failure the message is unchanged. Errors: ORC_EINVAL (NULL msg), ORC_ESTATE (not
 *  compressed, or still encrypted), ORC_EPARSE (corrupt or truncated data), ORC_ETOOBIG
 *  (larger than max_size). The thread that owns the message. */
int orc_msg_decompress(orc_msg_t *msg, size_t max_size);

/** A payload cipher: AES-256-GCM with a key derived from a secret by HKDF-SHA256. Opaque. */
typedef struct orc_cipher orc_cipher_t;

/** Creates a cipher whose key is HKDF-SHA256(secret, salt, info = "liborchestra payload v1"),
 *  32 bytes. The secret and salt are copied (the derived key is wiped when the cipher is
 *  freed); salt may be NULL with salt_len 0. *out is freed with orc_cipher_free. Errors:
 *  ORC_EINVAL (NULL out, empty secret, NULL pointer with a length), ORC_ECRYPTO (OpenSSL
 *  failure). Any thread. */
int orc_cipher_new(const void *secret, size_t secret_len, const void *salt, size_t salt_len, orc_cipher_t **out);

/** Frees a cipher and wipes its key. NULL is a no-op. Any thread, once no other thread uses
 *  the cipher. */
void orc_cipher_free(orc_cipher_t *cipher);

/** Encrypts the payload in place: it becomes nonce (12 random bytes) | ciphertext | tag (16),
 *  authenticated together with the message id and type; sets the encrypted flag. Errors:
 *  ORC_EINVAL (NULL argument), ORC_ESTATE (already encrypted, or no payload), ORC_ETOOBIG
 *  (payload over 2 GiB), ORC_ECRYPTO. A cipher may be used by many threads at once; the
 *  message by the thread that owns it. */
int orc_msg_encrypt(orc_msg_t *msg, const orc_cipher_t *cipher);

/** Verifies and decrypts the payload in place and clears the encrypted flag. Any change to
 *  the nonce, ciphertext, tag, id or type, or a different key, fails with ORC_ECRYPTO
 *  ("payload authentication failed: ...") and leaves the message unchanged. Errors:
 *  ORC_EINVAL (NULL argument), ORC_ESTATE (not encrypted), ORC_EPARSE (payload shorter than 28
 *  bytes), ORC_ECRYPTO. A cipher may be used by many threads at once; the message by the
 *  thread that owns it. */
int orc_msg_decrypt(orc_msg_t *msg, const orc_cipher_t *cipher);

/* Reading fields of JSON text (a task's parameters, a payload) without a JSON library. `path`
 * names a member by its keys separated by '.', e.g. "parameters.command"; every step must be
 * an object. The text is checked whole (RFC 8259, depth limit 64), so bad JSON fails even when
 * the member exists. */

/** The string at `path` of the JSON text `json` (`len` bytes), unescaped: *out is a new
 *  NUL-terminated buffer (free it with orc_buf_free) and *out_len (may be NULL) its length in
 *  bytes (the string may itself contain NUL bytes, from \u0000). Errors: ORC_EINVAL (NULL
 *  argument, path not valid UTF-8, the value is not a string), ORC_EPARSE (bad JSON),
 *  ORC_ETOOBIG (too deep), ORC_ENOTFOUND (no such member). Any thread. */
int orc_json_get_string(const char *json, size_t len, const char *path, char **out, size_t *out_len);

/** The integer at `path` (a number without fraction that fits in 64 bits) into *out. Errors
 *  as orc_json_get_string; ORC_EINVAL when the value is not such a number. Any thread. */
int orc_json_get_int(const char *json, size_t len, const char *path, int64_t *out);

/* ============================================================================== QUEUE */
/*
 * A thread-safe message queue with h2A semantics: a non-blocking push hands the message
 * straight to a waiting reader when there is one; four priority lanes (a message's priority,
 * NORMAL when unset), FIFO within a lane, pop takes from the highest non-empty lane; bounded,
 * with a policy for a full queue; per-message TTL (orc_msg_set_ttl: the message expires that
 * many ms after it was pushed and is skipped by pop); close (readers drain what is left, then
 * get ORC_ECLOSED) and fail (everyone gets ORC_EFAILED); batch push/pop; a readiness file
 * descriptor for event loops; statistics. Every dropped message is counted and passed to the
 * drop callback, never dropped silently.
 */

#ifndef ORC_MSG_T_DEFINED
#define ORC_MSG_T_DEFINED
/** A message (see MESSAGE). Repeated here so this section stands alone; C11/C++ allow it. */
typedef struct orc_msg orc_msg_t;
#endif

/** A message queue. Thread-safe. */
typedef struct orc_queue orc_queue_t;

/** What a push does when the queue holds `capacity` messages. */
typedef enum {
    /** The producer waits up to push_timeout_ms for room, then fails with ORC_EFULL. */
    ORC_POLICY_BLOCK = 0,
    /** The push fails with ORC_EFULL at once; the caller keeps the message. */
    ORC_POLICY_REJECT = 1,
    /** The oldest message of the lowest non-empty lane whose priority is <= the incoming
     *  message's is dropped to make room; if there is none, the incoming message is dropped.
     *  The push succeeds either way. */
    ORC_POLICY_DROP_OLDEST = 2,
    /** The incoming message is dropped; the push succeeds (the queue took the message). */
    ORC_POLICY_DROP_NEWEST = 3
} orc_queue_policy_t;

/** Why a queue let go of a message without delivering it (passed to the drop callback). */
typedef enum {
    ORC_DROP_OVERFLOW = 1,  /* the queue was full and the policy dropped it */
    ORC_DROP_EXPIRED = 2,   /* its TTL ran out before it was popped */
    ORC_DROP_FREED = 3      /* it was still queued when the queue was freed */
} orc_drop_reason_t;

/** Queue options. Fill with orc_queue_options_init() first, then change fields. */
typedef struct orc_queue_options {
    size_t struct_size;          /* set by orc_queue_options_init */
    size_t capacity;             /* max queued messages, all lanes; 0 = unbounded. Default 65536 */
    orc_queue_policy_t policy;   /* default ORC_POLICY_BLOCK */
    int64_t push_timeout_ms;     /* ORC_POLICY_BLOCK wait: < 0 forever (default), 0 none, > 0 ms */
    const char *name;            /* NUL-terminated name for messages and metrics, copied; may be NULL */
    int32_t spin_us;             /* how long a reader that finds the queue empty may poll for
                                  * a message before it sleeps, in microseconds: 0 never polls,
                                  * 0...1000000. Default 20, about one sleep + wake-up. A poll
                                  * takes no lock; the time adapts (halved after a poll that
                                  * found nothing, down to 1/16, doubled back after one that
                                  * did); no polling on a single-CPU machine. */
} orc_queue_options_t;

/** Fills `opts` with the defaults and sets opts->struct_size. Use orc_queue_options_init().
 *  Returns ORC_EINVAL if opts is NULL or struct_size < sizeof(orc_queue_options_t) of the
 *  library. Any thread. */
int orc_queue_options_init_sized(orc_queue_options_t *opts, size_t struct_size);

/** Fills `opts` with the defaults. Any thread. */
static inline void orc_queue_options_init(orc_queue_options_t *opts) {
    (void)orc_queue_options_init_sized(opts, sizeof *opts);
}

/** Creates a queue. `opts` may be NULL (defaults). On success stores a new queue in *out
 *  (free it with orc_queue_free). Errors: ORC_EINVAL (out NULL, options not initialised with
 *  orc_queue_options_init, capacity too large, bad policy, name not UTF-8, spin_us outside
 *  0...1000000). Any thread. */
int orc_queue_new(const orc_queue_options_t *opts, orc_queue_t **out);

/** Frees a queue. Messages still queued are passed to the drop callback (ORC_DROP_FREED) and
 *  released; then user_data_free of the drop callback is called. No other thread may use the
 *  queue during or after this call (close it and join its users first). NULL is a no-op.
 *  Any thread. */
void orc_queue_free(orc_queue_t *q);

/** Pushes `msg`. Never blocks unless the queue is full under ORC_POLICY_BLOCK. On ORC_OK the
 *  queue owns the caller's reference (also when a drop policy dropped the message: it then
 *  went to the drop callback and was released); on error the caller still owns msg.
 *  Errors: ORC_EINVAL (NULL), ORC_ECLOSED (closed), ORC_EFAILED (failed; orc_last_error() has
 *  the message given to orc_queue_fail), ORC_EFULL (reject policy, or block timed out).
 *  Any thread. */
int orc_queue_push(orc_queue_t *q, orc_msg_t *msg);

/** Pushes msgs[0..n) taking the queue lock once. Stops at the first failure and returns its
 *  code; *accepted (if not NULL) is set to the number taken, always. The queue owns the
 *  references of the accepted messages; the caller keeps msgs[*accepted..n). A NULL entry
 *  fails with ORC_EINVAL at that index. Errors as orc_queue_push. Any thread. */
int orc_queue_push_batch(orc_queue_t *q, orc_msg_t *const *msgs, size_t n, size_t *accepted);

/** Pops the next message: highest priority lane first, FIFO within a lane, expired messages
 *  skipped (and dropped with ORC_DROP_EXPIRED). timeout_ms: 0 = don't wait (ORC_EAGAIN if
 *  empty), < 0 = wait forever, > 0 = wait that many ms (ORC_ETIMEDOUT). On ORC_OK the caller
 *  owns *out (orc_msg_release it). Errors: ORC_EINVAL, ORC_EAGAIN, ORC_ETIMEDOUT, ORC_ECLOSED
 *  (closed and drained), ORC_EFAILED. Any thread. */
int orc_queue_pop(orc_queue_t *q, int64_t timeout_ms, orc_msg_t **out);

/** Pops up to `max` messages into out[0..*count), waiting (as orc_queue_pop) only for the
 *  first. The caller owns every returned message. *count is set to 0 on error. Errors as
 *  orc_queue_pop, plus ORC_EINVAL when out or count is NULL or max is 0. Any thread. */
int orc_queue_pop_batch(orc_queue_t *q, orc_msg_t **out, size_t max, int64_t timeout_ms, size_t *count);

/** Pops up to `max` messages and copies their payloads back to back into buf[0..cap), for
 *  bindings that read many small messages (one call instead of three per message). Message
 *  i's payload is lens[i] bytes at buf + lens[0] + ... + lens[i-1], of content type types[i]
 *  (lens[i] = 0 for a message without payload); *count says how many. Each copied message
 *  is released. Waits (as orc_queue_pop) only for the first. The first message whose payload
 *  does not fit in what is left of buf ends the batch: it is popped and handed over in
 *  *overflow, not released (the caller owns it, reads it with orc_msg_payload and releases
 *  it; it comes after the copied ones, and *count may then be 0). *count and *overflow are
 *  set on every return (0 and NULL on error). Errors as orc_queue_pop_batch, plus
 *  ORC_EINVAL when lens, types, count or overflow is NULL, or buf is NULL with cap > 0. Any
 *  thread. */
int orc_queue_pop_payloads(orc_queue_t *q, int64_t timeout_ms, void *buf, size_t cap, size_t *lens,
                           orc_content_type_t *types, size_t max, size_t *count, orc_msg_t **overflow);

/** Closes the queue: pushes fail with ORC_ECLOSED; readers get what is left, then ORC_ECLOSED.
 *  Wakes every blocked reader and writer and makes the readiness fd readable. Idempotent.
 *  Errors: ORC_EINVAL (NULL). Any thread. */
int orc_queue_close(orc_queue_t *q);

/** Puts the queue into an error state: pushes and pops fail with ORC_EFAILED, and
 *  orc_last_error() then gives `message` (UTF-8, copied; may be NULL with length 0). `code` is
 *  an application code kept with the failure. Wakes every blocked reader and writer and makes
 *  the readiness fd readable. The first failure wins. Errors: ORC_EINVAL (NULL q, bad message
 *  bytes). Any thread. */
int orc_queue_fail(orc_queue_t *q, int code, const char *message, size_t message_len);

/** Stores in *fd a non-blocking eventfd that is readable while the queue is non-empty, closed
 *  or failed, and not readable while it is empty and open: wait for it in your event loop
 *  (poll, epoll, asyncio's add_reader), then pop with timeout 0 until ORC_EAGAIN. The queue
 *  owns the fd (closed by orc_queue_free); never read, write or close it. Errors: ORC_EINVAL,
 *  ORC_EIO (eventfd failed). Any thread. */
int orc_queue_fd(orc_queue_t *q, int *fd);

/** The number of queued messages now (0 for NULL). Any thread. */
size_t orc_queue_depth(const orc_queue_t *q);

/** The number of readers waiting now in a pop (orc_queue_pop, _pop_batch, _pop_payloads with
 *  a timeout) because the queue was empty, polling or asleep (0 for NULL): a test or a
 *  diagnostic can tell that a reader blocked instead of sleeping and hoping. Any thread. */
size_t orc_queue_waiting_readers(const orc_queue_t *q);

/** Called for every message the queue drops, after the queue lock is released, on the thread
 *  whose call caused the drop (push for overflow, pop for expired, orc_queue_free for freed).
 *  `msg` is borrowed for the call: orc_msg_retain it to keep it. Do not call orc_queue_free
 *  on the same queue from the callback. */
typedef void (*orc_drop_cb)(void *user_data, orc_msg_t *msg, orc_drop_reason_t reason);

/** Sets the drop callback (cb NULL removes it). user_data_free (may be NULL) is called once
 *  with user_data when the callback is replaced or the queue is freed, after any call of cb in
 *  progress returns; it is not called when this function fails. Errors: ORC_EINVAL (q NULL,
 *  or cb NULL with user_data_free set). Any thread. */
int orc_queue_set_drop_callback(orc_queue_t *q, orc_drop_cb cb, void *user_data, void (*user_data_free)(void *));

/** A snapshot of a queue's counters. Set struct_size = sizeof(orc_queue_stats_t) first. */
typedef struct orc_queue_stats {
    size_t struct_size;
    uint64_t pushed;            /* messages accepted by push (including hand-offs and drops) */
    uint64_t popped;            /* messages delivered to readers */
    uint64_t handed_off;        /* delivered straight to a waiting reader */
    uint64_t dropped_overflow;  /* dropped by ORC_POLICY_DROP_OLDEST / DROP_NEWEST */
    uint64_t expired;           /* dropped because their TTL ran out */
    uint64_t rejected;          /* pushes refused with ORC_EFULL */
    uint64_t blocked_pushes;    /* pushes that had to wait for room */
    uint64_t depth;             /* queued now */
    uint64_t depth_high_water;  /* largest depth seen */
    uint64_t wait_p50_ns;       /* time from push to pop: quantiles (within 1/64) and max */
    uint64_t wait_p95_ns;
    uint64_t wait_p99_ns;
    uint64_t wait_max_ns;
    uint64_t wait_count;        /* number of waits measured */
} orc_queue_stats_t;

/** Fills *out with a consistent snapshot of the queue's counters. The caller sets
 *  out->struct_size = sizeof *out; a struct_size smaller than this library's struct is
 *  rejected with ORC_EINVAL; with a larger one (a newer header) only the fields this library
 *  knows are written. Errors: ORC_EINVAL. Any thread. */
int orc_queue_stats(const orc_queue_t *q, orc_queue_stats_t *out);

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
/*
 * A registry of named counters, gauges and histograms, plus collectors for queues, rendered as
 * Prometheus text (format 0.0.4) or JSON. Names match [a-zA-Z_:][a-zA-Z0-9_:]*; a metric is
 * created on first use. Histograms record uint64 values (e.g. latencies in ns) in log-linear
 * buckets with quantiles accurate to 1/64 relative error; Prometheus output renders them as a
 * summary (quantile 0.5, 0.95, 0.99, _sum, _count) plus a gauge <name>_max.
 */

/** A metrics registry. Thread-safe. */
typedef struct orc_metrics orc_metrics_t;

/** Creates an empty registry in *out (free it with orc_metrics_free). Errors: ORC_EINVAL (out
 *  NULL). Any thread. */
int orc_metrics_new(orc_metrics_t **out);

/** Frees a registry. Registered queues are not affected. NULL is a no-op. No other thread may
 *  use the registry during or after this call. Any thread. */
void orc_metrics_free(orc_metrics_t *m);

/** Adds `delta` to counter `name` (name_len bytes, not NUL-terminated), creating it at 0.
 *  Errors: ORC_EINVAL (NULL, invalid name, name already used by a gauge or histogram). Any thread. */
int orc_metrics_counter_add(orc_metrics_t *m, const char *name, size_t name_len, uint64_t delta);

/** Sets gauge `name` to `value`, creating it. Errors as orc_metrics_counter_add. Any thread. */
int orc_metrics_gauge_set(orc_metrics_t *m, const char *name, size_t name_len, double value);

/** Records `value` in histogram `name`, creating it. Errors as orc_metrics_counter_add.
 *  Any thread. */
int orc_metrics_histogram_record(orc_metrics_t *m, const char *name, size_t name_len, uint64_t value);

/** Exposes queue `q`'s statistics in `m` as orchestra_queue_*{queue="<name>"} samples
 *  (pushed_total, popped_total, handed_off_total, dropped_total{reason}, rejected_total,
 *  blocked_pushes_total, depth, depth_high_water, wait_ns{quantile}, waits_total). `name` is
 *  UTF-8, copied. The registry does not keep the queue alive: a freed queue stops reporting
 *  and its registration is dropped; orc_metrics_unregister_queue stops a live queue's.
 *  Registering the same queue twice reports it twice (under both names).
 *  Errors: ORC_EINVAL (NULL, name not UTF-8). Any thread. */
int orc_metrics_register_queue(orc_metrics_t *m, orc_queue_t *q, const char *name, size_t name_len);

/** Sets the help text of metric family `name` (name_len bytes), rendered as its Prometheus
 *  "# HELP" line. The family need not exist yet: a counter, gauge or histogram made later by
 *  name uses it, and it replaces a queue's or router's built-in help for that family. A family
 *  without help text is rendered without a "# HELP" line. `help` is help_len bytes of UTF-8,
 *  copied; backslashes and line feeds are escaped when rendered.
 *  Errors: ORC_EINVAL (NULL m, name or help, invalid name, help empty or not UTF-8),
 *  ORC_ETOOBIG (help longer than 4096 bytes). Any thread. */
int orc_metrics_set_help(orc_metrics_t *m, const char *name, size_t name_len, const char *help,
                         size_t help_len);

/** Exposes router `r`'s statistics in `m` as orchestra_router_*{router="<name>"} samples
 *  (published_total, delivered_total, handler_failures_total, middleware_stops_total,
 *  middleware_failures_total, unhandled_total, subscriptions). `name` is UTF-8, copied. The
 *  registry does not keep the router alive: a freed router stops reporting and its
 *  registration is dropped; orc_metrics_unregister_router stops a live router's.
 *  Errors: ORC_EINVAL (NULL, name not UTF-8). Any thread. */
int orc_metrics_register_router(orc_metrics_t *m, orc_router_t *r, const char *name, size_t name_len);

/** Stops reporting queue `q` in `m`: removes every orc_metrics_register_queue registration of
 *  `q` in `m` (under any name). The queue itself is not affected; it may be registered again.
 *  A render running at the same time on another thread may still include it once.
 *  Errors: ORC_EINVAL (NULL m or q), ORC_ENOTFOUND (q is not registered in m). Any thread. */
int orc_metrics_unregister_queue(orc_metrics_t *m, orc_queue_t *q);

/** Stops reporting router `r` in `m`, like orc_metrics_unregister_queue.
 *  Errors: ORC_EINVAL (NULL m or r), ORC_ENOTFOUND (r is not registered in m). Any thread. */
int orc_metrics_unregister_router(orc_metrics_t *m, orc_router_t *r);

/** Output formats of orc_metrics_render. */
typedef enum {
    ORC_METRICS_PROMETHEUS = 0,  /* text exposition format 0.0.4 */
    ORC_METRICS_JSON = 1         /* {"name": value, "name{label=\"v\"}": value,
                                     "histogram": {"count","sum","p50","p95","p99","max"}} */
} orc_metrics_format_t;

/** Renders a snapshot of every metric. On success *out is a new buffer of *out_len bytes (not
 *  NUL-terminated) that the caller frees with orc_buf_free. Errors: ORC_EINVAL (NULL, bad
 *  format), ORC_ENOMEM. Any thread. */
int orc_metrics_render(orc_metrics_t *m, orc_metrics_format_t format, void **out, size_t *out_len);

/* ============================================================================ RUNTIME */
/*
 * A runtime owns a libuv loop on an I/O thread of its own: all network work of the handles made
 * on it happens there, and their callbacks run there. Any thread may post work to it (a
 * lock-free mailbox and one wake-up; the loop runs everything posted per wake-up, in posting
 * order) and start timers on it. orc_runtime_free runs every job already accepted, stops every
 * timer, closes every handle and joins the thread.
 *
 * An embedded runtime (options.embedded = 1) has no thread: the caller's own event loop runs
 * it. Watch the descriptor of orc_runtime_fd for readability and call orc_runtime_run_once
 * when it is readable or when the timeout the last run_once returned has passed. "The I/O
 * thread" is then whichever thread is inside orc_runtime_run_once (one at a time); callbacks
 * run there. Everything else is the same (posts from any thread make the descriptor readable).
 * It spares a single-threaded host (a Python asyncio loop) the hand-off between two threads;
 * the price: nothing on the runtime runs (timers, pongs, heartbeats) while the host does not
 * call orc_runtime_run_once.
 */

/** A runtime: an event loop on its own I/O thread. Thread-safe. */
typedef struct orc_runtime orc_runtime_t;

/** Runtime options. Fill with orc_runtime_options_init() first, then change fields. */
typedef struct orc_runtime_options {
    size_t struct_size;          /* set by orc_runtime_options_init */
    const char *name;            /* NUL-terminated name for messages, copied; may be NULL */
    int embedded;                /* 0 (default): an I/O thread of its own; 1: run by the caller
                                    (orc_runtime_fd, orc_runtime_run_once) */
} orc_runtime_options_t;

/** Fills `opts` with the defaults and sets opts->struct_size. Use orc_runtime_options_init().
 *  Returns ORC_EINVAL if opts is NULL or struct_size < sizeof(orc_runtime_options_t) of the
 *  library. Any thread. */
int orc_runtime_options_init_sized(orc_runtime_options_t *opts, size_t struct_size);

/** Fills `opts` with the defaults. Any thread. */
static inline void orc_runtime_options_init(orc_runtime_options_t *opts) {
    (void)orc_runtime_options_init_sized(opts, sizeof *opts);
}

/** Starts a runtime and its I/O thread (embedded: sets up its loop). `opts` may be NULL
 *  (defaults). On success stores it in *out (free it with orc_runtime_free). Errors: ORC_EINVAL
 *  (out NULL, options not initialised with orc_runtime_options_init, name longer than 1024
 *  bytes or not UTF-8, embedded not 0 or 1), ORC_EIO (libuv or the thread could not be set
 *  up). Any thread. */
int orc_runtime_new(const orc_runtime_options_t *opts, orc_runtime_t **out);

/** Stops and frees a runtime: runs every job already accepted by orc_runtime_post, stops every
 *  timer (their user_data_free runs), closes every handle, then joins the I/O thread (embedded:
 *  runs the loop on the calling thread until all that is done). Posts racing with it either
 *  run or fail with ORC_ECLOSED. Called from the I/O thread itself (in a job or timer callback)
 *  it only starts the shutdown, which ends after that callback returns (embedded: in the next
 *  orc_runtime_run_once calls, which the host must go on making until they return
 *  ORC_ECLOSED). NULL is a no-op. Any thread; no other call on the runtime may follow. */
void orc_runtime_free(orc_runtime_t *rt);

/** A function run on the I/O thread. */
typedef void (*orc_runtime_fn)(void *user_data);

/** Runs fn(user_data) on the I/O thread, after every job posted before it. Never blocks and
 *  never runs fn on the calling thread. Errors: ORC_EINVAL (NULL rt or fn), ORC_ECLOSED (the
 *  runtime is shutting down: fn will not run). Any thread, including the I/O thread. */
int orc_runtime_post(orc_runtime_t *rt, orc_runtime_fn fn, void *user_data);

/** Starts a timer: fn(user_data) runs on the I/O thread after delay_ms, then every repeat_ms
 *  (0: once). user_data_free(user_data), when not NULL, runs on the I/O thread exactly once when
 *  the timer is gone (a one-shot timer after it fired, a stopped timer, every timer at
 *  orc_runtime_free). Stores the timer's id (never 0) in *timer_id. Errors: ORC_EINVAL (NULL
 *  rt, fn or timer_id), ORC_ECLOSED (shutting down: user_data_free is not called). Any thread. */
int orc_runtime_timer_start(orc_runtime_t *rt, uint64_t delay_ms, uint64_t repeat_ms,
                            orc_runtime_fn fn, void *user_data,
                            void (*user_data_free)(void *user_data), uint64_t *timer_id);

/** Stops a timer: fn is not called after this returns (from another thread, a call already
 *  running on the I/O thread may still finish). Errors: ORC_EINVAL (NULL rt), ORC_ENOTFOUND
 *  (no such timer, or a one-shot timer that already fired). Any thread. */
int orc_runtime_timer_stop(orc_runtime_t *rt, uint64_t timer_id);

/** 1 if the caller runs on the runtime's I/O thread, 0 otherwise (also for NULL). Any thread. */
int orc_runtime_is_io_thread(const orc_runtime_t *rt);

/** Embedded runtimes: stores in *fd the descriptor (an epoll fd, owned by the runtime) that is
 *  readable when the loop has work: watch it in your event loop, level-triggered. Errors:
 *  ORC_EINVAL (NULL rt or fd), ORC_ESTATE (the runtime has its own I/O thread). Any thread. */
int orc_runtime_fd(orc_runtime_t *rt, int *fd);

/** Embedded runtimes: runs what is ready (I/O callbacks, posted jobs, due timers) on the
 *  calling thread without blocking. When timeout_ms is not NULL stores the milliseconds until
 *  the next timer is due: -1 none, 0 more is ready (call again soon). Call it when the
 *  descriptor of orc_runtime_fd is readable and when that timeout has passed. One thread at a
 *  time runs the loop (a second caller waits). Errors: ORC_EINVAL (NULL rt), ORC_ESTATE (the
 *  runtime has its own I/O thread, or the call comes from inside one of its callbacks),
 *  ORC_ECLOSED (the loop ended after orc_runtime_free began). Any thread. */
int orc_runtime_run_once(orc_runtime_t *rt, int *timeout_ms);

/* ========================================================================== WEBSOCKET */
/*
 * WebSocket servers and clients (RFC 6455, permessage-deflate of RFC 7692) on a runtime. All
 * socket work runs on the runtime's I/O thread and so do the callbacks. Incoming traffic
 * reaches the user in two ways, usable together:
 *   1. callbacks (orc_ws_callbacks_t) on the I/O thread: zero hops; a callback must not block;
 *   2. a queue (options.queue): each message becomes an orc_msg_t of type "ws.message" whose
 *      payload is the bytes (content type text/plain for text, application/octet-stream for
 *      binary) and whose orc_msg_connection_id() names the connection. With queue_events the
 *      life of connections goes there too: "ws.open", "ws.drain" and "ws.close" (JSON payload
 *      {"code":N,"reason":"...","clean":true|false}). A full queue never loses a message: the
 *      connection stops reading until the consumer makes room (TCP slows the peer down).
 *
 * Sending (any thread) copies the bytes into a frame and queues it on the connection's send
 * buffer; frames queued during one loop turn leave in one writev. Past high_watermark a send
 * returns ORC_WS_ABOVE_HIGH_WATERMARK (queued; wait for on_drain); past max_buffered the
 * slow-consumer policy applies and the send fails with ORC_EFULL.
 */

/** A server. Thread-safe; free with orc_server_free. */
typedef struct orc_server orc_server_t;
/** A client connection that may reconnect. Thread-safe; free with orc_client_free. */
typedef struct orc_client orc_client_t;
/** One WebSocket connection (server or client side). Callbacks receive a borrowed pointer,
 *  valid until their on_close returns; orc_conn_retain keeps it valid longer (calls on a
 *  closed connection return ORC_ECLOSED). Thread-safe. */
typedef struct orc_conn orc_conn_t;

/** Message opcodes. */
#define ORC_WS_TEXT    1
#define ORC_WS_BINARY  2

/** orc_conn_send and friends: queued, but the send buffer is above its high watermark. */
#define ORC_WS_ABOVE_HIGH_WATERMARK 1

/** What happens when a send finds max_buffered bytes already waiting (a slow reader). */
typedef enum orc_slow_consumer {
    ORC_SLOW_CONSUMER_CLOSE_1008 = 0,   /* close with 1008 (policy violation); default */
    ORC_SLOW_CONSUMER_CLOSE_1013 = 1,   /* close with 1013 (try again later) */
    ORC_SLOW_CONSUMER_DROP = 2          /* drop the message, keep the connection (counted) */
} orc_slow_consumer_t;

/** Client states, reported through on_state. */
typedef enum orc_client_state {
    ORC_CLIENT_CONNECTING = 0,
    ORC_CLIENT_OPEN = 1,
    ORC_CLIENT_RECONNECTING = 2,
    ORC_CLIENT_CLOSING = 3,
    ORC_CLIENT_CLOSED = 4
} orc_client_state_t;

/** Settings shared by servers and clients; part of their options (defaults in brackets). */
typedef struct orc_ws_options {
    size_t max_frame_size;          /* largest incoming frame payload, close 1009 [16 MiB] */
    size_t max_message_size;        /* largest incoming message, inflated size, 1009 [16 MiB] */
    uint32_t ping_interval_ms;      /* heartbeat ping period, 0: none [30000] */
    uint32_t pong_timeout_ms;       /* no pong within this: the peer is dead, close 1006 [10000] */
    uint32_t close_timeout_ms;      /* wait for the peer's close after ours [5000] */
    uint32_t handshake_timeout_ms;  /* opening handshake (server side) [10000] */
    size_t high_watermark;          /* [1 MiB] */
    size_t low_watermark;           /* on_drain when the buffer falls to this [256 KiB] */
    size_t max_buffered;            /* hard limit of the send buffer [16 MiB] */
    orc_slow_consumer_t slow_consumer;
    int deflate;                    /* 1: offer (client) / accept (server) permessage-deflate [0] */
    int server_no_context_takeover; /* deflate parameters to ask for [0] */
    int client_no_context_takeover; /* [0] */
    int server_max_window_bits;     /* 8..15, 0: not requested [0] */
    int client_max_window_bits;     /* 8..15, 0: not requested [0] */
    size_t compression_threshold;   /* smaller messages go out uncompressed [1024] */
    int compression_level;          /* zlib level 1..9 [6] */
    int compression_mem_level;      /* zlib memLevel 1..9 [8] */
} orc_ws_options_t;

/** Connection callbacks, all optional (NULL), all on the I/O thread. `user_data` is the
 *  struct's user_data field. */
typedef struct orc_ws_callbacks {
    /** The handshake completed. */
    void (*on_open)(void *user_data, orc_conn_t *conn);
    /** A whole message; `data` is valid only during the call. */
    void (*on_message)(void *user_data, orc_conn_t *conn, int opcode, const uint8_t *data, size_t len);
    /** The send buffer fell to low_watermark after passing high_watermark. */
    void (*on_drain)(void *user_data, orc_conn_t *conn);
    /** A pong arrived; rtt_us > 0 when it answered our (heartbeat or orc_conn_ping) ping. */
    void (*on_pong)(void *user_data, orc_conn_t *conn, uint64_t rtt_us);
    /** The connection is gone (once, for connections that opened). code: the peer's close
     *  code, 1005 for a close without one, 1006 without a close frame; reason: NUL-terminated
     *  UTF-8, valid during the call; clean: both close frames were exchanged. */
    void (*on_close)(void *user_data, orc_conn_t *conn, int code, const char *reason, int clean);
    void *user_data;
} orc_ws_callbacks_t;

/** One HTTP header field: NUL-terminated name and value. */
typedef struct orc_http_header {
    const char *name;
    const char *value;
} orc_http_header_t;

/** A request as the server hooks see it. Every pointer is valid during the hook only. */
typedef struct orc_http_request {
    const char *method;
    const char *path;
    const char *query;              /* NULL when the target has no '?' */
    const char *remote_address;     /* "127.0.0.1:50312", "[::1]:50312" */
    const char *subprotocol;        /* upgrades: the one the server would choose, or NULL */
    const orc_http_header_t *headers;
    size_t header_count;
} orc_http_request_t;

/** A response a hook fills in. The library copies everything before the hook's caller goes on. */
typedef struct orc_http_response {
    int status;                     /* 100..599 */
    const char *content_type;       /* NULL: none */
    const uint8_t *body;
    size_t body_len;
    const orc_http_header_t *headers;   /* extra fields, may be NULL */
    size_t header_count;
} orc_http_response_t;

/** Connection counters. */
typedef struct orc_conn_stats {
    uint64_t bytes_in, bytes_out;           /* on the wire, frames and handshake */
    uint64_t messages_in, messages_out;     /* messages received; frames written */
    uint64_t messages_dropped;              /* by the slow-consumer drop policy */
    uint64_t errors;                        /* protocol, I/O and policy errors */
    uint64_t rtt_us;                        /* last ping round trip, 0 before any */
    uint64_t uptime_us;                     /* since the handshake completed */
    uint64_t buffered_amount;               /* bytes waiting to be written */
    uint64_t reconnects;                    /* clients: reconnection attempts so far */
} orc_conn_stats_t;

/** Server options. Fill with orc_server_options_init() first, then change fields. */
typedef struct orc_server_options {
    size_t struct_size;             /* set by orc_server_options_init */
    const char *host;               /* IPv4/IPv6 literal or host name ["127.0.0.1"] */
    uint16_t port;                  /* 0: ephemeral, read it with orc_server_port [0] */
    int backlog;                    /* [511] */
    int ipv6_only;                  /* [0] */
    const char *const *paths;       /* paths that accept upgrades; NULL/0: every path */
    size_t path_count;
    const char *const *subprotocols;    /* ours, best first */
    size_t subprotocol_count;
    size_t max_connections;         /* 0: no limit; more get 503 */
    orc_ws_options_t ws;
    orc_ws_callbacks_t callbacks;
    /** Deliver messages (and with queue_events, connection events) into this queue too. The
     *  server holds a reference to it. */
    orc_queue_t *queue;
    int queue_events;
    /** Upgrade hook (auth, Origin checks), after the RFC 6455 checks pass: return 0 to accept,
     *  or fill *resp and return non-zero to refuse with it. NULL: accept all. */
    int (*on_upgrade)(void *user_data, const orc_http_request_t *req, orc_http_response_t *resp);
    /** Plain HTTP requests (not upgrades, or paths that take none): fill *resp and return 0,
     *  or return non-zero for 404. NULL: 404 for all. */
    int (*on_http)(void *user_data, const orc_http_request_t *req, orc_http_response_t *resp);
    void *hook_user_data;
    /** Called exactly once when the server lets go of callbacks.user_data and
     *  hook_user_data (at orc_server_free). May be NULL. */
    void (*user_data_free)(void *callbacks_user_data, void *hook_user_data);
    /** wss: PEM certificate chain and private key files (both or neither; read by
     *  orc_server_new, ORC_EIO/ORC_ETLS naming the file and OpenSSL's reason). With
     *  tls_client_ca_file, clients are asked for a certificate from that CA. */
    const char *tls_cert_file;
    const char *tls_key_file;
    const char *tls_client_ca_file;
} orc_server_options_t;

/** Fills `opts` with the defaults and sets opts->struct_size. Use orc_server_options_init().
 *  ORC_EINVAL if opts is NULL or struct_size is too small. Any thread. */
int orc_server_options_init_sized(orc_server_options_t *opts, size_t struct_size);

/** Fills `opts` with the defaults. Any thread. */
static inline void orc_server_options_init(orc_server_options_t *opts) {
    (void)orc_server_options_init_sized(opts, sizeof *opts);
}

/** Makes a server on `rt` (not listening yet; see orc_server_start). Options are copied.
 *  Errors: ORC_EINVAL (NULL rt/opts/out, options not initialised, a bad setting: the message
 *  names it). Any thread. */
int orc_server_new(orc_runtime_t *rt, const orc_server_options_t *opts, orc_server_t **out);

/** Binds and listens; returns once listening. Errors: ORC_EIO (address in use, cannot
 *  resolve the host; the message says which), ORC_ESTATE (already started), ORC_ECLOSED
 *  (runtime shutting down). Any thread but the I/O thread. */
int orc_server_start(orc_server_t *server);

/** The port listened on (0 before orc_server_start or for NULL). Any thread. */
uint16_t orc_server_port(const orc_server_t *server);

/** Open connections (0 for NULL). Any thread. */
size_t orc_server_connection_count(const orc_server_t *server);

/** Sends one message to every open connection; the frame is built once and shared.
 *  Errors: ORC_EINVAL (NULL server, data NULL with len > 0, bad opcode), ORC_ECLOSED. Any
 *  thread. */
int orc_server_broadcast(orc_server_t *server, int opcode, const uint8_t *data, size_t len);

/** Sends to the connection with this id (the id of a queued message). Returns like
 *  orc_conn_send; ORC_ENOTFOUND when no open connection has that id. Any thread. */
int orc_server_send(orc_server_t *server, uint64_t conn_id, int opcode, const uint8_t *data, size_t len);

/** The counters of the open connection with this id. ORC_ENOTFOUND when none. Any thread. */
int orc_server_connection_stats(orc_server_t *server, uint64_t conn_id, orc_conn_stats_t *out);

/** Closes the connection with this id (see orc_conn_close). ORC_ENOTFOUND when none. Any
 *  thread. */
int orc_server_close_connection(orc_server_t *server, uint64_t conn_id, int code, const char *reason);

/** Stops listening and starts the closing handshake (code, e.g. 1001, and a UTF-8 reason of
 *  at most 123 bytes, may be NULL) on every connection. Returns at once. Errors: ORC_EINVAL
 *  (bad code or reason), ORC_ECLOSED. Any thread. */
int orc_server_close(orc_server_t *server, int code, const char *reason);

/** Closes (as orc_server_close(1001) when still open) and frees the server; callbacks may
 *  still run for connections finishing their close until the runtime is freed, never after.
 *  NULL is a no-op. Any thread but the I/O thread. */
void orc_server_free(orc_server_t *server);

/** Client options. Fill with orc_client_options_init() first, then change fields. */
typedef struct orc_client_options {
    size_t struct_size;             /* set by orc_client_options_init */
    const orc_http_header_t *headers;   /* extra request fields (copied) */
    size_t header_count;
    const char *const *subprotocols;
    size_t subprotocol_count;
    uint32_t connect_timeout_ms;    /* connect + handshake, per attempt [10000] */
    int reconnect;                  /* reconnect after losing the connection [0] */
    uint32_t reconnect_initial_delay_ms;    /* full-jitter exponential backoff [100] */
    uint32_t reconnect_max_delay_ms;        /* [30000] */
    uint32_t reconnect_max_attempts;        /* in a row, 0: no limit [0] */
    size_t offline_buffer_messages; /* sent while not open: kept and flushed in order [1024] */
    size_t offline_buffer_bytes;    /* [1 MiB] */
    orc_ws_options_t ws;
    orc_ws_callbacks_t callbacks;
    /** State changes: reason is NUL-terminated, valid during the call (why it reconnects or
     *  closed; empty otherwise). On the I/O thread. */
    void (*on_state)(void *user_data, orc_client_t *client, orc_client_state_t state, const char *reason);
    orc_queue_t *queue;             /* as for servers */
    int queue_events;
    /** Called exactly once with callbacks.user_data when the client lets go of it. */
    void (*user_data_free)(void *user_data);
    /** wss:// only. The server's certificate must chain to a CA of tls_ca_file (PEM) and/or
     *  the system's store (tls_use_system_store [1]) and match the URL's host (SNI is sent for
     *  names); tls_verify_peer 0 turns all checking off (tests only) [1]. tls_cert_file and
     *  tls_key_file: a client certificate for servers that ask for one. */
    const char *tls_ca_file;
    int tls_use_system_store;
    int tls_verify_peer;
    const char *tls_cert_file;
    const char *tls_key_file;
} orc_client_options_t;

/** Fills `opts` with the defaults and sets opts->struct_size. Any thread. */
int orc_client_options_init_sized(orc_client_options_t *opts, size_t struct_size);

/** Fills `opts` with the defaults. Any thread. */
static inline void orc_client_options_init(orc_client_options_t *opts) {
    (void)orc_client_options_init_sized(opts, sizeof *opts);
}

/** Makes a client for `url` ("ws://host:port/path?query"; NUL-terminated) on `rt`; it does not
 *  connect until orc_client_connect. Messages sent before it opens wait in the offline
 *  buffer. Errors: ORC_EINVAL (bad URL or setting, named in the message), ORC_EIO/ORC_ETLS
 *  (a TLS file cannot be read or used). Any thread. */
int orc_client_new(orc_runtime_t *rt, const char *url, const orc_client_options_t *opts, orc_client_t **out);

/** Starts connecting; returns at once (states arrive through on_state). Any thread. */
int orc_client_connect(orc_client_t *client);

/** Sends a message on the open connection, or into the offline buffer while connecting or
 *  reconnecting. Returns ORC_OK, ORC_WS_ABOVE_HIGH_WATERMARK, or ORC_EINVAL, ORC_ECLOSED
 *  (closed for good), ORC_EFULL (offline buffer or send buffer full). Any thread. */
int orc_client_send(orc_client_t *client, int opcode, const uint8_t *data, size_t len);

/** Pings the open connection (the RTT lands in the stats). ORC_ECLOSED when not open. Any
 *  thread. */
int orc_client_ping(orc_client_t *client);

/** Closes for good: the closing handshake if open, else stops connecting. code 1000..4999 as
 *  RFC 6455 allows to send, reason UTF-8 up to 123 bytes or NULL. Any thread. */
int orc_client_close(orc_client_t *client, int code, const char *reason);

/** The current state (ORC_CLIENT_CLOSED for NULL). Any thread. */
orc_client_state_t orc_client_state(const orc_client_t *client);


/** The open connection's counters (zeros when none is open) plus reconnects. Any thread. */
int orc_client_stats(const orc_client_t *client, orc_conn_stats_t *out);

/** Closes (as orc_client_close(1000) when still open) and frees the client. NULL is a no-op.
 *  Any thread but the I/O thread. */
void orc_client_free(orc_client_t *client);

/** Sends one text (valid UTF-8 is the caller's duty) or binary message. Returns ORC_OK,
 *  ORC_WS_ABOVE_HIGH_WATERMARK (queued; wait for on_drain), or ORC_EINVAL, ORC_ECLOSED (not
 *  open), ORC_EFULL (past max_buffered: the slow-consumer policy applied). Any thread. */
int orc_conn_send(orc_conn_t *conn, int opcode, const uint8_t *data, size_t len);

/** Starts the closing handshake (see orc_client_close for code and reason). Closing a
 *  closing connection does nothing. Any thread. */
int orc_conn_close(orc_conn_t *conn, int code, const char *reason);

/** Sends a ping; on_pong reports its round trip. ORC_ECLOSED when not open. Any thread. */
int orc_conn_ping(orc_conn_t *conn);

/** The connection's id (unique in the process; 0 for NULL). Any thread. */
uint64_t orc_conn_id(const orc_conn_t *conn);

/** Bytes waiting in the send buffer (0 for NULL). Any thread. */
size_t orc_conn_buffered_amount(const orc_conn_t *conn);

/** The counters. ORC_EINVAL for NULL. Any thread. */
int orc_conn_stats(const orc_conn_t *conn, orc_conn_stats_t *out);

/** The request path, the agreed subprotocol (NULL when none) and the peer's address, as
 *  NUL-terminated strings valid while the connection is referenced. Any thread after
 *  on_open. */
const char *orc_conn_path(const orc_conn_t *conn);
const char *orc_conn_subprotocol(const orc_conn_t *conn);
const char *orc_conn_remote_address(const orc_conn_t *conn);

/** A pointer-sized slot for the user. Any thread. */
void orc_conn_set_user_data(orc_conn_t *conn, void *user_data);
void *orc_conn_user_data(const orc_conn_t *conn);

/** Takes / drops a reference (callbacks' pointers are borrowed). NULL is a no-op. Any thread. */
orc_conn_t *orc_conn_retain(orc_conn_t *conn);
void orc_conn_release(orc_conn_t *conn);

/** The connection a received message came from (queue delivery), 0 when none. Any thread. */
uint64_t orc_msg_connection_id(const orc_msg_t *msg);

/* ============================================================================= AGENTS */
/*
 * The agent SDK: the agent side of the hub protocol (docs/protocol.md, "The hub protocol",
 * sections Agents and Tasks). An orc_agent_t connects to a hub's /agent endpoint with an
 * orc_client_t of its own on a runtime, reconnects with backoff (to the next hub, when it has
 * several: FAILOVER below), and on every (re)connect sends agent.register signed with
 * HMAC-SHA256(secret, agentId "\n" timestamp "\n" nonce) (a fresh 32-hex-digit nonce and the
 * wall clock), listing the tasks it still holds (inFlight). Nothing else leaves before the hub
 * answers agent.registered: what the user sends meanwhile waits in the agent's outbox (in
 * order) and goes out after it, except what concerns tasks the hub did not list in
 * assignedTasks (it re-assigned them: the agent drops them from its in-flight set, discards
 * their queued messages and reports a CANCEL event). Once registered the agent sends
 * agent.heartbeat every heartbeatIntervalMs (cpu, memory and disk use of this machine, and its
 * number of tasks in flight).
 *
 * FAILOVER. An agent may be given several hub URLs (options.urls; hubs that share one
 * database). It starts with urls[0]. Whenever a connection is lost, or an attempt to connect
 * fails (refused, timed out, a failed handshake, no agent.registered within
 * request_timeout_ms, a transient registration error such as DB_001), the next attempt goes
 * to the next URL of the list, after the usual backoff delay, and after the last URL to
 * urls[0] again: round robin. The agent stays with a hub as long as its connection lives;
 * it goes back to urls[0] only by going round the list. The backoff counts attempts across
 * the URLs and starts again once a connection opens. Each move is reported by a FAILOVER
 * event (never with one URL). On the new hub the agent registers with its tasks in flight,
 * keeps those the hub lists in assignedTasks (what waits in the outbox for them goes out
 * after agent.registered, in order, once) and cancels the others, as after any reconnect.
 * orc_agent_url says which hub the agent is with.
 *
 * A task is "in flight" from its task.assign until the agent sends its result, rejects it,
 * or it is cancelled. The agent numbers the chunks of orc_agent_stream (seq 0, 1, 2, ... per
 * task attempt) and measures a result's duration from the assign. A task.assign for a task
 * attempt already in flight is a duplicate and is ignored; a task.cancel for one not in
 * flight is ignored.
 *
 * EVENTS reach the user one of two ways, chosen at orc_agent_new (docs/abi.md, Threads):
 *   1. a queue (options.on_event == NULL): orc_agent_next_event pops them, waiting with a
 *      timeout; orc_agent_fd gives a file descriptor that is readable while an event waits
 *      (for poll/epoll/asyncio add_reader);
 *   2. a callback (options.on_event): called on the runtime's I/O thread with an event
 *      borrowed for the call. It must not block; it may call the actions below.
 *
 * An event (orc_agent_event_t) is immutable. Its string getters return a pointer into the
 * event (UTF-8, also NUL-terminated for convenience; the length goes to *len when len is not
 * NULL), valid until orc_agent_event_free (queue events) or until the callback returns
 * (callback events); NULL when the event has no such field (and for a NULL event). A TASK
 * event can take a pointer of the user's for its attempt (orc_agent_event_set_task_data);
 * the later events about the attempt hand it back (orc_agent_event_task_data).
 *
 *   kind   fields
 *   TASK   task_id, attempt, task_json (the assign's "task" object), params_json (its
 *          "parameters", "{}" when absent), payload_json
 *   CANCEL task_id, attempt, reason ("cancelled by the hub", "re-assigned by the hub"),
 *          payload_json (NULL when the agent made the event itself)
 *   INPUT  task_id, attempt (0 when the task is not in flight), input (the "input" string,
 *          or the JSON text of a non-string value), payload_json
 *   STATE  state, reason (why: the transport's reason when disconnected, "AUTH_001: bad
 *          signature" when failed), code (the hub's error code, e.g. "AUTH_001", or NULL),
 *          url (the hub the new state is about: the connection's hub for CONNECTING and
 *          REGISTERED, the hub lost or not reached for DISCONNECTED, the last hub for FAILED
 *          and CLOSED)
 *   ERROR  an error the hub answered to one of the agent's messages other than the
 *          registration: code ("PARAM_001", ...), reason (the hub's message), task_id and
 *          attempt when the agent could tell which task it was about, payload_json
 *   FAILOVER  url (the hub URL the next attempt goes to), reason ("<previous url>: <why>;
 *          next: <url>")
 *
 * STATES: CONNECTING (connecting, or connected and waiting for agent.registered) ->
 * REGISTERED -> DISCONNECTED (lost; reconnecting with backoff) -> CONNECTING ... ;
 * FAILED: the hub refused the registration (AUTH_001: bad signature, unknown key, stale
 * clock; PARAM_001): the agent stops for good (reconnecting with the same credentials
 * would be refused again); CLOSED: orc_agent_close. A STATE event reports each change.
 * When the agent is failed or closed, the queue reports ORC_ECLOSED once drained.
 *
 * ERRORS of the actions: ORC_EINVAL (NULL or non-UTF-8 argument, bad value; the message says
 * which), ORC_ENOTFOUND (that task attempt is not in flight), ORC_ECLOSED (the agent is
 * closed or failed), ORC_EFULL (the outbox, which holds what waits for the registration,
 * is full: 65536 messages or 64 MiB). An action that returns ORC_OK has sent its message, or
 * queued it in the outbox to go out after the next agent.registered.
 *
 * THREADS: every function may be called from any thread, including from on_event on the
 * I/O thread. Actions on one agent are ordered: messages leave in the order the calls
 * returned.
 */

/** An agent connection to a hub. Thread-safe; free with orc_agent_free. */
typedef struct orc_agent orc_agent_t;
/** One event; see orc_agent_event_* below. */
typedef struct orc_agent_event orc_agent_event_t;

/** What an event reports. */
typedef enum orc_agent_event_kind {
    ORC_AGENT_EVENT_TASK = 1,       /* task.assign: a new task attempt for this agent */
    ORC_AGENT_EVENT_CANCEL = 2,     /* the task attempt is cancelled (no longer in flight) */
    ORC_AGENT_EVENT_INPUT = 3,      /* worker.input: input for a running task */
    ORC_AGENT_EVENT_STATE = 4,      /* the agent's state changed */
    ORC_AGENT_EVENT_ERROR = 5,      /* the hub answered one of our messages with an error */
    ORC_AGENT_EVENT_FAILOVER = 6    /* the agent moves to the next hub URL (several URLs only) */
} orc_agent_event_kind_t;

/** The agent's states (see STATES above). */
typedef enum orc_agent_state {
    ORC_AGENT_CONNECTING = 0,
    ORC_AGENT_REGISTERED = 1,
    ORC_AGENT_DISCONNECTED = 2,
    ORC_AGENT_FAILED = 3,
    ORC_AGENT_CLOSED = 4
} orc_agent_state_t;

/** Agent options. Fill with orc_agent_options_init() first, then change fields (defaults in
 *  brackets). Strings are NUL-terminated UTF-8, copied by orc_agent_new. */
typedef struct orc_agent_options {
    size_t struct_size;             /* set by orc_agent_options_init */
    const char *url;                /* "ws://host:port/agent" or "wss://..." (required, unless
                                       urls is given: then NULL) */
    const char *agent_id;           /* required, not empty */
    const char *name;               /* [agent_id] */
    const char *version;            /* the agent's own version ["0.0.0"] */
    const char *const *capabilities;    /* capabilities_count strings, e.g. "shell" */
    size_t capabilities_count;
    const char *metadata_json;      /* a JSON object, sent as "metadata" [NULL: {}] */
    uint32_t max_concurrency;       /* tasks this agent runs at once, >= 1 [1] */
    const char *key_id;             /* the hub's name for the secret (required) */
    const uint8_t *secret;          /* the shared secret: secret_len bytes, copied, not empty */
    size_t secret_len;
    uint32_t request_timeout_ms;    /* no agent.registered within this after connecting:
                                       drop the connection (CONN_002) and reconnect [30000] */
    uint32_t connect_timeout_ms;    /* TCP + TLS + WebSocket handshake, per attempt [10000] */
    uint32_t reconnect_initial_delay_ms;    /* full-jitter exponential backoff [100] */
    uint32_t reconnect_max_delay_ms;        /* [30000] */
    /** NULL: events go to the queue (orc_agent_next_event, orc_agent_fd). Otherwise every
     *  event is passed to on_event on the I/O thread; `ev` is borrowed for the call. */
    void (*on_event)(void *user_data, orc_agent_t *agent, const orc_agent_event_t *ev);
    void *user_data;
    /** Called exactly once with user_data by orc_agent_free, after the last on_event call
     *  (a failed orc_agent_new does not call it). May be NULL. */
    void (*user_data_free)(void *user_data);
    /** wss:// only: a PEM file of CAs to trust besides the system's store [NULL], and whether
     *  to verify the hub's certificate and host name at all (0: tests only) [1]. */
    const char *tls_ca_file;
    int tls_verify;
    /** Several hubs (appended after 0.1): url_count URLs tried round robin (see FAILOVER),
     *  instead of url, which must then be NULL. url_count 0: url alone [NULL, 0]. */
    const char *const *urls;
    size_t url_count;
} orc_agent_options_t;

/** Fills `opts` with the defaults and sets opts->struct_size. Use orc_agent_options_init().
 *  ORC_EINVAL if opts is NULL or struct_size is too small. Any thread. */
int orc_agent_options_init_sized(orc_agent_options_t *opts, size_t struct_size);

/** Fills `opts` with the defaults. Any thread. */
static inline void orc_agent_options_init(orc_agent_options_t *opts) {
    (void)orc_agent_options_init_sized(opts, sizeof *opts);
}

/** Makes an agent on `rt` (not connected yet: see orc_agent_start). Options are copied.
 *  Errors: ORC_EINVAL (NULL rt/opts/out, options not initialised, a required option missing
 *  or a bad one: the message names it; metadata_json not a JSON object; both url and urls,
 *  a NULL entry of urls), ORC_EIO/ORC_ETLS (tls_ca_file cannot be read or used; with wss://
 *  URLs one TLS setting serves them all). Any thread. */
int orc_agent_new(orc_runtime_t *rt, const orc_agent_options_t *opts, orc_agent_t **out);

/** Starts connecting and registering; returns at once (STATE events follow). Starting a
 *  started agent does nothing. Errors: ORC_EINVAL (NULL), ORC_ECLOSED (closed, or the
 *  runtime is shutting down). Any thread. */
int orc_agent_start(orc_agent_t *agent);

/** The current state (ORC_AGENT_CLOSED for NULL). Any thread. */
orc_agent_state_t orc_agent_state(const orc_agent_t *agent);

/** The URL of the hub the agent is connected to (CONNECTING once the connection opened,
 *  REGISTERED), or is connecting to or will try next (CONNECTING before that, DISCONNECTED):
 *  the agent's copy of options.url or of one of options.urls, NUL-terminated, valid until
 *  orc_agent_free. *index (when index is not NULL) gets its position in urls (0 for url).
 *  NULL (and *index 0) for a NULL agent. Any thread. */
const char *orc_agent_url(const orc_agent_t *agent, size_t *index);

/** Pops the next event (queue mode). timeout_ms: 0 = don't wait (ORC_EAGAIN when none),
 *  < 0 = wait forever, > 0 = wait that long (ORC_ETIMEDOUT). On ORC_OK the caller owns *out
 *  (orc_agent_event_free it). Errors: ORC_EINVAL (NULL), ORC_EAGAIN, ORC_ETIMEDOUT,
 *  ORC_ECLOSED (the agent is closed or failed and every event was popped), ORC_ESTATE (the
 *  agent delivers to on_event). Any thread. */
int orc_agent_next_event(orc_agent_t *agent, int64_t timeout_ms, orc_agent_event_t **out);

/** Stores in *fd a non-blocking file descriptor that is readable while an event waits or the
 *  queue is closed (queue mode): wait for it in your event loop, then call
 *  orc_agent_next_event with timeout 0 until ORC_EAGAIN. The agent owns the fd (closed by
 *  orc_agent_free); never read, write or close it. Errors: ORC_EINVAL, ORC_ESTATE (callback
 *  mode), ORC_EIO. Any thread. */
int orc_agent_fd(orc_agent_t *agent, int *fd);

/** Frees an event from orc_agent_next_event. NULL is a no-op. Never free a callback's
 *  event. Any thread. */
void orc_agent_event_free(orc_agent_event_t *ev);

/** Stores the event's kind in *out. Errors: ORC_EINVAL (NULL ev or out). Any thread. */
int orc_agent_event_get_kind(const orc_agent_event_t *ev, orc_agent_event_kind_t *out);
/** The event's kind (an orc_agent_event_kind_t value), or ORC_EINVAL for NULL: a value and an
 *  error share the int. Kept for programs built against 0.1; new code calls
 *  orc_agent_event_get_kind. Any thread. */
int orc_agent_event_kind(const orc_agent_event_t *ev);
/** The task attempt (1, 2, ...), 0 when the event has none or ev is NULL. Any thread. */
uint32_t orc_agent_event_attempt(const orc_agent_event_t *ev);
/** STATE events: the new state; other events and NULL: ORC_AGENT_CLOSED. Any thread. */
orc_agent_state_t orc_agent_event_state(const orc_agent_event_t *ev);
/** String fields (see the table above): pointer into the event, NUL-terminated, length in
 *  *len when len is not NULL (0 when absent); NULL when absent. Any thread. */
const char *orc_agent_event_task_id(const orc_agent_event_t *ev, size_t *len);
const char *orc_agent_event_task_json(const orc_agent_event_t *ev, size_t *len);
const char *orc_agent_event_params_json(const orc_agent_event_t *ev, size_t *len);
const char *orc_agent_event_input(const orc_agent_event_t *ev, size_t *len);
const char *orc_agent_event_reason(const orc_agent_event_t *ev, size_t *len);
const char *orc_agent_event_code(const orc_agent_event_t *ev, size_t *len);
/** The whole payload of the hub's envelope as JSON text (fields this version does not
 *  extract are there); NULL for events the agent made itself (STATE, re-assigned CANCEL).
 *  Any thread. */
const char *orc_agent_event_payload_json(const orc_agent_event_t *ev, size_t *len);
/** STATE and FAILOVER events: the hub URL (see the table above); NULL for the others. Any
 *  thread. */
const char *orc_agent_event_url(const orc_agent_event_t *ev, size_t *len);

/** Attaches `data` to the task attempt a TASK event reports (as libuv's handle->data): every
 *  later event about that attempt (CANCEL, INPUT, ERROR) carries it, so a program or binding
 *  finds its own task object from the event (orc_agent_event_task_data) without keeping a map
 *  of the tasks in flight beside the agent's. Once per attempt. `data_free` (may be NULL) is
 *  called exactly once with `data` when the agent lets go of it: after the attempt left the
 *  in-flight set (orc_agent_result, orc_agent_reject, a CANCEL, orc_agent_close or a refused
 *  registration) and every event that carries it was freed (queue events: by
 *  orc_agent_event_free; callback events: when on_event returns). It runs on the thread that
 *  lets go last, which may be the I/O thread or a thread inside orc_agent_result,
 *  orc_agent_reject, orc_agent_close, orc_agent_free or orc_agent_event_free (never under
 *  a lock of the agent's): it must not block. On an error the caller keeps `data` and
 *  data_free is not called. Errors: ORC_EINVAL (NULL ev or data, not a TASK event),
 *  ORC_ESTATE (the attempt has its data already). Any thread, from on_event too (the usual
 *  place: the data is then set before any later event about the attempt is made). */
int orc_agent_event_set_task_data(const orc_agent_event_t *ev, void *data, void (*data_free)(void *data));

/** The data attached to the event's task attempt with orc_agent_event_set_task_data; NULL when
 *  none was, when the event is about no task attempt in flight (a STATE event, an INPUT
 *  with attempt 0, an ERROR about no task here), or for a NULL event. Valid while the
 *  event is (the agent lets go of it after the event is freed). Any thread. */
void *orc_agent_event_task_data(const orc_agent_event_t *ev);

/** Every commonly read field of an event at once (orc_agent_event_view). The strings are
 *  those of the getters above (pointers into the event, NUL-terminated, NULL and length 0
 *  when absent, same lifetime). task_json and params_json have their getters only. */
typedef struct orc_agent_event_view {
    size_t struct_size;          /* the caller sets sizeof(orc_agent_event_view_t) */
    int kind;                    /* an orc_agent_event_kind_t value */
    orc_agent_state_t state;     /* STATE events; ORC_AGENT_CLOSED for the others */
    uint32_t attempt;            /* 0 when the event has none */
    const char *task_id;
    size_t task_id_len;
    const char *payload_json;
    size_t payload_json_len;
    const char *input;
    size_t input_len;
    const char *reason;
    size_t reason_len;
    const char *code;
    size_t code_len;
} orc_agent_event_view_t;

/** Fills *view with the event's fields: one call instead of one per field, for bindings
 *  where each call into the library costs (ctypes). The caller sets view->struct_size =
 *  sizeof *view; a smaller one is rejected, with a larger one (a newer header) only the
 *  fields this library knows are written. Errors: ORC_EINVAL (NULL ev or view, struct_size
 *  too small), ORC_ENOMEM. Any thread. */
int orc_agent_event_view(const orc_agent_event_t *ev, orc_agent_event_view_t *view);

/* Actions. task_id is the NUL-terminated id of a task attempt in flight; see ERRORS above. */

/** Sends task.accepted {taskId, attempt}. Any thread. */
int orc_agent_accept(orc_agent_t *agent, const char *task_id, uint32_t attempt);

/** Sends task.rejected {taskId, attempt, reason} (reason: UTF-8, NULL for "rejected"); the
 *  task leaves the in-flight set. Any thread. */
int orc_agent_reject(orc_agent_t *agent, const char *task_id, uint32_t attempt, const char *reason);

/** Sends task.progress {taskId, attempt, progress, currentStep?}: percent in 0..100 (ORC_EINVAL
 *  outside, or NaN); step may be NULL. Any thread. */
int orc_agent_progress(orc_agent_t *agent, const char *task_id, uint32_t attempt, double percent,
                       const char *step);

/** Sends task.stream {taskId, attempt, seq, type, data, timestamp}: type "stdout", "stderr" or
 *  "log"; data is `len` bytes of UTF-8 (copied; invalid UTF-8 is ORC_EINVAL naming the byte;
 *  NULL only with len 0). seq is 0, 1, 2, ... per task attempt, given by the agent in call
 *  order. Any thread. */
int orc_agent_stream(orc_agent_t *agent, const char *task_id, uint32_t attempt, const char *type,
                     const uint8_t *data, size_t len);

/** Sends task.result {taskId, attempt, success, result?, error?, duration}: success != 0 for a
 *  success; result_json (may be NULL) is one JSON value (ORC_EPARSE naming the byte when it is
 *  not); error (may be NULL) a UTF-8 message; duration is the time since the task.assign, in
 *  ms, measured by the agent. The task leaves the in-flight set. Any thread. */
int orc_agent_result(orc_agent_t *agent, const char *task_id, uint32_t attempt, int success,
                     const char *result_json, const char *error);

/** Sends worker.output {agentId, taskId, attempt, type, content, timestamp, details?}: type is
 *  "user", "assistant", "tool", "tool-result" or "system"; content UTF-8; details_json (may
 *  be NULL) a JSON object. Any thread. */
int orc_agent_worker_output(orc_agent_t *agent, const char *task_id, uint32_t attempt, const char *type,
                            const char *content, const char *details_json);

/** Sends worker.status {agentId, taskId, attempt, status, message?}: status is "starting",
 *  "running", "paused", "completed" or "error"; message may be NULL. Any thread. */
int orc_agent_worker_status(orc_agent_t *agent, const char *task_id, uint32_t attempt, const char *status,
                            const char *message);

/** Closes for good and returns at once: nothing more is sent (the outbox is dropped; actions
 *  fail with ORC_ECLOSED) and orc_agent_state is ORC_AGENT_CLOSED (a failed agent stays
 *  ORC_AGENT_FAILED). The connection runs its closing handshake (1000); once it is closed
 *  (at the latest after the close timeout, 5 s) a STATE event CLOSED is the last event, and
 *  the queue then reports ORC_ECLOSED: wait for it before orc_agent_free and
 *  orc_runtime_free for a clean close. Closing a closed agent does nothing. Errors:
 *  ORC_EINVAL (NULL). Any thread. */
int orc_agent_close(orc_agent_t *agent);

/** Closes (as orc_agent_close) and frees the agent, its fd and the events still queued (a
 *  closing handshake in progress goes on without it until the runtime is freed). on_event is not called after it returns (from another thread it waits for a call in
 *  progress), and user_data_free runs before it returns (called inside on_event: do not touch
 *  user_data after it). Events already popped stay valid until orc_agent_event_free. NULL is
 *  a no-op. Any thread. */
void orc_agent_free(orc_agent_t *agent);

#ifdef __cplusplus
}
#endif

#endif /* ORCHESTRA_H */
