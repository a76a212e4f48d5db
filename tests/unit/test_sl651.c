/* SL651-2014 codec tests. The published vectors ($GW_VECTORS/sl651.txt) and our own
 * hand-built ones (tests/vectors/sl651_own.txt) are read at run time and every
 * assertion written in their comments is checked against the decode. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "protocols/sl651.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ----------------------------------------------------------------------------- */

typedef struct coll {
    gw_reading r[64];
    int nr;
    gw_event e[32];
    int ne;
    int stop_after; /* return an error from the n-th reading (0 = never) */
} coll;

static int on_r(void *ctx, const gw_reading *r)
{
    coll *c = ctx;
    if (c->nr < 64)
        c->r[c->nr] = *r;
    c->nr++;
    if (c->stop_after && c->nr >= c->stop_after)
        return GW_EFULL;
    return 0;
}

static int on_e(void *ctx, const gw_event *e)
{
    coll *c = ctx;
    if (c->ne < 32)
        c->e[c->ne] = *e;
    c->ne++;
    return 0;
}

static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (s[0] && s[1] && n < cap) {
        unsigned v;
        if (sscanf(s, "%2x", &v) != 1)
            break;
        out[n++] = (uint8_t)v;
        s += 2;
    }
    return n;
}

/* Beijing "YY-MM-DD" + "hh:mm[:ss]" -> UTC ms. */
static int64_t bj_ms(const char *date, const char *tod)
{
    gw_sl651_time t = {0};
    unsigned y, mo, d, h, mi, s = 0;
    assert_int_equal(sscanf(date, "%u-%u-%u", &y, &mo, &d), 3);
    assert_true(sscanf(tod, "%u:%u:%u", &h, &mi, &s) >= 2);
    t.yy = (uint8_t)y;
    t.mo = (uint8_t)mo;
    t.dd = (uint8_t)d;
    t.hh = (uint8_t)h;
    t.mi = (uint8_t)mi;
    t.ss = (uint8_t)s;
    int64_t ms;
    assert_int_equal(gw_sl651_time_to_ms(&t, &ms), GW_OK);
    return ms;
}

typedef struct vec {
    uint8_t frame[2048];
    size_t len;
    char comments[4096];
    char title[4096];
} vec;

/* Reads a vector file: a hex frame line, then its '#' comment lines. */
static int load_vectors(const char *path, vec *v, int max)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    char line[4096], title[4096] = "";
    int n = -1, in_frame = 0; /* in_frame: comment lines belong to frame n until a blank line */
    while (fgets(line, sizeof line, fp)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0') {
            in_frame = 0;
            continue;
        }
        if (line[0] == '#') {
            if (in_frame) {
                if (strlen(v[n].comments) + strlen(line) + 2 < sizeof v[n].comments) {
                    strcat(v[n].comments, line + 1);
                    strcat(v[n].comments, "\n");
                }
            } else if (line[1] == ' ' && line[2] != ' ') {
                snprintf(title, sizeof title, "%s", line);
            }
            continue;
        }
        if (n + 1 >= max)
            break;
        n++;
        memset(&v[n], 0, sizeof v[n]);
        snprintf(v[n].title, sizeof v[n].title, "%s", title);
        v[n].len = unhex(line, v[n].frame, sizeof v[n].frame);
        in_frame = 1;
    }
    fclose(fp);
    return n + 1;
}

static const char *vec_dir(void)
{
    const char *d = getenv("GW_VECTORS");
    return d && *d ? d : "../shared/vectors";
}

static const gw_reading *find_reading(const coll *c, const char *metric, double value, int missing,
                                      int64_t obs)
{
    for (int i = 0; i < c->nr && i < 64; i++) {
        const gw_reading *r = &c->r[i];
        if (strcmp(r->metric, metric) != 0)
            continue;
        if (obs && r->obs_ms != obs)
            continue;
        if (missing) {
            if (r->quality == GW_Q_BAD && r->reason == GW_R_MISSING)
                return r;
            continue;
        }
        if (r->quality == GW_Q_GOOD && fabs(r->value - value) < 1e-9)
            return r;
    }
    return NULL;
}

static int ctl_from_name(const char *s)
{
    static const struct {
        const char *n;
        int v;
    } t[] = {{"STX", 2}, {"SYN", 0x16}, {"ETX", 3}, {"ETB", 0x17}, {"ENQ", 5},
             {"ACK", 6}, {"NAK", 0x15}, {"EOT", 4}, {"ESC", 0x1B}};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(t[i].n, s) == 0)
            return t[i].v;
    fail_msg("unknown control name %s", s);
    return -1;
}

/* Checks one "elements:" item: "<id> <words...> <value> <unit>". */
static void check_element_item(const char *title, char *item, const coll *c)
{
    char *tk[16];
    int n = 0;
    for (char *s = strtok(item, " \t"); s && n < 16; s = strtok(NULL, " \t"))
        tk[n++] = s;
    if (n == 0)
        return;
    assert_true(n >= 3);
    unsigned id;
    assert_int_equal(sscanf(tk[0], "%x", &id), 1);
    const char *unit = NULL;
    const char *metric = gw_sl651_element_metric((uint8_t)id, &unit);
    if (!metric)
        fail_msg("%s: element %s not in the table", title, tk[0]);
    double value = strtod(tk[n - 2], NULL);
    if (strcmp(unit, tk[n - 1]) != 0)
        fail_msg("%s: element %s unit %s, expected %s", title, tk[0], unit, tk[n - 1]);
    if (!find_reading(c, metric, value, 0, 0))
        fail_msg("%s: no reading %s = %g", title, metric, value);
}

