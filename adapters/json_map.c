/* JSON payloads through a mapping (format in json_map.h). A payload is decoded
 * in two passes: the first resolves every mapped field of every record into a
 * bounded output list and stops at the first fault; only a payload without
 * faults is emitted, so a bad field never leaves half a batch behind. */
#include "adapters/json_map.h"

#include "base/civil.h"
#include "base/cfgmap.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_SEGS 8
#define MAX_POINTS 64
#define MAX_EVENTS 32
#define MAX_RECORDS 1000
#define MAX_GENERIC 64

typedef struct jpath {
    int n;
    struct {
        char key[48]; /* empty for an index */
        int index;
    } seg[MAX_SEGS];
} jpath;

enum { TF_AUTO, TF_UNIX_S, TF_UNIX_MS, TF_ISO };

struct jpoint {
    jpath path;
    char metric[GW_KEY_MAX];
    char unit[GW_UNIT_MAX];
    double scale, offset;
};

struct jevent {
    jpath path;
    char kind[GW_KEY_MAX];
    char detail[GW_DETAIL_MAX];
};

struct gw_jmap {
    int has_time;
    jpath time;
    int time_format;
    int tz_min;
    struct jpoint points[MAX_POINTS];
    int npoints;
    struct jevent events[MAX_EVENTS];
    int nevents;
};

/* ---- paths ---- */

static int path_parse(const char *s, jpath *p)
{
    memset(p, 0, sizeof(*p));
    if (s[0] == '$')
        s += (s[1] == '.') ? 2 : 1;
    while (*s) {
        if (p->n == MAX_SEGS)
            return GW_EINVAL;
        if (*s == '[') {
            char *end;
            long v = strtol(s + 1, &end, 10);
            if (end == s + 1 || *end != ']' || v < 0 || v > 100000)
                return GW_EINVAL;
            p->seg[p->n].index = (int)v;
            p->seg[p->n].key[0] = '\0';
            p->n++;
            s = end + 1;
            if (*s == '.')
                s++;
            continue;
        }
        size_t k = strcspn(s, ".[");
        if (k == 0 || k >= sizeof(p->seg[0].key))
            return GW_EINVAL;
        memcpy(p->seg[p->n].key, s, k);
        p->seg[p->n].key[k] = '\0';
        p->n++;
        s += k;
        if (*s == '.') {
            s++;
            if (!*s)
                return GW_EINVAL;
        }
    }
    return p->n ? GW_OK : GW_EINVAL;
}

static const cJSON *path_get(const cJSON *root, const jpath *p)
{
    const cJSON *n = root;
    for (int i = 0; i < p->n && n; i++) {
        if (p->seg[i].key[0])
            n = cJSON_IsObject(n) ? cJSON_GetObjectItemCaseSensitive(n, p->seg[i].key) : NULL;
        else
            n = cJSON_IsArray(n) ? cJSON_GetArrayItem(n, p->seg[i].index) : NULL;
    }
    return n;
}

/* ---- time ---- */

static int digits(const char **s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9')
            return GW_EMALFORMED;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return GW_OK;
}

int gw_jmap_parse_iso(const char *s, int tz_min, int64_t *ms)
{
    int Y, M, D, h, mi, sec, frac = 0;
    if (digits(&s, 4, &Y) || *s++ != '-' || digits(&s, 2, &M) || *s++ != '-' || digits(&s, 2, &D))
        return GW_EMALFORMED;
    if (*s != 'T' && *s != 't' && *s != ' ')
        return GW_EMALFORMED;
    s++;
    if (digits(&s, 2, &h) || *s++ != ':' || digits(&s, 2, &mi) || *s++ != ':' ||
        digits(&s, 2, &sec))
        return GW_EMALFORMED;
    if (*s == '.' || *s == ',') {
        s++;
        int nd = 0;
        while (*s >= '0' && *s <= '9') {
            if (nd < 3)
                frac = frac * 10 + (*s - '0');
            nd++;
            s++;
        }
        if (nd == 0 || nd > 9)
            return GW_EMALFORMED;
        for (; nd < 3; nd++)
            frac *= 10;
    }
    int off = tz_min;
    if (*s == 'Z' || *s == 'z') {
        off = 0;
        s++;
    } else if (*s == '+' || *s == '-') {
        int sign = *s++ == '-' ? -1 : 1, oh, om = 0;
        if (digits(&s, 2, &oh))
            return GW_EMALFORMED;
        if (*s == ':')
            s++;
        if (*s && digits(&s, 2, &om))
            return GW_EMALFORMED;
        if (oh > 14 || om > 59)
            return GW_EMALFORMED;
        off = sign * (oh * 60 + om);
    }
    if (*s)
        return GW_EMALFORMED;
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (Y < 1970 || M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || h > 23 || mi > 59 || sec > 60)
        return GW_EMALFORMED;
    int64_t days = gw_days_from_civil(Y, (unsigned)M, (unsigned)D);
    *ms = ((days * 86400 + h * 3600 + mi * 60 + sec) - (int64_t)off * 60) * 1000 + frac;
    return GW_OK;
}

