/* Loading a Modbus profile: YAML tree -> checked points -> planned reads. The
 * loader works in three passes: every point's own keys (through config tables,
 * so unknown keys and wrong types name file, line and key), then references
 * between points (decimals_from, unit_from, derived expressions, param
 * fallbacks) once every name is known, then request planning. The format is
 * documented in modbus_profile.h. */
#include "adapters/modbus_internal.h"

#include "base/cfgmap.h"
#include "base/yamldoc.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"coil", "discrete", "holding", "input", NULL};
static const char *const type_names[] = {"bool",   "bits",  "int16",  "uint16",  "int32",
                                         "uint32", "int64", "uint64", "float32", "float64",
                                         "bcd16",  "bcd32", "string", "bcd",     NULL};

typedef struct top_raw {
    char name[64];
    char device_type[GW_KEY_MAX];
    char description[256];
    char vendor[64];
    int64_t max_gap, max_gap_bits, max_regs, max_bits;
    const gw_ynode *unreadable, *params, *points;
} top_raw;

#define T(f) offsetof(top_raw, f), sizeof(((top_raw *)0)->f)
static const gw_cfgkey top_keys[] = {
    {"name", GW_CT_STR, NULL, 0, -1, T(name), NULL, GW_CF_REQUIRED, "profile name"},
    {"device_type", GW_CT_STR, NULL, 0, -1, T(device_type), NULL, GW_CF_REQUIRED, "device type"},
    {"description", GW_CT_STR, "", 0, -1, T(description), NULL, 0, "free text"},
    {"vendor", GW_CT_STR, "", 0, -1, T(vendor), NULL, 0, "free text"},
    {"max_gap", GW_CT_INT, "8", 0, 124, T(max_gap), NULL, 0, "registers bridged"},
    {"max_gap_bits", GW_CT_INT, "64", 0, 1999, T(max_gap_bits), NULL, 0, "bits bridged"},
    {"max_read_registers", GW_CT_INT, "125", 1, 125, T(max_regs), NULL, 0, "registers per read"},
    {"max_read_bits", GW_CT_INT, "2000", 1, 2000, T(max_bits), NULL, 0, "bits per read"},
    {"unreadable", GW_CT_NODE, NULL, 0, -1, T(unreadable), NULL, 0, "ranges never read"},
    {"params", GW_CT_NODE, NULL, 0, -1, T(params), NULL, 0, "site params"},
    {"points", GW_CT_NODE, NULL, 0, -1, T(points), NULL, GW_CF_REQUIRED, "points"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};
#undef T

typedef struct point_raw {
    char name[GW_KEY_MAX];
    char metric[GW_KEY_MAX];
    int kind;
    int64_t address;
    int type;
    char order[16];
    int64_t bit, width, length;
    double scale, offset;
    char decimals_from[GW_KEY_MAX];
    char unit_from[GW_KEY_MAX];
    const gw_ynode *unit_codes, *range;
    char unit[GW_UNIT_MAX];
    int writable, internal;
    int64_t write_fc;
    char derived[MB_MAX_EXPR_LEN + 1];
    char deadband[32];
    int64_t max_silence;
    int64_t decimals;
    const gw_ynode *events, *codes, *applies_to;
    char description[256];
} point_raw;

#define P(f) offsetof(point_raw, f), sizeof(((point_raw *)0)->f)
static const gw_cfgkey point_keys[] = {
    {"name", GW_CT_STR, NULL, 0, -1, P(name), NULL, GW_CF_REQUIRED, "point name"},
    {"metric", GW_CT_STR, "", 0, -1, P(metric), NULL, 0, "reading key"},
    {"kind", GW_CT_ENUM, NULL, 0, -1, P(kind), kind_names, 0, "register kind"},
    {"address", GW_CT_INT, NULL, 0, 65535, P(address), NULL, 0, "register address"},
    {"type", GW_CT_ENUM, NULL, 0, -1, P(type), type_names, 0, "data type"},
    {"order", GW_CT_STR, "", 0, -1, P(order), NULL, 0, "byte order"},
    {"bit", GW_CT_INT, "0", 0, 15, P(bit), NULL, 0, "bit offset"},
    {"width", GW_CT_INT, "1", 1, 16, P(width), NULL, 0, "bit width"},
    {"length", GW_CT_INT, "1", 1, MB_MAX_STRING, P(length), NULL, 0, "string registers"},
    {"scale", GW_CT_DOUBLE, "1", 0, -1, P(scale), NULL, 0, "multiplier"},
    {"offset", GW_CT_DOUBLE, "0", 0, -1, P(offset), NULL, 0, "added after scale"},
    {"decimals_from", GW_CT_STR, "", 0, -1, P(decimals_from), NULL, 0, "decimals point"},
    {"unit_from", GW_CT_STR, "", 0, -1, P(unit_from), NULL, 0, "unit code point"},
    {"unit_codes", GW_CT_NODE, NULL, 0, -1, P(unit_codes), NULL, 0, "unit code table"},
    {"unit", GW_CT_STR, "", 0, -1, P(unit), NULL, 0, "unit"},
    {"range", GW_CT_NODE, NULL, 0, -1, P(range), NULL, 0, "[min, max]"},
    {"writable", GW_CT_BOOL, "false", 0, -1, P(writable), NULL, 0, "may be written"},
    {"internal", GW_CT_BOOL, "false", 0, -1, P(internal), NULL, 0, "not emitted"},
    {"write_fc", GW_CT_INT, "0", 0, -1, P(write_fc), NULL, 0, "write function"},
    {"derived", GW_CT_STR, "", 0, -1, P(derived), NULL, 0, "expression"},
    {"deadband", GW_CT_STR, "", 0, -1, P(deadband), NULL, 0, "absolute or percent"},
    {"max_silence", GW_CT_DURATION, "0", 0, -1, P(max_silence), NULL, 0, "report at least"},
    {"decimals", GW_CT_INT, "0", 0, 9, P(decimals), NULL, 0, "published decimal places"},
    {"events", GW_CT_NODE, NULL, 0, -1, P(events), NULL, 0, "bits that are events"},
    {"codes", GW_CT_NODE, NULL, 0, -1, P(codes), NULL, 0, "values that are events or reasons"},
    {"applies_to", GW_CT_NODE, NULL, 0, -1, P(applies_to), NULL, 0, "points a reason marks"},
    {"description", GW_CT_STR, "", 0, -1, P(description), NULL, 0, "free text"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};
#undef P

typedef struct param_raw {
    double def;
    char fallback[GW_KEY_MAX];
    char unit[GW_UNIT_MAX];
    char description[256];
} param_raw;

#define R(f) offsetof(param_raw, f), sizeof(((param_raw *)0)->f)
static const gw_cfgkey param_keys[] = {
    {"default", GW_CT_DOUBLE, NULL, 0, -1, R(def), NULL, 0, "value without a site value"},
    {"fallback", GW_CT_STR, "", 0, -1, R(fallback), NULL, 0, "point without a site value"},
    {"unit", GW_CT_STR, "", 0, -1, R(unit), NULL, 0, "unit"},
    {"description", GW_CT_STR, "", 0, -1, R(description), NULL, 0, "free text"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};
#undef R

typedef struct range_raw {
    int kind;
    int64_t from, to;
} range_raw;

#define U(f) offsetof(range_raw, f), sizeof(((range_raw *)0)->f)
static const gw_cfgkey range_keys[] = {
    {"kind", GW_CT_ENUM, NULL, 0, -1, U(kind), kind_names, GW_CF_REQUIRED, "register kind"},
    {"from", GW_CT_INT, NULL, 0, 65535, U(from), NULL, GW_CF_REQUIRED, "first address"},
    {"to", GW_CT_INT, NULL, 0, 65535, U(to), NULL, GW_CF_REQUIRED, "last address"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};
#undef U

typedef struct ucode_raw {
    char unit[GW_UNIT_MAX];
    double factor;
} ucode_raw;

#define C(f) offsetof(ucode_raw, f), sizeof(((ucode_raw *)0)->f)
static const gw_cfgkey ucode_keys[] = {
    {"unit", GW_CT_STR, NULL, 0, -1, C(unit), NULL, GW_CF_REQUIRED, "device unit"},
    {"factor", GW_CT_DOUBLE, NULL, 0, -1, C(factor), NULL, 0, "to the point's unit"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};
#undef C

static const char *const active_names[] = {"high", "low", NULL};
static const char *const quality_names[] = {"bad", "uncertain", NULL};

typedef struct event_raw {
    int64_t bit;
    char event[GW_KEY_MAX];
    int active;
} event_raw;

#define E(f) offsetof(event_raw, f), sizeof(((event_raw *)0)->f)
static const gw_cfgkey event_keys[] = {
    {"bit", GW_CT_INT, "0", 0, 31, E(bit), NULL, 0, "the bit"},
    {"event", GW_CT_STR, NULL, 0, -1, E(event), NULL, GW_CF_REQUIRED, "event kind"},
    {"active", GW_CT_ENUM, "high", 0, -1, E(active), active_names, 0, "high or low"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};
#undef E

typedef struct code_raw {
    char event[GW_KEY_MAX];
    char reason[GW_KEY_MAX];
    int quality;
} code_raw;

#define K(f) offsetof(code_raw, f), sizeof(((code_raw *)0)->f)
static const gw_cfgkey code_keys[] = {
    {"event", GW_CT_STR, "", 0, -1, K(event), NULL, 0, "event kind"},
    {"reason", GW_CT_STR, "", 0, -1, K(reason), NULL, 0, "quality reason"},
    {"quality", GW_CT_ENUM, "bad", 0, -1, K(quality), quality_names, 0, "bad or uncertain"},
    {NULL, 0, NULL, 0, 0, 0, 0, NULL, 0, NULL}};
#undef K

/* Writes "FILE:LINE: key 'PATH': message" into err. */
static int fail(char *err, size_t errlen, const gw_ynode *n, const char *path, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s:%d: key '%s': %s", GW_YPOS(n), path, msg);
    return GW_EINVAL;
}

/* The node of key in map, or map itself (for a line number) when absent. */
static const gw_ynode *at(const gw_ynode *map, const char *key)
{
    const gw_ynode *n = gw_ymap_get(map, key);
    return n ? n : map;
}

/* yamldoc keeps complex (non-scalar) mapping keys as NULL; config tables and
 * lookups expect strings, so such documents are refused up front. */
static int check_keys(const gw_ynode *n, int depth, char *err, size_t errlen)
{
    if (!n || depth > 64)
        return GW_OK;
    for (size_t i = 0; i < n->n; i++) {
        if (n->type == GW_Y_MAP && (!n->keys || !n->keys[i])) {
            snprintf(err, errlen, "%s:%d: mapping keys must be plain scalars", GW_YPOS(n));
            return GW_EINVAL;
        }
        if (check_keys(n->kids[i], depth + 1, err, errlen))
            return GW_EINVAL;
    }
    return GW_OK;
}

static int is_ident(const char *s)
{
    if (!isalpha((unsigned char)*s) && *s != '_')
        return 0;
    for (s++; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_')
            return 0;
    return 1;
}

static int is_label(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return 0;
    return 1;
}

static int find_point(const gw_profile *p, const char *name)
{
    for (size_t i = 0; i < p->npoints; i++)
        if (strcmp(p->points[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* Sets pt->nbytes and pt->order from the order text for the point's type. */
static int set_order(mb_point *pt, const char *order)
{
    static const char *const o16[] = {"AB", "BA", NULL};
    static const char *const o32[] = {"ABCD", "DCBA", "BADC", "CDAB", NULL};
    static const char *const o64[] = {"ABCDEFGH", "HGFEDCBA", "BADCFEHG", "GHEFCDAB", NULL};
    const char *const *allowed = NULL;
    switch (pt->type) {
    case MB_T_BOOL:
        if (pt->kind == MB_COIL || pt->kind == MB_DISCRETE)
            return *order ? GW_EINVAL : GW_OK;
        /* fall through */
    case MB_T_BITS:
    case MB_T_INT16:
    case MB_T_UINT16:
    case MB_T_BCD16:
    case MB_T_STRING:
        allowed = o16;
        break;
    case MB_T_INT32:
    case MB_T_UINT32:
    case MB_T_FLOAT32:
    case MB_T_BCD32:
        allowed = o32;
        break;
    default:
        allowed = o64;
        break;
    }
    if (!*order)
        order = allowed[0];
    for (size_t i = 0; allowed[i]; i++) {
        if (strcmp(allowed[i], order) == 0) {
            pt->nbytes = (uint8_t)strlen(order);
            for (size_t k = 0; k < pt->nbytes; k++)
                pt->order[k] = (uint8_t)(order[k] - 'A');
            return GW_OK;
        }
    }
    return GW_EINVAL;
}

static const char *order_hint(int type, int kind)
{
    switch (type) {
    case MB_T_BOOL:
        if (kind == MB_COIL || kind == MB_DISCRETE)
            return "coils and discrete inputs take no order";
        /* fall through */
    case MB_T_BITS:
    case MB_T_INT16:
    case MB_T_UINT16:
    case MB_T_BCD16:
    case MB_T_STRING:
        return "use AB or BA";
    case MB_T_INT32:
    case MB_T_UINT32:
    case MB_T_FLOAT32:
    case MB_T_BCD32:
        return "use ABCD, DCBA, BADC or CDAB";
    default:
        return "use ABCDEFGH, HGFEDCBA, BADCFEHG or GHEFCDAB";
    }
}

static int parse_bound(const gw_ynode *n, double *v, uint8_t *has)
{
    if (n->type != GW_Y_SCALAR)
        return GW_EINVAL;
    if (!n->quoted && (!strcmp(n->str, "~") || !strcmp(n->str, "null") || !*n->str)) {
        *has = 0;
        return GW_OK;
    }
    if (n->quoted || gw_parse_double(n->str, v))
        return GW_EINVAL;
    *has = 1;
    return GW_OK;
}

/* Checks that n is a type node of 1..max entries (else "must be " shape, or "more than max
 * what") and allocates one zeroed size-byte slot per entry into *out. */
static int entries(const gw_ynode *n, gw_ytype type, size_t max, size_t size, void **out,
                   const char *path, const char *shape, const char *what, char *err, size_t errlen)
{
    if (n->type != type || n->n == 0)
        return fail(err, errlen, n, path, "must be %s", shape);
    if (n->n > max)
        return fail(err, errlen, n, path, "more than %zu %s", max, what);
    *out = calloc(n->n, size);
    return *out ? GW_OK : GW_ENOMEM;
}

static int load_codes(mb_point *pt, const gw_ynode *map, const char *path, char *err, size_t errlen)
{
    char sub[160];
    int rc = entries(map, GW_Y_MAP, MB_MAX_CODES, sizeof(mb_ucode), (void **)&pt->codes, path,
                     "a mapping of code: unit", "codes", err, errlen);
    if (rc)
        return rc;
    for (size_t i = 0; i < map->n; i++) {
        mb_ucode *uc = &pt->codes[i];
        const gw_ynode *v = map->kids[i];
        snprintf(sub, sizeof(sub), "%s.%.40s", path, map->keys[i]);
        if (gw_parse_int(map->keys[i], &uc->code) || uc->code < 0 || uc->code > 65535) {
            snprintf(err, errlen, "%s:%d: key '%s': unit code must be an integer 0..65535",
                     map->file, map->key_lines[i], sub);
            return GW_EINVAL;
        }
        for (size_t k = 0; k < i; k++)
            if (pt->codes[k].code == uc->code)
                return fail(err, errlen, v, sub, "unit code %lld listed twice",
                            (long long)uc->code);
        if (v->type == GW_Y_SCALAR) {
            if (!*v->str || gw_strlcpy(uc->unit, v->str, sizeof(uc->unit)))
                return fail(err, errlen, v, sub, "unit must be 1..%d characters", GW_UNIT_MAX - 1);
        } else {
            ucode_raw r;
            memset(&r, 0, sizeof(r));
            r.factor = NAN;
            rc = gw_cfg_apply(ucode_keys, v, &r, sub, err, errlen);
            if (rc)
                return rc;
            memcpy(uc->unit, r.unit, sizeof(uc->unit));
            if (gw_ymap_get(v, "factor")) {
                if (r.factor == 0)
                    return fail(err, errlen, at(v, "factor"), sub, "factor must not be 0");
                uc->factor = r.factor;
                uc->has_factor = 1;
            }
        }
        pt->ncodes++;
    }
    return GW_OK;
}

/* Whether an event kind is already taken by a point before pt or by pt's own entries. */
static const char *event_taken(const gw_profile *p, const mb_point *pt, const char *name)
{
    for (size_t i = 0; i < p->npoints; i++)
        for (size_t k = 0; k < p->points[i].nevs; k++)
            if (!strcmp(p->points[i].evs[k].name, name))
                return p->points[i].name;
    for (size_t k = 0; k < pt->nevs; k++)
        if (!strcmp(pt->evs[k].name, name))
            return pt->name;
    return NULL;
}

static int event_name(const gw_profile *p, mb_point *pt, mb_event *ev, const char *name,
                      const gw_ynode *n, const char *path, char *err, size_t errlen)
{
    const char *owner;
    size_t total = pt->nevs;
    for (size_t i = 0; i < p->npoints; i++)
        total += p->points[i].nevs;
    if (total >= GW_PROFILE_MAX_EVENTS)
        return fail(err, errlen, n, path, "more than %d events in one profile",
                    GW_PROFILE_MAX_EVENTS);
    if (!is_label(name) || gw_strlcpy(ev->name, name, sizeof(ev->name)))
        return fail(err, errlen, n, path,
                    "'%s' is not an event name (1..%d letters, digits, '_', '-', '.')", name,
                    GW_KEY_MAX - 1);
    if ((owner = event_taken(p, pt, name)))
        return fail(err, errlen, n, path, "event '%s' is already raised by point '%s'", name,
                    owner);
    return GW_OK;
}

/* events: [{bit, event, active}]: bits of the point's raw value that are conditions. */
static int load_events(gw_profile *p, mb_point *pt, const gw_ynode *seq, const char *path,
                       char *err, size_t errlen)
{
    char sub[128];
    unsigned bits = (unsigned)pt->nbytes * 8;
    int rc = entries(seq, GW_Y_SEQ, MB_MAX_EVENTS, sizeof(mb_event), (void **)&pt->evs, path,
                     "a list of {bit, event, active}", "events", err, errlen);
    if (rc)
        return rc;
    for (size_t i = 0; i < seq->n; i++) {
        const gw_ynode *m = seq->kids[i];
        mb_event *ev = &pt->evs[i];
        event_raw r;
        memset(&r, 0, sizeof(r));
        snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
        rc = gw_cfg_apply(event_keys, m, &r, sub, err, errlen);
        if (rc)
            return rc;
        ev->has_bit = gw_ymap_get(m, "bit") != NULL;
        if (pt->type == MB_T_BOOL && ev->has_bit)
            return fail(err, errlen, at(m, "bit"), sub,
                        "a bool point is the condition itself: give no bit");
        if (pt->type != MB_T_BOOL && !ev->has_bit)
            return fail(err, errlen, m, sub, "missing bit (0..%u)", bits - 1);
        if (ev->has_bit && (unsigned)r.bit >= (pt->type == MB_T_BITS ? pt->width : bits))
            return fail(err, errlen, at(m, "bit"), sub, "bit %lld is past the value's %u bits",
                        (long long)r.bit, pt->type == MB_T_BITS ? pt->width : bits);
        ev->bit = (uint8_t)r.bit;
        ev->active_low = (uint8_t)r.active;
        rc = event_name(p, pt, ev, r.event, at(m, "event"), sub, err, errlen);
        if (rc)
            return rc;
        pt->nevs++;
    }
    return GW_OK;
}

/* codes: {value: event | {event} | {reason, quality}}: an enumeration. */
static int load_enum(gw_profile *p, mb_point *pt, const gw_ynode *map, const char *path, char *err,
                     size_t errlen)
{
    char sub[192];
    int rc = entries(map, GW_Y_MAP, MB_MAX_EVENTS, sizeof(mb_event), (void **)&pt->evs, path,
                     "a mapping of value: event or {reason}", "codes", err, errlen);
    if (rc)
        return rc;
    pt->is_codes = 1;
    for (size_t i = 0; i < map->n; i++) {
        const gw_ynode *v = map->kids[i];
        mb_event *ev = &pt->evs[i];
        code_raw r;
        memset(&r, 0, sizeof(r));
        snprintf(sub, sizeof(sub), "%s.%.40s", path, map->keys[i]);
        if (gw_parse_int(map->keys[i], &ev->code)) {
            snprintf(err, errlen, "%s:%d: key '%s': a code must be an integer", map->file,
                     map->key_lines[i], sub);
            return GW_EINVAL;
        }
        for (size_t k = 0; k < i; k++)
            if (pt->evs[k].code == ev->code)
                return fail(err, errlen, v, sub, "code %lld listed twice", (long long)ev->code);
        if (v->type == GW_Y_SCALAR) {
            gw_strlcpy(r.event, v->str, sizeof(r.event));
        } else {
            rc = gw_cfg_apply(code_keys, v, &r, sub, err, errlen);
            if (rc)
                return rc;
        }
        if (!*r.event == !*r.reason)
            return fail(err, errlen, v, sub, "give an event name or {reason: ...}, not both");
        ev->quality = r.quality ? GW_Q_UNCERTAIN : GW_Q_BAD;
        if (*r.reason) {
            int reason = gw_reason_from_name(r.reason);
            if (reason <= 0)
                return fail(err, errlen, at(v, "reason"), sub,
                            "'%s' is not a reason (out_of_range, sensor_fault, maintenance, "
                            "calibrating, device_flag, ...)",
                            r.reason);
            ev->reason = (uint8_t)reason;
        } else {
            rc = event_name(p, pt, ev, r.event, v->type == GW_Y_SCALAR ? v : at(v, "event"), sub,
                            err, errlen);
            if (rc)
                return rc;
        }
        pt->nevs++;
    }
    return GW_OK;
}

/* A point with events or codes is a status word: it emits events (and marks other
 * points), never a reading, so the keys that shape a reading do not apply. */
static int load_status(gw_profile *p, mb_point *pt, const point_raw *r, const gw_ynode *map,
                       const char *path, char *err, size_t errlen)
{
    static const char *const not_status[] = {
        "scale",    "offset",   "decimals_from", "unit_from", "unit_codes",  "range",    "deadband",
        "writable", "decimals", "unit",          "metric",    "max_silence", "internal", NULL};
    char sub[96];
    const char *key = r->events ? "events" : "codes";
    snprintf(sub, sizeof(sub), "%s.%s", path, key);
    if (r->events && r->codes)
        return fail(err, errlen, at(map, "codes"), sub, "give events or codes, not both");
    if (pt->type != MB_T_BOOL && pt->type != MB_T_BITS && pt->type != MB_T_INT16 &&
        pt->type != MB_T_UINT16 && pt->type != MB_T_INT32 && pt->type != MB_T_UINT32)
        return fail(err, errlen, at(map, key), sub,
                    "needs an integer point (bool, bits, int16, uint16, int32, uint32)");
    if (r->codes && pt->type == MB_T_BOOL)
        return fail(err, errlen, at(map, key), sub, "a bool point takes events, not codes");
    for (size_t i = 0; not_status[i]; i++)
        if (gw_ymap_get(map, not_status[i])) {
            snprintf(sub, sizeof(sub), "%s.%s", path, not_status[i]);
            return fail(err, errlen, at(map, not_status[i]), sub,
                        "does not apply to a point with %s (it emits events, not a reading)", key);
        }
    return r->events ? load_events(p, pt, r->events, sub, err, errlen)
                     : load_enum(p, pt, r->codes, sub, err, errlen);
}

/* Refuses a decimal address in Modicon notation (40001 = the first holding register,
 * 30001 input, 10001 discrete; 400001.. in the six-digit form), spelling out the PDU
 * address it stands for. Hex bypasses the check, for a device with a register at PDU
 * address 40001 itself. Returns 1 with err set when refused. */
static int modicon(const gw_ynode *map, char *err, size_t errlen, const char *path)
{
    static const struct {
        const char *kind;
        long base;
    } notation[] = {{"holding", 40001}, {"input", 30001}, {"discrete", 10001}};
    const gw_ynode *a = gw_ymap_get(map, "address"), *k = gw_ymap_get(map, "kind");
    int64_t v;
    if (!a || !k || a->type != GW_Y_SCALAR || k->type != GW_Y_SCALAR ||
        !isdigit((unsigned char)*a->str) || (a->str[0] == '0' && a->str[1]) ||
        gw_parse_int(a->str, &v))
        return 0;
    for (size_t i = 0; i < sizeof(notation) / sizeof(notation[0]); i++) {
        if (strcmp(k->str, notation[i].kind))
            continue;
        long base = v >= notation[i].base * 10 - 9 ? notation[i].base * 10 - 9 : notation[i].base;
        if (v < base || v > base + (base > 100000 ? 65535 : 9998))
            return 0;
        char hex[80] = "";
        if (v <= 65535)
            snprintf(hex, sizeof(hex), "; PDU address %lld itself is 0x%04llX", (long long)v,
                     (unsigned long long)v);
        fail(err, errlen, a, path,
             "%lld is Modicon notation (%s registers counted from %ld): write address: %lld "
             "(%lld - %ld)%s",
             (long long)v, notation[i].kind, base, (long long)(v - base), (long long)v, base, hex);
        return 1;
    }
    return 0;
}

/* Pass 1: one point's own keys. */
static int load_point(gw_profile *p, mb_point *pt, const gw_ynode *map, const char *path, char *err,
                      size_t errlen)
{
    point_raw r;
    char sub[96];
    memset(&r, 0, sizeof(r));
#define KEYPATH(k) (snprintf(sub, sizeof(sub), "%s.%s", path, k), sub)
    if (modicon(map, err, errlen, KEYPATH("address")))
        return GW_EINVAL;
    int rc = gw_cfg_apply(point_keys, map, &r, path, err, errlen);
    if (rc)
        return rc;
    if (!is_ident(r.name))
        return fail(err, errlen, at(map, "name"), KEYPATH("name"),
                    "'%s' is not a name (letters, digits and '_', not starting with a digit)",
                    r.name);
    if (find_point(p, r.name) >= 0)
        return fail(err, errlen, at(map, "name"), KEYPATH("name"), "point '%s' defined twice",
                    r.name);
    memcpy(pt->name, r.name, sizeof(pt->name));
    memcpy(pt->metric, *r.metric ? r.metric : r.name, sizeof(pt->metric));
    if (!is_label(pt->metric))
        return fail(err, errlen, at(map, "metric"), KEYPATH("metric"),
                    "'%s' is not a metric key (letters, digits, '_', '-', '.')", pt->metric);
    memcpy(pt->unit, r.unit, sizeof(pt->unit));
    pt->scale = r.scale;
    pt->offset = r.offset;
    pt->internal = (uint8_t)r.internal;
    pt->decimals_from = -1;
    pt->unit_from = -1;
    if (r.scale == 0)
        return fail(err, errlen, at(map, "scale"), KEYPATH("scale"), "scale must not be 0");

    if (r.range) {
        const gw_ynode *rg = r.range;
        if (rg->type != GW_Y_SEQ || rg->n != 2 ||
            parse_bound(rg->kids[0], &pt->min, &pt->has_min) ||
            parse_bound(rg->kids[1], &pt->max, &pt->has_max))
            return fail(err, errlen, rg, KEYPATH("range"), "must be [min, max] with numbers or ~");
        if (pt->has_min && pt->has_max && pt->min > pt->max)
            return fail(err, errlen, rg, KEYPATH("range"), "min %g is above max %g", pt->min,
                        pt->max);
    }
    if (*r.deadband) {
        char db[32];
        size_t dl = strlen(r.deadband);
        memcpy(db, r.deadband, dl + 1);
        if (db[dl - 1] == '%') {
            db[dl - 1] = '\0';
            pt->deadband_pct = 1;
        }
        if (gw_parse_double(db, &pt->deadband) || pt->deadband < 0)
            return fail(err, errlen, at(map, "deadband"), KEYPATH("deadband"),
                        "must be a number >= 0, or a percentage like 2%% (got '%s')", r.deadband);
        pt->has_deadband = 1;
    }
    pt->max_silence_ms = r.max_silence;
    pt->decimals = (int8_t)(gw_ymap_get(map, "decimals") ? r.decimals : -1);

    if (*r.derived) {
        static const char *const not_derived[] = {
            "kind",   "address",       "type",       "order",      "bit",      "width",
            "length", "decimals_from", "unit_from",  "unit_codes", "writable", "write_fc",
            "events", "codes",         "applies_to", NULL};
        for (size_t i = 0; not_derived[i]; i++)
            if (gw_ymap_get(map, not_derived[i]))
                return fail(err, errlen, at(map, not_derived[i]), KEYPATH(not_derived[i]),
                            "does not apply to a derived point");
        pt->kind = MB_DERIVED;
        pt->type = MB_T_DERIVED;
        return GW_OK; /* the expression is compiled in pass 2 */
    }

    if (!gw_ymap_get(map, "kind"))
        return fail(err, errlen, map, KEYPATH("kind"),
                    "missing (coil, discrete, input or holding; or give 'derived')");
    if (!gw_ymap_get(map, "address"))
        return fail(err, errlen, map, KEYPATH("address"), "missing");
    if (!gw_ymap_get(map, "type"))
        return fail(err, errlen, map, KEYPATH("type"), "missing");
    const char *atext = gw_ymap_get(map, "address")->str;
    if (atext && atext[0] == '0' && isdigit((unsigned char)atext[1]))
        return fail(err, errlen, at(map, "address"), KEYPATH("address"),
                    "'%s' has a leading zero (write decimal without it, or 0x hex)", atext);
    pt->kind = (uint8_t)r.kind;
    pt->type = (uint8_t)(r.type == MB_T_BCD ? MB_T_BCD16 : r.type);
    pt->addr = (uint16_t)r.address;
    int bitkind = pt->kind == MB_COIL || pt->kind == MB_DISCRETE;
    if (bitkind && pt->type != MB_T_BOOL)
        return fail(err, errlen, at(map, "type"), KEYPATH("type"),
                    "%s points must be bool (got %s)", kind_names[pt->kind], type_names[r.type]);
    if (set_order(pt, r.order))
        return fail(err, errlen, at(map, "order"), KEYPATH("order"),
                    "'%s' is not valid for %s (%s)", r.order, type_names[r.type],
                    order_hint(pt->type, pt->kind));

    int has_bit = gw_ymap_get(map, "bit") != NULL;
    if (has_bit && pt->type != MB_T_BITS && !(pt->type == MB_T_BOOL && !bitkind))
        return fail(err, errlen, at(map, "bit"), KEYPATH("bit"),
                    "only applies to bits and to bool on a register");
    if (gw_ymap_get(map, "width") && pt->type != MB_T_BITS)
        return fail(err, errlen, at(map, "width"), KEYPATH("width"), "only applies to bits");
    if (gw_ymap_get(map, "length") && pt->type != MB_T_STRING)
        return fail(err, errlen, at(map, "length"), KEYPATH("length"), "only applies to string");
    if (pt->type == MB_T_BITS && !has_bit)
        return fail(err, errlen, map, KEYPATH("bit"), "missing (bits needs bit and width)");
    if (pt->type == MB_T_BITS && r.bit + r.width > 16)
        return fail(err, errlen, at(map, "width"), KEYPATH("width"),
                    "bit %lld + width %lld passes bit 15", (long long)r.bit, (long long)r.width);
    pt->has_bit = (uint8_t)has_bit;
    pt->bit = (uint8_t)r.bit;
    pt->width = (uint8_t)r.width;

    switch (pt->type) {
    case MB_T_BOOL:
        pt->count = 1;
        break;
    case MB_T_STRING:
        pt->count = (uint16_t)r.length;
        break;
    default:
        pt->count = (uint16_t)(pt->nbytes / 2);
        break;
    }
    if ((uint32_t)pt->addr + pt->count > 65536u)
        return fail(err, errlen, at(map, "address"), KEYPATH("address"),
                    "address 0x%04X + %u registers passes 0xFFFF", pt->addr, pt->count);

    if (pt->type == MB_T_BOOL || pt->type == MB_T_STRING) {
        static const char *const numeric_only[] = {"scale",     "offset",     "decimals_from",
                                                   "unit_from", "unit_codes", "range",
                                                   "deadband",  "decimals",   NULL};
        for (size_t i = 0; numeric_only[i]; i++)
            if (gw_ymap_get(map, numeric_only[i]))
                return fail(err, errlen, at(map, numeric_only[i]), KEYPATH(numeric_only[i]),
                            "does not apply to type %s", type_names[pt->type]);
    }
    if (*r.unit_from != '\0' && !r.unit_codes)
        return fail(err, errlen, at(map, "unit_from"), KEYPATH("unit_codes"),
                    "missing (unit_from needs a unit_codes table)");
    if (r.unit_codes && *r.unit_from == '\0')
        return fail(err, errlen, at(map, "unit_codes"), KEYPATH("unit_from"),
                    "missing (unit_codes needs unit_from)");
    if (r.unit_codes) {
        rc = load_codes(pt, r.unit_codes, KEYPATH("unit_codes"), err, errlen);
        if (rc)
            return rc;
        for (size_t i = 0; i < pt->ncodes; i++)
            if (pt->codes[i].has_factor && !*pt->unit)
                return fail(err, errlen, map, KEYPATH("unit"),
                            "missing (unit codes with a factor convert to the point's unit)");
    }

    if (r.applies_to && !r.codes)
        return fail(err, errlen, at(map, "applies_to"), KEYPATH("applies_to"),
                    "only applies to a point with codes");
    if (r.events || r.codes)
        return load_status(p, pt, &r, map, path, err, errlen);

    pt->scaled_by_ref = *r.decimals_from || *r.unit_from;
    pt->writable = (uint8_t)r.writable;
    if (pt->writable) {
        const char *why = NULL;
        if (pt->kind != MB_COIL && pt->kind != MB_HOLDING)
            why = "only coils and holding registers can be written";
        else if (pt->type == MB_T_BITS || (pt->type == MB_T_BOOL && pt->kind == MB_HOLDING))
            why = "a bit inside a register cannot be written without read-modify-write";
        else if (pt->type == MB_T_STRING)
            why = "string points cannot be written";
        else if (*r.decimals_from || *r.unit_from)
            why = "points scaled by decimals_from or unit_from cannot be written";
        if (why)
            return fail(err, errlen, at(map, "writable"), KEYPATH("writable"), "%s", why);
        int64_t fc = r.write_fc;
        if (fc == 0)
            fc = pt->kind == MB_COIL ? 5 : pt->count == 1 ? 6 : 16;
        int ok =
            pt->kind == MB_COIL ? (fc == 5 || fc == 15) : (fc == 16 || (fc == 6 && pt->count == 1));
        if (!ok)
            return fail(err, errlen, at(map, "write_fc"), KEYPATH("write_fc"),
                        "function %lld cannot write this point (%s)", (long long)fc,
                        pt->kind == MB_COIL ? "use 5 or 15"
                        : pt->count == 1    ? "use 6 or 16"
                                            : "use 16");
        pt->write_fc = (uint8_t)fc;
    } else if (gw_ymap_get(map, "write_fc")) {
        return fail(err, errlen, at(map, "write_fc"), KEYPATH("write_fc"),
                    "only applies to writable points");
    }
    return GW_OK;
#undef KEYPATH
}

/* Checks that a decimals_from / unit_from target is a plain numeric register point. */
static int ref_point(gw_profile *p, size_t self, const gw_ynode *map, const char *key,
                     const char *name, int *out, const char *path, char *err, size_t errlen)
{
    char sub[96];
    snprintf(sub, sizeof(sub), "%s.%s", path, key);
    int k = find_point(p, name);
    if (k < 0)
        return fail(err, errlen, at(map, key), sub, "unknown point '%s'", name);
    const mb_point *t = &p->points[k];
    if ((size_t)k == self || t->kind == MB_DERIVED || t->type == MB_T_STRING || t->scaled_by_ref)
        return fail(err, errlen, at(map, key), sub,
                    "point '%s' must be a plain numeric register point", name);
    *out = k;
    return GW_OK;
}

/* applies_to: [point, ...]: the points a code's reason marks. */
static int load_applies(gw_profile *p, size_t self, const gw_ynode *seq, const char *path,
                        char *err, size_t errlen)
{
    char sub[96];
    mb_point *pt = &p->points[self];
    snprintf(sub, sizeof(sub), "%s.applies_to", path);
    if (seq->type != GW_Y_SEQ || seq->n == 0 || seq->n > MB_MAX_APPLIES)
        return fail(err, errlen, seq, sub, "must be a list of 1..%d point names", MB_MAX_APPLIES);
    for (size_t i = 0; i < seq->n; i++) {
        const gw_ynode *n = seq->kids[i];
        int k = n->type == GW_Y_SCALAR ? find_point(p, n->str) : -1;
        if (k < 0)
            return fail(err, errlen, n, sub, "unknown point '%s'",
                        n->type == GW_Y_SCALAR ? n->str : "?");
        const mb_point *t = &p->points[k];
        if ((size_t)k == self || t->nevs || t->type == MB_T_STRING)
            return fail(err, errlen, n, sub, "point '%s' has no reading to mark", n->str);
        pt->applies[pt->napplies++] = (uint16_t)k;
    }
    return GW_OK;
}

/* Gives every named event a slot in the edge state, in file order. */
static int number_events(gw_profile *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->npoints; i++)
        n += p->points[i].nevs;
    p->evnames = calloc(n ? n : 1, sizeof(*p->evnames));
    if (!p->evnames)
        return GW_ENOMEM;
    for (size_t i = 0; i < p->npoints; i++) {
        for (size_t k = 0; k < p->points[i].nevs; k++) {
            mb_event *ev = &p->points[i].evs[k];
            if (!*ev->name)
                continue;
            ev->slot = (uint16_t)p->nevnames;
            memcpy(p->evnames[p->nevnames++], ev->name, GW_KEY_MAX);
        }
    }
    return GW_OK;
}

static int load_params(gw_profile *p, const gw_ynode *map, char *err, size_t errlen)
{
    char sub[96];
    if (map->type != GW_Y_MAP)
        return fail(err, errlen, map, "params", "must be a mapping of name: {default, fallback}");
    if (map->n > MB_MAX_PARAMS)
        return fail(err, errlen, map, "params", "more than %d params", MB_MAX_PARAMS);
    for (size_t i = 0; i < map->n; i++) {
        mb_param *pa = &p->params[i];
        param_raw r;
        memset(&r, 0, sizeof(r));
        snprintf(sub, sizeof(sub), "params.%s", map->keys[i]);
        if (!is_ident(map->keys[i]) || gw_strlcpy(pa->name, map->keys[i], sizeof(pa->name))) {
            snprintf(err, errlen,
                     "%s:%d: key '%s': a param name must be an identifier of at "
                     "most %d characters",
                     map->file, map->key_lines[i], sub, GW_KEY_MAX - 1);
            return GW_EINVAL;
        }
        const gw_ynode *v = map->kids[i];
        /* "name: {}" and a bare "name:" both declare a param with no default. */
        if (!(v->type == GW_Y_SCALAR && !v->quoted && !*v->str)) {
            int rc = gw_cfg_apply(param_keys, v, &r, sub, err, errlen);
            if (rc)
                return rc;
        }
        pa->has_def = gw_ymap_get(v, "default") != NULL;
        pa->def = r.def;
        pa->fallback = -1;
        if (find_point(p, pa->name) >= 0)
            return fail(err, errlen, v, sub, "'%s' is also a point name", pa->name);
        p->nparams++;
    }
    return GW_OK;
}

static int load_unreadable(gw_profile *p, const gw_ynode *seq, char *err, size_t errlen)
{
    char sub[48];
    if (seq->type != GW_Y_SEQ)
        return fail(err, errlen, seq, "unreadable", "must be a list of {kind, from, to}");
    if (seq->n > MB_MAX_UNREADABLE)
        return fail(err, errlen, seq, "unreadable", "more than %d ranges", MB_MAX_UNREADABLE);
    for (size_t i = 0; i < seq->n; i++) {
        range_raw r;
        memset(&r, 0, sizeof(r));
        snprintf(sub, sizeof(sub), "unreadable[%zu]", i);
        int rc = gw_cfg_apply(range_keys, seq->kids[i], &r, sub, err, errlen);
        if (rc)
            return rc;
        if (r.to < r.from)
            return fail(err, errlen, seq->kids[i], sub, "'to' is below 'from'");
        p->unreadable[i].kind = (uint8_t)r.kind;
        p->unreadable[i].from = (uint16_t)r.from;
        p->unreadable[i].to = (uint16_t)r.to;
        p->nunreadable++;
    }
    return GW_OK;
}

/* Whether [a, b) of kind touches an unreadable range. */
static int touches_unreadable(const gw_profile *p, int kind, uint32_t a, uint32_t b)
{
    for (size_t i = 0; i < p->nunreadable; i++) {
        const mb_range *u = &p->unreadable[i];
        if (u->kind == kind && a < b && u->from < b && (uint32_t)u->to + 1 > a)
            return 1;
    }
    return 0;
}

static int cmp_index_addr(const void *a, const void *b, const gw_profile *p)
{
    const mb_point *x = &p->points[*(const size_t *)a], *y = &p->points[*(const size_t *)b];
    if (x->addr != y->addr)
        return x->addr < y->addr ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

/* Pass 3: greedy merge of each kind's points, sorted by address. Insertion sort
 * keeps it free of qsort's missing context argument; points are few. */
static int plan(gw_profile *p)
{
    size_t *idx = malloc((p->npoints ? p->npoints : 1) * sizeof(size_t));
    p->reqs = calloc(p->npoints ? p->npoints : 1, sizeof(gw_mb_request));
    if (!idx || !p->reqs) {
        free(idx);
        return GW_ENOMEM;
    }
    for (int kind = MB_COIL; kind <= MB_INPUT; kind++) {
        size_t n = 0;
        for (size_t i = 0; i < p->npoints; i++) {
            if (p->points[i].kind != kind)
                continue;
            size_t j = n++;
            idx[j] = i;
            while (j > 0 && cmp_index_addr(&idx[j - 1], &idx[j], p) > 0) {
                size_t t = idx[j - 1];
                idx[j - 1] = idx[j];
                idx[j] = t;
                j--;
            }
        }
        int bits = kind == MB_COIL || kind == MB_DISCRETE;
        uint32_t maxc = (uint32_t)(bits ? p->max_bits : p->max_regs);
        uint32_t gap = (uint32_t)(bits ? p->max_gap_bits : p->max_gap);
        uint32_t start = 0, end = 0;
        int open = 0;
        for (size_t k = 0; k < n; k++) {
            mb_point *pt = &p->points[idx[k]];
            uint32_t s = pt->addr, e = (uint32_t)pt->addr + pt->count;
            uint32_t ne = e > end ? e : end;
            if (open && s <= end + gap && ne - start <= maxc &&
                !touches_unreadable(p, kind, end, s)) {
                end = ne;
            } else {
                if (open)
                    p->nreqs++;
                start = s;
                end = e;
                open = 1;
            }
            gw_mb_request *rq = &p->reqs[p->nreqs];
            rq->fc = (uint8_t)(kind + 1);
            rq->addr = (uint16_t)start;
            rq->count = (uint16_t)(end - start);
            pt->req = p->nreqs;
            pt->req_off = (uint16_t)(s - start);
        }
        if (open)
            p->nreqs++;
    }
    free(idx);
    return GW_OK;
}

void gw_profile_free(gw_profile *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->npoints; i++) {
        free(p->points[i].codes);
        free(p->points[i].expr);
        free(p->points[i].evs);
    }
    free(p->points);
    free(p->reqs);
    free(p->evnames);
    free(p);
}

static int load_doc(gw_profile *p, const gw_ynode *root, char *err, size_t errlen)
{
    top_raw t;
    char path[32];
    int rc;
    memset(&t, 0, sizeof(t));
    if (!root) {
        snprintf(err, errlen, "empty profile");
        return GW_EINVAL;
    }
    rc = check_keys(root, 0, err, errlen);
    if (rc)
        return rc;
    rc = gw_cfg_apply(top_keys, root, &t, "", err, errlen);
    if (rc)
        return rc;
    if (!is_label(t.name))
        return fail(err, errlen, at(root, "name"), "name",
                    "'%s' must be letters, digits, '_', '-' or '.'", t.name);
    if (!is_label(t.device_type))
        return fail(err, errlen, at(root, "device_type"), "device_type",
                    "'%s' must be letters, digits, '_', '-' or '.'", t.device_type);
    memcpy(p->name, t.name, sizeof(p->name));
    memcpy(p->device_type, t.device_type, sizeof(p->device_type));
    memcpy(p->description, t.description, sizeof(p->description));
    memcpy(p->vendor, t.vendor, sizeof(p->vendor));
    p->max_gap = t.max_gap;
    p->max_gap_bits = t.max_gap_bits;
    p->max_regs = t.max_regs;
    p->max_bits = t.max_bits;

    const gw_ynode *pts = t.points;
    if (pts->type != GW_Y_SEQ || pts->n == 0)
        return fail(err, errlen, pts, "points", "must be a non-empty list of points");
    if (pts->n > GW_PROFILE_MAX_POINTS)
        return fail(err, errlen, pts, "points", "more than %d points", GW_PROFILE_MAX_POINTS);
    p->points = calloc(pts->n, sizeof(mb_point));
    if (!p->points)
        return GW_ENOMEM;

    /* Pass 1. */
    for (size_t i = 0; i < pts->n; i++) {
        snprintf(path, sizeof(path), "points[%zu]", i);
        p->npoints = i; /* names defined so far, for the duplicate check */
        rc = load_point(p, &p->points[i], pts->kids[i], path, err, errlen);
        p->npoints = i + 1; /* so gw_profile_free releases a half-loaded point */
        if (rc)
            return rc;
    }
    if (t.unreadable && (rc = load_unreadable(p, t.unreadable, err, errlen)))
        return rc;
    if (t.params && (rc = load_params(p, t.params, err, errlen)))
        return rc;

    /* Pass 2: references, now that every name is known. */
    for (size_t i = 0; i < p->npoints; i++) {
        mb_point *pt = &p->points[i];
        const gw_ynode *map = pts->kids[i];
        snprintf(path, sizeof(path), "points[%zu]", i);
        const gw_ynode *n;
        if ((n = gw_ymap_get(map, "decimals_from")) &&
            (rc = ref_point(p, i, map, "decimals_from", n->str, &pt->decimals_from, path, err,
                            errlen)))
            return rc;
        if ((n = gw_ymap_get(map, "unit_from")) &&
            (rc = ref_point(p, i, map, "unit_from", n->str, &pt->unit_from, path, err, errlen)))
            return rc;
        if (pt->kind == MB_DERIVED) {
            char msg[160], sub[64];
            n = gw_ymap_get(map, "derived");
            rc = mb_expr_compile(p, i, n->str, &pt->expr, &pt->nexpr, msg, sizeof(msg));
            if (rc == GW_ENOMEM)
                return rc;
            if (rc) {
                snprintf(sub, sizeof(sub), "%s.derived", path);
                return fail(err, errlen, n, sub, "%s", msg);
            }
        }
        if ((n = gw_ymap_get(map, "applies_to")) && (rc = load_applies(p, i, n, path, err, errlen)))
            return rc;
        if (!pt->internal && !pt->nevs) {
            for (size_t k = 0; k < i; k++) {
                if (!p->points[k].internal && !p->points[k].nevs &&
                    !strcmp(p->points[k].metric, pt->metric))
                    return fail(err, errlen, at(map, "metric"), path,
                                "metric '%s' is already emitted by point '%s'", pt->metric,
                                p->points[k].name);
            }
        }
        if (pt->kind != MB_DERIVED &&
            touches_unreadable(p, pt->kind, pt->addr, (uint32_t)pt->addr + pt->count))
            return fail(err, errlen, at(map, "address"), path,
                        "point '%s' lies in an unreadable range", pt->name);
        uint32_t lim = (uint32_t)(pt->kind <= MB_DISCRETE ? p->max_bits : p->max_regs);
        if (pt->kind != MB_DERIVED && pt->count > lim)
            return fail(err, errlen, map, path, "point '%s' needs %u registers, more than %u",
                        pt->name, pt->count, lim);
    }
    for (size_t i = 0; t.params && i < p->nparams; i++) {
        const gw_ynode *v = t.params->kids[i], *fb = gw_ymap_get(v, "fallback");
        char sub[64];
        snprintf(sub, sizeof(sub), "params.%s.fallback", p->params[i].name);
        if (fb) {
            int k = find_point(p, fb->str);
            if (k < 0)
                return fail(err, errlen, fb, sub, "unknown point '%s'", fb->str);
            if (p->points[k].kind == MB_DERIVED || p->points[k].type == MB_T_STRING)
                return fail(err, errlen, fb, sub, "point '%s' must be a numeric register point",
                            fb->str);
            p->params[i].fallback = k;
        }
    }
    return number_events(p) ? GW_ENOMEM : plan(p);
}

int gw_profile_load_text(gw_profile **out, const char *file, const char *text, size_t len,
                         char *err, size_t errlen)
{
    gw_ydoc doc;
    *out = NULL;
    int rc = gw_ydoc_parse(&doc, file, text, len, err, errlen);
    if (rc) {
        gw_ydoc_free(&doc);
        return rc;
    }
    gw_profile *p = calloc(1, sizeof(*p));
    if (!p) {
        gw_ydoc_free(&doc);
        return GW_ENOMEM;
    }
    rc = load_doc(p, doc.root, err, errlen);
    if (rc == GW_ENOMEM)
        snprintf(err, errlen, "%s: out of memory", file ? file : "<input>");
    gw_ydoc_free(&doc);
    if (rc) {
        gw_profile_free(p);
        return rc;
    }
    *out = p;
    return GW_OK;
}

int gw_profile_load_file(gw_profile **out, const char *path, char *err, size_t errlen)
{
    gw_ydoc doc;
    *out = NULL;
    int rc = gw_ydoc_load(&doc, path, err, errlen);
    if (rc) {
        gw_ydoc_free(&doc);
        return rc;
    }
    gw_profile *p = calloc(1, sizeof(*p));
    if (!p) {
        gw_ydoc_free(&doc);
        return GW_ENOMEM;
    }
    rc = load_doc(p, doc.root, err, errlen);
    if (rc == GW_ENOMEM)
        snprintf(err, errlen, "%s: out of memory", path);
    gw_ydoc_free(&doc);
    if (rc) {
        gw_profile_free(p);
        return rc;
    }
    *out = p;
    return GW_OK;
}

const char *gw_profile_name(const gw_profile *p)
{
    return p->name;
}

const char *gw_profile_device_type(const gw_profile *p)
{
    return p->device_type;
}

const char *gw_profile_description(const gw_profile *p)
{
    return p->description;
}

size_t gw_profile_requests(const gw_profile *p, const gw_mb_request **reqs)
{
    *reqs = p->reqs;
    return p->nreqs;
}

size_t gw_profile_point_count(const gw_profile *p)
{
    return p->npoints;
}

int gw_profile_point_find(const gw_profile *p, const char *name)
{
    int k = find_point(p, name);
    return k < 0 ? GW_ENOTFOUND : k;
}

int gw_profile_metric_find(const gw_profile *p, const char *metric)
{
    for (size_t i = 0; i < p->npoints; i++)
        if (!p->points[i].internal && !p->points[i].nevs &&
            strcmp(p->points[i].metric, metric) == 0)
            return (int)i;
    return GW_ENOTFOUND;
}

int gw_profile_point_get(const gw_profile *p, size_t index, gw_profile_point_info *out)
{
    if (index >= p->npoints)
        return GW_EINVAL;
    const mb_point *pt = &p->points[index];
    memset(out, 0, sizeof(*out));
    out->name = pt->name;
    out->metric = pt->metric;
    out->unit = pt->unit;
    out->derived = pt->kind == MB_DERIVED;
    out->fc = out->derived ? 0 : pt->kind + 1;
    out->address = out->derived ? 0 : pt->addr;
    out->count = out->derived ? 0 : pt->count;
    out->writable = pt->writable;
    out->internal = pt->internal;
    out->deadband = pt->deadband;
    out->has_deadband = pt->has_deadband;
    out->deadband_pct = pt->deadband_pct;
    out->max_silence_ms = pt->max_silence_ms;
    out->decimals = pt->decimals;
    out->status = pt->nevs > 0;
    return GW_OK;
}

int gw_profile_point_describe(const gw_profile *p, size_t index, char *buf, size_t cap)
{
    size_t len = 0;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (len < cap) {                                                                           \
            int n_ = snprintf(buf + len, cap - len, __VA_ARGS__);                                  \
            len += n_ > 0 ? (size_t)n_ : 0;                                                        \
        }                                                                                          \
    } while (0)
    if (!cap)
        return 0;
    buf[0] = '\0';
    if (index >= p->npoints)
        return 0;
    const mb_point *pt = &p->points[index];
    if (pt->kind == MB_DERIVED) {
        ADD("derived");
    } else {
        ADD("%s", type_names[pt->type]);
        if (pt->type == MB_T_BITS)
            ADD(" bits %u..%u", pt->bit, pt->bit + pt->width - 1);
        else if (pt->type == MB_T_BOOL && pt->has_bit)
            ADD(" bit %u", pt->bit);
        if (pt->nbytes > 2 || (pt->nbytes == 2 && pt->order[0] == 1)) {
            char order[9];
            for (size_t k = 0; k < pt->nbytes; k++)
                order[k] = (char)('A' + pt->order[k]);
            order[pt->nbytes] = '\0';
            ADD(" %s", order);
        }
    }
    if (pt->scale != 1)
        ADD(" x%g", pt->scale);
    if (pt->offset != 0)
        ADD(" %+g", pt->offset);
    if (pt->decimals >= 0)
        ADD(" decimals %d", pt->decimals);
    if (pt->has_min || pt->has_max) {
        ADD(" range [");
        if (pt->has_min)
            ADD("%g", pt->min);
        else
            ADD("~");
        if (pt->has_max)
            ADD(", %g]", pt->max);
        else
            ADD(", ~]");
    }
    for (size_t k = 0; k < pt->nevs; k++) {
        const mb_event *ev = &pt->evs[k];
        ADD("%s", k ? ", " : pt->is_codes ? " codes: " : " events: ");
        if (pt->is_codes && *ev->name)
            ADD("%lld=%s", (long long)ev->code, ev->name);
        else if (pt->is_codes)
            ADD("%lld=%s %s", (long long)ev->code, gw_quality_name(ev->quality),
                gw_reason_name(ev->reason));
        else if (ev->has_bit)
            ADD("bit %u %s%s", ev->bit, ev->name, ev->active_low ? " (active low)" : "");
        else
            ADD("%s%s", ev->name, ev->active_low ? " (active low)" : "");
    }
    for (size_t k = 0; k < pt->napplies; k++)
        ADD("%s%s", k ? ", " : " -> marks ", p->points[pt->applies[k]].name);
#undef ADD
    return (int)(len < cap ? len : cap - 1);
}