/* Decodes one vector and checks every assertion in its comments. */
static void check_vector(const vec *v)
{
    gw_sl651_frame f;
    gw_sl651_stats st = {0};
    int r = gw_sl651_frame_parse(v->frame, v->len, &f, &st);
    if (r != (int)v->len)
        fail_msg("%s: parse returned %d for %zu bytes", v->title, r, v->len);
    coll c = {0};
    gw_sink sink = {on_r, on_e, &c};
    gw_sl651_report rep;
    r = gw_sl651_decode(&f, NULL, &sink, &rep);
    if (r != GW_OK)
        fail_msg("%s: decode returned %d", v->title, r);
    assert_int_equal(rep.readings, (unsigned)c.nr);
    assert_int_equal(rep.events, (unsigned)c.ne);
    for (int i = 0; i < c.nr && i < 64; i++)
        assert_string_equal(c.r[i].device, ""); /* the caller fills the registry id */

    char buf[4096];
    snprintf(buf, sizeof buf, "%s", v->comments);
    int in_elements = 0;
    char *save_line;
    for (char *line = strtok_r(buf, "\n", &save_line); line;
         line = strtok_r(NULL, "\n", &save_line)) {
        char *p = line;
        while (*p == ' ')
            p++;
        if (strncmp(p, "elements:", 9) == 0) {
            in_elements = 1;
            p += 9;
        } else if (strncmp(p, "reading:", 8) == 0) {
            char metric[32], val[32], unit[16], date[16], tod[16];
            assert_int_equal(
                sscanf(p + 8, "%31s %31s %15s @ %15s %15s", metric, val, unit, date, tod), 5);
            int missing = strcmp(val, "missing") == 0;
            const gw_reading *rd = find_reading(&c, metric, missing ? 0 : strtod(val, NULL),
                                                missing, bj_ms(date, tod));
            if (!rd)
                fail_msg("%s: no reading %s %s at %s %s", v->title, metric, val, date, tod);
            assert_string_equal(rd->unit, unit);
            in_elements = 0;
            continue;
        } else if (strncmp(p, "event:", 6) == 0) {
            char kind[32];
            int active;
            assert_int_equal(sscanf(p + 6, " %31[^=]=%d", kind, &active), 2);
            int found = 0;
            for (int i = 0; i < c.ne && i < 32; i++)
                if (strcmp(c.e[i].kind, kind) == 0) {
                    found = 1;
                    if (c.e[i].active != active)
                        fail_msg("%s: event %s active=%d, expected %d", v->title, kind,
                                 c.e[i].active, active);
                }
            if (!found)
                fail_msg("%s: no event %s", v->title, kind);
            in_elements = 0;
            continue;
        } else if (strchr(p, '=')) {
            in_elements = 0;
        }
        if (in_elements) {
            char *save_item;
            for (char *item = strtok_r(p, ";", &save_item); item;
                 item = strtok_r(NULL, ";", &save_item))
                check_element_item(v->title, item, &c);
            continue;
        }
        /* key=value tokens */
        char *tk[32];
        int n = 0;
        for (char *s = strtok(p, " \t"); s && n < 32; s = strtok(NULL, " \t"))
            tk[n++] = s;
        for (int i = 0; i < n; i++) {
            char *eq = strchr(tk[i], '=');
            if (!eq)
                continue;
            *eq = '\0';
            const char *k = tk[i], *val = eq + 1;
            if (strcmp(k, "centre") == 0)
                assert_int_equal(f.centre, strtol(val, NULL, 0));
            else if (strcmp(k, "station") == 0)
                assert_string_equal(f.station_hex, val);
            else if (strcmp(k, "password") == 0)
                assert_int_equal(f.password, strtol(val, NULL, 0));
            else if (strcmp(k, "function") == 0)
                assert_int_equal(f.function, strtol(val, NULL, 16));
            else if (strcmp(k, "direction") == 0)
                assert_int_equal(f.direction,
                                 strcmp(val, "down") == 0 ? GW_SL651_DIR_DOWN : GW_SL651_DIR_UP);
            else if (strcmp(k, "length") == 0)
                assert_int_equal(f.length, strtol(val, NULL, 10));
            else if (strcmp(k, "serial") == 0)
                assert_int_equal(rep.serial, strtol(val, NULL, 10));
            else if (strcmp(k, "send_time") == 0 || strcmp(k, "time") == 0) {
                assert_true(i + 1 < n);
                assert_int_equal(rep.send_ms, bj_ms(val, tk[i + 1]));
            } else if (strcmp(k, "observed") == 0) {
                assert_true(i + 1 < n);
                assert_true(rep.has_obs);
                assert_int_equal(rep.obs_ms, bj_ms(val, tk[i + 1]));
            } else if (strcmp(k, "station_type") == 0)
                assert_int_equal(rep.station_type, strtol(val, NULL, 0));
            else if (strcmp(k, "end") == 0)
                assert_int_equal(f.end, ctl_from_name(val));
            else if (strcmp(k, "start") == 0)
                assert_int_equal(f.start, ctl_from_name(val));
            else if (strcmp(k, "crc") == 0) {
                assert_int_equal(f.crc, strtol(val, NULL, 16));
                /* sent high byte first */
                assert_int_equal(v->frame[v->len - (f.encoding == GW_SL651_ENC_HEX ? 2 : 4)],
                                 f.encoding == GW_SL651_ENC_HEX
                                     ? (f.crc >> 8)
                                     : (uint8_t) "0123456789ABCDEF"[f.crc >> 12]);
            } else if (strcmp(k, "encoding") == 0)
                assert_int_equal(f.encoding,
                                 strcmp(val, "ascii") == 0 ? GW_SL651_ENC_ASCII : GW_SL651_ENC_HEX);
            else if (strcmp(k, "packets") == 0) {
                unsigned tot, no;
                assert_int_equal(sscanf(val, "%u/%u", &tot, &no), 2);
                assert_int_equal(f.packet_total, tot);
                assert_int_equal(f.packet_no, no);
            } else if (strcmp(k, "readings") == 0)
                assert_int_equal(c.nr, strtol(val, NULL, 10));
            else if (strcmp(k, "events") == 0)
                assert_int_equal(c.ne, strtol(val, NULL, 10));
            else if (strcmp(k, "missing") == 0)
                assert_int_equal(rep.missing, strtol(val, NULL, 10));
            else if (strcmp(k, "unknown") == 0)
                assert_int_equal(rep.unknown, strtol(val, NULL, 10));
            else if (strcmp(k, "function_known") == 0)
                assert_int_equal(rep.function_known, strtol(val, NULL, 10));
            else
                fail_msg("%s: unknown key %s in the vector comments", v->title, k);
        }
    }

    /* Downlink vectors must re-encode byte for byte. */
    if (f.direction == GW_SL651_DIR_DOWN && f.body_len > 0) {
        uint8_t out[256];
        int n;
        if (f.end == GW_SL651_ENQ) {
            gw_sl651_link l = {f.encoding, f.centre, {0}, f.password};
            memcpy(l.station, f.station, 5);
            n = gw_sl651_encode_request(&l, f.function, rep.serial, &rep.send_time, out,
                                        sizeof out);
        } else {
            n = gw_sl651_encode_confirm(&f, rep.serial, &rep.send_time, f.end, out, sizeof out);
        }
        assert_int_equal(n, (int)v->len);
        assert_memory_equal(out, v->frame, v->len);
    }
}

static vec g_shared[16], g_own[64];
static int g_nshared, g_nown;

