/* C ABI tests of the metrics registry: counters, gauges, histograms, queue collectors,
 * unregistering queues and routers, help texts, Prometheus and JSON rendering, invalid names and NULL
 * arguments. */
#include <stdlib.h>
#include "orc_test.h"

/* Renders `m` in `format` into a NUL-terminated malloc'd string (caller frees with free()). */
static char *render(orc_metrics_t *m, orc_metrics_format_t format) {
    void *buf = NULL;
    size_t len = 0;
    CHECK_OK(orc_metrics_render(m, format, &buf, &len));
    char *s = malloc(len + 1);
    if (!s) return NULL;
    if (buf) memcpy(s, buf, len);
    s[len] = 0;
    orc_buf_free(buf);
    return s;
}

static int contains(const char *hay, const char *needle) {
    return hay && strstr(hay, needle) != NULL;
}

int main(void) {
    orc_metrics_t *m = NULL;
    CHECK_RC(orc_metrics_new(NULL), ORC_EINVAL);
    CHECK_OK(orc_metrics_new(&m));

    CHECK_OK(orc_metrics_counter_add(m, "jobs_total", 10, 2));
    CHECK_OK(orc_metrics_counter_add(m, "jobs_total", 10, 3));
    CHECK_OK(orc_metrics_gauge_set(m, "temperature", 11, 21.5));
    for (uint64_t v = 1; v <= 100; v++) CHECK_OK(orc_metrics_histogram_record(m, "latency_ns", 10, v * 1000));

    /* invalid names and kind clashes */
    CHECK_RC(orc_metrics_counter_add(m, "9lives", 6, 1), ORC_EINVAL);
    CHECK(contains(orc_last_error(), "invalid metric name"));
    CHECK_RC(orc_metrics_counter_add(m, "a-b", 3, 1), ORC_EINVAL);
    CHECK_RC(orc_metrics_counter_add(m, "", 0, 1), ORC_EINVAL);
    CHECK_RC(orc_metrics_counter_add(m, NULL, 4, 1), ORC_EINVAL);
    CHECK_RC(orc_metrics_gauge_set(m, "jobs_total", 10, 1.0), ORC_EINVAL);
    CHECK(contains(orc_last_error(), "already registered"));
    CHECK_RC(orc_metrics_histogram_record(NULL, "x", 1, 1), ORC_EINVAL);

    /* a queue collector */
    orc_queue_t *q = NULL;
    CHECK_OK(orc_queue_new(NULL, &q));
    CHECK_OK(orc_metrics_register_queue(m, q, "inbox", 5));
    CHECK_RC(orc_metrics_register_queue(m, q, "\xff", 1), ORC_EINVAL);
    CHECK_RC(orc_metrics_register_queue(m, NULL, "x", 1), ORC_EINVAL);
    orc_queue_close(q);

    char *prom = render(m, ORC_METRICS_PROMETHEUS);
    CHECK(contains(prom, "# TYPE jobs_total counter\njobs_total 5\n"));
    CHECK(contains(prom, "# TYPE temperature gauge\ntemperature 21.5\n"));
    CHECK(contains(prom, "# TYPE latency_ns summary\n"));
    CHECK(contains(prom, "latency_ns{quantile=\"0.99\"} "));
    CHECK(contains(prom, "latency_ns_sum 5050000\nlatency_ns_count 100\n"));
    CHECK(contains(prom, "latency_ns_max 100000\n"));
    CHECK(contains(prom, "orchestra_queue_pushed_total{queue=\"inbox\"} 0\n"));
    CHECK(contains(prom, "orchestra_queue_depth{queue=\"inbox\"} 0\n"));
    free(prom);

    char *json = render(m, ORC_METRICS_JSON);
    CHECK(contains(json, "\"jobs_total\":5"));
    CHECK(contains(json, "\"latency_ns\":{\"count\":100,\"sum\":5050000,"));
    CHECK(contains(json, "\"orchestra_queue_pushed_total{queue=\\\"inbox\\\"}\":0"));
    CHECK(json && json[0] == '{' && json[strlen(json) - 1] == '}');
    free(json);

    /* help texts: none means no # HELP line; orc_metrics_set_help gives one, before or after
     * the metric exists, escaped; empty, non-UTF-8 or oversized help is refused */
    prom = render(m, ORC_METRICS_PROMETHEUS);
    CHECK(contains(prom, "# TYPE jobs_total counter\n"));
    CHECK(!contains(prom, "# HELP jobs_total"));
    CHECK(!contains(prom, "# HELP temperature"));
    free(prom);
    CHECK_OK(orc_metrics_set_help(m, "jobs_total", 10, "Jobs run\nso far", 15));
    CHECK_OK(orc_metrics_set_help(m, "later_total", 11, "Made after its help", 19));
    CHECK_OK(orc_metrics_counter_add(m, "later_total", 11, 1));
    CHECK_OK(orc_metrics_set_help(m, "orchestra_queue_depth", 21, "Depth now", 9));
    prom = render(m, ORC_METRICS_PROMETHEUS);
    CHECK(contains(prom, "# HELP jobs_total Jobs run\\nso far\n# TYPE jobs_total counter\n"));
    CHECK(contains(prom, "# HELP later_total Made after its help\n# TYPE later_total counter\nlater_total 1\n"));
    CHECK(contains(prom, "# HELP orchestra_queue_depth Depth now\n"));
    free(prom);
    CHECK_RC(orc_metrics_set_help(m, "jobs_total", 10, "", 0), ORC_EINVAL);
    CHECK(contains(orc_last_error(), "help for metric \"jobs_total\" is empty"));
    CHECK_RC(orc_metrics_set_help(m, "jobs_total", 10, NULL, 0), ORC_EINVAL);
    CHECK_RC(orc_metrics_set_help(m, "jobs_total", 10, NULL, 3), ORC_EINVAL);
    CHECK_RC(orc_metrics_set_help(m, "jobs_total", 10, "\xff", 1), ORC_EINVAL);
    CHECK_RC(orc_metrics_set_help(m, "bad name", 8, "x", 1), ORC_EINVAL);
    CHECK_RC(orc_metrics_set_help(NULL, "x", 1, "x", 1), ORC_EINVAL);
    {
        char big[4097];
        memset(big, 'h', sizeof big);
        CHECK_RC(orc_metrics_set_help(m, "jobs_total", 10, big, sizeof big), ORC_ETOOBIG);
        CHECK_OK(orc_metrics_set_help(m, "jobs_total", 10, big, sizeof big - 1));
    }

    /* unregistering: a live queue and router stop reporting, and can be registered again */
    orc_router_t *r = NULL;
    CHECK_OK(orc_router_new(&r));
    CHECK_OK(orc_metrics_register_router(m, r, "main", 4));
    prom = render(m, ORC_METRICS_PROMETHEUS);
    CHECK(contains(prom, "orchestra_router_published_total{router=\"main\"} 0\n"));
    free(prom);
    CHECK_OK(orc_metrics_unregister_router(m, r));
    CHECK_RC(orc_metrics_unregister_router(m, r), ORC_ENOTFOUND);
    CHECK(contains(orc_last_error(), "not registered"));
    CHECK_OK(orc_metrics_unregister_queue(m, q));
    CHECK_RC(orc_metrics_unregister_queue(m, q), ORC_ENOTFOUND);
    CHECK_RC(orc_metrics_unregister_queue(NULL, q), ORC_EINVAL);
    CHECK_RC(orc_metrics_unregister_queue(m, NULL), ORC_EINVAL);
    CHECK_RC(orc_metrics_unregister_router(m, NULL), ORC_EINVAL);
    prom = render(m, ORC_METRICS_PROMETHEUS);
    CHECK(!contains(prom, "orchestra_queue_"));
    CHECK(!contains(prom, "orchestra_router_"));
    CHECK(contains(prom, "jobs_total 5\n"));             /* the registry's own metrics stay */
    free(prom);
    CHECK_OK(orc_metrics_register_queue(m, q, "inbox", 5));
    prom = render(m, ORC_METRICS_PROMETHEUS);
    CHECK(contains(prom, "orchestra_queue_depth{queue=\"inbox\"} 0\n"));
    free(prom);
    /* another registry's registrations are separate */
    orc_metrics_t *other = NULL;
    CHECK_OK(orc_metrics_new(&other));
    CHECK_RC(orc_metrics_unregister_queue(other, q), ORC_ENOTFOUND);
    orc_metrics_free(other);
    orc_router_free(r);

    /* a freed queue stops reporting */
    orc_queue_free(q);
    prom = render(m, ORC_METRICS_PROMETHEUS);
    CHECK(!contains(prom, "orchestra_queue_"));
    free(prom);

    void *buf = NULL;
    size_t len = 0;
    CHECK_RC(orc_metrics_render(m, (orc_metrics_format_t)9, &buf, &len), ORC_EINVAL);
    CHECK_RC(orc_metrics_render(m, ORC_METRICS_JSON, NULL, &len), ORC_EINVAL);
    CHECK_RC(orc_metrics_render(m, ORC_METRICS_JSON, &buf, NULL), ORC_EINVAL);
    CHECK_RC(orc_metrics_render(NULL, ORC_METRICS_JSON, &buf, &len), ORC_EINVAL);

    orc_metrics_free(m);
    orc_metrics_free(NULL);
    return orc_test_finish("test_metrics");
}
