/* Reassembler tests: bounds, order, duplicates, a lost packet (NAK then timeout), and
 * the two real uses: an SL651 M3 picture (36H) and HJ 212 PNUM/PNO split packets, from
 * frames built here by hand with their own CRCs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "protocols/hj212.h"
#include "protocols/reasm.h"
#include "protocols/sl651.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const gw_reasm_limits lim = {
    .max_open = 4,
    .max_packets = 16,
    .max_message = 1000,
    .max_total = 1500,
    .timeout_ms = 30000,
    .max_age_ms = 120000,
};

static void test_in_order_and_shuffled(void **state)
{
    gw_reasm *r = gw_reasm_new(&lim);
    assert_non_null(r);
    uint8_t *out;
    size_t n;
    const char *parts[] = {"ab", "cd", "ef", "gh", "ij"};
    for (unsigned i = 1; i <= 4; i++)
        assert_int_equal(
            gw_reasm_add(r, "s1", 5, i, (const uint8_t *)parts[i - 1], 2, 1000 * i, &out, &n),
            GW_EAGAIN);
    assert_int_equal(gw_reasm_add(r, "s1", 5, 5, (const uint8_t *)"ij", 2, 6000, &out, &n), GW_OK);
    assert_int_equal(n, 10);
    assert_memory_equal(out, "abcdefghij", 10);
    free(out);
    /* Out of order, with a duplicate, and two stations interleaved. */
    static const unsigned order[] = {3, 1, 3, 2};
    for (int i = 0; i < 4; i++) {
        char c = (char)('0' + order[i]);
        if (i == 0) {
            uint8_t *o3;
            size_t n3;
            assert_int_equal(gw_reasm_add(r, "s3", 2, 1, (const uint8_t *)"x", 1, 0, &o3, &n3),
                             GW_EAGAIN);
        }
        int rc = gw_reasm_add(r, "s2", 3, order[i], (const uint8_t *)&c, 1, 0, &out, &n);
        if (i < 3)
            assert_int_equal(rc, GW_EAGAIN);
        else {
            assert_int_equal(rc, GW_OK);
            assert_memory_equal(out, "123", 3);
            free(out);
        }
    }
    gw_reasm_stats st;
    gw_reasm_get_stats(r, &st);
    assert_int_equal(st.completed, 2);
    assert_true(st.duplicates >= 1);
    assert_int_equal(st.open, 1); /* s3 waits for its packet 2 */
    gw_reasm_free(r);
}

typedef struct exp_coll {
    int n;
    unsigned have, total;
    char key[GW_REASM_KEY_MAX];
} exp_coll;

static void on_expired(void *ctx, const char *key, unsigned have, unsigned total)
{
    exp_coll *e = ctx;
    e->n++;
    e->have = have;
    e->total = total;
    snprintf(e->key, sizeof e->key, "%s", key);
}

static void test_lost_packet(void **state)
{
    gw_reasm *r = gw_reasm_new(&lim);
    uint8_t *out;
    size_t n;
    static const unsigned sent[] = {1, 2, 4, 5}; /* packet 3 is lost */
    for (int i = 0; i < 4; i++)
        assert_int_equal(gw_reasm_add(r, "st", 5, sent[i], (const uint8_t *)"zz", 2, 100, &out, &n),
                         GW_EAGAIN);
    unsigned total = 0;
    assert_int_equal(gw_reasm_first_missing(r, "st", &total), 3); /* the NAK names it */
    assert_int_equal(total, 5);
    assert_int_equal(gw_reasm_next_deadline(r), 100 + 30000);
    exp_coll e = {0};
    assert_int_equal(gw_reasm_expire(r, 30099, on_expired, &e), 0);
    assert_int_equal(gw_reasm_expire(r, 30100, on_expired, &e), 1);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.have, 4);
    assert_int_equal(e.total, 5);
    assert_string_equal(e.key, "st");
    gw_reasm_stats st;
    gw_reasm_get_stats(r, &st);
    assert_int_equal(st.timeouts, 1);
    assert_int_equal(st.open, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(gw_reasm_first_missing(r, "st", NULL), 0);
    /* The resend arrives in time the second round: complete. */
    for (int i = 0; i < 4; i++)
        gw_reasm_add(r, "st", 5, sent[i], (const uint8_t *)"zz", 2, 40000, &out, &n);
    assert_int_equal(gw_reasm_add(r, "st", 5, 3, (const uint8_t *)"33", 2, 41000, &out, &n), GW_OK);
    assert_memory_equal(out, "zzzz33zzzz", 10);
    free(out);
    /* max_age bounds a slow drip even when each packet is in time. */
    for (unsigned i = 1; i <= 5; i++) /* 229 s .. 329 s, 25 s apart: each in time */
        gw_reasm_add(r, "slow", 8, i, (const uint8_t *)"s", 1, 204000 + (int64_t)i * 25000, &out,
                     &n);
    assert_int_equal(gw_reasm_next_deadline(r), 229000 + 120000);
    assert_int_equal(gw_reasm_expire(r, 229000 + 119999, NULL, NULL), 0);
    assert_int_equal(gw_reasm_expire(r, 229000 + 120000, NULL, NULL), 1);
    gw_reasm_free(r);
}

