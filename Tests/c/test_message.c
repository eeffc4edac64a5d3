/* C ABI tests for orc_msg_t (section MESSAGE of orchestra.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "orc_test.h"

#define S(lit) lit, (sizeof(lit) - 1)

static int eq(const char *p, size_t n, const char *lit) {
    return p != NULL && n == strlen(lit) && memcmp(p, lit, n) == 0;
}

/* Calls a field getter, then compares (argument evaluation order is unspecified in C). */
static int field_is(const char *(*get)(const orc_msg_t *, size_t *), const orc_msg_t *m, const char *lit) {
    size_t n = 0;
    const char *p = get(m, &n);
    return eq(p, n, lit);
}

static void test_new_and_refcount(void) {
    orc_msg_t *m = NULL;
    CHECK_OK(orc_msg_new(S("task.stream"), &m));
    CHECK(m != NULL);
    size_t n = 0;
    const char *id = orc_msg_id(m, &n);
    CHECK(id != NULL && n == 36 && id[14] == '4');
    CHECK(field_is(orc_msg_type, m, "task.stream"));
    CHECK(field_is(orc_msg_version, m, "1.0"));
    CHECK(orc_msg_source(m, &n) == NULL && n == 0);
    CHECK(orc_msg_id(m, NULL) == id);   /* len may be NULL */
    int64_t ts = 0;
    CHECK_OK(orc_msg_timestamp(m, &ts));
    CHECK(ts > 1600000000000LL);

    CHECK(orc_msg_retain(m) == m);
    orc_msg_release(m);             /* back to one reference */
    CHECK(field_is(orc_msg_type, m, "task.stream"));

    orc_msg_t *c = NULL;
    CHECK_OK(orc_msg_clone(m, &c));
    CHECK_OK(orc_msg_set_type(c, S("other")));
    CHECK(field_is(orc_msg_type, m, "task.stream"));   /* deep copy */
    CHECK(field_is(orc_msg_type, c, "other"));
    size_t n2 = 0;
    CHECK(memcmp(orc_msg_id(m, &n), orc_msg_id(c, &n2), 36) == 0);
    orc_msg_release(c);
    orc_msg_release(m);

    /* NULL handling */
    CHECK(orc_msg_retain(NULL) == NULL);
    orc_msg_release(NULL);
    CHECK_RC(orc_msg_new(S("t"), NULL), ORC_EINVAL);
    orc_msg_t *x = (orc_msg_t *)(uintptr_t)1;
    CHECK_RC(orc_msg_new("", 0, &x), ORC_EINVAL);
    CHECK(x == NULL);
    CHECK(strstr(orc_last_error(), "type is required") != NULL);
    CHECK_RC(orc_msg_new(NULL, 3, &x), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "NULL") != NULL);
    CHECK_RC(orc_msg_new("\xC3\x28", 2, &x), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "not valid UTF-8") != NULL);
    CHECK_RC(orc_msg_clone(NULL, &x), ORC_EINVAL);
    CHECK(orc_msg_id(NULL, &n) == NULL && n == 0);
}