static int setup(void **state)
{
    char path[512];
    snprintf(path, sizeof path, "%s/sl651.txt", vec_dir());
    g_nshared = load_vectors(path, g_shared, 16);
    g_nown = load_vectors("tests/vectors/sl651_own.txt", g_own, 64);
    return g_nshared > 0 && g_nown > 0 ? 0 : -1;
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_shared_vectors(void **state)
{
    assert_int_equal(g_nshared, 3);
    for (int i = 0; i < g_nshared; i++)
        check_vector(&g_shared[i]);
}

static void test_own_vectors(void **state)
{
    assert_true(g_nown >= 18);
    for (int i = 0; i < g_nown; i++)
        check_vector(&g_own[i]);
}

static void test_confirm_frame2_equals_frame3(void **state)
{
    gw_sl651_frame f;
    gw_sl651_report rep;
    assert_int_equal(gw_sl651_frame_parse(g_shared[1].frame, g_shared[1].len, &f, NULL),
                     (int)g_shared[1].len);
    assert_int_equal(gw_sl651_decode(&f, NULL, NULL, &rep), GW_OK);
    uint8_t out[64];
    int n = gw_sl651_encode_confirm(&f, rep.serial, &rep.send_time, GW_SL651_ESC, out, sizeof out);
    assert_int_equal(n, (int)g_shared[2].len);
    assert_memory_equal(out, g_shared[2].frame, g_shared[2].len);
    /* too small a buffer is refused, not overrun */
    assert_int_equal(
        gw_sl651_encode_confirm(&f, rep.serial, &rep.send_time, GW_SL651_ESC, out, (size_t)n - 1),
        GW_EFULL);
    assert_int_equal(
        gw_sl651_encode_confirm(&f, rep.serial, &rep.send_time, GW_SL651_ETX, out, sizeof out),
        GW_EINVAL);
}

static void test_crc_byte_order(void **state)
{
    /* The Modbus CRC-16 check value over "123456789" is 0x4B37. */
    assert_int_equal(gw_sl651_crc16((const uint8_t *)"123456789", 9), 0x4B37);
    const vec *v = &g_shared[1];
    uint16_t crc = gw_sl651_crc16(v->frame, v->len - 2);
    assert_int_equal(crc, 0x20FA);
    assert_int_equal(v->frame[v->len - 2], 0x20); /* high byte first */
    assert_int_equal(v->frame[v->len - 1], 0xFA);
    /* The same frame with the bytes in Modbus RTU order is rejected. */
    uint8_t b[128];
    memcpy(b, v->frame, v->len);
    b[v->len - 2] = 0xFA;
    b[v->len - 1] = 0x20;
    gw_sl651_frame f;
    assert_int_equal(gw_sl651_frame_parse(b, v->len, &f, NULL), GW_ECRC);
}

static uint16_t crc_bitwise(const uint8_t *p, size_t n)
{
    uint16_t c = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int b = 0; b < 8; b++)
            c = (c & 1) ? (uint16_t)((c >> 1) ^ 0xA001) : (uint16_t)(c >> 1);
    }
    return c;
}

static void test_crc_table_matches_bitwise(void **state)
{
    uint8_t b[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof b; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (uint8_t)(x >> 16);
    }
    for (size_t n = 0; n <= sizeof b; n += 7)
        assert_int_equal(gw_sl651_crc16(b, n), crc_bitwise(b, n));
}

static void test_element_table(void **state)
{
    /* Every identifier of the standard's contiguous blocks resolves (the lookup is a
     * binary search, so this also catches an unsorted table). */
    const char *unit;
    for (unsigned id = 0x1A; id <= 0x31; id++)
        assert_non_null(gw_sl651_element_metric((uint8_t)id, &unit));
    for (unsigned id = 0x35; id <= 0x44; id++)
        assert_non_null(gw_sl651_element_metric((uint8_t)id, &unit));
    for (unsigned id = 0xF4; id <= 0xFC; id++)
        assert_non_null(gw_sl651_element_metric((uint8_t)id, &unit));
    assert_string_equal(gw_sl651_element_metric(0x20, &unit), "rain_current");
    assert_string_equal(unit, "mm");
    assert_string_equal(gw_sl651_element_metric(0x26, &unit), "rain_total");
    assert_string_equal(gw_sl651_element_metric(0x1A, &unit), "rain_1h");
    assert_string_equal(gw_sl651_element_metric(0x39, &unit), "water_level");
    assert_string_equal(unit, "m");
    assert_string_equal(gw_sl651_element_metric(0x38, &unit), "supply_voltage");
    assert_string_equal(unit, "V");
    assert_string_equal(gw_sl651_element_metric(0x01, &unit), "section_area");
    assert_string_equal(gw_sl651_element_metric(0x49, &unit), "turbidity");
    assert_string_equal(gw_sl651_element_metric(0x4A, &unit), "permanganate_index");
    assert_null(gw_sl651_element_metric(0x76, &unit));
    assert_null(gw_sl651_element_metric(0xFF, &unit));
    assert_string_equal(gw_sl651_function_name(0x2F), "keepalive");
    assert_string_equal(gw_sl651_function_name(0x31), "equal_interval");
    assert_string_equal(gw_sl651_function_name(0x32), "timed");
    assert_string_equal(gw_sl651_function_name(0x35), "manual");
    assert_string_equal(gw_sl651_function_name(0x4A), "set_clock");
}

static void test_bad_crc_and_length(void **state)
{
    const vec *v = &g_shared[1];
    uint8_t b[2048];
    gw_sl651_frame f;
    gw_sl651_stats st = {0};
    memcpy(b, v->frame, v->len);
    b[20] ^= 0x01; /* a body byte */
    assert_int_equal(gw_sl651_frame_parse(b, v->len, &f, &st), GW_ECRC);
    assert_int_equal(st.reject[GW_SL651_REJ_CRC], 1);

    memcpy(b, v->frame, v->len);
    b[12] = 0x2A; /* length 42: the end character is not where it says */
    assert_int_equal(gw_sl651_frame_parse(b, v->len, &f, &st), GW_EMALFORMED);
    assert_int_equal(st.reject[GW_SL651_REJ_END], 1);

    memcpy(b, v->frame, v->len);
    b[11] = 0x40; /* direction nibble 4 */
    assert_int_equal(gw_sl651_frame_parse(b, v->len, &f, &st), GW_EMALFORMED);
    assert_int_equal(st.reject[GW_SL651_REJ_HEADER], 1);

    memcpy(b, v->frame, v->len);
    b[13] = 0x05; /* neither STX nor SYN */
    assert_int_equal(gw_sl651_frame_parse(b, v->len, &f, &st), GW_EMALFORMED);
    assert_string_equal(gw_sl651_reject_name(GW_SL651_REJ_CRC), "crc");

    /* ASCII: a corrupted CRC character */
    for (int i = 0; i < g_nown; i++) {
        if (g_own[i].frame[0] != GW_SL651_SOH)
            continue;
        memcpy(b, g_own[i].frame, g_own[i].len);
        b[g_own[i].len - 1] = b[g_own[i].len - 1] == '0' ? '1' : '0';
        assert_int_equal(gw_sl651_frame_parse(b, g_own[i].len, &f, NULL), GW_ECRC);
        b[g_own[i].len - 1] = 'G';
        assert_int_equal(gw_sl651_frame_parse(b, g_own[i].len, &f, NULL), GW_EMALFORMED);
        break;
    }
}

static void test_truncated_every_length(void **state)
{
    vec *all[80];
    int n = 0;
    for (int i = 0; i < g_nshared; i++)
        all[n++] = &g_shared[i];
    for (int i = 0; i < g_nown; i++)
        all[n++] = &g_own[i];
    for (int k = 0; k < n; k++) {
        for (size_t len = 0; len < all[k]->len; len++) {
            uint8_t *b = malloc(len ? len : 1); /* exact size: ASan sees any overread */
            memcpy(b, all[k]->frame, len);
            gw_sl651_frame f;
            gw_sl651_stats st = {0};
            int r = gw_sl651_frame_parse(b, len, &f, &st);
            assert_true(r == GW_EAGAIN || r == GW_EMALFORMED);
            size_t consumed, skipped;
            r = gw_sl651_scan(b, len, &f, &consumed, &skipped, &st);
            assert_int_equal(r, GW_EAGAIN);
            assert_int_equal(consumed, 0); /* a real frame start is kept */
            free(b);
        }
    }
}

