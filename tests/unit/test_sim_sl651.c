/* The simulator's SL651 side: its encoder against the published vectors
 * (frames built from their decoded fields, CRC checked with this file's own
 * implementation of the standard's description), BCD elements, the confirm
 * parser, and the sl651 kind run for real against a loopback centre written
 * here: confirms, resends with the same bytes, and faults at the byte level.
 * Unit tests link libgw.a only, so the sim sources are included. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "sim/curve.c"
#include "sim/dev_sl651.c"
#include "sim/dial.c"
#include "sim/enc_sl651.c"
#include "sim/encode.c"
#include "sim/scenario.c"

const sim_kind *sim_kind_find(const char *name)
{
    if (!strcmp(name, "sl651"))
        return &sim_kind_sl651;
    return NULL;
}

double sim_now(const sim_ctx *ctx)
{
    return (double)(uv_hrtime() - ctx->t0_ns) / 1e9 * ctx->speed;
}

/* ---- helpers written from the standard's text, not from enc_sl651.c ---- */

/* CRC-16 as the standard describes it: polynomial x^16 + x^15 + x^2 + 1
 * (0x8005), bits taken least significant first, so the register shifts right
 * with the reflected 0xA001; preset all ones; no final xor. Table-driven here
 * so that it is a second implementation. */
static uint16_t t_crc(const uint8_t *p, size_t n)
{
    static uint16_t table[256];
    static int ready;
    if (!ready) {
        for (unsigned i = 0; i < 256; i++) {
            uint16_t r = (uint16_t)i;
            for (int b = 0; b < 8; b++)
                r = (uint16_t)((r >> 1) ^ ((r & 1) ? 0xA001 : 0));
            table[i] = r;
        }
        ready = 1;
    }
    uint16_t reg = 0xFFFF;
    for (size_t i = 0; i < n; i++)
        reg = (uint16_t)((reg >> 8) ^ table[(reg ^ p[i]) & 0xFF]);
    return reg;
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

/* The numbered frames of vectors/sl651.txt (frame k = k-th line starting 7E7E). */
static size_t vector_frame(int k, uint8_t *out, size_t cap)
{
    const char *dir = getenv("GW_VECTORS") ? getenv("GW_VECTORS") : "../shared/vectors";
    char path[512], line[2048];
    snprintf(path, sizeof path, "%s/sl651.txt", dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int seen = 0;
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "7E7E", 4) != 0)
            continue;
        if (++seen == k) {
            line[strcspn(line, "\r\n ")] = 0;
            n = unhex(line, out, cap);
            break;
        }
    }
    fclose(f);
    assert_true(n > 0);
    return n;
}

static const uint8_t st_addr[5] = {0x00, 0x12, 0x34, 0x56, 0x78};

/* ---- encoder against the vectors ---- */

static void test_vector_frame1_keepalive(void **state)
{
    uint8_t want[256], body[64], got[256];
    size_t wn = vector_frame(1, want, sizeof want);
    /* centre=0x01 station=0012345678 password=0x1234 function=2F serial=3
     * send_time=59-10-11 15:51:11 */
    sim_dt send = {.year = 2059, .mon = 10, .day = 11, .hour = 15, .min = 51, .sec = 11};
    sim_wbuf b = {body, sizeof body, 0, 0};
    sim_sl651_put_head(&b, 3, &send);
    sim_sl651_hdr h = {.centre = 0x01, .password = 0x1234, .fc = 0x2F};
    memcpy(h.station, st_addr, 5);
    int n = sim_sl651_frame(&h, body, b.len, got, sizeof got);
    assert_int_equal(n, (int)wn);
    assert_memory_equal(got, want, wn);
    /* The CRC, high byte first, from this file's own implementation. */
    uint16_t crc = t_crc(want, wn - 2);
    assert_int_equal(crc, 0x6BCA);
    assert_int_equal(want[wn - 2], crc >> 8);
    assert_int_equal(want[wn - 1], crc & 0xFF);
    assert_int_equal(sim_sl651_crc(want, wn - 2), crc);
}

