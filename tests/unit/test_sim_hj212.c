/* The simulator's HJ212 side: its packet encoder against the standard's own
 * example (length, CRC 1C80; a Modbus CRC gives 0759), the answer parser,
 * byte-level faults, and the hj212 kind run against a loopback server that
 * answers 9014. Unit tests link libgw.a only, so the sim sources are included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sim/curve.c"
#include "sim/dev_hj212.c"
#include "sim/dial.c"
#include "sim/enc_hj212.c"
#include "sim/encode.c"
#include "sim/scenario.c"

const sim_kind *sim_kind_find(const char *name)
{
    if (!strcmp(name, "hj212"))
        return &sim_kind_hj212;
    return NULL;
}

double sim_now(const sim_ctx *ctx)
{
    return (double)(uv_hrtime() - ctx->t0_ns) / 1e9 * ctx->speed;
}

/* The standard's CRC, written again from its text: shift the register right
 * by 8 and xor in the byte, then 8 rounds of shift-and-xor 0xA001. */
static unsigned t_hj_crc(const char *s, size_t n)
{
    unsigned reg = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        reg = (reg >> 8) ^ (unsigned char)s[i];
        for (int b = 0; b < 8; b++) {
            unsigned lsb = reg & 1;
            reg >>= 1;
            if (lsb)
                reg ^= 0xA001;
        }
    }
    return reg & 0xFFFF;
}

/* The Modbus CRC, for contrast: the byte is xored into the low half. */
static unsigned t_modbus_crc(const char *s, size_t n)
{
    unsigned reg = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        reg ^= (unsigned char)s[i];
        for (int b = 0; b < 8; b++)
            reg = (reg & 1) ? (reg >> 1) ^ 0xA001 : reg >> 1;
    }
    return reg & 0xFFFF;
}

static void vector_packet(char *out, size_t cap)
{
    const char *dir = getenv("GW_VECTORS") ? getenv("GW_VECTORS") : "../shared/vectors";
    char path[512], line[2048];
    snprintf(path, sizeof path, "%s/hj212.txt", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    out[0] = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "##", 2)) {
            size_t n = strcspn(line, "\r\n");
            assert_true(n < cap);
            memcpy(out, line, n);
            out[n] = 0;
            break;
        }
    fclose(f);
    assert_true(out[0]);
}

static void test_vector_packet(void **state)
{
    char want[1100], got[SIM_HJ212_MAX_PACKET];
    vector_packet(want, sizeof want);
    /* Fields as the vector file decodes them. */
    int n = sim_hj212_packet(got, sizeof got, "20160801085857223", "32", 1062, "100000",
                             "010000A8900016F000169DC0", 5, "RtdInterval=30");
    assert_true(n > 0);
    /* The vector is given without CR LF. */
    assert_int_equal((size_t)n, strlen(want) + 2);
    assert_memory_equal(got, want, strlen(want));
    assert_memory_equal(got + n - 2, "\r\n", 2);
    assert_memory_equal(got, "##0101", 6);
    assert_memory_equal(got + n - 6, "1C80", 4);
    /* Both CRCs over the data segment, from this file's own code. */
    assert_int_equal(t_hj_crc(want + 6, 101), 0x1C80);
    assert_int_equal(sim_hj212_crc((const uint8_t *)want + 6, 101), 0x1C80);
    unsigned mb = t_modbus_crc(want + 6, 101);
    assert_int_not_equal(mb, 0x1C80);
    /* The Modbus register value is the vector's 0759. */
    char mbs[8];
    snprintf(mbs, sizeof mbs, "%04X", mb);
    assert_string_equal(mbs, "0759");
}

static void test_parse_answer(void **state)
{
    char pkt[SIM_HJ212_MAX_PACKET];
    int n = sim_hj212_packet(pkt, sizeof pkt, "20240701080000123", "91", 9014, "123456",
                             "010000A8900016F000169DC0", 4, "");
    assert_true(n > 0);
    sim_hj212_msg m;
    assert_int_equal(sim_hj212_parse(pkt, (size_t)n, &m), n);
    assert_int_equal(m.cn, 9014);
    assert_string_equal(m.qn, "20240701080000123");
    for (int i = 0; i < n; i++)
        assert_int_equal(sim_hj212_parse(pkt, (size_t)i, &m), 0);
    /* QN echoed inside the CP only (some servers do that). */
    n = sim_hj212_packet(pkt, sizeof pkt, NULL, "91", 9014, "123456", "MN1", 4,
                         "QN=20240701080000124;CN=2011");
    assert_int_equal(sim_hj212_parse(pkt, (size_t)n, &m), n);
    assert_int_equal(m.cn, 9014);
    assert_string_equal(m.qn, "20240701080000124");
    pkt[10] ^= 1;
    assert_int_equal(sim_hj212_parse(pkt, (size_t)n, &m), SIM_EMALFORMED);
}