/* Re-frames a HEX body (fresh length and CRC) so body truncation reaches the decoder. */
static size_t reframe(const uint8_t *frame, const uint8_t *body, size_t blen, uint8_t *out)
{
    memcpy(out, frame, 14);
    out[11] = (uint8_t)((frame[11] & 0xF0) | (blen >> 8));
    out[12] = (uint8_t)blen;
    memcpy(out + 14, body, blen);
    out[14 + blen] = GW_SL651_ETX;
    uint16_t crc = gw_sl651_crc16(out, 15 + blen);
    out[15 + blen] = (uint8_t)(crc >> 8);
    out[16 + blen] = (uint8_t)crc;
    return 17 + blen;
}

static void test_truncated_bodies_decode_safely(void **state)
{
    for (int i = 0; i < g_nown + g_nshared; i++) {
        const vec *v = i < g_nshared ? &g_shared[i] : &g_own[i - g_nshared];
        gw_sl651_frame f0;
        if (gw_sl651_frame_parse(v->frame, v->len, &f0, NULL) <= 0 ||
            f0.encoding != GW_SL651_ENC_HEX || f0.start != GW_SL651_STX ||
            f0.direction != GW_SL651_DIR_UP)
            continue;
        for (size_t cut = 0; cut < f0.body_len; cut++) {
            uint8_t out[2048];
            size_t n = reframe(v->frame, f0.body, cut, out);
            uint8_t *b = malloc(n);
            memcpy(b, out, n);
            gw_sl651_frame f;
            assert_int_equal(gw_sl651_frame_parse(b, n, &f, NULL), (int)n);
            coll c = {0};
            gw_sink sink = {on_r, on_e, &c};
            gw_sl651_report rep;
            int r = gw_sl651_decode(&f, NULL, &sink, &rep);
            assert_true(r == GW_OK || r == GW_EMALFORMED);
            if (cut < 8)
                assert_int_equal(r, GW_EMALFORMED);
            free(b);
        }
    }
}

static void test_garbage_between_frames(void **state)
{
    static const uint8_t junk1[] = {0x00, 0x7E, 0x11, 0x7E, 0x7E, 0x01, 0x55, 0xFF};
    static const uint8_t junk2[] = {'A', 'T', '+', 0x01, 'Z', 0x7E, 0x7E, 0x01, 0x00};
    uint8_t stream[1024];
    size_t n = 0;
    memcpy(stream + n, junk1, sizeof junk1), n += sizeof junk1;
    memcpy(stream + n, g_shared[0].frame, g_shared[0].len), n += g_shared[0].len;
    memcpy(stream + n, junk2, sizeof junk2), n += sizeof junk2;
    memcpy(stream + n, g_shared[1].frame, g_shared[1].len), n += g_shared[1].len;
    for (int i = 0; i < g_nown; i++)
        if (g_own[i].frame[0] == GW_SL651_SOH) { /* an ASCII frame too */
            memcpy(stream + n, g_own[i].frame, g_own[i].len), n += g_own[i].len;
            break;
        }
    memcpy(stream + n, g_shared[2].frame, g_shared[2].len), n += g_shared[2].len;
    stream[n++] = 0x7E; /* a trailing partial start */

    /* Feed it byte by byte as a TCP connection would, dropping what the scanner consumes. */
    uint8_t rx[2048];
    size_t have = 0;
    int frames = 0;
    uint8_t funcs[8];
    gw_sl651_stats st = {0};
    for (size_t i = 0; i < n; i++) {
        rx[have++] = stream[i];
        for (;;) {
            gw_sl651_frame f;
            size_t consumed, skipped;
            int r = gw_sl651_scan(rx, have, &f, &consumed, &skipped, &st);
            assert_true(consumed <= have);
            if (r == GW_OK && frames < 8)
                funcs[frames] = f.function;
            if (r == GW_OK)
                frames++;
            memmove(rx, rx + consumed, have - consumed);
            have -= consumed;
            if (r == GW_EAGAIN)
                break;
            assert_int_equal(r, GW_OK);
        }
    }
    assert_int_equal(frames, 4);
    assert_int_equal(funcs[0], 0x2F);
    assert_int_equal(funcs[1], 0x30);
    assert_int_equal(funcs[3], 0x30);
    assert_int_equal(have, 1); /* the trailing 0x7E is kept for the next read */
    assert_int_equal(st.frames, 4);
    assert_true(st.bytes_skipped >= sizeof junk1 + sizeof junk2 - 2);

    /* All at once: same result, and a bad-CRC frame is consumed with GW_ECRC. */
    uint8_t two[256];
    size_t m = 0;
    memcpy(two, g_shared[1].frame, g_shared[1].len), m += g_shared[1].len;
    two[20] ^= 0xFF;
    memcpy(two + m, "xx", 2), m += 2;
    memcpy(two + m, g_shared[0].frame, g_shared[0].len), m += g_shared[0].len;
    gw_sl651_frame f;
    size_t consumed, skipped;
    assert_int_equal(gw_sl651_scan(two, m, &f, &consumed, &skipped, NULL), GW_ECRC);
    assert_int_equal(consumed, g_shared[1].len);
    assert_int_equal(gw_sl651_scan(two + consumed, m - consumed, &f, &consumed, &skipped, NULL),
                     GW_OK);
    assert_int_equal(skipped, 2);
    assert_int_equal(f.function, 0x2F);
}

static void test_false_start_does_not_block(void **state)
{
    /* A fake header claiming a 4000-byte body, then a real frame: the real one is found. */
    uint8_t b[256] = {0x7E, 0x7E, 0x01, 0, 0, 0, 0, 0, 0, 0, 0x30, 0x0F, 0xA0, 0x02};
    size_t n = 14;
    memcpy(b + n, g_shared[0].frame, g_shared[0].len), n += g_shared[0].len;
    gw_sl651_frame f;
    size_t consumed, skipped;
    assert_int_equal(gw_sl651_scan(b, n, &f, &consumed, &skipped, NULL), GW_OK);
    assert_int_equal(skipped, 14);
    assert_int_equal(consumed, n);
}

static void test_duplicates(void **state)
{
    static gw_sl651_dedup d;
    gw_sl651_dedup_init(&d);
    gw_sl651_time t = {24, 6, 1, 8, 0, 0};
    assert_int_equal(gw_sl651_dedup_check(&d, "0012345678", 3, &t), 0);
    assert_int_equal(gw_sl651_dedup_check(&d, "0012345678", 3, &t), 1); /* the resend */
    assert_int_equal(gw_sl651_dedup_check(&d, "0012345678", 4, &t), 0);
    assert_int_equal(gw_sl651_dedup_check(&d, "0012345679", 3, &t), 0);
    gw_sl651_time t2 = t;
    t2.ss = 1;
    assert_int_equal(gw_sl651_dedup_check(&d, "0012345678", 3, &t2), 0);
    /* Bounded: after GW_SL651_DEDUP_SLOTS newer keys the first one is forgotten. */
    for (unsigned i = 0; i < GW_SL651_DEDUP_SLOTS; i++)
        assert_int_equal(gw_sl651_dedup_check(&d, "AAAAAAAAAA", (uint16_t)(100 + i), &t), 0);
    assert_int_equal(gw_sl651_dedup_check(&d, "0012345678", 3, &t), 0);

    /* End to end: the same report decoded twice is recognised. */
    gw_sl651_dedup_init(&d);
    for (int k = 0; k < 2; k++) {
        gw_sl651_frame f;
        gw_sl651_report rep;
        assert_true(gw_sl651_frame_parse(g_shared[1].frame, g_shared[1].len, &f, NULL) > 0);
        assert_int_equal(gw_sl651_decode(&f, NULL, NULL, &rep), GW_OK);
        assert_int_equal(gw_sl651_dedup_check(&d, f.station_hex, rep.serial, &rep.send_time), k);
    }
}

