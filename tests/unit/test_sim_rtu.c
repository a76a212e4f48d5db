/* Unit tests of the simulator's Modbus RTU side: CRC-16/MODBUS, request and
 * answer length rules, the frame splitter with partial input, junk and
 * silence, the fault bytes (bad CRC, garbage, truncation, exceptions) through
 * the shared device model, the scenario keys of the serial kinds, and two live
 * runs on the simulator's own loop: libmodbus as RTU master on a real pty pair,
 * and a TCP server the DTU dials. Unit tests link libgw.a only, so the sim
 * sources are included here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <arpa/inet.h>
#include <cmocka.h>
#include <errno.h>
#include <modbus.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sim/curve.c"
#include "sim/dev_modbus.c"
#include "sim/dev_rtu.c"
#include "sim/encode.c"

#include "sim/mbtcp.c"
#include "sim/rtu.c"
#include "sim/scenario.c"

double sim_now(const sim_ctx *ctx)
{
    return (double)(uv_hrtime() - ctx->t0_ns) / 1e9 * ctx->speed;
}

static const uint8_t req_hold2[] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x02, 0xC4, 0x0B};

static void test_crc(void **st)
{
    assert_int_equal(sim_crc16((const uint8_t *)"123456789", 9), 0x4B37);
    /* Read holding 0..1 of unit 1: the CRC goes low byte first. */
    uint8_t f[8] = {0x01, 0x03, 0x00, 0x00, 0x00, 0x02};
    assert_int_equal(sim_rtu_seal(f, 6), 8);
    assert_memory_equal(f, req_hold2, 8);
    assert_true(sim_rtu_crc_ok(f, 8));
    f[7] ^= 1;
    assert_false(sim_rtu_crc_ok(f, 8));
    assert_false(sim_rtu_crc_ok(f, 2));
    /* The spec's example pair: 11 03 00 6B 00 03 -> 76 87. */
    uint8_t g[8] = {0x11, 0x03, 0x00, 0x6B, 0x00, 0x03};
    sim_rtu_seal(g, 6);
    assert_int_equal(g[6], 0x76);
    assert_int_equal(g[7], 0x87);
}

static void test_length_rules(void **st)
{
    assert_int_equal(sim_rtu_request_len(req_hold2, 1), 0);
    assert_int_equal(sim_rtu_request_len(req_hold2, 2), 8);
    const uint8_t w16[] = {0x01, 0x10, 0x00, 0x05, 0x00, 0x02, 0x04};
    assert_int_equal(sim_rtu_request_len(w16, 6), 0); /* byte count not here yet */
    assert_int_equal(sim_rtu_request_len(w16, 7), 13);
    const uint8_t rw17[11] = {0x01, 0x17, 0, 0, 0, 1, 0, 0, 0, 1, 2};
    assert_int_equal(sim_rtu_request_len(rw17, 10), 0);
    assert_int_equal(sim_rtu_request_len(rw17, 11), 15);
    const uint8_t fc07[] = {0x01, 0x07}, fc16[] = {0x01, 0x16}, fc41[] = {0x01, 0x41};
    assert_int_equal(sim_rtu_request_len(fc07, 2), 4);
    assert_int_equal(sim_rtu_request_len(fc16, 2), 10);
    assert_int_equal(sim_rtu_request_len(fc41, 2), SIM_EINVAL);
    const uint8_t mei[] = {0x01, 0x2B, 0x0E}, mei0d[] = {0x01, 0x2B, 0x0D};
    assert_int_equal(sim_rtu_request_len(mei, 2), 0);
    assert_int_equal(sim_rtu_request_len(mei, 3), 7);
    assert_int_equal(sim_rtu_request_len(mei0d, 3), SIM_EINVAL);
    /* Answers. */
    const uint8_t a03[] = {0x01, 0x03, 0x04}, exc[] = {0x01, 0x83}, a06[] = {0x01, 0x06};
    assert_int_equal(sim_rtu_response_len(a03, 2), 0);
    assert_int_equal(sim_rtu_response_len(a03, 3), 9);
    assert_int_equal(sim_rtu_response_len(exc, 2), 5);
    assert_int_equal(sim_rtu_response_len(a06, 2), 8);
}

