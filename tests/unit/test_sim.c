/* Unit tests of the simulator's pure pieces: register encoders (types, byte
 * orders), the Modbus TCP framer and request logic, curves, and scenario
 * parsing. Unit tests link libgw.a only, so the sim sources are included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "sim/curve.c"
#include "sim/encode.c"
#include "sim/mbtcp.c"
#include "sim/scenario.c"

/* scenario.c looks protocols up in kinds.c, which pulls in libuv devices. */
static const sim_kind fake_kind = {.name = "modbus-tcp"};
const sim_kind *sim_kind_find(const char *name)
{
    return strcmp(name, "modbus-tcp") == 0 ? &fake_kind : NULL;
}

static void enc(double v, sim_type t, const char *order, uint16_t out[4], int want_n)
{
    sim_order o = {0};
    if (order)
        assert_int_equal(sim_order_parse(order, &o), SIM_OK);
    assert_int_equal(sim_encode(v, t, &o, out), want_n);
}

static void test_float32_orders(void **st)
{
    uint16_t w[4];
    /* 123.456f is 0x42F6E979. */
    enc(123.456, SIM_T_FLOAT32, "ABCD", w, 2);
    assert_int_equal(w[0], 0x42F6);
    assert_int_equal(w[1], 0xE979);
    enc(123.456, SIM_T_FLOAT32, "CDAB", w, 2);
    assert_int_equal(w[0], 0xE979);
    assert_int_equal(w[1], 0x42F6);
    enc(123.456, SIM_T_FLOAT32, "BADC", w, 2);
    assert_int_equal(w[0], 0xF642);
    assert_int_equal(w[1], 0x79E9);
    enc(123.456, SIM_T_FLOAT32, "DCBA", w, 2);
    assert_int_equal(w[0], 0x79E9);
    assert_int_equal(w[1], 0xF642);
    enc(123.456, SIM_T_FLOAT32, NULL, w, 2); /* default is big-endian */
    assert_int_equal(w[0], 0x42F6);
}

static void test_int_types(void **st)
{
    uint16_t w[4];
    enc(305419896, SIM_T_UINT32, "CDAB", w, 2); /* 0x12345678 */
    assert_int_equal(w[0], 0x5678);
    assert_int_equal(w[1], 0x1234);
    enc(-2, SIM_T_INT32, "ABCD", w, 2);
    assert_int_equal(w[0], 0xFFFF);
    assert_int_equal(w[1], 0xFFFE);
    enc(-35, SIM_T_INT16, NULL, w, 1);
    assert_int_equal(w[0], 0xFFDD);
    enc(320.4, SIM_T_UINT16, NULL, w, 1); /* rounds */
    assert_int_equal(w[0], 320);
    enc(70000, SIM_T_UINT16, NULL, w, 1); /* saturates */
    assert_int_equal(w[0], 65535);
    enc(-5, SIM_T_UINT16, NULL, w, 1);
    assert_int_equal(w[0], 0);
    enc(40000, SIM_T_INT16, NULL, w, 1);
    assert_int_equal(w[0], 0x7FFF);
    enc(0x1234, SIM_T_UINT16, "BA", w, 1);
    assert_int_equal(w[0], 0x3412);
    enc(1, SIM_T_BOOL, NULL, w, 1);
    assert_int_equal(w[0], 1);
}