static void test_station_config(void **state)
{
    gw_sl651_frame f;
    assert_true(gw_sl651_frame_parse(g_shared[1].frame, g_shared[1].len, &f, NULL) > 0);
    gw_sl651_station_cfg cfg = {0};
    cfg.base_level = 100.0;
    cfg.correction = -0.05;
    coll c = {0};
    gw_sink sink = {on_r, on_e, &c};
    assert_int_equal(gw_sl651_decode(&f, &cfg, &sink, NULL), GW_OK);
    assert_non_null(find_reading(&c, "water_level", 100.077, 0, 0));
    assert_non_null(find_reading(&c, "rain_current", 0.5, 0, 0)); /* rain is not shifted */

    /* Overrides: rename 38 and decode the custom FF01 element of A8 as a level. */
    const vec *a8 = NULL;
    for (int i = 0; i < g_nown; i++)
        if (strstr(g_own[i].title, "A8."))
            a8 = &g_own[i];
    assert_non_null(a8);
    static const gw_sl651_override ov[] = {
        {0x38, "battery_voltage", "V", 0},
        {0xFF01, "gauge_level", "m", 1},
    };
    cfg.overrides = ov;
    cfg.n_overrides = 2;
    assert_true(gw_sl651_frame_parse(a8->frame, a8->len, &f, NULL) > 0);
    memset(&c, 0, sizeof c);
    gw_sl651_report rep;
    assert_int_equal(gw_sl651_decode(&f, &cfg, &sink, &rep), GW_OK);
    assert_non_null(find_reading(&c, "battery_voltage", 11.99, 0, 0));
    assert_non_null(find_reading(&c, "gauge_level", 100.0 + 123.4 - 0.05, 0, 0));
    assert_int_equal(rep.unknown, 1);
    assert_int_equal(rep.unknown_ids[0], 0x8A);
}

static void test_drp_forward_option(void **state)
{
    const vec *a5 = NULL;
    for (int i = 0; i < g_nown; i++)
        if (strstr(g_own[i].title, "A5."))
            a5 = &g_own[i];
    assert_non_null(a5);
    gw_sl651_frame f;
    assert_true(gw_sl651_frame_parse(a5->frame, a5->len, &f, NULL) > 0);
    gw_sl651_station_cfg cfg = {0};
    cfg.drp_forward = 1;
    cfg.base_level = 1.0;
    coll c = {0};
    gw_sink sink = {on_r, on_e, &c};
    assert_int_equal(gw_sl651_decode(&f, &cfg, &sink, NULL), GW_OK);
    assert_non_null(find_reading(&c, "rain_5min", 0.1, 0, bj_ms("24-06-01", "09:05")));
    assert_non_null(find_reading(&c, "water_level", 13.34, 0, bj_ms("24-06-01", "09:00")));
}

static void test_sink_error_stops(void **state)
{
    gw_sl651_frame f;
    assert_true(gw_sl651_frame_parse(g_shared[1].frame, g_shared[1].len, &f, NULL) > 0);
    coll c = {0};
    c.stop_after = 2;
    gw_sink sink = {on_r, on_e, &c};
    assert_int_equal(gw_sl651_decode(&f, NULL, &sink, NULL), GW_EFULL);
    assert_int_equal(c.nr, 2);
}

static void test_json(void **state)
{
    gw_sl651_frame f;
    assert_true(gw_sl651_frame_parse(g_shared[1].frame, g_shared[1].len, &f, NULL) > 0);
    char *s = gw_sl651_to_json(&f, NULL);
    assert_non_null(s);
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "station")->valuestring, "0012345678");
    assert_string_equal(cJSON_GetObjectItem(j, "function")->valuestring, "30");
    assert_string_equal(cJSON_GetObjectItem(j, "send_time")->valuestring,
                        "2059-10-11T15:49:47+08:00");
    cJSON *rd = cJSON_GetObjectItem(j, "readings");
    assert_int_equal(cJSON_GetArraySize(rd), 4);
    cJSON *lvl = cJSON_GetArrayItem(rd, 2);
    assert_string_equal(cJSON_GetObjectItem(lvl, "metric")->valuestring, "water_level");
    assert_true(fabs(cJSON_GetObjectItem(lvl, "value")->valuedouble - 0.127) < 1e-12);
    assert_string_equal(cJSON_GetObjectItem(lvl, "obs")->valuestring, "2059-10-11T07:49:00Z");
    cJSON_Delete(j);
    free(s);

    /* every own vector renders to valid JSON */
    for (int i = 0; i < g_nown; i++) {
        assert_true(gw_sl651_frame_parse(g_own[i].frame, g_own[i].len, &f, NULL) > 0);
        s = gw_sl651_to_json(&f, NULL);
        assert_non_null(s);
        j = cJSON_Parse(s);
        assert_non_null(j);
        assert_string_equal(cJSON_GetObjectItem(j, "decode")->valuestring, "ok");
        cJSON_Delete(j);
        free(s);
    }
}

static void test_time_conversion(void **state)
{
    gw_sl651_time t = {24, 6, 1, 8, 0, 0}, back;
    int64_t ms;
    assert_int_equal(gw_sl651_time_to_ms(&t, &ms), GW_OK);
    assert_int_equal(ms, 1717200000000LL); /* 2024-06-01T00:00:00Z */
    assert_int_equal(gw_sl651_time_from_ms(ms, &back), GW_OK);
    assert_memory_equal(&t, &back, sizeof t);
    gw_sl651_time bad = {23, 2, 29, 0, 0, 0}; /* 2023 is not a leap year */
    assert_int_equal(gw_sl651_time_to_ms(&bad, &ms), GW_EINVAL);
    gw_sl651_time leap = {24, 2, 29, 23, 59, 59};
    assert_int_equal(gw_sl651_time_to_ms(&leap, &ms), GW_OK);
    assert_int_equal(gw_sl651_time_from_ms(ms, &back), GW_OK);
    assert_memory_equal(&leap, &back, sizeof leap);
}

