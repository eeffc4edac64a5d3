/*
 * Message: a JS object wrapping one reference to an orc_msg_t. The object's finalizer (or
 * msg.release()) drops the reference. Getters copy out of the message (strings, Buffers), so
 * nothing JS holds points into library memory.
 *
 * Native members here are the raw ones; lib/index.js adds the JavaScript conveniences
 * (fields object in the constructor, headers as an object, payload typed by content type,
 * toJSON, fromObject) on the same prototype.
 */
#include "addon.h"

#include <stdlib.h>
#include <string.h>

#define STACK 512

/* ------------------------------------------------------------------------------ wrap */

static void msg_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    orc_msg_release(data);
}

/* Attaches `msg` (a reference the caller owns) to `obj`. On failure releases it. */
static bool msg_attach(napi_env env, napi_value obj, orc_msg_t *msg) {
    if (napi_type_tag_object(env, obj, &orc_node_tag_message) != napi_ok ||
        napi_wrap(env, obj, msg, msg_finalize, NULL, NULL) != napi_ok) {
        orc_msg_release(msg);
        orc_node_throw_napi(env, "napi_wrap");
        return false;
    }
    return true;
}

orc_msg_t *orc_node_message_unwrap(napi_env env, napi_value v) {
    bool tagged = false;
    void *msg = NULL;
    napi_valuetype t;
    if (v && napi_typeof(env, v, &t) == napi_ok && t == napi_object &&
        napi_check_object_type_tag(env, v, &orc_node_tag_message, &tagged) == napi_ok && tagged) {
        if (napi_unwrap(env, v, &msg) == napi_ok && msg) return msg;
        orc_node_throw_msg(env, ORC_ESTATE, false, "the message was released (msg.release())");
        return NULL;
    }
    orc_node_throw_msg(env, ORC_EINVAL, true, "expected a Message");
    return NULL;
}

napi_value orc_node_message_adopt(napi_env env, orc_msg_t *msg) {
    orc_node_env *d = orc_node_env_get(env);
    napi_value ctor, sentinel, obj;
    if (!d || napi_get_reference_value(env, d->message_ctor, &ctor) != napi_ok ||
        napi_get_reference_value(env, d->adopt_sentinel, &sentinel) != napi_ok) {
        orc_msg_release(msg);
        orc_node_throw_napi(env, "message class");
        return NULL;
    }
    d->adopt_msg = msg;
    napi_status st = napi_new_instance(env, ctor, 1, &sentinel, &obj);
    if (d->adopt_msg) {  /* the constructor did not take it */
        orc_msg_release(d->adopt_msg);
        d->adopt_msg = NULL;
    }
    if (st != napi_ok) {
        orc_node_throw_napi(env, "napi_new_instance(Message)");
        return NULL;
    }
    return obj;
}

/* `this` of a method call, unwrapped; argv filled up to *argc. */
static orc_msg_t *this_msg(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv, void **data) {
    napi_value self;
    size_t zero = 0;
    if (napi_get_cb_info(env, info, argc ? argc : &zero, argv, &self, data) != napi_ok) {
        orc_node_throw_napi(env, "napi_get_cb_info");
        return NULL;
    }
    return orc_node_message_unwrap(env, self);
}

static napi_value undefined(napi_env env) {
    napi_value u;
    napi_get_undefined(env, &u);
    return u;
}

static napi_value null_value(napi_env env) {
    napi_value n;
    napi_get_null(env, &n);
    return n;
}

static napi_value boolean(napi_env env, bool b) {
    napi_value v;
    napi_get_boolean(env, b, &v);
    return v;
}

static napi_value number(napi_env env, double x) {
    napi_value v;
    napi_create_double(env, x, &v);
    return v;
}

/* A Buffer holding a copy of ptr+len. */
static napi_value buffer_copy(napi_env env, const void *ptr, size_t len) {
    napi_value buf;
    void *dst;
    if (napi_create_buffer_copy(env, len, len ? ptr : "", &dst, &buf) != napi_ok) {
        orc_node_throw_napi(env, "napi_create_buffer_copy");
        return NULL;
    }
    return buf;
}

