/*
 * Agent over orc_agent_* (the agent side of the hub protocol; the protocol is in the library).
 * The JavaScript class (an EventEmitter with task objects and an async iterator) is in
 * lib/index.js; this file exposes plain functions over a tagged external and delivers events.
 *
 * Events go through the agent's event pump (pump.c), as a server's or a client's: the agent is
 * made in callback mode; on_event runs on the I/O thread, copies the event's fields into one
 * block and posts it; on the JS thread the dispatch function gets each event in the library's
 * order. The dispatch function is held weakly unless the agent keeps the process alive
 * (between start() and its final state), when lib/index.js refs it. orc_agent_free runs on a
 * JS thread (agentFree, the external's finalizer, or the environment's cleanup, before the
 * shared runtime goes).
 *
 * Tasks. The tasks in flight are the library's: on a TASK event on_event gives the attempt a
 * slot of ours (orc_agent_event_set_task_data); once the JS thread has made the AgentTask for
 * it, the slot holds a reference to that object, and every later event about the attempt
 * (CANCEL, INPUT, ERROR) brings the slot back, so dispatch gets the task object itself. When
 * the library lets go of the slot (the attempt is over, or the agent closed) it posts a RELEASE
 * through the pump, after every event that carries the slot: on the JS thread the task's
 * _release() runs (its inputs end) and the reference goes. A slot is a loan of the pump's, so
 * the pump outlives it.
 */
#include "addon.h"

#include <stdlib.h>
#include <string.h>

static const napi_type_tag tag_agent = {0x6f72636167656e74ULL, 0x4d1f93b7a2c6e058ULL};

/* The string fields of an event, in the order dispatch receives them. */
enum { F_TASK_ID, F_TASK_JSON, F_PARAMS_JSON, F_INPUT, F_REASON, F_CODE, F_PAYLOAD_JSON, F_URL, F_COUNT };

/* Not a kind of the library's: the library let go of a task slot. */
#define AEV_RELEASE 0

/* A task attempt's slot (the data the library carries for it). */
typedef struct task_slot {
    struct pump *pump;   /* lent: posts the RELEASE */
    napi_ref task;       /* JS thread: the AgentTask, once made (strong) */
} task_slot;

typedef struct aev {
    pump_item link;
    int kind;
    int state;
    uint32_t attempt;
    task_slot *slot;          /* the attempt's slot, or NULL */
    const char *s[F_COUNT];   /* into data[], NULL when absent */
    size_t n[F_COUNT];
    char data[];
} aev;

typedef struct agent_ctx {
    pump p;                         /* first: the context is a pump */
    orc_agent_t *agent;             /* JS thread only */
} agent_ctx;

/* Any thread (the library's data_free): the slot comes back to the JS thread after every event
 * that carries it. */
static void slot_release(void *data) {
    task_slot *slot = data;
    aev *e = calloc(1, sizeof *e);
    if (!e) {   /* out of memory: the reference leaks, the slot goes */
        pump *p = slot->pump;
        free(slot);
        pump_return(p);
        return;
    }
    e->kind = AEV_RELEASE;
    e->slot = slot;
    pump_post(slot->pump, &e->link);   /* dropped (aev_drop) when the tsfn is gone */
}

/* No JS: frees an event; a RELEASE frees its slot (its reference goes with the environment). */
static void aev_drop(pump *p, pump_item *it) {
    (void)p;
    aev *e = (aev *)it;
    if (e->kind == AEV_RELEASE) {
        pump *owner = e->slot->pump;
        free(e->slot);
        pump_return(owner);
    }
    free(e);
}

