/*
 * agent: an orchestra agent that runs shell commands.
 *
 *   agent [--url URL[,URL...]] [--agent-id ID] [--key-id KEY] [--secret SECRET]
 *         [--capability NAME]... [--max-concurrency N]
 *
 * Defaults come from the environment: ORC_HUB_URL (the hub, ws://127.0.0.1:7420; the agent
 * connects to its /agent; several hubs separated by commas are tried round robin when one goes
 * away), ORC_AGENT_ID (agent-<hostname>), ORC_KEY_ID, ORC_AGENT_SECRET (hex,
 * as `orchestra-hub key add` prints it), ORC_AGENT_CAPABILITIES (comma separated, "shell") and
 * ORC_MAX_CONCURRENCY (4).
 *
 * For every task the hub assigns it runs parameters.command with /bin/sh -c, streams each line
 * the command prints as task.stream (stdout; stderr is merged), reports progress, and sends
 * the result {"exitCode": N} (success when N is 0). A cancelled task's command is killed.
 * SIGINT/SIGTERM: the agent disconnects (the hub re-queues what was running) and exits.
 */
#include <orchestra.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_TASKS 64

typedef struct {
    int used;
    char id[256];
    uint32_t attempt;
    char *command;
    pid_t pid;          /* the command's process group, 0 before it starts */
    int cancelled;
    pthread_t thread;
} task_t;

static orc_agent_t *agent;
static task_t tasks[MAX_TASKS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile sig_atomic_t stop;

static void on_signal(int sig) { (void)sig; stop = 1; }

/* Runs one task on its own thread. */
static void *run_task(void *arg) {
    task_t *t = arg;
    int fds[2];
    if (pipe(fds) != 0) {
        orc_agent_result(agent, t->id, t->attempt, 0, NULL, strerror(errno));
        return NULL;
    }
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execl("/bin/sh", "sh", "-c", t->command, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (pid > 0) setpgid(pid, pid);   /* also here: kill(-pid) must not race the child's */
    pthread_mutex_lock(&lock);
    t->pid = pid;
    if (t->cancelled && pid > 0) kill(-pid, SIGTERM);
    pthread_mutex_unlock(&lock);

    orc_agent_progress(agent, t->id, t->attempt, 0, "running");
    FILE *out = fdopen(fds[0], "r");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, out)) > 0) {
        if (orc_agent_stream(agent, t->id, t->attempt, "stdout", (const uint8_t *)line, (size_t)n) == ORC_EINVAL)
            orc_agent_stream(agent, t->id, t->attempt, "log", (const uint8_t *)"(a line that is not UTF-8)\n", 27);
    }
    free(line);
    fclose(out);

    int status = 0;
    int code = pid > 0 && waitpid(pid, &status, 0) == pid
        ? (WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) : 127;
    char result[64];
    snprintf(result, sizeof result, "{\"exitCode\":%d}", code);
    orc_agent_progress(agent, t->id, t->attempt, 100, "done");
    /* ORC_ENOTFOUND after a cancel, ORC_ECLOSED at shutdown: nothing to report then. */
    orc_agent_result(agent, t->id, t->attempt, code == 0, result, code == 0 ? NULL : "command failed");
    return NULL;
}

static task_t *find_task(const char *id, uint32_t attempt) {
    for (int i = 0; i < MAX_TASKS; i++)
        if (tasks[i].used && tasks[i].attempt == attempt && strcmp(tasks[i].id, id) == 0) return &tasks[i];
    return NULL;
}

/* Frees the slots of finished tasks (their threads are done: join them). */
static void reap(int wait_all) {
    for (int i = 0; i < MAX_TASKS; i++) {
        if (!tasks[i].used) continue;
        if (!wait_all && pthread_tryjoin_np(tasks[i].thread, NULL) != 0) continue;
        if (wait_all) pthread_join(tasks[i].thread, NULL);
        orc_buf_free(tasks[i].command);
        pthread_mutex_lock(&lock);
        tasks[i].used = 0;
        pthread_mutex_unlock(&lock);
    }
}

