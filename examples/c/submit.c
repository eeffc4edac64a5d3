/*
 * submit: a web client of orchestra-hub that runs a shell command on some agent and prints
 * its output as it streams.
 *
 *   ORC_HUB_TOKEN=$(orchestra-hub token --user alice) submit 'ls -l /tmp'
 *
 * Connects to ORC_HUB_URL (ws://127.0.0.1:7420) + /web with the JWT in ORC_HUB_TOKEN, sends
 * task.submit {"type":"shell","parameters":{"command":...}}, prints every task.stream chunk as
 * it arrives and exits with the command's exit code (1 when the task failed without one, 2
 * when the hub refused the request or the connection failed).
 */
#include <orchestra.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static int done = 0, exit_code = 2;
static const char *command;

static void finish(int code) {
    pthread_mutex_lock(&lock);
    if (!done) {
        done = 1;
        exit_code = code;
        pthread_cond_signal(&done_cond);
    }
    pthread_mutex_unlock(&lock);
}

/* Appends `s` to `out` as a JSON string (quotes and escapes). */
static size_t json_quote(char *out, const char *s) {
    size_t n = 0;
    out[n++] = '"';
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { out[n++] = '\\'; out[n++] = (char)c; }
        else if (c < 0x20) n += (size_t)sprintf(out + n, "\\u%04x", c);
        else out[n++] = (char)c;
    }
    out[n++] = '"';
    out[n] = 0;
    return n;
}

static void on_open(void *user_data, orc_conn_t *conn) {
    (void)user_data;
    char *payload = malloc(strlen(command) * 6 + 64);
    size_t n = (size_t)sprintf(payload, "{\"type\":\"shell\",\"parameters\":{\"command\":");
    n += json_quote(payload + n, command);
    n += (size_t)sprintf(payload + n, "}}");
    orc_msg_t *m = NULL;
    char buf[65536];
    size_t len = 0;
    if (orc_msg_new("task.submit", 11, &m) != ORC_OK || orc_msg_set_payload(m, ORC_CONTENT_JSON, payload, n) != ORC_OK ||
        orc_msg_encode(m, ORC_FORMAT_JSON, buf, sizeof buf, &len) != ORC_OK ||
        orc_conn_send(conn, ORC_WS_TEXT, (const uint8_t *)buf, len) < 0) {
        fprintf(stderr, "submit: %s\n", orc_last_error());
        finish(2);
    }
    orc_msg_release(m);
    free(payload);
}

static int is(const char *type, size_t len, const char *want) {
    return len == strlen(want) && memcmp(type, want, len) == 0;
}

static void on_message(void *user_data, orc_conn_t *conn, int opcode, const uint8_t *data, size_t len) {
    (void)user_data; (void)conn; (void)opcode;
    orc_msg_t *m = NULL;
    if (orc_msg_decode(ORC_FORMAT_JSON, data, len, NULL, &m) != ORC_OK) {
        fprintf(stderr, "submit: bad message from the hub: %s\n", orc_last_error());
        return;
    }
    size_t tlen = 0;   /* the type is ptr + len (not NUL-terminated) */
    const char *type = orc_msg_type(m, &tlen);
    const void *p = NULL;
    size_t plen = 0;
    orc_msg_payload(m, &p, &plen, NULL);
    char *text = NULL;
    int64_t code = 0;
    if (is(type, tlen, "task.submitted")) {
        if (orc_json_get_string(p, plen, "taskId", &text, NULL) == ORC_OK) fprintf(stderr, "submit: task %s\n", text);
    } else if (is(type, tlen, "task.stream")) {
        if (orc_json_get_string(p, plen, "data", &text, NULL) == ORC_OK) {
            fputs(text, stdout);
            fflush(stdout);
        }
    } else if (is(type, tlen, "task.result")) {
        if (orc_json_get_int(p, plen, "result.exitCode", &code) == ORC_OK) {
            finish((int)code);
        } else {
            if (orc_json_get_string(p, plen, "error", &text, NULL) == ORC_OK) fprintf(stderr, "submit: failed: %s\n", text);
            finish(1);
        }
    } else if (is(type, tlen, "error")) {
        if (orc_json_get_string(p, plen, "message", &text, NULL) == ORC_OK) fprintf(stderr, "submit: refused: %s\n", text);
        finish(2);
    }
    orc_buf_free(text);
    orc_msg_release(m);
}

static void on_state(void *user_data, orc_client_t *client, orc_client_state_t state, const char *reason) {
    (void)user_data; (void)client;
    if (state != ORC_CLIENT_CLOSED) return;
    if (*reason) fprintf(stderr, "submit: %s\n", reason);
    finish(2);
}

int main(int argc, char **argv) {
    const char *base = getenv("ORC_HUB_URL"), *token = getenv("ORC_HUB_TOKEN");
    if (argc != 2 || !token) {
        fprintf(stderr, "usage: ORC_HUB_TOKEN=<jwt> submit COMMAND   (ORC_HUB_URL: ws://127.0.0.1:7420)\n");
        return 2;
    }
    command = argv[1];
    char url[8192];
    snprintf(url, sizeof url, "%s/web?token=%s", base ? base : "ws://127.0.0.1:7420", token);

    orc_runtime_t *rt = NULL;
    if (orc_runtime_new(NULL, &rt) != ORC_OK) {
        fprintf(stderr, "submit: %s\n", orc_last_error());
        return 2;
    }
    orc_client_options_t opts;
    orc_client_options_init(&opts);
    opts.callbacks.on_open = on_open;
    opts.callbacks.on_message = on_message;
    opts.on_state = on_state;
    orc_client_t *client = NULL;
    if (orc_client_new(rt, url, &opts, &client) != ORC_OK || orc_client_connect(client) != ORC_OK) {
        fprintf(stderr, "submit: %s\n", orc_last_error());
        orc_client_free(client);
        orc_runtime_free(rt);
        return 2;
    }
    pthread_mutex_lock(&lock);
    while (!done) pthread_cond_wait(&done_cond, &lock);
    int code = exit_code;
    pthread_mutex_unlock(&lock);
    orc_client_close(client, 1000, "done");
    orc_client_free(client);
    orc_runtime_free(rt);
    return code;
}
