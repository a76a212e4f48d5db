/* Gauge payloads: one flat JSON object per reading, built with snprintf into
 * the caller's buffer. Field names are checked by the scenario parser (letters,
 * digits, _ . -), so nothing here needs escaping except the device id, which is
 * escaped anyway. Pure: time is an argument. */
#include "sim/enc_gauge.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

typedef struct jbuf {
    char *p;
    size_t cap, len;
    int overflow;
} jbuf;

static void put(jbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(jbuf *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->cap - o->len) {
        o->overflow = 1;
        return;
    }
    o->len += (size_t)n;
}

static void put_json_string(jbuf *o, const char *s)
{
    put(o, "\"");
    for (; *s && !o->overflow; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            put(o, "\\%c", ch);
        else if (ch < 0x20)
            put(o, "\\u%04x", ch);
        else
            put(o, "%c", ch);
    }
    put(o, "\"");
}

int sim_gauge_payload(const sim_gauge_msg *m, char *buf, size_t cap)
{
    jbuf o = {buf, cap, 0, 0};
    int first = 1;
    if (cap == 0)
        return SIM_EINVAL;
    buf[0] = 0;
    put(&o, "{");
    if (m->ts_format != SIM_TS_NONE && m->ts_field && m->ts_field[0]) {
        put(&o, "\"%s\":", m->ts_field);
        if (m->ts_format == SIM_TS_ISO) {
            time_t secs = (time_t)(m->ts_ms >= 0 ? m->ts_ms / 1000 : (m->ts_ms - 999) / 1000);
            int ms = (int)(m->ts_ms - (int64_t)secs * 1000);
            struct tm tm;
            if (!gmtime_r(&secs, &tm))
                return SIM_EINVAL;
            put(&o, "\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
        } else if (m->ts_format == SIM_TS_EPOCH) {
            put(&o, "%lld", (long long)(m->ts_ms / 1000));
        } else {
            put(&o, "%lld", (long long)m->ts_ms);
        }
        first = 0;
    }
    if (m->id_field && m->id_field[0] && m->id) {
        put(&o, "%s\"%s\":", first ? "" : ",", m->id_field);
        put_json_string(&o, m->id);
        first = 0;
    }
    for (int i = 0; i < m->nv; i++) {
        const sim_gauge_value *v = &m->v[i];
        put(&o, "%s\"%s\":", first ? "" : ",", v->name);
        first = 0;
        if (m->malformed && i == m->nv - 1)
            break; /* `"level":` and no value, no closing brace */
        if (!isfinite(v->value))
            put(&o, "null");
        else
            put(&o, "%.*f", v->decimals < 0 ? 0 : v->decimals > 9 ? 9 : v->decimals, v->value);
    }
    if (m->malformed && m->nv == 0)
        put(&o, "\"truncated");
    else if (!m->malformed)
        put(&o, "}");
    if (o.overflow)
        return SIM_EINVAL;
    return (int)o.len;
}