static void test_byte_faults(void **state)
{
    char want[1100], pkt[SIM_HJ212_MAX_PACKET], bad[SIM_HJ212_MAX_PACKET];
    vector_packet(want, sizeof want);
    int n = sim_hj212_packet(pkt, sizeof pkt, "20160801085857223", "32", 1062, "100000",
                             "010000A8900016F000169DC0", 5, "RtdInterval=30");
    /* Bad CRC: only the four CRC characters change, and they stay hex. */
    memcpy(bad, pkt, (size_t)n);
    sim_hj212_bad_crc(bad, (size_t)n);
    assert_memory_equal(bad, pkt, (size_t)n - 6);
    assert_memory_equal(bad + n - 2, "\r\n", 2);
    assert_memory_not_equal(bad + n - 6, pkt + n - 6, 4);
    assert_int_equal(strspn(bad + n - 6, "0123456789ABCDEF"), 4);
    sim_hj212_msg m;
    assert_int_equal(sim_hj212_parse(bad, (size_t)n, &m), SIM_EMALFORMED);
    /* Malformed CP: a valid frame (length and CRC right) whose CP is broken. */
    int mn = sim_hj212_malform(pkt, (size_t)n, bad, sizeof bad);
    assert_true(mn > 0);
    assert_int_equal(sim_hj212_parse(bad, (size_t)mn, &m), mn);
    assert_int_equal(m.cn, 1062);
    bad[mn - 6] = 0;
    assert_non_null(strstr(bad, "CP=&&RtdInterval30"));
    assert_null(strstr(bad, "30&&"));
    assert_memory_equal(bad + 6, pkt + 6, (size_t)(strstr(pkt, "CP=") - pkt) - 6);
}

/* ---- the kind against a loopback server ---- */

#define SRV_BYTES (256 * 1024)

typedef struct run {
    uv_loop_t loop;
    sim_ctx ctx;
    sim_scenario *scn;
    uv_tcp_t listener, conn;
    int have_conn;
    uv_timer_t check;
    char *data;
    size_t len, scanned;
    int answer;
    uint64_t answers_sent;
    int (*done)(struct run *r);
    uint64_t deadline_ms;
    int stopped, timed_out;
} run;

static hj_dev *dev_of(run *r)
{
    return &((hj_group *)r->scn->groups[0].kstate)->devs[0];
}

static void srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char scratch[65536];
    buf->base = scratch;
    buf->len = sizeof scratch;
}

/* 9014 for every valid packet that asks for an answer (Flag=5). */
static void srv_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    run *r = s->data;
    if (nread <= 0)
        return;
    assert_true(r->len + (size_t)nread <= SRV_BYTES);
    memcpy(r->data + r->len, buf->base, (size_t)nread);
    r->len += (size_t)nread;
    while (r->answer && r->scanned + 6 <= r->len) {
        char *p = r->data + r->scanned;
        if (p[0] != '#' || p[1] != '#') {
            r->scanned++;
            continue;
        }
        size_t seg = (size_t)strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 10);
        if (r->scanned + seg + 12 > r->len)
            break;
        char crc[16];
        snprintf(crc, sizeof crc, "%04X", t_hj_crc(p + 6, seg) & 0xFFFFu);
        const char *qn = memmem(p, seg + 6, "QN=", 3);
        if (!memcmp(crc, p + 6 + seg, 4) && memmem(p, seg + 6, "Flag=5", 6) && qn) {
            char seg_out[128], out[160];
            int sl = snprintf(seg_out, sizeof seg_out,
                              "QN=%.17s;ST=91;CN=9014;PW=123456;MN=X;Flag=4;CP=&&&&", qn + 3);
            int ol = snprintf(out, sizeof out, "##%04d%s%04X\r\n", sl, seg_out,
                              t_hj_crc(seg_out, (size_t)sl));
            uv_buf_t b = uv_buf_init(out, (unsigned)ol);
            assert_int_equal(uv_try_write((uv_stream_t *)&r->conn, &b, 1), ol);
            r->answers_sent++;
        }
        r->scanned += seg + 12;
    }
}

