/*
 * WebSocket Server, Client and Connection over orc_server_* / orc_client_* / orc_conn_*, and
 * the Runtime they run on. The JavaScript classes (EventEmitters with async iterators) are in
 * lib/index.js; this file exposes plain functions over "externals" (napi_external values
 * carrying a type tag) and delivers the library's events.
 *
 * Events. The library calls our orc_ws_callbacks_t (and on_state) on its I/O thread; each
 * callback copies what it needs (message bytes included) into an event and posts it through the
 * object's event pump (pump.c), which hands the events to the object's dispatch function on the
 * JS thread in the order the library produced them (so per connection: open, messages, drains,
 * pongs, close), and keeps the object's context alive while the library, the tsfn or JS holds
 * it. The tsfn keeps the process alive only while there is something to wait for: a listening
 * server, a client between connect() and its final 'closed' state (lib/index.js refs/unrefs it).
 *
 * Runtime. One orc_runtime_t per process serves every Server and Client unless a Runtime
 * object is passed: made on first use, kept while any environment (main thread or worker)
 * uses it, freed by the last environment's cleanup hook, after that environment's servers and
 * clients are freed. A runtime is only ever freed from a JS thread, never from its I/O thread.
 */
#include "addon.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const napi_type_tag orc_node_tag_runtime = {0x6f726372756e746dULL, 0x5a1e77c3b20d4e19ULL};
const napi_type_tag orc_node_tag_server = {0x6f72637365727672ULL, 0x1c9d3a6f8e2b4071ULL};
const napi_type_tag orc_node_tag_client = {0x6f7263636c69656eULL, 0x73b0e4d15a9c2f86ULL};
const napi_type_tag orc_node_tag_conn = {0x6f7263636f6e6e63ULL, 0x2e8f61a7d4c3b905ULL};

/* ------------------------------------------------------------------------- runtime */

void nrt_retain(nrt *r) { atomic_fetch_add(&r->refs, 1); }

/* JS threads only (orc_runtime_free joins the I/O thread). */
void nrt_release(nrt *r) {
    if (r && atomic_fetch_sub(&r->refs, 1) == 1) {
        orc_runtime_free(r->rt);
        free(r);
    }
}

static int nrt_new(const char *name, nrt **out) {
    nrt *r = calloc(1, sizeof *r);
    if (!r) return ORC_ENOMEM;
    orc_runtime_options_t o;
    orc_runtime_options_init(&o);
    o.name = name;
    int rc = orc_runtime_new(&o, &r->rt);
    if (rc != ORC_OK) {
        free(r);
        return rc;
    }
    atomic_init(&r->refs, 1);
    *out = r;
    return ORC_OK;
}

/* The process-wide runtime: one reference per environment that used it. */
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static nrt *shared_rt;

/* ---------------------------------------------------------------------------- events */

enum { EV_OPEN = 1, EV_MESSAGE = 2, EV_DRAIN = 3, EV_PONG = 4, EV_CLOSE = 5, EV_STATE = 6 };

typedef struct ev {
    pump_item link;
    int kind;
    int a;                 /* opcode, close code or client state */
    int clean;
    uint64_t id;           /* connection id */
    uint64_t rtt;
    orc_conn_t *conn;      /* EV_OPEN: a reference for the Connection object */
    size_t len;
    char *data;            /* message bytes or the NUL-terminated reason */
    bool external;         /* data is a separate block handed to a Buffer */
    char inline_data[];    /* small payloads live here */
} ev;

/* Messages at least this large become external Buffers (no second copy). */
#define EXTERNAL_MIN (64u * 1024u)

typedef struct ws_ctx {
    pump p;                         /* first: the context is a pump */
    orc_server_t *server;           /* JS thread only */
    orc_client_t *client;
} ws_ctx;

typedef struct conn_ref {
    orc_conn_t *conn;
} conn_ref;

/* Frees an event that is not delivered (or what a delivered one still holds). */
static void ev_drop(pump *p, pump_item *it) {
    (void)p;
    ev *e = (ev *)it;
    orc_conn_release(e->conn);
    if (e->external) free(e->data);
    free(e);
}

/* I/O thread: queue an event. */
static void post(void *ud, ev *e) { pump_post(ud, &e->link); }

static ev *ev_new(int kind, uint64_t id, const void *data, size_t len, bool nul) {
    bool ext = len >= EXTERNAL_MIN;
    size_t inl = ext ? 0 : len + (nul ? 1 : 0);
    ev *e = malloc(sizeof *e + inl);
    if (!e) return NULL;
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->id = id;
    e->len = len;
    if (ext) {
        e->data = malloc(len + (nul ? 1 : 0));
        if (!e->data) {
            free(e);
            return NULL;
        }
        e->external = true;
    } else {
        e->data = e->inline_data;
    }
    if (len) memcpy(e->data, data, len);
    if (nul) e->data[len] = '\0';
    return e;
}

static void cb_open(void *ud, orc_conn_t *conn) {
    ev *e = ev_new(EV_OPEN, orc_conn_id(conn), NULL, 0, false);
    if (!e) return;
    e->conn = orc_conn_retain(conn);
    post(ud, e);
}

static void cb_message(void *ud, orc_conn_t *conn, int opcode, const uint8_t *data, size_t len) {
    ev *e = ev_new(EV_MESSAGE, orc_conn_id(conn), data, len, false);
    if (!e) return;  /* out of memory: the message is lost (nothing else can be done here) */
    e->a = opcode;
    post(ud, e);
}

