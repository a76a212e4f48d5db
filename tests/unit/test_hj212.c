/* HJ 212-2017 codec tests: the standard's example, hand-built packets for the
 * data commands, answers, the stream scanner and hostile input. Run from the
 * repository root (vectors: $GW_VECTORS, default ../shared/vectors, and
 * tests/vectors/hj212_own.txt). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "protocols/hj212.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STD_SEG                                                                                    \
    "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&"        \
    "RtdInterval=30&&"

/* ---- helpers ---- */

/* Reads the line "<name> <packet>" (or, with name NULL, the first non-comment
 * line) from a vector file and returns the packet with CR LF appended. */
static size_t load_vector(const char *path, const char *name, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    char line[2048];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        size_t l = strlen(line);
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r'))
            line[--l] = '\0';
        if (l == 0 || (line[0] == '#' && line[1] != '#'))
            continue;
        const char *pkt = line;
        if (name) {
            size_t nl = strlen(name);
            if (strncmp(line, name, nl) != 0 || line[nl] != ' ')
                continue;
            pkt = line + nl + 1;
        }
        n = strlen(pkt);
        assert_true(n + 3 <= cap);
        memcpy(out, pkt, n);
        memcpy(out + n, "\r\n", 3);
        n += 2;
        break;
    }
    fclose(f);
    if (n == 0)
        fail_msg("vector %s not found in %s", name ? name : "(first)", path);
    return n;
}

static size_t std_vector(char *out, size_t cap)
{
    const char *dir = getenv("GW_VECTORS");
    char path[512];
    snprintf(path, sizeof path, "%s/hj212.txt", dir && *dir ? dir : "../shared/vectors");
    return load_vector(path, NULL, out, cap);
}

static size_t own_vector(const char *name, char *out, size_t cap)
{
    return load_vector("tests/vectors/hj212_own.txt", name, out, cap);
}

typedef struct collect {
    gw_reading r[64];
    int n;
    int stop_after; /* 0 = never */
} collect;

static int on_reading(void *ctx, const gw_reading *r)
{
    collect *c = ctx;
    if (c->n >= 64)
        return GW_EFULL;
    c->r[c->n++] = *r;
    if (c->stop_after && c->n >= c->stop_after)
        return GW_EFULL;
    return 0;
}

static const gw_reading *find(const collect *c, const char *metric)
{
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->r[i].metric, metric) == 0)
            return &c->r[i];
    return NULL;
}

static void expect(const collect *c, const char *metric, double value, const char *unit,
                   int quality, int reason, int64_t obs_ms)
{
    const gw_reading *r = find(c, metric);
    if (!r)
        fail_msg("metric %s missing", metric);
    assert_float_equal(r->value, value, 1e-9);
    assert_string_equal(r->unit, unit);
    assert_int_equal(r->quality, quality);
    assert_int_equal(r->reason, reason);
    assert_int_equal(r->obs_ms, obs_ms);
    assert_string_equal(r->device, "");
    assert_int_equal(r->recv_ms, 0);
}

/* The Modbus RTU CRC, here only to prove HJ 212 is not it. */
static uint16_t modbus_crc(const uint8_t *p, size_t n)
{
    uint16_t reg = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        reg ^= p[i];
        for (int b = 0; b < 8; b++)
            reg = (reg & 1) ? (uint16_t)((reg >> 1) ^ 0xA001) : (uint16_t)(reg >> 1);
    }
    return reg;
}

/* Frames seg with a good CRC and decodes it. */
static int decode_seg(const char *seg, gw_hj212_packet *p, char *pkt, size_t cap)
{
    int n = gw_hj212_frame(GW_HJ212_2017, seg, strlen(seg), pkt, cap);
    assert_true(n > 0);
    return gw_hj212_decode(GW_HJ212_2017, (const uint8_t *)pkt, (size_t)n, p);
}

/* ---- the standard's example ---- */

static void test_crc_vector_not_modbus(void **state)
{
    const uint8_t *s = (const uint8_t *)STD_SEG;
    size_t n = strlen(STD_SEG);
    assert_int_equal(n, 101);
    assert_int_equal(gw_hj212_crc(s, n), 0x1C80);
    assert_int_equal(modbus_crc(s, n), 0x0759);
    assert_int_not_equal(gw_hj212_crc(s, n), modbus_crc(s, n));
}

static void test_vector_decodes(void **state)
{
    char pkt[2048];
    size_t n = std_vector(pkt, sizeof pkt);
    gw_hj212_packet p;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    assert_int_equal(p.data_len, 101);
    assert_int_equal(p.crc, 0x1C80);
    assert_int_equal(p.version, GW_HJ212_2017);
    assert_string_equal(p.qn, "20160801085857223");
    assert_int_equal(p.qn_ms, 1470013137223LL);
    assert_string_equal(p.st, "32");
    assert_string_equal(p.cn, "1062");
    assert_string_equal(p.pw, "100000");
    assert_string_equal(p.mn, "010000A8900016F000169DC0");
    assert_int_equal(p.flag, 5);
    assert_int_equal(GW_HJ212_FLAG_VERSION(p.flag), 1);
    assert_true(p.flag & GW_HJ212_FLAG_A);
    assert_false(p.flag & GW_HJ212_FLAG_D);
    assert_int_equal(p.pnum, 0);
    assert_int_equal(p.cp_len, strlen("RtdInterval=30"));
    assert_memory_equal(p.cp, "RtdInterval=30", p.cp_len);
    gw_hj212_kv kv;
    assert_int_equal(gw_hj212_cp_find(&p, "RtdInterval", &kv), 1);
    assert_int_equal(kv.val_len, 2);
    assert_memory_equal(kv.val, "30", 2);
    /* 1062 is not a data command: no readings. */
    collect c = {0};
    gw_sink sink = {on_reading, NULL, &c};
    assert_int_equal(gw_hj212_emit(&p, &sink), 0);
    assert_int_equal(c.n, 0);
    /* The same bytes through the scanner. */
    gw_hj212_span sp;
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)pkt, n, 0, &sp), 1);
    assert_int_equal(sp.data_len, 101);
    assert_int_equal(sp.crc_rx, 0x1C80);
    assert_int_equal(sp.consumed, n);
}