static void test_vector_frame2_test_report(void **state)
{
    uint8_t want[256], body[128], got[256];
    size_t wn = vector_frame(2, want, sizeof want);
    sim_dt send = {.year = 2059, .mon = 10, .day = 11, .hour = 15, .min = 49, .sec = 47};
    sim_dt obs = {.year = 2059, .mon = 10, .day = 11, .hour = 15, .min = 49};
    sim_wbuf b = {body, sizeof body, 0, 0};
    sim_sl651_put_head(&b, 3, &send);
    sim_sl651_put_station(&b, st_addr, 0x48, &obs);
    assert_int_equal(sim_sl651_put_num(&b, 0x20, 3, 1, 0.5), SIM_OK);   /* current rainfall */
    assert_int_equal(sim_sl651_put_num(&b, 0x26, 3, 1, 0.5), SIM_OK);   /* cumulative */
    assert_int_equal(sim_sl651_put_num(&b, 0x39, 4, 3, 0.127), SIM_OK); /* water level */
    assert_int_equal(sim_sl651_put_num(&b, 0x38, 2, 2, 11.15), SIM_OK); /* voltage */
    assert_int_equal(b.len, 43);
    assert_false(b.overflow);
    sim_sl651_hdr h = {.centre = 0x01, .password = 0x1234, .fc = 0x30};
    memcpy(h.station, st_addr, 5);
    int n = sim_sl651_frame(&h, body, b.len, got, sizeof got);
    assert_int_equal(n, (int)wn);
    assert_memory_equal(got, want, wn);
    uint16_t crc = t_crc(want, wn - 2);
    assert_int_equal(crc, 0x20FA);
    assert_int_equal(want[wn - 2], 0x20);
    assert_int_equal(want[wn - 1], 0xFA);
}

static void test_vector_frame3_confirm_parse(void **state)
{
    uint8_t want[256], body[16], got[256];
    size_t wn = vector_frame(3, want, sizeof want);
    sim_sl651_msg m;
    assert_int_equal(sim_sl651_parse(want, wn, &m), (int)wn);
    assert_true(m.down);
    assert_int_equal(m.centre, 0x01);
    assert_memory_equal(m.station, st_addr, 5);
    assert_int_equal(m.password, 0x1234);
    assert_int_equal(m.fc, 0x30);
    assert_int_equal(m.serial, 3);
    assert_int_equal(m.end, SIM_SL651_ESC);
    /* And the encoder writes the downlink order too. */
    sim_dt t = {.year = 2059, .mon = 10, .day = 11, .hour = 15, .min = 49, .sec = 47};
    sim_wbuf b = {body, sizeof body, 0, 0};
    sim_sl651_put_head(&b, 3, &t);
    sim_sl651_hdr h = {
        .centre = 1, .password = 0x1234, .fc = 0x30, .down = 1, .end = SIM_SL651_ESC};
    memcpy(h.station, st_addr, 5);
    assert_int_equal(sim_sl651_frame(&h, body, b.len, got, sizeof got), (int)wn);
    assert_memory_equal(got, want, wn);
    /* Partial input asks for more; a flipped bit anywhere fails. */
    for (size_t i = 0; i < wn; i++)
        assert_int_equal(sim_sl651_parse(want, i, &m), 0);
    for (size_t i = 2; i < wn; i++) {
        uint8_t bad[64];
        memcpy(bad, want, wn);
        bad[i] ^= 0x10;
        assert_true(sim_sl651_parse(bad, wn, &m) != (int)wn);
    }
}