static void cb_drain(void *ud, orc_conn_t *conn) {
    ev *e = ev_new(EV_DRAIN, orc_conn_id(conn), NULL, 0, false);
    if (e) post(ud, e);
}

static void cb_pong(void *ud, orc_conn_t *conn, uint64_t rtt_us) {
    ev *e = ev_new(EV_PONG, orc_conn_id(conn), NULL, 0, false);
    if (!e) return;
    e->rtt = rtt_us;
    post(ud, e);
}

static void cb_close(void *ud, orc_conn_t *conn, int code, const char *reason, int clean) {
    ev *e = ev_new(EV_CLOSE, orc_conn_id(conn), reason, reason ? strlen(reason) : 0, true);
    if (!e) return;
    e->a = code;
    e->clean = clean;
    post(ud, e);
}

static void cb_state(void *ud, orc_client_t *client, orc_client_state_t state, const char *reason) {
    (void)client;
    ev *e = ev_new(EV_STATE, 0, reason, reason ? strlen(reason) : 0, true);
    if (!e) return;
    e->a = (int)state;
    post(ud, e);
}

/* I/O thread (or the thread freeing the runtime): the library no longer calls us; whatever
 * is listed still reaches JS. */
static void server_user_data_free(void *cb_ud, void *hook_ud) {
    (void)hook_ud;
    pump_unref(cb_ud);
}
static void client_user_data_free(void *ud) { pump_unref(ud); }

static void free_external_data(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    free(data);
}

static void conn_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    conn_ref *r = data;
    orc_conn_release(r->conn);
    free(r);
}

static napi_value make_conn(napi_env env, orc_conn_t *conn) {
    conn_ref *r = malloc(sizeof *r);
    napi_value v;
    if (!r) return NULL;
    r->conn = conn;
    if (napi_create_external(env, r, conn_finalize, NULL, &v) != napi_ok) {
        free(r);
        return NULL;
    }
    napi_type_tag_object(env, v, &orc_node_tag_conn);
    return v;
}

/* JS thread: one event to dispatch(kind, id, ...). */
static void ev_deliver(napi_env env, pump *p, napi_value fn, pump_item *it) {
    ev *e = (ev *)it;
    if (fn) {
        napi_value argv[5];
        size_t argc = 2;
        napi_create_int32(env, e->kind, &argv[0]);
        napi_create_double(env, (double)e->id, &argv[1]);
        bool ok = true;
        switch (e->kind) {
            case EV_OPEN:
                argv[2] = make_conn(env, e->conn);
                if (argv[2]) e->conn = NULL;  /* the external took the reference */
                else ok = false;
                argc = 3;
                break;
            case EV_MESSAGE:
                if (e->a == ORC_WS_TEXT) {
                    ok = napi_create_string_utf8(env, e->len ? e->data : "", e->len, &argv[2]) == napi_ok;
                } else if (e->external) {
                    ok = napi_create_external_buffer(env, e->len, e->data, free_external_data, NULL, &argv[2]) == napi_ok;
                    if (ok) e->external = false;   /* the Buffer took the block */
                } else {
                    ok = napi_create_buffer_copy(env, e->len, e->len ? e->data : "", NULL, &argv[2]) == napi_ok;
                }
                napi_get_boolean(env, e->a != ORC_WS_TEXT, &argv[3]);
                argc = 4;
                break;
            case EV_PONG:
                napi_create_double(env, (double)e->rtt, &argv[2]);
                argc = 3;
                break;
            case EV_CLOSE:
                napi_create_int32(env, e->a, &argv[2]);
                ok = napi_create_string_utf8(env, e->data, e->len, &argv[3]) == napi_ok;
                napi_get_boolean(env, e->clean != 0, &argv[4]);
                argc = 5;
                break;
            case EV_STATE:
                napi_create_int32(env, e->a, &argv[2]);
                ok = napi_create_string_utf8(env, e->data, e->len, &argv[3]) == napi_ok;
                argc = 4;
                break;
            default:
                break;
        }
        if (ok) pump_call(env, NULL, fn, argc, argv);
    }
    ev_drop(p, it);
}

/* JS thread: free the library object (the pump then releases the tsfn: events the library
 * still produces, connections finishing their close, are dropped). */
static void ws_free_object(pump *p) {
    ws_ctx *c = (ws_ctx *)p;
    if (c->server) orc_server_free(c->server);
    if (c->client) orc_client_free(c->client);
    c->server = NULL;
    c->client = NULL;
}

static const pump_ops server_ops = {"server", ev_deliver, ev_drop, ws_free_object};
static const pump_ops client_ops = {"client", ev_deliver, ev_drop, ws_free_object};

/* Environment cleanup: free this environment's servers, clients and agents, then let go of
 * the shared runtime (the last environment frees it, joining its I/O thread). */
static void ws_env_cleanup(void *arg) {
    orc_node_env *d = arg;
    pump_free_all(d);
    d->closing = true;
    if (d->uses_shared_runtime) {
        /* Under the lock, so no other environment takes the runtime while it goes. The
         * environments' references are the last ones: objects hold theirs only while their
         * environment's is held (freed above). */
        pthread_mutex_lock(&shared_lock);
        nrt *r = shared_rt;
        bool last = r && atomic_fetch_sub(&r->refs, 1) == 1;
        if (last) shared_rt = NULL;
        pthread_mutex_unlock(&shared_lock);
        if (last) {
            orc_runtime_free(r->rt);
            free(r);
        }
        d->uses_shared_runtime = false;
    }
}

/* ----------------------------------------------------------------------- arguments */