static int time_of(const cJSON *n, int fmt, int tz_min, int64_t *ms)
{
    double v;
    if (cJSON_IsNumber(n)) {
        v = n->valuedouble;
    } else if (cJSON_IsString(n)) {
        const char *s = n->valuestring;
        if (fmt == TF_ISO || (fmt == TF_AUTO && strspn(s, "0123456789") != strlen(s)))
            return gw_jmap_parse_iso(s, tz_min, ms);
        if (gw_parse_double(s, &v))
            return GW_EMALFORMED;
    } else {
        return GW_EMALFORMED;
    }
    if (fmt == TF_ISO || !isfinite(v) || v < 0 || v > 9.0e15)
        return GW_EMALFORMED;
    int is_ms = fmt == TF_UNIX_MS || (fmt == TF_AUTO && v >= 1e11);
    *ms = is_ms ? (int64_t)llround(v) : (int64_t)llround(v * 1000.0);
    return GW_OK;
}

/* ---- values ---- */

/* 1 = a value, 0 = absent (skip), GW_EMALFORMED = wrong type. */
static int number_of(const cJSON *n, double *v)
{
    if (!n || cJSON_IsNull(n))
        return 0;
    if (cJSON_IsNumber(n)) {
        *v = n->valuedouble;
        return isfinite(*v) ? 1 : GW_EMALFORMED;
    }
    if (cJSON_IsBool(n)) {
        *v = cJSON_IsTrue(n) ? 1 : 0;
        return 1;
    }
    if (cJSON_IsString(n) && gw_parse_double(n->valuestring, v) == GW_OK)
        return 1;
    return GW_EMALFORMED;
}

static int active_of(const cJSON *n, int *active)
{
    if (!n || cJSON_IsNull(n))
        return 0;
    if (cJSON_IsBool(n)) {
        *active = cJSON_IsTrue(n);
        return 1;
    }
    if (cJSON_IsNumber(n)) {
        *active = n->valuedouble != 0;
        return 1;
    }
    if (cJSON_IsString(n)) {
        static const char *const on[] = {"1", "true", "on", "active", "alarm", NULL};
        static const char *const off[] = {"0",      "false",   "off", "inactive",
                                          "normal", "cleared", NULL};
        for (int i = 0; on[i]; i++)
            if (!strcasecmp(n->valuestring, on[i])) {
                *active = 1;
                return 1;
            }
        for (int i = 0; off[i]; i++)
            if (!strcasecmp(n->valuestring, off[i])) {
                *active = 0;
                return 1;
            }
    }
    return GW_EMALFORMED;
}

/* ---- decoding ---- */

struct outlist {
    gw_reading *r;
    size_t nr, rcap;
    gw_event *e;
    size_t ne, ecap;
};

static int add_reading(struct outlist *o, const gw_reading *r)
{
    if (o->nr == o->rcap) {
        size_t cap = o->rcap ? o->rcap * 2 : 16;
        gw_reading *n = realloc(o->r, cap * sizeof(*n));
        if (!n)
            return GW_ENOMEM;
        o->r = n;
        o->rcap = cap;
    }
    o->r[o->nr++] = *r;
    return GW_OK;
}

static int add_event(struct outlist *o, const gw_event *e)
{
    if (o->ne == o->ecap) {
        size_t cap = o->ecap ? o->ecap * 2 : 8;
        gw_event *n = realloc(o->e, cap * sizeof(*n));
        if (!n)
            return GW_ENOMEM;
        o->e = n;
        o->ecap = cap;
    }
    o->e[o->ne++] = *e;
    return GW_OK;
}