static void test_bounds(void **state)
{
    gw_reasm *r = gw_reasm_new(&lim);
    uint8_t big[800] = {0}, *out;
    size_t n;
    /* Per message. */
    assert_int_equal(gw_reasm_add(r, "a", 2, 1, big, 800, 0, &out, &n), GW_EAGAIN);
    assert_int_equal(gw_reasm_add(r, "a", 2, 2, big, 800, 0, &out, &n), GW_EFULL);
    assert_int_equal(gw_reasm_first_missing(r, "a", NULL), 0); /* dropped, memory freed */
    /* Over all messages. */
    assert_int_equal(gw_reasm_add(r, "a", 2, 1, big, 800, 0, &out, &n), GW_EAGAIN);
    assert_int_equal(gw_reasm_add(r, "b", 2, 1, big, 800, 0, &out, &n), GW_EFULL);
    /* Messages at once. */
    assert_int_equal(gw_reasm_add(r, "c", 2, 1, big, 1, 0, &out, &n), GW_EAGAIN);
    assert_int_equal(gw_reasm_add(r, "d", 2, 1, big, 1, 0, &out, &n), GW_EAGAIN);
    assert_int_equal(gw_reasm_add(r, "e", 2, 1, big, 1, 0, &out, &n), GW_EAGAIN);
    assert_int_equal(gw_reasm_add(r, "f", 2, 1, big, 1, 0, &out, &n), GW_EFULL);
    /* Numbers out of range and a total that changes. */
    assert_int_equal(gw_reasm_add(r, "c", 2, 3, big, 1, 0, &out, &n), GW_EINVAL);
    assert_int_equal(gw_reasm_add(r, "c", 0, 0, big, 1, 0, &out, &n), GW_EINVAL);
    assert_int_equal(gw_reasm_add(r, "c", 17, 2, big, 1, 0, &out, &n), GW_EINVAL);
    assert_int_equal(gw_reasm_add(r, "c", 3, 2, big, 1, 0, &out, &n), GW_EINVAL);
    assert_int_equal(gw_reasm_first_missing(r, "c", NULL), 0);
    /* A new packet 1 restarts the message. */
    assert_int_equal(gw_reasm_add(r, "d", 2, 1, (const uint8_t *)"N", 1, 0, &out, &n), GW_EAGAIN);
    assert_int_equal(gw_reasm_add(r, "d", 2, 2, (const uint8_t *)"2", 1, 0, &out, &n), GW_OK);
    assert_memory_equal(out, "N2", 2);
    free(out);
    gw_reasm_stats st;
    gw_reasm_get_stats(r, &st);
    assert_int_equal(st.restarted, 1);
    assert_true(st.refused >= 6);
    assert_true(gw_reasm_drop(r, "a"));
    assert_false(gw_reasm_drop(r, "a"));
    gw_reasm_limits bad = lim;
    bad.max_open = 0;
    assert_null(gw_reasm_new(&bad));
    gw_reasm_free(r);
}

/* ---- SL651 M3: a 3-packet picture ---- */

static uint16_t crc_bitwise(const uint8_t *p, size_t n)
{
    uint16_t r = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        r ^= p[i];
        for (int b = 0; b < 8; b++)
            r = (r & 1) ? (uint16_t)((r >> 1) ^ 0xA001) : (uint16_t)(r >> 1);
    }
    return r;
}