static void free_lib_buffer(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    orc_buf_free(data);
}

/* A Buffer over a block the library allocated: small ones are copied and freed at once,
 * larger ones are handed to JS and freed by the Buffer's finalizer (no copy). */
static napi_value buffer_from_lib(napi_env env, void *data, size_t len) {
    napi_value buf;
    if (len <= 4096) {
        buf = buffer_copy(env, data, len);
        orc_buf_free(data);
        return buf;
    }
    if (napi_create_external_buffer(env, len, data, free_lib_buffer, NULL, &buf) != napi_ok) {
        orc_buf_free(data);
        orc_node_throw_napi(env, "napi_create_external_buffer");
        return NULL;
    }
    return buf;
}

static int parse_format(napi_env env, napi_value v, orc_format_t *out) {
    char s[16];
    size_t n = 0;
    napi_valuetype t;
    if (v == NULL || orc_node_is_nullish(env, v)) {
        *out = ORC_FORMAT_JSON;
        return 1;
    }
    if (napi_typeof(env, v, &t) == napi_ok && t == napi_string &&
        napi_get_value_string_utf8(env, v, s, sizeof s, &n) == napi_ok) {
        if (strcmp(s, "json") == 0) { *out = ORC_FORMAT_JSON; return 1; }
        if (strcmp(s, "msgpack") == 0) { *out = ORC_FORMAT_MSGPACK; return 1; }
    }
    orc_node_throw_msg(env, ORC_EINVAL, true, "format must be 'json' or 'msgpack'");
    return 0;
}

/* ----------------------------------------------------------------------- constructor */

static napi_value msg_ctor(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2], self, target;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
    NAPI_CALL(env, napi_get_new_target(env, info, &target));
    if (target == NULL) return orc_node_throw_msg(env, ORC_EINVAL, true, "Message must be called with new");

    orc_node_env *d = orc_node_env_get(env);
    if (argc >= 1 && d && d->adopt_msg) {
        napi_value sentinel;
        bool same = false;
        NAPI_CALL(env, napi_get_reference_value(env, d->adopt_sentinel, &sentinel));
        NAPI_CALL(env, napi_strict_equals(env, argv[0], sentinel, &same));
        if (same) {
            orc_msg_t *msg = d->adopt_msg;
            d->adopt_msg = NULL;
            return msg_attach(env, self, msg) ? self : NULL;
        }
    }

    if (argc < 1) return orc_node_throw_msg(env, ORC_EINVAL, true, "new Message(type, fields?): type is required");
    char stack[STACK];
    orc_node_bytes type;
    if (!orc_node_get_bytes(env, argv[0], "type", true, stack, sizeof stack, &type)) return NULL;
    orc_msg_t *msg = NULL;
    int rc = orc_msg_new(type.ptr, type.len, &msg);
    free(type.heap);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    if (!msg_attach(env, self, msg)) return NULL;

    /* The optional fields object is applied by lib/index.js (Message.prototype._applyFields):
     * every field goes through the same setters a user calls. */
    if (argc >= 2 && !orc_node_is_nullish(env, argv[1])) {
        napi_value apply, result;
        napi_valuetype t;
        NAPI_CALL(env, napi_get_named_property(env, self, "_applyFields", &apply));
        NAPI_CALL(env, napi_typeof(env, apply, &t));
        if (t != napi_function)
            return orc_node_throw_msg(env, ORC_EINTERNAL, false, "Message fields need lib/index.js (use require('orchestra'))");
        if (napi_call_function(env, self, apply, 1, &argv[1], &result) != napi_ok) return NULL;
    }
    return self;
}

/* -------------------------------------------------------------------- text fields */