static void srv_conn_cb(uv_stream_t *l, int status)
{
    run *r = l->data;
    assert_false(r->have_conn);
    uv_tcp_init(&r->loop, &r->conn);
    r->conn.data = r;
    r->have_conn = 1;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&r->conn), 0);
    uv_read_start((uv_stream_t *)&r->conn, srv_alloc, srv_read);
}

static void run_stop(run *r)
{
    if (r->stopped)
        return;
    r->stopped = 1;
    sim_kind_hj212.stop(&r->ctx, &r->scn->groups[0]);
    uv_close((uv_handle_t *)&r->listener, NULL);
    uv_close((uv_handle_t *)&r->check, NULL);
    if (r->have_conn)
        uv_close((uv_handle_t *)&r->conn, NULL);
}

static void check_cb(uv_timer_t *t)
{
    run *r = t->data;
    if (r->done(r))
        run_stop(r);
    else if (uv_now(&r->loop) > r->deadline_ms) {
        r->timed_out = 1;
        run_stop(r);
    }
}

static void run_scenario(run *r, const char *fmt, double speed)
{
    char yaml[4096], err[512];
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int alen = sizeof ss;
    r->data = malloc(SRV_BYTES);
    assert_non_null(r->data);
    assert_int_equal(uv_loop_init(&r->loop), 0);
    uv_tcp_init(&r->loop, &r->listener);
    r->listener.data = r;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&r->listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&r->listener, 8, srv_conn_cb), 0);
    uv_tcp_getsockname(&r->listener, (struct sockaddr *)&ss, &alen);
    const char *at = strstr(fmt, "@PORT@");
    assert_non_null(at);
    snprintf(yaml, sizeof yaml, "%.*s%u%s", (int)(at - fmt), fmt,
             ntohs(((struct sockaddr_in *)&ss)->sin_port), at + 6);
    r->scn = sim_scenario_parse(yaml, strlen(yaml), "test.yaml", NULL, err, sizeof err);
    if (!r->scn)
        fail_msg("%s", err);
    r->ctx.loop = &r->loop;
    r->ctx.scn = r->scn;
    r->ctx.speed = speed;
    r->ctx.quiet = 1;
    r->ctx.t0_ns = uv_hrtime();
    assert_int_equal(sim_kind_hj212.start(&r->ctx, &r->scn->groups[0]), SIM_OK);
    uv_timer_init(&r->loop, &r->check);
    r->check.data = r;
    r->deadline_ms = uv_now(&r->loop) + 10000;
    uv_timer_start(&r->check, check_cb, 5, 5);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_false(r->timed_out);
    assert_true(sim_dial_closed(&dev_of(r)->dial));
    assert_int_equal(uv_loop_close(&r->loop), 0);
}

static void run_free(run *r)
{
    sim_kind_hj212.destroy(&r->ctx, &r->scn->groups[0]);
    sim_scenario_free(r->scn);
    free(r->data);
}

static int done_answered(run *r)
{
    hj_dev *d = dev_of(r);
    return d->by_cn[CN_2011] >= 8 && d->by_cn[CN_2051] >= 2 && d->by_cn[CN_2061] >= 1 &&
           d->dial.acks == d->by_cn[CN_2011] + d->by_cn[CN_2051] + d->by_cn[CN_2061];
}

/* A clean station with Flag=5: every packet is answered with 9014 by QN;
 * factors carry values from their curves and flags from their schedules. */