/* I/O thread: copy the event and post it; a TASK event's attempt gets its slot. */
static void on_event(void *ud, orc_agent_t *agent, const orc_agent_event_t *ev) {
    (void)agent;
    agent_ctx *c = ud;
    const char *s[F_COUNT];
    size_t n[F_COUNT], total = 0;
    s[F_TASK_ID] = orc_agent_event_task_id(ev, &n[F_TASK_ID]);
    s[F_TASK_JSON] = orc_agent_event_task_json(ev, &n[F_TASK_JSON]);
    s[F_PARAMS_JSON] = orc_agent_event_params_json(ev, &n[F_PARAMS_JSON]);
    s[F_INPUT] = orc_agent_event_input(ev, &n[F_INPUT]);
    s[F_REASON] = orc_agent_event_reason(ev, &n[F_REASON]);
    s[F_CODE] = orc_agent_event_code(ev, &n[F_CODE]);
    s[F_PAYLOAD_JSON] = orc_agent_event_payload_json(ev, &n[F_PAYLOAD_JSON]);
    s[F_URL] = orc_agent_event_url(ev, &n[F_URL]);
    for (int i = 0; i < F_COUNT; i++)
        if (s[i]) total += n[i];
    aev *e = malloc(sizeof *e + total + 1);
    if (!e) return;   /* out of memory: the event is lost (nothing else can be done here) */
    orc_agent_event_kind_t kind = ORC_AGENT_EVENT_STATE;
    orc_agent_event_get_kind(ev, &kind);
    e->kind = (int)kind;
    e->state = (int)orc_agent_event_state(ev);
    e->attempt = orc_agent_event_attempt(ev);
    e->slot = orc_agent_event_task_data(ev);
    if (e->kind == ORC_AGENT_EVENT_TASK && (e->slot = calloc(1, sizeof *e->slot)) != NULL) {
        e->slot->pump = &c->p;
        pump_lend(&c->p);
        if (orc_agent_event_set_task_data(ev, e->slot, slot_release) != ORC_OK) {
            free(e->slot);
            e->slot = NULL;
            pump_return(&c->p);
        }
    }
    char *p = e->data;
    for (int i = 0; i < F_COUNT; i++) {
        e->s[i] = NULL;
        e->n[i] = 0;
        if (!s[i]) continue;
        if (n[i]) memcpy(p, s[i], n[i]);
        e->s[i] = p;
        e->n[i] = n[i];
        p += n[i];
    }
    pump_post(&c->p, &e->link);
}

/* The library lets go of user_data (inside orc_agent_free). */
static void lib_done(void *ud) { pump_unref(ud); }

/* JS thread: the task object of a slot (NULL when none). */
static napi_value slot_task(napi_env env, const task_slot *slot) {
    napi_value v = NULL;
    if (slot && slot->task && napi_get_reference_value(env, slot->task, &v) != napi_ok) v = NULL;
    return v;
}

/* JS thread: a RELEASE: the task's _release() (its inputs end), then the reference goes. */
static void release_slot(napi_env env, task_slot *slot) {
    napi_value task = slot_task(env, slot), fn;
    napi_valuetype t;
    if (task && napi_get_named_property(env, task, "_release", &fn) == napi_ok &&
        napi_typeof(env, fn, &t) == napi_ok && t == napi_function)
        pump_call(env, task, fn, 0, NULL);
    if (slot->task) napi_delete_reference(env, slot->task);
    slot->task = NULL;
}

/* JS thread: dispatch(kind, state, attempt, taskId, taskJson, paramsJson, input, reason, code,
 * payloadJson, url, task), absent strings as null, task the attempt's AgentTask (undefined when
 * none). For a TASK event dispatch returns the new AgentTask, which the slot then holds. */
static void aev_deliver(napi_env env, pump *p, napi_value fn, pump_item *it) {
    aev *e = (aev *)it;
    if (e->kind == AEV_RELEASE) {
        release_slot(env, e->slot);
        aev_drop(p, it);
        return;
    }
    if (fn) {
        napi_value argv[4 + F_COUNT];
        bool ok = napi_create_int32(env, e->kind, &argv[0]) == napi_ok &&
                  napi_create_int32(env, e->state, &argv[1]) == napi_ok &&
                  napi_create_uint32(env, e->attempt, &argv[2]) == napi_ok;
        for (int i = 0; ok && i < F_COUNT; i++) {
            if (e->s[i]) ok = napi_create_string_utf8(env, e->n[i] ? e->s[i] : "", e->n[i], &argv[3 + i]) == napi_ok;
            else ok = napi_get_null(env, &argv[3 + i]) == napi_ok;
        }
        napi_value task = slot_task(env, e->slot);
        if (ok && !task) ok = napi_get_undefined(env, &task) == napi_ok;
        argv[3 + F_COUNT] = task;
        napi_value made = ok ? pump_call(env, NULL, fn, 4 + F_COUNT, argv) : NULL;
        napi_valuetype t;
        if (made && e->kind == ORC_AGENT_EVENT_TASK && e->slot && !e->slot->task &&
            napi_typeof(env, made, &t) == napi_ok && t == napi_object)
            napi_create_reference(env, made, 1, &e->slot->task);
    }
    free(e);
}

