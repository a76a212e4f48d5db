/* The simulator's MC-200 encoder (sim/enc_cover.c) against the frame printed
 * in docs/adapters.md (written out here as hex, not produced by the gateway's
 * decoder), plus the wire rounding, saturation and "not measured" codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "sim/enc_cover.h"
#include "sim/kind.h"
#include "sim/peer.h"
#include "sim/rtu.h"
#include "sim/scenario.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* main.c's clock; the scenario parser links the device kinds that call it. */
double sim_now(const sim_ctx *ctx)
{
    return 0;
}

static sim_cover doc_frame(void)
{
    sim_cover f;
    memset(&f, 0, sizeof f);
    f.type = SIM_COVER_ALARM;
    memcpy(f.imei, "861234567890123", 16);
    f.seq = 7;
    f.time_s = 1760000000u;
    f.status = f.changed = SIM_COVER_OPEN;
    f.tilt_deg = 12.5;
    f.water_m = 0.85;
    f.battery_v = 3.6;
    f.rsrp_dbm = -95.5;
    f.snr_db = 12;
    return f;
}

static void test_documented_frame(void **st)
{
    static const uint8_t want[SIM_COVER_LEN] = {0x4D, 0x43, 0x01, 0x02, 0x86, 0x12, 0x34, 0x56,
                                                0x78, 0x90, 0x12, 0x3F, 0x00, 0x07, 0x68, 0xE7,
                                                0x78, 0x00, 0x01, 0x01, 0x00, 0x7D, 0x03, 0x52,
                                                0x0E, 0x10, 0xFC, 0x45, 0x0C, 0x9C, 0x8C};
    sim_cover f = doc_frame();
    uint8_t b[40];
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_COVER_LEN);
    assert_memory_equal(b, want, SIM_COVER_LEN);
    assert_int_equal(sim_crc16((const uint8_t *)"123456789", 9), 0x4B37);
}

static void test_units_and_limits(void **st)
{
    sim_cover f = doc_frame();
    uint8_t b[SIM_COVER_LEN];
    f.tilt_deg = 500; /* saturates at 180.0 deg */
    f.water_m = NAN;
    f.battery_v = NAN;
    f.rsrp_dbm = NAN;
    f.snr_db = NAN;
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_COVER_LEN);
    assert_int_equal(b[20] << 8 | b[21], 1800);
    assert_int_equal(b[22] << 8 | b[23], 0xFFFF);
    assert_int_equal(b[24] << 8 | b[25], 0xFFFF);
    assert_int_equal(b[26] << 8 | b[27], 0x8000);
    assert_int_equal(b[28], 0x7F);
    f = doc_frame();
    f.water_m = 100; /* one step short of "not measured" */
    f.snr_db = 300;
    f.rsrp_dbm = -140.04;
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_COVER_LEN);
    assert_int_equal(b[22] << 8 | b[23], 0xFFFE);
    assert_int_equal(b[28], 126);
    assert_int_equal((int16_t)(b[26] << 8 | b[27]), -1400);
    /* Refused: reserved bits, a bad type or IMEI, a short buffer. */
    f = doc_frame();
    f.changed = 0x10;
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_EINVAL);
    f = doc_frame();
    f.type = 4;
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_EINVAL);
    f = doc_frame();
    f.imei[3] = 'x';
    assert_int_equal(sim_cover_encode(&f, b, sizeof b), SIM_EINVAL);
    f = doc_frame();
    assert_int_equal(sim_cover_encode(&f, b, SIM_COVER_LEN - 1), SIM_EINVAL);
}

static sim_scenario *parse(const char *y, char *err)
{
    return sim_scenario_parse(y, strlen(y), "t.yaml", NULL, err, 256);
}

/* The coap-cover kind's keys: its own curves and thresholds, the shared CoAP
 * keys, and the refusals (a smoke detector's key or event). */
static void test_scenario_keys(void **st)
{
    char err[256] = "";
    const char *y = "name: s\n"
                    "devices:\n"
                    "  - id: mc-{n:02}\n"
                    "    count: 3\n"
                    "    protocol: coap-cover\n"
                    "    port: 5683\n"
                    "    imei: \"8691240000{n:05}\"\n"
                    "    open: {type: points, points: [[0, 0], [30, 0], [30, 1]]}\n"
                    "    water_level: 0.4\n"
                    "    tilt_alarm: 20\n"
                    "    events: [{at: 5s, device: 2, kind: battery_low}]\n";
    sim_scenario *s = parse(y, err);
    if (!s)
        fail_msg("%s", err);
    sim_peer *p = s->groups[0].peer;
    assert_int_equal(p->open.kind, SIM_C_POINTS);
    assert_int_equal(p->water.kind, SIM_C_CONSTANT);
    assert_true(p->tilt_alarm == 20 && p->overflow == 1.5 && p->sample == 1);
    assert_true(p->battery_v == 3.6);
    assert_int_equal(p->events[0].kind, SIM_EV_BATTERY_LOW);
    sim_scenario_free(s);
    static const char *const bad[][2] = {
        {"smoke: 0.1\n", "smoke: not a key of coap-cover"},
        {"events: [{at: 1s, kind: fire_alarm}]\n", "'fire_alarm' is not an event of coap-cover"},
        {"tilt_alarm: 0\n", "tilt_alarm: 0.1..180 deg"},
        {"imei: \"86{n}\"\n", "imei:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char text[512];
        snprintf(text, sizeof text,
                 "name: s\ndevices:\n  - id: d{n}\n    count: 2\n    port: 5683\n"
                 "    protocol: coap-cover\n    %s",
                 bad[i][0]);
        s = parse(text, err);
        if (s) {
            sim_scenario_free(s);
            fail_msg("parsed: %s", bad[i][0]);
        }
        if (!strstr(err, bad[i][1]))
            fail_msg("error '%s' does not contain '%s'", err, bad[i][1]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_documented_frame),
        cmocka_unit_test(test_units_and_limits),
        cmocka_unit_test(test_scenario_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