static void test_kind_answers(void **state)
{
    run *r = calloc(1, sizeof *r);
    r->answer = 1;
    r->done = done_answered;
    run_scenario(r,
                 "name: hj\n"
                 "devices:\n"
                 "  - id: env-{n}\n"
                 "    protocol: hj212\n"
                 "    connect: 127.0.0.1:@PORT@\n"
                 "    mn: \"010000A8900016F0001{n:05}\"\n"
                 "    password: \"123456\"\n"
                 "    st: \"32\"\n"
                 "    reply: true\n"
                 "    interval: 1s\n"
                 "    minute_every: 3s\n"
                 "    hour_every: 6s\n"
                 "    clock: \"2024-07-01 08:00:00\"\n"
                 "    factors:\n"
                 "      - {code: w01018, value: 12.5, flag: N}\n"
                 "      - code: w21003\n"
                 "        curve: {type: ramp, from: 0, to: 6, over: 6s}\n"
                 "        decimals: 3\n"
                 "        flags: [{from: 0, to: 2500ms, flag: M}, {from: 2500ms, flag: D}]\n",
                 20);
    hj_dev *d = dev_of(r);
    assert_int_equal(d->dial.acks_unmatched, 0);
    assert_int_equal(d->dial.resends, 0);
    assert_string_equal(d->mn, "010000A8900016F000100001");
    /* Look at the stream: every packet parses, 2011 has Rtd and flags. */
    size_t off = 0;
    int n2011 = 0, n2051 = 0, sawM = 0, sawD = 0;
    while (off < r->len) {
        sim_hj212_msg m;
        int n = sim_hj212_parse(r->data + off, r->len - off, &m);
        assert_true(n > 0);
        char seg[1100];
        memcpy(seg, m.seg, m.seg_len);
        seg[m.seg_len] = 0;
        assert_non_null(strstr(seg, ";ST=32;"));
        assert_non_null(
            strstr(seg, ";PW=123456;MN=010000A8900016F000100001;Flag=5;CP=&&DataTime=2024070108"));
        if (m.cn == 2011) {
            n2011++;
            assert_non_null(strstr(seg, "w01018-Rtd=12.50,w01018-Flag=N;w21003-Rtd="));
            sawM |= strstr(seg, "w21003-Flag=M&&") != NULL;
            sawD |= strstr(seg, "w21003-Flag=D&&") != NULL;
        } else if (m.cn == 2051) {
            n2051++;
            assert_non_null(strstr(seg, "w01018-Min=12.50,w01018-Avg=12.50,w01018-Max=12.50,"
                                        "w01018-Flag=N"));
            /* The ramp is t itself: 12 samples across [0, 3) or [3, 6). */
            assert_true(strstr(seg, "w21003-Min=0.125,w21003-Avg=1.500,w21003-Max=2.875") ||
                        strstr(seg, "w21003-Min=3.125,w21003-Avg=4.500,w21003-Max=5.875"));
        } else {
            assert_int_equal(m.cn, 2061);
        }
        off += (size_t)n;
    }
    assert_true(n2011 >= 8 && n2051 >= 2 && sawM && sawD);
    run_free(r);
    free(r);
}

/* Done once the server holds every byte the station sent. */
static int done_faulty(run *r)
{
    return dev_of(r)->by_cn[CN_2011] >= 20 && r->len == dev_of(r)->dial.bytes_out;
}

/* Garbage between packets only, bad CRCs that differ only in the CRC,
 * malformed CPs with valid CRCs, duplicates byte for byte. */