static void put1(double v, int nbytes, int dec, const char *want_hex, int want_rc)
{
    uint8_t buf[16], want[16];
    sim_wbuf b = {buf, sizeof buf, 0, 0};
    assert_int_equal(sim_sl651_put_num(&b, 0x39, nbytes, dec, v), want_rc);
    if (want_rc != SIM_OK) {
        assert_int_equal(b.len, 0);
        return;
    }
    size_t wn = unhex(want_hex, want, sizeof want);
    assert_int_equal(b.len, wn);
    assert_memory_equal(buf, want, wn);
}

static void test_bcd_elements(void **state)
{
    put1(0.127, 4, 3, "392300000127", SIM_OK);
    put1(11.15, 2, 2, "39121115", SIM_OK);
    put1(-1.234, 4, 3, "3923FF001234", SIM_OK); /* negative: leading FF */
    put1(-0.5, 3, 1, "3919FF0005", SIM_OK);
    put1(-0.04, 3, 1, "3919000000", SIM_OK); /* rounds to 0: not negative */
    put1(123.456, 4, 3, "392300123456", SIM_OK);
    put1(99999999, 4, 0, "392099999999", SIM_OK);
    put1(100000000, 4, 0, "", SIM_EINVAL);  /* 9 digits do not fit in 4 bytes */
    put1(-1000000, 4, 0, "", SIM_EINVAL);   /* 7 digits do not fit after FF */
    put1(12.5, 3, 2, "391A001250", SIM_OK); /* definition 0x1A: 3 bytes, 2 decimals */
    put1(NAN, 3, 1, "3919FFFFFF", SIM_OK);  /* missing: all F */
    put1(7, 1, 0, "390807", SIM_OK);
}

static void test_bcd_first_element_fix(void **state)
{
    /* The put1 helper always writes id 0x39; check a 38 element properly. */
    uint8_t buf[8];
    sim_wbuf b = {buf, sizeof buf, 0, 0};
    assert_int_equal(sim_sl651_put_num(&b, 0x38, 2, 2, 11.15), SIM_OK);
    assert_int_equal(buf[0], 0x38);
    assert_int_equal(buf[1], 0x12);
    assert_int_equal(buf[2], 0x11);
    assert_int_equal(buf[3], 0x15);
    /* A cursor that runs out of room says so instead of writing past it. */
    sim_wbuf small = {buf, 3, 0, 0};
    sim_sl651_put_num(&small, 0x38, 2, 2, 11.15);
    assert_true(small.overflow);
    assert_int_equal(small.len, 3);
}

static void test_bad_crc_changes_only_crc(void **state)
{
    uint8_t f[256], g[256];
    size_t n = vector_frame(2, f, sizeof f);
    memcpy(g, f, n);
    sim_sl651_bad_crc(g, n);
    assert_memory_equal(g, f, n - 2);
    assert_true(g[n - 2] != f[n - 2] && g[n - 1] != f[n - 1]);
    sim_sl651_msg m;
    assert_int_equal(sim_sl651_parse(g, n, &m), SIM_EMALFORMED);
    assert_true(t_crc(g, n - 2) != (uint16_t)(g[n - 2] << 8 | g[n - 1]));
}

/* ---- the kind against a loopback centre ---- */

#define SRV_CONNS 8
#define SRV_BYTES (256 * 1024)

typedef struct srv_conn {
    uv_tcp_t tcp;
    int open;
    uint8_t *data; /* everything received */
    size_t len, scanned;
} srv_conn;

typedef struct run {
    uv_loop_t loop;
    sim_ctx ctx;
    sim_scenario *scn;
    uv_tcp_t listener;
    uv_timer_t check;
    srv_conn conns[SRV_CONNS];
    int nconns;
    int confirm; /* answer reports with confirms */
    uint64_t confirms_sent;
    int (*done)(struct run *r);
    uint64_t deadline_ms;
    int stopped, timed_out;
} run;

static sl_dev *dev_of(run *r, int k)
{
    return &((sl_group *)r->scn->groups[0].kstate)->devs[k];
}

