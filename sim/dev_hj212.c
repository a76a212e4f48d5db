/* The hj212 kind: environmental monitoring stations (HJ 212-2017) that dial
 * the server and send real-time data (2011) every `interval`, minute data
 * (2051) and hour data (2061) with Min/Avg/Max at clock boundaries, each
 * factor with its data flag (N, F, M, S, D, C, T, B) from a schedule. With
 * `reply: true` packets carry Flag=5 (2017 version, answer required) and the
 * station counts the server's 9014 answers by QN (dial.c matches them). */
#include "sim/clock.h"
#include "sim/curve.h"
#include "sim/dial.h"
#include "sim/enc_hj212.h"
#include "sim/kind.h"
#include "sim/scenario.h"
#include "sim/station.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HJ_CP_MAX 1000 /* CP text; the whole segment must stay within 1024 */
#define HJ_SAMPLES 12  /* curve samples behind each Min/Avg/Max */

enum { CN_2011 = 0, CN_2051, CN_2061, CN__N };
static const int cn_code[CN__N] = {2011, 2051, 2061};

struct hj_group;

typedef struct hj_dev {
    sim_dial dial; /* first: the dial's callbacks get back to the device */
    struct hj_group *hg;
    char mn[32];
    double phase, next_rtd, next_min, next_hour;
    uint64_t last_qn_ms;
    sim_curve_state *cs; /* 3 per factor: real-time, minute, hour samples */
    uint64_t by_cn[CN__N];
    uint64_t encode_errors;
} hj_dev;

typedef struct hj_group {
    sim_group *g;
    sim_ctx *ctx;
    double clock0;
    hj_dev *devs;
    uint32_t ndevs;
} hj_group;

static double next_aligned(const hj_dev *d, double t, double every, double phase)
{
    double c = d->hg->clock0 + t - phase;
    return (floor(c / every) + 1) * every + phase - d->hg->clock0;
}

static char flag_at(const sim_factor *f, double t)
{
    for (int i = 0; i < f->nflags; i++)
        if (t >= f->flags[i].from && (f->flags[i].to < 0 || t < f->flags[i].to))
            return f->flags[i].flag;
    return f->flag;
}

/* Appends printf output to cp; sets *bad when it does not fit. */
static void cp_add(char *cp, size_t *len, int *bad, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void cp_add(char *cp, size_t *len, int *bad, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cp + *len, HJ_CP_MAX - *len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= HJ_CP_MAX - *len)
        *bad = 1;
    else
        *len += (size_t)n;
}

static void data_time(char out[16], const sim_dt *t)
{
    snprintf(out, 16, "%04u%02u%02u%02u%02u%02u", (unsigned)t->year % 10000u,
             (unsigned)t->mon % 100u, (unsigned)t->day % 100u, (unsigned)t->hour % 100u,
             (unsigned)t->min % 100u, (unsigned)t->sec % 100u);
}

/* A split upload (PNUM/PNO): the CP's ';' groups are dealt into parts packets with one
 * QN, each group whole (the gateway joins them back with ';'). */