static int record_mapped(const gw_jmap *m, const cJSON *rec, struct outlist *o)
{
    int64_t obs = 0;
    if (m->has_time) {
        const cJSON *t = path_get(rec, &m->time);
        if (t && !cJSON_IsNull(t) && time_of(t, m->time_format, m->tz_min, &obs))
            return GW_EMALFORMED;
    }
    for (int i = 0; i < m->nevents; i++) {
        const struct jevent *je = &m->events[i];
        int active, rc = active_of(path_get(rec, &je->path), &active);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        gw_event e;
        memset(&e, 0, sizeof(e));
        memcpy(e.kind, je->kind, sizeof(e.kind));
        memcpy(e.detail, je->detail, sizeof(e.detail));
        e.active = (uint8_t)active;
        e.obs_ms = obs;
        if ((rc = add_event(o, &e)))
            return rc;
    }
    for (int i = 0; i < m->npoints; i++) {
        const struct jpoint *jp = &m->points[i];
        double v;
        int rc = number_of(path_get(rec, &jp->path), &v);
        if (rc < 0)
            return rc;
        if (rc == 0)
            continue;
        gw_reading r;
        memset(&r, 0, sizeof(r));
        memcpy(r.metric, jp->metric, sizeof(r.metric));
        memcpy(r.unit, jp->unit, sizeof(r.unit));
        r.value = v * jp->scale + jp->offset;
        if (!isfinite(r.value))
            return GW_EMALFORMED;
        r.obs_ms = obs;
        if ((rc = add_reading(o, &r)))
            return rc;
    }
    return GW_OK;
}

static int record_generic(const cJSON *rec, struct outlist *o)
{
    int64_t obs = 0;
    static const char *const tkeys[] = {"ts", "time", "timestamp", NULL};
    for (int i = 0; tkeys[i]; i++) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(rec, tkeys[i]);
        if (t && !cJSON_IsNull(t)) {
            if (time_of(t, TF_AUTO, 0, &obs))
                return GW_EMALFORMED;
            break;
        }
    }
    const cJSON *it;
    int n = 0;
    cJSON_ArrayForEach(it, rec)
    {
        if (!it->string || !(cJSON_IsNumber(it) || cJSON_IsBool(it)))
            continue;
        if (!strcmp(it->string, "ts") || !strcmp(it->string, "time") ||
            !strcmp(it->string, "timestamp") || strlen(it->string) >= GW_KEY_MAX)
            continue;
        if (++n > MAX_GENERIC)
            break;
        gw_reading r;
        memset(&r, 0, sizeof(r));
        gw_strlcpy(r.metric, it->string, sizeof(r.metric));
        r.value = cJSON_IsNumber(it) ? it->valuedouble : cJSON_IsTrue(it);
        if (!isfinite(r.value))
            return GW_EMALFORMED;
        r.obs_ms = obs;
        int rc = add_reading(o, &r);
        if (rc)
            return rc;
    }
    return GW_OK;
}

int gw_jmap_decode(const gw_jmap *m, const char *json, size_t len, int64_t now_ms,
                   const gw_sink *out)
{
    if (!json || len == 0)
        return GW_EMALFORMED;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return GW_EMALFORMED;
    int rc = gw_jmap_decode_tree(m, root, now_ms, out);
    cJSON_Delete(root);
    return rc;
}

int gw_jmap_decode_tree(const gw_jmap *m, const cJSON *root, int64_t now_ms, const gw_sink *out)
{
    if (!root)
        return GW_EMALFORMED;
    struct outlist o;
    memset(&o, 0, sizeof(o));
    int rc = GW_OK;
    int nrec = cJSON_IsArray(root) ? cJSON_GetArraySize(root) : 1;
    if ((!cJSON_IsObject(root) && !cJSON_IsArray(root)) || nrec > MAX_RECORDS || nrec == 0) {
        rc = GW_EMALFORMED;
        goto done;
    }
    const cJSON *rec = cJSON_IsArray(root) ? root->child : root;
    for (; rec && rc == GW_OK; rec = cJSON_IsArray(root) ? rec->next : NULL) {
        if (!cJSON_IsObject(rec))
            rc = GW_EMALFORMED;
        else
            rc = m ? record_mapped(m, rec, &o) : record_generic(rec, &o);
    }
    if (rc == GW_OK && o.nr == 0 && o.ne == 0)
        rc = GW_EMALFORMED; /* nothing the mapping knows: not this device's payload */
    /* Events first: an alarm should never wait behind a batch of readings. */
    for (size_t i = 0; rc == GW_OK && i < o.ne; i++)
        if (out->event)
            rc = out->event(out->ctx, &o.e[i]);
    for (size_t i = 0; rc == GW_OK && i < o.nr; i++)
        if (out->reading)
            rc = out->reading(out->ctx, &o.r[i]);
done:
    free(o.r);
    free(o.e);
    return rc;
}