static void srv_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char scratch[65536];
    buf->base = scratch;
    buf->len = sizeof scratch;
}

/* Confirm of a report: downlink frame echoing serial and send time, ESC. */
static void srv_confirm(srv_conn *c, const uint8_t *f)
{
    uint8_t out[32];
    size_t n = 0;
    out[n++] = 0x7E;
    out[n++] = 0x7E;
    memcpy(out + n, f + 3, 5); /* station first */
    n += 5;
    out[n++] = f[2]; /* centre */
    out[n++] = f[8];
    out[n++] = f[9];
    out[n++] = f[10]; /* function */
    out[n++] = 0x80;
    out[n++] = 0x08;
    out[n++] = 0x02;
    memcpy(out + n, f + 14, 8); /* serial + send time */
    n += 8;
    out[n++] = 0x1B;
    uint16_t crc = t_crc(out, n);
    out[n++] = (uint8_t)(crc >> 8);
    out[n++] = (uint8_t)crc;
    uv_buf_t b = uv_buf_init((char *)out, (unsigned)n);
    assert_int_equal(uv_try_write((uv_stream_t *)&c->tcp, &b, 1), (int)n);
}

static void srv_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    srv_conn *c = s->data;
    run *r = (run *)s->loop->data;
    if (nread <= 0)
        return;
    assert_true(c->len + (size_t)nread <= SRV_BYTES);
    memcpy(c->data + c->len, buf->base, (size_t)nread);
    c->len += (size_t)nread;
    /* Confirm every complete valid report. */
    while (r->confirm && c->scanned + 14 <= c->len) {
        uint8_t *f = c->data + c->scanned;
        if (f[0] != 0x7E || f[1] != 0x7E) {
            c->scanned++;
            continue;
        }
        size_t tot = (size_t)(((f[11] << 8) | f[12]) & 0x0FFF) + 17;
        if (c->scanned + tot > c->len)
            break;
        if (t_crc(f, tot - 2) == (uint16_t)(f[tot - 2] << 8 | f[tot - 1]) && f[10] != 0x2F) {
            srv_confirm(c, f);
            r->confirms_sent++;
        }
        c->scanned += tot;
    }
}

static void srv_conn_cb(uv_stream_t *l, int status)
{
    run *r = l->data;
    assert_int_equal(status, 0);
    assert_true(r->nconns < SRV_CONNS);
    srv_conn *c = &r->conns[r->nconns++];
    c->data = malloc(SRV_BYTES);
    assert_non_null(c->data);
    uv_tcp_init(&r->loop, &c->tcp);
    c->tcp.data = c;
    c->open = 1;
    assert_int_equal(uv_accept(l, (uv_stream_t *)&c->tcp), 0);
    uv_read_start((uv_stream_t *)&c->tcp, srv_alloc, srv_read);
}