static void test_64bit_orders(void **st)
{
    uint16_t w[4], v[4];
    const double x = 283686952306183.0; /* 0x0001020304050607: exact in a double */
    enc(x, SIM_T_UINT64, "ABCDEFGH", w, 4);
    assert_int_equal(w[0], 0x0001);
    assert_int_equal(w[1], 0x0203);
    assert_int_equal(w[3], 0x0607);
    enc(x, SIM_T_UINT64, NULL, v, 4);
    assert_memory_equal(w, v, sizeof w);
    enc(x, SIM_T_UINT64, "CDAB", w, 4); /* word swap = GHEFCDAB */
    assert_int_equal(w[0], 0x0607);
    assert_int_equal(w[1], 0x0405);
    assert_int_equal(w[2], 0x0203);
    assert_int_equal(w[3], 0x0001);
    enc(x, SIM_T_UINT64, "GHEFCDAB", v, 4);
    assert_memory_equal(w, v, sizeof w);
    enc(x, SIM_T_UINT64, "DCBA", w, 4); /* = HGFEDCBA */
    assert_int_equal(w[0], 0x0706);
    assert_int_equal(w[3], 0x0100);
    enc(x, SIM_T_UINT64, "HGFEDCBA", v, 4);
    assert_memory_equal(w, v, sizeof w);
    enc(x, SIM_T_UINT64, "BADC", w, 4); /* = BADCFEHG */
    assert_int_equal(w[0], 0x0100);
    assert_int_equal(w[3], 0x0706);
    enc(1.5, SIM_T_FLOAT64, NULL, w, 4);
    assert_int_equal(w[0], 0x3FF8);
    assert_int_equal(w[1], 0);
    enc(-1, SIM_T_INT64, NULL, w, 4);
    assert_int_equal(w[0], 0xFFFF);
    assert_int_equal(w[3], 0xFFFF);
    /* An irregular 4-letter order cannot be widened. */
    sim_order o;
    assert_int_equal(sim_order_parse("ACBD", &o), SIM_OK);
    assert_int_equal(sim_encode(1, SIM_T_FLOAT64, &o, w), SIM_EINVAL);
    assert_int_equal(sim_order_parse("AABC", &o), SIM_EINVAL);
    assert_int_equal(sim_order_parse("ABCDE", &o), SIM_EINVAL);
    assert_int_equal(sim_order_parse("ABCE", &o), SIM_EINVAL);
}

/* ---- framing ---- */

static const uint8_t fc3_req[] = {0x00, 0x07, 0x00, 0x00, 0x00, 0x06,
                                  0x01, 0x03, 0x00, 0x00, 0x00, 0x02};

static void test_frame_partial(void **st)
{
    sim_mb_req rq;
    for (size_t n = 0; n < sizeof fc3_req; n++)
        assert_int_equal(sim_mbtcp_frame(fc3_req, n, &rq), 0);
    assert_int_equal(sim_mbtcp_frame(fc3_req, sizeof fc3_req, &rq), 12);
    assert_int_equal(rq.tid, 7);
    assert_int_equal(rq.unit, 1);
    assert_int_equal(rq.fc, 3);
    assert_int_equal(rq.pdu_len, 4);
}

static void test_frame_pipelined(void **st)
{
    uint8_t buf[64];
    memcpy(buf, fc3_req, 12);
    memcpy(buf + 12, fc3_req, 12);
    buf[13] = 8;                  /* second tid */
    memcpy(buf + 24, fc3_req, 5); /* a partial third */
    size_t off = 0;
    int tids[3], n = 0, r;
    sim_mb_req rq;
    while ((r = sim_mbtcp_frame(buf + off, 29 - off, &rq)) > 0) {
        tids[n++] = rq.tid;
        off += (size_t)r;
    }
    assert_int_equal(r, 0);
    assert_int_equal(n, 2);
    assert_int_equal(tids[0], 7);
    assert_int_equal(tids[1], 8);
    assert_int_equal(off, 24);
}

static void test_frame_hostile(void **st)
{
    uint8_t b[300] = {0};
    sim_mb_req rq;
    b[2] = 0x00;
    b[3] = 0x01; /* protocol id 1 */
    assert_int_equal(sim_mbtcp_frame(b, 4, &rq), SIM_EMALFORMED);
    b[3] = 0;
    uint16_t bad[] = {0, 1, 255, 256, 0xFFFF};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        b[4] = (uint8_t)(bad[i] >> 8);
        b[5] = (uint8_t)bad[i];
        assert_int_equal(sim_mbtcp_frame(b, 6, &rq), SIM_EMALFORMED);
        assert_int_equal(sim_mbtcp_frame(b, sizeof b, &rq), SIM_EMALFORMED);
    }
    b[4] = 0;
    b[5] = 254; /* the largest legal frame */
    assert_int_equal(sim_mbtcp_frame(b, 259, &rq), 0);
    assert_int_equal(sim_mbtcp_frame(b, 260, &rq), 260);
    assert_int_equal(rq.pdu_len, 252);
}