static void test_vector_reply_9011(void **state)
{
    char pkt[2048], out[GW_HJ212_PACKET_MAX + 1];
    size_t n = std_vector(pkt, sizeof pkt);
    gw_hj212_packet p, a;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    int rl = gw_hj212_build_reply(&p, GW_HJ212_QN_READY, out, sizeof out);
    const char *seg = "QN=20160801085857223;ST=91;CN=9011;PW=100000;MN=010000A8900016F000169DC0;"
                      "Flag=4;CP=&&QnRtn=1&&";
    char want[256];
    snprintf(want, sizeof want, "##%04zu%s%04X\r\n", strlen(seg), seg,
             gw_hj212_crc((const uint8_t *)seg, strlen(seg)));
    assert_string_equal(out, want);
    assert_int_equal(rl, (int)strlen(want));
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)out, (size_t)rl, &a), GW_OK);
    assert_string_equal(a.cn, "9011");
    assert_int_equal(a.flag, 4);
    /* An answer never gets an answer. */
    assert_int_equal(gw_hj212_build_reply(&a, 1, out, sizeof out), 0);
}

/* ---- own vectors: data commands ---- */

static void test_own_2011(void **state)
{
    char pkt[2048];
    size_t n = own_vector("rt_2011", pkt, sizeof pkt);
    gw_hj212_packet p;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    assert_int_equal(p.crc, 0x8641);
    assert_int_equal(p.data_len, 227);
    assert_string_equal(p.cn, "2011");
    collect c = {0};
    gw_sink sink = {on_reading, NULL, &c};
    assert_int_equal(gw_hj212_emit(&p, &sink), 4);
    assert_int_equal(c.n, 4);
    const int64_t t = 1710469800000LL;
    expect(&c, "w01018", 52.3, "mg/L", GW_Q_GOOD, GW_R_NONE, t);
    expect(&c, "w21003", 1.25, "mg/L", GW_Q_UNCERTAIN, GW_R_OVER_RANGE, t);
    expect(&c, "w00000", 12.5, "L/s", GW_Q_BAD, GW_R_SENSOR_FAULT, t);
    expect(&c, "w99999", 7, "", GW_Q_GOOD, GW_R_NONE, t);
    /* Order follows the packet. */
    assert_string_equal(c.r[0].metric, "w01018");
    assert_string_equal(c.r[3].metric, "w99999");
}

static void test_own_2051(void **state)
{
    char pkt[2048], out[GW_HJ212_PACKET_MAX + 1];
    size_t n = own_vector("min_2051", pkt, sizeof pkt);
    gw_hj212_packet p;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    assert_int_equal(p.crc, 0x1040);
    assert_int_equal(p.flag, 4);
    collect c = {0};
    gw_sink sink = {on_reading, NULL, &c};
    assert_int_equal(gw_hj212_emit(&p, &sink), 8);
    const int64_t t = 1710469800000LL;
    expect(&c, "a21026_avg_minute", 35.2, "mg/m3", GW_Q_GOOD, GW_R_NONE, t);
    expect(&c, "a21026_min_minute", 30.1, "mg/m3", GW_Q_GOOD, GW_R_NONE, t);
    expect(&c, "a21026_max_minute", 40.9, "mg/m3", GW_Q_GOOD, GW_R_NONE, t);
    expect(&c, "a21026_cou_minute", 0.52, "kg", GW_Q_GOOD, GW_R_NONE, t);
    expect(&c, "a34013_avg_minute", 8.5, "mg/m3", GW_Q_BAD, GW_R_CALIBRATING, t);
    expect(&c, "a34013_min_minute", 7.0, "mg/m3", GW_Q_BAD, GW_R_CALIBRATING, t);
    expect(&c, "a34013_max_minute", 9.9, "mg/m3", GW_Q_BAD, GW_R_CALIBRATING, t);
    expect(&c, "a34013_zs_avg_minute", 10.2, "mg/m3", GW_Q_BAD, GW_R_CALIBRATING, t);
    /* Flag=4: version 1, no answer wanted. */
    assert_int_equal(gw_hj212_build_reply(&p, 1, out, sizeof out), 0);
}

static void test_own_2061_and_9014(void **state)
{
    char pkt[2048], want[512], out[GW_HJ212_PACKET_MAX + 1];
    size_t n = own_vector("hour_2061", pkt, sizeof pkt);
    gw_hj212_packet p;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    assert_int_equal(p.crc, 0x6740);
    collect c = {0};
    gw_sink sink = {on_reading, NULL, &c};
    assert_int_equal(gw_hj212_emit(&p, &sink), 8);
    const int64_t t = 1710468000000LL;
    expect(&c, "w01018_avg_hour", 48.0, "mg/L", GW_Q_BAD, GW_R_MAINTENANCE, t);
    expect(&c, "w01018_min_hour", 40.5, "mg/L", GW_Q_BAD, GW_R_MAINTENANCE, t);
    expect(&c, "w01018_max_hour", 55.5, "mg/L", GW_Q_BAD, GW_R_MAINTENANCE, t);
    expect(&c, "w01018_cou_hour", 1.92, "kg", GW_Q_BAD, GW_R_MAINTENANCE, t);
    expect(&c, "w00000_avg_hour", 11.1, "L/s", GW_Q_BAD, GW_R_COMM_FAIL, t);
    expect(&c, "w00000_cou_hour", 39.96, "m3", GW_Q_BAD, GW_R_COMM_FAIL, t);

    /* Flag=5 asks for an answer: the 9014 in the own vectors, byte for byte. */
    size_t wn = own_vector("reply_2061", want, sizeof want);
    int rl = gw_hj212_build_reply(&p, GW_HJ212_QN_READY, out, sizeof out);
    assert_int_equal(rl, (int)wn);
    assert_memory_equal(out, want, wn);
    assert_int_equal(out[wn], '\0');
    assert_int_equal(gw_hj212_build_data_ack(&p, out, sizeof out), (int)wn);
    /* Its structure, re-decoded. */
    gw_hj212_packet a;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)out, wn, &a), GW_OK);
    assert_int_equal(a.crc, 0xA501);
    assert_int_equal(a.data_len, wn - GW_HJ212_OVERHEAD);
    assert_string_equal(a.qn, p.qn);
    assert_string_equal(a.st, "91");
    assert_string_equal(a.cn, "9014");
    assert_string_equal(a.pw, "654321");
    assert_string_equal(a.mn, "W32000000000000000000061");
    assert_int_equal(a.flag, 4);
    assert_int_equal(a.cp_len, 0);
    /* Too small an output buffer is refused, not overrun. */
    assert_int_equal(gw_hj212_build_data_ack(&p, out, wn), GW_EFULL);
}