static void run_stop(run *r)
{
    if (r->stopped)
        return;
    r->stopped = 1;
    sim_kind_sl651.stop(&r->ctx, &r->scn->groups[0]);
    uv_close((uv_handle_t *)&r->listener, NULL);
    uv_close((uv_handle_t *)&r->check, NULL);
    for (int i = 0; i < r->nconns; i++)
        if (r->conns[i].open)
            uv_close((uv_handle_t *)&r->conns[i].tcp, NULL);
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

/* Starts a centre on a free port, loads the scenario (@PORT@ stands for
 * the port), runs the kind until done() or 10 s. */
static void run_scenario(run *r, const char *yaml_fmt, double speed)
{
    char yaml[4096], err[512];
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int alen = sizeof ss;
    assert_int_equal(uv_loop_init(&r->loop), 0);
    r->loop.data = r;
    uv_tcp_init(&r->loop, &r->listener);
    r->listener.data = r;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&r->listener, (struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&r->listener, 64, srv_conn_cb), 0);
    uv_tcp_getsockname(&r->listener, (struct sockaddr *)&ss, &alen);
    unsigned port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    const char *at = strstr(yaml_fmt, "@PORT@");
    assert_non_null(at);
    snprintf(yaml, sizeof yaml, "%.*s%u%s", (int)(at - yaml_fmt), yaml_fmt, port, at + 6);
    r->scn = sim_scenario_parse(yaml, strlen(yaml), "test.yaml", NULL, err, sizeof err);
    if (!r->scn)
        fail_msg("%s", err);
    r->ctx.loop = &r->loop;
    r->ctx.scn = r->scn;
    r->ctx.speed = speed;
    r->ctx.quiet = 1;
    r->ctx.t0_ns = uv_hrtime();
    assert_int_equal(sim_kind_sl651.start(&r->ctx, &r->scn->groups[0]), SIM_OK);
    uv_timer_init(&r->loop, &r->check);
    r->check.data = r;
    r->deadline_ms = uv_now(&r->loop) + 10000;
    uv_timer_start(&r->check, check_cb, 5, 5);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    assert_false(r->timed_out);
    for (uint32_t k = 0; k < ((sl_group *)r->scn->groups[0].kstate)->ndevs; k++)
        assert_true(sim_dial_closed(&dev_of(r, (int)k)->dial));
    assert_int_equal(uv_loop_close(&r->loop), 0);
}

static void run_free(run *r)
{
    sim_kind_sl651.destroy(&r->ctx, &r->scn->groups[0]);
    sim_scenario_free(r->scn);
    for (int i = 0; i < r->nconns; i++)
        free(r->conns[i].data);
}

/* One frame of a captured stream, by its length field. */
typedef struct tframe {
    const uint8_t *p;
    size_t len;
    int crc_ok;
    size_t junk_before;
} tframe;

/* Splits a stream into frames; every byte must be a frame or garbage of
 * exactly junk_len bytes right before a frame, never holding 0x7E. */
static int split_stream(const uint8_t *s, size_t n, size_t junk_len, tframe *out, int max)
{
    size_t i = 0, junk = 0;
    int nf = 0;
    while (i < n) {
        if (i + 1 < n && s[i] == 0x7E && s[i + 1] == 0x7E) {
            assert_true(i + 14 <= n);
            size_t tot = (size_t)(((s[i + 11] << 8) | s[i + 12]) & 0x0FFF) + 17;
            assert_true(i + tot <= n);
            assert_int_equal(s[i + 13], 0x02);
            assert_int_equal(s[i + tot - 3], 0x03);
            assert_true(junk == 0 || junk == junk_len);
            assert_true(nf < max);
            out[nf].p = s + i;
            out[nf].len = tot;
            out[nf].crc_ok =
                t_crc(s + i, tot - 2) == (uint16_t)(s[i + tot - 2] << 8 | s[i + tot - 1]);
            out[nf].junk_before = junk;
            nf++;
            junk = 0;
            i += tot;
        } else {
            assert_int_not_equal(s[i], 0x7E);
            junk++;
            i++;
        }
    }
    assert_int_equal(junk, 0); /* nothing dangles after the last frame */
    return nf;
}

/* Done once the centre holds every byte the RTU sent. */
static int done_timed12(run *r)
{
    return dev_of(r, 0)->by_fc[FC_32] >= 12 && r->nconns == 1 &&
           r->conns[0].len == dev_of(r, 0)->dial.bytes_out;
}