/* ---- request logic over a fake device ---- */

typedef struct fake {
    uint16_t holding[16];
    uint16_t coils[16];
    int writes;
} fake;

static int fake_read(void *ctx, int table, uint16_t addr, uint16_t count, uint16_t *out)
{
    fake *f = ctx;
    if ((uint32_t)addr + count > 16)
        return 2;
    for (unsigned i = 0; i < count; i++)
        out[i] = table == SIM_TAB_HOLDING || table == SIM_TAB_INPUT ? f->holding[addr + i]
                                                                    : f->coils[addr + i];
    return 0;
}

static int fake_write(void *ctx, int table, uint16_t addr, uint16_t count, const uint16_t *v)
{
    fake *f = ctx;
    if ((uint32_t)addr + count > 16)
        return 2;
    for (unsigned i = 0; i < count; i++) {
        if (table == SIM_TAB_HOLDING)
            f->holding[addr + i] = v[i];
        else
            f->coils[addr + i] = v[i];
    }
    f->writes++;
    return 0;
}

static const sim_regio fake_io = {fake_read, fake_write};

static size_t serve(fake *f, const uint8_t *req, size_t len, uint8_t *resp)
{
    sim_mb_req rq;
    assert_int_equal(sim_mbtcp_frame(req, len, &rq), (int)len);
    return sim_mbtcp_serve(&rq, &fake_io, f, 0, resp, SIM_MB_MAX_ADU);
}

static void test_serve_reads(void **st)
{
    fake f = {.holding = {0x0140, 0x04BA, 0xFFDD}, .coils = {1, 0, 1, 1, 0, 0, 0, 0, 1}};
    uint8_t r[SIM_MB_MAX_ADU];
    size_t n = serve(&f, fc3_req, sizeof fc3_req, r);
    const uint8_t want[] = {0x00, 0x07, 0x00, 0x00, 0x00, 0x07, 0x01,
                            0x03, 0x04, 0x01, 0x40, 0x04, 0xBA};
    assert_int_equal(n, sizeof want);
    assert_memory_equal(r, want, sizeof want);
    /* FC01, 9 coils: bits packed LSB first into 2 bytes. */
    const uint8_t rc[] = {0, 1, 0, 0, 0, 6, 1, 0x01, 0, 0, 0, 9};
    n = serve(&f, rc, sizeof rc, r);
    assert_int_equal(n, 11);
    assert_int_equal(r[5], 5);
    assert_int_equal(r[8], 2);
    assert_int_equal(r[9], 0x0D);
    assert_int_equal(r[10], 0x01);
}

static void expect_exc(fake *f, const uint8_t *req, size_t len, int fc, int code)
{
    uint8_t r[SIM_MB_MAX_ADU];
    size_t n = serve(f, req, len, r);
    assert_int_equal(n, 9);
    assert_int_equal(r[5], 3);
    assert_int_equal(r[7], fc | 0x80);
    assert_int_equal(r[8], code);
}

