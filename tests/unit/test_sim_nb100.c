/* Unit tests of the simulator's peer-kind pieces: the NB-100 frame encoder
 * (layout, BCD IMEI, CRC-16/CCITT-FALSE, event bits, saturation), the gauge
 * JSON payload builder, templates, and the scenario keys of coap-smoke and
 * mqtt-gauge groups. Unit tests link libgw.a only, so the sim sources are
 * included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "sim/curve.c"
#include "sim/enc_gauge.c"
#include "sim/enc_nb100.c"
#include "sim/encode.c"
#include "sim/scenario.c"

/* scenario.c looks protocols up in kinds.c, which pulls in libuv devices. */
static const sim_kind fake_modbus = {.name = "modbus-tcp"};
static const sim_kind fake_coap = {.name = "coap-smoke", .peer = 1};
static const sim_kind fake_mqtt = {.name = "mqtt-gauge", .peer = 1};
const sim_kind *sim_kind_find(const char *name)
{
    if (!strcmp(name, "modbus-tcp"))
        return &fake_modbus;
    if (!strcmp(name, "coap-smoke"))
        return &fake_coap;
    if (!strcmp(name, "mqtt-gauge"))
        return &fake_mqtt;
    return NULL;
}

/* ---- NB-100 ----
 * Expected frames are written out byte by byte from the vendor text (top of
 * adapters/smoke_nb100.h); CRCs were computed with an independent
 * implementation (Python's binascii.crc_hqx with init 0xFFFF). */

static void test_crc_check_value(void **st)
{
    assert_int_equal(sim_crc16_ccitt_false((const uint8_t *)"123456789", 9), 0x29B1);
    assert_int_equal(sim_crc16_ccitt_false(NULL, 0), 0xFFFF);
    const uint8_t a = 'A';
    assert_int_equal(sim_crc16_ccitt_false(&a, 1), 0xB915);
}

static void test_imei_bcd(void **st)
{
    uint8_t b[8];
    assert_int_equal(sim_nb100_imei_bcd("861234567800001", b), SIM_OK);
    const uint8_t want[8] = {0x86, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x1F};
    assert_memory_equal(b, want, 8);
    assert_int_equal(sim_nb100_imei_bcd("490154203237518", b), SIM_OK);
    const uint8_t want2[8] = {0x49, 0x01, 0x54, 0x20, 0x32, 0x37, 0x51, 0x8F};
    assert_memory_equal(b, want2, 8);
    assert_int_equal(sim_nb100_imei_bcd("86123456780000", b), SIM_EINVAL);   /* 14 digits */
    assert_int_equal(sim_nb100_imei_bcd("8612345678000012", b), SIM_EINVAL); /* 16 */
    assert_int_equal(sim_nb100_imei_bcd("86123456780000A", b), SIM_EINVAL);
    assert_int_equal(sim_nb100_imei_bcd("86123456780000/", b), SIM_EINVAL);
    assert_int_equal(sim_nb100_imei_bcd(NULL, b), SIM_EINVAL);
}

static sim_nb100 base_frame(void)
{
    sim_nb100 f;
    memset(&f, 0, sizeof f);
    f.type = SIM_NB100_REPORT;
    memcpy(f.imei, "861234567800001", 16);
    f.seq = 0x1234;
    f.time_s = 1760000000u;
    f.battery_v = 3.6;
    f.smoke_db_m = 0.25;
    f.temp_c = -5;
    f.rssi_dbm = -90;
    return f;
}