static void send_parts(hj_dev *d, int cni, const char *qn, const char *cp, int parts, double t,
                       uint64_t key)
{
    const sim_rtu_conf *cf = d->hg->g->rtu;
    size_t groups = 1;
    for (const char *p = cp; *p; p++)
        groups += *p == ';';
    if ((size_t)parts > groups)
        parts = (int)groups;
    size_t per = (groups + (size_t)parts - 1) / (size_t)parts;
    const char *p = cp;
    for (int no = 1; no <= parts; no++) {
        const char *e = p;
        for (size_t g = 0; g < per && *e; g++) {
            e = strchr(e, ';');
            if (!e) {
                e = p + strlen(p);
                break;
            }
            if (g + 1 < per)
                e++;
        }
        char part[HJ_CP_MAX], pkt[SIM_HJ212_MAX_PACKET];
        size_t pl = (size_t)(e - p) < sizeof part ? (size_t)(e - p) : sizeof part - 1;
        memcpy(part, p, pl);
        part[pl] = '\0';
        int n = sim_hj212_packet_part(pkt, sizeof pkt, qn, cf->st, cn_code[cni], cf->password,
                                      d->mn, cf->reply ? 5 : 4, parts, no, part);
        if (n < 0) {
            d->encode_errors++;
            return;
        }
        if (strstr(cf->quirks, "crc_lsb"))
            sim_hj212_crc_modbus_lsb(pkt, (size_t)n);
        /* The 9014 answers echo QN but not PNO: only the last part waits for one. */
        if (sim_dial_send(&d->dial, (const uint8_t *)pkt, (size_t)n, t, no == parts ? key : 0,
                          cf->resends) &&
            no == parts)
            d->by_cn[cni]++;
        p = *e == ';' ? e + 1 : e;
    }
}

static void send_packet(hj_dev *d, int cni, const char *cp, double t)
{
    const sim_rtu_conf *cf = d->hg->g->rtu;
    char qn[18], pkt[SIM_HJ212_MAX_PACKET];
    sim_dt now;
    /* QN identifies the packet to its answer: keep it unique per station. */
    double c = d->hg->clock0 + t + sim_dial_skew(&d->dial, t);
    uint64_t ms = c > 0 ? (uint64_t)(c * 1000) : 0;
    if (ms <= d->last_qn_ms)
        ms = d->last_qn_ms + 1;
    d->last_qn_ms = ms;
    sim_dt_from_secs((double)(ms / 1000) + (double)(ms % 1000) / 1000.0 + 1e-7, &now);
    sim_hj212_qn(&now, qn);
    uint64_t key = cf->reply ? strtoull(qn, NULL, 10) : 0;
    int parts = cni == CN_2061 && cf->hour_packets > 1 ? cf->hour_packets : 1;
    if (parts > 1) {
        send_parts(d, cni, qn, cp, parts, t, key);
        return;
    }
    int n = sim_hj212_packet(pkt, sizeof pkt, qn, cf->st, cn_code[cni], cf->password, d->mn,
                             cf->reply ? 5 : 4, cp);
    if (n < 0) {
        d->encode_errors++;
        return;
    }
    if (strstr(cf->quirks, "crc_lsb"))
        sim_hj212_crc_modbus_lsb(pkt, (size_t)n);
    if (sim_dial_send(&d->dial, (const uint8_t *)pkt, (size_t)n, t, key, cf->resends))
        d->by_cn[cni]++;
}

static void send_rtd(hj_dev *d, double t)
{
    const sim_rtu_conf *cf = d->hg->g->rtu;
    char cp[HJ_CP_MAX], dts[16];
    size_t len = 0;
    int bad = 0;
    sim_dt st;
    sim_dt_from_secs(d->hg->clock0 + t + sim_dial_skew(&d->dial, t), &st);
    data_time(dts, &st);
    cp_add(cp, &len, &bad, "DataTime=%s", dts);
    for (int i = 0; i < cf->nfactors; i++) {
        const sim_factor *f = &cf->factors[i];
        double v = sim_curve_eval(&f->curve, t, d->dial.k, &d->cs[3 * i]);
        cp_add(cp, &len, &bad, ";%s-Rtd=%.*f,%s-Flag=%c", f->code, f->decimals, v, f->code,
               flag_at(f, t));
    }
    if (bad) {
        d->encode_errors++;
        return;
    }
    send_packet(d, CN_2011, cp, t);
}

/* 2051/2061 for the last whole period of the station clock before t
 * ([end - period, end)): DataTime is the period's start. */
