/* The sl651 kind: hydrological RTUs (SL651-2014, HEX/BCD) that dial the
 * centre. Each RTU keeps its own station clock (start + scenario time, plus
 * any clock_skew fault) and sends: timed reports (32) every `interval`,
 * hourly reports (34, F4 rainfall and F5 levels per five minutes) at each
 * clock hour (or `hourly_every`), extra reports (33) while a value is over
 * `extra_threshold` and on status events, test reports (30) at `test_at`, and
 * keep-alives (2F). In M2 mode a report waits for the centre's confirm and is
 * resent (same bytes, same serial) at most `resends` times (dial.c).
 * Rainfall comes from a curve of intensity (mm/h) integrated over scenario
 * time; five-minute boundaries of the station clock keep the cumulative total
 * and the level in a ring, from which F4/F5 and the 1-hour rainfall come. */
#include "sim/clock.h"
#include "sim/curve.h"
#include "sim/dial.h"
#include "sim/enc_sl651.h"
#include "sim/kind.h"
#include "sim/scenario.h"
#include "sim/station.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#define SL_RING 32              /* five-minute slots kept (160 minutes) */
#define SL_SLOT 300.0           /* seconds of station clock per slot */
#define SL_STEP 10.0            /* rainfall integration step, scenario seconds */
#define SL_SAMPLE 60.0          /* threshold check period when nothing else is due */
#define SL_BODY_MAX 512         /* our reports are far smaller */
#define SL_MAX_CATCHUP 172800.0 /* integrate at most two days at once */

enum { FC_2F = 0, FC_30, FC_32, FC_33, FC_34, FC_35, FC_36, FC_38, FC__N };
static const uint8_t fc_code[FC__N] = {0x2F, 0x30, 0x32, 0x33, 0x34, 0x35, 0x36, 0x38};
#define SL_M3_CHUNK 900 /* body bytes per M3 packet: a packet stays under SIM_DIAL_FRAME */
#define SL_M3_MAX 64    /* packets kept for a NAK'd resend */

typedef struct sl_slot {
    int64_t slot; /* slot number (clock / 300); -1 = empty */
    double cum;   /* cumulative rainfall at the boundary, mm */
    double level; /* level at the boundary, m (NaN: no level) */
} sl_slot;

struct sl_group;

typedef struct sl_dev {
    sim_dial dial; /* first: the dial's callbacks get back to the device */
    struct sl_group *sg;
    uint8_t station[5];
    char addr[11];
    uint16_t serial;
    double phase;
    double next_timed, next_hourly, next_keep, next_sample, next_extra;
    int above;
    int test_i, event_i;
    uint32_t status;
    /* rainfall integrator */
    double it, cum, r_last, cum_last_timed;
    sim_curve_state cs_rain, cs_level, cs_volt;
    sl_slot ring[SL_RING];
    uint64_t by_fc[FC__N];
    uint64_t skipped; /* timed reports skipped because the loop fell behind */
    int picture_done, history_done, manual_done;
    /* The last M3 message, kept so a NAK naming packet k can be answered. */
    uint8_t *m3[SL_M3_MAX];
    size_t m3_len[SL_M3_MAX];
    unsigned m3_n;
    uint64_t m3_resent;
} sl_dev;

typedef struct sl_group {
    sim_group *g;
    sim_ctx *ctx;
    double clock0;
    uint16_t password;
    sl_dev *devs;
    uint32_t ndevs;
} sl_group;

/* ---- clock and values ---- */

static double true_clock(const sl_dev *d, double t)
{
    return d->sg->clock0 + t;
}

static void station_time(const sl_dev *d, double t, sim_dt *out)
{
    sim_dt_from_secs(true_clock(d, t) + sim_dial_skew(&d->dial, t), out);
}

/* Next scenario time after t at which the station clock is a multiple of
 * every (plus phase). */
static double next_aligned(const sl_dev *d, double t, double every, double phase)
{
    double c = true_clock(d, t) - phase;
    double b = (floor(c / every) + 1) * every;
    return b + phase - d->sg->clock0;
}