/* HEX SYN packet of station 0012345678, function 36; the length counts the counter. */
static size_t m3_packet(unsigned total, unsigned no, const uint8_t *part, size_t n, uint8_t *out)
{
    static const uint8_t head[] = {0x7E, 0x7E, 0x01, 0x00, 0x12, 0x34,
                                   0x56, 0x78, 0x12, 0x34, 0x36};
    size_t k = sizeof head, len = 3 + n;
    memcpy(out, head, k);
    out[k++] = (uint8_t)(len >> 8);
    out[k++] = (uint8_t)len;
    out[k++] = GW_SL651_SYN;
    out[k++] = (uint8_t)(total >> 4);
    out[k++] = (uint8_t)((total & 15) << 4 | no >> 8);
    out[k++] = (uint8_t)no;
    memcpy(out + k, part, n);
    k += n;
    out[k++] = no == total ? GW_SL651_ETX : GW_SL651_ETB;
    uint16_t c = crc_bitwise(out, k);
    out[k++] = (uint8_t)(c >> 8);
    out[k++] = (uint8_t)c;
    return k;
}

static void test_sl651_m3_picture(void **state)
{
    /* Only packet 1 carries serial, send time, F1F1, type, F0F0 and F3F3. */
    uint8_t body[300];
    static const uint8_t head[] = {0x00, 0x21, 0x24, 0x06, 0x01, 0x10, 0x00, 0x00, 0xF1,
                                   0xF1, 0x00, 0x12, 0x34, 0x56, 0x78, 0x48, 0xF0, 0xF0,
                                   0x24, 0x06, 0x01, 0x10, 0x00, 0xF3, 0xF3};
    memcpy(body, head, sizeof head);
    uint8_t jpeg[200];
    for (size_t i = 0; i < sizeof jpeg; i++)
        jpeg[i] = (uint8_t)(i * 7 + 1);
    jpeg[0] = 0xFF;
    jpeg[1] = 0xD8;
    memcpy(body + sizeof head, jpeg, sizeof jpeg);
    size_t blen = sizeof head + sizeof jpeg, cut[4] = {0, 80, 160, blen};
    gw_reasm *r = gw_reasm_new(&lim);
    uint8_t *out = NULL;
    size_t on = 0;
    /* Packets arrive 1, 3, (2 lost), then 2 is resent after the NAK. */
    static const unsigned order[] = {1, 3, 2};
    for (int i = 0; i < 3; i++) {
        unsigned no = order[i];
        uint8_t fr[200];
        size_t n = m3_packet(3, no, body + cut[no - 1], cut[no] - cut[no - 1], fr);
        gw_sl651_frame f;
        assert_int_equal(gw_sl651_frame_parse(fr, n, &f, NULL), (int)n);
        assert_int_equal(f.packet_total, 3);
        assert_int_equal(f.packet_no, no);
        int rc = gw_reasm_add(r, f.station_hex, f.packet_total, f.packet_no, f.body, f.body_len,
                              1000, &out, &on);
        if (i == 1) {
            assert_int_equal(rc, GW_EAGAIN);
            assert_int_equal(gw_reasm_first_missing(r, f.station_hex, NULL), 2);
            /* The centre's NAK names packet 2 of 3. */
            uint8_t nak[64];
            gw_sl651_time t = {24, 6, 1, 10, 0, 5};
            int nn = gw_sl651_encode_confirm_m3(&f, 0x21, &t, GW_SL651_NAK, 3, 2, nak, sizeof nak);
            assert_true(nn > 0);
            gw_sl651_frame d;
            assert_int_equal(gw_sl651_frame_parse(nak, (size_t)nn, &d, NULL), nn);
            assert_int_equal(d.direction, GW_SL651_DIR_DOWN);
            assert_int_equal(d.start, GW_SL651_SYN);
            assert_int_equal(d.end, GW_SL651_NAK);
            assert_int_equal(d.packet_total, 3);
            assert_int_equal(d.packet_no, 2);
            assert_int_equal(d.body_len, 8);
            assert_int_equal(d.length, 11);
        }
    }
    assert_non_null(out);
    assert_int_equal(on, blen);
    /* The joined body decodes as one 36H report with the picture at its end. */
    uint8_t whole[400];
    size_t k = 0;
    static const uint8_t h2[] = {0x7E, 0x7E, 0x01, 0x00, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34, 0x36};
    memcpy(whole, h2, sizeof h2);
    k = sizeof h2;
    whole[k++] = (uint8_t)(on >> 8);
    whole[k++] = (uint8_t)on;
    whole[k++] = GW_SL651_STX;
    memcpy(whole + k, out, on);
    k += on;
    whole[k++] = GW_SL651_ETX;
    uint16_t c = crc_bitwise(whole, k);
    whole[k++] = (uint8_t)(c >> 8);
    whole[k++] = (uint8_t)c;
    gw_sl651_frame f;
    assert_int_equal(gw_sl651_frame_parse(whole, k, &f, NULL), (int)k);
    gw_sl651_report rep;
    assert_int_equal(gw_sl651_decode(&f, NULL, NULL, &rep), GW_OK);
    assert_int_equal(rep.serial, 0x21);
    assert_non_null(rep.picture);
    assert_int_equal(rep.picture_len, sizeof jpeg);
    assert_memory_equal(rep.picture, jpeg, sizeof jpeg);
    free(out);
    gw_reasm_free(r);
}