static void test_fields(void) {
    orc_msg_t *m = NULL;
    CHECK_OK(orc_msg_new(S("a.b"), &m));
    CHECK_OK(orc_msg_set(m, ORC_FIELD_SOURCE, S("agent:1")));
    CHECK_OK(orc_msg_set_target(m, S("web:42")));
    CHECK_OK(orc_msg_set_correlation_id(m, S("c-9")));
    CHECK_OK(orc_msg_set_reply_to(m, S("inbox.7")));
    CHECK_OK(orc_msg_set_id(m, S("fixed-id")));
    CHECK_OK(orc_msg_set_version(m, "", 0));   /* empty, not absent */
    const char *p = NULL;
    size_t n = 0;
    CHECK_OK(orc_msg_get(m, ORC_FIELD_SOURCE, &p, &n));
    CHECK(eq(p, n, "agent:1"));
    CHECK_OK(orc_msg_get(m, ORC_FIELD_ID, &p, &n));
    CHECK(eq(p, n, "fixed-id"));
    CHECK_OK(orc_msg_get(m, ORC_FIELD_VERSION, &p, &n));
    CHECK(p != NULL && n == 0);
    CHECK(field_is(orc_msg_correlation_id, m, "c-9"));
    CHECK(field_is(orc_msg_reply_to, m, "inbox.7"));
    CHECK(field_is(orc_msg_target, m, "web:42"));

    /* clearing */
    CHECK_OK(orc_msg_set(m, ORC_FIELD_TARGET, NULL, 0));
    CHECK_RC(orc_msg_get(m, ORC_FIELD_TARGET, &p, &n), ORC_ENOTFOUND);
    CHECK(p == NULL && n == 0);
    CHECK(orc_msg_target(m, &n) == NULL);
    CHECK_RC(orc_msg_set(m, ORC_FIELD_ID, NULL, 0), ORC_EINVAL);
    CHECK_RC(orc_msg_set_type(m, "", 0), ORC_EINVAL);
    CHECK_RC(orc_msg_set(m, (orc_field_t)99, S("x")), ORC_EINVAL);
    CHECK(strstr(orc_last_error(), "unknown field 99") != NULL);
    CHECK_RC(orc_msg_get(m, (orc_field_t)7, &p, &n), ORC_EINVAL);
    CHECK_RC(orc_msg_set_source(m, "\xFF", 1), ORC_EINVAL);
    CHECK_RC(orc_msg_set_source(m, NULL, 5), ORC_EINVAL);
    CHECK_RC(orc_msg_get(m, ORC_FIELD_ID, NULL, &n), ORC_EINVAL);
    CHECK_RC(orc_msg_get(NULL, ORC_FIELD_ID, &p, &n), ORC_EINVAL);
    CHECK_RC(orc_msg_set(NULL, ORC_FIELD_ID, S("x")), ORC_EINVAL);
    char *big = malloc(70000);
    if (big) {
        memset(big, 'a', 70000);
        CHECK_RC(orc_msg_set_source(m, big, 70000), ORC_ETOOBIG);
        free(big);
    }

    /* numbers */
    int64_t v = 0;
    CHECK_OK(orc_msg_set_timestamp(m, -5));
    CHECK_OK(orc_msg_timestamp(m, &v));
    CHECK(v == -5);
    CHECK_RC(orc_msg_ttl(m, &v), ORC_ENOTFOUND);
    CHECK_OK(orc_msg_set_ttl(m, 1500));
    CHECK_OK(orc_msg_ttl(m, &v));
    CHECK(v == 1500);
    CHECK_OK(orc_msg_set_ttl(m, -1));
    CHECK_RC(orc_msg_ttl(m, &v), ORC_ENOTFOUND);
    CHECK_RC(orc_msg_ttl(m, NULL), ORC_EINVAL);
    CHECK_RC(orc_msg_timestamp(NULL, &v), ORC_EINVAL);
    CHECK(orc_msg_priority(m) == ORC_PRIORITY_NORMAL);
    CHECK_OK(orc_msg_set_priority(m, ORC_PRIORITY_CRITICAL));
    CHECK(orc_msg_priority(m) == ORC_PRIORITY_CRITICAL);
    CHECK_RC(orc_msg_set_priority(m, 4), ORC_EINVAL);
    CHECK_RC(orc_msg_set_priority(m, -1), ORC_EINVAL);
    CHECK(orc_msg_priority(NULL) == ORC_EINVAL);
    orc_msg_release(m);
}