static const sl_slot *slot_get(const sl_dev *d, int64_t s)
{
    const sl_slot *e = &d->ring[((s % SL_RING) + SL_RING) % SL_RING];
    return e->slot == s ? e : NULL;
}

static void slot_put(sl_dev *d, int64_t s, double cum, double level)
{
    sl_slot *e = &d->ring[((s % SL_RING) + SL_RING) % SL_RING];
    e->slot = s;
    e->cum = cum;
    e->level = level;
}

static double level_at(sl_dev *d, double t)
{
    const sim_rtu_conf *cf = d->sg->g->rtu;
    return cf->has_level ? sim_curve_eval(&cf->level, t, d->dial.k, &d->cs_level) : NAN;
}

/* Integrates rainfall up to scenario time t (trapezoids of SL_STEP), and
 * records each five-minute boundary of the station clock crossed. */
static void advance(sl_dev *d, double t)
{
    const sim_rtu_conf *cf = d->sg->g->rtu;
    if (t - d->it > SL_MAX_CATCHUP)
        d->it = t - SL_MAX_CATCHUP;
    while (d->it < t) {
        double step = t - d->it < SL_STEP ? t - d->it : SL_STEP;
        double t2 = d->it + step;
        double r2 = cf->has_rain ? sim_curve_eval(&cf->rain, t2, d->dial.k, &d->cs_rain) : 0;
        if (!(r2 > 0))
            r2 = 0;
        double dc = (d->r_last + r2) / 2 * step / 3600;
        double c1 = true_clock(d, d->it), c2 = true_clock(d, t2);
        for (double b = ceil(c1 / SL_SLOT) * SL_SLOT; b <= c2; b += SL_SLOT) {
            if (b <= c1 && d->it > 0)
                continue; /* recorded by the previous step */
            double f = step > 0 ? (b - c1) / step : 1;
            slot_put(d, (int64_t)(b / SL_SLOT), d->cum + dc * f, level_at(d, b - d->sg->clock0));
        }
        d->cum += dc;
        d->r_last = r2;
        d->it = t2;
    }
}

/* Cumulative rainfall at station clock c (<= now), from the ring. */
static double cum_at(const sl_dev *d, double c)
{
    if (c <= d->sg->clock0)
        return 0;
    int64_t s = (int64_t)floor(c / SL_SLOT);
    const sl_slot *a = slot_get(d, s), *b = slot_get(d, s + 1);
    if (a && b)
        return a->cum + (b->cum - a->cum) * (c - (double)s * SL_SLOT) / SL_SLOT;
    if (a)
        return a->cum;
    if (b)
        return b->cum;
    return NAN;
}

static double rain_1h(const sl_dev *d, double t)
{
    double prev = cum_at(d, true_clock(d, t) - 3600);
    return isnan(prev) ? NAN : d->cum - prev;
}

/* ---- frames ---- */

static uint16_t next_serial(sl_dev *d)
{
    d->serial = d->serial == 65535 ? 1 : (uint16_t)(d->serial + 1);
    return d->serial;
}

static void send_frame(sl_dev *d, int fci, sim_wbuf *body, double t)
{
    const sim_rtu_conf *cf = d->sg->g->rtu;
    uint8_t frame[SL_BODY_MAX + 32];
    sim_sl651_hdr h = {
        .centre = (uint8_t)cf->centre, .password = d->sg->password, .fc = fc_code[fci]};
    memcpy(h.station, d->station, 5);
    int n =
        body->overflow ? SIM_EINVAL : sim_sl651_frame(&h, body->p, body->len, frame, sizeof frame);
    if (n < 0)
        return;
    /* Keep-alives expect no reply; reports do in M2. */
    uint64_t key = fci != FC_2F && cf->m2 ? ((uint64_t)fc_code[fci] << 16 | d->serial) : 0;
    if (sim_dial_send(&d->dial, frame, (size_t)n, t, key, cf->resends))
        d->by_fc[fci]++;
}

/* The id28 quirk: the station writes F1 28 / F0 28 for the two identifiers (bytes 9
 * and 17 of a body that starts with head and station). */