static void test_own_2031(void **state)
{
    char pkt[2048];
    size_t n = own_vector("day_2031", pkt, sizeof pkt);
    gw_hj212_packet p;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    collect c = {0};
    gw_sink sink = {on_reading, NULL, &c};
    assert_int_equal(gw_hj212_emit(&p, &sink), 6);
    const int64_t t = 1710432000000LL;
    expect(&c, "a34004_avg_day", 35, "ug/m3", GW_Q_UNCERTAIN, GW_R_MANUAL, t);
    expect(&c, "a34004_max_day", 80, "ug/m3", GW_Q_UNCERTAIN, GW_R_MANUAL, t);
    /* Ambient air (ST=22): SO2 in ug/m3, not the source stations' mg/m3. */
    expect(&c, "a21026_avg_day", 9, "ug/m3", GW_Q_BAD, GW_R_STOPPED, t);
    expect(&c, "a21026_min_day", 4, "ug/m3", GW_Q_BAD, GW_R_STOPPED, t);
    assert_null(find(&c, "a34004_cou_day"));
}

static void test_own_multi_packet(void **state)
{
    char pkt[2048];
    size_t n = own_vector("multi_2011", pkt, sizeof pkt);
    gw_hj212_packet p;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    assert_int_equal(p.flag, 7);
    assert_true(p.flag & GW_HJ212_FLAG_D);
    assert_int_equal(p.pnum, 2);
    assert_int_equal(p.pno, 1);
    collect c = {0};
    gw_sink sink = {on_reading, NULL, &c};
    assert_int_equal(gw_hj212_emit(&p, &sink), 1);
    /* -SampleTime overrides DataTime for its factor. */
    expect(&c, "w01001", 7.12, "", GW_Q_GOOD, GW_R_NONE, 1710469500000LL);
}

static void test_sink_stop(void **state)
{
    char pkt[2048];
    size_t n = own_vector("min_2051", pkt, sizeof pkt);
    gw_hj212_packet p;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    collect c = {.stop_after = 3};
    gw_sink sink = {on_reading, NULL, &c};
    assert_int_equal(gw_hj212_emit(&p, &sink), GW_EFULL);
    assert_int_equal(c.n, 3);
    /* A NULL sink or callback still counts. */
    assert_int_equal(gw_hj212_emit(&p, NULL), 8);
}

/* ---- the stream scanner ---- */

static void test_scan_garbage_and_multiple(void **state)
{
    char a[2048], b[2048];
    size_t an = own_vector("rt_2011", a, sizeof a);
    size_t bn = std_vector(b, sizeof b);
    char buf[8192];
    size_t len = 0;
#define PUT(s, n) (memcpy(buf + len, (s), (n)), len += (n))
    PUT("\x00\xff garbage #", 12);
    PUT(a, an);
    PUT("##12", 4); /* a header that is not one */
    PUT("#", 1);
    PUT(b, bn);
    PUT(b, 20); /* a partial packet at the end */
#undef PUT
    gw_hj212_span sp;
    size_t off = 0;
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)buf, len, 0, &sp), 1);
    assert_int_equal(sp.skipped, 12);
    assert_int_equal(sp.total, an);
    assert_int_equal(sp.data_len, 227);
    assert_memory_equal(sp.data, a + 6, 227);
    off += sp.consumed;
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)buf + off, len - off, 0, &sp), 1);
    assert_int_equal(sp.skipped, 5);
    assert_int_equal(sp.data_len, 101);
    assert_int_equal(sp.crc_calc, 0x1C80);
    off += sp.consumed;
    /* The partial packet: nothing to discard, wait for more. */
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)buf + off, len - off, 0, &sp), 0);
    assert_int_equal(sp.consumed, 0);
    assert_int_equal(len - off, 20);

    /* Pure garbage is discarded except a trailing '#' that may start a packet. */
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (const uint8_t *)"abc#", 4, 0, &sp), 0);
    assert_int_equal(sp.consumed, 3);
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (const uint8_t *)"abcd", 4, 0, &sp), 0);
    assert_int_equal(sp.consumed, 4);
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, NULL, 0, 0, &sp), 0);
    assert_int_equal(sp.consumed, 0);
}

static void test_scan_bogus_header_resync(void **state)
{
    char a[2048], buf[4096];
    size_t an = std_vector(a, sizeof a);
    gw_hj212_span sp;
    /* "##0999" promises 999 bytes; the real packet's CR LF inside proves it false. */
    size_t len = 0;
    memcpy(buf, "##0999xyz", 9);
    len = 9;
    memcpy(buf + len, a, an);
    len += an;
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)buf, len, 0, &sp), 1);
    assert_int_equal(sp.skipped, 9);
    assert_int_equal(sp.data_len, 101);
    /* Before the CR LF arrives, the scanner waits without discarding. */
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)buf, len - 2, 0, &sp), 0);
    assert_int_equal(sp.consumed, 0);
    /* A short bogus length whose trailer is not hex + CR LF. */
    memcpy(buf, "##0003abcWXYZ\r\n", 15);
    memcpy(buf + 15, a, an);
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)buf, 15 + an, 0, &sp), 1);
    assert_int_equal(sp.skipped, 15);
    /* A header over the bound is skipped at once, not waited for. */
    memcpy(buf, "##9999", 6);
    memcpy(buf + 6, a, an);
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)buf, 6 + an, 0, &sp), 1);
    assert_int_equal(sp.skipped, 6);
}

static void test_scan_max_data(void **state)
{
    char a[2048];
    size_t an = std_vector(a, sizeof a);
    gw_hj212_span sp;
    /* Bound below the packet: not a packet at all. */
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)a, an, 100, &sp), 0);
    assert_int_equal(sp.consumed, an);
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)a, an, 101, &sp), 1);
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)a, an, 10000, &sp), GW_EINVAL);
    /* A longer packet than the standard allows, accepted when configured. */
    char seg[1300], pkt[1400];
    int n = snprintf(seg, sizeof seg, "ST=32;CN=2011;CP=&&DataTime=20240315103000;x-Info=");
    while (n < 1200)
        seg[n++] = 'a';
    memcpy(seg + n, "&&", 3);
    n += 2;
    int pn = snprintf(pkt, sizeof pkt, "##%04d%s%04X\r\n", n, seg,
                      gw_hj212_crc((uint8_t *)seg, (size_t)n));
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)pkt, (size_t)pn, 0, &sp), 0);
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)pkt, (size_t)pn, 2000, &sp), 1);
    assert_int_equal(sp.data_len, (size_t)n);
    /* The fixed-bound decoder refuses it, and frame() will not build it. */
    gw_hj212_packet p;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, (size_t)pn, &p), GW_EMALFORMED);
    assert_int_equal(gw_hj212_parse(GW_HJ212_2017, sp.data, sp.data_len, &p), GW_OK);
    assert_int_equal(gw_hj212_frame(GW_HJ212_2017, seg, (size_t)n, pkt, sizeof pkt), GW_EINVAL);
}