int gw_jmap_get_text(const char *json, size_t len, const char *path, char *out, size_t cap)
{
    jpath p;
    if (path_parse(path, &p))
        return GW_EINVAL;
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return GW_EMALFORMED;
    const cJSON *n = path_get(root, &p);
    int rc = GW_ENOTFOUND;
    if (cJSON_IsString(n)) {
        rc = gw_strlcpy(out, n->valuestring, cap) ? GW_ENOTFOUND : GW_OK;
    } else if (cJSON_IsNumber(n) && n->valuedouble >= 0 && n->valuedouble < 1e18 &&
               n->valuedouble == floor(n->valuedouble)) {
        rc = (size_t)snprintf(out, cap, "%.0f", n->valuedouble) < cap ? GW_OK : GW_ENOTFOUND;
    }
    cJSON_Delete(root);
    return rc;
}

/* ---- loading ---- */

#define F(s, m) offsetof(s, m), sizeof(((s *)0)->m)

struct topconf {
    char time[128];
    int time_format;
    char time_zone[16];
    const gw_ynode *points, *events;
};
static const char *const time_formats[] = {"auto", "unix_s", "unix_ms", "iso8601", NULL};
static const gw_cfgkey top_keys[] = {
    {"time", GW_CT_STR, "", 0, -1, F(struct topconf, time), NULL, 0, "observation time path"},
    {"time_format", GW_CT_ENUM, "auto", 0, -1, offsetof(struct topconf, time_format), 0,
     time_formats, 0, "auto, unix_s, unix_ms or iso8601"},
    {"time_zone", GW_CT_STR, "Z", 0, -1, F(struct topconf, time_zone), NULL, 0,
     "offset of ISO times without one"},
    {"points", GW_CT_NODE, NULL, 0, -1, offsetof(struct topconf, points), 0, NULL, 0, "readings"},
    {"events", GW_CT_NODE, NULL, 0, -1, offsetof(struct topconf, events), 0, NULL, 0, "events"},
    {NULL}};

struct pointconf {
    char path[128], metric[GW_KEY_MAX], unit[GW_UNIT_MAX];
    double scale, offset;
};
static const gw_cfgkey point_keys[] = {
    {"path", GW_CT_STR, NULL, 0, -1, F(struct pointconf, path), NULL, GW_CF_REQUIRED, "JSON path"},
    {"metric", GW_CT_STR, "", 0, -1, F(struct pointconf, metric), NULL, 0, "reading key"},
    {"unit", GW_CT_STR, "", 0, -1, F(struct pointconf, unit), NULL, 0, "unit"},
    {"scale", GW_CT_DOUBLE, "1", 0, -1, offsetof(struct pointconf, scale), 0, NULL, 0,
     "multiplier"},
    {"offset", GW_CT_DOUBLE, "0", 0, -1, offsetof(struct pointconf, offset), 0, NULL, 0,
     "added after scaling"},
    {NULL}};

struct eventconf {
    char path[128], kind[GW_KEY_MAX], detail[GW_DETAIL_MAX];
};
static const gw_cfgkey event_keys[] = {
    {"path", GW_CT_STR, NULL, 0, -1, F(struct eventconf, path), NULL, GW_CF_REQUIRED, "JSON path"},
    {"kind", GW_CT_STR, NULL, 0, -1, F(struct eventconf, kind), NULL, GW_CF_REQUIRED, "event kind"},
    {"detail", GW_CT_STR, "", 0, -1, F(struct eventconf, detail), NULL, 0, "event detail"},
    {NULL}};

static int tz_parse(const char *s, int *min)
{
    if (!strcmp(s, "Z") || !strcmp(s, "UTC")) {
        *min = 0;
        return GW_OK;
    }
    int h, m;
    char sign;
    if (sscanf(s, "%c%2d:%2d", &sign, &h, &m) != 3 || (sign != '+' && sign != '-') || h > 14 ||
        m > 59 || strlen(s) != 6)
        return GW_EINVAL;
    *min = (sign == '-' ? -1 : 1) * (h * 60 + m);
    return GW_OK;
}

static int bad(char *err, size_t errlen, const gw_ynode *n, const char *path, const char *msg)
{
    snprintf(err, errlen, "%s:%d: key '%s': %s", GW_YPOS(n), path, msg);
    return GW_EINVAL;
}