static void station_quirk(const sl_dev *d, sim_wbuf *b)
{
    if (strstr(d->sg->g->rtu->quirks, "id28") && b->len >= 23) {
        b->p[9] = 0x28;
        b->p[17] = 0x28;
    }
}

/* Water-quality elements (Table C.1 4AH..57H and pH, DO) with the table's N(x,y). */
static void put_water_quality(sim_wbuf *b, double t)
{
    double w = sin(t / 3600.0);
    sim_sl651_put_num(b, 0x46, 2, 2, 7.2 + 0.1 * w);
    sim_sl651_put_num(b, 0x47, 2, 2, 8.1);
    sim_sl651_put_num(b, 0x4A, 2, 1, 3.2);
    sim_sl651_put_num(b, 0x4C, 3, 2, 0.45);
    sim_sl651_put_num(b, 0x4D, 3, 3, 0.085);
    sim_sl651_put_num(b, 0x4E, 3, 2, 1.23);
    sim_sl651_put_num(b, 0x57, 2, 2, 0.02);
}

static void put_elements(sl_dev *d, sim_wbuf *b, double t, int first)
{
    const sim_rtu_conf *cf = d->sg->g->rtu;
    if (cf->water_quality)
        put_water_quality(b, t);
    if (cf->has_rain) {
        sim_sl651_put_num(b, 0x20, 3, 1, d->cum - d->cum_last_timed);
        if (sim_sl651_put_num(b, 0x26, 3, 1, fmod(cf->rain_base + d->cum, 100000)) < 0)
            sim_sl651_put_num(b, 0x26, 3, 1, NAN);
        if (first != 0x1A)
            sim_sl651_put_num(b, 0x1A, 3, 1, rain_1h(d, t));
    }
    if (cf->has_level && first != 0x39)
        if (sim_sl651_put_num(b, 0x39, 4, 3, level_at(d, t)) < 0)
            sim_sl651_put_num(b, 0x39, 4, 3, NAN);
    if (cf->has_voltage) {
        double v = sim_curve_eval(&cf->voltage, t, d->dial.k, &d->cs_volt);
        if (sim_sl651_put_num(b, 0x38, 2, 2, v) < 0)
            sim_sl651_put_num(b, 0x38, 2, 2, NAN);
    }
    if (cf->status && first != 0x45) {
        uint8_t st[4] = {(uint8_t)(d->status >> 24), (uint8_t)(d->status >> 16),
                         (uint8_t)(d->status >> 8), (uint8_t)d->status};
        sim_sl651_put_raw(b, 0x45, 4 << 3, st, 4);
    }
}

/* 30, 32, 33: head, station, observation time (the minute), elements; an
 * extra report names its trigger first. */
static void send_report(sl_dev *d, int fci, double t, int first)
{
    const sim_rtu_conf *cf = d->sg->g->rtu;
    uint8_t body[SL_BODY_MAX];
    sim_wbuf b = {body, sizeof body, 0, 0};
    sim_dt send, obs;
    station_time(d, t, &send);
    obs = send;
    sim_sl651_put_head(&b, next_serial(d), &send);
    sim_sl651_put_station(&b, d->station, (uint8_t)cf->station_type, &obs);
    if (first == 0x39 && sim_sl651_put_num(&b, 0x39, 4, 3, level_at(d, t)) < 0)
        sim_sl651_put_num(&b, 0x39, 4, 3, NAN);
    if (first == 0x1A)
        sim_sl651_put_num(&b, 0x1A, 3, 1, rain_1h(d, t));
    if (first == 0x45) {
        uint8_t st[4] = {(uint8_t)(d->status >> 24), (uint8_t)(d->status >> 16),
                         (uint8_t)(d->status >> 8), (uint8_t)d->status};
        sim_sl651_put_raw(&b, 0x45, 4 << 3, st, 4);
    }
    put_elements(d, &b, t, first);
    station_quirk(d, &b);
    send_frame(d, fci, &b, t);
    if (fci == FC_32)
        d->cum_last_timed = d->cum;
}

/* 34: F4 (12 five-minute rainfalls, 0.1 mm, FF missing) and F5 (12 levels,
 * 0.01 m, FFFF missing) for the 12 slots ending at the last five-minute
 * boundary, observed at that boundary; then 26, 39, 38. */