static void test_requests_roundtrip(void **state)
{
    gw_sl651_link l = {GW_SL651_ENC_ASCII, 0x01, {0x00, 0x12, 0x34, 0x56, 0x78}, 0x1234};
    gw_sl651_time t = {24, 6, 1, 12, 0, 0};
    const uint8_t fns[] = {GW_SL651_FN_QUERY_REALTIME, GW_SL651_FN_QUERY_STATUS,
                           GW_SL651_FN_SET_CLOCK};
    for (int enc = 0; enc < 2; enc++) {
        l.encoding = (uint8_t)enc;
        for (size_t i = 0; i < sizeof fns; i++) {
            uint8_t out[128];
            int n = gw_sl651_encode_request(&l, fns[i], 42, &t, out, sizeof out);
            assert_true(n > 0);
            gw_sl651_frame f;
            gw_sl651_report rep;
            assert_int_equal(gw_sl651_frame_parse(out, (size_t)n, &f, NULL), n);
            assert_int_equal(f.direction, GW_SL651_DIR_DOWN);
            assert_int_equal(f.end, GW_SL651_ENQ);
            assert_int_equal(f.function, fns[i]);
            assert_string_equal(f.station_hex, "0012345678");
            assert_int_equal(gw_sl651_decode(&f, NULL, NULL, &rep), GW_OK);
            assert_int_equal(rep.serial, 42);
            assert_memory_equal(&rep.send_time, &t, sizeof t);
        }
    }
}

/* ---- issue 10: field frames ------------------------------------------------------------------ */

/* Frames below are checksummed with crc_bitwise (above), not with the codec's table. */
/* Builds an uplink HEX frame for station 0012345678, centre 01, password 1234, STX. */
static size_t hex_frame(uint8_t fn, const uint8_t *body, size_t blen, uint8_t *out)
{
    static const uint8_t head[] = {0x7E, 0x7E, 0x01, 0x00, 0x12, 0x34, 0x56, 0x78, 0x12, 0x34};
    size_t k = 0;
    memcpy(out, head, sizeof head);
    k = sizeof head;
    out[k++] = fn;
    out[k++] = (uint8_t)(blen >> 8);
    out[k++] = (uint8_t)blen;
    out[k++] = GW_SL651_STX;
    memcpy(out + k, body, blen);
    k += blen;
    out[k++] = GW_SL651_ETX;
    uint16_t crc = crc_bitwise(out, k);
    out[k++] = (uint8_t)(crc >> 8);
    out[k++] = (uint8_t)crc;
    return k;
}

/* serial 0001, send 24-06-01 10:00:00, F1F1 0012345678, type 48, F0F0 24-06-01 10:00. */
static size_t report_head(uint8_t *b)
{
    static const uint8_t h[] = {0x00, 0x01, 0x24, 0x06, 0x01, 0x10, 0x00, 0x00,
                                0xF1, 0xF1, 0x00, 0x12, 0x34, 0x56, 0x78, 0x48,
                                0xF0, 0xF0, 0x24, 0x06, 0x01, 0x10, 0x00};
    memcpy(b, h, sizeof h);
    return sizeof h;
}

/* ASCII SYN packet: the 6 counter characters count in the length (Tables 16, 18). Built
 * and checksummed by hand (tests/sl651_frames.py style), CRC 4 hex characters. */
static void test_syn_length_rules(void **state)
{
    /* HEX: A13 of tests/vectors/sl651_own.txt (length 0x023 = 3 + 32). The same packet
     * with the length that omits the counter (0x020) is refused as it must be. */
    uint8_t b[256];
    size_t n = unhex("7E7E0100123456781234340023160020010010240601110000F1F1001234567848F0F0"
                     "2406011100261900010038121201174702",
                     b, sizeof b);
    gw_sl651_frame f;
    assert_int_equal(gw_sl651_frame_parse(b, n, &f, NULL), (int)n);
    assert_int_equal(f.length, 35);
    assert_int_equal(f.body_len, 32);
    assert_int_equal(f.packet_total, 2);
    assert_int_equal(f.packet_no, 1);
    assert_int_equal(f.body[0], 0x00);
    assert_int_equal(f.body[1], 0x10);
    n = unhex("7E7E0100123456781234340020160020010010240601110000F1F1001234567848F0F0"
              "2406011100261900010038121201175DB2",
              b, sizeof b);
    gw_sl651_stats st = {0};
    assert_int_equal(gw_sl651_frame_parse(b, n, &f, &st), GW_EMALFORMED);
    assert_int_equal(st.reject[GW_SL651_REJ_END], 1);
    /* A SYN frame whose length cannot even hold the counter. */
    n = unhex("7E7E010012345678123434000216002001174702", b, sizeof b);
    assert_int_equal(gw_sl651_frame_parse(b, n, &f, &st), GW_EMALFORMED);

    /* ASCII: SOH 01 0012345678 1234 36 0012 SYN 002001 "000124060110" ETB CRC.
     * length 0x012 = 18 = 6 counter characters + 12 body characters. */
    static const char body[] = "000124060110";
    char a[128];
    int k = snprintf(a, sizeof a, "%c0100123456781234360012%c002001%s%c", 0x01, 0x16, body, 0x17);
    uint16_t crc = crc_bitwise((const uint8_t *)a, (size_t)k);
    k += snprintf(a + k, sizeof a - (size_t)k, "%04X", crc);
    assert_int_equal(gw_sl651_frame_parse((const uint8_t *)a, (size_t)k, &f, NULL), k);
    assert_int_equal(f.encoding, GW_SL651_ENC_ASCII);
    assert_int_equal(f.length, 18);
    assert_int_equal(f.body_len, 12);
    assert_memory_equal(f.body, body, 12);
    assert_int_equal(f.packet_total, 2);
    assert_int_equal(f.packet_no, 1);
    assert_int_equal(f.end, GW_SL651_ETB);
}

/* Table C.1 N(digits, decimals) as read from the standard and cross-checked against two
 * public implementations; "-" = no numeric value (step code, status, identifiers). */
static const char *const c1_table =
    "01:8.2 02:3.1 03:3.1 04:- 05:- 06:5.1 07:5.1 08:5.0 09:5.2 0A:- 0B:- 0C:3.0 0D:3.1 "
    "0E:6.2 0F:5.2 10:4.1 11:4.1 12:4.1 13:4.1 14:4.1 15:4.1 16:4.1 17:4.1 18:4.1 19:2.0 "
    "1A:5.1 1B:5.1 1C:5.1 1D:5.1 1E:5.1 1F:5.1 20:5.1 21:5.1 22:5.1 23:5.1 24:5.1 25:5.1 "
    "26:6.1 27:9.3 28:9.3 29:9.3 2A:9.3 2B:9.3 2C:9.3 2D:9.3 2E:9.3 2F:9.3 30:9.3 31:9.3 "
    "32:11.3 33:2.0 34:2.0 35:4.1 36:5.3 37:5.3 38:4.2 39:7.3 3A:7.3 3B:7.3 3C:7.3 3D:7.3 "
    "3E:7.3 3F:7.3 40:7.3 41:7.3 42:7.3 43:7.3 44:9.3 45:- 46:4.2 47:4.2 48:5.0 49:3.0 "
    "4A:4.1 4B:5.1 4C:6.2 4D:5.3 4E:5.2 4F:4.2 50:7.4 51:6.4 52:7.5 53:7.5 54:7.5 55:7.5 "
    "56:7.5 57:4.2 58:5.2 59:5.2 5A:5.2 5B:5.2 5C:5.2 5D:5.2 5E:5.2 5F:5.2 60:11.3 61:11.3 "
    "62:11.3 63:11.3 64:11.3 65:11.3 66:11.3 67:11.3 68:10.2 69:10.2 6A:10.2 6B:10.2 "
    "6C:10.2 6D:10.2 6E:10.2 6F:10.2 70:4.1 71:4.1 72:4.1 73:4.1 74:4.1 75:4.1";