/* A heartbeat with the sim's firmware extension, every field by hand. */
static void test_frame_by_hand(void **st)
{
    static const uint8_t ext[5] = {0x01, 0x03, 0x01, 0x02, 0x03};
    static const uint8_t want[35] = {
        0xA5, 0x5A,                   /* magic */
        0x01,                         /* version */
        0x1D,                         /* L = 24 + 5 extension bytes */
        0x86, 0x12, 0x34, 0x56,       /* IMEI 861234567800001, BCD, high nibble first, */
        0x78, 0x00, 0x00, 0x1F,       /* ... the 16th nibble F */
        0x01,                         /* periodic report */
        0x12, 0x34,                   /* seq */
        0x68, 0xE7, 0x78, 0x00,       /* 1760000000 s */
        0x08, 0x81,                   /* events: heartbeat (11), tamper (7), fire (0) */
        0x0E, 0x10,                   /* 3600 mV */
        0x00, 0x19,                   /* 25 x 0.01 dB/m */
        0xFF, 0xCE,                   /* -50 x 0.1 degC */
        0xA6,                         /* -90 dBm */
        0x01, 0x03, 0x01, 0x02, 0x03, /* extension bytes */
        0x02, 0x71,                   /* CRC-16/CCITT-FALSE of the 33 bytes before */
    };
    sim_nb100 f = base_frame();
    f.events = SIM_NB_HEARTBEAT | SIM_NB_TAMPER | SIM_NB_FIRE;
    f.ext = ext;
    f.next = sizeof ext;
    uint8_t b[SIM_NB100_MAX];
    memset(b, 0xEE, sizeof b);
    assert_int_equal(sim_nb100_encode(&f, b, sizeof b), (int)sizeof want);
    assert_memory_equal(b, want, sizeof want);
    assert_int_equal(b[sizeof want], 0xEE); /* nothing written past the frame */
    assert_int_equal(sim_crc16_ccitt_false(want, sizeof want - 2), 0x0271);
    /* The frame over its CRC leaves a zero remainder (a receiver's check). */
    assert_int_equal(sim_crc16_ccitt_false(want, sizeof want), 0);
}

/* The example frame printed in docs/adapters.md (an event report: fire +
 * mute, 2.95 V, 0.12 dB/m, 21.5 degC, -80 dBm). */
static void test_frame_docs_example(void **st)
{
    static const uint8_t want[30] = {0xA5, 0x5A, 0x01, 0x18, 0x86, 0x12, 0x34, 0x56, 0x78, 0x90,
                                     0x12, 0x3F, 0x02, 0x01, 0x02, 0x68, 0xE7, 0x78, 0x00, 0x00,
                                     0x11, 0x0B, 0x86, 0x00, 0x0C, 0x00, 0xD7, 0xB0, 0x3D, 0xE3};
    sim_nb100 f;
    memset(&f, 0, sizeof f);
    f.type = SIM_NB100_EVENT;
    memcpy(f.imei, "861234567890123", 16);
    f.seq = 0x0102;
    f.time_s = 0x68E77800u;
    f.events = SIM_NB_FIRE | SIM_NB_MUTE;
    f.battery_v = 2.95;
    f.smoke_db_m = 0.12;
    f.temp_c = 21.5;
    f.rssi_dbm = -80;
    uint8_t b[SIM_NB100_MIN];
    assert_int_equal(sim_nb100_encode(&f, b, sizeof b), SIM_NB100_MIN);
    assert_memory_equal(b, want, sizeof want);
}

static void test_frame_types_and_errors(void **st)
{
    sim_nb100 f = base_frame();
    uint8_t b[64];
    for (int t = SIM_NB100_REPORT; t <= SIM_NB100_SELFTEST; t++) {
        f.type = (uint8_t)t;
        assert_int_equal(sim_nb100_encode(&f, b, sizeof b), 30);
        assert_int_equal(b[3], 24);
        assert_int_equal(b[12], t);
        assert_int_equal(sim_crc16_ccitt_false(b, 30), 0);
    }
    f.type = 0;
    assert_int_equal(sim_nb100_encode(&f, b, sizeof b), SIM_EINVAL);
    f.type = 4;
    assert_int_equal(sim_nb100_encode(&f, b, sizeof b), SIM_EINVAL);
    f = base_frame();
    assert_int_equal(sim_nb100_encode(&f, b, 29), SIM_EINVAL); /* too small */
    assert_int_equal(sim_nb100_encode(&f, b, 30), 30);
    memcpy(f.imei, "12345", 6);
    assert_int_equal(sim_nb100_encode(&f, b, sizeof b), SIM_EINVAL);
    /* Extension bytes: up to L = 255, i.e. 231 of them. */
    static uint8_t ext[SIM_NB100_EXT_MAX + 1];
    uint8_t big[SIM_NB100_MAX + 1];
    f = base_frame();
    f.ext = ext;
    f.next = SIM_NB100_EXT_MAX;
    assert_int_equal(SIM_NB100_EXT_MAX, 231);
    assert_int_equal(sim_nb100_encode(&f, big, sizeof big), 261);
    assert_int_equal(big[3], 255);
    assert_int_equal(sim_crc16_ccitt_false(big, 261), 0);
    f.next = SIM_NB100_EXT_MAX + 1;
    assert_int_equal(sim_nb100_encode(&f, big, sizeof big), SIM_EINVAL);
    f.ext = NULL;
    f.next = 1;
    assert_int_equal(sim_nb100_encode(&f, big, sizeof big), SIM_EINVAL);
}

