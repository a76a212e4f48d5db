/* Turning the answers to a profile's planned reads into readings, a write to a
 * named point into a Modbus write, and the report-by-exception test. Pure code:
 * the results are untrusted, so every length is checked against the plan
 * before a byte is read, and each point only reads inside its own request. */
#include "adapters/modbus_internal.h"

#include "adapters/adapter.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t expected_len(const gw_mb_request *rq)
{
    return rq->fc <= 2 ? ((size_t)rq->count + 7) / 8 : (size_t)rq->count * 2;
}

static mb_val good(double v)
{
    mb_val r = {v, GW_Q_GOOD, GW_R_NONE};
    return r;
}

static mb_val bad(int reason)
{
    mb_val r = {0, GW_Q_BAD, (uint8_t)reason};
    return r;
}

/* Puts the wire bytes of a numeric point in value order (most significant first). */
static uint64_t gather(const mb_point *pt, const uint8_t *w)
{
    uint8_t be[8] = {0};
    uint64_t u = 0;
    for (size_t i = 0; i < pt->nbytes; i++)
        be[pt->order[i]] = w[i];
    for (size_t i = 0; i < pt->nbytes; i++)
        u = (u << 8) | be[i];
    return u;
}

static mb_val bcd(uint64_t u, int digits)
{
    double v = 0;
    for (int i = digits - 1; i >= 0; i--) {
        unsigned d = (unsigned)(u >> (4 * i)) & 0xF;
        if (d > 9)
            return bad(GW_R_DEVICE_FLAG);
        v = v * 10 + d;
    }
    return good(v);
}

/* The shortest decimal that reads back as the same float32: the register's own
 * resolution, so 1.4142334f is 1.4142334 and not 1.41423344612122 as a double. */
static double float_decimal(float f)
{
    char buf[32];
    for (int digits = 6; digits < 9; digits++) {
        snprintf(buf, sizeof(buf), "%.*g", digits, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f)
            return d;
    }
    return (double)f;
}

/* The raw (unscaled) value of a register or bit point whose request succeeded. */
static mb_val decode_raw(const mb_point *pt, const uint8_t *data)
{
    if (pt->kind == MB_COIL || pt->kind == MB_DISCRETE)
        return good((data[pt->req_off / 8] >> (pt->req_off % 8)) & 1);
    const uint8_t *w = data + (size_t)pt->req_off * 2;
    uint64_t u = pt->type == MB_T_STRING ? 0 : gather(pt, w);
    switch (pt->type) {
    case MB_T_BOOL:
        return good(pt->has_bit ? (double)((u >> pt->bit) & 1) : (double)(u != 0));
    case MB_T_BITS:
        return good((double)((u >> pt->bit) & ((1u << pt->width) - 1)));
    case MB_T_INT16:
        return good(u >= 0x8000 ? (double)u - 65536.0 : (double)u);
    case MB_T_INT32:
        return good(u >= 0x80000000u ? (double)u - 4294967296.0 : (double)u);
    case MB_T_INT64:
        /* -(~u) - 1 keeps the conversion defined for every bit pattern. */
        return good(u >> 63 ? -(double)(~u) - 1.0 : (double)u);
    case MB_T_UINT16:
    case MB_T_UINT32:
    case MB_T_UINT64:
        return good((double)u);
    case MB_T_FLOAT32: {
        uint32_t b = (uint32_t)u;
        float f;
        memcpy(&f, &b, sizeof(f));
        return isfinite(f) ? good(float_decimal(f)) : bad(GW_R_SENSOR_FAULT);
    }
    case MB_T_FLOAT64: {
        double d;
        memcpy(&d, &u, sizeof(d));
        return isfinite(d) ? good(d) : bad(GW_R_SENSOR_FAULT);
    }
    case MB_T_BCD16:
        return bcd(u, 4);
    case MB_T_BCD32:
        return bcd(u, 8);
    default:
        return good(0); /* strings are decoded when emitted */
    }
}