/* JS thread: free the library object (its in-flight set goes: RELEASEs follow). */
static void agent_free_object(pump *p) {
    agent_ctx *c = (agent_ctx *)p;
    if (c->agent) orc_agent_free(c->agent);   /* calls lib_done before it returns */
    c->agent = NULL;
}

static const pump_ops agent_ops = {"agent", aev_deliver, aev_drop, agent_free_object};

/* ----------------------------------------------------------------------- arguments */

static agent_ctx *get_agent(napi_env env, napi_value v, bool live) {
    return pump_unwrap(env, v, &tag_agent, "Agent", live);
}

/* A string argument into the pool; NULL with an exception when it is not a string (or holds
 * NUL). With `optional`, undefined/null give NULL without an exception (*absent set). */
static const char *arg_str(napi_env env, strpool *p, napi_value v, const char *what, bool optional, bool *absent) {
    if (absent) *absent = false;
    if (optional && orc_node_is_nullish(env, v)) {
        if (absent) *absent = true;
        return NULL;
    }
    return pool_str(env, p, v, what);
}

static bool arg_attempt(napi_env env, napi_value v, uint32_t *out) {
    int64_t x;
    if (!orc_node_get_int64(env, v, "attempt", &x)) return false;
    if (x < 1 || x > UINT32_MAX) {
        orc_node_throw_msg(env, ORC_EINVAL, false, "attempt must be 1..4294967295");
        return false;
    }
    *out = (uint32_t)x;
    return true;
}

/* ----------------------------------------------------------------------------- new */

/* agentNew(options, dispatch) -> external. options: url or urls (an array), agentId, keyId, secret (bytes), name,
 * version, capabilities, metadataJson, maxConcurrency, requestTimeout, connectTimeout,
 * reconnectInitialDelay, reconnectMaxDelay (ms), tlsCa, tlsVerify, runtime. */
static napi_value agent_new(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    napi_valuetype t = napi_undefined;
    if (argc >= 1) napi_typeof(env, argv[0], &t);
    if (t != napi_object) return orc_node_throw_msg(env, ORC_EINVAL, true, "Agent options must be an object");
    if (argc < 2 || napi_typeof(env, argv[1], &t) != napi_ok || t != napi_function)
        return orc_node_throw_msg(env, ORC_EINVAL, true, "dispatch must be a function");
    napi_value o = argv[0];
    orc_agent_options_t ao;
    orc_agent_options_init(&ao);
    strpool pool = {0};
    int64_t x;
    bool has;
    char stack[256];
    orc_node_bytes secret = {0};
    napi_value sv;
    bool ok = opt_str(env, &pool, o, "url", &ao.url) &&
              opt_strs(env, &pool, o, "urls", (const char ***)&ao.urls, &ao.url_count) &&
              opt_str(env, &pool, o, "agentId", &ao.agent_id) &&
              opt_str(env, &pool, o, "keyId", &ao.key_id) &&
              opt_str(env, &pool, o, "name", &ao.name) &&
              opt_str(env, &pool, o, "version", &ao.version) &&
              opt_strs(env, &pool, o, "capabilities", (const char ***)&ao.capabilities, &ao.capabilities_count) &&
              opt_str(env, &pool, o, "metadataJson", &ao.metadata_json) &&
              opt_num(env, o, "maxConcurrency", 1, UINT32_MAX, &x, &has) && ((has && (ao.max_concurrency = (uint32_t)x)) || true) &&
              opt_num(env, o, "requestTimeout", 1, UINT32_MAX, &x, &has) && ((has && (ao.request_timeout_ms = (uint32_t)x)) || true) &&
              opt_num(env, o, "connectTimeout", 1, UINT32_MAX, &x, &has) && ((has && (ao.connect_timeout_ms = (uint32_t)x)) || true) &&
              opt_num(env, o, "reconnectInitialDelay", 1, UINT32_MAX, &x, &has) && ((has && (ao.reconnect_initial_delay_ms = (uint32_t)x)) || true) &&
              opt_num(env, o, "reconnectMaxDelay", 1, UINT32_MAX, &x, &has) && ((has && (ao.reconnect_max_delay_ms = (uint32_t)x)) || true) &&
              opt_str(env, &pool, o, "tlsCa", &ao.tls_ca_file) &&
              opt_bool(env, o, "tlsVerify", &ao.tls_verify) &&
              get_prop(env, o, "secret", &sv);
    if (ok && sv) {
        ok = orc_node_get_bytes(env, sv, "secret", false, stack, sizeof stack, &secret);
        ao.secret = (const uint8_t *)secret.ptr;
        ao.secret_len = secret.len;
    }
    nrt *r = ok ? pick_runtime(env, o) : NULL;
    if (!r) {
        free(secret.heap);
        pool_free(&pool);
        return NULL;
    }
    agent_ctx *c = pump_new(env, sizeof(agent_ctx), argv[1], "orchestra.Agent", &agent_ops, r);
    if (!c) {
        nrt_release(r);
        free(secret.heap);
        pool_free(&pool);
        return NULL;
    }
    ao.on_event = on_event;
    ao.user_data = c;
    ao.user_data_free = lib_done;
    pump_retain(&c->p);   /* the library's, dropped by user_data_free */
    int rc = orc_agent_new(r->rt, &ao, &c->agent);
    free(secret.heap);
    pool_free(&pool);
    return pump_made(env, &c->p, rc, &tag_agent);
}