static void test_event_bits(void **st)
{
    /* The spec's bit numbers. */
    assert_int_equal(SIM_NB_FIRE, 0x0001);
    assert_int_equal(SIM_NB_CLEARED, 0x0002);
    assert_int_equal(SIM_NB_TEST_PASS, 0x0004);
    assert_int_equal(SIM_NB_TEST_FAIL, 0x0008);
    assert_int_equal(SIM_NB_MUTE, 0x0010);
    assert_int_equal(SIM_NB_BATTERY_LOW, 0x0020);
    assert_int_equal(SIM_NB_BATTERY_CRIT, 0x0040);
    assert_int_equal(SIM_NB_TAMPER, 0x0080);
    assert_int_equal(SIM_NB_HW_FAULT, 0x0100);
    assert_int_equal(SIM_NB_DIRTY, 0x0200);
    assert_int_equal(SIM_NB_END_OF_LIFE, 0x0400);
    assert_int_equal(SIM_NB_HEARTBEAT, 0x0800);
    sim_nb100 f = base_frame();
    uint8_t b[64];
    f.events = SIM_NB_TEST_FAIL | SIM_NB_HW_FAULT | SIM_NB_HEARTBEAT;
    assert_int_equal(sim_nb100_encode(&f, b, sizeof b), 30);
    assert_int_equal(b[19], 0x09);
    assert_int_equal(b[20], 0x08);
    f.time_s = 0xFEDCBA98u;
    sim_nb100_encode(&f, b, sizeof b);
    const uint8_t t[4] = {0xFE, 0xDC, 0xBA, 0x98};
    assert_memory_equal(b + 15, t, 4);
}

static int be16(const uint8_t *p)
{
    return p[0] << 8 | p[1];
}

static void test_value_scaling(void **st)
{
    sim_nb100 f = base_frame();
    uint8_t b[64];
    f.battery_v = 3.01; /* 3010.0000000000005 mV */
    f.smoke_db_m = 0.012;
    f.temp_c = 22.44;
    f.rssi_dbm = -65.6;
    sim_nb100_encode(&f, b, sizeof b);
    assert_int_equal(be16(b + 21), 3010);
    assert_int_equal(be16(b + 23), 1);
    assert_int_equal(be16(b + 25), 224);
    assert_int_equal((int8_t)b[27], -66);
    f.temp_c = -0.05; /* rounds away from zero */
    f.smoke_db_m = 0.255;
    sim_nb100_encode(&f, b, sizeof b);
    assert_int_equal((int16_t)be16(b + 25), -1);
    assert_int_equal(be16(b + 23), 26);
    /* Out of range values saturate one step short of the "not measured"
     * codes instead of wrapping into them. */
    f.battery_v = 100;
    f.smoke_db_m = 1000;
    f.temp_c = 5000;
    f.rssi_dbm = 300;
    sim_nb100_encode(&f, b, sizeof b);
    assert_int_equal(be16(b + 21), 0xFFFE);
    assert_int_equal(be16(b + 23), 0xFFFE);
    assert_int_equal(be16(b + 25), 0x7FFF);
    assert_int_equal(b[27], 0x7E);
    f.battery_v = -1;
    f.smoke_db_m = -1;
    f.temp_c = -5000;
    f.rssi_dbm = -300;
    sim_nb100_encode(&f, b, sizeof b);
    assert_int_equal(be16(b + 21), 0);
    assert_int_equal(be16(b + 23), 0);
    assert_int_equal(be16(b + 25), 0x8001);
    assert_int_equal(b[27], 0x80);
    /* NaN: the spec's "not measured" codes. */
    f.battery_v = f.smoke_db_m = f.temp_c = f.rssi_dbm = NAN;
    sim_nb100_encode(&f, b, sizeof b);
    assert_int_equal(be16(b + 21), 0xFFFF);
    assert_int_equal(be16(b + 23), 0xFFFF);
    assert_int_equal(be16(b + 25), 0x8000);
    assert_int_equal(b[27], 0x7F);
}