static void test_split_partial(void **st)
{
    size_t skip, flen;
    /* Byte by byte: more until the eighth byte, then one frame. */
    for (size_t n = 0; n < 8; n++) {
        assert_int_equal(sim_rtu_split(req_hold2, n, 0, &skip, &flen), SIM_RTU_MORE);
        assert_int_equal(skip, 0);
    }
    assert_int_equal(sim_rtu_split(req_hold2, 8, 0, &skip, &flen), SIM_RTU_FRAME);
    assert_int_equal(skip, 0);
    assert_int_equal(flen, 8);
    /* Write multiple registers: the length is known once the byte count is in. */
    uint8_t w[16] = {0x01, 0x10, 0x00, 0x05, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02};
    size_t wl = sim_rtu_seal(w, 11);
    assert_int_equal(wl, 13);
    for (size_t n = 0; n < wl; n++)
        assert_int_equal(sim_rtu_split(w, n, 0, &skip, &flen), SIM_RTU_MORE);
    assert_int_equal(sim_rtu_split(w, wl, 0, &skip, &flen), SIM_RTU_FRAME);
    assert_int_equal(flen, 13);
    /* Two requests back to back: the first comes out alone. */
    uint8_t two[16];
    memcpy(two, req_hold2, 8);
    memcpy(two + 8, req_hold2, 8);
    two[8] = 0x02;
    sim_rtu_seal(two + 8, 6);
    assert_int_equal(sim_rtu_split(two, 16, 0, &skip, &flen), SIM_RTU_FRAME);
    assert_int_equal(skip + flen, 8);
    assert_int_equal(sim_rtu_split(two + 8, 8, 0, &skip, &flen), SIM_RTU_FRAME);
}

static void test_split_junk_and_silence(void **st)
{
    size_t skip, flen;
    uint8_t b[64];
    /* Noise before a request: skipped, the request found behind it. */
    b[0] = 0xFF;
    b[1] = 0x00;
    memcpy(b + 2, req_hold2, 8);
    assert_int_equal(sim_rtu_split(b, 10, 0, &skip, &flen), SIM_RTU_FRAME);
    assert_int_equal(skip, 2);
    assert_int_equal(flen, 8);
    /* A request with a bad CRC is never served. */
    memcpy(b, req_hold2, 8);
    b[7] ^= 0x40;
    assert_int_equal(sim_rtu_split(b, 8, 0, &skip, &flen), SIM_RTU_MORE);
    assert_int_equal(sim_rtu_split(b, 8, 1, &skip, &flen), SIM_RTU_JUNK);
    assert_int_equal(skip, 8);
    /* Junk that claims a long write waits for more, until the line goes silent;
     * then the request behind it is found. */
    uint8_t c[16] = {0x01, 0x10, 0x00, 0x00, 0x00, 0x7B, 0xF6};
    memcpy(c + 7, req_hold2, 8);
    assert_int_equal(sim_rtu_split(c, 15, 0, &skip, &flen), SIM_RTU_MORE);
    assert_int_equal(skip, 0);
    assert_int_equal(sim_rtu_split(c, 15, 1, &skip, &flen), SIM_RTU_FRAME);
    assert_int_equal(skip, 7);
    assert_int_equal(flen, 8);
    /* A function code without a length rule: framed by silence when its CRC checks. */
    uint8_t u[8] = {0x01, 0x41, 0x12, 0x34};
    size_t ul = sim_rtu_seal(u, 4);
    assert_int_equal(sim_rtu_split(u, ul, 0, &skip, &flen), SIM_RTU_MORE);
    assert_int_equal(skip, 0);
    assert_int_equal(sim_rtu_split(u, ul, 1, &skip, &flen), SIM_RTU_FRAME);
    assert_int_equal(flen, ul);
    /* Nothing at all. */
    assert_int_equal(sim_rtu_split(u, 0, 1, &skip, &flen), SIM_RTU_MORE);
    /* A bounded scan over hostile bytes: every result stays inside the buffer. */
    uint64_t r = 1;
    for (int round = 0; round < 2000; round++) {
        uint8_t h[40];
        sim_rtu_garbage(h, sizeof h, &r);
        size_t n = (size_t)(r % sizeof h);
        for (int idle = 0; idle < 2; idle++) {
            int rc = sim_rtu_split(h, n, idle, &skip, &flen);
            assert_true(skip + flen <= n);
            if (rc == SIM_RTU_FRAME)
                assert_true(sim_rtu_crc_ok(h + skip, flen));
        }
    }
}