static void test_truncation_every_length(void **state)
{
    const char *names[] = {"rt_2011", "min_2051", "hour_2061", "day_2031", "multi_2011"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char pkt[2048];
        size_t n = own_vector(names[k], pkt, sizeof pkt);
        for (size_t l = 0; l < n; l++) {
            uint8_t *copy = malloc(l ? l : 1); /* exact size: ASan sees any overread */
            memcpy(copy, pkt, l);
            gw_hj212_packet p;
            gw_hj212_span sp;
            assert_int_equal(gw_hj212_decode(GW_HJ212_2017, copy, l, &p), GW_EMALFORMED);
            assert_int_equal(gw_hj212_scan(GW_HJ212_2017, copy, l, 0, &sp), 0);
            assert_int_equal(sp.consumed, 0); /* a prefix is never garbage */
            /* The bare segment cut short parses as malformed or not at all. */
            if (l > 6 && l < n - 6)
                assert_int_equal(gw_hj212_parse(GW_HJ212_2017, (char *)copy + 6, l - 6, &p),
                                 GW_EMALFORMED);
            free(copy);
        }
    }
}

static void test_wrong_length(void **state)
{
    char pkt[2048];
    size_t n = std_vector(pkt, sizeof pkt);
    gw_hj212_packet p;
    gw_hj212_span sp;
    memcpy(pkt + 2, "0100", 4);
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_EMALFORMED);
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)pkt, n, 0, &sp), 0);
    assert_int_equal(sp.consumed, n);
    memcpy(pkt + 2, "0102", 4);
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_EMALFORMED);
    memcpy(pkt + 2, "01A1", 4);
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_EMALFORMED);
    memcpy(pkt + 2, "0101", 4);
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    /* Trailer must be CR LF, and nothing may follow it. */
    pkt[n - 1] = 'X';
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_EMALFORMED);
    pkt[n - 1] = '\n';
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n + 1, &p), GW_EMALFORMED);
}

static void test_bad_crc(void **state)
{
    char pkt[2048], buf[4096];
    size_t n = std_vector(pkt, sizeof pkt);
    gw_hj212_packet p;
    gw_hj212_span sp;
    pkt[n - 3] = '1'; /* 1C80 -> 1C81 */
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_ECRC);
    /* Lower-case hex is the same number. */
    pkt[n - 3] = '0';
    pkt[n - 5] = 'c';
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    /* A data byte flipped. */
    pkt[30] ^= 1;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_ECRC);
    /* In a stream: the bad packet is reported and consumed, the next one found. */
    memcpy(buf, pkt, n);
    pkt[30] ^= 1;
    memcpy(buf + n, pkt, n);
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)buf, 2 * n, 0, &sp), GW_ECRC);
    assert_int_equal(sp.consumed, n);
    assert_int_equal(sp.crc_rx, 0x1C80);
    assert_int_not_equal(sp.crc_calc, 0x1C80);
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)buf + n, n, 0, &sp), 1);
}

/* ---- hostile data segments ---- */

static void test_hostile_header(void **state)
{
    static const char *bad[] = {
        "",
        "CP=&&&&",                                   /* no ST, CN */
        "ST=32;CP=&&&&",                             /* no CN */
        "ST=32;CN=2011",                             /* no CP */
        "ST=32;CN=2011;",                            /* no CP */
        "ST=32;CN=2011;CP=&&",                       /* CP too short */
        "ST=32;CN=2011;CP=&&a=1",                    /* unterminated CP */
        "ST=32;CN=2011;CP=&&a=1&",                   /* unterminated CP */
        "ST=32;CN=2011;CP=&&a=1&&;",                 /* trailing after CP */
        "QN=2016080108585722;ST=32;CN=2011;CP=&&&&", /* QN 16 digits */
        "QN=2016080108585722X;ST=32;CN=2011;CP=&&&&",
        "ST=321;CN=2011;CP=&&&&",
        "ST=3a;CN=2011;CP=&&&&",
        "ST=32;CN=20111;CP=&&&&",
        "ST=32;CN=;CP=&&&&",
        "ST=32;CN=2011;PW=1234567;CP=&&&&",
        "ST=32;CN=2011;PW=12&4;CP=&&&&",
        "ST=32;CN=2011;MN=0123456789012345678901234;CP=&&&&",
        "ST=32;CN=2011;Flag=256;CP=&&&&",
        "ST=32;CN=2011;Flag=-1;CP=&&&&",
        "ST=32;CN=2011;Flag=;CP=&&&&",
        "ST=32;CN=2011;CN=2051;CP=&&&&", /* duplicate */
        "ST=32;CN=2011;PNUM=2;CP=&&&&",  /* PNUM without PNO */
        "ST=32;CN=2011;PNUM=2;PNO=3;CP=&&&&",
        "ST=32;CN=2011;PNUM=0;PNO=0;CP=&&&&",
        "ST=32;CN=2011;NoEquals;CP=&&&&",
        "ST=32;CN=2011;;CP=&&&&",
        "ST=32;CN=2011;=5;CP=&&&&",
        "ST=32;CN=2011;AVeryLongUnknownHeaderKey=5;CP=&&&&",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_hj212_packet p;
        int rc = gw_hj212_parse(GW_HJ212_2017, bad[i], strlen(bad[i]), &p);
        if (rc != GW_EMALFORMED)
            fail_msg("accepted: %s (rc %d)", bad[i], rc);
    }
    gw_hj212_packet p;
    const char *ok = "ST=32;CN=2011;Vendor=x;CP=&&&&"; /* unknown header keys are skipped */
    assert_int_equal(gw_hj212_parse(GW_HJ212_2017, ok, strlen(ok), &p), GW_OK);
    assert_int_equal(p.flag, -1);
    assert_string_equal(p.qn, "");
    /* A QN that is not a date still parses, with no time. */
    ok = "QN=00000000000000000;ST=32;CN=2011;CP=&&&&";
    assert_int_equal(gw_hj212_parse(GW_HJ212_2017, ok, strlen(ok), &p), GW_OK);
    assert_int_equal(p.qn_ms, 0);
}