/* ---- gauge payloads ---- */

static void test_gauge_payload(void **st)
{
    sim_gauge_value v[2] = {{"level", 1.234, 2}, {"battery", 3.6, 2}};
    sim_gauge_msg m = {
        .ts_field = "ts", .ts_format = SIM_TS_ISO, .ts_ms = 1748779200123LL, .v = v, .nv = 2};
    char out[256];
    int n = sim_gauge_payload(&m, out, sizeof out);
    assert_string_equal(out,
                        "{\"ts\":\"2025-06-01T12:00:00.123Z\",\"level\":1.23,\"battery\":3.60}");
    assert_int_equal(n, (int)strlen(out));
    cJSON *j = cJSON_Parse(out);
    assert_non_null(j);
    assert_true(fabs(cJSON_GetObjectItem(j, "level")->valuedouble - 1.23) < 1e-9);
    cJSON_Delete(j);

    m.ts_format = SIM_TS_EPOCH;
    m.id_field = "id";
    m.id = "g\"1";
    sim_gauge_payload(&m, out, sizeof out);
    assert_string_equal(out,
                        "{\"ts\":1748779200,\"id\":\"g\\\"1\",\"level\":1.23,\"battery\":3.60}");
    m.ts_format = SIM_TS_EPOCH_MS;
    m.id_field = NULL;
    v[0].value = NAN;
    v[1].decimals = 0;
    sim_gauge_payload(&m, out, sizeof out);
    assert_string_equal(out, "{\"ts\":1748779200123,\"level\":null,\"battery\":4}");
    m.ts_format = SIM_TS_NONE;
    sim_gauge_payload(&m, out, sizeof out);
    assert_string_equal(out, "{\"level\":null,\"battery\":4}");
}

static void test_gauge_payload_malformed_and_small(void **st)
{
    sim_gauge_value v[2] = {{"level", 1.5, 1}, {"battery", 3.6, 1}};
    sim_gauge_msg m = {.ts_field = "ts", .ts_format = SIM_TS_EPOCH, .ts_ms = 1000, .v = v, .nv = 2};
    char out[128];
    m.malformed = 1;
    assert_true(sim_gauge_payload(&m, out, sizeof out) > 0);
    assert_string_equal(out, "{\"ts\":1,\"level\":1.5,\"battery\":");
    assert_null(cJSON_Parse(out));
    m.malformed = 0;
    int n = sim_gauge_payload(&m, out, sizeof out);
    assert_int_equal(n, (int)strlen("{\"ts\":1,\"level\":1.5,\"battery\":3.6}"));
    assert_int_equal(sim_gauge_payload(&m, out, (size_t)n), SIM_EINVAL); /* no room for NUL */
    assert_int_equal(sim_gauge_payload(&m, out, (size_t)n + 1), n);
    /* A timestamp before 1970 still prints a valid time. */
    m.ts_format = SIM_TS_ISO;
    m.ts_ms = -1;
    m.nv = 0;
    sim_gauge_payload(&m, out, sizeof out);
    assert_string_equal(out, "{\"ts\":\"1969-12-31T23:59:59.999Z\"}");
}