static void test_hex(void **st)
{
    uint8_t b[4];
    assert_int_equal(hex_parse("7E 01 0a:FF", b, sizeof b), 4);
    assert_int_equal(b[0], 0x7E);
    assert_int_equal(b[2], 0x0A);
    assert_int_equal(b[3], 0xFF);
    assert_int_equal(hex_parse("7E0", b, sizeof b), SIM_EINVAL);
    assert_int_equal(hex_parse("0102030405", b, sizeof b), SIM_EINVAL);
    assert_int_equal(hex_parse("zz", b, sizeof b), SIM_EINVAL);
    assert_int_equal(hex_parse("", b, sizeof b), SIM_EINVAL);
}

/* ---- the device model with RTU framing ---- */

static sim_scenario *parse(const char *y, char *err, size_t errlen)
{
    return sim_scenario_parse(y, strlen(y), "t.yaml", NULL, err, errlen);
}

/* Serves one RTU request frame to device d and returns the RTU answer with the
 * plan's byte faults applied (what dev_rtu.c sends), or 0. */
static size_t rtu_answer(sim_mbdev *d, const uint8_t *f, size_t n, double t, uint8_t *out,
                         sim_fault_plan *plan, uint64_t *rngs)
{
    sim_mb_req rq = {0, 0, f[0], f[1], f + 2, n - 4};
    uint8_t adu[SIM_MB_MAX_ADU];
    size_t len = sim_mbdev_serve(d, &rq, t, adu, sizeof adu, plan);
    if (plan->action != SIM_ACT_ANSWER || !len)
        return 0;
    size_t on = sim_rtu_from_adu(adu, len, out, SIM_RTU_MAX);
    if (plan->garbage)
        sim_rtu_garbage(out, on, rngs);
    else if (plan->bad_crc)
        sim_rtu_corrupt_crc(out, on);
    if (plan->truncated)
        on = sim_rtu_truncated_len(on);
    return on;
}

static const char *fault_yaml = "name: f\n"
                                "devices:\n"
                                "  - id: spec\n"
                                "    protocol: modbus-rtu\n"
                                "    unit: 17\n"
                                "    registers:\n"
                                "      - {addr: 0x6B, value: 0xAE41}\n"
                                "      - {addr: 0x6C, value: 0x5652}\n"
                                "      - {addr: 0x6D, value: 0x4340}\n"
                                "    faults:\n"
                                "      - {type: bad_crc, from: 10, to: 20}\n"
                                "      - {type: garbage, from: 20, to: 30}\n"
                                "      - {type: truncated, from: 30, to: 40}\n"
                                "      - {type: exception, code: 6, from: 40, to: 50}\n"
                                "      - {type: silent, from: 50, to: 60}\n"
                                "      - {type: late, delay: 2s, from: 60, to: 70}\n"
                                "      - {type: drop, every: 2, from: 70, to: 80}\n";