static void test_hostile_cp(void **state)
{
    char huge[600];
    memset(huge, 'k', sizeof huge);
    huge[sizeof huge - 1] = '\0';
    char seg_huge[800];
    snprintf(seg_huge, sizeof seg_huge, "ST=32;CN=2011;CP=&&DataTime=20240315103000;%s=1&&", huge);
    const char *bad[] = {
        seg_huge,
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;w01018-Rtd&&",                /* missing '=' */
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;=1&&",                        /* empty key */
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;w01 018-Rtd=1&&",             /* bad key char */
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;w01018-Rtd=abc&&",            /* not a number */
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;w01018-Rtd=&&",               /* empty value */
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;w01018-Rtd=nan&&",            /* not finite */
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;w01018-Rtd=1e999&&",          /* not finite */
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;w01018-Rtd=0x10&&",           /* hex */
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;w01018-Rtd=1,w01018-Rtd=2&&", /* twice */
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;w01018-Rtd=1,w01018-Flag=N,w01018-Flag=D&&",
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;-Rtd=1&&",                  /* empty code */
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;abcdefghijklmnopq-Rtd=1&&", /* code 17 */
        "ST=32;CN=2011;CP=&&w01018-Rtd=1&&",                                    /* no DataTime */
        "ST=32;CN=2011;CP=&&DataTime=20241315103000;w01018-Rtd=1&&",            /* month 13 */
        "ST=32;CN=2011;CP=&&DataTime=20230229103000;w01018-Rtd=1&&", /* not a leap year */
        "ST=32;CN=2011;CP=&&DataTime=20240315246000;w01018-Rtd=1&&",
        "ST=32;CN=2011;CP=&&DataTime=2024031510300;w01018-Rtd=1&&", /* 13 digits */
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;DataTime=20240315103000&&",
        "ST=32;CN=2011;CP=&&DataTime=20240315103000;w01018-Rtd=1,w01018-SampleTime=1&&",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char pkt[2048];
        gw_hj212_packet p;
        collect c = {0};
        gw_sink sink = {on_reading, NULL, &c};
        int rc = decode_seg(bad[i], &p, pkt, sizeof pkt);
        if (rc == GW_OK)
            rc = gw_hj212_emit(&p, &sink);
        if (rc != GW_EMALFORMED)
            fail_msg("accepted #%zu: %.80s (rc %d)", i, bad[i], rc);
        assert_int_equal(c.n, 0); /* nothing emitted from a broken packet */
        /* JSON rendering of the same never crashes and reports the error. */
        cJSON *j = gw_hj212_to_json(GW_HJ212_2017, pkt, strlen(pkt));
        assert_non_null(j);
        assert_true(cJSON_HasObjectItem(j, "error") || cJSON_HasObjectItem(j, "readings_error") ||
                    cJSON_HasObjectItem(j, "cp_error"));
        cJSON_Delete(j);
    }
    /* More factors than the table holds (only possible past the standard's 1024
     * bytes, with a scanner configured for longer packets): refused whole. */
    char seg_many[1400];
    int n = snprintf(seg_many, sizeof seg_many, "ST=32;CN=2011;CP=&&DataTime=20240315103000");
    for (int i = 0; i < GW_HJ212_FACTORS_MAX; i++)
        n += snprintf(seg_many + n, sizeof seg_many - (size_t)n, ";%x-Rtd=1", i);
    int n128 = n;
    n += snprintf(seg_many + n, sizeof seg_many - (size_t)n, ";zz-Rtd=1&&");
    {
        gw_hj212_packet pm;
        collect cm = {0};
        gw_sink sm = {on_reading, NULL, &cm};
        assert_int_equal(gw_hj212_parse(GW_HJ212_2017, seg_many, (size_t)n, &pm), GW_OK);
        assert_int_equal(gw_hj212_emit(&pm, &sm), GW_EMALFORMED);
        assert_int_equal(cm.n, 0);
        memcpy(seg_many + n128, "&&", 3);
        assert_int_equal(gw_hj212_parse(GW_HJ212_2017, seg_many, (size_t)n128 + 2, &pm), GW_OK);
        assert_int_equal(gw_hj212_emit(&pm, NULL), GW_HJ212_FACTORS_MAX);
    }
    /* The iterator stops for good after an error. */
    gw_hj212_packet p;
    const char *seg = "ST=32;CN=1062;CP=&&a=1;b;c=3&&";
    assert_int_equal(gw_hj212_parse(GW_HJ212_2017, seg, strlen(seg), &p), GW_OK);
    gw_hj212_cp_iter it;
    gw_hj212_kv kv;
    gw_hj212_cp_begin(&it, &p);
    assert_int_equal(gw_hj212_cp_next(&it, &kv), 1);
    assert_int_equal(gw_hj212_cp_next(&it, &kv), GW_EMALFORMED);
    assert_int_equal(gw_hj212_cp_next(&it, &kv), 0);
    assert_int_equal(gw_hj212_cp_find(&p, "c", &kv), GW_EMALFORMED);
    /* Empty fields and groups are skipped; unknown suffixes carry no reading. */
    char pkt[2048];
    collect c = {0};
    gw_sink sink = {on_reading, NULL, &c};
    seg = "ST=32;CN=2011;CP=&&;DataTime=20240315103000;;w01018-Rtd=1,,w01018-EFlag=A01,"
          "w01018-Info=x;&&";
    assert_int_equal(decode_seg(seg, &p, pkt, sizeof pkt), GW_OK);
    assert_int_equal(gw_hj212_emit(&p, &sink), 1);
    expect(&c, "w01018", 1, "mg/L", GW_Q_GOOD, GW_R_NONE, 1710469800000LL);
    /* Group numbering follows ';'. */
    gw_hj212_cp_begin(&it, &p);
    assert_int_equal(gw_hj212_cp_next(&it, &kv), 1);
    assert_int_equal(kv.group, 1);
    assert_int_equal(gw_hj212_cp_next(&it, &kv), 1);
    assert_int_equal(kv.group, 3);
}

/* ---- helpers of the API ---- */