static void test_serve_exceptions(void **st)
{
    fake f = {0};
    const uint8_t bad_fc[] = {0, 1, 0, 0, 0, 2, 1, 0x2B};
    expect_exc(&f, bad_fc, sizeof bad_fc, 0x2B, 1);
    const uint8_t bad_addr[] = {0, 1, 0, 0, 0, 6, 1, 3, 0, 15, 0, 2};
    expect_exc(&f, bad_addr, sizeof bad_addr, 3, 2);
    const uint8_t too_many[] = {0, 1, 0, 0, 0, 6, 1, 3, 0, 0, 0, 126};
    expect_exc(&f, too_many, sizeof too_many, 3, 3);
    const uint8_t zero[] = {0, 1, 0, 0, 0, 6, 1, 4, 0, 0, 0, 0};
    expect_exc(&f, zero, sizeof zero, 4, 3);
    const uint8_t past_end[] = {0, 1, 0, 0, 0, 6, 1, 3, 0xFF, 0xFF, 0, 2};
    expect_exc(&f, past_end, sizeof past_end, 3, 2);
    const uint8_t short_pdu[] = {0, 1, 0, 0, 0, 4, 1, 3, 0, 0};
    expect_exc(&f, short_pdu, sizeof short_pdu, 3, 3);
    const uint8_t coil_val[] = {0, 1, 0, 0, 0, 6, 1, 5, 0, 0, 0x12, 0x34};
    expect_exc(&f, coil_val, sizeof coil_val, 5, 3);
    /* FC0F claims 2 coils with a byte count of 2 (must be 1). */
    const uint8_t bc[] = {0, 1, 0, 0, 0, 9, 1, 0x0F, 0, 0, 0, 2, 2, 0x03, 0};
    expect_exc(&f, bc, sizeof bc, 0x0F, 3);
    /* FC10 byte count says 4 but only 2 bytes follow. */
    const uint8_t fc10[] = {0, 1, 0, 0, 0, 9, 1, 0x10, 0, 0, 0, 2, 4, 0, 1};
    expect_exc(&f, fc10, sizeof fc10, 0x10, 3);
    assert_int_equal(f.writes, 0);
    /* A forced exception (fault injection) wins over a valid request. */
    sim_mb_req rq;
    uint8_t r[SIM_MB_MAX_ADU];
    sim_mbtcp_frame(fc3_req, sizeof fc3_req, &rq);
    assert_int_equal(sim_mbtcp_serve(&rq, &fake_io, &f, 4, r, sizeof r), 9);
    assert_int_equal(r[8], 4);
}

static void test_serve_writes(void **st)
{
    fake f = {0};
    uint8_t r[SIM_MB_MAX_ADU];
    const uint8_t w5[] = {0, 2, 0, 0, 0, 6, 1, 5, 0, 3, 0xFF, 0x00};
    assert_int_equal(serve(&f, w5, sizeof w5, r), 12);
    assert_memory_equal(r, w5, 12); /* the echo */
    assert_int_equal(f.coils[3], 1);
    const uint8_t w6[] = {0, 3, 0, 0, 0, 6, 1, 6, 0, 4, 0x12, 0x34};
    assert_int_equal(serve(&f, w6, sizeof w6, r), 12);
    assert_int_equal(f.holding[4], 0x1234);
    const uint8_t w10[] = {0, 4, 0, 0, 0, 11, 1, 0x10, 0, 1, 0, 2, 4, 0xAB, 0xCD, 0x00, 0x09};
    assert_int_equal(serve(&f, w10, sizeof w10, r), 12);
    assert_int_equal(r[5], 6);
    assert_int_equal(r[11], 2);
    assert_int_equal(f.holding[1], 0xABCD);
    assert_int_equal(f.holding[2], 9);
    const uint8_t w0f[] = {0, 5, 0, 0, 0, 8, 1, 0x0F, 0, 8, 0, 3, 1, 0x05};
    assert_int_equal(serve(&f, w0f, sizeof w0f, r), 12);
    assert_int_equal(f.coils[8], 1);
    assert_int_equal(f.coils[9], 0);
    assert_int_equal(f.coils[10], 1);
}

/* ---- curves ---- */

static sim_param one(double v)
{
    sim_param p = {1, malloc(sizeof(double))};
    p.v[0] = v;
    return p;
}

