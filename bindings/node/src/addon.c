/*
 * orchestra.node: module initialisation, errors and value conversion shared by the parts.
 * See addon.h for the layout and lib/index.js for the JavaScript side.
 */
#include "addon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Random 128-bit tags, one per wrapped type. */
const napi_type_tag orc_node_tag_message = {0x6f72636d73677461ULL, 0x8a4b1c2e9d3f5a71ULL};
const napi_type_tag orc_node_tag_queue = {0x6f7263717565756eULL, 0x35e1b7c94d2a086fULL};

orc_node_env *orc_node_env_get(napi_env env) {
    void *data = NULL;
    if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
    return data;
}

/* ------------------------------------------------------------------------------ errors */

static napi_value make_error(napi_env env, int code, const char *message, bool type_error) {
    const char *name = orc_err_name(code);
    napi_value msg, code_v, errno_v, err;
    if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg) != napi_ok) return NULL;
    if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_v) != napi_ok) return NULL;
    if ((type_error ? napi_create_type_error : napi_create_error)(env, code_v, msg, &err) != napi_ok) return NULL;
    if (napi_create_int32(env, code, &errno_v) != napi_ok) return NULL;
    napi_set_named_property(env, err, "errno", errno_v);
    return err;
}

napi_value orc_node_make_error(napi_env env, int code, const char *message) {
    return make_error(env, code, message, false);
}

napi_value orc_node_throw(napi_env env, int code) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) return NULL;
    const char *detail = orc_last_error();
    if (detail == NULL || detail[0] == '\0') detail = orc_strerror(code);
    napi_value err = orc_node_make_error(env, code, detail);
    if (err) napi_throw(env, err);
    return NULL;
}

napi_value orc_node_throw_msg(napi_env env, int code, bool type_error, const char *message) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) return NULL;
    napi_value err = make_error(env, code, message, type_error);
    if (err) napi_throw(env, err);
    return NULL;
}

void orc_node_throw_napi(napi_env env, const char *what) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) return;
    const napi_extended_error_info *info = NULL;
    napi_get_last_error_info(env, &info);
    char buf[512];
    snprintf(buf, sizeof buf, "N-API call failed (%s): %s", what,
             info && info->error_message ? info->error_message : "unknown error");
    orc_node_throw_msg(env, ORC_EINTERNAL, false, buf);
}

/* ---------------------------------------------------------------------------- values */

bool orc_node_is_nullish(napi_env env, napi_value v) {
    napi_valuetype t;
    if (v == NULL) return true;
    if (napi_typeof(env, v, &t) != napi_ok) return true;
    return t == napi_undefined || t == napi_null;
}

bool orc_node_get_int64(napi_env env, napi_value v, const char *what, int64_t *out) {
    napi_valuetype t;
    double d;
    char buf[160];
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_number ||
        napi_get_value_double(env, v, &d) != napi_ok || d != d || d < -9.2e18 || d > 9.2e18 ||
        (double)(int64_t)d != d) {
        snprintf(buf, sizeof buf, "%s must be an integer number", what);
        orc_node_throw_msg(env, ORC_EINVAL, true, buf);
        return false;
    }
    *out = (int64_t)d;
    return true;
}

napi_value orc_node_string(napi_env env, const char *ptr, size_t len) {
    napi_value v;
    if (napi_create_string_utf8(env, len ? ptr : "", len, &v) != napi_ok) {
        orc_node_throw_napi(env, "napi_create_string_utf8");
        return NULL;
    }
    return v;
}

bool orc_node_get_bytes(napi_env env, napi_value v, const char *what, bool strings_only,
                        char *stack, size_t stack_cap, orc_node_bytes *out) {
    napi_valuetype t;
    char buf[200];
    out->ptr = NULL;
    out->len = 0;
    out->heap = NULL;
    if (napi_typeof(env, v, &t) != napi_ok) return false;
    if (t == napi_string) {
        size_t len = 0;
        if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return false;
        char *dst = stack;
        if (len + 1 > stack_cap) {
            dst = malloc(len + 1);
            if (!dst) {
                orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
                return false;
            }
            out->heap = dst;
        }
        size_t got = 0;
        if (napi_get_value_string_utf8(env, v, dst, len + 1, &got) != napi_ok) {
            free(out->heap);
            out->heap = NULL;
            orc_node_throw_napi(env, "napi_get_value_string_utf8");
            return false;
        }
        out->ptr = dst;
        out->len = got;
        return true;
    }
    if (!strings_only && t == napi_object) {
        bool is = false;
        void *data = NULL;
        size_t len = 0;
        if (napi_is_buffer(env, v, &is) == napi_ok && is) {
            if (napi_get_buffer_info(env, v, &data, &len) != napi_ok) return false;
        } else if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
            napi_typedarray_type tt;
            size_t elems = 0, offset = 0;
            napi_value ab;
            if (napi_get_typedarray_info(env, v, &tt, &elems, &data, &ab, &offset) != napi_ok) return false;
            size_t width = 1;
            switch (tt) {
                case napi_int16_array: case napi_uint16_array: width = 2; break;
                case napi_int32_array: case napi_uint32_array: case napi_float32_array: width = 4; break;
                case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: width = 8; break;
                default: width = 1;
            }
            len = elems * width;
        } else if (napi_is_dataview(env, v, &is) == napi_ok && is) {
            napi_value ab;
            size_t offset = 0;
            if (napi_get_dataview_info(env, v, &len, &data, &ab, &offset) != napi_ok) return false;
        } else if (napi_is_arraybuffer(env, v, &is) == napi_ok && is) {
            if (napi_get_arraybuffer_info(env, v, &data, &len) != napi_ok) return false;
        } else {
            goto bad;
        }
        out->ptr = len ? data : "";
        out->len = len;
        return true;
    }