static void send_hourly(sl_dev *d, double t)
{
    const sim_rtu_conf *cf = d->sg->g->rtu;
    uint8_t body[SL_BODY_MAX];
    sim_wbuf b = {body, sizeof body, 0, 0};
    sim_dt send, obs;
    double skew = sim_dial_skew(&d->dial, t);
    int64_t last = (int64_t)floor((true_clock(d, t) + 1e-6) / SL_SLOT);
    station_time(d, t, &send);
    sim_dt_from_secs((double)last * SL_SLOT + skew, &obs);
    sim_sl651_put_head(&b, next_serial(d), &send);
    sim_sl651_put_station(&b, d->station, (uint8_t)cf->station_type, &obs);
    if (cf->has_rain) {
        uint8_t f4[12];
        for (int i = 0; i < 12; i++) {
            const sl_slot *a = slot_get(d, last - 12 + i), *e = slot_get(d, last - 11 + i);
            double v = a && e ? round((e->cum - a->cum) * 10) : -1;
            f4[i] = v >= 0 && v < 255 ? (uint8_t)v : 0xFF;
        }
        sim_sl651_put_raw(&b, 0xF4, 12 << 3, f4, 12);
    }
    if (cf->has_level) {
        uint8_t f5[24];
        for (int i = 0; i < 12; i++) {
            const sl_slot *e = slot_get(d, last - 11 + i);
            double v = e && !isnan(e->level) ? round(e->level * 100) : -1;
            uint16_t u = v >= 0 && v < 65535 ? (uint16_t)v : 0xFFFF;
            f5[2 * i] = (uint8_t)(u >> 8);
            f5[2 * i + 1] = (uint8_t)u;
        }
        sim_sl651_put_raw(&b, 0xF5, 24 << 3, f5, 24);
    }
    if (cf->has_rain)
        if (sim_sl651_put_num(&b, 0x26, 3, 1, fmod(cf->rain_base + d->cum, 100000)) < 0)
            sim_sl651_put_num(&b, 0x26, 3, 1, NAN);
    if (cf->has_level && sim_sl651_put_num(&b, 0x39, 4, 3, level_at(d, t)) < 0)
        sim_sl651_put_num(&b, 0x39, 4, 3, NAN);
    if (cf->has_voltage) {
        double v = sim_curve_eval(&cf->voltage, t, d->dial.k, &d->cs_volt);
        if (sim_sl651_put_num(&b, 0x38, 2, 2, v) < 0)
            sim_sl651_put_num(&b, 0x38, 2, 2, NAN);
    }
    station_quirk(d, &b);
    send_frame(d, FC_34, &b, t);
}

static void m3_forget(sl_dev *d)
{
    for (unsigned i = 0; i < d->m3_n; i++)
        free(d->m3[i]);
    d->m3_n = 0;
}

/* A long body: one STX frame when it fits, else M3 packets of SL_M3_CHUNK bytes (SYN,
 * ETB until the last, ETX on the last). Only the last waits for the centre's confirm
 * (6.3.1.2 c); the packets are kept for a NAK. */