static void test_c1_every_identifier(void **state)
{
    const char *p = c1_table;
    unsigned seen = 0;
    while (*p) {
        unsigned id, digits = 0, dec = 0;
        int used = 0;
        char spec[8];
        assert_int_equal(sscanf(p, "%2x:%7s%n", &id, spec, &used), 2);
        p += used;
        while (*p == ' ')
            p++;
        assert_int_equal(id, seen + 1); /* every identifier 01H..75H, in order */
        seen = id;
        gw_sl651_element el;
        assert_int_equal(gw_sl651_element_info((uint8_t)id, &el), GW_OK);
        if (spec[0] == '-')
            continue;
        assert_int_equal(sscanf(spec, "%u.%u", &digits, &dec), 2);
        assert_int_equal(el.digits, digits);
        assert_int_equal(el.decimals, dec);
        assert_int_equal(el.bytes, (digits + 1) / 2);
        assert_non_null(el.metric);
        /* A report carrying just this element, value digits 1234567890.. of its length. */
        uint8_t body[64], frame[128];
        size_t k = report_head(body);
        body[k++] = (uint8_t)id;
        body[k++] = (uint8_t)(el.bytes << 3 | dec);
        double want = 0;
        for (unsigned i = 0; i < el.bytes; i++) {
            unsigned hi = (2 * i + 1) % 10, lo = (2 * i + 2) % 10;
            body[k++] = (uint8_t)(hi << 4 | lo);
            want = want * 100 + hi * 10 + lo;
        }
        for (unsigned i = 0; i < dec; i++)
            want /= 10;
        size_t n = hex_frame(0x32, body, k, frame);
        gw_sl651_frame f;
        assert_int_equal(gw_sl651_frame_parse(frame, n, &f, NULL), (int)n);
        coll c = {0};
        gw_sink sink = {on_r, on_e, &c};
        gw_sl651_report rep;
        assert_int_equal(gw_sl651_decode(&f, NULL, &sink, &rep), GW_OK);
        if (c.nr != 1)
            fail_msg("element %02X: %d readings", id, c.nr);
        assert_int_equal(rep.unknown, 0);
        assert_string_equal(c.r[0].metric, el.metric);
        assert_string_equal(c.r[0].unit, el.unit);
        if (fabs(c.r[0].value - want) > 1e-9 * (want + 1))
            fail_msg("element %02X: %f != %f", id, c.r[0].value, want);
    }
    assert_int_equal(seen, 0x75);
    gw_sl651_element el;
    assert_int_equal(gw_sl651_element_info(0xF4, &el), GW_OK);
    assert_int_equal(el.bytes, 12);
    assert_int_equal(gw_sl651_element_info(0xFC, &el), GW_OK);
    assert_int_equal(el.bytes, 24);
    assert_int_equal(gw_sl651_element_info(0x76, &el), GW_ENOTFOUND);
}

typedef struct series_coll {
    int n, bad_time;
    int64_t first_ms, expect_ms;
    double sum;
} series_coll;

static int on_series(void *ctx, const gw_reading *r)
{
    series_coll *s = ctx;
    if (strcmp(r->metric, "water_level") != 0)
        return 0;
    if (r->obs_ms != s->expect_ms)
        s->bad_time++;
    s->expect_ms += 5 * 60 * 1000;
    s->sum += r->value;
    s->n++;
    return 0;
}

/* 38H answer: 04 18 000000 then F5 with 18 hours of 5-minute levels (Table C.1 note). */
static void test_step_zero_18_hours(void **state)
{
    uint8_t body[1024], frame[1100];
    size_t k = report_head(body);
    const uint8_t step[] = {0x04, 0x18, 0x00, 0x00, 0x00};
    memcpy(body + k, step, sizeof step);
    k += sizeof step;
    body[k++] = 0xF5;
    body[k++] = 0xC0; /* 24 bytes: the definition byte cannot say more */
    for (int h = 0; h < 18; h++)
        for (int s5 = 0; s5 < 12; s5++) {
            unsigned raw = (unsigned)(100 + h); /* 1.00 m + h cm */
            body[k++] = (uint8_t)(raw >> 8);
            body[k++] = (uint8_t)raw;
        }
    size_t n = hex_frame(0x38, body, k, frame);
    gw_sl651_frame f;
    assert_int_equal(gw_sl651_frame_parse(frame, n, &f, NULL), (int)n);
    series_coll sc = {0};
    sc.expect_ms = bj_ms("24-06-01", "09:05"); /* hour 0 ends at the observation time */
    gw_sink sink = {on_series, NULL, &sc};
    gw_sl651_report rep;
    assert_int_equal(gw_sl651_decode(&f, NULL, &sink, &rep), GW_OK);
    assert_int_equal(sc.n, 216);
    assert_int_equal(sc.bad_time, 0);
    assert_int_equal(rep.readings, 216);
    assert_int_equal(rep.hours, 18);
    assert_int_equal(rep.unknown, 0);
    assert_false(rep.truncated);
    /* last sample: 24-06-02 03:00 (obs + 17 h) */
    assert_int_equal(sc.expect_ms - 5 * 60 * 1000, bj_ms("24-06-02", "03:00"));
    double want = 0;
    for (int h = 0; h < 18; h++)
        want += 12 * (100 + h) / 100.0;
    assert_true(fabs(sc.sum - want) < 1e-6);
}

/* F5 with a wrong definition byte (12 bytes said, 24 sent): Table C.1 fixes 24, so the
 * voltage after it is still found. */
static void test_f5_wrong_definition_byte(void **state)
{
    uint8_t body[256], frame[300];
    size_t k = report_head(body);
    body[k++] = 0xF5;
    body[k++] = 0x60;
    for (int s5 = 0; s5 < 12; s5++) {
        body[k++] = 0x01;
        body[k++] = (uint8_t)s5;
    }
    const uint8_t vt[] = {0x38, 0x12, 0x12, 0x05};
    memcpy(body + k, vt, sizeof vt);
    k += sizeof vt;
    size_t n = hex_frame(0x34, body, k, frame);
    gw_sl651_frame f;
    assert_int_equal(gw_sl651_frame_parse(frame, n, &f, NULL), (int)n);
    coll c = {0};
    gw_sink sink = {on_r, on_e, &c};
    gw_sl651_report rep;
    assert_int_equal(gw_sl651_decode(&f, NULL, &sink, &rep), GW_OK);
    assert_int_equal(c.nr, 13);
    assert_int_equal(rep.fixed_len, 1);
    assert_int_equal(rep.unknown, 0);
    assert_string_equal(c.r[11].metric, "water_level");
    assert_true(fabs(c.r[11].value - 2.67) < 1e-9); /* 0x010B = 267 */
    assert_string_equal(c.r[12].metric, "supply_voltage");
    assert_true(fabs(c.r[12].value - 12.05) < 1e-9);
}

