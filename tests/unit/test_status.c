/* gateway/status.c: a device's last values as the status page shows them (value, unit,
 * quality, reason, age) survive their compact form, a unit change makes a new entry,
 * at most 16 metrics are kept, and the block for 16 metrics stays within its budget
 * (docs/design.md "Measured", Memory: 10,000 devices). */
#include "base/log.h"
#include "base/model.h"
#include "gateway/device.h"
#include "gateway/status.h"
#include "gateway/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <cmocka.h>

typedef struct env {
    char dir[64];
    uv_loop_t loop;
    gw_store *s;
    gw_core_stats counts;
    int stopping;
    gw_status *st;
    gw_device dev;
    gw_device *devs[1];
} env;

static gw_device *const *devices(void *ctx, size_t *n)
{
    env *e = ctx;
    *n = 1;
    return e->devs;
}

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    snprintf(e->dir, sizeof e->dir, "/tmp/gw-status-XXXXXX");
    if (!mkdtemp(e->dir) || uv_loop_init(&e->loop))
        return -1;
    gw_store_config cfg = {.max_bytes = 1 << 20, .commit_window = 5, .queue_max = 100};
    snprintf(cfg.path, sizeof cfg.path, "%s/outbox.db", e->dir);
    char err[256];
    e->s = gw_store_open(&e->loop, &cfg, NULL, NULL, err, sizeof err);
    if (!e->s)
        return -1;
    e->dev.conf.id = "dev-1";
    e->dev.conf.protocol = "modbus-tcp";
    e->dev.conf.about = &gw_device_about_none;
    e->dev.online = -1;
    e->devs[0] = &e->dev;
    gw_status_env se = {.loop = &e->loop,
                        .counts = &e->counts,
                        .stopping = &e->stopping,
                        .store = e->s,
                        .ctx = e,
                        .devices = devices};
    e->st = gw_status_start(&se);
    *state = e;
    return e->st ? 0 : -1;
}

static int teardown(void **state)
{
    env *e = *state;
    gw_status_device_free(&e->dev);
    gw_status_stop(e->st);
    gw_store_close(e->s);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&e->loop);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", e->dir);
    if (system(cmd) != 0)
        rc = -1;
    free(e);
    return rc ? -1 : 0;
}

static void note(env *e, const char *metric, const char *unit, double v, int q, int r, int64_t at)
{
    gw_reading rd = {.value = v, .quality = (uint8_t)q, .reason = (uint8_t)r, .recv_ms = at};
    snprintf(rd.metric, sizeof rd.metric, "%s", metric);
    snprintf(rd.unit, sizeof rd.unit, "%s", unit);
    gw_status_note_reading(&e->dev, &rd);
}

/* The device's JSON (admin `device`, /api/v1/devices/ID) into out. */
static void device_json(env *e, char *out, size_t cap)
{
    gw_sbuf b = {0};
    assert_int_equal(gw_status_device_json(e->st, "dev-1", &b), GW_OK);
    assert_false(b.oom);
    snprintf(out, cap, "%s", b.p);
    gw_sbuf_free(&b);
}

/* The age_s the page shows for metric (the first entry of it). */
static double age_of(const char *json, const char *metric)
{
    char key[64];
    snprintf(key, sizeof key, "{\"metric\":\"%s\"", metric);
    const char *p = strstr(json, key);
    assert_non_null(p);
    p = strstr(p, "\"age_s\":");
    assert_non_null(p);
    return strtod(p + 8, NULL);
}

static void test_values_shown_as_noted(void **state)
{
    env *e = *state;
    int64_t now = gw_now_ms();
    note(e, "level", "m", 1.2345678901, GW_Q_GOOD, GW_R_NONE, now - 5000123);
    note(e, "flow", "m3/h", -0.5, GW_Q_BAD, GW_R_DEVICE_FLAG, now + 3600000);
    note(e, "temp", "C", 21.5, GW_Q_UNCERTAIN, GW_R_OUT_OF_RANGE, now - 90061001);
    char js[4096];
    device_json(e, js, sizeof js);
    assert_non_null(strstr(js, "{\"metric\":\"level\",\"value\":1.23456789,\"unit\":\"m\","
                               "\"quality\":\"good\",\"reason\":\"none\",\"age_s\":"));
    assert_non_null(strstr(js, "{\"metric\":\"flow\",\"value\":-0.5,\"unit\":\"m3/h\","
                               "\"quality\":\"bad\",\"reason\":\"device_flag\",\"age_s\":0.0}"));
    assert_non_null(strstr(js, "{\"metric\":\"temp\",\"value\":21.5,\"unit\":\"C\","
                               "\"quality\":\"uncertain\",\"reason\":\"out_of_range\""));
    /* Ages to the millisecond behind them (the clock moves on while the test runs). */
    double a = age_of(js, "level"), t = age_of(js, "temp");
    assert_true(a >= 5000.1 && a < 5001.0);
    assert_true(t >= 90061.0 && t < 90062.0);

    /* A newer value replaces the entry in place; the order of first appearance holds. */
    note(e, "level", "m", 2.0, GW_Q_GOOD, GW_R_NONE, now);
    device_json(e, js, sizeof js);
    assert_non_null(strstr(js, "\"values\":[{\"metric\":\"level\",\"value\":2,"));
    assert_true(age_of(js, "level") < 60.0);
    const char *unit;
    assert_string_equal(gw_status_metric_at(&e->dev, 1, &unit), "flow");
    assert_string_equal(unit, "m3/h");
    assert_null(gw_status_metric_at(&e->dev, 3, NULL));
}

static void test_unit_change_and_bound(void **state)
{
    env *e = *state;
    int64_t now = gw_now_ms();
    note(e, "level", "m", 1, GW_Q_GOOD, GW_R_NONE, now);
    note(e, "level", "cm", 100, GW_Q_GOOD, GW_R_NONE, now);
    const char *unit;
    assert_string_equal(gw_status_metric_at(&e->dev, 0, &unit), "level");
    assert_string_equal(unit, "cm");
    assert_null(gw_status_metric_at(&e->dev, 1, NULL));
    for (int i = 0; i < 20; i++) {
        char m[16];
        snprintf(m, sizeof m, "r%d", i);
        note(e, m, "m", i, GW_Q_GOOD, GW_R_NONE, now);
    }
    assert_string_equal(gw_status_metric_at(&e->dev, 15, NULL), "r14");
    assert_null(gw_status_metric_at(&e->dev, 16, NULL));
}

/* 16 metrics of a device cost 16 bytes each and a small header: a 10,000-device gateway
 * keeps 2.6 MiB of last values, not 3.9 (the 24-byte entries before). */
static void test_sixteen_values_fit_budget(void **state)
{
    env *e = *state;
    int64_t now = gw_now_ms();
    for (int i = 0; i < 16; i++) {
        char m[16];
        snprintf(m, sizeof m, "r%d", i);
        note(e, m, "m", i, GW_Q_GOOD, GW_R_NONE, now);
    }
    assert_non_null(gw_status_metric_at(&e->dev, 15, NULL));
#ifdef __GLIBC__
    /* The chunk glibc hands out may round up by up to a minimum chunk (a realloc
     * keeps a remainder too small to split): under what 24-byte entries need. */
    assert_true(malloc_usable_size(e->dev.last) < 16 * 24);
#else
    skip();
#endif
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_values_shown_as_noted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unit_change_and_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sixteen_values_fit_budget, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