static void send_long(sl_dev *d, int fci, const uint8_t *body, size_t len, double t)
{
    const sim_rtu_conf *cf = d->sg->g->rtu;
    uint64_t key = cf->m2 && fci != FC_38 ? ((uint64_t)fc_code[fci] << 16 | d->serial) : 0;
    if (len <= SL_M3_CHUNK) {
        sim_sl651_hdr h1 = {
            .centre = (uint8_t)cf->centre, .password = d->sg->password, .fc = fc_code[fci]};
        memcpy(h1.station, d->station, 5);
        uint8_t frame[SL_M3_CHUNK + 32];
        int n = sim_sl651_frame(&h1, body, len, frame, sizeof frame);
        if (n > 0 && sim_dial_send(&d->dial, frame, (size_t)n, t, key, cf->resends))
            d->by_fc[fci]++;
        return;
    }
    unsigned total = (unsigned)((len + SL_M3_CHUNK - 1) / SL_M3_CHUNK);
    if (total > SL_M3_MAX)
        return;
    m3_forget(d);
    sim_sl651_hdr h = {
        .centre = (uint8_t)cf->centre, .password = d->sg->password, .fc = fc_code[fci]};
    memcpy(h.station, d->station, 5);
    for (unsigned no = 1; no <= total; no++) {
        size_t off = (size_t)(no - 1) * SL_M3_CHUNK;
        size_t n = len - off < SL_M3_CHUNK ? len - off : SL_M3_CHUNK;
        uint8_t frame[SL_M3_CHUNK + 32];
        h.end = no == total ? SIM_SL651_ETX : SIM_SL651_ETB;
        int fl = sim_sl651_frame_m3(&h, total, no, body + off, n, frame, sizeof frame);
        if (fl < 0)
            return;
        d->m3[no - 1] = malloc((size_t)fl);
        if (d->m3[no - 1]) {
            memcpy(d->m3[no - 1], frame, (size_t)fl);
            d->m3_len[no - 1] = (size_t)fl;
            d->m3_n = no;
        }
        if (sim_dial_send(&d->dial, frame, (size_t)fl, t, no == total ? key : 0, cf->resends) &&
            no == total)
            d->by_fc[fci]++;
    }
}

/* 36H picture: head, station, F3F3, then a synthetic JPEG (FFD8 .. FFD9) sized so that
 * it takes picture_packets M3 packets. */
static void send_picture(sl_dev *d, double t)
{
    const sim_rtu_conf *cf = d->sg->g->rtu;
    size_t len = (size_t)cf->picture_packets * SL_M3_CHUNK - SL_M3_CHUNK / 2;
    uint8_t *body = malloc(len);
    if (!body)
        return;
    sim_wbuf b = {body, len, 0, 0};
    sim_dt send;
    station_time(d, t, &send);
    sim_sl651_put_head(&b, next_serial(d), &send);
    sim_sl651_put_station(&b, d->station, (uint8_t)cf->station_type, &send);
    station_quirk(d, &b);
    body[b.len++] = 0xF3;
    body[b.len++] = 0xF3;
    size_t img = len - b.len;
    for (size_t i = 0; i < img; i++)
        body[b.len + i] = (uint8_t)(i * 31 + 7);
    body[b.len] = 0xFF;
    body[b.len + 1] = 0xD8;
    body[len - 2] = 0xFF;
    body[len - 1] = 0xD9;
    send_long(d, FC_36, body, len, t);
    free(body);
}

/* 38H history: 04 18 000000 (hourly runs of 5-minute data, Table C.1 note) then F5 with
 * history_hours hours of levels ending at the last full hour; sample k of hour h is
 * 1.00 m + (12h + k) cm. The observation time ends the first hour. */
static void send_history(sl_dev *d, double t)
{
    const sim_rtu_conf *cf = d->sg->g->rtu;
    size_t len = 8 + 15 + 5 + 2 + 24 * (size_t)cf->history_hours;
    uint8_t *body = malloc(len);
    if (!body)
        return;
    sim_wbuf b = {body, len, 0, 0};
    sim_dt send, obs;
    station_time(d, t, &send);
    double last_hour = floor((true_clock(d, t) + sim_dial_skew(&d->dial, t)) / 3600) * 3600;
    sim_dt_from_secs(last_hour - 3600.0 * (cf->history_hours - 1), &obs);
    sim_sl651_put_head(&b, next_serial(d), &send);
    sim_sl651_put_station(&b, d->station, (uint8_t)cf->station_type, &obs);
    station_quirk(d, &b);
    const uint8_t step[3] = {0, 0, 0};
    sim_sl651_put_raw(&b, 0x04, 3 << 3, step, 3);
    body[b.len++] = 0xF5;
    body[b.len++] = 24 << 3; /* one hour: the run is the rest of the body */
    for (int h = 0; h < cf->history_hours; h++)
        for (int k = 0; k < 12; k++) {
            unsigned cm = (unsigned)(100 + 12 * h + k);
            body[b.len++] = (uint8_t)(cm >> 8);
            body[b.len++] = (uint8_t)cm;
        }
    send_long(d, FC_38, body, b.len, t);
    free(body);
}