static void decode_string(const mb_point *pt, const uint8_t *data, char *out, size_t outlen)
{
    const uint8_t *w = data + (size_t)pt->req_off * 2;
    size_t n = 0, nbytes = (size_t)pt->count * 2;
    int swap = pt->order[0] == 1;
    for (size_t i = 0; i < nbytes && n + 1 < outlen; i++) {
        uint8_t c = w[swap ? (i ^ 1u) : i];
        if (c == 0)
            break;
        out[n++] = (c < 0x20 || c > 0x7E) ? '?' : (char)c;
    }
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static mb_val range_check(const mb_point *pt, mb_val v)
{
    if (v.q != GW_Q_GOOD)
        return v;
    if (!isfinite(v.v))
        return bad(GW_R_OUT_OF_RANGE);
    if ((pt->has_min && v.v < pt->min) || (pt->has_max && v.v > pt->max)) {
        v.q = GW_Q_BAD;
        v.r = GW_R_OUT_OF_RANGE; /* the value stays, for diagnosis */
    }
    return v;
}

/* Applies decimals, scale, offset and the unit code of a numeric point. */
static mb_val finish(const gw_profile *p, const mb_point *pt, mb_val v, const mb_val *vals,
                     const char **unit)
{
    *unit = pt->unit;
    if (v.q != GW_Q_GOOD || pt->type == MB_T_BOOL || pt->type == MB_T_STRING)
        return v;
    if (pt->decimals_from >= 0) {
        mb_val d = vals[pt->decimals_from];
        if (d.q != GW_Q_GOOD)
            return bad(d.r);
        if (d.v < 0 || d.v > 9 || d.v != floor(d.v))
            return bad(GW_R_DEVICE_FLAG);
        v.v /= pow(10.0, d.v);
    }
    v.v = v.v * pt->scale + pt->offset;
    if (pt->unit_from >= 0) {
        mb_val c = vals[pt->unit_from];
        if (c.q != GW_Q_GOOD)
            return bad(c.r);
        const mb_ucode *uc = NULL;
        for (size_t i = 0; i < pt->ncodes; i++)
            if ((double)pt->codes[i].code == c.v)
                uc = &pt->codes[i];
        if (!uc)
            return bad(GW_R_DEVICE_FLAG);
        if (uc->has_factor)
            v.v *= uc->factor;
        else
            *unit = uc->unit;
    }
    (void)p;
    return range_check(pt, v);
}

static const gw_param *site_get(const gw_param *site, size_t nsite, const char *key)
{
    for (size_t i = 0; site && i < nsite; i++)
        if (strncmp(site[i].key, key, sizeof(site[i].key)) == 0)
            return &site[i];
    return NULL;
}

/* The code entry matching a good enumeration value, or NULL. */
static const mb_event *code_entry(const mb_point *pt, mb_val v)
{
    for (size_t k = 0; v.q == GW_Q_GOOD && k < pt->nevs; k++)
        if ((double)pt->evs[k].code == v.v)
            return &pt->evs[k];
    return NULL;
}

/* The state of every named event of a status point, active or not: the poller
 * keeps the edges (gw_profile_event_edge), a bench read shows the level. */
static int emit_events(const mb_point *pt, double v, int64_t now_ms, const gw_sink *out)
{
    uint32_t word = (uint32_t)(int64_t)v;
    for (size_t k = 0; k < pt->nevs; k++) {
        const mb_event *ev = &pt->evs[k];
        if (!*ev->name)
            continue;
        gw_event e;
        memset(&e, 0, sizeof(e));
        gw_strlcpy(e.kind, ev->name, sizeof(e.kind));
        e.recv_ms = now_ms;
        if (pt->is_codes) {
            e.active = (double)ev->code == v;
            snprintf(e.detail, sizeof(e.detail), "%s=%.0f (code %lld is %s)", pt->name, v,
                     (long long)ev->code, ev->name);
        } else {
            unsigned set = ev->has_bit ? (word >> ev->bit) & 1u : word != 0;
            e.active = (uint8_t)(ev->active_low ? !set : set);
            if (ev->has_bit)
                snprintf(e.detail, sizeof(e.detail), "%s bit%u=%u (0x%04X)", pt->name,
                         (unsigned)ev->bit, set, (unsigned)(word & 0xFFFFFFFFu));
            else
                snprintf(e.detail, sizeof(e.detail), "%s=%u", pt->name, set);
        }
        int rc = out->event(out->ctx, &e);
        if (rc < 0)
            return rc;
    }
    return GW_OK;
}

int gw_profile_decode(const gw_profile *p, const gw_param *site, size_t nsite,
                      const gw_mb_result *results, size_t n, int64_t now_ms, const gw_sink *out)
{
    mb_val vals[GW_PROFILE_MAX_POINTS];
    const char *units[GW_PROFILE_MAX_POINTS];
    mb_val params[MB_MAX_PARAMS];

    if (!p || n != p->nreqs || (n && !results))
        return GW_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (results[i].status == 0 &&
            (!results[i].data || results[i].len != expected_len(&p->reqs[i])))
            return GW_EMALFORMED;

    /* Register points: plain ones first, so decimals_from and unit_from can use them. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < p->npoints; i++) {
            const mb_point *pt = &p->points[i];
            if (pt->kind == MB_DERIVED || (int)pt->scaled_by_ref != pass)
                continue;
            const gw_mb_result *res = &results[pt->req];
            mb_val v = res->status != 0 ? bad(GW_R_COMM_FAIL) : decode_raw(pt, res->data);
            vals[i] = finish(p, pt, v, vals, &units[i]);
        }
    }
    /* An enumeration's reason marks its applies_to points (bad or uncertain). */
    for (size_t i = 0; i < p->npoints; i++) {
        const mb_point *pt = &p->points[i];
        const mb_event *ev = pt->is_codes ? code_entry(pt, vals[i]) : NULL;
        for (size_t k = 0; ev && ev->reason && k < pt->napplies; k++) {
            mb_val *t = &vals[pt->applies[k]];
            if (t->q == GW_Q_GOOD || (t->q == GW_Q_UNCERTAIN && ev->quality == GW_Q_BAD)) {
                t->q = ev->quality;
                t->r = ev->reason;
            }
        }
    }
    for (size_t i = 0; i < p->nparams; i++) {
        const mb_param *pa = &p->params[i];
        const gw_param *sv = site_get(site, nsite, pa->name);
        if (sv && isfinite(sv->value))
            params[i] = good(sv->value);
        else if (pa->fallback >= 0 && (vals[pa->fallback].q == GW_Q_GOOD || !pa->has_def))
            params[i] = vals[pa->fallback];
        else if (pa->has_def)
            params[i] = good(pa->def);
        else
            params[i] = bad(GW_R_MISSING);
    }
    for (size_t i = 0; i < p->npoints; i++) {
        const mb_point *pt = &p->points[i];
        if (pt->kind != MB_DERIVED)
            continue;
        mb_val v = mb_expr_eval(pt->expr, pt->nexpr, vals, params);
        vals[i] = finish(p, pt, v, vals, &units[i]);
    }

    if (!out)
        return GW_OK;
    for (size_t i = 0; i < p->npoints; i++) {
        const mb_point *pt = &p->points[i];
        if (pt->internal)
            continue;
        int rc = 0;
        if (pt->nevs) {
            if (out->event && vals[i].q == GW_Q_GOOD)
                rc = emit_events(pt, vals[i].v, now_ms, out);
        } else if (pt->type == MB_T_STRING) {
            const gw_mb_result *res = &results[pt->req];
            if (!out->event || res->status != 0)
                continue;
            gw_event e;
            memset(&e, 0, sizeof(e));
            gw_strlcpy(e.kind, pt->metric, sizeof(e.kind));
            e.active = 1;
            e.recv_ms = now_ms;
            decode_string(pt, res->data, e.detail, sizeof(e.detail));
            rc = out->event(out->ctx, &e);
        } else if (out->reading) {
            gw_reading r;
            memset(&r, 0, sizeof(r));
            gw_strlcpy(r.metric, pt->metric, sizeof(r.metric));
            gw_strlcpy(r.unit, units[i], sizeof(r.unit));
            r.value = vals[i].v;
            r.places = (uint8_t)(pt->decimals + 1);
            r.quality = vals[i].q;
            r.reason = vals[i].r;
            r.recv_ms = now_ms;
            rc = out->reading(out->ctx, &r);
        }
        if (rc < 0)
            return rc;
    }
    return GW_OK;
}

/* Rounds raw to an integer within [lo, hi], or fails. */
static int to_int(double raw, double lo, double hi, double *out)
{
    double r = nearbyint(raw);
    if (!(r >= lo && r <= hi))
        return GW_EINVAL;
    *out = r;
    return GW_OK;
}

static uint64_t to_bcd(uint64_t v)
{
    uint64_t out = 0;
    for (int shift = 0; v; shift += 4, v /= 10)
        out |= (v % 10) << shift;
    return out;
}

int gw_profile_encode_write(const gw_profile *p, const char *point, double value, uint8_t *fc,
                            uint16_t *addr, uint16_t *count, uint8_t *buf, size_t *len)
{
    if (!p || !point || !fc || !addr || !count || !buf || !len)
        return GW_EINVAL;
    int k = gw_profile_point_find(p, point);
    if (k < 0)
        return GW_ENOTFOUND;
    const mb_point *pt = &p->points[k];
    if (!pt->writable || !isfinite(value))
        return GW_EINVAL;
    if ((pt->has_min && value < pt->min) || (pt->has_max && value > pt->max))
        return GW_EINVAL;

    if (pt->kind == MB_COIL) {
        int on = value != 0;
        size_t need = pt->write_fc == 5 ? 2 : 1;
        if (pt->write_fc == 5) {
            buf[0] = on ? 0xFF : 0x00;
            buf[1] = 0x00;
        } else {
            buf[0] = (uint8_t)on;
        }
        *fc = pt->write_fc;
        *addr = pt->addr;
        *count = 1;
        *len = need;
        return GW_OK;
    }

    double raw = (value - pt->offset) / pt->scale, r;
    uint64_t u;
    if (!isfinite(raw))
        return GW_EINVAL;
    switch (pt->type) {
    case MB_T_INT16:
        if (to_int(raw, -32768.0, 32767.0, &r))
            return GW_EINVAL;
        u = (uint16_t)(int16_t)r;
        break;
    case MB_T_UINT16:
        if (to_int(raw, 0, 65535.0, &r))
            return GW_EINVAL;
        u = (uint64_t)r;
        break;
    case MB_T_INT32:
        if (to_int(raw, -2147483648.0, 2147483647.0, &r))
            return GW_EINVAL;
        u = (uint32_t)(int32_t)r;
        break;
    case MB_T_UINT32:
        if (to_int(raw, 0, 4294967295.0, &r))
            return GW_EINVAL;
        u = (uint64_t)r;
        break;
    case MB_T_INT64:
        /* 2^63 itself is not representable; the largest double below it is. */
        if (to_int(raw, -9223372036854775808.0, 9223372036854774784.0, &r))
            return GW_EINVAL;
        u = (uint64_t)(int64_t)r;
        break;
    case MB_T_UINT64:
        if (to_int(raw, 0, 18446744073709549568.0, &r))
            return GW_EINVAL;
        u = (uint64_t)r;
        break;
    case MB_T_FLOAT32: {
        float f = (float)raw;
        uint32_t b;
        if (!isfinite(f))
            return GW_EINVAL;
        memcpy(&b, &f, sizeof(b));
        u = b;
        break;
    }
    case MB_T_FLOAT64:
        memcpy(&u, &raw, sizeof(u));
        break;
    case MB_T_BCD16:
        if (to_int(raw, 0, 9999.0, &r))
            return GW_EINVAL;
        u = to_bcd((uint64_t)r);
        break;
    case MB_T_BCD32:
        if (to_int(raw, 0, 99999999.0, &r))
            return GW_EINVAL;
        u = to_bcd((uint64_t)r);
        break;
    default:
        return GW_EINVAL; /* the loader refuses other writable types */
    }
    uint8_t be[8];
    for (int i = pt->nbytes - 1; i >= 0; i--, u >>= 8)
        be[i] = (uint8_t)u;
    for (size_t i = 0; i < pt->nbytes; i++)
        buf[i] = be[pt->order[i]];
    *fc = pt->write_fc;
    *addr = pt->addr;
    *count = (uint16_t)(pt->nbytes / 2);
    *len = pt->nbytes;
    return GW_OK;
}

int gw_profile_rbe_should_report(const gw_profile *p, size_t point_index, double last_value,
                                 int64_t last_ms, double value, int64_t now_ms)
{
    if (!p || point_index >= p->npoints)
        return GW_EINVAL;
    const mb_point *pt = &p->points[point_index];
    if (!pt->has_deadband || last_ms <= 0 || now_ms < last_ms)
        return 1;
    if (!isfinite(value) || !isfinite(last_value))
        return 1;
    if (pt->max_silence_ms > 0 && now_ms - last_ms >= pt->max_silence_ms)
        return 1;
    double band = pt->deadband_pct ? fabs(last_value) * pt->deadband / 100.0 : pt->deadband;
    return fabs(value - last_value) > band;
}

size_t gw_profile_event_count(const gw_profile *p)
{
    return p ? p->nevnames : 0;
}

const char *gw_profile_event_name(const gw_profile *p, size_t slot)
{
    return p && slot < p->nevnames ? p->evnames[slot] : NULL;
}

static int event_slot(const gw_profile *p, const char *kind)
{
    for (size_t i = 0; i < p->nevnames; i++)
        if (strcmp(p->evnames[i], kind) == 0)
            return (int)i;
    return GW_ENOTFOUND;
}

int gw_profile_event_edge(const gw_profile *p, uint8_t *state, const gw_event *e)
{
    int slot = p && e ? event_slot(p, e->kind) : GW_ENOTFOUND;
    if (slot < 0)
        return GW_ENOTFOUND;
    uint8_t now = e->active ? 1 : 0;
    if (state[slot] == now)
        return 0;
    state[slot] = now;
    return 1;
}

int gw_profile_event_state_save(const gw_profile *p, const uint8_t *state, char *buf, size_t cap)
{
    size_t len = 0;
    if (cap)
        buf[0] = '\0';
    for (size_t i = 0; i < p->nevnames; i++) {
        int n = snprintf(buf + len, cap - len, "%s=%u\n", p->evnames[i], state[i] ? 1u : 0u);
        if (n < 0 || (size_t)n >= cap - len)
            return GW_EFULL;
        len += (size_t)n;
    }
    return (int)len;
}

void gw_profile_event_state_load(const gw_profile *p, uint8_t *state, const char *text, size_t len)
{
    const char *end = text + len;
    while (text < end) {
        const char *nl = memchr(text, '\n', (size_t)(end - text));
        const char *eol = nl ? nl : end;
        const char *eq = memchr(text, '=', (size_t)(eol - text));
        char name[GW_KEY_MAX];
        size_t nl_len = eq ? (size_t)(eq - text) : 0;
        if (eq && nl_len > 0 && nl_len < sizeof(name) && eol - eq == 2 &&
            (eq[1] == '0' || eq[1] == '1')) {
            memcpy(name, text, nl_len);
            name[nl_len] = '\0';
            int slot = event_slot(p, name);
            if (slot >= 0)
                state[slot] = (uint8_t)(eq[1] == '1');
        }
        text = eol + 1;
    }
}

/* The profile decoder as an adapter: protocols that read registers (the Modbus
 * ones) take it from the adapters table by payload kind. */
const gw_adapter gw_adapter_modbus_profile = {
    .name = "modbus-profile",
    .version = "1.0",
    .description = "Modbus registers through a YAML profile (adapters/profiles/README.md)",
    .payload = GW_PAYLOAD_REGISTERS,
    .decode_registers = gw_profile_decode,
};
