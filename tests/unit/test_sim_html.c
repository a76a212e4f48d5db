/* The --html page's pieces that are pure (sim/report_html.c): the delivery
 * latency taken from an item's `recv` (readings, events) or `at` (alarm
 * transitions) against the arrival, binned; thresholds from alarm transitions,
 * kept once; malformed payloads and items without a time skipped; and a page
 * written from a small timeline, escaped and self-contained. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sim/kind.h"
#include "sim/report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* main.c's clock; the report links the device kinds that call it. */
double sim_now(const sim_ctx *ctx)
{
    return 0;
}

static void test_latency_and_thresholds(void **st)
{
    sim_html_extra x;
    memset(&x, 0, sizeof x);
    /* 2026-11-23T15:40:00.000Z is 1795448400. */
    const double at = 1795448400.0;
    sim_html_note(&x, "readings",
                  "{\"items\":[{\"recv\":\"2026-11-23T15:40:00.000Z\"},"
                  "{\"recv\":\"2026-11-23T15:39:59.700Z\"},{\"value\":1}]}",
                  at + 0.004);
    assert_int_equal(x.lat_n, 2);
    assert_true(fabs(x.lat_min - 0.004) < 1e-6);
    assert_true(fabs(x.lat_max - 0.304) < 1e-6);
    assert_int_equal(x.lat_bins[2], 1); /* 4 ms: [2, 5) ms */
    assert_int_equal(x.lat_bins[8], 1); /* 304 ms: [200, 500) ms */
    const char *alarm = "{\"items\":[{\"alarm\":\"a\",\"device\":\"wl-1\",\"metric\":\"depth\","
                        "\"level\":3,\"threshold\":25,\"at\":\"2026-11-23T15:40:00.000Z\"}]}";
    sim_html_note(&x, "alarms", alarm, at + 2);
    sim_html_note(&x, "alarms", alarm, at + 2);
    assert_int_equal(x.lat_n, 4);
    assert_int_equal(x.nthr, 1);
    assert_string_equal(x.thr[0].dev, "wl-1");
    assert_int_equal(x.thr[0].level, 3);
    assert_true(x.thr[0].value == 25);
    sim_html_note(&x, "readings", "{\"items\":[", at);
    sim_html_note(&x, "readings", "{\"items\":[{\"recv\":\"yesterday\"}]}", at);
    assert_int_equal(x.lat_n, 4);
}

static void test_page(void **st)
{
    sim_timeline *tl = sim_tl_new(1000);
    assert_non_null(tl);
    const char *rd = "{\"items\":[{\"seq\":1,\"device\":\"d<1>\",\"metric\":\"m\","
                     "\"value\":2,\"quality\":\"good\"}]}";
    assert_int_equal(sim_tl_message(tl, 5, "readings", rd, strlen(rd)), 1);
    tl->end_t = 10;
    sim_expect x;
    memset(&x, 0, sizeof x);
    snprintf(x.label, sizeof x.label, "online d<1>");
    sim_run_conf rc;
    memset(&rc, 0, sizeof rc);
    rc.nexpects = 1;
    rc.expects = &x;
    sim_verdict v;
    memset(&v, 0, sizeof v);
    v.status = SIM_V_FAIL;
    snprintf(v.evidence, sizeof v.evidence, "a & b");
    sim_run_summary sum;
    memset(&sum, 0, sizeof sum);
    sum.scenario = "t";
    char path[] = "/tmp/test_sim_html.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(sim_report_html(path, &rc, &v, tl, &sum, NULL), SIM_OK);
    FILE *f = fopen(path, "r");
    static char page[1 << 16];
    size_t n = fread(page, 1, sizeof page - 1, f);
    page[n] = 0;
    fclose(f);
    remove(path);
    assert_non_null(strstr(page, "id=\"verdict\">FAIL<"));
    assert_non_null(strstr(page, "online d&lt;1&gt;"));
    assert_non_null(strstr(page, "a &amp; b"));
    assert_non_null(strstr(page, "data-device=\"d&lt;1&gt;\""));
    assert_non_null(strstr(page, "no item carried a receive time"));
    assert_null(strstr(page, "http"));
    sim_tl_free(tl);
}

/* The progress line and the summary count alarm transitions of every level,
 * not only red and orange. */
static void test_alarm_counts(void **st)
{
    sim_timeline *tl = sim_tl_new(10);
    assert_non_null(tl);
    const char *al =
        "{\"items\":[{\"seq\":1,\"alarm\":\"a:d:1\",\"rule\":\"a\",\"device\":\"d\","
        "\"state\":\"raised\",\"level\":2},{\"seq\":2,\"alarm\":\"b:d:1\",\"rule\":"
        "\"b\",\"device\":\"d\",\"state\":\"raised\",\"level\":1},{\"seq\":3,\"alarm\":"
        "\"b:d:1\",\"rule\":\"b\",\"device\":\"d\",\"state\":\"cleared\",\"level\":0}]}";
    assert_int_equal(sim_tl_message(tl, 1, "alarms", al, strlen(al)), 3);
    char out[160];
    sim_report_alarm_counts(out, sizeof out, tl);
    assert_string_equal(out, "alarm transitions 3 (raised/updated: red 0, orange 0, yellow 1, "
                             "blue 1)");
    sim_tl_free(tl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_latency_and_thresholds),
        cmocka_unit_test(test_page),
        cmocka_unit_test(test_alarm_counts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