static void test_curves(void **st)
{
    sim_curve c = {.kind = SIM_C_STORM};
    c.p[SIM_P_PEAK].n = 3;
    c.p[SIM_P_PEAK].v = malloc(3 * sizeof(double));
    c.p[SIM_P_PEAK].v[0] = 32;
    c.p[SIM_P_PEAK].v[1] = 18;
    c.p[SIM_P_PEAK].v[2] = 6;
    c.p[SIM_P_RISE] = one(60);
    c.p[SIM_P_HOLD] = one(30);
    c.p[SIM_P_FALL] = one(60);
    c.p[SIM_P_REPEAT] = one(240);
    assert_true(fabs(sim_curve_eval(&c, 30, 0, NULL) - 16) < 1e-9);
    assert_true(fabs(sim_curve_eval(&c, 75, 1, NULL) - 18) < 1e-9);
    assert_true(fabs(sim_curve_eval(&c, 120, 2, NULL) - 3) < 1e-9);
    assert_true(fabs(sim_curve_eval(&c, 200, 0, NULL)) < 1e-9);
    assert_true(fabs(sim_curve_eval(&c, 240 + 75, 0, NULL) - 32) < 1e-9); /* repeats */
    assert_true(fabs(sim_curve_eval(&c, 75, 3, NULL) - 32) < 1e-9);       /* k wraps */
    sim_curve_free(&c);

    sim_curve p = {.kind = SIM_C_POINTS, .npoints = 3};
    double pt[] = {0, 10, 20}, pv[] = {0, 100, 50};
    p.pt_t = malloc(sizeof pt);
    p.pt_v = malloc(sizeof pv);
    memcpy(p.pt_t, pt, sizeof pt);
    memcpy(p.pt_v, pv, sizeof pv);
    assert_true(fabs(sim_curve_eval(&p, 5, 0, NULL) - 50) < 1e-9);
    assert_true(fabs(sim_curve_eval(&p, 15, 0, NULL) - 75) < 1e-9);
    assert_true(fabs(sim_curve_eval(&p, 99, 0, NULL) - 50) < 1e-9);
    assert_true(fabs(sim_curve_eval(&p, -1, 0, NULL)) < 1e-9);
    sim_curve_free(&p);

    sim_curve w = {.kind = SIM_C_RANDOM_WALK};
    w.p[SIM_P_START] = one(10);
    w.p[SIM_P_STEP] = one(2);
    w.p[SIM_P_MIN] = one(0);
    w.p[SIM_P_MAX] = one(12);
    w.p[SIM_P_SEED] = one(7);
    sim_curve_state s = {-1, 0};
    double prev = 10;
    for (int t = 0; t < 500; t++) {
        double v = sim_curve_eval(&w, t, 4, &s);
        assert_true(v >= 0 && v <= 12);
        assert_true(fabs(v - prev) <= 2 + 1e-9);
        prev = v;
    }
    /* Stateful stepping gives what a fresh evaluation gives. */
    assert_true(sim_curve_eval(&w, 499, 4, NULL) == prev);
    sim_curve_free(&w);
}

/* ---- scenarios ---- */

static sim_scenario *parse(const char *y, char *err)
{
    return sim_scenario_parse(y, strlen(y), "t.yaml", NULL, err, 256);
}

static void test_scenario_demo(void **st)
{
    char err[256] = "";
    sim_scenario *s = sim_scenario_load("sim/scenarios/demo-rainstorm.yaml", err, sizeof err);
    assert_non_null(s);
    assert_string_equal(s->name, "demo rainstorm");
    assert_int_equal(s->ndevices, 3);
    sim_group *g = &s->groups[0];
    assert_int_equal(g->port, 15020);
    assert_int_equal(g->unit, 1);
    assert_int_equal(g->nregs, 4);
    assert_int_equal(g->regs[0].type, SIM_T_UINT16);
    assert_true(g->regs[0].scale == 10);
    assert_int_equal(g->regs[2].type, SIM_T_INT16);
    assert_int_equal(g->regs[3].table, SIM_TAB_COIL);
    assert_true(g->regs[3].writable);
    /* Peaks per site 32, 18, 6 cm at the top of the storm. */
    double top = 10 + 60 + 15;
    assert_true(fabs(sim_curve_eval(&g->regs[0].curve, top, 0, NULL) - 32) < 1e-9);
    assert_true(fabs(sim_curve_eval(&g->regs[0].curve, top, 1, NULL) - 18) < 1e-9);
    assert_true(fabs(sim_curve_eval(&g->regs[0].curve, top, 2, NULL) - 6) < 1e-9);
    char id[64];
    assert_int_equal(sim_format_id(g->id_tmpl, g->first + 2, id, sizeof id), 0);
    assert_string_equal(id, "wl-003");
    sim_scenario_free(s);
}