static const orc_field_t FIELDS[] = {
    ORC_FIELD_ID, ORC_FIELD_TYPE, ORC_FIELD_VERSION, ORC_FIELD_SOURCE,
    ORC_FIELD_TARGET, ORC_FIELD_CORRELATION_ID, ORC_FIELD_REPLY_TO,
};

static napi_value get_field(napi_env env, napi_callback_info info) {
    void *data;
    orc_msg_t *msg = this_msg(env, info, NULL, NULL, &data);
    if (!msg) return NULL;
    const char *ptr;
    size_t len;
    int rc = orc_msg_get(msg, *(const orc_field_t *)data, &ptr, &len);
    if (rc == ORC_ENOTFOUND) return null_value(env);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    return orc_node_string(env, ptr, len);
}

static napi_value set_field(napi_env env, napi_callback_info info) {
    void *data;
    size_t argc = 1;
    napi_value argv[1];
    orc_msg_t *msg = this_msg(env, info, &argc, argv, &data);
    if (!msg) return NULL;
    orc_field_t field = *(const orc_field_t *)data;
    int rc;
    if (argc < 1 || orc_node_is_nullish(env, argv[0])) {
        rc = orc_msg_set(msg, field, NULL, 0);
    } else {
        char stack[STACK];
        orc_node_bytes b;
        if (!orc_node_get_bytes(env, argv[0], "field value", true, stack, sizeof stack, &b)) return NULL;
        rc = orc_msg_set(msg, field, b.ptr, b.len);
        free(b.heap);
    }
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    return NULL;
}

/* --------------------------------------------------------------- numeric fields */

static napi_value get_timestamp(napi_env env, napi_callback_info info) {
    orc_msg_t *msg = this_msg(env, info, NULL, NULL, NULL);
    if (!msg) return NULL;
    int64_t ms;
    int rc = orc_msg_timestamp(msg, &ms);
    if (rc == ORC_ENOTFOUND) return null_value(env);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    return number(env, (double)ms);
}

static napi_value set_timestamp(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    orc_msg_t *msg = this_msg(env, info, &argc, argv, NULL);
    if (!msg) return NULL;
    int64_t ms;
    if (argc < 1 || !orc_node_get_int64(env, argv[0], "timestamp", &ms)) return NULL;
    int rc = orc_msg_set_timestamp(msg, ms);
    return rc == ORC_OK ? NULL : orc_node_throw(env, rc);
}

static napi_value get_ttl(napi_env env, napi_callback_info info) {
    orc_msg_t *msg = this_msg(env, info, NULL, NULL, NULL);
    if (!msg) return NULL;
    int64_t ms;
    int rc = orc_msg_ttl(msg, &ms);
    if (rc == ORC_ENOTFOUND) return null_value(env);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    return number(env, (double)ms);
}

static napi_value set_ttl(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    orc_msg_t *msg = this_msg(env, info, &argc, argv, NULL);
    if (!msg) return NULL;
    int64_t ms = -1;  /* null / undefined clears */
    if (argc >= 1 && !orc_node_is_nullish(env, argv[0])) {
        if (!orc_node_get_int64(env, argv[0], "ttl", &ms)) return NULL;
        if (ms < 0) return orc_node_throw_msg(env, ORC_EINVAL, true, "ttl must be >= 0 (null clears it)");
    }
    int rc = orc_msg_set_ttl(msg, ms);
    return rc == ORC_OK ? NULL : orc_node_throw(env, rc);
}

static napi_value get_priority(napi_env env, napi_callback_info info) {
    orc_msg_t *msg = this_msg(env, info, NULL, NULL, NULL);
    if (!msg) return NULL;
    int p = orc_msg_priority(msg);
    if (p < 0) return orc_node_throw(env, p);
    return number(env, p);
}