void *unwrap_ext(napi_env env, napi_value v, const napi_type_tag *tag, const char *what) {
    napi_valuetype t;
    bool ok = false;
    void *p = NULL;
    if (v && napi_typeof(env, v, &t) == napi_ok && t == napi_external &&
        napi_check_object_type_tag(env, v, tag, &ok) == napi_ok && ok &&
        napi_get_value_external(env, v, &p) == napi_ok && p)
        return p;
    char buf[96];
    snprintf(buf, sizeof buf, "expected a %s handle", what);
    orc_node_throw_msg(env, ORC_EINVAL, true, buf);
    return NULL;
}

static ws_ctx *get_ctx(napi_env env, napi_value v, bool client, bool live) {
    return pump_unwrap(env, v, client ? &orc_node_tag_client : &orc_node_tag_server, client ? "Client" : "Server", live);
}

bool get_prop(napi_env env, napi_value obj, const char *key, napi_value *out) {
    bool has = false;
    *out = NULL;
    if (napi_has_named_property(env, obj, key, &has) != napi_ok) return false;
    if (!has) return true;
    if (napi_get_named_property(env, obj, key, out) != napi_ok) return false;
    if (orc_node_is_nullish(env, *out)) *out = NULL;
    return true;
}

/* An integer option in [min, max]; absent/undefined leaves *out. */
bool opt_num(napi_env env, napi_value obj, const char *key, int64_t min, int64_t max, int64_t *out, bool *has) {
    napi_value v;
    if (has) *has = false;
    if (!get_prop(env, obj, key, &v)) return false;
    if (!v) return true;
    int64_t x;
    if (!orc_node_get_int64(env, v, key, &x)) return false;
    if (x < min || x > max) {
        char buf[160];
        snprintf(buf, sizeof buf, "%s must be %lld..%lld", key, (long long)min, (long long)max);
        orc_node_throw_msg(env, ORC_EINVAL, false, buf);
        return false;
    }
    *out = x;
    if (has) *has = true;
    return true;
}

bool opt_bool(napi_env env, napi_value obj, const char *key, int *out) {
    napi_value v;
    if (!get_prop(env, obj, key, &v)) return false;
    if (!v) return true;
    napi_valuetype t;
    bool b;
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_boolean || napi_get_value_bool(env, v, &b) != napi_ok) {
        char buf[96];
        snprintf(buf, sizeof buf, "%s must be a boolean", key);
        orc_node_throw_msg(env, ORC_EINVAL, true, buf);
        return false;
    }
    *out = b ? 1 : 0;
    return true;
}

void pool_free(strpool *p) {
    for (size_t i = 0; i < p->n; i++) free(p->items[i]);
    free(p->items);
    p->items = NULL;
    p->n = p->cap = 0;
}

char *pool_str(napi_env env, strpool *p, napi_value v, const char *what) {
    napi_valuetype t;
    size_t len = 0;
    char buf[160];
    if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
        snprintf(buf, sizeof buf, "%s must be a string", what);
        orc_node_throw_msg(env, ORC_EINVAL, true, buf);
        return NULL;
    }
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return NULL;
    char *s = malloc(len + 1);
    if (!s || (p->n == p->cap && !(p->items = realloc(p->items, (p->cap = p->cap ? p->cap * 2 : 8) * sizeof *p->items)))) {
        free(s);
        orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
        return NULL;
    }
    napi_get_value_string_utf8(env, v, s, len + 1, &len);
    p->items[p->n++] = s;
    if (strlen(s) != len) {
        snprintf(buf, sizeof buf, "%s must not contain NUL", what);
        orc_node_throw_msg(env, ORC_EINVAL, false, buf);
        return NULL;
    }
    return s;
}

bool opt_str(napi_env env, strpool *p, napi_value obj, const char *key, const char **out) {
    napi_value v;
    if (!get_prop(env, obj, key, &v)) return false;
    if (!v) return true;
    return (*out = pool_str(env, p, v, key)) != NULL;
}

/* A string[] option into a malloc'd pointer array (pool-owned strings). */
bool opt_strs(napi_env env, strpool *p, napi_value obj, const char *key, const char ***out, size_t *count) {
    napi_value v;
    bool arr = false;
    if (!get_prop(env, obj, key, &v)) return false;
    if (!v) return true;
    char buf[96];
    if (napi_is_array(env, v, &arr) != napi_ok || !arr) {
        snprintf(buf, sizeof buf, "%s must be an array of strings", key);
        orc_node_throw_msg(env, ORC_EINVAL, true, buf);
        return false;
    }
    uint32_t n = 0;
    napi_get_array_length(env, v, &n);
    if (n == 0) return true;
    const char **list = calloc(n, sizeof *list);
    if (!list) {
        orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
        return false;
    }
    /* The array itself goes into the pool too, so it is freed with the strings. */
    if (p->n == p->cap && !(p->items = realloc(p->items, (p->cap = p->cap ? p->cap * 2 : 8) * sizeof *p->items))) {
        free(list);
        orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
        return false;
    }
    p->items[p->n++] = (char *)list;
    for (uint32_t i = 0; i < n; i++) {
        napi_value el;
        if (napi_get_element(env, v, i, &el) != napi_ok) return false;
        snprintf(buf, sizeof buf, "%s[%u]", key, i);
        if (!(list[i] = pool_str(env, p, el, buf))) return false;
    }
    *out = list;
    *count = n;
    return true;
}