static void test_fault_bytes(void **st)
{
    char err[256];
    sim_scenario *s = parse(fault_yaml, err, sizeof err);
    assert_non_null(s);
    sim_group *g = &s->groups[0];
    sim_regindex ix = {0};
    sim_mbdev d = {0};
    assert_int_equal(sim_regindex_build(&ix, g), SIM_OK);
    assert_int_equal(sim_mbdev_init(&d, g, &ix, 0), SIM_OK);
    d.serial = 1;
    uint8_t rq[8] = {0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87};
    /* The spec's answer, byte for byte. */
    static const uint8_t good[] = {0x11, 0x03, 0x06, 0xAE, 0x41, 0x56,
                                   0x52, 0x43, 0x40, 0x49, 0xAD};
    uint8_t out[SIM_RTU_MAX];
    sim_fault_plan plan;
    uint64_t rngs = 7;
    size_t n = rtu_answer(&d, rq, 8, 0, out, &plan, &rngs);
    assert_int_equal(n, sizeof good);
    assert_memory_equal(out, good, sizeof good);

    /* bad_crc: the same frame, both CRC bytes wrong. */
    n = rtu_answer(&d, rq, 8, 15, out, &plan, &rngs);
    assert_int_equal(n, sizeof good);
    assert_memory_equal(out, good, sizeof good - 2);
    assert_int_not_equal(out[9], good[9]);
    assert_int_not_equal(out[10], good[10]);
    assert_false(sim_rtu_crc_ok(out, n));

    /* garbage: the same length, a CRC that never checks. */
    n = rtu_answer(&d, rq, 8, 25, out, &plan, &rngs);
    assert_int_equal(n, sizeof good);
    assert_false(sim_rtu_crc_ok(out, n));
    assert_memory_not_equal(out, good, sizeof good);

    /* truncated: the first half of the good answer. */
    n = rtu_answer(&d, rq, 8, 35, out, &plan, &rngs);
    assert_int_equal(n, sizeof good / 2);
    assert_memory_equal(out, good, n);

    /* exception 06 (server busy): address, function | 0x80, code, CRC. */
    n = rtu_answer(&d, rq, 8, 45, out, &plan, &rngs);
    uint8_t exc[5] = {0x11, 0x83, 0x06};
    sim_rtu_seal(exc, 3);
    assert_int_equal(n, 5);
    assert_memory_equal(out, exc, 5);

    /* silent: no answer at all. */
    assert_int_equal(rtu_answer(&d, rq, 8, 55, out, &plan, &rngs), 0);
    assert_int_equal(plan.action, SIM_ACT_SILENT);

    /* late: the good answer, with a delay for the kind to apply. */
    n = rtu_answer(&d, rq, 8, 65, out, &plan, &rngs);
    assert_memory_equal(out, good, sizeof good);
    assert_true(plan.delay_s > 1.99 && plan.delay_s < 2.01);

    /* drop: every second request (counted over the device's life). */
    int drops = 0;
    for (int i = 0; i < 4; i++) {
        rtu_answer(&d, rq, 8, 75, out, &plan, &rngs);
        drops += plan.action == SIM_ACT_DROP;
    }
    assert_int_equal(drops, 2);

    assert_int_equal(d.faults[SIM_F_BAD_CRC], 1);
    assert_int_equal(d.faults[SIM_F_GARBAGE], 1);
    assert_int_equal(d.faults[SIM_F_TRUNCATED], 1);
    assert_int_equal(d.faults[SIM_F_EXCEPTION], 1);
    assert_int_equal(d.faults[SIM_F_SILENT], 1);
    assert_int_equal(d.faults[SIM_F_LATE], 1);
    assert_int_equal(d.faults[SIM_F_DROP], 2);
    assert_int_equal(d.requests, 11);
    assert_int_equal(d.by_fc[3], 11);

    /* Without a CRC (Modbus TCP) bad_crc is not applied. */
    d.serial = 0;
    n = rtu_answer(&d, rq, 8, 15, out, &plan, &rngs);
    assert_memory_equal(out, good, sizeof good);
    sim_mbdev_free(&d);
    sim_regindex_free(&ix);
    sim_scenario_free(s);
}