static napi_value set_priority(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    orc_msg_t *msg = this_msg(env, info, &argc, argv, NULL);
    if (!msg) return NULL;
    int64_t p;
    if (argc < 1 || !orc_node_get_int64(env, argv[0], "priority", &p)) return NULL;
    if (p < 0 || p > 3) return orc_node_throw_msg(env, ORC_EINVAL, true, "priority must be 0 (low) .. 3 (critical)");
    int rc = orc_msg_set_priority(msg, (int)p);
    return rc == ORC_OK ? NULL : orc_node_throw(env, rc);
}

static napi_value get_compressed(napi_env env, napi_callback_info info) {
    orc_msg_t *msg = this_msg(env, info, NULL, NULL, NULL);
    return msg ? boolean(env, orc_msg_is_compressed(msg) == 1) : NULL;
}

static napi_value get_encrypted(napi_env env, napi_callback_info info) {
    orc_msg_t *msg = this_msg(env, info, NULL, NULL, NULL);
    return msg ? boolean(env, orc_msg_is_encrypted(msg) == 1) : NULL;
}

static napi_value get_header_count(napi_env env, napi_callback_info info) {
    orc_msg_t *msg = this_msg(env, info, NULL, NULL, NULL);
    return msg ? number(env, (double)orc_msg_header_count(msg)) : NULL;
}

/* ---------------------------------------------------------------------- headers */

/* _headerRaw(key) -> undefined | [value: string, isJson: boolean] */
static napi_value header_raw(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    orc_msg_t *msg = this_msg(env, info, &argc, argv, NULL);
    if (!msg) return NULL;
    if (argc < 1) return orc_node_throw_msg(env, ORC_EINVAL, true, "header key is required");
    char stack[STACK];
    orc_node_bytes k;
    if (!orc_node_get_bytes(env, argv[0], "header key", true, stack, sizeof stack, &k)) return NULL;
    const char *v;
    size_t vlen;
    int is_json = 0;
    int rc = orc_msg_header_get(msg, k.ptr, k.len, &v, &vlen, &is_json);
    free(k.heap);
    if (rc == ORC_ENOTFOUND) return undefined(env);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    napi_value arr, s;
    NAPI_CALL(env, napi_create_array_with_length(env, 2, &arr));
    if (!(s = orc_node_string(env, v, vlen))) return NULL;
    NAPI_CALL(env, napi_set_element(env, arr, 0, s));
    NAPI_CALL(env, napi_set_element(env, arr, 1, boolean(env, is_json != 0)));
    return arr;
}

/* _headersRaw() -> [key0, value0, isJson0, key1, ...] in order of arrival */
static napi_value headers_raw(napi_env env, napi_callback_info info) {
    orc_msg_t *msg = this_msg(env, info, NULL, NULL, NULL);
    if (!msg) return NULL;
    size_t n = orc_msg_header_count(msg);
    napi_value arr;
    NAPI_CALL(env, napi_create_array_with_length(env, n * 3, &arr));
    for (size_t i = 0; i < n; i++) {
        const char *k, *v;
        size_t klen, vlen;
        int is_json = 0;
        int rc = orc_msg_header_at(msg, i, &k, &klen, &v, &vlen, &is_json);
        if (rc != ORC_OK) return orc_node_throw(env, rc);
        napi_value ks = orc_node_string(env, k, klen), vs;
        if (!ks || !(vs = orc_node_string(env, v, vlen))) return NULL;
        NAPI_CALL(env, napi_set_element(env, arr, (uint32_t)(i * 3), ks));
        NAPI_CALL(env, napi_set_element(env, arr, (uint32_t)(i * 3 + 1), vs));
        NAPI_CALL(env, napi_set_element(env, arr, (uint32_t)(i * 3 + 2), boolean(env, is_json != 0)));
    }
    return arr;
}