static void test_kind_faults(void **state)
{
    run *r = calloc(1, sizeof *r);
    r->done = done_faulty;
    run_scenario(r,
                 "name: hjf\n"
                 "devices:\n"
                 "  - id: env-{n}\n"
                 "    protocol: hj212\n"
                 "    connect: 127.0.0.1:@PORT@\n"
                 "    mn: \"010000A8900016F000169DC0\"\n"
                 "    clock: \"2024-07-01 08:00:00\"\n"
                 "    interval: 1s\n"
                 "    minute_every: 0\n"
                 "    hour_every: 0\n"
                 "    factors: [{code: w01018, value: 7}]\n"
                 "    faults:\n"
                 "      - {type: garbage, every: 3, bytes: 10}\n"
                 "      - {type: bad_crc, every: 4}\n"
                 "      - {type: malformed_cp, every: 5}\n"
                 "      - {type: duplicate, every: 7}\n",
                 50);
    hj_dev *d = dev_of(r);
    size_t off = 0, junk = 0;
    int frames = 0, badcrc = 0, malformed = 0, dups = 0, junks = 0;
    const char *prev = NULL;
    size_t prev_len = 0;
    while (off < r->len) {
        const char *p = r->data + off;
        if (p[0] != '#') {
            junk++;
            off++;
            continue;
        }
        assert_true(junk == 0 || junk == 10); /* garbage: whole runs, then a packet */
        junks += junk > 0;
        assert_true(off + 1 < r->len && p[1] == '#');
        size_t seg = (size_t)strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 10);
        size_t tot = seg + 12;
        assert_true(off + tot <= r->len);
        assert_memory_equal(p + tot - 2, "\r\n", 2);
        char crc[16];
        snprintf(crc, sizeof crc, "%04X", t_hj_crc(p + 6, seg) & 0xFFFFu);
        int crc_ok = !memcmp(crc, p + 6 + seg, 4);
        if (prev && junk == 0 && prev_len == tot && !memcmp(prev, p, tot)) {
            dups++; /* byte for byte, right after the original */
        } else {
            frames++;
            badcrc += !crc_ok;
            /* A malformed CP lost its closing && and its first '='. */
            if (memcmp(p + 6 + seg - 2, "&&", 2) != 0) {
                malformed++;
                assert_non_null(memmem(p, tot, "CP=&&DataTime2024", 17));
            } else {
                assert_non_null(memmem(p, tot, "CP=&&DataTime=", 14));
            }
        }
        if (crc_ok) {
            /* Always a well-formed frame around it, even when the CP is broken. */
            sim_hj212_msg m;
            assert_int_equal(sim_hj212_parse(p, tot, &m), (int)tot);
            assert_int_equal(m.cn, 2011);
        }
        prev = p;
        prev_len = tot;
        junk = 0;
        off += tot;
    }
    assert_int_equal(junk, 0);
    assert_int_equal((uint64_t)junks, d->dial.faults[SIM_RF_GARBAGE]);
    assert_int_equal((uint64_t)dups, d->dial.faults[SIM_RF_DUPLICATE]);
    assert_int_equal((uint64_t)malformed, d->dial.faults[SIM_RF_MALFORMED]);
    assert_int_equal((uint64_t)badcrc, d->dial.faults[SIM_RF_BAD_CRC]);
    assert_int_equal((uint64_t)frames, d->dial.frames);
    assert_true(malformed >= 2 && badcrc >= 3 && dups >= 1 && junks >= 4);
    run_free(r);
    free(r);
}

/* A split part and the crc_lsb quirk from the sim's encoder: the header carries PNUM,
 * PNO and Flag bit D; the quirky CRC is CRC-16/Modbus low byte first, computed here. */
static void test_part_and_crc_lsb(void **state)
{
    char pkt[SIM_HJ212_MAX_PACKET];
    int n = sim_hj212_packet_part(pkt, sizeof pkt, "20240601100000000", "32", 2061, "123456", "MN1",
                                  5, 2, 2, "w01018-Avg=1.5,w01018-Flag=N");
    if (n < 12) {
        fail_msg("part not encoded (%d)", n);
        return;
    }
    assert_non_null(strstr(pkt, ";Flag=7;PNUM=2;PNO=2;CP=&&w01018-Avg=1.5,w01018-Flag=N&&"));
    sim_hj212_msg m;
    assert_int_equal(sim_hj212_parse(pkt, (size_t)n, &m), n);
    sim_hj212_crc_modbus_lsb(pkt, (size_t)n);
    uint16_t reg = 0xFFFF;
    for (int i = 6; i < n - 6; i++) {
        reg ^= (uint8_t)pkt[i];
        for (int b = 0; b < 8; b++)
            reg = (reg & 1) ? (uint16_t)((reg >> 1) ^ 0xA001) : (uint16_t)(reg >> 1);
    }
    char want[8];
    snprintf(want, sizeof want, "%02X%02X", reg & 0xFF, reg >> 8);
    assert_memory_equal(pkt + n - 6, want, 4);
    assert_int_equal(sim_hj212_parse(pkt, (size_t)n, &m), n); /* answers come back this way */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_packet), cmocka_unit_test(test_parse_answer),
        cmocka_unit_test(test_byte_faults),   cmocka_unit_test(test_kind_answers),
        cmocka_unit_test(test_kind_faults),   cmocka_unit_test(test_part_and_crc_lsb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