bad:
    snprintf(buf, sizeof buf, strings_only ? "%s must be a string" : "%s must be a string, Buffer, TypedArray or ArrayBuffer", what);
    orc_node_throw_msg(env, ORC_EINVAL, true, buf);
    return false;
}

/* ------------------------------------------------------------------- module functions */

static napi_value js_error_name(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    int64_t code;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 1 || !orc_node_get_int64(env, argv[0], "code", &code)) return NULL;
    return orc_node_string(env, orc_err_name((int)code), strlen(orc_err_name((int)code)));
}

static napi_value js_strerror(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    int64_t code;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    if (argc < 1 || !orc_node_get_int64(env, argv[0], "code", &code)) return NULL;
    return orc_node_string(env, orc_strerror((int)code), strlen(orc_strerror((int)code)));
}

static void env_finalize(napi_env env, void *data, void *hint) {
    (void)hint;
    orc_node_env *d = data;
    if (!d) return;
    napi_delete_reference(env, d->message_ctor);
    napi_delete_reference(env, d->queue_ctor);
    napi_delete_reference(env, d->adopt_sentinel);
    free(d);
}

/* Queue watchers must be told their environment is gone (queue.c). */
void orc_node_queue_env_gone(orc_node_env *d);

static void env_finalize_all(napi_env env, void *data, void *hint) {
    if (data) orc_node_queue_env_gone(data);
    env_finalize(env, data, hint);
}

NAPI_MODULE_INIT() {
    /* The addon was compiled against this header; refuse a library of another major version
     * or an older minor one (orc_version(): major * 10000 + minor * 100 + patch). */
    int lib = orc_version();
    if (lib / 10000 != ORC_VERSION_MAJOR || lib / 100 % 100 < ORC_VERSION_MINOR) {
        char buf[200];
        snprintf(buf, sizeof buf,
                 "liborchestra %s is loaded but this addon was built for %d.%d.x (same major, minor >= %d)",
                 orc_version_string(), ORC_VERSION_MAJOR, ORC_VERSION_MINOR, ORC_VERSION_MINOR);
        orc_node_throw_msg(env, ORC_EVERSION, false, buf);
        return NULL;
    }

    orc_node_env *d = calloc(1, sizeof *d);
    if (!d) {
        orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
        return NULL;
    }
    d->env = env;
    if (napi_set_instance_data(env, d, env_finalize_all, NULL) != napi_ok) {
        free(d);
        orc_node_throw_napi(env, "napi_set_instance_data");
        return NULL;
    }
    napi_value sentinel;
    NAPI_CALL(env, napi_create_object(env, &sentinel));
    NAPI_CALL(env, napi_create_reference(env, sentinel, 1, &d->adopt_sentinel));

    napi_value v;
    NAPI_CALL(env, napi_create_int32(env, orc_version(), &v));
    NAPI_CALL(env, napi_set_named_property(env, exports, "libraryVersionNumber", v));
    const char *vs = orc_version_string();
    NAPI_CALL(env, napi_create_string_utf8(env, vs, NAPI_AUTO_LENGTH, &v));
    NAPI_CALL(env, napi_set_named_property(env, exports, "libraryVersion", v));
    NAPI_CALL(env, napi_create_int32(env, ORC_VERSION_NUMBER, &v));
    NAPI_CALL(env, napi_set_named_property(env, exports, "headerVersionNumber", v));

    napi_property_descriptor fns[] = {
        {"errorName", NULL, js_error_name, NULL, NULL, NULL, napi_enumerable, NULL},
        {"strerror", NULL, js_strerror, NULL, NULL, NULL, napi_enumerable, NULL},
    };
    NAPI_CALL(env, napi_define_properties(env, exports, sizeof fns / sizeof fns[0], fns));

    if (!orc_node_init_message(env, exports, d)) return NULL;
    if (!orc_node_init_queue(env, exports, d)) return NULL;
    if (!orc_node_init_ws(env, exports, d)) return NULL;
    if (!orc_node_init_agent(env, exports, d)) return NULL;   /* after ws: its cleanup runs first */
    return exports;
}