static void test_f2_manual_text(void **state)
{
    /* HEX 35: serial, time, F1F1 address, F2F2 "PJ 12.5 Z 3.21" */
    uint8_t body[128], frame[160];
    const uint8_t head[] = {0x00, 0x09, 0x24, 0x06, 0x01, 0x10, 0x00, 0x00, 0xF1,
                            0xF1, 0x00, 0x12, 0x34, 0x56, 0x78, 0xF2, 0xF2};
    static const char text[] = "PJ 12.5 Z 3.21";
    memcpy(body, head, sizeof head);
    memcpy(body + sizeof head, text, strlen(text));
    size_t n = hex_frame(0x35, body, sizeof head + strlen(text), frame);
    gw_sl651_frame f;
    assert_int_equal(gw_sl651_frame_parse(frame, n, &f, NULL), (int)n);
    coll c = {0};
    gw_sink sink = {on_r, on_e, &c};
    gw_sl651_report rep;
    assert_int_equal(gw_sl651_decode(&f, NULL, &sink, &rep), GW_OK);
    assert_int_equal(c.ne, 1);
    assert_string_equal(c.e[0].kind, "manual_set");
    assert_string_equal(c.e[0].detail, text);
    assert_true(rep.has_manual);
    assert_string_equal(rep.manual, text);
    assert_int_equal(rep.unknown, 0);
    char *js = gw_sl651_to_json(&f, NULL);
    assert_non_null(js);
    assert_non_null(strstr(js, "\"manual_set\""));
    assert_non_null(strstr(js, text));
    free(js);
}

static void test_status_edges(void **state)
{
    uint8_t body[64], frame[100];
    size_t k = report_head(body);
    const uint8_t zt[] = {0x45, 0x20, 0x00, 0x00, 0x00, 0x80}; /* all normal, door closed */
    memcpy(body + k, zt, sizeof zt);
    size_t n = hex_frame(0x32, body, k + sizeof zt, frame);
    gw_sl651_frame f;
    assert_int_equal(gw_sl651_frame_parse(frame, n, &f, NULL), (int)n);
    gw_sl651_station_cfg cfg = {0};
    coll c = {0};
    gw_sink sink = {on_r, on_e, &c};
    gw_sl651_report rep;
    /* First report after start, nothing known: a normal word raises nothing. */
    assert_int_equal(gw_sl651_decode(&f, &cfg, &sink, &rep), GW_OK);
    assert_int_equal(c.ne, 0);
    assert_int_equal(rep.status, 0x80);
    /* The station had battery low (persisted 0x82): now it ends, one event. */
    cfg.status_known = 1;
    cfg.status_prev = 0x82;
    memset(&c, 0, sizeof c);
    assert_int_equal(gw_sl651_decode(&f, &cfg, &sink, &rep), GW_OK);
    assert_int_equal(c.ne, 1);
    assert_string_equal(c.e[0].kind, "battery_low");
    assert_int_equal(c.e[0].active, 0);
    /* Same word as last time (e.g. after a restart that kept it): silence. */
    cfg.status_prev = 0x80;
    memset(&c, 0, sizeof c);
    assert_int_equal(gw_sl651_decode(&f, &cfg, &sink, &rep), GW_OK);
    assert_int_equal(c.ne, 0);
    /* Door opens (bit 7 clears): door_open active. */
    body[k + 5] = 0x00;
    n = hex_frame(0x32, body, k + sizeof zt, frame);
    assert_int_equal(gw_sl651_frame_parse(frame, n, &f, NULL), (int)n);
    memset(&c, 0, sizeof c);
    assert_int_equal(gw_sl651_decode(&f, &cfg, &sink, &rep), GW_OK);
    assert_int_equal(c.ne, 1);
    assert_string_equal(c.e[0].kind, "door_open");
    assert_int_equal(c.e[0].active, 1);
}

static void test_quirk_id28(void **state)
{
    uint8_t body[64], frame[100];
    size_t k = report_head(body);
    body[9] = 0x28;  /* F1 28 */
    body[17] = 0x28; /* F0 28 */
    const uint8_t vt[] = {0x38, 0x12, 0x12, 0x05};
    memcpy(body + k, vt, sizeof vt);
    size_t n = hex_frame(0x32, body, k + sizeof vt, frame);
    gw_sl651_frame f;
    assert_int_equal(gw_sl651_frame_parse(frame, n, &f, NULL), (int)n);
    gw_sl651_report rep;
    gw_sl651_station_cfg cfg = {0};
    assert_int_equal(gw_sl651_decode(&f, &cfg, NULL, &rep), GW_EMALFORMED); /* strict */
    cfg.quirks = GW_SL651_Q_ID28;
    coll c = {0};
    gw_sink sink = {on_r, on_e, &c};
    assert_int_equal(gw_sl651_decode(&f, &cfg, &sink, &rep), GW_OK);
    assert_int_equal(rep.quirks_used, 2);
    assert_string_equal(rep.station_hex, "0012345678");
    assert_int_equal(rep.obs_ms, bj_ms("24-06-01", "10:00"));
    assert_int_equal(c.nr, 1);
}

static void test_picture_bytes(void **state)
{
    uint8_t body[64], frame[100];
    size_t k = report_head(body);
    const uint8_t pic[] = {0xF3, 0xF3, 0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10};
    memcpy(body + k, pic, sizeof pic);
    size_t n = hex_frame(0x36, body, k + sizeof pic, frame);
    gw_sl651_frame f;
    assert_int_equal(gw_sl651_frame_parse(frame, n, &f, NULL), (int)n);
    gw_sl651_report rep;
    assert_int_equal(gw_sl651_decode(&f, NULL, NULL, &rep), GW_OK);
    assert_non_null(rep.picture);
    assert_int_equal(rep.picture_len, 6);
    assert_memory_equal(rep.picture, pic + 2, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_vectors),
        cmocka_unit_test(test_own_vectors),
        cmocka_unit_test(test_confirm_frame2_equals_frame3),
        cmocka_unit_test(test_crc_byte_order),
        cmocka_unit_test(test_crc_table_matches_bitwise),
        cmocka_unit_test(test_element_table),
        cmocka_unit_test(test_bad_crc_and_length),
        cmocka_unit_test(test_truncated_every_length),
        cmocka_unit_test(test_truncated_bodies_decode_safely),
        cmocka_unit_test(test_garbage_between_frames),
        cmocka_unit_test(test_false_start_does_not_block),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_station_config),
        cmocka_unit_test(test_drp_forward_option),
        cmocka_unit_test(test_sink_error_stops),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_time_conversion),
        cmocka_unit_test(test_requests_roundtrip),
        cmocka_unit_test(test_syn_length_rules),
        cmocka_unit_test(test_c1_every_identifier),
        cmocka_unit_test(test_step_zero_18_hours),
        cmocka_unit_test(test_f5_wrong_definition_byte),
        cmocka_unit_test(test_f2_manual_text),
        cmocka_unit_test(test_status_edges),
        cmocka_unit_test(test_quirk_id28),
        cmocka_unit_test(test_picture_bytes),
    };
    if (setup(NULL) != 0) {
        fprintf(stderr,
                "[  FAILED  ] sl651 vectors not found (GW_VECTORS=%s, run from the repo root)\n",
                vec_dir());
        return 1;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