static void send_stats(hj_dev *d, int cni, double t, double period)
{
    double end = next_aligned(d, t, period, 0) - period;
    const sim_rtu_conf *cf = d->hg->g->rtu;
    char cp[HJ_CP_MAX], dts[16];
    size_t len = 0;
    int bad = 0;
    sim_dt st;
    double start = end - period;
    sim_dt_from_secs(d->hg->clock0 + start + sim_dial_skew(&d->dial, t) + 1e-6, &st);
    data_time(dts, &st);
    cp_add(cp, &len, &bad, "DataTime=%s", dts);
    for (int i = 0; i < cf->nfactors; i++) {
        const sim_factor *f = &cf->factors[i];
        double lo = INFINITY, hi = -INFINITY, sum = 0;
        for (int s = 0; s < HJ_SAMPLES; s++) {
            double ts = start + period * (s + 0.5) / HJ_SAMPLES;
            double v = sim_curve_eval(&f->curve, ts < 0 ? 0 : ts, d->dial.k,
                                      &d->cs[3 * i + (cni == CN_2051 ? 1 : 2)]);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
            sum += v;
        }
        cp_add(cp, &len, &bad, ";%s-Min=%.*f,%s-Avg=%.*f,%s-Max=%.*f,%s-Flag=%c", f->code,
               f->decimals, lo, f->code, f->decimals, sum / HJ_SAMPLES, f->code, f->decimals, hi,
               f->code, flag_at(f, t));
    }
    if (bad) {
        d->encode_errors++;
        return;
    }
    send_packet(d, cni, cp, t);
}

static double hj_tick(sim_dial *dial, double t)
{
    hj_dev *d = (hj_dev *)dial;
    const sim_rtu_conf *cf = d->hg->g->rtu;
    if (t >= d->next_rtd) {
        send_rtd(d, t);
        d->next_rtd = next_aligned(d, t, cf->interval, d->phase);
    }
    if (cf->minute_every > 0 && t >= d->next_min) {
        send_stats(d, CN_2051, t, cf->minute_every);
        d->next_min = next_aligned(d, t, cf->minute_every, 0);
    }
    if (cf->hour_every > 0 && t >= d->next_hour) {
        send_stats(d, CN_2061, t, cf->hour_every);
        d->next_hour = next_aligned(d, t, cf->hour_every, 0);
    }
    double next = d->next_rtd;
    if (cf->minute_every > 0 && d->next_min < next)
        next = d->next_min;
    if (cf->hour_every > 0 && d->next_hour < next)
        next = d->next_hour;
    return next;
}

/* 9014 answers carry the QN of the packet they answer. */
static size_t hj_on_bytes(sim_dial *dial, const uint8_t *buf, size_t len)
{
    const char *s = (const char *)buf;
    size_t off = 0;
    while (off < len) {
        sim_hj212_msg m;
        int n = sim_hj212_parse(s + off, len - off, &m);
        if (n == 0)
            break;
        if (n < 0) {
            size_t skip = 1;
            while (off + skip < len && s[off + skip] != '#')
                skip++;
            if (s[off] == '#' || skip > 1)
                dial->bad_in++;
            off += skip;
            continue;
        }
        off += (size_t)n;
        if (m.cn == 9014) {
            char *end;
            uint64_t key = strtoull(m.qn, &end, 10);
            sim_dial_ack(dial, m.qn[0] && !*end ? key : 0);
        } else {
            dial->requests_in++;
        }
    }
    return off;
}

static void hj_bad_crc(uint8_t *frame, size_t len)
{
    sim_hj212_bad_crc((char *)frame, len);
}

static int hj_malform(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    return sim_hj212_malform((const char *)in, len, (char *)out, cap);
}

static const sim_dial_ops hj_ops = {
    .tick = hj_tick,
    .on_bytes = hj_on_bytes,
    .on_up = NULL,
    .bad_crc = hj_bad_crc,
    .malform = hj_malform,
    .frame_start = '#',
};