/* _setHeader(key, value, isJson): a string value, or JSON text when isJson. */
static napi_value set_header_raw(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    orc_msg_t *msg = this_msg(env, info, &argc, argv, NULL);
    if (!msg) return NULL;
    if (argc < 2) return orc_node_throw_msg(env, ORC_EINVAL, true, "setHeader(key, value)");
    bool is_json = false;
    if (argc >= 3) napi_get_value_bool(env, argv[2], &is_json);
    char ks[STACK], vs[STACK];
    orc_node_bytes k, v;
    if (!orc_node_get_bytes(env, argv[0], "header key", true, ks, sizeof ks, &k)) return NULL;
    if (!orc_node_get_bytes(env, argv[1], "header value", true, vs, sizeof vs, &v)) {
        free(k.heap);
        return NULL;
    }
    int rc = is_json ? orc_msg_header_set_json(msg, k.ptr, k.len, v.ptr, v.len)
                     : orc_msg_header_set(msg, k.ptr, k.len, v.ptr, v.len);
    free(k.heap);
    free(v.heap);
    return rc == ORC_OK ? NULL : orc_node_throw(env, rc);
}

static napi_value remove_header(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    orc_msg_t *msg = this_msg(env, info, &argc, argv, NULL);
    if (!msg) return NULL;
    if (argc < 1) return orc_node_throw_msg(env, ORC_EINVAL, true, "header key is required");
    char stack[STACK];
    orc_node_bytes k;
    if (!orc_node_get_bytes(env, argv[0], "header key", true, stack, sizeof stack, &k)) return NULL;
    int rc = orc_msg_header_remove(msg, k.ptr, k.len);
    free(k.heap);
    if (rc == ORC_ENOTFOUND) return boolean(env, false);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    return boolean(env, true);
}

/* ---------------------------------------------------------------------- payload */

/* _payloadRaw(asString) -> undefined | [Buffer or string, contentType 0..2] */
static napi_value payload_raw(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    orc_msg_t *msg = this_msg(env, info, &argc, argv, NULL);
    if (!msg) return NULL;
    bool as_string = false;
    if (argc >= 1) napi_get_value_bool(env, argv[0], &as_string);
    const void *data;
    size_t len;
    orc_content_type_t ct;
    int rc = orc_msg_payload(msg, &data, &len, &ct);
    if (rc == ORC_ENOTFOUND) return undefined(env);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    napi_value arr, v, ctv;
    v = as_string ? orc_node_string(env, data, len) : buffer_copy(env, data, len);
    if (!v) return NULL;
    NAPI_CALL(env, napi_create_array_with_length(env, 2, &arr));
    NAPI_CALL(env, napi_set_element(env, arr, 0, v));
    NAPI_CALL(env, napi_create_int32(env, (int32_t)ct, &ctv));
    NAPI_CALL(env, napi_set_element(env, arr, 1, ctv));
    return arr;
}

/* contentType getter: 0 json, 1 text, 2 binary, null without payload. */
static napi_value get_content_type(napi_env env, napi_callback_info info) {
    orc_msg_t *msg = this_msg(env, info, NULL, NULL, NULL);
    if (!msg) return NULL;
    const void *data;
    size_t len;
    orc_content_type_t ct;
    int rc = orc_msg_payload(msg, &data, &len, &ct);
    if (rc == ORC_ENOTFOUND) return null_value(env);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    return number(env, (double)ct);
}

/* _setPayload(contentType, data: string | bytes) */
static napi_value set_payload_raw(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    orc_msg_t *msg = this_msg(env, info, &argc, argv, NULL);
    if (!msg) return NULL;
    int64_t ct;
    if (argc < 2 || !orc_node_get_int64(env, argv[0], "contentType", &ct)) return NULL;
    if (ct < 0 || ct > 2) return orc_node_throw_msg(env, ORC_EINVAL, true, "contentType must be 'json', 'text' or 'binary'");
    char stack[STACK];
    orc_node_bytes b;
    if (!orc_node_get_bytes(env, argv[1], "payload", false, stack, sizeof stack, &b)) return NULL;
    int rc = orc_msg_set_payload(msg, (orc_content_type_t)ct, b.ptr, b.len);
    free(b.heap);
    return rc == ORC_OK ? NULL : orc_node_throw(env, rc);
}