/* M1 with garbage, bad CRCs and duplicates on some frames. */
static void test_kind_faults_bytes(void **state)
{
    run *r = calloc(1, sizeof *r);
    r->done = done_timed12;
    run_scenario(r,
                 "name: faults\n"
                 "devices:\n"
                 "  - id: rtu-{n}\n"
                 "    protocol: sl651\n"
                 "    connect: 127.0.0.1:@PORT@\n"
                 "    address: \"0012345678\"\n"
                 "    mode: M1\n"
                 "    interval: 1s\n"
                 "    hourly_every: 0\n"
                 "    clock: \"2024-07-01 08:00:00\"\n"
                 "    rainfall: 36\n"
                 "    level: {type: ramp, from: 1, to: 2, over: 60s}\n"
                 "    voltage: 12.5\n"
                 "    faults:\n"
                 "      - {type: garbage, every: 2, bytes: 16}\n"
                 "      - {type: bad_crc, every: 3}\n"
                 "      - {type: duplicate, every: 5}\n",
                 50);
    sl_dev *d = dev_of(r, 0);
    assert_int_equal(r->nconns, 1);
    tframe fr[256];
    int nf = split_stream(r->conns[0].data, r->conns[0].len, 16, fr, 256);
    /* Counted faults match what is on the wire. */
    int junk = 0, bad = 0, dups = 0;
    for (int i = 0; i < nf; i++) {
        junk += fr[i].junk_before > 0;
        bad += !fr[i].crc_ok;
        if (i && fr[i].len == fr[i - 1].len && !memcmp(fr[i].p, fr[i - 1].p, fr[i].len)) {
            dups++;
            assert_int_equal(fr[i].junk_before, 0); /* a duplicate follows at once */
        }
    }
    assert_int_equal((uint64_t)junk, d->dial.faults[SIM_RF_GARBAGE]);
    assert_int_equal((uint64_t)dups, d->dial.faults[SIM_RF_DUPLICATE]);
    assert_int_equal((uint64_t)(nf - dups), d->dial.frames);
    assert_true(junk >= 5 && dups >= 2);
    assert_true(d->dial.faults[SIM_RF_BAD_CRC] >= 3);
    /* Bad CRCs: duplicates repeat them byte for byte, so count distinct. */
    int bad_distinct = 0;
    for (int i = 0; i < nf; i++)
        if (!fr[i].crc_ok && !(i && !memcmp(fr[i].p, fr[i - 1].p, fr[i].len)))
            bad_distinct++;
    assert_int_equal((uint64_t)bad_distinct, d->dial.faults[SIM_RF_BAD_CRC]);
    /* Serial numbers run on across good and bad frames (M1: no resends). */
    for (int i = 1; i < nf; i++) {
        uint16_t s0 = (uint16_t)(fr[i - 1].p[14] << 8 | fr[i - 1].p[15]);
        uint16_t s1 = (uint16_t)(fr[i].p[14] << 8 | fr[i].p[15]);
        int dup = !memcmp(fr[i].p, fr[i - 1].p, fr[i].len);
        assert_int_equal(s1, dup ? s0 : (uint16_t)(s0 + 1));
    }
    /* A 32 report carries 20, 26, 1A, 39, 38 after the station header. */
    for (int i = 0; i < nf; i++)
        if (fr[i].p[10] == 0x32) {
            const uint8_t *e = fr[i].p + 14 + 23;
            assert_int_equal(e[0], 0x20);
            assert_int_equal(e[5], 0x26);
            assert_int_equal(e[10], 0x1A);
            assert_int_equal(e[15], 0x39);
            assert_int_equal(e[21], 0x38);
            assert_int_equal(e[22], 0x12);
            assert_int_equal(e[23], 0x12);
            assert_int_equal(e[24], 0x50);
        }
    run_free(r);
    free(r);
}

static int done_unconfirmed(run *r)
{
    return dev_of(r, 0)->dial.unacked >= 4 && r->nconns == 1 &&
           r->conns[0].len == dev_of(r, 0)->dial.bytes_out;
}

/* M2 and a centre that never confirms: each report goes out three times
 * (two resends), byte for byte, with the same serial. A bad CRC on one
 * transmission differs from the clean copy in the CRC only. */