int gw_jmap_load(gw_jmap **out, const gw_ynode *node, const char *path, char *err, size_t errlen)
{
    *out = NULL;
    if (!node || node->type != GW_Y_MAP)
        return bad(err, errlen, node, path, "must be a mapping");
    gw_jmap *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    struct topconf t;
    char sub[160];
    if (gw_cfg_apply(top_keys, node, &t, path, err, errlen))
        goto error;
    m->time_format = t.time_format;
    if (tz_parse(t.time_zone, &m->tz_min)) {
        bad(err, errlen, gw_ymap_get(node, "time_zone"), path,
            "time_zone must be Z or +HH:MM / -HH:MM");
        goto error;
    }
    if (t.time[0]) {
        if (path_parse(t.time, &m->time)) {
            bad(err, errlen, gw_ymap_get(node, "time"), path, "time is not a valid JSON path");
            goto error;
        }
        m->has_time = 1;
    }
    if (t.points && (t.points->type != GW_Y_SEQ || t.points->n > MAX_POINTS)) {
        bad(err, errlen, t.points, path, "points must be a list of at most 64 entries");
        goto error;
    }
    if (t.events && (t.events->type != GW_Y_SEQ || t.events->n > MAX_EVENTS)) {
        bad(err, errlen, t.events, path, "events must be a list of at most 32 entries");
        goto error;
    }
    if ((!t.points || t.points->n == 0) && (!t.events || t.events->n == 0)) {
        bad(err, errlen, node, path, "needs at least one entry in points or events");
        goto error;
    }
    for (size_t i = 0; t.points && i < t.points->n; i++) {
        struct pointconf pc;
        struct jpoint *jp = &m->points[m->npoints];
        snprintf(sub, sizeof(sub), "%s.points[%zu]", path, i);
        if (gw_cfg_apply(point_keys, t.points->kids[i], &pc, sub, err, errlen))
            goto error;
        if (path_parse(pc.path, &jp->path)) {
            bad(err, errlen, t.points->kids[i], sub, "path is not a valid JSON path");
            goto error;
        }
        const char *metric = pc.metric[0] ? pc.metric : jp->path.seg[jp->path.n - 1].key;
        if (!metric[0] || gw_strlcpy(jp->metric, metric, sizeof(jp->metric))) {
            bad(err, errlen, t.points->kids[i], sub, "needs a metric (at most 31 characters)");
            goto error;
        }
        memcpy(jp->unit, pc.unit, sizeof(jp->unit));
        jp->scale = pc.scale;
        jp->offset = pc.offset;
        m->npoints++;
    }
    for (size_t i = 0; t.events && i < t.events->n; i++) {
        struct eventconf ec;
        struct jevent *je = &m->events[m->nevents];
        snprintf(sub, sizeof(sub), "%s.events[%zu]", path, i);
        if (gw_cfg_apply(event_keys, t.events->kids[i], &ec, sub, err, errlen))
            goto error;
        if (path_parse(ec.path, &je->path)) {
            bad(err, errlen, t.events->kids[i], sub, "path is not a valid JSON path");
            goto error;
        }
        memcpy(je->kind, ec.kind, sizeof(je->kind));
        memcpy(je->detail, ec.detail, sizeof(je->detail));
        m->nevents++;
    }
    *out = m;
    return GW_OK;
error:
    free(m);
    return GW_EINVAL;
}

void gw_jmap_free(gw_jmap *m)
{
    free(m);
}

static int generic_decode(const uint8_t *buf, size_t len, int64_t now_ms, const gw_sink *out)
{
    return gw_jmap_decode(NULL, (const char *)buf, len, now_ms, out);
}

static int mapped_decode(const gw_jmap *m, const uint8_t *buf, size_t len, int64_t now_ms,
                         const gw_sink *out)
{
    return gw_jmap_decode(m, (const char *)buf, len, now_ms, out);
}

/* An object's "imei", else its "ep" (the LwM2M endpoint name). */
static int json_identify(const uint8_t *buf, size_t len, char *id, size_t cap)
{
    const char *text = (const char *)buf;
    if (!len || (buf[0] != '{' && buf[0] != '['))
        return GW_ENOTFOUND;
    if (gw_jmap_get_text(text, len, "imei", id, cap) == GW_OK ||
        gw_jmap_get_text(text, len, "ep", id, cap) == GW_OK)
        return GW_OK;
    return GW_ENOTFOUND;
}

/* content_formats stays NULL: JSON devices often state none or a wrong one. */
const gw_adapter gw_adapter_json_map = {
    .name = "json-map",
    .version = "1.0",
    .description = "JSON payloads; generic (every top-level number) or through a json_map",
    .payload = GW_PAYLOAD_JSON,
    .decode = generic_decode,
    .decode_mapped = mapped_decode,
    .identify = json_identify,
};