/* ---- HJ 212 PNUM/PNO ---- */

static int count_reading(void *ctx, const gw_reading *r)
{
    (*(int *)ctx)++;
    return 0;
}

static void test_hj212_pnum_pno(void **state)
{
    /* Two packets of one hour record: the second holds the rest of the factors. */
    const char *segs[2] = {
        "QN=20240601100000000;ST=32;CN=2061;PW=123456;MN=AAA;Flag=7;PNUM=2;PNO=1;"
        "CP=&&DataTime=20240601090000;w01018-Avg=10.5,w01018-Flag=N&&",
        "QN=20240601100000000;ST=32;CN=2061;PW=123456;MN=AAA;Flag=7;PNUM=2;PNO=2;"
        "CP=&&w21003-Avg=0.8,w21003-Flag=N;w21011-Avg=0.12,w21011-Flag=N&&",
    };
    gw_reasm *r = gw_reasm_new(&lim);
    uint8_t *out = NULL;
    size_t on = 0;
    gw_hj212_packet first;
    for (int i = 1; i >= 0; i--) { /* second packet first */
        char pkt[600];
        int n = gw_hj212_frame(GW_HJ212_2017, segs[i], strlen(segs[i]), pkt, sizeof pkt);
        assert_true(n > 0);
        gw_hj212_packet p;
        assert_int_equal(gw_hj212_decode(GW_HJ212_2017, (uint8_t *)pkt, (size_t)n, &p), GW_OK);
        assert_int_equal(p.pnum, 2);
        assert_true(p.flag & GW_HJ212_FLAG_D);
        /* Each packet with A set gets its own 9014 at once (per-packet confirm). */
        char ack[300];
        assert_true(gw_hj212_build_reply(&p, GW_HJ212_QN_READY, ack, sizeof ack) > 0);
        assert_non_null(strstr(ack, "CN=9014"));
        char key[GW_REASM_KEY_MAX];
        snprintf(key, sizeof key, "%s/%s/%s", p.mn, p.cn, p.qn);
        /* Groups joined with ';': packets after the first start with one. */
        char part[600];
        int pl = snprintf(part, sizeof part, "%s%.*s", p.pno > 1 ? ";" : "", (int)p.cp_len, p.cp);
        int rc = gw_reasm_add(r, key, (unsigned)p.pnum, (unsigned)p.pno, (uint8_t *)part,
                              (size_t)pl, 0, &out, &on);
        if (p.pno == 1)
            first = p;
        assert_int_equal(rc, i == 0 ? GW_OK : GW_EAGAIN);
    }
    first.cp = (const char *)out;
    first.cp_len = on;
    first.pnum = first.pno = 0;
    int nr = 0;
    gw_sink sink = {count_reading, NULL, &nr};
    assert_int_equal(gw_hj212_emit(&first, &sink), 3);
    assert_int_equal(nr, 3);
    free(out);
    gw_reasm_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_and_shuffled),
        cmocka_unit_test(test_lost_packet),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_sl651_m3_picture),
        cmocka_unit_test(test_hj212_pnum_pno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