static void test_kind_m2_resends(void **state)
{
    run *r = calloc(1, sizeof *r);
    r->done = done_unconfirmed;
    run_scenario(r,
                 "name: resends\n"
                 "devices:\n"
                 "  - id: rtu-{n}\n"
                 "    protocol: sl651\n"
                 "    connect: 127.0.0.1:@PORT@\n"
                 "    address: 12345678\n"
                 "    interval: 10s\n"
                 "    hourly_every: 0\n"
                 "    confirm_timeout: 30ms\n"
                 "    clock: \"2024-07-01 08:00:00\"\n"
                 "    level: 1.25\n"
                 "    faults:\n"
                 "      - {type: bad_crc, every: 4}\n",
                 50);
    sl_dev *d = dev_of(r, 0);
    tframe fr[256];
    int nf = split_stream(r->conns[0].data, r->conns[0].len, 0, fr, 256);
    /* Group the transmissions by serial. */
    int checked = 0, bad_seen = 0;
    for (int i = 0; i < nf; i++) {
        uint16_t s = (uint16_t)(fr[i].p[14] << 8 | fr[i].p[15]);
        int copies = 0, clean = -1;
        for (int j = 0; j < nf; j++)
            if ((uint16_t)(fr[j].p[14] << 8 | fr[j].p[15]) == s) {
                copies++;
                assert_int_equal(fr[j].len, fr[i].len);
                assert_memory_equal(fr[j].p, fr[i].p, fr[i].len - 2); /* same bytes */
                if (fr[j].crc_ok)
                    clean = j;
            }
        assert_true(copies <= 3);
        if (!fr[i].crc_ok) {
            bad_seen++;
            assert_true(clean >= 0); /* its clean copy differs in the CRC only */
            assert_memory_not_equal(fr[i].p + fr[i].len - 2, fr[clean].p + fr[clean].len - 2, 2);
        }
        if (copies == 3)
            checked++;
    }
    assert_true(checked >= 3 * 3);
    assert_true(bad_seen >= 1);
    assert_int_equal(d->dial.resends, d->dial.frames - d->by_fc[FC_32]);
    assert_true(d->dial.unacked >= 4);
    assert_int_equal(d->dial.acks, 0);
    run_free(r);
    free(r);
}

static int done_confirmed(run *r)
{
    sl_group *sg = r->scn->groups[0].kstate;
    for (uint32_t k = 0; k < sg->ndevs; k++) {
        sl_dev *d = &sg->devs[k];
        if (d->by_fc[FC_32] < 5 ||
            d->dial.acks < d->by_fc[FC_32] + d->by_fc[FC_30] + d->by_fc[FC_33] + d->by_fc[FC_34])
            return 0;
    }
    return 1;
}

/* M2 with a confirming centre: every report is confirmed, none resent;
 * three devices dial in with their own addresses; hourly, test and extra
 * (door event) reports are all confirmed; keep-alives are not. */
static void test_kind_m2_confirmed(void **state)
{
    run *r = calloc(1, sizeof *r);
    r->confirm = 1;
    r->done = done_confirmed;
    run_scenario(r,
                 "name: confirmed\n"
                 "devices:\n"
                 "  - id: rtu-{n:02}\n"
                 "    count: 3\n"
                 "    protocol: sl651\n"
                 "    connect: 127.0.0.1:@PORT@\n"
                 "    address: \"00123456{n:02}\"\n"
                 "    interval: 1s\n"
                 "    hourly_every: 2s\n"
                 "    keepalive: 1500ms\n"
                 "    test_at: [1500ms]\n"
                 "    events: [{at: 2500ms, kind: door_open}]\n"
                 "    confirm_timeout: 2s\n"
                 "    clock: \"2024-07-01 08:00:00\"\n"
                 "    rainfall: 12\n",
                 20);
    sl_group *sg = r->scn->groups[0].kstate;
    assert_int_equal(r->nconns, 3);
    for (uint32_t k = 0; k < 3; k++) {
        sl_dev *d = &sg->devs[k];
        char want[11];
        snprintf(want, sizeof want, "00123456%02u", k + 1);
        assert_string_equal(d->addr, want);
        assert_int_equal(d->dial.resends, 0);
        assert_int_equal(d->dial.unacked, 0);
        assert_true(d->by_fc[FC_2F] >= 1);
        assert_true(d->by_fc[FC_30] == 1);
        assert_true(d->by_fc[FC_33] == 1);
        assert_true(d->by_fc[FC_34] >= 1);
        assert_int_equal(d->dial.acks_unmatched, 0);
        assert_int_equal(d->status & 0x80, 0); /* door open */
    }
    run_free(r);
    free(r);
}

