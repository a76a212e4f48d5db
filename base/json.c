#include "base/json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void gw_jbuf_init(gw_jbuf *b, char *mem, size_t cap)
{
    b->p = mem;
    b->len = 0;
    b->cap = cap;
    b->overflow = 0;
}

static void put(gw_jbuf *b, const char *s, size_t n)
{
    if (b->len + n >= b->cap) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void gw_json_raw(gw_jbuf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), or 0 when the bytes there are not one. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    return n;
}

/* Control characters become \u00XX; a byte that does not start a well-formed UTF-8
 * sequence becomes U+FFFD, so a device's stray bytes never make the item invalid JSON. */
void gw_json_str(gw_jbuf *b, const char *s)
{
    put(b, "\"", 1);
    const char *run = s;
    while (*s) {
        unsigned char c = (unsigned char)*s;
        size_t n = 1;
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            s++;
            continue;
        }
        if (c >= 0x80 && (n = utf8_len((const unsigned char *)s)) > 0) {
            s += n;
            continue;
        }
        put(b, run, (size_t)(s - run));
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(b, esc, 6);
        } else {
            put(b, "\xEF\xBF\xBD", 3);
        }
        s++;
        run = s;
    }
    put(b, run, (size_t)(s - run));
    put(b, "\"", 1);
}

void gw_json_num(gw_jbuf *b, double v)
{
    char tmp[32];
    if (!isfinite(v)) {
        put(b, "null", 4);
        return;
    }
    int n = snprintf(tmp, sizeof(tmp), "%.15g", v);
    put(b, tmp, (size_t)n);
}