static bool ws_options(napi_env env, napi_value o, orc_ws_options_t *w) {
    int64_t x;
    bool has;
    const int64_t big = INT64_C(1) << 50;
    if (!opt_num(env, o, "maxMessageSize", 1, big, &x, &has)) return false;
    if (has) w->max_message_size = w->max_frame_size = (size_t)x;
    if (!opt_num(env, o, "maxFrameSize", 1, big, &x, &has)) return false;
    if (has) w->max_frame_size = (size_t)x;
    if (!opt_num(env, o, "pingInterval", 0, UINT32_MAX, &x, &has)) return false;
    if (has) w->ping_interval_ms = (uint32_t)x;
    if (!opt_num(env, o, "pongTimeout", 1, UINT32_MAX, &x, &has)) return false;
    if (has) w->pong_timeout_ms = (uint32_t)x;
    if (!opt_num(env, o, "closeTimeout", 1, UINT32_MAX, &x, &has)) return false;
    if (has) w->close_timeout_ms = (uint32_t)x;
    if (!opt_num(env, o, "handshakeTimeout", 1, UINT32_MAX, &x, &has)) return false;
    if (has) w->handshake_timeout_ms = (uint32_t)x;
    if (!opt_num(env, o, "highWatermark", 0, big, &x, &has)) return false;
    if (has) w->high_watermark = (size_t)x;
    if (!opt_num(env, o, "lowWatermark", 0, big, &x, &has)) return false;
    if (has) w->low_watermark = (size_t)x;
    if (!opt_num(env, o, "maxBuffered", 0, big, &x, &has)) return false;
    if (has) w->max_buffered = (size_t)x;
    if (!opt_num(env, o, "compressionThreshold", 0, big, &x, &has)) return false;
    if (has) w->compression_threshold = (size_t)x;
    if (!opt_num(env, o, "compressionLevel", 1, 9, &x, &has)) return false;
    if (has) w->compression_level = (int)x;
    if (!opt_bool(env, o, "deflate", &w->deflate)) return false;
    napi_value v;
    if (!get_prop(env, o, "slowConsumer", &v)) return false;
    if (v) {
        char s[16];
        size_t n = 0;
        napi_valuetype t;
        if (napi_typeof(env, v, &t) == napi_ok && t == napi_string &&
            napi_get_value_string_utf8(env, v, s, sizeof s, &n) == napi_ok) {
            if (strcmp(s, "close1008") == 0) { w->slow_consumer = ORC_SLOW_CONSUMER_CLOSE_1008; return true; }
            if (strcmp(s, "close1013") == 0) { w->slow_consumer = ORC_SLOW_CONSUMER_CLOSE_1013; return true; }
            if (strcmp(s, "drop") == 0) { w->slow_consumer = ORC_SLOW_CONSUMER_DROP; return true; }
        }
        orc_node_throw_msg(env, ORC_EINVAL, true, "slowConsumer must be 'close1008', 'close1013' or 'drop'");
        return false;
    }
    return true;
}

/* The runtime for new objects: options.runtime, or the shared one. Returns a reference. */
nrt *pick_runtime(napi_env env, napi_value o) {
    napi_value v = NULL;
    if (o && !get_prop(env, o, "runtime", &v)) return NULL;
    if (v) {
        nrt **slot = unwrap_ext(env, v, &orc_node_tag_runtime, "Runtime");
        if (!slot) return NULL;
        if (!*slot) {
            orc_node_throw_msg(env, ORC_ECLOSED, false, "the Runtime was closed");
            return NULL;
        }
        nrt_retain(*slot);
        return *slot;
    }
    orc_node_env *d = orc_node_env_get(env);
    if (!d || d->closing) {
        orc_node_throw_msg(env, ORC_EINTERNAL, false, "addon environment data missing");
        return NULL;
    }
    pthread_mutex_lock(&shared_lock);
    int rc = ORC_OK;
    if (!shared_rt) rc = nrt_new("orchestra-node-io", &shared_rt);
    nrt *r = shared_rt;
    if (rc == ORC_OK) {
        if (!d->uses_shared_runtime) {
            nrt_retain(r);     /* the environment's reference, dropped by ws_env_cleanup */
            d->uses_shared_runtime = true;
        }
        nrt_retain(r);         /* the caller's */
    }
    pthread_mutex_unlock(&shared_lock);
    if (rc != ORC_OK) {
        orc_node_throw(env, rc);
        return NULL;
    }
    return r;
}

static bool opt_queue(napi_env env, napi_value o, orc_queue_t **q, int *events) {
    napi_value v;
    if (!get_prop(env, o, "queue", &v)) return false;
    if (v) {
        if (!(*q = orc_node_queue_unwrap(env, v))) return false;
    }
    return opt_bool(env, o, "queueEvents", events);
}

/* ------------------------------------------------------------------------- server */