static int hj_start(sim_ctx *ctx, sim_group *g)
{
    const sim_rtu_conf *cf = g->rtu;
    hj_group *hg = calloc(1, sizeof *hg);
    if (!hg)
        return SIM_ENOMEM;
    g->kstate = hg;
    hg->g = g;
    hg->ctx = ctx;
    hg->clock0 = isnan(cf->clock0) ? (double)time(NULL) + 8 * 3600 : cf->clock0;
    hg->devs = calloc(g->count, sizeof *hg->devs);
    if (!hg->devs)
        return SIM_ENOMEM;
    for (uint32_t k = 0; k < g->count; k++) {
        hj_dev *d = &hg->devs[k];
        d->hg = hg;
        d->dial.ops = &hj_ops;
        d->dial.ctx = ctx;
        d->dial.conf = cf;
        d->dial.k = k;
        d->dial.n = g->first + k;
        sim_format_id(g->id_tmpl, g->first + k, d->dial.id, sizeof d->dial.id);
        if (sim_format_id(cf->address, g->first + k, d->mn, sizeof d->mn)) {
            fprintf(stderr, "sim: %s: bad mn template\n", d->dial.id);
            return SIM_EINVAL;
        }
        d->cs = calloc((size_t)cf->nfactors * 3, sizeof *d->cs);
        hg->ndevs = k + 1;
        if (!d->cs)
            return SIM_ENOMEM;
        for (int i = 0; i < cf->nfactors * 3; i++)
            d->cs[i].step = -1;
        d->phase = cf->spread ? cf->interval * k / g->count : 0;
        d->next_rtd = next_aligned(d, 0, cf->interval, d->phase);
        d->next_min = cf->minute_every > 0 ? next_aligned(d, 0, cf->minute_every, 0) : 0;
        d->next_hour = cf->hour_every > 0 ? next_aligned(d, 0, cf->hour_every, 0) : 0;
        d->dial.next_t = 0;
        if (sim_dial_start(&d->dial) != SIM_OK)
            return SIM_EINVAL;
    }
    return SIM_OK;
}

static void hj_stop(sim_ctx *ctx, sim_group *g)
{
    hj_group *hg = g->kstate;
    if (!hg)
        return;
    for (uint32_t k = 0; k < hg->ndevs; k++)
        sim_dial_stop(&hg->devs[k].dial);
}

static void hj_destroy(sim_ctx *ctx, sim_group *g)
{
    hj_group *hg = g->kstate;
    if (!hg)
        return;
    for (uint32_t k = 0; k < hg->ndevs; k++) {
        sim_dial_free(&hg->devs[k].dial);
        free(hg->devs[k].cs);
    }
    free(hg->devs);
    free(hg);
    g->kstate = NULL;
}

static void hj_stats(sim_ctx *ctx, sim_group *g, void *arr)
{
    hj_group *hg = g->kstate;
    if (!hg)
        return;
    for (uint32_t k = 0; k < hg->ndevs; k++) {
        hj_dev *d = &hg->devs[k];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return;
        cJSON_AddStringToObject(o, "id", d->dial.id);
        cJSON_AddStringToObject(o, "protocol", "hj212");
        cJSON_AddStringToObject(o, "mn", d->mn);
        cJSON *cn = cJSON_AddObjectToObject(o, "frames_by_cn");
        for (int i = 0; i < CN__N; i++) {
            char key[8];
            snprintf(key, sizeof key, "%d", cn_code[i]);
            cJSON_AddNumberToObject(cn, key, (double)d->by_cn[i]);
        }
        sim_dial_stats(&d->dial, o);
        cJSON_AddNumberToObject(o, "replies_9014", (double)(d->dial.acks + d->dial.acks_unmatched));
        cJSON_AddNumberToObject(o, "encode_errors", (double)d->encode_errors);
        cJSON_AddItemToArray(arr, o);
    }
}

const sim_kind sim_kind_hj212 = {
    .name = "hj212",
    .start = hj_start,
    .stop = hj_stop,
    .stats = hj_stats,
    .destroy = hj_destroy,
};