static void test_time(void **state)
{
    int64_t ms;
    assert_int_equal(gw_hj212_time_ms("19700101080000", 14, &ms), GW_OK);
    assert_int_equal(ms, 0);
    assert_int_equal(gw_hj212_time_ms("20240315103000", 14, &ms), GW_OK);
    assert_int_equal(ms, 1710469800000LL);
    assert_int_equal(gw_hj212_time_ms("20160801085857223", 17, &ms), GW_OK);
    assert_int_equal(ms, 1470013137223LL);
    assert_int_equal(gw_hj212_time_ms("20240229235959", 14, &ms), GW_OK);
    assert_int_equal(ms, 1709222399000LL);
    /* Beijing midnight on 1 January is the previous day in UTC. */
    assert_int_equal(gw_hj212_time_ms("20250101000000", 14, &ms), GW_OK);
    assert_int_equal(ms, 1735660800000LL);
    assert_int_equal(gw_hj212_time_ms("20000229000000", 14, &ms), GW_OK);
    assert_int_equal(gw_hj212_time_ms("21000229000000", 14, &ms), GW_EMALFORMED);
    assert_int_equal(gw_hj212_time_ms("20240431000000", 14, &ms), GW_EMALFORMED);
    assert_int_equal(gw_hj212_time_ms("20240315103060", 14, &ms), GW_EMALFORMED);
    assert_int_equal(gw_hj212_time_ms("2024031510300", 13, &ms), GW_EMALFORMED);
    assert_int_equal(gw_hj212_time_ms("20240015103000", 14, &ms), GW_EMALFORMED);
    assert_int_equal(gw_hj212_time_ms("2024-3-1510300", 14, &ms), GW_EMALFORMED);
}

static void test_flag_mapping(void **state)
{
    static const struct {
        char f;
        int q, r;
    } t[] = {
        {'N', GW_Q_GOOD, GW_R_NONE},
        {0, GW_Q_GOOD, GW_R_NONE},
        {'F', GW_Q_BAD, GW_R_STOPPED},
        {'M', GW_Q_BAD, GW_R_MAINTENANCE},
        {'S', GW_Q_UNCERTAIN, GW_R_MANUAL},
        {'D', GW_Q_BAD, GW_R_SENSOR_FAULT},
        {'C', GW_Q_BAD, GW_R_CALIBRATING},
        {'T', GW_Q_UNCERTAIN, GW_R_OVER_RANGE},
        {'B', GW_Q_BAD, GW_R_COMM_FAIL},
        {'Z', GW_Q_UNCERTAIN, GW_R_DEVICE_FLAG},
        {'n', GW_Q_UNCERTAIN, GW_R_DEVICE_FLAG},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint8_t q = 99, r = 99;
        gw_hj212_flag_quality(t[i].f, &q, &r);
        assert_int_equal(q, t[i].q);
        assert_int_equal(r, t[i].r);
    }
    /* A multi-letter flag is a device flag, not a crash or a good value. */
    char pkt[2048];
    gw_hj212_packet p;
    collect c = {0};
    gw_sink sink = {on_reading, NULL, &c};
    const char *seg = "ST=32;CN=2011;CP=&&DataTime=20240315103000;w01018-Rtd=1,w01018-Flag=NN&&";
    assert_int_equal(decode_seg(seg, &p, pkt, sizeof pkt), GW_OK);
    assert_int_equal(gw_hj212_emit(&p, &sink), 1);
    expect(&c, "w01018", 1, "mg/L", GW_Q_UNCERTAIN, GW_R_DEVICE_FLAG, 1710469800000LL);
}

static void test_units(void **state)
{
    assert_string_equal(gw_hj212_unit("a34004", "22", 0), "ug/m3");
    assert_string_equal(gw_hj212_unit("w01018", "32", 0), "mg/L");
    assert_string_equal(gw_hj212_unit("w01018", "32", 1), "kg");
    assert_string_equal(gw_hj212_unit("w00000", NULL, 0), "L/s");
    assert_string_equal(gw_hj212_unit("w00000", NULL, 1), "m3");
    assert_string_equal(gw_hj212_unit("a21026", "31", 0), "mg/m3");
    assert_string_equal(gw_hj212_unit("a21026", "22", 0), "ug/m3");
    assert_string_equal(gw_hj212_unit("zz9999", "32", 0), "");
    assert_string_equal(gw_hj212_unit(NULL, NULL, 0), "");
    assert_true(gw_hj212_is_data_cn("2011"));
    assert_true(gw_hj212_is_data_cn("2031"));
    assert_false(gw_hj212_is_data_cn("1062"));
    assert_false(gw_hj212_is_data_cn("9014"));
    /* 2021 (status) is an upload and gets a 9014, but carries no readings here. */
    char pkt[2048], out[GW_HJ212_PACKET_MAX + 1];
    gw_hj212_packet p;
    const char *seg = "QN=20240315103000123;ST=32;CN=2021;PW=123456;MN=M1;Flag=5;CP=&&"
                      "DataTime=20240315103000;i12001-Info=1&&";
    assert_int_equal(decode_seg(seg, &p, pkt, sizeof pkt), GW_OK);
    assert_int_equal(gw_hj212_emit(&p, NULL), 0);
    assert_true(gw_hj212_build_reply(&p, 1, out, sizeof out) > 0);
    assert_non_null(strstr(out, ";CN=9014;"));
}

static void test_auth(void **state)
{
    char pkt[2048];
    size_t n = std_vector(pkt, sizeof pkt);
    gw_hj212_packet p;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    int q = 0;
    assert_int_equal(gw_hj212_auth(&p, "100000", "010000A8900016F000169DC0", &q), GW_OK);
    assert_int_equal(gw_hj212_auth(&p, NULL, NULL, &q), GW_OK);
    assert_int_equal(gw_hj212_auth(&p, "100001", NULL, &q), GW_EAUTH);
    assert_int_equal(q, GW_HJ212_QN_PW_ERROR);
    assert_int_equal(gw_hj212_auth(&p, "10000", NULL, NULL), GW_EAUTH);
    assert_int_equal(gw_hj212_auth(&p, "1000000", NULL, NULL), GW_EAUTH);
    assert_int_equal(gw_hj212_auth(&p, "", NULL, NULL), GW_EAUTH);
    assert_int_equal(gw_hj212_auth(&p, "100000", "010000A8900016F000169DC1", &q), GW_EAUTH);
    assert_int_equal(q, GW_HJ212_QN_MN_ERROR);
    /* The refusal as an answer. */
    char out[GW_HJ212_PACKET_MAX + 1];
    assert_true(gw_hj212_build_reply(&p, q, out, sizeof out) > 0);
    assert_non_null(strstr(out, "CN=9011;"));
    assert_non_null(strstr(out, "CP=&&QnRtn=4&&"));
}