/* serverNew(options, dispatch) -> external */
static napi_value server_new(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    napi_value o = argc >= 1 && !orc_node_is_nullish(env, argv[0]) ? argv[0] : NULL;
    if (o) {
        napi_valuetype t;
        NAPI_CALL(env, napi_typeof(env, o, &t));
        if (t != napi_object) return orc_node_throw_msg(env, ORC_EINVAL, true, "Server options must be an object");
    }
    orc_server_options_t so;
    orc_server_options_init(&so);
    strpool pool = {0};
    int64_t x;
    bool has;
    bool ok = true;
    if (o) {
        ok = opt_str(env, &pool, o, "host", &so.host) &&
             opt_num(env, o, "port", 0, 65535, &x, &has) && ((has && (so.port = (uint16_t)x)) || true) &&
             opt_num(env, o, "backlog", 1, INT32_MAX, &x, &has) && ((has && (so.backlog = (int)x)) || true) &&
             opt_num(env, o, "maxConnections", 0, INT64_C(1) << 40, &x, &has) && ((has && (so.max_connections = (size_t)x)) || true) &&
             opt_bool(env, o, "ipv6Only", &so.ipv6_only) &&
             opt_strs(env, &pool, o, "paths", (const char ***)&so.paths, &so.path_count) &&
             opt_strs(env, &pool, o, "subprotocols", (const char ***)&so.subprotocols, &so.subprotocol_count) &&
             opt_str(env, &pool, o, "tlsCert", &so.tls_cert_file) &&
             opt_str(env, &pool, o, "tlsKey", &so.tls_key_file) &&
             opt_str(env, &pool, o, "tlsClientCa", &so.tls_client_ca_file) &&
             ws_options(env, o, &so.ws) &&
             opt_queue(env, o, &so.queue, &so.queue_events);
    }
    if (!ok) {
        pool_free(&pool);
        return NULL;
    }
    nrt *r = pick_runtime(env, o);
    if (!r) {
        pool_free(&pool);
        return NULL;
    }
    ws_ctx *c = pump_new(env, sizeof(ws_ctx), argc >= 2 ? argv[1] : NULL, "orchestra.Server", &server_ops, r);
    if (!c) {
        nrt_release(r);
        pool_free(&pool);
        return NULL;
    }
    /* queueOnly: everything goes through options.queue; no callbacks, no events. */
    int queue_only = 0;
    if (o && !opt_bool(env, o, "queueOnly", &queue_only)) {
        pump_abandon(env, &c->p);
        pool_free(&pool);
        return NULL;
    }
    if (queue_only && !so.queue) {
        pump_abandon(env, &c->p);
        pool_free(&pool);
        return orc_node_throw_msg(env, ORC_EINVAL, false, "queueOnly needs a queue");
    }
    if (!queue_only) {
        so.callbacks.on_open = cb_open;
        so.callbacks.on_message = cb_message;
        so.callbacks.on_drain = cb_drain;
        so.callbacks.on_pong = cb_pong;
        so.callbacks.on_close = cb_close;
    }
    so.callbacks.user_data = c;
    so.user_data_free = server_user_data_free;
    pump_retain(&c->p);   /* the library's, dropped by user_data_free */
    int rc = orc_server_new(r->rt, &so, &c->server);
    pool_free(&pool);
    return pump_made(env, &c->p, rc, &orc_node_tag_server);
}

/* serverListen(h) -> port. Blocks until the I/O thread listens (a short job). */
static napi_value server_listen(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    ws_ctx *c = get_ctx(env, argc ? argv[0] : NULL, false, true);
    if (!c) return NULL;
    int rc = orc_server_start(c->server);
    if (rc != ORC_OK) return orc_node_throw(env, rc);
    NAPI_CALL(env, napi_create_uint32(env, orc_server_port(c->server), &v));
    return v;
}

static napi_value server_port(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    ws_ctx *c = get_ctx(env, argc ? argv[0] : NULL, false, false);
    if (!c) return NULL;
    NAPI_CALL(env, napi_create_uint32(env, c->server ? orc_server_port(c->server) : 0, &v));
    return v;
}

static napi_value server_count(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    ws_ctx *c = get_ctx(env, argc ? argv[0] : NULL, false, false);
    if (!c) return NULL;
    NAPI_CALL(env, napi_create_double(env, c->server ? (double)orc_server_connection_count(c->server) : 0, &v));
    return v;
}

/* Bytes of a message to send: a string is a text message, bytes a binary one. */
static bool send_args(napi_env env, napi_value v, char *stack, size_t cap, orc_node_bytes *b, int *opcode) {
    napi_valuetype t;
    if (!v) {
        orc_node_throw_msg(env, ORC_EINVAL, true, "data must be a string, Buffer, TypedArray or ArrayBuffer");
        return false;
    }
    if (napi_typeof(env, v, &t) != napi_ok) return false;
    *opcode = t == napi_string ? ORC_WS_TEXT : ORC_WS_BINARY;
    return orc_node_get_bytes(env, v, "data", false, stack, cap, b);
}

static napi_value send_result(napi_env env, int rc) {
    if (rc < 0) return orc_node_throw(env, rc);
    napi_value v;
    napi_get_boolean(env, rc != ORC_WS_ABOVE_HIGH_WATERMARK, &v);
    return v;
}

static napi_value server_broadcast(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    ws_ctx *c = get_ctx(env, argc ? argv[0] : NULL, false, true);
    if (!c) return NULL;
    char stack[4096];
    orc_node_bytes b;
    int op;
    if (!send_args(env, argc >= 2 ? argv[1] : NULL, stack, sizeof stack, &b, &op)) return NULL;
    int rc = orc_server_broadcast(c->server, op, (const uint8_t *)b.ptr, b.len);
    free(b.heap);
    return rc < 0 ? orc_node_throw(env, rc) : NULL;
}