static void on_task(const orc_agent_event_t *ev, int max_concurrency) {
    const char *id = orc_agent_event_task_id(ev, NULL);
    uint32_t attempt = orc_agent_event_attempt(ev);
    size_t params_len = 0;
    const char *params = orc_agent_event_params_json(ev, &params_len);
    char *command = NULL;   /* parameters.command, a new buffer (orc_buf_free) */
    if (params && orc_json_get_string(params, params_len, "command", &command, NULL) != ORC_OK) command = NULL;
    int running = 0;
    task_t *slot = NULL;
    for (int i = 0; i < MAX_TASKS; i++) {
        if (tasks[i].used) running++;
        else if (!slot) slot = &tasks[i];
    }
    if (!command || !slot || running >= max_concurrency || strlen(id) >= sizeof slot->id) {
        orc_agent_reject(agent, id, attempt, command ? "busy" : "parameters.command is missing");
        orc_buf_free(command);
        return;
    }
    memset(slot, 0, sizeof *slot);
    slot->used = 1;
    snprintf(slot->id, sizeof slot->id, "%s", id);
    slot->attempt = attempt;
    slot->command = command;
    orc_agent_accept(agent, id, attempt);
    fprintf(stderr, "agent: task %s (attempt %u): %s\n", id, attempt, command);
    if (pthread_create(&slot->thread, NULL, run_task, slot) != 0) {
        orc_agent_result(agent, id, attempt, 0, NULL, "cannot start a thread");
        orc_buf_free(command);
        slot->used = 0;
    }
}