static napi_value clear_payload(napi_env env, napi_callback_info info) {
    orc_msg_t *msg = this_msg(env, info, NULL, NULL, NULL);
    if (!msg) return NULL;
    int rc = orc_msg_clear_payload(msg);
    return rc == ORC_OK ? NULL : orc_node_throw(env, rc);
}

static napi_value compress(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    orc_msg_t *msg = this_msg(env, info, &argc, argv, NULL);
    if (!msg) return NULL;
    int64_t threshold = 1024;
    if (argc >= 1 && !orc_node_is_nullish(env, argv[0]) &&
        !orc_node_get_int64(env, argv[0], "threshold", &threshold)) return NULL;
    if (threshold < 0) return orc_node_throw_msg(env, ORC_EINVAL, true, "threshold must be >= 0");
    int did = 0;
    int rc = orc_msg_compress(msg, (size_t)threshold, &did);
    return rc == ORC_OK ? boolean(env, did == 1) : orc_node_throw(env, rc);
}

static napi_value decompress(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    orc_msg_t *msg = this_msg(env, info, &argc, argv, NULL);
    if (!msg) return NULL;
    int64_t max = 0;
    if (argc >= 1 && !orc_node_is_nullish(env, argv[0]) &&
        !orc_node_get_int64(env, argv[0], "maxSize", &max)) return NULL;
    if (max < 0) return orc_node_throw_msg(env, ORC_EINVAL, true, "maxSize must be >= 0");
    int rc = orc_msg_decompress(msg, (size_t)max);
    return rc == ORC_OK ? NULL : orc_node_throw(env, rc);
}

/* ------------------------------------------------------------------------ codec */

static napi_value encode(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1] = {NULL};
    orc_msg_t *msg = this_msg(env, info, &argc, argv, NULL);
    if (!msg) return NULL;
    orc_format_t fmt;
    if (!parse_format(env, argc >= 1 ? argv[0] : NULL, &fmt)) return NULL;
    void *out = NULL;
    size_t len = 0;
    int rc = orc_msg_encode_alloc(msg, fmt, &out, &len);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    return buffer_from_lib(env, out, len);
}

/* Message.decode(data, format = 'json', { maxSize, maxDepth }) */
static napi_value decode(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 1) return orc_node_throw_msg(env, ORC_EINVAL, true, "Message.decode(data, format?, options?)");
    orc_format_t fmt;
    if (!parse_format(env, argc >= 2 ? argv[1] : NULL, &fmt)) return NULL;
    orc_decode_options_t opts;
    orc_decode_options_init(&opts);
    if (argc >= 3 && !orc_node_is_nullish(env, argv[2])) {
        napi_value v;
        bool has = false;
        int64_t x;
        NAPI_CALL(env, napi_has_named_property(env, argv[2], "maxSize", &has));
        if (has) {
            NAPI_CALL(env, napi_get_named_property(env, argv[2], "maxSize", &v));
            if (!orc_node_get_int64(env, v, "maxSize", &x)) return NULL;
            if (x <= 0) return orc_node_throw_msg(env, ORC_EINVAL, true, "maxSize must be > 0");
            opts.max_size = (size_t)x;
        }
        NAPI_CALL(env, napi_has_named_property(env, argv[2], "maxDepth", &has));
        if (has) {
            NAPI_CALL(env, napi_get_named_property(env, argv[2], "maxDepth", &v));
            if (!orc_node_get_int64(env, v, "maxDepth", &x)) return NULL;
            if (x < 1 || x > 256) return orc_node_throw_msg(env, ORC_EINVAL, true, "maxDepth must be 1..256");
            opts.max_depth = (int)x;
        }
    }
    char stack[STACK];
    orc_node_bytes b;
    if (!orc_node_get_bytes(env, argv[0], "data", false, stack, sizeof stack, &b)) return NULL;
    orc_msg_t *msg = NULL;
    int rc = orc_msg_decode(fmt, b.ptr, b.len, &opts, &msg);
    free(b.heap);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    return orc_node_message_adopt(env, msg);
}