/* close code and reason arguments at argv[i], argv[i+1]; reason stored in buf. */
static bool close_args(napi_env env, size_t argc, napi_value *argv, size_t i, int def, int *code,
                       char *buf, size_t cap, const char **reason) {
    int64_t x = def;
    *reason = NULL;
    if (argc > i && !orc_node_is_nullish(env, argv[i]) && !orc_node_get_int64(env, argv[i], "code", &x)) return false;
    if (x < 0 || x > 65535) {
        orc_node_throw_msg(env, ORC_EINVAL, false, "close code must be 1000..4999");
        return false;
    }
    *code = (int)x;
    if (argc > i + 1 && !orc_node_is_nullish(env, argv[i + 1])) {
        orc_node_bytes b;
        if (!orc_node_get_bytes(env, argv[i + 1], "reason", true, buf, cap, &b)) return false;
        if (b.heap) {
            free(b.heap);
            orc_node_throw_msg(env, ORC_EINVAL, false, "close reason over 123 bytes");
            return false;
        }
        if (strlen(buf) != b.len) {
            orc_node_throw_msg(env, ORC_EINVAL, false, "close reason must not contain NUL");
            return false;
        }
        *reason = buf;
    }
    return true;
}

/* serverClose(h, code = 1001, reason) */
static napi_value server_close(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    ws_ctx *c = get_ctx(env, argc ? argv[0] : NULL, false, true);
    if (!c) return NULL;
    char buf[256];
    int code;
    const char *reason;
    if (!close_args(env, argc, argv, 1, 1001, &code, buf, sizeof buf, &reason)) return NULL;
    int rc = orc_server_close(c->server, code, reason);
    return rc < 0 ? orc_node_throw(env, rc) : NULL;
}

static napi_value ws_free_js(napi_env env, napi_callback_info info, bool client) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    ws_ctx *c = get_ctx(env, argc ? argv[0] : NULL, client, false);
    if (!c) return NULL;
    pump_free(env, &c->p);
    return NULL;
}
static napi_value server_free_js(napi_env env, napi_callback_info info) { return ws_free_js(env, info, false); }
static napi_value client_free_js(napi_env env, napi_callback_info info) { return ws_free_js(env, info, true); }

/* setRef(h, bool): whether the object keeps the process alive (its tsfn is ref'd). */
static napi_value ws_set_ref(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    napi_valuetype t = napi_undefined;
    if (argc) napi_typeof(env, argv[0], &t);
    bool is_client = false;
    if (t == napi_external) napi_check_object_type_tag(env, argv[0], &orc_node_tag_client, &is_client);
    ws_ctx *c = get_ctx(env, argc ? argv[0] : NULL, is_client, false);
    if (!c) return NULL;
    bool want = false;
    if (argc >= 2) napi_get_value_bool(env, argv[1], &want);
    pump_set_ref(env, &c->p, want);
    return NULL;
}

static napi_value stats_object(napi_env env, const orc_conn_stats_t *s, bool reconnects) {
    const struct { const char *name; uint64_t v; } f[] = {
        {"bytesIn", s->bytes_in}, {"bytesOut", s->bytes_out}, {"messagesIn", s->messages_in},
        {"messagesOut", s->messages_out}, {"messagesDropped", s->messages_dropped}, {"errors", s->errors},
        {"rttUs", s->rtt_us}, {"uptimeUs", s->uptime_us}, {"bufferedAmount", s->buffered_amount},
        {"reconnects", s->reconnects},
    };
    napi_value obj;
    NAPI_CALL(env, napi_create_object(env, &obj));
    size_t n = sizeof f / sizeof f[0] - (reconnects ? 0 : 1);
    for (size_t i = 0; i < n; i++) {
        napi_value v;
        NAPI_CALL(env, napi_create_double(env, (double)f[i].v, &v));
        NAPI_CALL(env, napi_set_named_property(env, obj, f[i].name, v));
    }
    return obj;
}

/* --------------------------------------------------------------------- connections */

static conn_ref *get_conn(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
    NAPI_CALL(env, napi_get_cb_info(env, info, argc, argv, NULL, NULL));
    return unwrap_ext(env, *argc ? argv[0] : NULL, &orc_node_tag_conn, "Connection");
}

static napi_value conn_send(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    conn_ref *r = get_conn(env, info, &argc, argv);
    if (!r) return NULL;
    char stack[4096];
    orc_node_bytes b;
    int op;
    if (!send_args(env, argc >= 2 ? argv[1] : NULL, stack, sizeof stack, &b, &op)) return NULL;
    int rc = orc_conn_send(r->conn, op, (const uint8_t *)b.ptr, b.len);
    free(b.heap);
    return send_result(env, rc);
}

static napi_value conn_close(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    conn_ref *r = get_conn(env, info, &argc, argv);
    if (!r) return NULL;
    char buf[256];
    int code;
    const char *reason;
    if (!close_args(env, argc, argv, 1, 1000, &code, buf, sizeof buf, &reason)) return NULL;
    int rc = orc_conn_close(r->conn, code, reason);
    return rc < 0 ? orc_node_throw(env, rc) : NULL;
}

static napi_value conn_ping(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    conn_ref *r = get_conn(env, info, &argc, argv);
    if (!r) return NULL;
    int rc = orc_conn_ping(r->conn);
    return rc < 0 ? orc_node_throw(env, rc) : NULL;
}

static napi_value conn_stats(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    conn_ref *r = get_conn(env, info, &argc, argv);
    if (!r) return NULL;
    orc_conn_stats_t s;
    int rc = orc_conn_stats(r->conn, &s);
    if (rc < 0) return orc_node_throw(env, rc);
    return stats_object(env, &s, false);
}

static napi_value conn_buffered(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    conn_ref *r = get_conn(env, info, &argc, argv);
    if (!r) return NULL;
    NAPI_CALL(env, napi_create_double(env, (double)orc_conn_buffered_amount(r->conn), &v));
    return v;
}

