/*
 * bench/hub_agent.c (build/hub_bench_agent): the hub benchmark's C agent (bench/hub_bench.py,
 * --agent-lang c). It answers every task.assign with task.accepted, one 64-byte task.stream
 * chunk (seq 0) and task.result {"success": true, "result": {"exitCode": 0}}: the same work
 * as the python-socketio anchor's agents. Events are delivered by callback on the runtime's
 * I/O thread (orc_agent_options.on_event), so a task is answered without a thread hop.
 *
 *   hub_bench_agent --url ws://127.0.0.1:PORT/agent --agent-id ID --key-id KEY --secret HEX
 *                   [--max-concurrency N]
 *
 * Line protocol (bench/hub_bench.py, run_stack): prints {"ready": ID} once registered; at EOF
 * of stdin (or any line) closes the agent, waits for its CLOSED state and prints
 * {"agent": ID, "tasks": N} (N: tasks answered, warm-up included). Exit status 1 when the
 * hub refused the registration or an action failed.
 */
#include <orchestra.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char CHUNK[65] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static atomic_ulong done_tasks;
static unsigned long skip_stream_every;   /* a fault for the harness's smoke check: it must notice */
static atomic_int failed_actions;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int registered, finished;   /* finished: CLOSED or FAILED seen */
static char fail_reason[512];

static void on_event(void *ud, orc_agent_t *agent, const orc_agent_event_t *ev) {
    (void)ud;
    switch (orc_agent_event_kind(ev)) {
    case ORC_AGENT_EVENT_TASK: {
        const char *id = orc_agent_event_task_id(ev, NULL);
        uint32_t attempt = orc_agent_event_attempt(ev);
        unsigned long n = atomic_load_explicit(&done_tasks, memory_order_relaxed) + 1;
        int skip = skip_stream_every && n % skip_stream_every == 0;
        if (orc_agent_accept(agent, id, attempt) != ORC_OK
            || (!skip && orc_agent_stream(agent, id, attempt, "stdout", (const uint8_t *)CHUNK, 64) != ORC_OK)
            || orc_agent_result(agent, id, attempt, 1, "{\"exitCode\":0}", NULL) != ORC_OK) {
            if (atomic_fetch_add(&failed_actions, 1) == 0)
                fprintf(stderr, "hub_bench_agent: task %s: %s\n", id, orc_last_error());
            return;
        }
        atomic_fetch_add_explicit(&done_tasks, 1, memory_order_relaxed);
        return;
    }
    case ORC_AGENT_EVENT_STATE: {
        orc_agent_state_t st = orc_agent_event_state(ev);
        const char *reason = orc_agent_event_reason(ev, NULL);
        pthread_mutex_lock(&lock);
        if (st == ORC_AGENT_REGISTERED) registered = 1;
        if (st == ORC_AGENT_FAILED || st == ORC_AGENT_CLOSED) finished = st;
        if (st == ORC_AGENT_FAILED || st == ORC_AGENT_DISCONNECTED)
            snprintf(fail_reason, sizeof fail_reason, "%s", reason ? reason : "");
        pthread_cond_broadcast(&changed);
        pthread_mutex_unlock(&lock);
        if (st == ORC_AGENT_DISCONNECTED) fprintf(stderr, "hub_bench_agent: disconnected: %s\n", reason ? reason : "");
        return;
    }
    case ORC_AGENT_EVENT_ERROR: {
        const char *code = orc_agent_event_code(ev, NULL), *reason = orc_agent_event_reason(ev, NULL);
        fprintf(stderr, "hub_bench_agent: the hub answered %s: %s\n", code ? code : "?", reason ? reason : "");
        atomic_fetch_add(&failed_actions, 1);
        return;
    }
    default:
        return;
    }
}

static int hex_secret(const char *hex, uint8_t *out, size_t cap, size_t *len) {
    size_t n = strlen(hex);
    if (n == 0 || n % 2 || n / 2 > cap) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1) return -1;
        out[i] = (uint8_t)v;
    }
    *len = n / 2;
    return 0;
}

int main(int argc, char **argv) {
    const char *url = NULL, *agent_id = NULL, *key_id = NULL, *secret = NULL;
    unsigned long max_conc = 1000;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!next) { fprintf(stderr, "hub_bench_agent: %s needs a value\n", argv[i]); return 2; }
        if (strcmp(argv[i], "--url") == 0) url = argv[++i];
        else if (strcmp(argv[i], "--agent-id") == 0) agent_id = argv[++i];
        else if (strcmp(argv[i], "--key-id") == 0) key_id = argv[++i];
        else if (strcmp(argv[i], "--secret") == 0) secret = argv[++i];
        else if (strcmp(argv[i], "--max-concurrency") == 0) max_conc = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--skip-stream-every") == 0) skip_stream_every = strtoul(argv[++i], NULL, 10);
        else { fprintf(stderr, "hub_bench_agent: unknown option %s\n", argv[i]); return 2; }
    }
    uint8_t secret_bytes[256];
    size_t secret_len = 0;
    if (!url || !agent_id || !key_id || !secret || hex_secret(secret, secret_bytes, sizeof secret_bytes, &secret_len) != 0
        || max_conc < 1 || max_conc > 1000000) {
        fprintf(stderr, "usage: hub_bench_agent --url URL --agent-id ID --key-id KEY --secret HEX [--max-concurrency N]\n");
        return 2;
    }

    orc_runtime_t *rt = NULL;
    if (orc_runtime_new(NULL, &rt) != ORC_OK) { fprintf(stderr, "hub_bench_agent: %s\n", orc_last_error()); return 1; }
    static const char *const caps[] = {"shell"};
    orc_agent_options_t o;
    orc_agent_options_init(&o);
    o.url = url;
    o.agent_id = agent_id;
    o.version = "1.0.0";
    o.capabilities = caps;
    o.capabilities_count = 1;
    o.max_concurrency = (uint32_t)max_conc;
    o.key_id = key_id;
    o.secret = secret_bytes;
    o.secret_len = secret_len;
    o.on_event = on_event;
    orc_agent_t *agent = NULL;
    if (orc_agent_new(rt, &o, &agent) != ORC_OK || orc_agent_start(agent) != ORC_OK) {
        fprintf(stderr, "hub_bench_agent: %s\n", orc_last_error());
        orc_agent_free(agent);
        orc_runtime_free(rt);
        return 1;
    }

    pthread_mutex_lock(&lock);
    while (!registered && !finished) pthread_cond_wait(&changed, &lock);
    int ok = registered && !finished;
    pthread_mutex_unlock(&lock);
    if (!ok) {
        fprintf(stderr, "hub_bench_agent: not registered: %s\n", fail_reason);
        orc_agent_free(agent);
        orc_runtime_free(rt);
        return 1;
    }
    printf("{\"ready\": \"%s\"}\n", agent_id);
    fflush(stdout);

    char line[256];
    (void)fgets(line, sizeof line, stdin);   /* EOF or any line: stop */

    orc_agent_close(agent);
    pthread_mutex_lock(&lock);
    while (!finished) pthread_cond_wait(&changed, &lock);   /* the close is bounded (5 s) */
    pthread_mutex_unlock(&lock);
    printf("{\"agent\": \"%s\", \"tasks\": %lu}\n", agent_id, (unsigned long)atomic_load(&done_tasks));
    fflush(stdout);
    orc_agent_free(agent);
    orc_runtime_free(rt);
    return atomic_load(&failed_actions) ? 1 : 0;
}