/* 35H manual data: head, F1F1 + address, F2F2 + the configured text. */
static void send_manual(sl_dev *d, double t)
{
    const sim_rtu_conf *cf = d->sg->g->rtu;
    uint8_t body[128];
    sim_wbuf b = {body, sizeof body, 0, 0};
    sim_dt send;
    station_time(d, t, &send);
    sim_sl651_put_head(&b, next_serial(d), &send);
    sim_sl651_put_raw(&b, 0xF1, 0xF1, d->station, 5);
    sim_sl651_put_raw(&b, 0xF2, 0xF2, (const uint8_t *)cf->manual, strlen(cf->manual));
    send_frame(d, FC_35, &b, t);
}

static void send_keepalive(sl_dev *d, double t)
{
    uint8_t body[16];
    sim_wbuf b = {body, sizeof body, 0, 0};
    sim_dt send;
    station_time(d, t, &send);
    sim_sl651_put_head(&b, next_serial(d), &send);
    send_frame(d, FC_2F, &b, t);
}

/* ---- the schedule ---- */

static double sl_tick(sim_dial *dial, double t)
{
    sl_dev *d = (sl_dev *)dial;
    const sim_rtu_conf *cf = d->sg->g->rtu;
    advance(d, t);
    while (d->event_i < cf->nevents && cf->events[d->event_i].at <= t) {
        const sim_revent *e = &cf->events[d->event_i++];
        /* Bit 7 (cabinet door) is 0 when open; every other bit is 1 in alarm. */
        int set = e->bit == 7 ? !e->alarm : e->alarm;
        uint32_t before = d->status;
        if (set)
            d->status |= 1u << e->bit;
        else
            d->status &= ~(1u << e->bit);
        if (d->status != before)
            send_report(d, FC_33, t, 0x45);
    }
    while (d->test_i < cf->ntest && cf->test_at[d->test_i] <= t) {
        d->test_i++;
        send_report(d, FC_30, t, 0);
    }
    if (!d->picture_done && cf->picture_at >= 0 && t >= cf->picture_at) {
        d->picture_done = 1;
        send_picture(d, t);
    }
    if (!d->history_done && cf->history_at >= 0 && t >= cf->history_at) {
        d->history_done = 1;
        send_history(d, t);
    }
    if (!d->manual_done && cf->manual_at >= 0 && t >= cf->manual_at && cf->manual[0]) {
        d->manual_done = 1;
        send_manual(d, t);
    }
    if (t >= d->next_timed) {
        send_report(d, FC_32, t, 0);
        double nt = next_aligned(d, t, cf->interval, d->phase);
        /* Fallen behind by more than one interval: skip, and say so. */
        d->skipped += (uint64_t)((nt - d->next_timed) / cf->interval + 0.5) - 1;
        d->next_timed = nt;
    }
    if (cf->hourly_every > 0 && t >= d->next_hourly) {
        send_hourly(d, t);
        d->next_hourly = next_aligned(d, t, cf->hourly_every, 0);
    }
    if (cf->keepalive > 0 && t >= d->next_keep) {
        send_keepalive(d, t);
        d->next_keep = t + cf->keepalive;
    }
    if (!isnan(cf->extra_threshold)) {
        double v = cf->extra_on_rain ? rain_1h(d, t) : level_at(d, t);
        if (!isnan(v) && v >= cf->extra_threshold) {
            if (!d->above || t >= d->next_extra) {
                send_report(d, FC_33, t, cf->extra_on_rain ? 0x1A : 0x39);
                d->next_extra = t + cf->extra_interval;
            }
            d->above = 1;
        } else {
            d->above = 0;
        }
        if (t >= d->next_sample)
            d->next_sample = t + SL_SAMPLE;
    }
    double next = d->next_timed;
    if (cf->hourly_every > 0 && d->next_hourly < next)
        next = d->next_hourly;
    if (cf->keepalive > 0 && d->next_keep < next)
        next = d->next_keep;
    if (!isnan(cf->extra_threshold)) {
        if (d->next_sample < next)
            next = d->next_sample;
        if (d->above && d->next_extra < next)
            next = d->next_extra;
    }
    if (d->event_i < cf->nevents && cf->events[d->event_i].at < next)
        next = cf->events[d->event_i].at;
    if (d->test_i < cf->ntest && cf->test_at[d->test_i] < next)
        next = cf->test_at[d->test_i];
    if (!d->picture_done && cf->picture_at >= 0 && cf->picture_at < next)
        next = cf->picture_at;
    if (!d->history_done && cf->history_at >= 0 && cf->history_at < next)
        next = cf->history_at;
    if (!d->manual_done && cf->manual_at >= 0 && cf->manual_at < next)
        next = cf->manual_at;
    return next;
}