/* ------------------------------------------------------------------------- actions */

#define AGENT_FN(fname, nargs, body)                                                 \
    static napi_value fname(napi_env env, napi_callback_info info) {                 \
        size_t argc = nargs;                                                         \
        napi_value argv[nargs];                                                      \
        NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));        \
        for (size_t i = argc; i < nargs; i++) napi_get_undefined(env, &argv[i]);     \
        agent_ctx *c = get_agent(env, argv[0], true);                                \
        if (!c) return NULL;                                                         \
        int rc;                                                                      \
        body                                                                         \
        return rc < 0 ? orc_node_throw(env, rc) : NULL;                              \
    }

/* Task actions: (h, taskId, attempt, ...). */
#define TASK_FN(fname, nargs, body)                                                  \
    AGENT_FN(fname, nargs, {                                                         \
        strpool pool = {0};                                                          \
        uint32_t attempt;                                                            \
        const char *task_id = arg_str(env, &pool, argv[1], "taskId", false, NULL);   \
        if (!task_id || !arg_attempt(env, argv[2], &attempt)) {                      \
            pool_free(&pool);                                                        \
            return NULL;                                                             \
        }                                                                            \
        body                                                                         \
        pool_free(&pool);                                                            \
    })

AGENT_FN(agent_start, 1, { rc = orc_agent_start(c->agent); })

AGENT_FN(agent_close, 1, { rc = orc_agent_close(c->agent); })

TASK_FN(agent_accept, 3, { rc = orc_agent_accept(c->agent, task_id, attempt); })

TASK_FN(agent_reject, 4, {
    bool absent;
    const char *reason = arg_str(env, &pool, argv[3], "reason", true, &absent);
    if (!reason && !absent) {
        pool_free(&pool);
        return NULL;
    }
    rc = orc_agent_reject(c->agent, task_id, attempt, reason);
})

TASK_FN(agent_progress, 5, {
    bool absent;
    double percent;
    napi_valuetype t;
    if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_number ||
        napi_get_value_double(env, argv[3], &percent) != napi_ok) {
        pool_free(&pool);
        return orc_node_throw_msg(env, ORC_EINVAL, true, "percent must be a number 0..100");
    }
    const char *step = arg_str(env, &pool, argv[4], "step", true, &absent);
    if (!step && !absent) {
        pool_free(&pool);
        return NULL;
    }
    rc = orc_agent_progress(c->agent, task_id, attempt, percent, step);
})

TASK_FN(agent_stream, 5, {
    const char *type = arg_str(env, &pool, argv[3], "type", false, NULL);
    char stack[4096];
    orc_node_bytes b;
    if (!type || !orc_node_get_bytes(env, argv[4], "data", false, stack, sizeof stack, &b)) {
        pool_free(&pool);
        return NULL;
    }
    rc = orc_agent_stream(c->agent, task_id, attempt, type, (const uint8_t *)b.ptr, b.len);
    free(b.heap);
})

/* (h, taskId, attempt, success, resultJson|null, error|null) */
TASK_FN(agent_result, 6, {
    bool success = false;
    bool a1 = false;
    bool a2 = false;
    napi_valuetype t;
    if (napi_typeof(env, argv[3], &t) != napi_ok || t != napi_boolean || napi_get_value_bool(env, argv[3], &success) != napi_ok) {
        pool_free(&pool);
        return orc_node_throw_msg(env, ORC_EINVAL, true, "success must be a boolean");
    }
    const char *result_json = arg_str(env, &pool, argv[4], "result", true, &a1);
    const char *error = result_json || a1 ? arg_str(env, &pool, argv[5], "error", true, &a2) : NULL;
    if ((!result_json && !a1) || (!error && !a2)) {
        pool_free(&pool);
        return NULL;
    }
    rc = orc_agent_result(c->agent, task_id, attempt, success ? 1 : 0, result_json, error);
})