static void test_broadcast_write(void **st)
{
    char err[256];
    sim_scenario *s = parse("name: b\ndevices:\n  - id: v\n    protocol: modbus-rtu\n"
                            "    registers: [{addr: 5, writable: true}]\n",
                            err, sizeof err);
    assert_non_null(s);
    sim_regindex ix = {0};
    sim_mbdev d = {0};
    assert_int_equal(sim_regindex_build(&ix, &s->groups[0]), SIM_OK);
    assert_int_equal(sim_mbdev_init(&d, &s->groups[0], &ix, 0), SIM_OK);
    const uint8_t pdu[] = {0x00, 0x05, 0x01, 0xF4};
    sim_mb_req rq = {0, 0, 0, 0x06, pdu, 4};
    sim_mbdev_broadcast(&d, &rq, 1.5);
    assert_int_equal(d.nwrites, 1);
    assert_int_equal(d.writes[0].value, 500);
    assert_int_equal(d.answers, 0);
    sim_mbdev_free(&d);
    sim_regindex_free(&ix);
    sim_scenario_free(s);
}

/* ---- scenario keys ---- */

static void test_scenario_buses(void **st)
{
    char err[256];
    sim_scenario *s = parse("name: b\n"
                            "devices:\n"
                            "  - {id: a, protocol: modbus-rtu, bus: b1, unit: 1}\n"
                            "  - {id: 'b{n}', count: 2, protocol: modbus-rtu, bus: b1, unit: 2,\n"
                            "     pty_link: /tmp/x/b1, baud: 19200}\n"
                            "  - {id: d, protocol: modbus-dtu, bus: d1, connect: '127.0.0.1:9',\n"
                            "     register_hex: '7E 01', heartbeat: 5s, number: 3}\n"
                            "  - {id: e, protocol: modbus-dtu, bus: d1, unit: 2}\n"
                            "  - {id: f, protocol: modbus-rtu}\n",
                            err, sizeof err);
    assert_non_null(s);
    /* Link keys are copied to every group of the bus. */
    assert_string_equal(s->groups[0].link.pty_link, "/tmp/x/b1");
    assert_int_equal(s->groups[0].link.baud, 19200);
    assert_int_equal(s->groups[1].link.have_link, 1);
    assert_int_equal(s->groups[0].link.have_link, 0);
    assert_string_equal(s->groups[3].link.connect, "127.0.0.1:9");
    assert_int_equal(s->groups[3].link.reg_len, 2);
    assert_int_equal(s->groups[3].link.reg[0], 0x7E);
    assert_int_equal(s->groups[3].link.hb_len, 2); /* "HB" by default */
    assert_memory_equal(s->groups[3].link.hb, "HB", 2);
    assert_int_equal(s->groups[3].link.number, 3);
    assert_true(s->groups[3].link.reconnect_s == 1 && s->groups[3].link.reconnect_max_s == 30);
    assert_int_equal(s->groups[4].link.bus[0], '@'); /* a bus of its own */
    assert_int_equal(s->ndevices, 6);
    sim_scenario_free(s);

    static const struct {
        const char *yaml, *want;
    } bad[] = {
        {"  - {id: a, protocol: modbus-rtu, unit: 1, bus: x}\n"
         "  - {id: b, protocol: modbus-rtu, unit: 1, bus: x}\n",
         "overlap"},
        {"  - {id: a, protocol: modbus-rtu, bus: x, baud: 9600}\n"
         "  - {id: b, protocol: modbus-rtu, unit: 2, bus: x, baud: 9600}\n",
         "link keys given twice"},
        {"  - {id: a, protocol: modbus-rtu, bus: x}\n"
         "  - {id: b, protocol: modbus-dtu, unit: 2, bus: x, connect: '1.2.3.4:5'}\n",
         "mixes"},
        {"  - {id: a, protocol: modbus-rtu, connect: '1.2.3.4:5'}\n", "connect: not a key"},
        {"  - {id: a, protocol: modbus-dtu, pty_link: /tmp/a}\n", "pty_link: not a key"},
        {"  - {id: a, protocol: modbus-dtu}\n", "needs connect"},
        {"  - {id: a, protocol: modbus-dtu, connect: nowhere}\n", "host:port"},
        {"  - {id: a, protocol: modbus-rtu, port: 502}\n", "port: not used"},
        {"  - {id: a, protocol: modbus-rtu, unit: any}\n", "unit"},
        {"  - {id: a, protocol: modbus-rtu, unit: 0}\n", "unit"},
        {"  - {id: 'a{n}', count: 3, protocol: modbus-rtu, unit: 246}\n", "unit"},
        {"  - {id: a, port: 15020, bus: x}\n", "for modbus-rtu and modbus-dtu"},
        {"  - {id: a, protocol: modbus-rtu, pty_link: /tmp/a, path: /dev/null}\n", "either"},
        {"  - {id: a, protocol: modbus-dtu, connect: '1.2.3.4:5', register_hex: '7G'}\n",
         "register_hex"},
        {"  - {id: a, protocol: modbus-dtu, connect: '1.2.3.4:5', register: 'D{n:x}'}\n",
         "bad template"},
        {"  - {id: a, protocol: modbus-rtu, faults: [{type: truncated, every: 0}]}\n", "every"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char y[1024];
        snprintf(y, sizeof y, "name: bad\ndevices:\n%s", bad[i].yaml);
        err[0] = 0;
        s = parse(y, err, sizeof err);
        if (s || !strstr(err, bad[i].want))
            fail_msg("case %zu: got '%s', want '%s'", i, err, bad[i].want);
    }
}

/* ---- live runs on the sim's loop ---- */

typedef struct live {
    sim_ctx ctx;
    uv_async_t stop;
    uv_timer_t watchdog;
    int timed_out;
    char dir[64], link[128];
    int listen_fd;
    uint16_t port;
    /* results from the worker thread */
    int ok;
    char log[2048];
} live;

static void on_stop(uv_async_t *a)
{
    live *lv = a->data;
    for (int i = 0; i < lv->ctx.scn->ngroups; i++)
        lv->ctx.scn->groups[i].kind->stop(&lv->ctx, &lv->ctx.scn->groups[i]);
    uv_close((uv_handle_t *)&lv->stop, NULL);
    uv_close((uv_handle_t *)&lv->watchdog, NULL);
}

static void on_watchdog(uv_timer_t *t)
{
    live *lv = t->data;
    lv->timed_out = 1;
    on_stop(&lv->stop);
}

/* Starts the scenario on a private loop, runs worker(lv) on a thread, and
 * runs the loop until the worker asks it to stop (at most 20 s). */
static void live_run(live *lv, const char *yaml, void *(*worker)(void *))
{
    char err[256];
    uv_loop_t loop;
    pthread_t th;
    assert_int_equal(uv_loop_init(&loop), 0);
    lv->ctx.scn = parse(yaml, err, sizeof err);
    if (!lv->ctx.scn)
        fail_msg("%s", err);
    lv->ctx.loop = &loop;
    lv->ctx.speed = 1;
    lv->ctx.quiet = 1;
    lv->ctx.bind = "127.0.0.1";
    lv->ctx.t0_ns = uv_hrtime();
    for (int i = 0; i < lv->ctx.scn->ngroups; i++)
        assert_int_equal(lv->ctx.scn->groups[i].kind->start(&lv->ctx, &lv->ctx.scn->groups[i]),
                         SIM_OK);
    uv_async_init(&loop, &lv->stop, on_stop);
    lv->stop.data = lv;
    uv_timer_init(&loop, &lv->watchdog);
    lv->watchdog.data = lv;
    uv_timer_start(&lv->watchdog, on_watchdog, 20000, 0);
    assert_int_equal(pthread_create(&th, NULL, worker, lv), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    pthread_join(th, NULL);
    for (int i = 0; i < lv->ctx.scn->ngroups; i++)
        lv->ctx.scn->groups[i].kind->destroy(&lv->ctx, &lv->ctx.scn->groups[i]);
    assert_int_equal(uv_loop_close(&loop), 0);
    sim_scenario_free(lv->ctx.scn);
    assert_false(lv->timed_out);
}

#define CHECK(lv, cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf((lv)->log, sizeof(lv)->log, "line %d: %s (errno %s)", __LINE__, #cond,        \
                     modbus_strerror(errno));                                                      \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

static void *pty_master(void *arg)
{
    live *lv = arg;
    uint16_t r[8];
    modbus_t *mb = modbus_new_rtu(lv->link, 9600, 'N', 8, 1);
    CHECK(lv, mb && modbus_connect(mb) == 0);
    modbus_set_response_timeout(mb, 1, 0); /* generous under load; only unit 9 waits it out */
    /* Unit 1: uint32 1234567 at holding 0; unit 2: float32 CDAB 123.456 at holding 2. */
    modbus_set_slave(mb, 1);
    CHECK(lv, modbus_read_registers(mb, 0, 2, r) == 2);
    CHECK(lv, r[0] == 0x0012 && r[1] == 0xD687);
    modbus_set_slave(mb, 2);
    CHECK(lv, modbus_read_registers(mb, 2, 2, r) == 2);
    CHECK(lv, r[0] == 0xE979 && r[1] == 0x42F6);
    /* A write sticks and reads back. */
    CHECK(lv, modbus_write_register(mb, 5, 650) == 1);
    CHECK(lv, modbus_read_registers(mb, 5, 1, r) == 1 && r[0] == 650);
    /* An address the device does not have: exception 02. */
    CHECK(lv, modbus_read_registers(mb, 100, 1, r) == -1 && errno == EMBXILADD);
    /* No device at unit 9: silence, the master times out. */
    modbus_set_slave(mb, 9);
    CHECK(lv, modbus_read_registers(mb, 0, 1, r) == -1 && errno == ETIMEDOUT);
    /* Unit 3 answers with a corrupted CRC: libmodbus sees a CRC error. */
    modbus_set_slave(mb, 3);
    CHECK(lv, modbus_read_registers(mb, 0, 1, r) == -1 && errno == EMBBADCRC);
    modbus_flush(mb);
    /* Unit 1 again: the bus still works after the faults. */
    modbus_set_slave(mb, 1);
    CHECK(lv, modbus_read_registers(mb, 0, 2, r) == 2 && r[1] == 0xD687);
    lv->ok = 1;
done:
    if (mb) {
        modbus_close(mb);
        modbus_free(mb);
    }
    uv_async_send(&lv->stop);
    return NULL;
}

static void test_live_pty(void **st)
{
    static live lv;
    memset(&lv, 0, sizeof lv);
    snprintf(lv.dir, sizeof lv.dir, "/tmp/sim-rtu-test-XXXXXX");
    assert_non_null(mkdtemp(lv.dir));
    snprintf(lv.link, sizeof lv.link, "%s/bus", lv.dir);
    char y[2048];
    snprintf(y, sizeof y,
             "name: pty\n"
             "devices:\n"
             "  - {id: r, protocol: modbus-rtu, bus: b, pty_link: %s, unit: 1,\n"
             "     registers: [{addr: 0, type: uint32, value: 1234567}]}\n"
             "  - {id: f, protocol: modbus-rtu, bus: b, unit: 2,\n"
             "     registers: [{addr: 2, type: float32, order: CDAB, value: 123.456},\n"
             "                 {addr: 5, writable: true}]}\n"
             "  - {id: c, protocol: modbus-rtu, bus: b, unit: 3,\n"
             "     registers: [{addr: 0, value: 7}], faults: [{type: bad_crc}]}\n",
             lv.link);
    live_run(&lv, y, pty_master);
    if (!lv.ok)
        fail_msg("%s", lv.log);
    /* The symlink is removed at stop. */
    assert_int_equal(access(lv.link, F_OK), -1);
    rmdir(lv.dir);
}

static uint16_t free_port(int *fd_out)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *fd_out = fd;
    return ntohs(a.sin_port);
}