static void sl_on_up(sim_dial *dial, double t)
{
    sl_dev *d = (sl_dev *)dial;
    /* A keep-alive first, so the centre learns whose link this is. */
    if (d->sg->g->rtu->keepalive > 0)
        send_keepalive(d, t);
}

/* Confirms from the centre: downlink frames for this station that echo the
 * serial of a report waiting in M2. */
static size_t sl_on_bytes(sim_dial *dial, const uint8_t *buf, size_t len)
{
    sl_dev *d = (sl_dev *)dial;
    size_t off = 0;
    while (off < len) {
        sim_sl651_msg m;
        int n = sim_sl651_parse(buf + off, len - off, &m);
        if (n == 0)
            break;
        if (n < 0) {
            /* Skip to the next frame start. */
            size_t skip = 1;
            while (off + skip < len && buf[off + skip] != 0x7E)
                skip++;
            if (buf[off] == 0x7E || skip > 1)
                dial->bad_in++;
            off += skip;
            continue;
        }
        off += (size_t)n;
        if (!m.down || memcmp(m.station, d->station, 5) != 0) {
            dial->bad_in++;
            continue;
        }
        if (m.end == SIM_SL651_NAK && m.no >= 1 && m.no <= d->m3_n) {
            /* M3: the centre names a missing packet; resend it, marked last (ETX is
             * what the standard asks of a resent packet). */
            uint8_t *f = d->m3[m.no - 1];
            size_t fl = d->m3_len[m.no - 1];
            f[fl - 3] = SIM_SL651_ETX;
            uint16_t crc = sim_sl651_crc(f, fl - 2);
            f[fl - 2] = (uint8_t)(crc >> 8);
            f[fl - 1] = (uint8_t)crc;
            if (sim_dial_send(dial, f, fl, 0, 0, 0))
                d->m3_resent++;
        } else if (m.fc == 0x2F || (m.fc >= 0x30 && m.fc <= 0x36)) {
            sim_dial_ack(dial, (uint64_t)m.fc << 16 | m.serial);
        } else {
            dial->requests_in++;
        }
    }
    return off;
}

static void sl_bad_crc(uint8_t *frame, size_t len)
{
    sim_sl651_bad_crc(frame, len);
}

static const sim_dial_ops sl_ops = {
    .tick = sl_tick,
    .on_bytes = sl_on_bytes,
    .on_up = sl_on_up,
    .bad_crc = sl_bad_crc,
    .malform = NULL,
    .frame_start = 0x7E,
};

/* ---- the kind ---- */

static int sl_address(const sim_rtu_conf *cf, uint32_t n, uint32_t k, char out[11])
{
    char tmp[64];
    if (strstr(cf->address, "{n")) {
        if (sim_format_id(cf->address, n, tmp, sizeof tmp))
            return SIM_EINVAL;
    } else {
        snprintf(tmp, sizeof tmp, "%010llu", strtoull(cf->address, NULL, 10) + k);
    }
    size_t l = strlen(tmp);
    if (l > 10)
        return SIM_EINVAL;
    memset(out, '0', 10 - l);
    memcpy(out + 10 - l, tmp, l + 1);
    return SIM_OK;
}