static napi_value cstr_or_null(napi_env env, const char *s) {
    napi_value v;
    if (!s) napi_get_null(env, &v);
    else if (napi_create_string_utf8(env, s, NAPI_AUTO_LENGTH, &v) != napi_ok) return NULL;
    return v;
}

/* connInfo(h) -> [path, subprotocol|null, remoteAddress] */
static napi_value conn_info(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], arr;
    conn_ref *r = get_conn(env, info, &argc, argv);
    if (!r) return NULL;
    NAPI_CALL(env, napi_create_array_with_length(env, 3, &arr));
    napi_set_element(env, arr, 0, cstr_or_null(env, orc_conn_path(r->conn)));
    napi_set_element(env, arr, 1, cstr_or_null(env, orc_conn_subprotocol(r->conn)));
    napi_set_element(env, arr, 2, cstr_or_null(env, orc_conn_remote_address(r->conn)));
    return arr;
}

/* --------------------------------------------------------------------------- client */

/* clientNew(url, options, dispatch) -> external */
static napi_value client_new(napi_env env, napi_callback_info info) {
    size_t argc = 3;
    napi_value argv[3];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    strpool pool = {0};
    const char *url = NULL;
    if (argc < 1 || !(url = pool_str(env, &pool, argv[0], "url"))) {
        pool_free(&pool);
        if (argc < 1) orc_node_throw_msg(env, ORC_EINVAL, true, "url must be a string");
        return NULL;
    }
    napi_value o = argc >= 2 && !orc_node_is_nullish(env, argv[1]) ? argv[1] : NULL;
    orc_client_options_t co;
    orc_client_options_init(&co);
    orc_http_header_t *headers = NULL;
    bool ok = true;
    if (o) {
        napi_valuetype t;
        NAPI_CALL(env, napi_typeof(env, o, &t));
        if (t != napi_object) {
            pool_free(&pool);
            return orc_node_throw_msg(env, ORC_EINVAL, true, "Client options must be an object");
        }
        int64_t x;
        bool has;
        ok = opt_strs(env, &pool, o, "subprotocols", (const char ***)&co.subprotocols, &co.subprotocol_count) &&
             opt_num(env, o, "connectTimeout", 1, UINT32_MAX, &x, &has) && ((has && (co.connect_timeout_ms = (uint32_t)x)) || true) &&
             opt_bool(env, o, "reconnect", &co.reconnect) &&
             opt_num(env, o, "reconnectInitialDelay", 1, UINT32_MAX, &x, &has) && ((has && (co.reconnect_initial_delay_ms = (uint32_t)x)) || true) &&
             opt_num(env, o, "reconnectMaxDelay", 1, UINT32_MAX, &x, &has) && ((has && (co.reconnect_max_delay_ms = (uint32_t)x)) || true) &&
             opt_num(env, o, "reconnectMaxAttempts", 0, UINT32_MAX, &x, &has) && ((has && ((co.reconnect_max_attempts = (uint32_t)x), 1)) || true) &&
             opt_num(env, o, "offlineBufferMessages", 0, INT64_C(1) << 40, &x, &has) && ((has && ((co.offline_buffer_messages = (size_t)x), 1)) || true) &&
             opt_num(env, o, "offlineBufferBytes", 0, INT64_C(1) << 50, &x, &has) && ((has && ((co.offline_buffer_bytes = (size_t)x), 1)) || true) &&
             opt_str(env, &pool, o, "tlsCa", &co.tls_ca_file) &&
             opt_bool(env, o, "tlsUseSystemStore", &co.tls_use_system_store) &&
             opt_bool(env, o, "tlsVerify", &co.tls_verify_peer) &&
             opt_str(env, &pool, o, "tlsCert", &co.tls_cert_file) &&
             opt_str(env, &pool, o, "tlsKey", &co.tls_key_file) &&
             ws_options(env, o, &co.ws) &&
             opt_queue(env, o, &co.queue, &co.queue_events);
        napi_value hv;
        if (ok && (ok = get_prop(env, o, "headers", &hv)) && hv) {
            napi_value keys;
            uint32_t n = 0;
            if (napi_typeof(env, hv, &t) != napi_ok || t != napi_object ||
                napi_get_property_names(env, hv, &keys) != napi_ok || napi_get_array_length(env, keys, &n) != napi_ok) {
                orc_node_throw_msg(env, ORC_EINVAL, true, "headers must be an object of strings");
                ok = false;
            } else if (n > 0) {
                headers = calloc(n, sizeof *headers);
                ok = headers != NULL;
                if (!ok) orc_node_throw_msg(env, ORC_ENOMEM, false, "out of memory");
                for (uint32_t i = 0; ok && i < n; i++) {
                    napi_value k, val;
                    ok = napi_get_element(env, keys, i, &k) == napi_ok && napi_get_property(env, hv, k, &val) == napi_ok &&
                         (headers[i].name = pool_str(env, &pool, k, "header name")) != NULL &&
                         (headers[i].value = pool_str(env, &pool, val, "header value")) != NULL;
                }
                co.headers = headers;
                co.header_count = n;
            }
        }
    }
    nrt *r = ok ? pick_runtime(env, o) : NULL;
    ws_ctx *c = r ? pump_new(env, sizeof(ws_ctx), argc >= 3 ? argv[2] : NULL, "orchestra.Client", &client_ops, r) : NULL;
    if (!c) {
        nrt_release(r);
        free(headers);
        pool_free(&pool);
        return NULL;
    }
    co.callbacks.on_message = cb_message;
    co.callbacks.on_drain = cb_drain;
    co.callbacks.on_pong = cb_pong;
    co.callbacks.on_close = cb_close;
    co.callbacks.user_data = c;
    co.on_state = cb_state;
    co.user_data_free = client_user_data_free;
    pump_retain(&c->p);   /* the library's, dropped by user_data_free */
    int rc = orc_client_new(r->rt, url, &co, &c->client);
    free(headers);
    pool_free(&pool);
    return pump_made(env, &c->p, rc, &orc_node_tag_client);
}