void gw_json_time(gw_jbuf *b, int64_t ms)
{
    char tmp[40];
    time_t secs = (time_t)(ms / 1000);
    int frac = (int)(ms % 1000);
    if (frac < 0) {
        frac += 1000;
        secs--;
    }
    struct tm tm;
    gmtime_r(&secs, &tm);
    int n = snprintf(tmp, sizeof(tmp), "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
    put(b, tmp, (size_t)n);
}

static void item_id(gw_jbuf *b, const char *gw, uint64_t seq)
{
    char tmp[48];
    put(b, "{\"id\":", 6);
    put(b, "\"", 1);
    put(b, gw, strlen(gw));
    int n = snprintf(tmp, sizeof(tmp), "-%" PRIu64 "\",\"seq\":%" PRIu64, seq, seq);
    put(b, tmp, (size_t)n);
}

static int set(const char *s)
{
    return s && *s;
}

void gw_json_place(gw_jbuf *b, const gw_json_dev *dev)
{
    if (!dev)
        return;
    if (set(dev->site_id)) {
        gw_json_raw(b, ",\"site\":");
        gw_json_str(b, dev->site_id);
    }
    if (!set(dev->site_name) && !set(dev->division) && !set(dev->address) && !dev->has_location)
        return;
    const char *sep = "";
    gw_json_raw(b, ",\"place\":{");
    if (set(dev->site_name)) {
        gw_json_raw(b, "\"name\":");
        gw_json_str(b, dev->site_name);
        sep = ",";
    }
    if (set(dev->division)) {
        gw_json_raw(b, sep);
        gw_json_raw(b, "\"division\":");
        gw_json_str(b, dev->division);
        sep = ",";
    }
    if (set(dev->address)) {
        gw_json_raw(b, sep);
        gw_json_raw(b, "\"address\":");
        gw_json_str(b, dev->address);
        sep = ",";
    }
    if (dev->has_location) {
        gw_json_raw(b, sep);
        gw_json_raw(b, "\"lon\":");
        gw_json_num(b, dev->lon);
        gw_json_raw(b, ",\"lat\":");
        gw_json_num(b, dev->lat);
    }
    gw_json_raw(b, "}");
}

int gw_json_reading(char *out, size_t cap, const char *gw, const gw_json_dev *dev,
                    const gw_reading *r)
{
    gw_jbuf b;
    gw_jbuf_init(&b, out, cap);
    item_id(&b, gw, r->seq);
    gw_json_raw(&b, ",\"device\":");
    gw_json_str(&b, r->device);
    gw_json_raw(&b, ",\"type\":");
    gw_json_str(&b, dev->type);
    if (set(dev->site_id)) {
        gw_json_raw(&b, ",\"site\":");
        gw_json_str(&b, dev->site_id);
    }
    gw_json_raw(&b, ",\"metric\":");
    gw_json_str(&b, r->metric);
    gw_json_raw(&b, ",\"value\":");
    double scale = r->places ? pow(10.0, r->places - 1) : 0; /* the profile's decimals */
    gw_json_num(&b, scale ? round(r->value * scale) / scale + 0.0 : r->value);
    gw_json_raw(&b, ",\"unit\":");
    gw_json_str(&b, r->unit);
    gw_json_raw(&b, ",\"quality\":\"");
    gw_json_raw(&b, gw_quality_name(r->quality));
    gw_json_raw(&b, "\"");
    if (r->quality != GW_Q_GOOD || r->reason != GW_R_NONE) {
        gw_json_raw(&b, ",\"reason\":\"");
        gw_json_raw(&b, gw_reason_name(r->reason));
        gw_json_raw(&b, "\"");
    }
    gw_json_raw(&b, ",\"obs\":");
    gw_json_time(&b, r->obs_ms ? r->obs_ms : r->recv_ms);
    if (!r->obs_ms)
        gw_json_raw(&b, ",\"obs_src\":\"gateway\"");
    gw_json_raw(&b, ",\"recv\":");
    gw_json_time(&b, r->recv_ms);
    gw_json_raw(&b, "}");
    return b.overflow ? GW_EFULL : (int)b.len;
}

int gw_json_event(char *out, size_t cap, const char *gw, const gw_json_dev *dev, const gw_event *e)
{
    gw_jbuf b;
    gw_jbuf_init(&b, out, cap);
    item_id(&b, gw, e->seq);
    gw_json_raw(&b, ",\"device\":");
    gw_json_str(&b, e->device);
    gw_json_raw(&b, ",\"type\":");
    gw_json_str(&b, dev->type);
    gw_json_place(&b, dev);
    gw_json_raw(&b, ",\"event\":");
    gw_json_str(&b, e->kind);
    gw_json_raw(&b, e->active ? ",\"active\":true" : ",\"active\":false");
    if (e->detail[0]) {
        gw_json_raw(&b, ",\"detail\":");
        gw_json_str(&b, e->detail);
    }
    gw_json_raw(&b, ",\"obs\":");
    gw_json_time(&b, e->obs_ms ? e->obs_ms : e->recv_ms);
    gw_json_raw(&b, ",\"recv\":");
    gw_json_time(&b, e->recv_ms);
    gw_json_raw(&b, "}");
    return b.overflow ? GW_EFULL : (int)b.len;
}

/* The fields alarms and forecasts share: id, then `key` (alarm or forecast). */
static void transition_head(gw_jbuf *b, const char *gw, const gw_alarm *a, const char *key)
{
    item_id(b, gw, a->seq);
    gw_json_raw(b, key);
    gw_json_str(b, a->id);
    gw_json_raw(b, ",\"rule\":");
    gw_json_str(b, a->rule);
    gw_json_raw(b, ",\"device\":");
    gw_json_str(b, a->device);
    gw_json_raw(b, ",\"metric\":");
    gw_json_str(b, a->metric);
}

static int transition_tail(gw_jbuf *b, const gw_alarm *a)
{
    if (a->detail[0]) {
        gw_json_raw(b, ",\"detail\":");
        gw_json_str(b, a->detail);
    }
    gw_json_raw(b, ",\"raised\":");
    gw_json_time(b, a->raised_ms);
    gw_json_raw(b, ",\"at\":");
    gw_json_time(b, a->at_ms);
    gw_json_raw(b, "}");
    return b->overflow ? GW_EFULL : (int)b->len;
}

const char *gw_json_level_meaning(int level)
{
    static const char *const m[] = {"", "IV 一般", "III 较重", "II 严重", "I 特别严重"};
    return level >= 1 && level <= 4 ? m[level] : "";
}

int gw_json_alarm(char *out, size_t cap, const char *gw, const gw_alarm *a,
                  const gw_json_alarm_ext *x)
{
    gw_jbuf b;
    gw_jbuf_init(&b, out, cap);
    transition_head(&b, gw, a, ",\"alarm\":");
    if (x && x->dev) {
        if (set(x->dev->type)) {
            gw_json_raw(&b, ",\"type\":");
            gw_json_str(&b, x->dev->type);
        }
        gw_json_place(&b, x->dev);
    }
    gw_json_raw(&b, ",\"state\":\"");
    gw_json_raw(&b, gw_alarm_state_name(a->state));
    gw_json_raw(&b, "\",\"level\":");
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%d", a->level);
    gw_json_raw(&b, tmp);
    gw_json_raw(&b, ",\"level_name\":\"");
    gw_json_raw(&b, gw_level_name(a->level));
    gw_json_raw(&b, "\",\"value\":");
    gw_json_num(&b, a->value);
    gw_json_raw(&b, ",\"threshold\":");
    gw_json_num(&b, a->threshold);
    if (a->level) {
        gw_json_raw(&b, ",\"level_meaning\":");
        gw_json_str(&b, gw_json_level_meaning(a->level));
    }
    if (x && x->prev_level != a->level) {
        snprintf(tmp, sizeof(tmp), ",\"prev_level\":%d", x->prev_level);
        gw_json_raw(&b, tmp);
    }
    if (x && set(x->unit)) {
        gw_json_raw(&b, ",\"unit\":");
        gw_json_str(&b, x->unit);
    }
    if (x && isfinite(x->raise)) {
        gw_json_raw(&b, x->dir ? ",\"direction\":\"below\"" : ",\"direction\":\"above\"");
        gw_json_raw(&b, ",\"thresholds\":{\"raise\":");
        gw_json_num(&b, x->raise);
        gw_json_raw(&b, ",\"clear\":");
        gw_json_num(&b, x->clear);
        gw_json_raw(&b, "}");
    }
    if (x && set(x->text)) {
        gw_json_raw(&b, ",\"text\":");
        gw_json_str(&b, x->text);
    }
    return transition_tail(&b, a);
}

int gw_json_forecast(char *out, size_t cap, const char *gw, const gw_alarm *a, const gw_forecast *f)
{
    static const char *const states[] = {"raised", "updated", "withdrawn", "withdrawn"};
    gw_jbuf b;
    char tmp[64];
    gw_jbuf_init(&b, out, cap);
    transition_head(&b, gw, a, ",\"forecast\":");
    snprintf(tmp, sizeof(tmp), ",\"state\":\"%s\",\"level\":%d,\"level_name\":\"",
             states[a->state < 4 ? a->state : 2], a->level);
    gw_json_raw(&b, tmp);
    gw_json_raw(&b, gw_level_name(a->level));
    gw_json_raw(&b, "\",\"value\":");
    gw_json_num(&b, a->value);
    gw_json_raw(&b, ",\"threshold\":");
    gw_json_num(&b, a->threshold);
    gw_json_raw(&b, ",\"crossing\":");
    gw_json_time(&b, f->crossing_ms);
    gw_json_raw(&b, ",\"lead_min\":");
    double lead = round((double)(f->crossing_ms - a->at_ms) / 6000.0) / 10.0;
    gw_json_num(&b, lead == 0 ? 0 : lead); /* never "-0" */
    gw_json_raw(&b, ",\"rate\":");
    gw_json_num(&b, round(f->rate * 1000.0) / 1000.0);
    gw_json_raw(&b, ",\"confidence\":");
    gw_json_num(&b, round(f->confidence * 10000.0) / 10000.0);
    snprintf(tmp, sizeof(tmp), ",\"points\":%u,\"inputs\":[%s%s%s]", f->points,
             f->inputs & GW_FC_IN_LEVEL ? "\"level\"" : "",
             (f->inputs & GW_FC_IN_LEVEL) && (f->inputs & GW_FC_IN_RAIN) ? "," : "",
             f->inputs & GW_FC_IN_RAIN ? "\"rain\"" : "");
    gw_json_raw(&b, tmp);
    if (isfinite(f->rain_mmh)) {
        gw_json_raw(&b, ",\"rain_mmh\":");
        gw_json_num(&b, round(f->rain_mmh * 10.0) / 10.0);
    }
    if (a->state != GW_ALARM_CLEARED) {
        gw_json_raw(&b, ",\"crossings\":{");
        int first = 1;
        for (int l = 1; l <= 4; l++) {
            if (!f->crossings[l - 1])
                continue;
            snprintf(tmp, sizeof(tmp), "%s\"%s\":", first ? "" : ",", gw_level_name(l));
            gw_json_raw(&b, tmp);
            gw_json_time(&b, f->crossings[l - 1]);
            first = 0;
        }
        gw_json_raw(&b, "}");
    }
    if (f->linked) {
        gw_json_raw(&b, ",\"alarm\":");
        gw_json_str(&b, f->linked);
    }
    return transition_tail(&b, a);
}