/* Reads until want bytes arrived or timeout_ms passed; returns the count (or -1 at EOF first). */
static int read_for(int fd, uint8_t *buf, size_t want, int timeout_ms)
{
    size_t got = 0;
    uint64_t end = uv_hrtime() / 1000000 + (uint64_t)timeout_ms;
    while (got < want) {
        int64_t left = (int64_t)(end - uv_hrtime() / 1000000);
        struct pollfd p = {fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = read(fd, buf + got, want - got);
        if (n <= 0)
            return got ? (int)got : -1;
        got += (size_t)n;
    }
    return (int)got;
}

static int accept_for(int lfd, int timeout_ms)
{
    struct pollfd p = {lfd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    return accept(lfd, NULL, NULL);
}

static void *dtu_gateway(void *arg)
{
    live *lv = arg;
    uint8_t b[64], rq[8] = {0x02, 0x03, 0x00, 0x01, 0x00, 0x01};
    int fd = accept_for(lv->listen_fd, 5000);
    CHECK(lv, fd >= 0);
    /* Registration first, then heartbeats every 100 ms. */
    CHECK(lv, read_for(fd, b, 8, 2000) == 8 && memcmp(b, "DTU-0042", 8) == 0);
    CHECK(lv, read_for(fd, b, 2, 2000) == 2 && memcmp(b, "HB", 2) == 0);
    /* Unit 2 behind the DTU answers holding 1 = 3210 with a good CRC. */
    sim_rtu_seal(rq, 6);
    CHECK(lv, write(fd, rq, 8) == 8);
    int n;
    do { /* skip heartbeats that come first */
        n = read_for(fd, b, 1, 2000);
    } while (n == 1 && b[0] == 'H' && read_for(fd, b, 1, 2000) == 1 && b[0] == 'B');
    CHECK(lv, n == 1 && b[0] == 0x02);
    CHECK(lv, read_for(fd, b + 1, 6, 2000) == 6);
    CHECK(lv, b[1] == 0x03 && b[2] == 2 && b[3] == 0x0C && b[4] == 0x8A);
    CHECK(lv, sim_rtu_crc_ok(b, 7));
    /* Unit 3 drops the connection: EOF, then the DTU dials again and registers. */
    uint8_t drop[8] = {0x03, 0x03, 0x00, 0x00, 0x00, 0x01};
    sim_rtu_seal(drop, 6);
    CHECK(lv, write(fd, drop, 8) == 8);
    for (int i = 0; i < 64 && (n = read_for(fd, b, sizeof b, 2000)) > 0; i++)
        ; /* heartbeats until the close */
    CHECK(lv, n == -1);
    close(fd);
    fd = accept_for(lv->listen_fd, 5000);
    CHECK(lv, fd >= 0);
    CHECK(lv, read_for(fd, b, 8, 2000) == 8 && memcmp(b, "DTU-0042", 8) == 0);
    lv->ok = 1;
done:
    if (fd >= 0)
        close(fd);
    uv_async_send(&lv->stop);
    return NULL;
}

static void test_live_dtu(void **st)
{
    static live lv;
    memset(&lv, 0, sizeof lv);
    lv.port = free_port(&lv.listen_fd);
    char y[2048];
    snprintf(y, sizeof y,
             "name: dtu\n"
             "devices:\n"
             "  - {id: a, protocol: modbus-dtu, bus: d, connect: '127.0.0.1:%u', unit: 2,\n"
             "     register: 'DTU-{n:04}', number: 42, heartbeat: 100ms, reconnect: 50ms,\n"
             "     registers: [{addr: 1, value: 3210}]}\n"
             "  - {id: z, protocol: modbus-dtu, bus: d, unit: 3,\n"
             "     registers: [{addr: 0}], faults: [{type: drop}]}\n",
             lv.port);
    live_run(&lv, y, dtu_gateway);
    close(lv.listen_fd);
    if (!lv.ok)
        fail_msg("%s", lv.log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc),
        cmocka_unit_test(test_length_rules),
        cmocka_unit_test(test_split_partial),
        cmocka_unit_test(test_split_junk_and_silence),
        cmocka_unit_test(test_hex),
        cmocka_unit_test(test_fault_bytes),
        cmocka_unit_test(test_broadcast_write),
        cmocka_unit_test(test_scenario_buses),
        cmocka_unit_test(test_live_pty),
        cmocka_unit_test(test_live_dtu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