static napi_value clone(napi_env env, napi_callback_info info) {
    orc_msg_t *msg = this_msg(env, info, NULL, NULL, NULL);
    if (!msg) return NULL;
    orc_msg_t *copy = NULL;
    int rc = orc_msg_clone(msg, &copy);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    return orc_node_message_adopt(env, copy);
}

/* release(): drops the reference now instead of at garbage collection; later use throws
 * ORC_ESTATE. Idempotent. */
static napi_value release(napi_env env, napi_callback_info info) {
    napi_value self;
    size_t argc = 0;
    bool tagged = false;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, NULL, &self, NULL));
    NAPI_CALL(env, napi_check_object_type_tag(env, self, &orc_node_tag_message, &tagged));
    if (!tagged) return orc_node_throw_msg(env, ORC_EINVAL, true, "expected a Message");
    void *msg = NULL;
    if (napi_remove_wrap(env, self, &msg) == napi_ok) orc_msg_release(msg);
    return NULL;
}

static napi_value get_released(napi_env env, napi_callback_info info) {
    napi_value self;
    size_t argc = 0;
    void *msg = NULL;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, NULL, &self, NULL));
    return boolean(env, napi_unwrap(env, self, &msg) != napi_ok || msg == NULL);
}

/* ------------------------------------------------------------------------- init */

#define METHOD(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_default_method, NULL}
#define ACCESSOR(name, get, set, data) \
    {name, NULL, NULL, get, set, NULL, napi_configurable, (void *)(data)}

napi_value orc_node_init_message(napi_env env, napi_value exports, orc_node_env *d) {
    napi_property_descriptor props[] = {
        ACCESSOR("id", get_field, set_field, &FIELDS[0]),
        ACCESSOR("type", get_field, set_field, &FIELDS[1]),
        ACCESSOR("version", get_field, set_field, &FIELDS[2]),
        ACCESSOR("source", get_field, set_field, &FIELDS[3]),
        ACCESSOR("target", get_field, set_field, &FIELDS[4]),
        ACCESSOR("correlationId", get_field, set_field, &FIELDS[5]),
        ACCESSOR("replyTo", get_field, set_field, &FIELDS[6]),
        ACCESSOR("timestamp", get_timestamp, set_timestamp, NULL),
        ACCESSOR("ttl", get_ttl, set_ttl, NULL),
        ACCESSOR("priority", get_priority, set_priority, NULL),
        ACCESSOR("compressed", get_compressed, NULL, NULL),
        ACCESSOR("encrypted", get_encrypted, NULL, NULL),
        ACCESSOR("headerCount", get_header_count, NULL, NULL),
        ACCESSOR("_contentTypeCode", get_content_type, NULL, NULL),
        ACCESSOR("released", get_released, NULL, NULL),
        METHOD("_headerRaw", header_raw),
        METHOD("_headersRaw", headers_raw),
        METHOD("_setHeader", set_header_raw),
        METHOD("removeHeader", remove_header),
        METHOD("_payloadRaw", payload_raw),
        METHOD("_setPayload", set_payload_raw),
        METHOD("clearPayload", clear_payload),
        METHOD("compress", compress),
        METHOD("decompress", decompress),
        METHOD("encode", encode),
        METHOD("clone", clone),
        METHOD("release", release),
        {"decode", NULL, decode, NULL, NULL, NULL, napi_static | napi_writable | napi_configurable, NULL},
    };
    napi_value cls;
    NAPI_CALL(env, napi_define_class(env, "Message", NAPI_AUTO_LENGTH, msg_ctor, NULL,
                                     sizeof props / sizeof props[0], props, &cls));
    NAPI_CALL(env, napi_create_reference(env, cls, 1, &d->message_ctor));
    NAPI_CALL(env, napi_set_named_property(env, exports, "Message", cls));
    return exports;
}