static void test_headers(void) {
    orc_msg_t *m = NULL;
    CHECK_OK(orc_msg_new(S("a.b"), &m));
    CHECK(orc_msg_header_count(m) == 0);
    CHECK_OK(orc_msg_header_set(m, S("traceId"), S("abc")));
    CHECK_OK(orc_msg_header_set_json(m, S("attempt"), S("[1, {\"x\": null}]")));
    CHECK_OK(orc_msg_header_set(m, S("traceId"), S("def")));   /* replaces in place */
    CHECK(orc_msg_header_count(m) == 2);
    const char *v = NULL;
    size_t n = 0;
    int is_json = -1;
    CHECK_OK(orc_msg_header_get(m, S("traceId"), &v, &n, &is_json));
    CHECK(eq(v, n, "def") && is_json == 0);
    CHECK_OK(orc_msg_header_get(m, S("attempt"), &v, &n, NULL));
    CHECK(eq(v, n, "[1, {\"x\": null}]"));
    const char *k = NULL;
    size_t kn = 0;
    CHECK_OK(orc_msg_header_at(m, 1, &k, &kn, &v, &n, &is_json));
    CHECK(eq(k, kn, "attempt") && is_json == 1);
    CHECK_OK(orc_msg_header_at(m, 0, &k, NULL, NULL, NULL, NULL));
    CHECK(k != NULL && memcmp(k, "traceId", 7) == 0);
    CHECK_RC(orc_msg_header_at(m, 2, &k, &kn, &v, &n, &is_json), ORC_ENOTFOUND);
    CHECK_RC(orc_msg_header_at(m, (size_t)-1, &k, &kn, &v, &n, &is_json), ORC_ENOTFOUND);
    CHECK_RC(orc_msg_header_at(m, 0, NULL, &kn, &v, &n, &is_json), ORC_EINVAL);
    CHECK_RC(orc_msg_header_get(m, S("missing"), &v, &n, &is_json), ORC_ENOTFOUND);
    CHECK(v == NULL && n == 0);
    CHECK_RC(orc_msg_header_set_json(m, S("bad"), S("{\"a\" 1}")), ORC_EPARSE);
    CHECK(strcmp(orc_last_error(), "invalid JSON at byte 5: expected ':' after object key") == 0);
    CHECK_RC(orc_msg_header_set(m, S("k"), "\xC0\x80", 2), ORC_EINVAL);
    CHECK_RC(orc_msg_header_set(m, NULL, 2, S("v")), ORC_EINVAL);
    CHECK_RC(orc_msg_header_get(m, S("traceId"), NULL, &n, NULL), ORC_EINVAL);
    CHECK_OK(orc_msg_header_remove(m, S("traceId")));
    CHECK_RC(orc_msg_header_remove(m, S("traceId")), ORC_ENOTFOUND);
    CHECK(orc_msg_header_count(m) == 1);
    CHECK(orc_msg_header_count(NULL) == 0);
    CHECK_RC(orc_msg_header_remove(NULL, S("x")), ORC_EINVAL);
    orc_msg_release(m);
}

static void test_payload(void) {
    orc_msg_t *m = NULL;
    CHECK_OK(orc_msg_new(S("a.b"), &m));
    const void *d = NULL;
    size_t n = 0;
    orc_content_type_t ct = ORC_CONTENT_BINARY;
    CHECK_RC(orc_msg_payload(m, &d, &n, &ct), ORC_ENOTFOUND);
    CHECK_OK(orc_msg_set_payload(m, ORC_CONTENT_JSON, S("{\"answer\": 42}")));
    CHECK_OK(orc_msg_payload(m, &d, &n, &ct));
    CHECK(ct == ORC_CONTENT_JSON && n == 14 && memcmp(d, "{\"answer\": 42}", 14) == 0);
    CHECK_RC(orc_msg_set_payload(m, ORC_CONTENT_JSON, S("{\"answer\": 042}")), ORC_EPARSE);
    CHECK(strstr(orc_last_error(), "leading zeros") != NULL);
    CHECK_RC(orc_msg_set_payload(m, ORC_CONTENT_JSON, "", 0), ORC_EPARSE);
    CHECK_RC(orc_msg_set_payload(m, ORC_CONTENT_TEXT, "\xED\xA0\x80", 3), ORC_EINVAL);
    CHECK_RC(orc_msg_set_payload(m, (orc_content_type_t)3, "x", 1), ORC_EINVAL);
    CHECK_RC(orc_msg_set_payload(m, ORC_CONTENT_BINARY, NULL, 4), ORC_EINVAL);
    CHECK_OK(orc_msg_set_payload(m, ORC_CONTENT_TEXT, S("héllo")));
    CHECK_OK(orc_msg_payload(m, &d, &n, NULL));
    CHECK(n == 6);
    static const unsigned char bin[] = {0, 1, 2, 0xFF};
    CHECK_OK(orc_msg_set_payload(m, ORC_CONTENT_BINARY, bin, sizeof bin));
    CHECK_OK(orc_msg_payload(m, &d, &n, &ct));
    CHECK(ct == ORC_CONTENT_BINARY && n == 4 && memcmp(d, bin, 4) == 0);
    CHECK_OK(orc_msg_set_payload(m, ORC_CONTENT_BINARY, NULL, 0));
    CHECK_OK(orc_msg_payload(m, &d, &n, &ct));
    CHECK(d != NULL && n == 0);
    CHECK(orc_msg_is_compressed(m) == 0 && orc_msg_is_encrypted(m) == 0);
    CHECK(orc_msg_is_compressed(NULL) == 0 && orc_msg_is_encrypted(NULL) == 0);
    CHECK_OK(orc_msg_clear_payload(m));
    CHECK_RC(orc_msg_payload(m, &d, &n, &ct), ORC_ENOTFOUND);
    CHECK_RC(orc_msg_payload(m, NULL, &n, &ct), ORC_EINVAL);
    CHECK_RC(orc_msg_clear_payload(NULL), ORC_EINVAL);
    orc_msg_release(m);
}