static void test_answers(void **state)
{
    char pkt[2048], out[GW_HJ212_PACKET_MAX + 1];
    size_t n = std_vector(pkt, sizeof pkt);
    gw_hj212_packet p, a;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    int rl = gw_hj212_build_exec_result(&p, GW_HJ212_EXE_OK, out, sizeof out);
    assert_true(rl > 0);
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)out, (size_t)rl, &a), GW_OK);
    assert_string_equal(a.cn, "9012");
    assert_int_equal(gw_hj212_cp_find(&a, "ExeRtn", NULL), 1);
    rl = gw_hj212_build_request_ack(&p, GW_HJ212_QN_CRC_ERROR, out, sizeof out);
    assert_true(rl > 0);
    assert_non_null(strstr(out, "QnRtn=9&&"));
    assert_int_equal(gw_hj212_build_request_ack(&p, -1, out, sizeof out), GW_EINVAL);
    /* Fields absent from the request are left out of the answer. */
    const char *seg = "ST=32;CN=2011;Flag=5;CP=&&DataTime=20240315103000&&";
    assert_int_equal(decode_seg(seg, &p, pkt, sizeof pkt), GW_OK);
    rl = gw_hj212_build_reply(&p, 1, out, sizeof out);
    const char *want = "ST=91;CN=9014;Flag=4;CP=&&&&";
    assert_int_equal(rl, (int)strlen(want) + GW_HJ212_OVERHEAD);
    assert_memory_equal(out + 6, want, strlen(want));
    /* frame() of an empty segment. */
    assert_int_equal(gw_hj212_frame(GW_HJ212_2017, "", 0, out, sizeof out), 12);
    assert_string_equal(out, "##0000FFFF\r\n");
}

static void test_version_2025(void **state)
{
    char pkt[2048], out[256];
    size_t n = std_vector(pkt, sizeof pkt);
    gw_hj212_packet p;
    gw_hj212_span sp;
    assert_true(gw_hj212_version_supported(GW_HJ212_2017));
    assert_false(gw_hj212_version_supported(GW_HJ212_2025));
    assert_string_equal(gw_hj212_version_name(GW_HJ212_2025), "2025");
    assert_int_equal(gw_hj212_decode(GW_HJ212_2025, (uint8_t *)pkt, n, &p), GW_EUNSUPPORTED);
    assert_int_equal(gw_hj212_scan(GW_HJ212_2025, (uint8_t *)pkt, n, 0, &sp), GW_EUNSUPPORTED);
    assert_int_equal(gw_hj212_parse(GW_HJ212_2025, STD_SEG, 101, &p), GW_EUNSUPPORTED);
    assert_int_equal(gw_hj212_frame(GW_HJ212_2025, "x", 1, out, sizeof out), GW_EUNSUPPORTED);
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, n, &p), GW_OK);
    p.version = GW_HJ212_2025;
    assert_int_equal(gw_hj212_build_data_ack(&p, out, sizeof out), GW_EUNSUPPORTED);
    cJSON *j = gw_hj212_to_json(GW_HJ212_2025, pkt, n);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "error")->valuestring, "unsupported");
    cJSON_Delete(j);
}

static void test_json(void **state)
{
    char pkt[2048];
    size_t n = std_vector(pkt, sizeof pkt);
    /* As typed on a command line: without CR LF. */
    cJSON *j = gw_hj212_to_json(GW_HJ212_2017, pkt, n - 2);
    assert_non_null(j);
    assert_null(cJSON_GetObjectItem(j, "error"));
    assert_string_equal(cJSON_GetObjectItem(j, "protocol")->valuestring, "hj212");
    assert_string_equal(cJSON_GetObjectItem(j, "version")->valuestring, "2017");
    assert_int_equal(cJSON_GetObjectItem(j, "length")->valueint, 101);
    assert_string_equal(cJSON_GetObjectItem(j, "crc")->valuestring, "1C80");
    assert_string_equal(cJSON_GetObjectItem(j, "cn")->valuestring, "1062");
    assert_string_equal(cJSON_GetObjectItem(j, "mn")->valuestring, "010000A8900016F000169DC0");
    assert_int_equal(cJSON_GetObjectItem(j, "flag")->valueint, 5);
    assert_int_equal(cJSON_GetObjectItem(j, "flag_version")->valueint, 1);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "reply_required")));
    cJSON *cp = cJSON_GetObjectItem(j, "cp");
    assert_int_equal(cJSON_GetArraySize(cp), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(cp, 0), "RtdInterval")->valuestring,
                        "30");
    assert_non_null(strstr(cJSON_GetObjectItem(j, "reply")->valuestring, "CN=9011"));
    cJSON_Delete(j);

    /* A data packet: readings with names, units and qualities. */
    n = own_vector("hour_2061", pkt, sizeof pkt);
    j = gw_hj212_to_json(GW_HJ212_2017, pkt, n);
    assert_non_null(j);
    cJSON *rd = cJSON_GetObjectItem(j, "readings");
    assert_int_equal(cJSON_GetArraySize(rd), 8);
    cJSON *r0 = cJSON_GetArrayItem(rd, 0);
    assert_string_equal(cJSON_GetObjectItem(r0, "metric")->valuestring, "w01018_avg_hour");
    assert_string_equal(cJSON_GetObjectItem(r0, "unit")->valuestring, "mg/L");
    assert_string_equal(cJSON_GetObjectItem(r0, "quality")->valuestring, gw_quality_name(GW_Q_BAD));
    assert_string_equal(cJSON_GetObjectItem(r0, "reason")->valuestring,
                        gw_reason_name(GW_R_MAINTENANCE));
    assert_float_equal(cJSON_GetObjectItem(r0, "obs_ms")->valuedouble, 1710468000000.0, 0.5);
    assert_non_null(strstr(cJSON_GetObjectItem(j, "reply")->valuestring, "CN=9014"));
    cJSON_Delete(j);

    /* Bad CRC: error plus the CRC that would have been right. */
    n = std_vector(pkt, sizeof pkt);
    pkt[n - 3] = '1';
    j = gw_hj212_to_json(GW_HJ212_2017, pkt, n);
    assert_string_equal(cJSON_GetObjectItem(j, "error")->valuestring, "crc");
    assert_string_equal(cJSON_GetObjectItem(j, "crc_expected")->valuestring, "1C80");
    cJSON_Delete(j);
    j = gw_hj212_to_json(GW_HJ212_2017, "##", 2);
    assert_string_equal(cJSON_GetObjectItem(j, "error")->valuestring, "malformed");
    cJSON_Delete(j);
    j = gw_hj212_to_json(GW_HJ212_2017, NULL, 0);
    assert_string_equal(cJSON_GetObjectItem(j, "error")->valuestring, "malformed");
    cJSON_Delete(j);
}