static void test_scenario_errors(void **st)
{
    char err[256];
    sim_scenario *s;
    s = parse("name: x\ndevices:\n  - id: a\n    port: 20000\n    colour: red\n", err);
    assert_null(s);
    assert_non_null(strstr(err, "t.yaml:5:"));
    assert_non_null(strstr(err, "colour"));
    s = parse("name: x\ndevices:\n  - id: a\n    port: 20000\n    registers:\n"
              "      - {kind: holding, addr: 0, type: uint32}\n"
              "      - {kind: holding, addr: 1}\n",
              err);
    assert_null(s);
    assert_non_null(strstr(err, "overlaps"));
    s = parse("name: x\ndevices:\n  - {id: 'a{n}', count: 2, port: 65535}\n", err);
    assert_null(s);
    s = parse("name: x\ndevices:\n  - {id: a, port: 20000, protocol: carrier-pigeon}\n", err);
    assert_null(s);
    s = parse("name: x\ndevices:\n  - {id: a, port: 20000, registers: [{kind: coil, addr: 0, "
              "type: float32}]}\n",
              err);
    assert_null(s);
    s = parse("name: x\ndevices:\n  - {id: a, port: 20000, registers: [{addr: 0, curve: {type: "
              "sine, peak: 3}}]}\n",
              err);
    assert_null(s);
    assert_non_null(strstr(err, "peak"));
    s = parse("name: x\ndevices:\n  - {id: 'a{n}', count: 2, port: 20000}\n"
              "  - {id: b, port: 20001}\n",
              err);
    assert_null(s);
    assert_non_null(strstr(err, "overlaps"));
    s = parse("name: x\ndevices:\n  - {id: a, port: 20000, faults: [{type: late, delay: 2s, "
              "from: 30s, to: 1m}, {type: drop, every: 50}]}\n",
              err);
    assert_non_null(s);
    assert_int_equal(s->groups[0].nfaults, 2);
    assert_true(s->groups[0].faults[0].delay_s == 2);
    assert_true(s->groups[0].faults[0].to == 60);
    assert_int_equal(s->groups[0].faults[1].every, 50);
    sim_scenario_free(s);
    double d;
    assert_int_equal(sim_parse_duration("500ms", &d), 0);
    assert_true(d == 0.5);
    assert_int_equal(sim_parse_duration("10m", &d), 0);
    assert_true(d == 600);
    assert_int_equal(sim_parse_duration("10x", &d), SIM_EINVAL);
    char id[8];
    assert_int_equal(sim_format_id("dev-{n:05}", 42, id, sizeof id), SIM_EINVAL); /* too long */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_float32_orders),  cmocka_unit_test(test_int_types),
        cmocka_unit_test(test_64bit_orders),    cmocka_unit_test(test_frame_partial),
        cmocka_unit_test(test_frame_pipelined), cmocka_unit_test(test_frame_hostile),
        cmocka_unit_test(test_serve_reads),     cmocka_unit_test(test_serve_exceptions),
        cmocka_unit_test(test_serve_writes),    cmocka_unit_test(test_curves),
        cmocka_unit_test(test_scenario_demo),   cmocka_unit_test(test_scenario_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