/* ---- templates ---- */

static void test_expand(void **st)
{
    char out[64];
    assert_int_equal(sim_expand("{imei}-secret", 7, "smk-007", "861234567800007", out, sizeof out),
                     22);
    assert_string_equal(out, "861234567800007-secret");
    sim_expand("field/{id}/n{n:04}/{n}", 7, "g-7", NULL, out, sizeof out);
    assert_string_equal(out, "field/g-7/n0007/7");
    assert_int_equal(sim_expand("{imei}", 1, "x", NULL, out, sizeof out), SIM_EINVAL);
    assert_int_equal(sim_expand("{bogus}", 1, "x", "1", out, sizeof out), SIM_EINVAL);
    assert_int_equal(sim_expand("{n", 1, "x", "1", out, sizeof out), SIM_EINVAL);
    assert_int_equal(sim_expand("0123456789", 1, NULL, NULL, out, 10), SIM_EINVAL);
    assert_int_equal(sim_expand("0123456789", 1, NULL, NULL, out, 11), 10);
}

/* ---- scenario keys ---- */

static sim_scenario *parse(const char *y, char *err)
{
    return sim_scenario_parse(y, strlen(y), "t.yaml", NULL, err, 256);
}

static void test_scenario_coap(void **st)
{
    char err[256] = "";
    const char *y = "name: s\n"
                    "devices:\n"
                    "  - id: smk-{n:02}\n"
                    "    count: 12\n"
                    "    protocol: coap-smoke\n"
                    "    port: 5683\n"
                    "    imei: \"8612345678{n:05}\"\n"
                    "    dtls: true\n"
                    "    psk_hex: \"00{imei}0\"\n"
                    "    heartbeat: 10s\n"
                    "    smoke: {type: ramp, from: 0.01, to: 0.3, over: 60s}\n"
                    "    events:\n"
                    "      - {at: 90s, device: 3, kind: alarm_cleared}\n"
                    "      - {at: 30s, device: 3, kind: fire_alarm}\n"
                    "      - {at: 30s, device: 12, kind: silent}\n"
                    "      - {at: 40s, kind: self_test}\n"
                    "  - id: smk-b{n}\n"
                    "    count: 2\n"
                    "    protocol: coap-smoke\n"
                    "    port: 5683\n"; /* same port as the first group: fine for peers */
    sim_scenario *s = parse(y, err);
    assert_non_null(s);
    sim_peer *p = s->groups[0].peer;
    assert_non_null(p);
    assert_string_equal(p->path, "/19/0/0");
    assert_true(p->dtls && p->psk_hex);
    assert_true(p->heartbeat == 10);
    assert_int_equal(p->smoke.kind, SIM_C_RAMP);
    assert_int_equal(p->nevents, 4);
    assert_true(p->events[0].at == 30 && p->events[0].kind == SIM_EV_FIRE_ALARM);
    assert_true(p->events[1].at == 30 && p->events[1].kind == SIM_EV_SILENT &&
                p->events[1].device == 12);
    assert_true(p->events[2].device == 0 && p->events[2].kind == SIM_EV_SELF_TEST);
    assert_true(p->events[3].at == 90 && p->events[3].line == 13);
    assert_non_null(s->groups[1].peer);
    assert_string_equal(s->groups[1].peer->imei, "86{n:013}");
    sim_scenario_free(s);
}