#define CLIENT_FN(name, body)                                                        \
    static napi_value name(napi_env env, napi_callback_info info) {                  \
        size_t argc = 3;                                                             \
        napi_value argv[3];                                                          \
        NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));        \
        ws_ctx *c = get_ctx(env, argc ? argv[0] : NULL, true, true);                 \
        if (!c) return NULL;                                                         \
        body                                                                         \
    }

CLIENT_FN(client_connect, {
    int rc = orc_client_connect(c->client);
    return rc < 0 ? orc_node_throw(env, rc) : NULL;
})

CLIENT_FN(client_send, {
    char stack[4096];
    orc_node_bytes b;
    int op;
    if (!send_args(env, argc >= 2 ? argv[1] : NULL, stack, sizeof stack, &b, &op)) return NULL;
    int rc = orc_client_send(c->client, op, (const uint8_t *)b.ptr, b.len);
    free(b.heap);
    return send_result(env, rc);
})

CLIENT_FN(client_ping, {
    int rc = orc_client_ping(c->client);
    return rc < 0 ? orc_node_throw(env, rc) : NULL;
})

CLIENT_FN(client_close, {
    char buf[256];
    int code;
    const char *reason;
    if (!close_args(env, argc, argv, 1, 1000, &code, buf, sizeof buf, &reason)) return NULL;
    int rc = orc_client_close(c->client, code, reason);
    return rc < 0 ? orc_node_throw(env, rc) : NULL;
})

CLIENT_FN(client_stats, {
    orc_conn_stats_t s;
    int rc = orc_client_stats(c->client, &s);
    if (rc < 0) return orc_node_throw(env, rc);
    return stats_object(env, &s, true);
})

static napi_value client_state(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    ws_ctx *c = get_ctx(env, argc ? argv[0] : NULL, true, false);
    if (!c) return NULL;
    NAPI_CALL(env, napi_create_int32(env, c->client ? (int)orc_client_state(c->client) : ORC_CLIENT_CLOSED, &v));
    return v;
}

/* -------------------------------------------------------------------------- runtime */

static void runtime_finalize(napi_env env, void *data, void *hint) {
    (void)env;
    (void)hint;
    nrt **slot = data;
    nrt_release(*slot);
    free(slot);
}

/* runtimeNew(name?) -> external holding one reference */
static napi_value runtime_new(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1], v;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    strpool pool = {0};
    const char *name = NULL;
    if (argc >= 1 && !orc_node_is_nullish(env, argv[0]) && !(name = pool_str(env, &pool, argv[0], "name"))) {
        pool_free(&pool);
        return NULL;
    }
    nrt **slot = calloc(1, sizeof *slot);
    int rc = slot ? nrt_new(name, slot) : ORC_ENOMEM;
    pool_free(&pool);
    if (rc != ORC_OK) {
        free(slot);
        return orc_node_throw(env, rc);
    }
    if (napi_create_external(env, slot, runtime_finalize, NULL, &v) != napi_ok ||
        napi_type_tag_object(env, v, &orc_node_tag_runtime) != napi_ok) {
        orc_node_throw_napi(env, "napi_create_external");
        return NULL;
    }
    return v;
}

/* runtimeClose(h): drops the object's reference; the I/O thread stops once the servers and
 * clients made on it are freed too. */
static napi_value runtime_close(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    nrt **slot = unwrap_ext(env, argc ? argv[0] : NULL, &orc_node_tag_runtime, "Runtime");
    if (!slot) return NULL;
    nrt *r = *slot;
    *slot = NULL;
    nrt_release(r);
    return NULL;
}

/* ----------------------------------------------------------------------------- init */

#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}

napi_value orc_node_init_ws(napi_env env, napi_value exports, orc_node_env *d) {
    NAPI_CALL(env, napi_add_env_cleanup_hook(env, ws_env_cleanup, d));
    napi_property_descriptor fns[] = {
        FN("runtimeNew", runtime_new), FN("runtimeClose", runtime_close),
        FN("serverNew", server_new), FN("serverListen", server_listen), FN("serverPort", server_port),
        FN("serverConnectionCount", server_count), FN("serverBroadcast", server_broadcast),
        FN("serverClose", server_close), FN("serverFree", server_free_js),
        FN("clientNew", client_new), FN("clientConnect", client_connect), FN("clientSend", client_send),
        FN("clientPing", client_ping), FN("clientClose", client_close), FN("clientStats", client_stats),
        FN("clientState", client_state), FN("clientFree", client_free_js),
        FN("connSend", conn_send), FN("connClose", conn_close), FN("connPing", conn_ping),
        FN("connStats", conn_stats), FN("connBufferedAmount", conn_buffered), FN("connInfo", conn_info),
        FN("wsSetRef", ws_set_ref),
    };
    napi_value ws;
    NAPI_CALL(env, napi_create_object(env, &ws));
    NAPI_CALL(env, napi_define_properties(env, ws, sizeof fns / sizeof fns[0], fns));
    NAPI_CALL(env, napi_set_named_property(env, exports, "_ws", ws));
    return exports;
}
