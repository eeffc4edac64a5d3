/*
 * bench/hub_agents_idle.c (build/hub_bench_agents_idle): opens N agent connections to a hub
 * from one process (N orc_agent_t on one runtime, events by callback on its I/O thread), for
 * the hub's memory per connected agent (bench/hub_bench.py --scenarios memory).
 *
 *   hub_bench_agents_idle --url ws://127.0.0.1:PORT/agent --key-id KEY --secret HEX --count N
 *                         [--prefix idle-] [--parallel 64] [--timeout 120]
 *
 * Starts the agents --parallel at a time (the next one starts when one registers), prints
 * {"ready": N} once all N are registered, then keeps them (heartbeats go on) until EOF of
 * stdin, closes them all, waits for every CLOSED (bounded) and prints {"closed": N}. Any agent
 * that fails, or disconnects while held, makes the exit status 1 (and {"error": ...} is
 * printed instead of ready when registration does not finish within --timeout seconds).
 */
#include <orchestra.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int registered, closed_count, failed, disconnects;
static char last_reason[512];

typedef struct { int index; int was_registered; } slot_t;

static void on_event(void *ud, orc_agent_t *agent, const orc_agent_event_t *ev) {
    (void)agent;
    slot_t *s = ud;
    if (orc_agent_event_kind(ev) != ORC_AGENT_EVENT_STATE) return;
    orc_agent_state_t st = orc_agent_event_state(ev);
    const char *reason = orc_agent_event_reason(ev, NULL);
    pthread_mutex_lock(&lock);
    switch (st) {
    case ORC_AGENT_REGISTERED:
        if (!s->was_registered) { s->was_registered = 1; registered++; }
        break;
    case ORC_AGENT_DISCONNECTED:
        disconnects++;
        snprintf(last_reason, sizeof last_reason, "agent %d disconnected: %s", s->index, reason ? reason : "");
        break;
    case ORC_AGENT_FAILED:
        failed++;
        closed_count++;
        snprintf(last_reason, sizeof last_reason, "agent %d failed: %s", s->index, reason ? reason : "");
        break;
    case ORC_AGENT_CLOSED:
        closed_count++;
        break;
    default:
        break;
    }
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
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

static void deadline_in(struct timespec *ts, double seconds) {
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += (time_t)seconds;
    ts->tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
    if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

int main(int argc, char **argv) {
    const char *url = NULL, *key_id = NULL, *secret = NULL, *prefix = "idle-";
    long count = 0, parallel = 64;
    double timeout = 120;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!next) { fprintf(stderr, "hub_bench_agents_idle: %s needs a value\n", argv[i]); return 2; }
        if (strcmp(argv[i], "--url") == 0) url = argv[++i];
        else if (strcmp(argv[i], "--key-id") == 0) key_id = argv[++i];
        else if (strcmp(argv[i], "--secret") == 0) secret = argv[++i];
        else if (strcmp(argv[i], "--count") == 0) count = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--prefix") == 0) prefix = argv[++i];
        else if (strcmp(argv[i], "--parallel") == 0) parallel = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--timeout") == 0) timeout = strtod(argv[++i], NULL);
        else { fprintf(stderr, "hub_bench_agents_idle: unknown option %s\n", argv[i]); return 2; }
    }
    uint8_t secret_bytes[256];
    size_t secret_len = 0;
    if (!url || !key_id || !secret || hex_secret(secret, secret_bytes, sizeof secret_bytes, &secret_len) != 0
        || count < 1 || count > 100000 || parallel < 1 || !(timeout > 0 && timeout < 3600)) {
        fprintf(stderr, "usage: hub_bench_agents_idle --url URL --key-id KEY --secret HEX --count N "
                        "[--prefix P] [--parallel K] [--timeout S]\n");
        return 2;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    orc_runtime_t *rt = NULL;
    if (orc_runtime_new(NULL, &rt) != ORC_OK) { fprintf(stderr, "hub_bench_agents_idle: %s\n", orc_last_error()); return 1; }
    orc_agent_t **agents = calloc((size_t)count, sizeof *agents);
    slot_t *slots = calloc((size_t)count, sizeof *slots);
    static const char *const caps[] = {"shell"};
    int rc = 0;
    long started = 0;
    struct timespec until;
    deadline_in(&until, timeout);

    pthread_mutex_lock(&lock);
    while (registered < count && !failed) {
        while (started < count && started - registered < parallel) {
            char id[128];
            snprintf(id, sizeof id, "%s%ld", prefix, started);
            slots[started].index = (int)started;
            orc_agent_options_t o;
            orc_agent_options_init(&o);
            o.url = url;
            o.agent_id = id;
            o.capabilities = caps;
            o.capabilities_count = 1;
            o.max_concurrency = 1;
            o.key_id = key_id;
            o.secret = secret_bytes;
            o.secret_len = secret_len;
            o.on_event = on_event;
            o.user_data = &slots[started];
            pthread_mutex_unlock(&lock);
            int r = orc_agent_new(rt, &o, &agents[started]);
            if (r == ORC_OK) r = orc_agent_start(agents[started]);
            pthread_mutex_lock(&lock);
            if (r != ORC_OK) {
                snprintf(last_reason, sizeof last_reason, "agent %ld: %s", started, orc_last_error());
                failed++;
                break;
            }
            started++;
        }
        if (failed || pthread_cond_timedwait(&changed, &lock, &until) != 0) break;
    }
    int ok = registered == count && !failed;
    pthread_mutex_unlock(&lock);
    if (ok) {
        printf("{\"ready\": %ld}\n", count);
        fflush(stdout);
        char line[64];
        (void)fgets(line, sizeof line, stdin);   /* EOF or any line: stop */
        pthread_mutex_lock(&lock);
        if (disconnects || failed) {
            fprintf(stderr, "hub_bench_agents_idle: %d disconnects, %d failures while held (%s)\n", disconnects, failed, last_reason);
            rc = 1;
        }
        pthread_mutex_unlock(&lock);
    } else {
        printf("{\"error\": \"%d of %ld agents registered (%s)\"}\n", registered, count, failed ? last_reason : "timed out");
        fflush(stdout);
        rc = 1;
    }
    for (long i = 0; i < started; i++) orc_agent_close(agents[i]);
    deadline_in(&until, 15);
    pthread_mutex_lock(&lock);
    while (closed_count < started && pthread_cond_timedwait(&changed, &lock, &until) == 0) {}
    int closed = closed_count;
    pthread_mutex_unlock(&lock);
    if (ok) {
        printf("{\"closed\": %d}\n", closed);
        fflush(stdout);
    }
    for (long i = 0; i < started; i++) orc_agent_free(agents[i]);
    orc_runtime_free(rt);
    free(agents);
    free(slots);
    return rc;
}