static int sl_start(sim_ctx *ctx, sim_group *g)
{
    const sim_rtu_conf *cf = g->rtu;
    sl_group *sg = calloc(1, sizeof *sg);
    if (!sg)
        return SIM_ENOMEM;
    g->kstate = sg;
    sg->g = g;
    sg->ctx = ctx;
    /* The station clock runs on Beijing time unless the scenario fixes it. */
    sg->clock0 = isnan(cf->clock0) ? (double)time(NULL) + 8 * 3600 : cf->clock0;
    sg->password = (uint16_t)strtoul(cf->password, NULL, 16);
    sg->devs = calloc(g->count, sizeof *sg->devs);
    if (!sg->devs)
        return SIM_ENOMEM;
    for (uint32_t k = 0; k < g->count; k++) {
        sl_dev *d = &sg->devs[k];
        d->sg = sg;
        d->dial.ops = &sl_ops;
        d->dial.ctx = ctx;
        d->dial.conf = cf;
        d->dial.k = k;
        d->dial.n = g->first + k;
        sim_format_id(g->id_tmpl, g->first + k, d->dial.id, sizeof d->dial.id);
        if (sl_address(cf, g->first + k, k, d->addr) || sim_sl651_addr_parse(d->addr, d->station)) {
            fprintf(stderr, "sim: %s: bad station address\n", d->dial.id);
            return SIM_EINVAL;
        }
        for (int i = 0; i < SL_RING; i++)
            d->ring[i].slot = -1;
        d->cs_rain.step = d->cs_level.step = d->cs_volt.step = -1;
        d->status = 1u << 7; /* cabinet door closed */
        d->phase = cf->spread ? cf->interval * k / g->count : 0;
        d->r_last = cf->has_rain ? sim_curve_eval(&cf->rain, 0, k, &d->cs_rain) : 0;
        if (!(d->r_last > 0))
            d->r_last = 0;
        d->next_timed = next_aligned(d, 0, cf->interval, d->phase);
        d->next_hourly = cf->hourly_every > 0 ? next_aligned(d, 0, cf->hourly_every, 0) : 0;
        d->next_keep = cf->keepalive;
        d->next_sample = 0;
        d->dial.next_t = 0;
        sg->ndevs = k + 1;
        if (sim_dial_start(&d->dial) != SIM_OK)
            return SIM_EINVAL;
    }
    return SIM_OK;
}

static void sl_stop(sim_ctx *ctx, sim_group *g)
{
    sl_group *sg = g->kstate;
    if (!sg)
        return;
    for (uint32_t k = 0; k < sg->ndevs; k++)
        sim_dial_stop(&sg->devs[k].dial);
}

static void sl_destroy(sim_ctx *ctx, sim_group *g)
{
    sl_group *sg = g->kstate;
    if (!sg)
        return;
    for (uint32_t k = 0; k < sg->ndevs; k++) {
        sim_dial_free(&sg->devs[k].dial);
        m3_forget(&sg->devs[k]);
    }
    free(sg->devs);
    free(sg);
    g->kstate = NULL;
}

static void sl_stats(sim_ctx *ctx, sim_group *g, void *arr)
{
    sl_group *sg = g->kstate;
    if (!sg)
        return;
    for (uint32_t k = 0; k < sg->ndevs; k++) {
        sl_dev *d = &sg->devs[k];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return;
        cJSON_AddStringToObject(o, "id", d->dial.id);
        cJSON_AddStringToObject(o, "protocol", "sl651");
        cJSON_AddStringToObject(o, "address", d->addr);
        cJSON_AddStringToObject(o, "mode", g->rtu->m2 ? "M2" : "M1");
        cJSON *fc = cJSON_AddObjectToObject(o, "frames_by_fc");
        for (int i = 0; i < FC__N; i++) {
            char key[4];
            snprintf(key, sizeof key, "%02X", fc_code[i]);
            cJSON_AddNumberToObject(fc, key, (double)d->by_fc[i]);
        }
        sim_dial_stats(&d->dial, o);
        cJSON_AddNumberToObject(o, "timed_skipped", (double)d->skipped);
        cJSON_AddNumberToObject(o, "m3_resent", (double)d->m3_resent);
        cJSON_AddNumberToObject(o, "serial", d->serial);
        cJSON_AddItemToArray(arr, o);
    }
}

const sim_kind sim_kind_sl651 = {
    .name = "sl651",
    .start = sl_start,
    .stop = sl_stop,
    .stats = sl_stats,
    .destroy = sl_destroy,
};