/* (h, taskId, attempt, type, content, detailsJson|null) */
TASK_FN(agent_worker_output, 6, {
    bool absent;
    const char *type = arg_str(env, &pool, argv[3], "type", false, NULL);
    const char *content = type ? arg_str(env, &pool, argv[4], "content", false, NULL) : NULL;
    const char *details = content ? arg_str(env, &pool, argv[5], "details", true, &absent) : NULL;
    if (!content || (!details && !absent)) {
        pool_free(&pool);
        return NULL;
    }
    rc = orc_agent_worker_output(c->agent, task_id, attempt, type, content, details);
})

/* (h, taskId, attempt, status, message|null) */
TASK_FN(agent_worker_status, 5, {
    bool absent;
    const char *status = arg_str(env, &pool, argv[3], "status", false, NULL);
    const char *message = status ? arg_str(env, &pool, argv[4], "message", true, &absent) : NULL;
    if (!status || (!message && !absent)) {
        pool_free(&pool);
        return NULL;
    }
    rc = orc_agent_worker_status(c->agent, task_id, attempt, status, message);
})

/* A number about the agent, read(agent) (the library object; NULL once freed, which the
 * library's getters answer for). */
static napi_value agent_number(napi_env env, napi_callback_info info, uint32_t (*read)(const orc_agent_t *)) {
    size_t argc = 1;
    napi_value argv[1], v;
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    agent_ctx *c = get_agent(env, argc ? argv[0] : NULL, false);
    if (!c) return NULL;
    NAPI_CALL(env, napi_create_uint32(env, read(c->agent), &v));
    return v;
}

static uint32_t read_state(const orc_agent_t *a) { return (uint32_t)orc_agent_state(a); }

static uint32_t read_url_index(const orc_agent_t *a) {
    size_t index = 0;
    orc_agent_url(a, &index);
    return (uint32_t)index;
}

/* agentState(h) -> an orc_agent_state_t value (closed once freed). */
static napi_value agent_state(napi_env env, napi_callback_info info) { return agent_number(env, info, read_state); }

/* agentUrlIndex(h) -> the position in the agent's URLs of the hub it is with (orc_agent_url). */
static napi_value agent_url_index(napi_env env, napi_callback_info info) { return agent_number(env, info, read_url_index); }

static napi_value agent_free_js(napi_env env, napi_callback_info info) {
    size_t argc = 1;
    napi_value argv[1];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    agent_ctx *c = get_agent(env, argc ? argv[0] : NULL, false);
    if (!c) return NULL;
    pump_free(env, &c->p);
    return NULL;
}

/* agentSetRef(h, bool): whether the agent keeps the process alive (and its dispatch function,
 * which holds the Agent object, from the garbage collector). */
static napi_value agent_set_ref(napi_env env, napi_callback_info info) {
    size_t argc = 2;
    napi_value argv[2];
    NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
    agent_ctx *c = get_agent(env, argc ? argv[0] : NULL, false);
    if (!c) return NULL;
    bool want = false;
    if (argc >= 2) napi_get_value_bool(env, argv[1], &want);
    pump_set_ref(env, &c->p, want);
    return NULL;
}

/* ----------------------------------------------------------------------------- init */

#define FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}

napi_value orc_node_init_agent(napi_env env, napi_value exports, orc_node_env *d) {
    (void)d;   /* its agents are freed with the environment's other objects (ws.c's cleanup) */
    napi_property_descriptor fns[] = {
        FN("agentNew", agent_new), FN("agentStart", agent_start), FN("agentState", agent_state),
        FN("agentUrlIndex", agent_url_index),
        FN("agentClose", agent_close), FN("agentFree", agent_free_js), FN("agentSetRef", agent_set_ref),
        FN("accept", agent_accept), FN("reject", agent_reject), FN("progress", agent_progress),
        FN("stream", agent_stream), FN("result", agent_result), FN("workerOutput", agent_worker_output),
        FN("workerStatus", agent_worker_status),
    };
    napi_value a;
    NAPI_CALL(env, napi_create_object(env, &a));
    NAPI_CALL(env, napi_define_properties(env, a, sizeof fns / sizeof fns[0], fns));
    NAPI_CALL(env, napi_set_named_property(env, exports, "_agent", a));
    return exports;
}