/* A decoded message keeps its text in one block: pointers handed out for one field or for the
 * headers stay valid (same address, same bytes) while other fields change, as documented.
 * Under ASan a pointer into freed storage would be reported. */
static void test_pointers_survive_other_changes(void) {
    static const char env[] = "{\"id\":\"id-1\",\"type\":\"a.b\",\"source\":\"src\",\"target\":\"tgt\","
                              "\"headers\":{\"traceId\":\"abc\",\"n\":[1, 2]},\"payload\":{\"x\":1}}";
    orc_msg_t *m = NULL;
    CHECK_OK(orc_msg_decode(ORC_FORMAT_JSON, env, sizeof env - 1, NULL, &m));
    size_t id_len = 0, src_len = 0, kn = 0, vn = 0, n = 0;
    const char *id = orc_msg_id(m, &id_len);
    const char *src = orc_msg_source(m, &src_len);
    const char *k = NULL, *v = NULL;
    int is_json = -1;
    CHECK_OK(orc_msg_header_at(m, 1, &k, &kn, &v, &vn, &is_json));
    CHECK(eq(k, kn, "n") && eq(v, vn, "[1, 2]") && is_json == 1);
    /* Change other text fields: id, source and the headers stay where they were. */
    CHECK_OK(orc_msg_set_type(m, S("c.d.e")));
    CHECK_OK(orc_msg_set_target(m, NULL, 0));
    CHECK_OK(orc_msg_set(m, ORC_FIELD_REPLY_TO, S("reply")));
    CHECK(orc_msg_id(m, &n) == id && eq(id, id_len, "id-1"));
    CHECK(orc_msg_source(m, &n) == src && eq(src, src_len, "src"));
    CHECK(eq(k, kn, "n") && eq(v, vn, "[1, 2]"));
    const char *t = orc_msg_type(m, &n);
    CHECK(eq(t, n, "c.d.e"));
    CHECK(orc_msg_target(m, &n) == NULL && n == 0);
    /* Change the headers: the text fields stay where they were. */
    CHECK_OK(orc_msg_header_set(m, S("traceId"), S("def")));
    CHECK_OK(orc_msg_header_get(m, S("traceId"), &v, &vn, &is_json));
    CHECK(eq(v, vn, "def") && is_json == 0);
    CHECK_OK(orc_msg_header_get(m, S("n"), &v, &vn, &is_json));
    CHECK(eq(v, vn, "[1, 2]") && is_json == 1);
    CHECK(orc_msg_id(m, &n) == id && eq(id, id_len, "id-1") && orc_msg_type(m, &n) == t);
    /* A clone shares nothing the original can change. */
    orc_msg_t *c = NULL;
    CHECK_OK(orc_msg_clone(m, &c));
    CHECK_OK(orc_msg_set_id(c, S("id-2")));
    orc_msg_release(c);
    const char *id_again = orc_msg_id(m, &n);
    CHECK(eq(id_again, n, "id-1") && eq(id, id_len, "id-1"));
    char buf[512];
    size_t len = 0;
    CHECK_OK(orc_msg_encode(m, ORC_FORMAT_JSON, buf, sizeof buf, &len));
    static const char want[] = "{\"id\":\"id-1\",\"type\":\"c.d.e\",\"source\":\"src\",\"replyTo\":\"reply\","
                               "\"headers\":{\"traceId\":\"def\",\"n\":[1, 2]},\"payload\":{\"x\":1}}";
    CHECK(len == sizeof want - 1 && memcmp(buf, want, len) == 0);
    orc_msg_release(m);
}

int main(void) {
    test_new_and_refcount();
    test_fields();
    test_headers();
    test_payload();
    test_pointers_survive_other_changes();
    return orc_test_finish("test_message");
}