static void on_cancel(const orc_agent_event_t *ev) {
    const char *reason = orc_agent_event_reason(ev, NULL);
    fprintf(stderr, "agent: task %s cancelled (%s)\n", orc_agent_event_task_id(ev, NULL), reason ? reason : "");
    pthread_mutex_lock(&lock);
    task_t *t = find_task(orc_agent_event_task_id(ev, NULL), orc_agent_event_attempt(ev));
    if (t) {
        t->cancelled = 1;
        if (t->pid > 0) kill(-t->pid, SIGTERM);
    }
    pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv) {
    const char *url = getenv("ORC_HUB_URL"), *id = getenv("ORC_AGENT_ID");
    const char *key_id = getenv("ORC_KEY_ID"), *secret = getenv("ORC_AGENT_SECRET");
    const char *caps[16];
    size_t ncaps = 0;
    int max_concurrency = 4;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--url") == 0 && next) url = argv[++i];
        else if (strcmp(argv[i], "--agent-id") == 0 && next) id = argv[++i];
        else if (strcmp(argv[i], "--key-id") == 0 && next) key_id = argv[++i];
        else if (strcmp(argv[i], "--secret") == 0 && next) secret = argv[++i];
        else if (strcmp(argv[i], "--capability") == 0 && next && ncaps < 16) caps[ncaps++] = argv[++i];
        else if (strcmp(argv[i], "--max-concurrency") == 0 && next) max_concurrency = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: agent [--url URL[,URL...]] [--agent-id ID] [--key-id KEY] [--secret SECRET]\n"
                            "             [--capability NAME]... [--max-concurrency N]\n");
            return 2;
        }
    }
    char host_id[300];
    if (!id) {
        char host[256] = "localhost";
        gethostname(host, sizeof host - 1);
        snprintf(host_id, sizeof host_id, "agent-%s", host);
        id = host_id;
    }
    /* ORC_AGENT_CAPABILITIES: a comma separated list, when no --capability was given. */
    static char caps_env[512];
    const char *ce = getenv("ORC_AGENT_CAPABILITIES");
    if (!ncaps && ce && strlen(ce) < sizeof caps_env) {
        strcpy(caps_env, ce);
        for (char *tok = strtok(caps_env, ","); tok && ncaps < 16; tok = strtok(NULL, ",")) caps[ncaps++] = tok;
    }
    if (!ncaps) caps[ncaps++] = "shell";
    const char *mc = getenv("ORC_MAX_CONCURRENCY");
    if (mc && max_concurrency == 4) max_concurrency = atoi(mc);
    if (!key_id || !secret) {
        fprintf(stderr, "agent: set --key-id and --secret (or ORC_KEY_ID and ORC_AGENT_SECRET)\n");
        return 2;
    }
    if (max_concurrency < 1 || max_concurrency > MAX_TASKS) max_concurrency = 4;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    orc_runtime_t *rt = NULL;
    if (orc_runtime_new(NULL, &rt) != ORC_OK) {
        fprintf(stderr, "agent: %s\n", orc_last_error());
        return 1;
    }
    orc_agent_options_t o;
    orc_agent_options_init(&o);
    /* ORC_HUB_URL (or --url) is the hub's base URL, ws://127.0.0.1:7420, or several separated
     * by commas (tried round robin); agents connect to their /agent. */
    static char list[4096], full_urls[8][1024];
    const char *urls[8];
    size_t nurls = 0;
    snprintf(list, sizeof list, "%s", url ? url : "ws://127.0.0.1:7420");
    for (char *tok = strtok(list, ", "); tok && nurls < 8; tok = strtok(NULL, ", ")) {
        size_t bl = strlen(tok);
        while (bl > 0 && tok[bl - 1] == '/') bl--;
        int has_path = bl >= 6 && strncmp(tok + bl - 6, "/agent", 6) == 0;
        snprintf(full_urls[nurls], sizeof full_urls[nurls], "%.*s%s", (int)bl, tok, has_path ? "" : "/agent");
        urls[nurls] = full_urls[nurls];
        nurls++;
    }
    if (nurls == 0) {
        fprintf(stderr, "agent: no hub URL in --url/ORC_HUB_URL\n");
        return 2;
    }
    o.urls = urls;
    o.url_count = nurls;
    o.agent_id = id;
    o.capabilities = caps;
    o.capabilities_count = ncaps;
    o.max_concurrency = (uint32_t)max_concurrency;
    o.key_id = key_id;
    /* The secret as `orchestra-hub key add` prints it: hex. */
    uint8_t secret_bytes[256];
    size_t secret_len = strlen(secret) / 2;
    if (strlen(secret) % 2 || secret_len == 0 || secret_len > sizeof secret_bytes) {
        fprintf(stderr, "agent: the secret must be hex, as `orchestra-hub key add` prints it\n");
        return 2;
    }
    for (size_t i = 0; i < secret_len; i++) {
        unsigned v;
        if (sscanf(secret + 2 * i, "%2x", &v) != 1) {
            fprintf(stderr, "agent: the secret must be hex, as `orchestra-hub key add` prints it\n");
            return 2;
        }
        secret_bytes[i] = (uint8_t)v;
    }
    o.secret = secret_bytes;
    o.secret_len = secret_len;
    if (orc_agent_new(rt, &o, &agent) != ORC_OK || orc_agent_start(agent) != ORC_OK) {
        fprintf(stderr, "agent: %s\n", orc_last_error());
        orc_agent_free(agent);
        orc_runtime_free(rt);
        return 1;
    }

    int exit_code = 0;
    while (!stop) {
        orc_agent_event_t *ev = NULL;
        int rc = orc_agent_next_event(agent, 200, &ev);
        reap(0);
        if (rc == ORC_ETIMEDOUT) continue;
        if (rc != ORC_OK) break;   /* ORC_ECLOSED: failed, reported below */
        switch (orc_agent_event_kind(ev)) {
        case ORC_AGENT_EVENT_TASK: on_task(ev, max_concurrency); break;
        case ORC_AGENT_EVENT_CANCEL: on_cancel(ev); break;
        case ORC_AGENT_EVENT_STATE: {
            static const char *names[] = {"connecting", "registered", "disconnected", "failed", "closed"};
            const char *reason = orc_agent_event_reason(ev, NULL);
            fprintf(stderr, "agent: %s (%s)\n", names[orc_agent_event_state(ev)], reason ? reason : "");
            if (orc_agent_event_state(ev) == ORC_AGENT_FAILED) exit_code = 1;
            break;
        }
        case ORC_AGENT_EVENT_FAILOVER: {
            const char *reason = orc_agent_event_reason(ev, NULL);
            fprintf(stderr, "agent: failing over to %s (%s)\n", orc_agent_event_url(ev, NULL), reason ? reason : "");
            break;
        }
        default: break;   /* input, errors: this agent has no use for them */
        }
        orc_agent_event_free(ev);
    }

    /* Disconnect first: the hub re-queues the tasks still running. Then stop them. */
    orc_agent_close(agent);
    orc_agent_event_t *ev = NULL;
    while (orc_agent_next_event(agent, 10000, &ev) == ORC_OK) orc_agent_event_free(ev);   /* to CLOSED */
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_TASKS; i++)
        if (tasks[i].used) { tasks[i].cancelled = 1; if (tasks[i].pid > 0) kill(-tasks[i].pid, SIGTERM); }
    pthread_mutex_unlock(&lock);
    reap(1);
    orc_agent_free(agent);
    orc_runtime_free(rt);
    return exit_code;
}