static void test_scenario_mqtt(void **st)
{
    char err[256] = "";
    const char *y =
        "name: s\n"
        "devices:\n"
        "  - id: g-{n}\n"
        "    count: 3\n"
        "    protocol: mqtt-gauge\n"
        "    port: 1883\n"
        "    topic: field/gauges/{id}/data\n"
        "    ts: epoch_ms\n"
        "    id_field: dev\n"
        "    fields:\n"
        "      - {name: level, curve: {type: sine, mean: 1, amplitude: 0.5, period: 10m}}\n"
        "      - {name: battery, value: 3.6, decimals: 2}\n"
        "    events:\n"
        "      - {at: 60s, device: 2, kind: disconnect}\n"
        "      - {at: 50s, device: 1, kind: malformed}\n";
    sim_scenario *s = parse(y, err);
    assert_non_null(s);
    sim_peer *p = s->groups[0].peer;
    assert_string_equal(p->status_topic, "field/gauges/{id}/status");
    assert_int_equal(p->ts_format, SIM_TS_EPOCH_MS);
    assert_string_equal(p->id_field, "dev");
    assert_int_equal(p->nfields, 2);
    assert_int_equal(p->fields[0].curve.kind, SIM_C_SINE);
    assert_int_equal(p->fields[1].decimals, 2);
    assert_int_equal(p->events[0].kind, SIM_EV_MALFORMED);
    sim_scenario_free(s);
}

static void expect_error(const char *y, const char *want)
{
    char err[256] = "";
    sim_scenario *s = parse(y, err);
    if (s) {
        sim_scenario_free(s);
        fail_msg("parsed, expected '%s'", want);
    }
    if (!strstr(err, want))
        fail_msg("error '%s' does not contain '%s'", err, want);
}

static void test_scenario_peer_errors(void **st)
{
#define HEAD "name: s\ndevices:\n  - id: d{n}\n    count: 5\n    port: 5683\n"
    expect_error(HEAD "    protocol: coap-smoke\n    imei: \"86{n}\"\n", "t.yaml:7: imei:");
    expect_error(HEAD "    protocol: coap-smoke\n    topic: a/b\n",
                 "t.yaml:7: topic: not a key of coap-smoke");
    expect_error(HEAD "    protocol: modbus-tcp\n    heartbeat: 10s\n",
                 "modbus-tcp: bus and link keys are for modbus-rtu and modbus-dtu");
    expect_error(HEAD "    protocol: coap-smoke\n    events: [{at: 1s, device: 6, kind: tamper}]\n",
                 "expected an integer in 1..5");
    expect_error(HEAD "    protocol: coap-smoke\n    events: [{at: 1s, kind: disconnect}]\n",
                 "'disconnect' is not an event of coap-smoke");
    expect_error(HEAD "    protocol: mqtt-gauge\n    events: [{at: 1s, kind: fire_alarm}]\n",
                 "'fire_alarm' is not an event of mqtt-gauge");
    expect_error(HEAD "    protocol: coap-smoke\n    events: [{at: 1s, kind: wrong_psk}]\n",
                 "needs dtls: true");
    expect_error(HEAD "    protocol: coap-smoke\n    dtls: true\n    psk_hex: \"{imei}x\"\n",
                 "psk_hex: an even number of hex digits");
    expect_error(HEAD "    protocol: coap-smoke\n    dtls: true\n    psk: a\n    psk_hex: b\n",
                 "give one of psk and psk_hex");
    expect_error(HEAD "    protocol: coap-smoke\n    ack_timeout: 500ms\n", "ack_timeout: 1s..60s");
    expect_error(HEAD "    protocol: mqtt-gauge\n    fields: [{name: \"a b\"}]\n",
                 "name: letters, digits");
    expect_error(HEAD "    protocol: mqtt-gauge\n    fields: [{name: ts}]\n",
                 "already the ts or id field");
    expect_error(HEAD "    protocol: mqtt-gauge\n    topic: \"x/{imei}\"\n",
                 "topic: cannot expand");
#undef HEAD
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc_check_value),
        cmocka_unit_test(test_imei_bcd),
        cmocka_unit_test(test_frame_by_hand),
        cmocka_unit_test(test_frame_docs_example),
        cmocka_unit_test(test_frame_types_and_errors),
        cmocka_unit_test(test_event_bits),
        cmocka_unit_test(test_value_scaling),
        cmocka_unit_test(test_gauge_payload),
        cmocka_unit_test(test_gauge_payload_malformed_and_small),
        cmocka_unit_test(test_expand),
        cmocka_unit_test(test_scenario_coap),
        cmocka_unit_test(test_scenario_mqtt),
        cmocka_unit_test(test_scenario_peer_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