/* ---- issue 10: field variants, strict by default ---- */

static void test_quirk_long_password(void **state)
{
    const char *seg = "QN=20240601100000000;ST=32;CN=2011;PW=123456789;MN=ABC;Flag=4;"
                      "CP=&&DataTime=20240601100000;w01018-Rtd=12.5&&";
    gw_hj212_packet p;
    assert_int_equal(gw_hj212_parse(GW_HJ212_2017, seg, strlen(seg), &p), GW_EMALFORMED);
    assert_int_equal(gw_hj212_parse_q(GW_HJ212_2017, GW_HJ212_Q_LONG_PW, seg, strlen(seg), &p),
                     GW_OK);
    assert_string_equal(p.pw, "123456789");
    assert_int_equal(p.quirks, GW_HJ212_Q_LONG_PW);
    /* A 6-character password needs no quirk, even from a quirky station. */
    const char *seg6 = "ST=32;CN=2011;PW=123456;CP=&&DataTime=20240601100000&&";
    assert_int_equal(gw_hj212_parse_q(GW_HJ212_2017, GW_HJ212_Q_LONG_PW, seg6, strlen(seg6), &p),
                     GW_OK);
    assert_int_equal(p.quirks, 0);
    /* The configuration check agrees with the parser (issue 15 item 7). */
    assert_true(gw_hj212_password_ok(GW_HJ212_2017, 0, "123456"));
    assert_false(gw_hj212_password_ok(GW_HJ212_2017, 0, "123456789"));
    assert_true(gw_hj212_password_ok(GW_HJ212_2017, GW_HJ212_Q_LONG_PW, "123456789"));
    assert_false(gw_hj212_password_ok(GW_HJ212_2017, GW_HJ212_Q_LONG_PW, "12345678901234567"));
    assert_false(gw_hj212_password_ok(GW_HJ212_2017, 0, ""));
    assert_false(gw_hj212_password_ok(GW_HJ212_2017, 0, "12;456"));
}

static void test_quirk_crc_modbus_low_byte_first(void **state)
{
    /* The standard's example with the CRC a Modbus-CRC station writes: register 0759,
     * sent low byte first = "5907" (computed here, bitwise, independently of the codec). */
    const char *seg = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;"
                      "Flag=5;CP=&&RtdInterval=30&&";
    uint16_t m = modbus_crc((const uint8_t *)seg, strlen(seg));
    assert_int_equal(m, 0x0759);
    char pkt[256];
    int n = snprintf(pkt, sizeof pkt, "##%04zu%s%02X%02X\r\n", strlen(seg), seg, m & 0xFF, m >> 8);
    assert_non_null(strstr(pkt, "5907\r\n"));
    gw_hj212_packet p;
    assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, (size_t)n, &p), GW_ECRC);
    assert_int_equal(
        gw_hj212_decode_q(GW_HJ212_2017, GW_HJ212_Q_CRC_MODBUS_LSB, (uint8_t *)pkt, (size_t)n, &p),
        GW_OK);
    assert_int_equal(p.quirks, GW_HJ212_Q_CRC_MODBUS_LSB);
    gw_hj212_span sp;
    assert_int_equal(gw_hj212_scan(GW_HJ212_2017, (uint8_t *)pkt, (size_t)n, 0, &sp), GW_ECRC);
    assert_int_equal(gw_hj212_scan_q(GW_HJ212_2017, GW_HJ212_Q_CRC_MODBUS_LSB, (uint8_t *)pkt,
                                     (size_t)n, 0, &sp),
                     1);
    assert_int_equal(sp.quirks, GW_HJ212_Q_CRC_MODBUS_LSB);
    /* A good HJ212 CRC from the same station still passes and needs no quirk. */
    char good[256];
    int gn = gw_hj212_frame(GW_HJ212_2017, seg, strlen(seg), good, sizeof good);
    assert_int_equal(gw_hj212_decode_q(GW_HJ212_2017, GW_HJ212_Q_CRC_MODBUS_LSB, (uint8_t *)good,
                                       (size_t)gn, &p),
                     GW_OK);
    assert_int_equal(p.quirks, 0);
    /* The answer to a quirky packet is framed the station's way. */
    assert_int_equal(
        gw_hj212_decode_q(GW_HJ212_2017, GW_HJ212_Q_CRC_MODBUS_LSB, (uint8_t *)pkt, (size_t)n, &p),
        GW_OK);
    char out[512];
    int rl = gw_hj212_build_reply(&p, GW_HJ212_QN_READY, out, sizeof out);
    assert_true(rl > 12);
    uint16_t rm = modbus_crc((const uint8_t *)out + 6, (size_t)rl - 12);
    char want[8];
    snprintf(want, sizeof want, "%02X%02X\r\n", rm & 0xFF, rm >> 8);
    assert_memory_equal(out + rl - 6, want, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc_vector_not_modbus),
        cmocka_unit_test(test_vector_decodes),
        cmocka_unit_test(test_vector_reply_9011),
        cmocka_unit_test(test_own_2011),
        cmocka_unit_test(test_own_2051),
        cmocka_unit_test(test_own_2061_and_9014),
        cmocka_unit_test(test_own_2031),
        cmocka_unit_test(test_own_multi_packet),
        cmocka_unit_test(test_sink_stop),
        cmocka_unit_test(test_scan_garbage_and_multiple),
        cmocka_unit_test(test_scan_bogus_header_resync),
        cmocka_unit_test(test_scan_max_data),
        cmocka_unit_test(test_truncation_every_length),
        cmocka_unit_test(test_wrong_length),
        cmocka_unit_test(test_bad_crc),
        cmocka_unit_test(test_hostile_header),
        cmocka_unit_test(test_hostile_cp),
        cmocka_unit_test(test_time),
        cmocka_unit_test(test_flag_mapping),
        cmocka_unit_test(test_units),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_answers),
        cmocka_unit_test(test_version_2025),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_quirk_long_password),
        cmocka_unit_test(test_quirk_crc_modbus_low_byte_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