static int done_reconnected(run *r)
{
    return dev_of(r, 0)->dial.connections >= 3;
}

/* Drops: the RTU closes its link every 3rd frame and dials again. */
static void test_kind_drop_reconnect(void **state)
{
    run *r = calloc(1, sizeof *r);
    r->done = done_reconnected;
    run_scenario(r,
                 "name: drop\n"
                 "devices:\n"
                 "  - id: rtu-{n}\n"
                 "    protocol: sl651\n"
                 "    connect: 127.0.0.1:@PORT@\n"
                 "    address: \"0012345678\"\n"
                 "    mode: M1\n"
                 "    interval: 1s\n"
                 "    reconnect: 20ms\n"
                 "    hourly_every: 0\n"
                 "    level: 1\n"
                 "    faults: [{type: drop, every: 3}]\n",
                 50);
    sl_dev *d = dev_of(r, 0);
    assert_true(r->nconns >= 3);
    assert_true(d->dial.faults[SIM_RF_DROP] >= 2);
    assert_true(d->dial.disconnects >= 2);
    run_free(r);
    free(r);
}

/* M3 packets from the sim's own encoder: the length counts the 3 counter bytes, the
 * parser reads them back, and the independent CRC of this file agrees. */
static void test_m3_packet_length(void **state)
{
    sim_sl651_hdr h = {.centre = 1, .password = 0x1234, .fc = 0x36, .end = SIM_SL651_ETB};
    memcpy(h.station, "\x00\x12\x34\x56\x78", 5);
    const uint8_t body[4] = {0xDE, 0xAD, 0xBE, 0xEF};
    uint8_t f[64];
    int n = sim_sl651_frame_m3(&h, 5, 2, body, sizeof body, f, sizeof f);
    assert_int_equal(n, 14 + 3 + 4 + 1 + 2);
    assert_int_equal(f[11], 0x00);
    assert_int_equal(f[12], 7); /* 3 counter bytes + 4 body bytes */
    assert_int_equal(f[13], 0x16);
    assert_int_equal(f[14], 0x00);
    assert_int_equal(f[15], 0x50);
    assert_int_equal(f[16], 0x02);
    sim_sl651_msg m;
    assert_int_equal(sim_sl651_parse(f, (size_t)n, &m), n);
    assert_int_equal(m.total, 5);
    assert_int_equal(m.no, 2);
    assert_int_equal(m.blen, 4);
    assert_memory_equal(m.body, body, 4);
    assert_int_equal(sim_sl651_frame_m3(&h, 5, 6, body, 4, f, sizeof f), SIM_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vector_frame1_keepalive),
        cmocka_unit_test(test_vector_frame2_test_report),
        cmocka_unit_test(test_vector_frame3_confirm_parse),
        cmocka_unit_test(test_bcd_elements),
        cmocka_unit_test(test_bcd_first_element_fix),
        cmocka_unit_test(test_bad_crc_changes_only_crc),
        cmocka_unit_test(test_kind_faults_bytes),
        cmocka_unit_test(test_kind_m2_resends),
        cmocka_unit_test(test_kind_m2_confirmed),
        cmocka_unit_test(test_kind_drop_reconnect),
        cmocka_unit_test(test_m3_packet_length),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
