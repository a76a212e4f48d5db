/* Scenario files: libyaml's document tree walked into sim_scenario. Every key
 * is checked against a table; unknown keys and bad values are errors with
 * file:line. Reads the scenario and any csv file it names; no other I/O. */
#include "sim/sim.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct pctx {
    yaml_document_t doc;
    const char *file;
    const char *base_dir;
    char *err;
    size_t errlen;
    uint32_t link_used; /* link keys seen in the current group, bit per link_keys row */
} pctx;

static int perr(pctx *c, yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int perr(pctx *c, yaml_node_t *n, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s:%lu: %s", c->file,
             n ? (unsigned long)n->start_mark.line + 1 : 0ul, msg);
    return SIM_EINVAL;
}

static yaml_node_t *node(pctx *c, int i)
{
    return yaml_document_get_node(&c->doc, i);
}

static const char *scalar(yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

int sim_parse_duration(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v))
        return SIM_EINVAL;
    while (*end == ' ')
        end++;
    if (*end == 0 || strcmp(end, "s") == 0)
        ;
    else if (strcmp(end, "ms") == 0)
        v /= 1000;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        v *= 60;
    else if (strcmp(end, "h") == 0)
        v *= 3600;
    else if (strcmp(end, "d") == 0)
        v *= 86400;
    else
        return SIM_EINVAL;
    *out = v;
    return SIM_OK;
}

static int get_num(pctx *c, yaml_node_t *n, const char *key, double *out)
{
    const char *s = scalar(n);
    if (!s || sim_parse_duration(s, out) != SIM_OK)
        return perr(c, n, "%s: expected a number or a duration (30s, 10m)", key);
    return SIM_OK;
}

static int get_int(pctx *c, yaml_node_t *n, const char *key, long lo, long hi, long *out)
{
    const char *s = scalar(n);
    char *end;
    if (!s)
        return perr(c, n, "%s: expected an integer", key);
    errno = 0;
    long v = strtol(s, &end, 0);
    if (end == s || *end || errno || v < lo || v > hi)
        return perr(c, n, "%s: expected an integer in %ld..%ld", key, lo, hi);
    *out = v;
    return SIM_OK;
}

static int get_bool(pctx *c, yaml_node_t *n, const char *key, int *out)
{
    const char *s = scalar(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")))
        *out = 1;
    else if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")))
        *out = 0;
    else
        return perr(c, n, "%s: expected true or false", key);
    return SIM_OK;
}

static int get_str(pctx *c, yaml_node_t *n, const char *key, char *out, size_t cap)
{
    const char *s = scalar(n);
    if (!s)
        return perr(c, n, "%s: expected a string", key);
    if (strlen(s) >= cap)
        return perr(c, n, "%s: longer than %zu characters", key, cap - 1);
    memcpy(out, s, strlen(s) + 1);
    return SIM_OK;
}

/* ---- curves ---- */

static const struct {
    const char *key;
    int id;
} param_keys[] = {
    {"value", SIM_P_VALUE},   {"from", SIM_P_FROM},     {"to", SIM_P_TO},
    {"over", SIM_P_OVER},     {"mean", SIM_P_MEAN},     {"amplitude", SIM_P_AMPLITUDE},
    {"period", SIM_P_PERIOD}, {"phase", SIM_P_PHASE},   {"start", SIM_P_START},
    {"step", SIM_P_STEP},     {"min", SIM_P_MIN},       {"max", SIM_P_MAX},
    {"every", SIM_P_EVERY},   {"seed", SIM_P_SEED},     {"base", SIM_P_BASE},
    {"peak", SIM_P_PEAK},     {"rise", SIM_P_RISE},     {"hold", SIM_P_HOLD},
    {"fall", SIM_P_FALL},     {"jitter", SIM_P_JITTER}, {"repeat", SIM_P_REPEAT},
};

#define B(x) (1u << (x))
static const struct {
    const char *name;
    sim_curve_kind kind;
    uint32_t params;
} curve_types[] = {
    {"constant", SIM_C_CONSTANT, B(SIM_P_VALUE)},
    {"ramp", SIM_C_RAMP, B(SIM_P_FROM) | B(SIM_P_TO) | B(SIM_P_OVER) | B(SIM_P_START)},
    {"sine", SIM_C_SINE, B(SIM_P_MEAN) | B(SIM_P_AMPLITUDE) | B(SIM_P_PERIOD) | B(SIM_P_PHASE)},
    {"random_walk", SIM_C_RANDOM_WALK,
     B(SIM_P_START) | B(SIM_P_STEP) | B(SIM_P_MIN) | B(SIM_P_MAX) | B(SIM_P_EVERY) | B(SIM_P_SEED)},
    {"storm", SIM_C_STORM,
     B(SIM_P_BASE) | B(SIM_P_PEAK) | B(SIM_P_START) | B(SIM_P_RISE) | B(SIM_P_HOLD) |
         B(SIM_P_FALL) | B(SIM_P_JITTER) | B(SIM_P_SEED)},
    {"points", SIM_C_POINTS, 0},
    {"csv", SIM_C_POINTS, 0},
};

static int parse_param(pctx *c, yaml_node_t *v, const char *key, sim_param *p)
{
    if (v->type == YAML_SEQUENCE_NODE) {
        int n = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
        if (n < 1)
            return perr(c, v, "%s: empty list", key);
        p->v = calloc((size_t)n, sizeof(double));
        if (!p->v)
            return SIM_ENOMEM;
        p->n = n;
        for (int i = 0; i < n; i++)
            if (get_num(c, node(c, v->data.sequence.items.start[i]), key, &p->v[i]))
                return SIM_EINVAL;
        return SIM_OK;
    }
    p->v = calloc(1, sizeof(double));
    if (!p->v)
        return SIM_ENOMEM;
    p->n = 1;
    return get_num(c, v, key, &p->v[0]);
}

static int add_point(sim_curve *cv, int *cap, double t, double v)
{
    if (cv->npoints == *cap) {
        int nc = *cap ? *cap * 2 : 16;
        double *nt = realloc(cv->pt_t, (size_t)nc * sizeof(double));
        if (!nt)
            return SIM_ENOMEM;
        cv->pt_t = nt;
        double *nv = realloc(cv->pt_v, (size_t)nc * sizeof(double));
        if (!nv)
            return SIM_ENOMEM;
        cv->pt_v = nv;
        *cap = nc;
    }
    cv->pt_t[cv->npoints] = t;
    cv->pt_v[cv->npoints] = v;
    cv->npoints++;
    return SIM_OK;
}

/* Splits a csv line in place into at most max fields; returns the count. */
static int split_csv(char *line, char **f, int max)
{
    int n = 0;
    char *s = line;
    while (n < max) {
        while (*s == ' ' || *s == '\t')
            s++;
        f[n++] = s;
        char *comma = strchr(s, ',');
        char *e = comma ? comma : s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
            e--;
        if (comma) {
            *e = 0;
            s = comma + 1;
        } else {
            *e = 0;
            break;
        }
    }
    return n;
}

static int load_csv(pctx *c, yaml_node_t *at, sim_curve *cv, const char *file, const char *column,
                    long time_col)
{
    char path[1024], line[4096];
    char *f[64];
    int cap = 0, col = -1, lineno = 0;
    if (file[0] == '/' || !c->base_dir)
        snprintf(path, sizeof path, "%s", file);
    else
        snprintf(path, sizeof path, "%s/%s", c->base_dir, file);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return perr(c, at, "csv: cannot open %s: %s", path, strerror(errno));
    char *end;
    long num = strtol(column, &end, 10);
    if (*column && !*end && num >= 1 && num <= 64)
        col = (int)num - 1;
    int rc = SIM_OK;
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#')
            continue;
        int n = split_csv(line, f, 64);
        double t, v;
        if (time_col - 1 >= n || sim_parse_duration(f[time_col - 1], &t) != SIM_OK) {
            if (cv->npoints == 0 && col < 0) { /* the header line */
                for (int i = 0; i < n; i++)
                    if (strcmp(f[i], column) == 0)
                        col = i;
                continue;
            }
            if (cv->npoints == 0 && lineno == 1)
                continue;
            rc = perr(c, at, "csv %s:%d: bad time", path, lineno);
            break;
        }
        if (col < 0) {
            rc = perr(c, at, "csv %s: no column named '%s'", path, column);
            break;
        }
        if (col >= n || sim_parse_duration(f[col], &v) != SIM_OK) {
            rc = perr(c, at, "csv %s:%d: bad value in column %d", path, lineno, col + 1);
            break;
        }
        if (cv->npoints && t < cv->pt_t[cv->npoints - 1]) {
            rc = perr(c, at, "csv %s:%d: times must not decrease", path, lineno);
            break;
        }
        if ((rc = add_point(cv, &cap, t, v)) != SIM_OK)
            break;
    }
    fclose(fp);
    if (rc == SIM_OK && cv->npoints == 0)
        rc = perr(c, at, "csv %s: no data rows", path);
    return rc;
}

static int parse_curve(pctx *c, yaml_node_t *m, sim_curve *cv)
{
    yaml_node_pair_t *pr;
    const char *type = NULL;
    yaml_node_t *pts = NULL;
    char file[512] = "", column[64] = "";
    long time_col = 1;
    int loop = 0;
    uint32_t allowed = 0;
    if (m->type != YAML_MAPPING_NODE)
        return perr(c, m, "curve: expected a mapping");
    for (pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++)
        if (!strcmp(scalar(node(c, pr->key)) ? scalar(node(c, pr->key)) : "", "type"))
            type = scalar(node(c, pr->value));
    if (!type)
        return perr(c, m, "curve: missing type");
    size_t ti;
    for (ti = 0; ti < sizeof curve_types / sizeof curve_types[0]; ti++)
        if (!strcmp(type, curve_types[ti].name))
            break;
    if (ti == sizeof curve_types / sizeof curve_types[0])
        return perr(
            c, m,
            "curve: unknown type '%s' (constant, ramp, sine, random_walk, storm, points, csv)",
            type);
    cv->kind = curve_types[ti].kind;
    allowed = curve_types[ti].params | B(SIM_P_REPEAT);
    int is_csv = !strcmp(type, "csv");
    for (pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = node(c, pr->key), *vn = node(c, pr->value);
        const char *k = scalar(kn);
        if (!k)
            return perr(c, kn, "curve: keys must be strings");
        if (!strcmp(k, "type"))
            continue;
        if (cv->kind == SIM_C_POINTS && !strcmp(k, "loop")) {
            if (get_bool(c, vn, k, &loop))
                return SIM_EINVAL;
            continue;
        }
        if (!is_csv && cv->kind == SIM_C_POINTS && !strcmp(k, "points")) {
            pts = vn;
            continue;
        }
        if (is_csv && !strcmp(k, "file")) {
            if (get_str(c, vn, k, file, sizeof file))
                return SIM_EINVAL;
            continue;
        }
        if (is_csv && !strcmp(k, "column")) {
            if (get_str(c, vn, k, column, sizeof column))
                return SIM_EINVAL;
            continue;
        }
        if (is_csv && !strcmp(k, "time_column")) {
            if (get_int(c, vn, k, 1, 64, &time_col))
                return SIM_EINVAL;
            continue;
        }
        size_t pi;
        for (pi = 0; pi < sizeof param_keys / sizeof param_keys[0]; pi++)
            if (!strcmp(k, param_keys[pi].key))
                break;
        if (pi == sizeof param_keys / sizeof param_keys[0] || !(allowed & B(param_keys[pi].id)))
            return perr(c, kn, "curve %s: unknown key '%s'", type, k);
        if (cv->p[param_keys[pi].id].n)
            return perr(c, kn, "curve %s: duplicate key '%s'", type, k);
        int rc = parse_param(c, vn, k, &cv->p[param_keys[pi].id]);
        if (rc)
            return rc;
    }
    if (cv->kind == SIM_C_POINTS) {
        int cap = 0, rc;
        if (is_csv) {
            if (!file[0] || !column[0])
                return perr(c, m, "curve csv: needs file and column");
            if ((rc = load_csv(c, m, cv, file, column, time_col)))
                return rc;
        } else {
            if (!pts || pts->type != YAML_SEQUENCE_NODE)
                return perr(c, m, "curve points: needs points: [[t, value], ...]");
            for (yaml_node_item_t *it = pts->data.sequence.items.start;
                 it < pts->data.sequence.items.top; it++) {
                yaml_node_t *pn = node(c, *it);
                double t, v;
                if (pn->type != YAML_SEQUENCE_NODE ||
                    pn->data.sequence.items.top - pn->data.sequence.items.start != 2)
                    return perr(c, pn, "points: each point is [t, value]");
                if (get_num(c, node(c, pn->data.sequence.items.start[0]), "points t", &t) ||
                    get_num(c, node(c, pn->data.sequence.items.start[1]), "points value", &v))
                    return SIM_EINVAL;
                if (cv->npoints && t < cv->pt_t[cv->npoints - 1])
                    return perr(c, pn, "points: times must not decrease");
                if ((rc = add_point(cv, &cap, t, v)))
                    return rc;
            }
            if (cv->npoints == 0)
                return perr(c, pts, "points: empty");
        }
        if (loop && !cv->p[SIM_P_REPEAT].n && cv->pt_t[cv->npoints - 1] > 0) {
            cv->p[SIM_P_REPEAT].v = malloc(sizeof(double));
            if (!cv->p[SIM_P_REPEAT].v)
                return SIM_ENOMEM;
            cv->p[SIM_P_REPEAT].n = 1;
            cv->p[SIM_P_REPEAT].v[0] = cv->pt_t[cv->npoints - 1];
        }
    }
    return SIM_OK;
}

/* ---- registers ---- */

static int parse_reg(pctx *c, yaml_node_t *m, sim_regdef *r)
{
    int have_type = 0, have_addr = 0, have_order = 0;
    const char *kind = NULL;
    r->table = SIM_TAB_HOLDING;
    r->scale = 1;
    r->line = (int)m->start_mark.line + 1;
    if (m->type != YAML_MAPPING_NODE)
        return perr(c, m, "register: expected a mapping");
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = node(c, pr->key), *vn = node(c, pr->value);
        const char *k = scalar(kn);
        long l;
        if (!k)
            return perr(c, kn, "register: keys must be strings");
        if (!strcmp(k, "kind")) {
            kind = scalar(vn);
            if (!kind)
                return perr(c, vn, "kind: expected a string");
            if (!strcmp(kind, "holding"))
                r->table = SIM_TAB_HOLDING;
            else if (!strcmp(kind, "input"))
                r->table = SIM_TAB_INPUT;
            else if (!strcmp(kind, "coil"))
                r->table = SIM_TAB_COIL;
            else if (!strcmp(kind, "discrete"))
                r->table = SIM_TAB_DISCRETE;
            else
                return perr(c, vn, "kind: holding, input, coil or discrete");
        } else if (!strcmp(k, "addr")) {
            if (get_int(c, vn, k, 0, 65535, &l))
                return SIM_EINVAL;
            r->addr = (uint16_t)l;
            have_addr = 1;
        } else if (!strcmp(k, "type")) {
            if (!scalar(vn) || sim_type_parse(scalar(vn), &r->type))
                return perr(c, vn,
                            "type: uint16, int16, uint32, int32, float32, uint64, int64, "
                            "float64 or bool");
            have_type = 1;
        } else if (!strcmp(k, "order")) {
            if (!scalar(vn) || sim_order_parse(scalar(vn), &r->order))
                return perr(c, vn, "order: a byte order such as ABCD, CDAB, BADC, DCBA, GHEFCDAB");
            have_order = 1;
        } else if (!strcmp(k, "scale")) {
            if (get_num(c, vn, k, &r->scale))
                return SIM_EINVAL;
        } else if (!strcmp(k, "offset")) {
            if (get_num(c, vn, k, &r->offset))
                return SIM_EINVAL;
        } else if (!strcmp(k, "writable")) {
            if (get_bool(c, vn, k, &r->writable))
                return SIM_EINVAL;
        } else if (!strcmp(k, "value")) {
            if (r->curve.kind != SIM_C_NONE)
                return perr(c, vn, "value: give either value or curve");
            r->curve.kind = SIM_C_CONSTANT;
            int rc = parse_param(c, vn, k, &r->curve.p[SIM_P_VALUE]);
            if (rc)
                return rc;
        } else if (!strcmp(k, "curve")) {
            if (r->curve.kind != SIM_C_NONE)
                return perr(c, vn, "curve: give either value or curve");
            int rc = parse_curve(c, vn, &r->curve);
            if (rc)
                return rc;
        } else {
            return perr(c, kn, "register: unknown key '%s'", k);
        }
    }
    if (!have_addr)
        return perr(c, m, "register: missing addr");
    int bits = r->table == SIM_TAB_COIL || r->table == SIM_TAB_DISCRETE;
    if (!have_type)
        r->type = bits ? SIM_T_BOOL : SIM_T_UINT16;
    if (bits != (r->type == SIM_T_BOOL))
        return perr(c, m, "register: coils and discretes are bool, registers are not");
    if (have_order && bits)
        return perr(c, m, "register: order makes no sense for a bit");
    if (have_order) {
        uint16_t w[4];
        if (sim_encode(0, r->type, &r->order, w) < 0)
            return perr(c, m, "register: order does not fit type %s", sim_type_name(r->type));
    }
    if ((uint32_t)r->addr + (uint32_t)sim_type_regs(r->type) > 65536)
        return perr(c, m, "register: runs past address 65535");
    if (r->writable && r->table != SIM_TAB_COIL && r->table != SIM_TAB_HOLDING)
        return perr(c, m, "register: only coils and holding registers are writable");
    return SIM_OK;
}

/* ---- faults ---- */

static const char *fault_names[SIM_F__COUNT] = {"silent",  "late", "exception", "garbage",
                                                "bad_crc", "drop", "truncated"};

static int parse_fault(pctx *c, yaml_node_t *m, sim_fault *f)
{
    const char *type = NULL;
    f->to = -1;
    f->addr = -1;
    f->code = 4;
    if (m->type != YAML_MAPPING_NODE)
        return perr(c, m, "fault: expected a mapping");
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++)
        if (scalar(node(c, pr->key)) && !strcmp(scalar(node(c, pr->key)), "type"))
            type = scalar(node(c, pr->value));
    if (!type)
        return perr(c, m, "fault: missing type");
    int fk;
    for (fk = 0; fk < SIM_F__COUNT; fk++)
        if (!strcmp(type, fault_names[fk]))
            break;
    if (fk == SIM_F__COUNT)
        return perr(c, m,
                    "fault: unknown type '%s' (silent, late, exception, garbage, bad_crc, drop, "
                    "truncated)",
                    type);
    f->kind = (sim_fault_kind)fk;
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = node(c, pr->key), *vn = node(c, pr->value);
        const char *k = scalar(kn);
        long l;
        if (!k)
            return perr(c, kn, "fault: keys must be strings");
        if (!strcmp(k, "type"))
            continue;
        if (!strcmp(k, "from")) {
            if (get_num(c, vn, k, &f->from))
                return SIM_EINVAL;
        } else if (!strcmp(k, "to")) {
            if (get_num(c, vn, k, &f->to))
                return SIM_EINVAL;
        } else if (!strcmp(k, "delay") && f->kind == SIM_F_LATE) {
            if (get_num(c, vn, k, &f->delay_s) || f->delay_s < 0 || f->delay_s > 3600)
                return perr(c, vn, "delay: 0..1h");
        } else if (!strcmp(k, "every") &&
                   (f->kind == SIM_F_GARBAGE || f->kind == SIM_F_DROP || f->kind == SIM_F_BAD_CRC ||
                    f->kind == SIM_F_TRUNCATED)) {
            if (get_int(c, vn, k, 1, 1000000000, &l))
                return SIM_EINVAL;
            f->every = (uint32_t)l;
        } else if (!strcmp(k, "code") && f->kind == SIM_F_EXCEPTION) {
            if (get_int(c, vn, k, 1, 255, &l))
                return SIM_EINVAL;
            f->code = (int)l;
        } else if (!strcmp(k, "addr") && f->kind == SIM_F_EXCEPTION) {
            if (get_int(c, vn, k, 0, 65535, &l))
                return SIM_EINVAL;
            f->addr = (int)l;
        } else if (!strcmp(k, "fc") && f->kind == SIM_F_EXCEPTION) {
            if (get_int(c, vn, k, 1, 127, &l))
                return SIM_EINVAL;
            f->fc = (int)l;
        } else {
            return perr(c, kn, "fault %s: unknown key '%s'", type, k);
        }
    }
    if (f->to >= 0 && f->to < f->from)
        return perr(c, m, "fault: to is before from");
    return SIM_OK;
}

/* ==== SL651 RTUs and HJ212 stations (dev_sl651.c, dev_hj212.c) = * Their groups dial out (`connect:`) instead of listening, and carry the keys
 * below in g->rtu. rtu_key returns 1 for a key it took, 0 for one it does not
 * know, or a negative code. */

const char *const sim_rfault_names[SIM_RF__COUNT] = {
    "silent", "garbage", "bad_crc", "truncated", "drop", "clock_skew", "duplicate", "malformed_cp",
};

static int is_rtu_protocol(const char *p)
{
    return !strcmp(p, "sl651") || !strcmp(p, "hj212");
}

void sim_rtu_conf_free(sim_rtu_conf *r)
{
    if (!r)
        return;
    sim_curve_free(&r->rain);
    sim_curve_free(&r->level);
    sim_curve_free(&r->voltage);
    for (int i = 0; i < r->nfactors; i++) {
        sim_curve_free(&r->factors[i].curve);
        free(r->factors[i].flags);
    }
    free(r->factors);
    free(r->faults);
    free(r->events);
    free(r->test_at);
    free(r);
}

static sim_rtu_conf *rtu_conf(sim_group *g)
{
    if (g->rtu)
        return g->rtu;
    sim_rtu_conf *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->centre = 1;
    r->station_type = 0x48;
    r->m2 = 1;
    r->resends = -1;
    r->interval = r->hourly_every = r->extra_threshold = r->minute_every = r->hour_every = NAN;
    r->picture_at = r->history_at = r->manual_at = NAN;
    r->picture_packets = 5;
    r->history_hours = 18;
    r->keepalive = 0;
    r->extra_interval = 300;
    r->confirm_timeout = 10;
    r->reconnect = 2;
    r->clock0 = NAN;
    r->spread = 1;
    g->rtu = r;
    return r;
}

/* "2024-07-01 08:00:00" as seconds since 1970 of that clock reading. */
static int parse_clock(const char *s, double *out)
{
    int y, mo, d, h = 0, mi = 0, se = 0;
    char tail;
    int n = sscanf(s, "%d-%d-%d %d:%d:%d%c", &y, &mo, &d, &h, &mi, &se, &tail);
    if ((n != 3 && n != 6) || y < 1970 || y > 2099 || mo < 1 || mo > 12 || d < 1 || d > 31 ||
        h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 59)
        return SIM_EINVAL;
    /* Days from 1970-01-01 in the proleptic Gregorian calendar. */
    int yy = mo <= 2 ? y - 1 : y;
    int era = yy / 400, yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long days = (long)era * 146097 + doe - 719468;
    *out = (double)days * 86400 + h * 3600 + mi * 60 + se;
    return SIM_OK;
}

static int rtu_curve(pctx *c, yaml_node_t *vn, sim_curve *cv, const char *key)
{
    if (cv->kind != SIM_C_NONE)
        return perr(c, vn, "%s: given twice", key);
    if (vn->type == YAML_SCALAR_NODE) {
        cv->kind = SIM_C_CONSTANT;
        return parse_param(c, vn, key, &cv->p[SIM_P_VALUE]);
    }
    return parse_curve(c, vn, cv);
}

/* 1..max hex digits (scenario.c stays free of the encoders). */
static int hex_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n >= 1 && n <= max && strspn(s, "0123456789abcdefABCDEF") == n;
}

static int seq_len(yaml_node_t *n)
{
    return (int)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static const struct {
    const char *name;
    int bit;
    int alarm;
} rtu_events[] = {
    {"ac_lost", 0, 1},          {"ac_restored", 0, 0},     {"battery_low", 1, 1},
    {"battery_ok", 1, 0},       {"level_over", 2, 1},      {"level_ok", 2, 0},
    {"flow_alarm", 3, 1},       {"flow_ok", 3, 0},         {"quality_alarm", 4, 1},
    {"quality_ok", 4, 0},       {"flowmeter_fault", 5, 1}, {"flowmeter_ok", 5, 0},
    {"levelmeter_fault", 6, 1}, {"levelmeter_ok", 6, 0},   {"door_open", 7, 1},
    {"door_close", 7, 0},       {"storage_fault", 8, 1},   {"storage_ok", 8, 0},
};

static int rtu_events_parse(pctx *c, yaml_node_t *vn, sim_rtu_conf *r)
{
    if (vn->type != YAML_SEQUENCE_NODE)
        return perr(c, vn, "events: expected a list of {at, kind}");
    int n = seq_len(vn);
    r->events = calloc((size_t)(n ? n : 1), sizeof *r->events);
    if (!r->events)
        return SIM_ENOMEM;
    for (int i = 0; i < n; i++) {
        yaml_node_t *m = node(c, vn->data.sequence.items.start[i]);
        sim_revent *e = &r->events[i];
        int have_at = 0, have_kind = 0;
        if (m->type != YAML_MAPPING_NODE)
            return perr(c, m, "events: each event is {at: 90s, kind: door_open}");
        for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top;
             pr++) {
            yaml_node_t *kn = node(c, pr->key), *en = node(c, pr->value);
            const char *k = scalar(kn);
            if (k && !strcmp(k, "at")) {
                if (get_num(c, en, k, &e->at))
                    return SIM_EINVAL;
                have_at = 1;
            } else if (k && !strcmp(k, "kind")) {
                const char *v = scalar(en);
                size_t j;
                for (j = 0; v && j < sizeof rtu_events / sizeof rtu_events[0]; j++)
                    if (!strcmp(v, rtu_events[j].name))
                        break;
                if (!v || j == sizeof rtu_events / sizeof rtu_events[0])
                    return perr(c, en,
                                "kind: ac_lost, ac_restored, battery_low, battery_ok, "
                                "level_over, level_ok, flow_alarm, flow_ok, quality_alarm, "
                                "quality_ok, flowmeter_fault, flowmeter_ok, levelmeter_fault, "
                                "levelmeter_ok, door_open, door_close, storage_fault, storage_ok");
                e->bit = rtu_events[j].bit;
                e->alarm = rtu_events[j].alarm;
                have_kind = 1;
            } else {
                return perr(c, kn, "event: unknown key '%s' (at, kind)", k ? k : "?");
            }
        }
        if (!have_at || !have_kind)
            return perr(c, m, "event: needs at and kind");
        if (i && e->at < r->events[i - 1].at)
            return perr(c, m, "events: times must not decrease");
        r->nevents = i + 1;
    }
    return SIM_OK;
}

static int rtu_flag_ok(const char *s)
{
    return s && strlen(s) == 1 && strchr("NFMSDCTB", s[0]);
}

static int rtu_factors_parse(pctx *c, yaml_node_t *vn, sim_rtu_conf *r)
{
    if (vn->type != YAML_SEQUENCE_NODE)
        return perr(c, vn, "factors: expected a list of {code, curve, flag}");
    int n = seq_len(vn);
    r->factors = calloc((size_t)(n ? n : 1), sizeof *r->factors);
    if (!r->factors)
        return SIM_ENOMEM;
    for (int i = 0; i < n; i++) {
        yaml_node_t *m = node(c, vn->data.sequence.items.start[i]);
        sim_factor *f = &r->factors[i];
        r->nfactors = i + 1;
        f->flag = 'N';
        f->decimals = 2;
        if (m->type != YAML_MAPPING_NODE)
            return perr(c, m, "factors: each factor is a mapping");
        for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top;
             pr++) {
            yaml_node_t *kn = node(c, pr->key), *fv = node(c, pr->value);
            const char *k = scalar(kn);
            long l;
            int rc;
            if (k && !strcmp(k, "code")) {
                if (get_str(c, fv, k, f->code, sizeof f->code))
                    return SIM_EINVAL;
                if (strpbrk(f->code, ";,=&") || !f->code[0])
                    return perr(c, fv, "code: no ; , = or & allowed");
            } else if (k && (!strcmp(k, "curve") || !strcmp(k, "value"))) {
                if ((rc = rtu_curve(c, fv, &f->curve, k)))
                    return rc;
            } else if (k && !strcmp(k, "flag")) {
                if (!rtu_flag_ok(scalar(fv)))
                    return perr(c, fv, "flag: one of N F M S D C T B");
                f->flag = scalar(fv)[0];
            } else if (k && !strcmp(k, "decimals")) {
                if (get_int(c, fv, k, 0, 6, &l))
                    return SIM_EINVAL;
                f->decimals = (int)l;
            } else if (k && !strcmp(k, "flags")) {
                if (fv->type != YAML_SEQUENCE_NODE)
                    return perr(c, fv, "flags: expected a list of {from, to, flag}");
                int nf = seq_len(fv);
                f->flags = calloc((size_t)(nf ? nf : 1), sizeof *f->flags);
                if (!f->flags)
                    return SIM_ENOMEM;
                for (int j = 0; j < nf; j++) {
                    yaml_node_t *fm = node(c, fv->data.sequence.items.start[j]);
                    sim_rflag *fl = &f->flags[j];
                    f->nflags = j + 1;
                    fl->to = -1;
                    if (fm->type != YAML_MAPPING_NODE)
                        return perr(c, fm, "flags: each entry is {from, to, flag}");
                    for (yaml_node_pair_t *q = fm->data.mapping.pairs.start;
                         q < fm->data.mapping.pairs.top; q++) {
                        const char *fk = scalar(node(c, q->key));
                        yaml_node_t *fvv = node(c, q->value);
                        if (fk && !strcmp(fk, "from")) {
                            if (get_num(c, fvv, fk, &fl->from))
                                return SIM_EINVAL;
                        } else if (fk && !strcmp(fk, "to")) {
                            if (get_num(c, fvv, fk, &fl->to))
                                return SIM_EINVAL;
                        } else if (fk && !strcmp(fk, "flag")) {
                            if (!rtu_flag_ok(scalar(fvv)))
                                return perr(c, fvv, "flag: one of N F M S D C T B");
                            fl->flag = scalar(fvv)[0];
                        } else {
                            return perr(c, node(c, q->key), "flags: unknown key '%s'",
                                        fk ? fk : "?");
                        }
                    }
                    if (!fl->flag)
                        return perr(c, fm, "flags: missing flag");
                }
            } else {
                return perr(c, kn, "factor: unknown key '%s' (code, curve, value, flag, flags, "
                                   "decimals)",
                            k ? k : "?");
            }
        }
        if (!f->code[0])
            return perr(c, m, "factor: missing code");
    }
    return SIM_OK;
}

static int rtu_fault_parse(pctx *c, yaml_node_t *m, sim_rfault *f)
{
    const char *type = NULL;
    f->to = -1;
    f->bytes = 16;
    if (m->type != YAML_MAPPING_NODE)
        return perr(c, m, "fault: expected a mapping");
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++)
        if (scalar(node(c, pr->key)) && !strcmp(scalar(node(c, pr->key)), "type"))
            type = scalar(node(c, pr->value));
    int fk;
    for (fk = 0; type && fk < SIM_RF__COUNT; fk++)
        if (!strcmp(type, sim_rfault_names[fk]))
            break;
    if (!type || fk == SIM_RF__COUNT)
        return perr(c, m,
                    "fault: type is one of silent, garbage, bad_crc, truncated, drop, "
                    "clock_skew, duplicate, malformed_cp");
    f->kind = (sim_rfault_kind)fk;
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = node(c, pr->key), *vn = node(c, pr->value);
        const char *k = scalar(kn);
        long l;
        if (!k)
            return perr(c, kn, "fault: keys must be strings");
        if (!strcmp(k, "type"))
            continue;
        if (!strcmp(k, "from")) {
            if (get_num(c, vn, k, &f->from))
                return SIM_EINVAL;
        } else if (!strcmp(k, "to")) {
            if (get_num(c, vn, k, &f->to))
                return SIM_EINVAL;
        } else if (!strcmp(k, "every") && f->kind != SIM_RF_SILENT &&
                   f->kind != SIM_RF_CLOCK_SKEW) {
            if (get_int(c, vn, k, 1, 1000000000, &l))
                return SIM_EINVAL;
            f->every = (uint32_t)l;
        } else if (!strcmp(k, "offset") && f->kind == SIM_RF_CLOCK_SKEW) {
            const char *s = scalar(vn);
            double v;
            /* A leading minus sign: the clock is behind. */
            if (!s || sim_parse_duration(s[0] == '-' ? s + 1 : s, &v))
                return perr(c, vn, "offset: a duration such as -5m or 90s");
            f->offset_s = s[0] == '-' ? -v : v;
        } else if (!strcmp(k, "bytes") && f->kind == SIM_RF_GARBAGE) {
            if (get_int(c, vn, k, 1, 1024, &l))
                return SIM_EINVAL;
            f->bytes = (uint32_t)l;
        } else if (!strcmp(k, "only")) {
            if (vn->type == YAML_SCALAR_NODE) {
                if (get_int(c, vn, k, 0, 100000000, &l))
                    return SIM_EINVAL;
                f->only[0] = (uint32_t)l;
                f->nonly = 1;
            } else if (vn->type == YAML_SEQUENCE_NODE && seq_len(vn) > 0 &&
                       seq_len(vn) <= SIM_RF_ONLY_MAX) {
                for (int i = 0; i < seq_len(vn); i++) {
                    if (get_int(c, node(c, vn->data.sequence.items.start[i]), k, 0, 100000000,
                                &l))
                        return SIM_EINVAL;
                    f->only[i] = (uint32_t)l;
                }
                f->nonly = seq_len(vn);
            } else {
                return perr(c, vn, "only: a device number or a list of 1..%d of them",
                            SIM_RF_ONLY_MAX);
            }
        } else {
            return perr(c, kn, "fault %s: unknown key '%s'", type, k);
        }
    }
    if (f->to >= 0 && f->to < f->from)
        return perr(c, m, "fault: to is before from");
    return SIM_OK;
}

static int rtu_key(pctx *c, sim_group *g, const char *k, yaml_node_t *kn, yaml_node_t *vn)
{
    static const char *const keys[] = {
        "connect", "transport", "address", "mn", "password", "centre", "station_type",
        "encoding", "mode", "resends", "interval", "hourly_every", "keepalive",
        "extra_threshold", "extra_interval", "extra_on", "confirm_timeout", "reconnect",
        "clock", "spread", "status", "rainfall", "rain_base", "level", "voltage", "test_at",
        "events", "st", "reply", "factors", "minute_every", "hour_every",
        "picture_at", "picture_packets", "history_at", "history_hours", "water_quality",
        "manual", "manual_at", "quirks", "hour_packets",
    };
    size_t i;
    for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(k, keys[i]))
            break;
    if (i == sizeof keys / sizeof keys[0])
        return 0;
    sim_rtu_conf *r = rtu_conf(g);
    if (!r)
        return SIM_ENOMEM;
    const char *s = scalar(vn);
    long l;
    double d;
    if (!strcmp(k, "connect")) {
        char tmp[96];
        if (get_str(c, vn, k, tmp, sizeof tmp))
            return SIM_EINVAL;
        char *colon = strrchr(tmp, ':');
        char *end;
        if (!colon)
            return perr(c, vn, "connect: expected host:port");
        *colon = 0;
        l = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || l < 1 || l > 65535)
            return perr(c, vn, "connect: bad port");
        char *h = tmp;
        size_t hl = strlen(h);
        if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { /* [::1]:port */
            h[hl - 1] = 0;
            h++;
        }
        if (!h[0] || strlen(h) >= sizeof r->host)
            return perr(c, vn, "connect: bad host");
        memcpy(r->host, h, strlen(h) + 1);
        r->port = (uint32_t)l;
    } else if (!strcmp(k, "transport")) {
        if (s && !strcmp(s, "tcp"))
            r->udp = 0;
        else if (s && !strcmp(s, "udp"))
            r->udp = 1;
        else
            return perr(c, vn, "transport: tcp or udp");
    } else if (!strcmp(k, "address") || !strcmp(k, "mn")) {
        if (get_str(c, vn, k, r->address, sizeof r->address))
            return SIM_EINVAL;
    } else if (!strcmp(k, "password")) {
        if (get_str(c, vn, k, r->password, sizeof r->password))
            return SIM_EINVAL;
    } else if (!strcmp(k, "centre")) {
        if (get_int(c, vn, k, 0, 255, &l))
            return SIM_EINVAL;
        r->centre = (int)l;
    } else if (!strcmp(k, "station_type")) {
        static const struct {
            const char *n;
            int v;
        } stypes[] = {{"rain", 0x50},     {"river", 0x48}, {"reservoir", 0x4B}, {"gate", 0x5A},
                     {"pump", 0x44},     {"tide", 0x54},  {"soil", 0x4D},      {"ground", 0x47},
                     {"quality", 0x51}};
        size_t j;
        for (j = 0; s && j < sizeof stypes / sizeof stypes[0]; j++)
            if (!strcmp(s, stypes[j].n))
                break;
        if (s && j < sizeof stypes / sizeof stypes[0])
            r->station_type = stypes[j].v;
        else if (get_int(c, vn, k, 0, 255, &l))
            return perr(c, vn,
                        "station_type: rain, river, reservoir, gate, pump, tide, soil, ground, "
                        "quality or a number such as 0x48");
        else
            r->station_type = (int)l;
    } else if (!strcmp(k, "encoding")) {
        if (!s || strcmp(s, "hex") != 0)
            return perr(c, vn, "encoding: only hex is implemented (ascii is not yet)");
    } else if (!strcmp(k, "mode")) {
        if (s && (!strcmp(s, "M1") || !strcmp(s, "m1")))
            r->m2 = 0;
        else if (s && (!strcmp(s, "M2") || !strcmp(s, "m2")))
            r->m2 = 1;
        else
            return perr(c, vn, "mode: M1 (no confirms) or M2 (confirmed reports)");
    } else if (!strcmp(k, "resends")) {
        if (get_int(c, vn, k, 0, 10, &l))
            return SIM_EINVAL;
        r->resends = (int)l;
    } else if (!strcmp(k, "extra_on")) {
        if (s && !strcmp(s, "rain"))
            r->extra_on_rain = 1;
        else if (s && !strcmp(s, "level"))
            r->extra_on_rain = 0;
        else
            return perr(c, vn, "extra_on: rain (1-hour rainfall) or level");
    } else if (!strcmp(k, "clock")) {
        if (s && !strcmp(s, "now"))
            r->clock0 = NAN;
        else if (!s || parse_clock(s, &r->clock0))
            return perr(c, vn, "clock: now or \"YYYY-MM-DD hh:mm:ss\" (station time at start)");
    } else if (!strcmp(k, "spread")) {
        return get_bool(c, vn, k, &r->spread) ? SIM_EINVAL : 1;
    } else if (!strcmp(k, "status")) {
        return get_bool(c, vn, k, &r->status) ? SIM_EINVAL : 1;
    } else if (!strcmp(k, "reply")) {
        return get_bool(c, vn, k, &r->reply) ? SIM_EINVAL : 1;
    } else if (!strcmp(k, "rainfall")) {
        r->has_rain = 1;
        return rtu_curve(c, vn, &r->rain, k) ? SIM_EINVAL : 1;
    } else if (!strcmp(k, "level")) {
        r->has_level = 1;
        return rtu_curve(c, vn, &r->level, k) ? SIM_EINVAL : 1;
    } else if (!strcmp(k, "voltage")) {
        r->has_voltage = 1;
        return rtu_curve(c, vn, &r->voltage, k) ? SIM_EINVAL : 1;
    } else if (!strcmp(k, "st")) {
        if (get_str(c, vn, k, r->st, sizeof r->st))
            return SIM_EINVAL;
    } else if (!strcmp(k, "manual") || !strcmp(k, "quirks")) {
        if (get_str(c, vn, k, k[0] == 'm' ? r->manual : r->quirks, sizeof r->manual))
            return SIM_EINVAL;
    } else if (!strcmp(k, "water_quality")) {
        return get_bool(c, vn, k, &r->water_quality) ? SIM_EINVAL : 1;
    } else if (!strcmp(k, "picture_packets") || !strcmp(k, "history_hours") ||
               !strcmp(k, "hour_packets")) {
        if (get_int(c, vn, k, 1, 64, &l))
            return SIM_EINVAL;
        *(k[0] == 'p' ? &r->picture_packets : k[0] == 'h' && k[1] == 'i' ? &r->history_hours
                                                                          : &r->hour_packets) =
            (int)l;
    } else if (!strcmp(k, "test_at")) {
        int n = vn->type == YAML_SEQUENCE_NODE ? seq_len(vn) : 1;
        free(r->test_at);
        r->test_at = calloc((size_t)(n ? n : 1), sizeof(double));
        if (!r->test_at)
            return SIM_ENOMEM;
        for (int j = 0; j < n; j++) {
            yaml_node_t *tn = vn->type == YAML_SEQUENCE_NODE
                                  ? node(c, vn->data.sequence.items.start[j])
                                  : vn;
            if (get_num(c, tn, k, &r->test_at[j]))
                return SIM_EINVAL;
            if (j && r->test_at[j] < r->test_at[j - 1])
                return perr(c, tn, "test_at: times must not decrease");
        }
        r->ntest = n;
    } else if (!strcmp(k, "events")) {
        return rtu_events_parse(c, vn, r) ? SIM_EINVAL : 1;
    } else if (!strcmp(k, "factors")) {
        return rtu_factors_parse(c, vn, r) ? SIM_EINVAL : 1;
    } else {
        /* The numeric keys: durations or plain numbers. */
        if (get_num(c, vn, k, &d))
            return SIM_EINVAL;
        int dur = strcmp(k, "extra_threshold") && strcmp(k, "rain_base");
        if (dur && (d < 0 || d > 30 * 86400))
            return perr(c, vn, "%s: 0..30d", k);
        if (!strcmp(k, "interval"))
            r->interval = d;
        else if (!strcmp(k, "hourly_every"))
            r->hourly_every = d;
        else if (!strcmp(k, "keepalive"))
            r->keepalive = d;
        else if (!strcmp(k, "extra_threshold"))
            r->extra_threshold = d;
        else if (!strcmp(k, "extra_interval"))
            r->extra_interval = d;
        else if (!strcmp(k, "confirm_timeout"))
            r->confirm_timeout = d;
        else if (!strcmp(k, "reconnect"))
            r->reconnect = d;
        else if (!strcmp(k, "rain_base"))
            r->rain_base = d;
        else if (!strcmp(k, "minute_every"))
            r->minute_every = d;
        else if (!strcmp(k, "hour_every"))
            r->hour_every = d;
        else if (!strcmp(k, "picture_at"))
            r->picture_at = d;
        else if (!strcmp(k, "history_at"))
            r->history_at = d;
        else if (!strcmp(k, "manual_at"))
            r->manual_at = d;
    }
    (void)kn;
    return 1;
}

/* After the group's keys: defaults per protocol and the checks that need
 * every key. faults is the group's `faults:` node (may be NULL). */
static int rtu_finish(pctx *c, yaml_node_t *m, sim_group *g, yaml_node_t *faults)
{
    int mine = is_rtu_protocol(g->protocol);
    if (!mine) {
        if (g->rtu)
            return perr(c, m, "device group: station keys (connect, interval, ...) need "
                              "protocol sl651 or hj212");
        return SIM_OK;
    }
    sim_rtu_conf *r = rtu_conf(g);
    if (!r)
        return SIM_ENOMEM;
    int hj = !strcmp(g->protocol, "hj212");
    if (!r->port)
        return perr(c, m, "device group: missing connect: host:port (the centre)");
    if (!r->address[0])
        return perr(c, m, "device group: missing %s", hj ? "mn" : "address");
    if (isnan(r->interval))
        r->interval = hj ? 30 : 300;
    if (isnan(r->hourly_every))
        r->hourly_every = 3600;
    if (isnan(r->minute_every))
        r->minute_every = 600;
    if (isnan(r->hour_every))
        r->hour_every = 3600;
    if (r->resends < 0)
        r->resends = hj ? 0 : 2;
    if (!hj && r->resends > 2)
        return perr(c, m, "resends: SL651 resends a report at most twice");
    if (!r->password[0])
        snprintf(r->password, sizeof r->password, "%s", hj ? "123456" : "1234");
    if (!r->st[0])
        snprintf(r->st, sizeof r->st, "32");
    if (r->nevents)
        r->status = 1; /* events show in element 45 */
    if (r->interval <= 0 || r->hourly_every < 0 || r->extra_interval <= 0)
        return perr(c, m, "interval and extra_interval must be > 0");
    if (!hj) {
        char addr[64];
        if (!hex_ok(r->password, 4))
            return perr(c, m, "password: up to 4 hex digits (e.g. 1234)");
        uint32_t ends[2] = {g->first, g->first + g->count - 1};
        for (int e = 0; e < 2; e++) {
            uint32_t n = ends[e];
            if (strstr(r->address, "{n")) {
                if (sim_format_id(r->address, n, addr, sizeof addr))
                    return perr(c, m, "address: bad template '%s'", r->address);
            } else {
                char *end;
                errno = 0;
                unsigned long long base = strtoull(r->address, &end, 10);
                if (*end || errno || base + (n - g->first) > 9999999999ull)
                    return perr(c, m, "address: 10 digits, a template or a decimal base");
                snprintf(addr, sizeof addr, "%010llu", base + (n - g->first));
            }
            if (!hex_ok(addr, 10))
                return perr(c, m, "address: '%s' is not up to 10 hex digits", addr);
        }
    } else {
        if (r->nfactors == 0)
            return perr(c, m, "device group: hj212 needs factors: [{code, curve}, ...]");
        if (strpbrk(r->password, ";,=&") || strpbrk(r->st, ";,=&") || strpbrk(r->address, ";,=&"))
            return perr(c, m, "password, st and mn may not hold ; , = or &");
    }
    if (faults) {
        if (faults->type != YAML_SEQUENCE_NODE)
            return perr(c, faults, "faults: expected a list");
        int n = seq_len(faults);
        r->faults = calloc((size_t)(n ? n : 1), sizeof *r->faults);
        if (!r->faults)
            return SIM_ENOMEM;
        for (int i = 0; i < n; i++) {
            r->nfaults = i + 1;
            int rc = rtu_fault_parse(c, node(c, faults->data.sequence.items.start[i]),
                                     &r->faults[i]);
            if (rc)
                return rc;
            if (r->faults[i].kind == SIM_RF_MALFORMED && !hj)
                return perr(c, node(c, faults->data.sequence.items.start[i]),
                            "malformed_cp: HJ212 only");
        }
    }
    return SIM_OK;
}
/* ==== end of SL651 / HJ212 keys ==== */
/* ==== peer kinds (coap-smoke, mqtt-gauge): keys, events, templates ====
 * Devices of these kinds connect out to the gateway. parse_group accepts the
 * keys named in peer_keys and hands the whole group mapping to parse_peer
 * once the protocol is known, which checks each key against the kind. */

int sim_expand(const char *tmpl, uint32_t n, const char *id, const char *imei, char *out,
               size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return SIM_EINVAL;
    for (const char *s = tmpl; *s;) {
        const char *val = NULL;
        size_t skip = 0;
        if (!strncmp(s, "{id}", 4)) {
            val = id;
            skip = 4;
        } else if (!strncmp(s, "{imei}", 6)) {
            val = imei;
            skip = 6;
        } else if (s[0] == '{') {
            const char *e = strchr(s, '}');
            char one[32], got[32];
            if (!e || (size_t)(e - s) >= sizeof one - 1 || s[1] != 'n')
                return SIM_EINVAL;
            memcpy(one, s, (size_t)(e - s) + 1);
            one[e - s + 1] = 0;
            if (sim_format_id(one, n, got, sizeof got) != SIM_OK)
                return SIM_EINVAL;
            size_t gl = strlen(got);
            if (o + gl >= cap)
                return SIM_EINVAL;
            memcpy(out + o, got, gl);
            o += gl;
            s = e + 1;
            continue;
        }
        if (skip) {
            if (!val)
                return SIM_EINVAL;
            size_t vl = strlen(val);
            if (o + vl >= cap)
                return SIM_EINVAL;
            memcpy(out + o, val, vl);
            o += vl;
            s += skip;
            continue;
        }
        if (o + 1 >= cap)
            return SIM_EINVAL;
        out[o++] = *s++;
    }
    out[o] = 0;
    return (int)o;
}

static const char *const event_names[SIM_EV__COUNT] = {
    "fire_alarm", "alarm_cleared", "self_test",       "self_test_fail",
    "mute",       "unmute",        "battery_low",     "battery_critical",
    "battery_ok", "tamper",        "tamper_restored", "hw_fault",
    "dirty",      "end_of_life",   "fault_cleared",   "heartbeat",
    "bad_crc",    "truncated",     "wrong_psk",       "right_psk",
    "silent",     "resume",        "malformed",       "disconnect",
    "reconnect",  "offline",
};

const char *sim_event_name(sim_event_kind k)
{
    return (unsigned)k < SIM_EV__COUNT ? event_names[k] : "?";
}

static int event_allowed(const char *protocol, sim_event_kind k)
{
    if (k == SIM_EV_SILENT || k == SIM_EV_RESUME)
        return 1;
    if (!strcmp(protocol, "coap-smoke"))
        return k <= SIM_EV_RIGHT_PSK;
    return k >= SIM_EV_MALFORMED;
}

enum { PK_COAP = 1, PK_MQTT = 2, PK_BOTH = 3 };
static const struct {
    const char *key;
    int kinds;
} peer_keys[] = {
    {"imei", PK_COAP},
    {"path", PK_COAP},
    {"query", PK_COAP},
    {"dtls", PK_COAP},
    {"psk", PK_COAP},
    {"psk_hex", PK_COAP},
    {"heartbeat", PK_COAP},
    {"report", PK_COAP},
    {"spread", PK_BOTH},
    {"ack_timeout", PK_COAP},
    {"max_retransmit", PK_COAP},
    {"tlv", PK_COAP},
    {"battery", PK_COAP},
    {"smoke", PK_COAP},
    {"temperature", PK_COAP},
    {"topic", PK_MQTT},
    {"status_topic", PK_MQTT},
    {"client_id", PK_MQTT},
    {"interval", PK_MQTT},
    {"keepalive", PK_MQTT},
    {"qos", PK_MQTT},
    {"ts_field", PK_MQTT},
    {"ts", PK_MQTT},
    {"id_field", PK_MQTT},
    {"fields", PK_MQTT},
    {"events", PK_BOTH},
};

static int peer_key_kinds(const char *k)
{
    for (size_t i = 0; i < sizeof peer_keys / sizeof peer_keys[0]; i++)
        if (!strcmp(k, peer_keys[i].key))
            return peer_keys[i].kinds;
    return 0;
}

void sim_peer_free(sim_peer *p)
{
    if (!p)
        return;
    sim_curve_free(&p->smoke);
    sim_curve_free(&p->temperature);
    for (int i = 0; i < p->nfields; i++)
        sim_curve_free(&p->fields[i].curve);
    free(p->fields);
    free(p->events);
    free(p);
}

/* A number (a constant) or a curve mapping. */
static int parse_value_or_curve(pctx *c, yaml_node_t *vn, const char *key, sim_curve *cv)
{
    if (cv->kind != SIM_C_NONE)
        return perr(c, vn, "%s: given twice", key);
    if (vn->type == YAML_MAPPING_NODE)
        return parse_curve(c, vn, cv);
    cv->kind = SIM_C_CONSTANT;
    return parse_param(c, vn, key, &cv->p[SIM_P_VALUE]);
}

static int json_name_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
            return 0;
    return 1;
}

static int parse_fields(pctx *c, yaml_node_t *seq, sim_peer *p)
{
    if (seq->type != YAML_SEQUENCE_NODE)
        return perr(c, seq, "fields: expected a list of {name, value|curve, decimals}");
    int n = (int)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    if (n < 1 || n > 64)
        return perr(c, seq, "fields: 1..64 fields");
    p->fields = calloc((size_t)n, sizeof *p->fields);
    if (!p->fields)
        return SIM_ENOMEM;
    for (int i = 0; i < n; i++) {
        yaml_node_t *m = node(c, seq->data.sequence.items.start[i]);
        sim_field *f = &p->fields[i];
        p->nfields = i + 1;
        f->decimals = 3;
        if (m->type != YAML_MAPPING_NODE)
            return perr(c, m, "fields: each field is a mapping");
        for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top;
             pr++) {
            yaml_node_t *kn = node(c, pr->key), *vn = node(c, pr->value);
            const char *k = scalar(kn);
            long l;
            int rc;
            if (!k)
                return perr(c, kn, "field: keys must be strings");
            if (!strcmp(k, "name")) {
                if (get_str(c, vn, k, f->name, sizeof f->name))
                    return SIM_EINVAL;
                if (!json_name_ok(f->name))
                    return perr(c, vn, "name: letters, digits, _ . - only");
            } else if (!strcmp(k, "decimals")) {
                if (get_int(c, vn, k, 0, 9, &l))
                    return SIM_EINVAL;
                f->decimals = (int)l;
            } else if (!strcmp(k, "value") || !strcmp(k, "curve")) {
                if ((rc = parse_value_or_curve(c, vn, k, &f->curve)))
                    return rc;
            } else {
                return perr(c, kn, "field: unknown key '%s' (name, value, curve, decimals)", k);
            }
        }
        if (!f->name[0])
            return perr(c, m, "field: missing name");
        if (!strcmp(f->name, p->ts_field) || !strcmp(f->name, p->id_field))
            return perr(c, m, "field: '%s' is already the ts or id field", f->name);
        for (int j = 0; j < i; j++)
            if (!strcmp(p->fields[j].name, f->name))
                return perr(c, m, "field: duplicate name '%s'", f->name);
    }
    return SIM_OK;
}

static int parse_events(pctx *c, yaml_node_t *seq, sim_group *g)
{
    sim_peer *p = g->peer;
    if (seq->type != YAML_SEQUENCE_NODE)
        return perr(c, seq, "events: expected a list of {at, device, kind}");
    int n = (int)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    p->events = calloc((size_t)(n ? n : 1), sizeof *p->events);
    if (!p->events)
        return SIM_ENOMEM;
    for (int i = 0; i < n; i++) {
        yaml_node_t *m = node(c, seq->data.sequence.items.start[i]);
        sim_event ev = {.kind = SIM_EV__COUNT, .line = (int)m->start_mark.line + 1};
        int have_at = 0;
        if (m->type != YAML_MAPPING_NODE)
            return perr(c, m, "events: each event is a mapping");
        for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top;
             pr++) {
            yaml_node_t *kn = node(c, pr->key), *vn = node(c, pr->value);
            const char *k = scalar(kn);
            long l;
            if (!k)
                return perr(c, kn, "event: keys must be strings");
            if (!strcmp(k, "at")) {
                if (get_num(c, vn, k, &ev.at) || ev.at < 0)
                    return perr(c, vn, "at: a time >= 0");
                have_at = 1;
            } else if (!strcmp(k, "device")) {
                if (scalar(vn) && !strcmp(scalar(vn), "all"))
                    ev.device = 0;
                else if (get_int(c, vn, k, g->first, (long)g->first + g->count - 1, &l))
                    return SIM_EINVAL;
                else
                    ev.device = (uint32_t)l;
            } else if (!strcmp(k, "kind")) {
                const char *s = scalar(vn);
                int ek;
                for (ek = 0; ek < SIM_EV__COUNT && s; ek++)
                    if (!strcmp(s, event_names[ek]))
                        break;
                if (!s || ek == SIM_EV__COUNT || !event_allowed(g->protocol, (sim_event_kind)ek))
                    return perr(c, vn, "kind: '%s' is not an event of %s (see docs/sim.md)",
                                s ? s : "?", g->protocol);
                ev.kind = (sim_event_kind)ek;
            } else {
                return perr(c, kn, "event: unknown key '%s' (at, device, kind)", k);
            }
        }
        if (!have_at || ev.kind == SIM_EV__COUNT)
            return perr(c, m, "event: needs at and kind");
        if ((ev.kind == SIM_EV_WRONG_PSK || ev.kind == SIM_EV_RIGHT_PSK) && !p->dtls)
            return perr(c, m, "event %s: needs dtls: true", event_names[ev.kind]);
        /* Insertion keeps the file's order among events at the same time. */
        int j = p->nevents;
        while (j > 0 && p->events[j - 1].at > ev.at) {
            p->events[j] = p->events[j - 1];
            j--;
        }
        p->events[j] = ev;
        p->nevents++;
    }
    return SIM_OK;
}

/* Checks that a template expands for the group's first and last device. */
static int check_tmpl(pctx *c, yaml_node_t *at, const sim_group *g, const char *key,
                      const char *tmpl, int imei_digits)
{
    char id[64], imei[64], out[256];
    uint32_t ns[2] = {g->first, g->first + g->count - 1};
    for (int i = 0; i < 2; i++) {
        if (sim_format_id(g->id_tmpl, ns[i], id, sizeof id) != SIM_OK)
            return perr(c, at, "%s: bad id template", key);
        const sim_peer *p = g->peer;
        /* Only detectors have an IMEI. */
        int il = strcmp(g->protocol, "coap-smoke")
                     ? -1
                     : sim_expand(p->imei, ns[i], id, NULL, imei, sizeof imei);
        int rc = sim_expand(tmpl, ns[i], id, il >= 0 ? imei : NULL, out, sizeof out);
        if (rc < 0)
            return perr(c, at, "%s: cannot expand '%s' (placeholders {id}, {imei}, {n}, {n:05})",
                        key, tmpl);
        if (imei_digits && (rc != 15 || strspn(out, "0123456789") != 15))
            return perr(c, at, "%s: '%s' gives '%s', not 15 digits", key, tmpl, out);
    }
    return SIM_OK;
}

static int parse_peer(pctx *c, yaml_node_t *m, sim_group *g)
{
    int want = !strcmp(g->protocol, "coap-smoke")   ? PK_COAP
               : !strcmp(g->protocol, "mqtt-gauge") ? PK_MQTT
                                                    : 0;
    yaml_node_t *events = NULL, *fields = NULL, *imei_n = m, *psk_n = m, *topic_n = m;
    double spread = -1;
    if (!want && !(g->kind && g->kind->peer))
        return SIM_OK;
    sim_peer *p = calloc(1, sizeof *p);
    if (!p)
        return SIM_ENOMEM;
    g->peer = p;
    snprintf(p->imei, sizeof p->imei, "86{n:013}");
    snprintf(p->path, sizeof p->path, "/19/0/0");
    snprintf(p->query, sizeof p->query, "ep={imei}");
    snprintf(p->psk, sizeof p->psk, "{imei}-secret");
    p->heartbeat = 86400;
    p->ack_timeout = 2;
    p->max_retransmit = 4;
    p->tlv = 1;
    p->battery_v = 3.0;
    snprintf(p->topic, sizeof p->topic, "field/gauges/{id}/data");
    snprintf(p->client_id, sizeof p->client_id, "{id}");
    p->interval = 10;
    p->keepalive = 30;
    p->qos = 1;
    snprintf(p->ts_field, sizeof p->ts_field, "ts");
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = node(c, pr->key), *vn = node(c, pr->value);
        const char *k = scalar(kn);
        int kinds = k ? peer_key_kinds(k) : 0;
        long l;
        int rc;
        if (!kinds)
            continue;
        if (!(kinds & want))
            return perr(c, kn, "%s: not a key of %s groups", k, g->protocol);
        if (!strcmp(k, "imei")) {
            if (get_str(c, vn, k, p->imei, sizeof p->imei))
                return SIM_EINVAL;
            imei_n = vn;
        } else if (!strcmp(k, "path")) {
            if (get_str(c, vn, k, p->path, sizeof p->path))
                return SIM_EINVAL;
        } else if (!strcmp(k, "query")) {
            if (get_str(c, vn, k, p->query, sizeof p->query))
                return SIM_EINVAL;
        } else if (!strcmp(k, "dtls")) {
            if (get_bool(c, vn, k, &p->dtls))
                return SIM_EINVAL;
        } else if (!strcmp(k, "psk") || !strcmp(k, "psk_hex")) {
            if (psk_n != m)
                return perr(c, kn, "%s: give one of psk and psk_hex", k);
            if (get_str(c, vn, k, p->psk, sizeof p->psk))
                return SIM_EINVAL;
            p->psk_hex = !strcmp(k, "psk_hex");
            psk_n = vn;
        } else if (!strcmp(k, "heartbeat") || !strcmp(k, "report") || !strcmp(k, "interval") ||
                   !strcmp(k, "spread")) {
            double v;
            if (get_num(c, vn, k, &v))
                return SIM_EINVAL;
            if (!strcmp(k, "report") ? v < 0 : !strcmp(k, "spread") ? v < 0 : v <= 0)
                return perr(c, vn, "%s: must be %s", k,
                            !strcmp(k, "report") || !strcmp(k, "spread") ? ">= 0" : "> 0");
            if (!strcmp(k, "heartbeat"))
                p->heartbeat = v;
            else if (!strcmp(k, "report"))
                p->report = v;
            else if (!strcmp(k, "interval"))
                p->interval = v;
            else
                spread = v;
        } else if (!strcmp(k, "ack_timeout")) {
            /* libcoap 4.3.1 ignores an ACK_TIMEOUT below one second. */
            if (get_num(c, vn, k, &p->ack_timeout) || p->ack_timeout < 1 || p->ack_timeout > 60)
                return perr(c, vn, "ack_timeout: 1s..60s");
        } else if (!strcmp(k, "max_retransmit")) {
            if (get_int(c, vn, k, 0, 20, &l))
                return SIM_EINVAL;
            p->max_retransmit = (int)l;
        } else if (!strcmp(k, "tlv")) {
            if (get_bool(c, vn, k, &p->tlv))
                return SIM_EINVAL;
        } else if (!strcmp(k, "battery")) {
            if (get_num(c, vn, k, &p->battery_v) || p->battery_v < 2.0 || p->battery_v > 4.55)
                return perr(c, vn, "battery: 2.00..4.55 V");
        } else if (!strcmp(k, "smoke")) {
            if ((rc = parse_value_or_curve(c, vn, k, &p->smoke)))
                return rc;
        } else if (!strcmp(k, "temperature")) {
            if ((rc = parse_value_or_curve(c, vn, k, &p->temperature)))
                return rc;
        } else if (!strcmp(k, "topic")) {
            if (get_str(c, vn, k, p->topic, sizeof p->topic))
                return SIM_EINVAL;
            topic_n = vn;
        } else if (!strcmp(k, "status_topic")) {
            if (get_str(c, vn, k, p->status_topic, sizeof p->status_topic))
                return SIM_EINVAL;
        } else if (!strcmp(k, "client_id")) {
            if (get_str(c, vn, k, p->client_id, sizeof p->client_id))
                return SIM_EINVAL;
        } else if (!strcmp(k, "keepalive")) {
            if (get_num(c, vn, k, &p->keepalive) || p->keepalive < 1 || p->keepalive > 3600)
                return perr(c, vn, "keepalive: 1s..1h");
        } else if (!strcmp(k, "qos")) {
            if (get_int(c, vn, k, 0, 2, &l))
                return SIM_EINVAL;
            p->qos = (int)l;
        } else if (!strcmp(k, "ts_field")) {
            if (get_str(c, vn, k, p->ts_field, sizeof p->ts_field))
                return SIM_EINVAL;
            if (!json_name_ok(p->ts_field))
                return perr(c, vn, "ts_field: letters, digits, _ . - only");
        } else if (!strcmp(k, "id_field")) {
            if (get_str(c, vn, k, p->id_field, sizeof p->id_field))
                return SIM_EINVAL;
            if (!json_name_ok(p->id_field))
                return perr(c, vn, "id_field: letters, digits, _ . - only");
        } else if (!strcmp(k, "ts")) {
            const char *s = scalar(vn);
            if (s && !strcmp(s, "iso"))
                p->ts_format = SIM_TS_ISO;
            else if (s && !strcmp(s, "epoch"))
                p->ts_format = SIM_TS_EPOCH;
            else if (s && !strcmp(s, "epoch_ms"))
                p->ts_format = SIM_TS_EPOCH_MS;
            else if (s && !strcmp(s, "none"))
                p->ts_format = SIM_TS_NONE;
            else
                return perr(c, vn, "ts: iso, epoch, epoch_ms or none");
        } else if (!strcmp(k, "fields")) {
            fields = vn;
        } else if (!strcmp(k, "events")) {
            events = vn;
        }
    }
    p->spread = spread;
    if (want == PK_COAP) {
        int rc;
        if ((rc = check_tmpl(c, imei_n, g, "imei", p->imei, 1)) ||
            (rc = check_tmpl(c, m, g, "query", p->query, 0)))
            return rc;
        if (p->dtls && (rc = check_tmpl(c, psk_n, g, p->psk_hex ? "psk_hex" : "psk", p->psk, 0)))
            return rc;
        if (p->path[0] != '/')
            return perr(c, m, "path: must start with /");
        if (p->psk_hex) {
            char id[64], imei[64], key[256];
            sim_format_id(g->id_tmpl, g->first, id, sizeof id);
            sim_expand(p->imei, g->first, id, NULL, imei, sizeof imei);
            int kl = sim_expand(p->psk, g->first, id, imei, key, sizeof key);
            if (kl <= 0 || kl % 2 || (int)strspn(key, "0123456789abcdefABCDEF") != kl)
                return perr(c, psk_n, "psk_hex: an even number of hex digits once expanded");
        }
    } else {
        int rc;
        if (!p->status_topic[0]) {
            const char *slash = strrchr(p->topic, '/');
            size_t keep = slash ? (size_t)(slash - p->topic) + 1 : 0;
            if (keep + sizeof "status" > sizeof p->status_topic)
                return perr(c, topic_n, "topic: too long to derive status_topic");
            memcpy(p->status_topic, p->topic, keep);
            memcpy(p->status_topic + keep, "status", sizeof "status");
        }
        if ((rc = check_tmpl(c, topic_n, g, "topic", p->topic, 0)) ||
            (rc = check_tmpl(c, m, g, "status_topic", p->status_topic, 0)) ||
            (rc = check_tmpl(c, m, g, "client_id", p->client_id, 0)))
            return rc;
        if (fields) {
            if ((rc = parse_fields(c, fields, p)))
                return rc;
        } else {
            p->fields = calloc(2, sizeof *p->fields);
            if (!p->fields)
                return SIM_ENOMEM;
            p->nfields = 2;
            snprintf(p->fields[0].name, sizeof p->fields[0].name, "level");
            p->fields[0].decimals = 3;
            snprintf(p->fields[1].name, sizeof p->fields[1].name, "battery");
            p->fields[1].decimals = 2;
            p->fields[1].curve.kind = SIM_C_CONSTANT;
            p->fields[1].curve.p[SIM_P_VALUE].v = malloc(sizeof(double));
            if (!p->fields[1].curve.p[SIM_P_VALUE].v)
                return SIM_ENOMEM;
            p->fields[1].curve.p[SIM_P_VALUE].n = 1;
            p->fields[1].curve.p[SIM_P_VALUE].v[0] = 3.6;
        }
    }
    if (events)
        return parse_events(c, events, g);
    return SIM_OK;
}

/* ==== end of peer kinds ==== */

/* ---- groups ---- */

int sim_format_id(const char *tmpl, uint32_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *s = tmpl; *s;) {
        if (s[0] == '{' && s[1] == 'n' && (s[2] == '}' || s[2] == ':')) {
            const char *e = strchr(s, '}');
            int width = 0, zero = 0;
            if (!e)
                return SIM_EINVAL;
            if (s[2] == ':') {
                const char *q = s + 3;
                if (*q == '0') {
                    zero = 1;
                    q++;
                }
                while (q < e && isdigit((unsigned char)*q) && width < 20)
                    width = width * 10 + (*q++ - '0');
                if (q != e)
                    return SIM_EINVAL;
            }
            int w = snprintf(out + o, outlen - o, zero ? "%0*u" : "%*u", width, n);
            if (w < 0 || (size_t)w >= outlen - o)
                return SIM_EINVAL;
            o += (size_t)w;
            s = e + 1;
        } else {
            if (o + 1 >= outlen)
                return SIM_EINVAL;
            out[o++] = *s++;
        }
    }
    out[o] = 0;
    return SIM_OK;
}

/* ---- serial kinds: modbus-rtu buses and modbus-dtu links ----
 * Groups of these kinds name a `bus`; every group on one bus shares its line
 * (a pty, or the DTU's TCP connection), and one of them carries the link keys
 * below. Devices of a group take unit ids unit, unit+1, ... on that bus. */

static int hexdigit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Parses "7E 01 0A ff" or "7e010aff" (also ':' or '-' between bytes); returns the
 * length or SIM_EINVAL. */
static int hex_parse(const char *s, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (*s) {
        if (isspace((unsigned char)*s) || *s == ':' || *s == '-') {
            s++;
            continue;
        }
        int hi = hexdigit((unsigned char)s[0]), lo = s[1] ? hexdigit((unsigned char)s[1]) : -1;
        if (hi < 0 || lo < 0 || n >= cap)
            return SIM_EINVAL;
        out[n++] = (uint8_t)(hi << 4 | lo);
        s += 2;
    }
    return n ? (int)n : SIM_EINVAL;
}

enum { LK_RTU = 1, LK_DTU = 2 };

static int link_kind(const char *protocol)
{
    if (!strcmp(protocol, "modbus-rtu"))
        return LK_RTU;
    if (!strcmp(protocol, "modbus-dtu"))
        return LK_DTU;
    return 0;
}

static const struct {
    const char *key;
    int kinds;
} link_keys[] = {
    {"bus", LK_RTU | LK_DTU}, {"baud", LK_RTU | LK_DTU},  {"silence", LK_RTU | LK_DTU},
    {"pty_link", LK_RTU},     {"path", LK_RTU},           {"connect", LK_DTU},
    {"number", LK_DTU},       {"register", LK_DTU},       {"register_hex", LK_DTU},
    {"heartbeat", LK_DTU},    {"heartbeat_data", LK_DTU}, {"heartbeat_hex", LK_DTU},
    {"reconnect", LK_DTU},    {"reconnect_max", LK_DTU},
};

/* Returns 1 if k is a link key (parsed into g->link), 0 if not, or an error. */
static int parse_link_key(pctx *c, yaml_node_t *kn, yaml_node_t *vn, sim_group *g)
{
    sim_link_conf *L = &g->link;
    const char *k = scalar(kn);
    size_t i;
    long l;
    double d;
    int n;
    for (i = 0; i < sizeof link_keys / sizeof link_keys[0]; i++)
        if (!strcmp(k, link_keys[i].key))
            break;
    if (i == sizeof link_keys / sizeof link_keys[0])
        return 0;
    c->link_used |= 1u << i;
    if (strcmp(k, "bus") != 0) {
        L->have_link = 1;
        if (!L->link_line)
            L->link_line = (int)kn->start_mark.line + 1;
    }
    if (!strcmp(k, "bus")) {
        if (get_str(c, vn, k, L->bus, sizeof L->bus) || !L->bus[0] || L->bus[0] == '@')
            return perr(c, vn, "bus: expected a name (not starting with @)");
    } else if (!strcmp(k, "pty_link")) {
        if (get_str(c, vn, k, L->pty_link, sizeof L->pty_link) || !L->pty_link[0])
            return perr(c, vn, "pty_link: expected a path");
    } else if (!strcmp(k, "path")) {
        if (get_str(c, vn, k, L->path, sizeof L->path) || !L->path[0])
            return perr(c, vn, "path: expected a tty path");
    } else if (!strcmp(k, "baud")) {
        if (get_int(c, vn, k, 0, 4000000, &l))
            return SIM_EINVAL;
        L->baud = (uint32_t)l;
    } else if (!strcmp(k, "silence")) {
        if (get_num(c, vn, k, &d) || d < 0.001 || d > 10)
            return perr(c, vn, "silence: 1ms..10s");
        L->silence_s = d;
    } else if (!strcmp(k, "connect")) {
        if (get_str(c, vn, k, L->connect, sizeof L->connect))
            return SIM_EINVAL;
        const char *colon = strrchr(L->connect, ':');
        char *end;
        l = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == L->connect || *end || l < 1 || l > 65535)
            return perr(c, vn, "connect: expected host:port");
    } else if (!strcmp(k, "number")) {
        if (get_int(c, vn, k, 0, 100000000, &l))
            return SIM_EINVAL;
        L->number = (uint32_t)l;
    } else if (!strcmp(k, "register")) {
        if (L->reg_len)
            return perr(c, kn, "register: give either register or register_hex");
        if (get_str(c, vn, k, (char *)L->reg, sizeof L->reg) || !L->reg[0])
            return perr(c, vn, "register: expected a non-empty string");
        L->reg_len = strlen((char *)L->reg);
        L->register_tmpl = 1;
    } else if (!strcmp(k, "register_hex")) {
        if (L->reg_len)
            return perr(c, kn, "register: give either register or register_hex");
        if (!scalar(vn) || (n = hex_parse(scalar(vn), L->reg, sizeof L->reg)) < 0)
            return perr(c, vn, "register_hex: expected hex bytes (\"7E 01 0A\"), at most %d",
                        SIM_LINK_DATA_MAX);
        L->reg_len = (size_t)n;
    } else if (!strcmp(k, "heartbeat")) {
        if (get_num(c, vn, k, &d) || d < 0.01 || d > 86400)
            return perr(c, vn, "heartbeat: 10ms..1d");
        L->heartbeat_s = d;
    } else if (!strcmp(k, "heartbeat_data")) {
        if (L->hb_len)
            return perr(c, kn, "heartbeat: give either heartbeat_data or heartbeat_hex");
        const char *v = scalar(vn);
        if (!v || !v[0] || strlen(v) > sizeof L->hb)
            return perr(c, vn, "heartbeat_data: 1..%d characters", SIM_LINK_DATA_MAX);
        L->hb_len = strlen(v);
        memcpy(L->hb, v, L->hb_len);
    } else if (!strcmp(k, "heartbeat_hex")) {
        if (L->hb_len)
            return perr(c, kn, "heartbeat: give either heartbeat_data or heartbeat_hex");
        if (!scalar(vn) || (n = hex_parse(scalar(vn), L->hb, sizeof L->hb)) < 0)
            return perr(c, vn, "heartbeat_hex: expected hex bytes, at most %d", SIM_LINK_DATA_MAX);
        L->hb_len = (size_t)n;
    } else if (!strcmp(k, "reconnect")) {
        if (get_num(c, vn, k, &d) || d < 0.01 || d > 3600)
            return perr(c, vn, "reconnect: 10ms..1h");
        L->reconnect_s = d;
    } else if (!strcmp(k, "reconnect_max")) {
        if (get_num(c, vn, k, &d) || d < 0.01 || d > 3600)
            return perr(c, vn, "reconnect_max: 10ms..1h");
        L->reconnect_max_s = d;
    }
    return 1;
}

/* Checks one serial group once all its keys are read. */
static int check_link_group(pctx *c, yaml_node_t *m, sim_group *g, int kind, int have_port)
{
    sim_link_conf *L = &g->link;
    uint32_t used = c->link_used;
    int have_number = 0;
    c->link_used = 0;
    for (size_t i = 0; i < sizeof link_keys / sizeof link_keys[0]; i++) {
        if (!(used & (1u << i)))
            continue;
        if (!(link_keys[i].kinds & kind))
            return perr(c, m, "%s: not a key of %s", link_keys[i].key, g->protocol);
        if (!strcmp(link_keys[i].key, "number"))
            have_number = 1;
    }
    if (have_port)
        return perr(c, m, "port: not used by %s (see bus, pty_link, connect)", g->protocol);
    if (g->unit == SIM_UNIT_ANY || g->unit < 1 || g->unit + (int)g->count - 1 > 247)
        return perr(c, m, "unit: %s devices take unit ids unit..unit+count-1 in 1..247",
                    g->protocol);
    if (L->pty_link[0] && L->path[0])
        return perr(c, m, "give either pty_link (create a pty) or path (an existing tty)");
    if (L->reconnect_s == 0)
        L->reconnect_s = 1;
    if (L->reconnect_max_s == 0)
        L->reconnect_max_s = L->reconnect_s > 30 ? L->reconnect_s : 30;
    if (L->reconnect_max_s < L->reconnect_s)
        return perr(c, m, "reconnect_max is below reconnect");
    if (L->heartbeat_s > 0 && L->hb_len == 0) {
        memcpy(L->hb, "HB", 2);
        L->hb_len = 2;
    }
    if (!have_number)
        L->number = 1;
    if (L->register_tmpl) {
        char probe[SIM_LINK_DATA_MAX];
        if (sim_format_id((char *)L->reg, L->number, probe, sizeof probe))
            return perr(c, m, "register: bad template '%s' (use {n} or {n:04})", (char *)L->reg);
    }
    if (!L->bus[0])
        snprintf(L->bus, sizeof L->bus, "@%d", g->line); /* a bus of its own */
    return SIM_OK;
}

/* Groups on one bus: same kind, link keys in one group only (copied to the
 * others), unit ids unique, a DTU has somewhere to dial. */
static int check_buses(pctx *c, sim_scenario *s, yaml_node_t *devs)
{
    for (int i = 0; i < s->ngroups; i++) {
        sim_group *a = &s->groups[i];
        yaml_node_t *at = node(c, devs->data.sequence.items.start[i]);
        if (!link_kind(a->protocol))
            continue;
        int linked = a->link.have_link ? i : -1;
        for (int j = 0; j < s->ngroups; j++) {
            sim_group *b = &s->groups[j];
            if (j == i || !link_kind(b->protocol) || strcmp(a->link.bus, b->link.bus))
                continue;
            if (strcmp(a->protocol, b->protocol))
                return perr(c, at, "bus %s: mixes %s and %s (line %d)", a->link.bus, a->protocol,
                            b->protocol, b->line);
            if (b->link.have_link) {
                if (linked >= 0 && linked != j)
                    return perr(c, at, "bus %s: link keys given twice (lines %d and %d)",
                                a->link.bus, s->groups[linked].link.link_line, b->link.link_line);
                linked = j;
            }
            if (j < i && a->unit < b->unit + (int)b->count && b->unit < a->unit + (int)a->count)
                return perr(c, at, "bus %s: unit ids %d..%d overlap the group on line %d",
                            a->link.bus, a->unit, a->unit + (int)a->count - 1, b->line);
        }
        if (linked >= 0 && linked != i) {
            char bus[sizeof a->link.bus];
            memcpy(bus, a->link.bus, sizeof bus);
            a->link = s->groups[linked].link;
            a->link.have_link = 0;
            memcpy(a->link.bus, bus, sizeof bus);
        }
        if (!strcmp(a->protocol, "modbus-dtu") && !a->link.connect[0])
            return perr(c, at, "bus %s: a modbus-dtu bus needs connect: host:port", a->link.bus);
    }
    return SIM_OK;
}

static int parse_group(pctx *c, yaml_node_t *m, sim_group *g)
{
    yaml_node_t *regs = NULL, *faults = NULL;
    int have_port = 0;
    long l;
    g->count = 1;
    g->first = 1;
    g->unit = 1;
    snprintf(g->protocol, sizeof g->protocol, "modbus-tcp");
    g->line = (int)m->start_mark.line + 1;
    if (m->type != YAML_MAPPING_NODE)
        return perr(c, m, "device group: expected a mapping");
    /* Dial-out station kinds (sl651, hj212) and serial/DTU links share key
     * names (connect, reconnect): look at the protocol first to route them. */
    int station_kind = 0, peer_kind = 0;
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        const char *k = scalar(node(c, pr->key)), *v = scalar(node(c, pr->value));
        if (k && v && !strcmp(k, "protocol") && (!strcmp(v, "sl651") || !strcmp(v, "hj212")))
            station_kind = 1;
        if (k && v && !strcmp(k, "protocol") && (!strcmp(v, "coap-smoke") || !strcmp(v, "mqtt-gauge")))
            peer_kind = 1;
    }
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = node(c, pr->key), *vn = node(c, pr->value);
        const char *k = scalar(kn);
        if (!k)
            return perr(c, kn, "device group: keys must be strings");
        if (!strcmp(k, "id")) {
            if (get_str(c, vn, k, g->id_tmpl, sizeof g->id_tmpl))
                return SIM_EINVAL;
        } else if (!strcmp(k, "count")) {
            if (get_int(c, vn, k, 1, 100000, &l))
                return SIM_EINVAL;
            g->count = (uint32_t)l;
        } else if (!strcmp(k, "first")) {
            if (get_int(c, vn, k, 0, 100000000, &l))
                return SIM_EINVAL;
            g->first = (uint32_t)l;
        } else if (!strcmp(k, "protocol")) {
            if (get_str(c, vn, k, g->protocol, sizeof g->protocol))
                return SIM_EINVAL;
        } else if (!strcmp(k, "host")) {
            if (get_str(c, vn, k, g->host, sizeof g->host))
                return SIM_EINVAL;
        } else if (!strcmp(k, "port")) {
            if (get_int(c, vn, k, 1, 65535, &l))
                return SIM_EINVAL;
            g->port = (uint32_t)l;
            have_port = 1;
        } else if (!strcmp(k, "unit")) {
            if (scalar(vn) && !strcmp(scalar(vn), "any"))
                g->unit = SIM_UNIT_ANY;
            else if (get_int(c, vn, k, 0, 255, &l))
                return SIM_EINVAL;
            else
                g->unit = (int)l;
        } else if (!strcmp(k, "registers")) {
            regs = vn;
        } else if (!strcmp(k, "faults")) {
            faults = vn;
        } else {
            int rc = peer_kind      ? (peer_key_kinds(k) ? 1 : 0) /* parse_peer below */
                     : station_kind ? rtu_key(c, g, k, kn, vn)    /* sl651, hj212 keys */
                                    : parse_link_key(c, kn, vn, g);
            if (rc < 0)
                return rc;
            if (rc == 0)
                return perr(c, kn, "device group: unknown key '%s'", k);
        }
    }
    if (!g->id_tmpl[0])
        return perr(c, m, "device group: missing id");
    char probe[128];
    if (sim_format_id(g->id_tmpl, g->first + g->count - 1, probe, 64))
        return perr(c, m, "id: bad template '%s' (use {n} or {n:03})", g->id_tmpl);
    if (g->count > 1 && !strstr(g->id_tmpl, "{n"))
        return perr(c, m, "id: a group of %u devices needs {n} in its id", g->count);
    g->kind = sim_kind_find(g->protocol);
    if (!g->kind)
        return perr(c, m,
                    "protocol: unknown '%s' (modbus-tcp, modbus-rtu, modbus-dtu, sl651, hj212, "
                    "coap-smoke, mqtt-gauge)",
                    g->protocol);
    int prc = parse_peer(c, m, g);
    if (prc)
        return prc;
    int rc_rtu = rtu_finish(c, m, g, faults); /* sl651, hj212: they dial out */
    if (rc_rtu)
        return rc_rtu;
    if (g->rtu)
        faults = NULL;
    int serial = link_kind(g->protocol);
    if (serial) {
        int rc = check_link_group(c, m, g, serial, have_port);
        if (rc)
            return rc;
    } else if (c->link_used) {
        return perr(c, m, "%s: bus and link keys are for modbus-rtu and modbus-dtu", g->protocol);
    } else if (!have_port && !g->rtu) {
        return perr(c, m, "device group: missing port");
    }
    if (!g->rtu && !g->kind->peer && g->port + g->count - 1 > 65535)
        return perr(c, m, "port: %u devices from port %u run past 65535", g->count, g->port);
    if (regs) {
        if (regs->type != YAML_SEQUENCE_NODE)
            return perr(c, regs, "registers: expected a list");
        int n = (int)(regs->data.sequence.items.top - regs->data.sequence.items.start);
        g->regs = calloc((size_t)(n ? n : 1), sizeof *g->regs);
        if (!g->regs)
            return SIM_ENOMEM;
        for (int i = 0; i < n; i++) {
            g->nregs = i + 1;
            int rc = parse_reg(c, node(c, regs->data.sequence.items.start[i]), &g->regs[i]);
            if (rc)
                return rc;
        }
        /* Overlaps would make a read ambiguous. */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < i; j++) {
                sim_regdef *a = &g->regs[i], *b = &g->regs[j];
                if (a->table != b->table)
                    continue;
                int ae = a->addr + sim_type_regs(a->type), be = b->addr + sim_type_regs(b->type);
                if (a->addr < be && b->addr < ae)
                    return perr(c, node(c, regs->data.sequence.items.start[i]),
                                "register: overlaps the one on line %d", b->line);
            }
    }
    if (faults) {
        if (faults->type != YAML_SEQUENCE_NODE)
            return perr(c, faults, "faults: expected a list");
        int n = (int)(faults->data.sequence.items.top - faults->data.sequence.items.start);
        g->faults = calloc((size_t)(n ? n : 1), sizeof *g->faults);
        if (!g->faults)
            return SIM_ENOMEM;
        for (int i = 0; i < n; i++) {
            g->nfaults = i + 1;
            int rc = parse_fault(c, node(c, faults->data.sequence.items.start[i]), &g->faults[i]);
            if (rc)
                return rc;
        }
    }
    return SIM_OK;
}

/* ---- sim run: platform, gateway, broker, duration, speed, sites, metrics,
 * expect. Everything `sim run` needs beyond the devices; parsed after the
 * devices so expectations can be checked against the scenario's ids. ---- */

static const char *const level_names[] = {"none", "blue", "yellow", "orange", "red"};

int sim_level_parse(const char *s)
{
    for (int i = 1; i <= 4; i++)
        if (s && strcmp(s, level_names[i]) == 0)
            return i;
    return 0;
}

const char *sim_level_name(int level)
{
    return level >= 0 && level <= 4 ? level_names[level] : "?";
}

typedef struct run_nodes {
    yaml_node_t *platform, *gateway, *broker, *duration, *speed, *sites, *metrics, *expect;
} run_nodes;

static const char *const run_keys[] = {"platform", "gateway", "broker",  "duration",
                                       "speed",    "sites",   "metrics", "expect"};

/* Stores the node of a run key; 1 if k is one, 0 if not. */
static int run_key(run_nodes *rn, const char *k, yaml_node_t *vn)
{
    yaml_node_t **slots[] = {&rn->platform, &rn->gateway, &rn->broker,  &rn->duration,
                             &rn->speed,    &rn->sites,   &rn->metrics, &rn->expect};
    for (size_t i = 0; i < sizeof run_keys / sizeof run_keys[0]; i++)
        if (!strcmp(k, run_keys[i])) {
            *slots[i] = vn;
            return 1;
        }
    return 0;
}

static void run_conf_free(sim_run_conf *rc)
{
    if (!rc)
        return;
    for (int i = 0; i < rc->nexpects; i++)
        free(rc->expects[i].devs);
    free(rc->expects);
    free(rc->metrics);
    free(rc);
}

/* Calls fn for every device id of the scenario until it returns nonzero. */
static int each_device(const sim_scenario *s, int (*fn)(void *, const char *), void *arg)
{
    char id[SIM_NAME_MAX];
    for (int i = 0; i < s->ngroups; i++)
        for (uint32_t k = 0; k < s->groups[i].count; k++) {
            if (sim_format_id(s->groups[i].id_tmpl, s->groups[i].first + k, id, sizeof id))
                continue;
            int r = fn(arg, id);
            if (r)
                return r;
        }
    return 0;
}

static int is_id(void *arg, const char *id)
{
    return strcmp(arg, id) == 0;
}

struct prefix_count {
    const char *prefix;
    uint32_t n;
};

static int count_prefix(void *arg, const char *id)
{
    struct prefix_count *pc = arg;
    if (!strncmp(id, pc->prefix, strlen(pc->prefix)))
        pc->n++;
    return 0;
}

/* A mapping node's value for key, or NULL. */
static yaml_node_t *mget(pctx *c, yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++)
        if (scalar(node(c, pr->key)) && !strcmp(scalar(node(c, pr->key)), key))
            return node(c, pr->value);
    return NULL;
}

/* Every key of m must be in the NULL-terminated list. */
static int only_keys(pctx *c, yaml_node_t *m, const char *what, const char *const *keys)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return perr(c, m, "%s: expected a mapping", what);
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        const char *k = scalar(node(c, pr->key));
        int ok = 0;
        for (int i = 0; k && keys[i]; i++)
            ok |= !strcmp(k, keys[i]);
        if (!ok) {
            char list[256];
            size_t n = 0;
            list[0] = 0;
            for (int i = 0; keys[i] && n < sizeof list; i++)
                n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", keys[i]);
            return perr(c, node(c, pr->key), "%s: unknown key '%s' (%s)", what, k ? k : "?", list);
        }
    }
    return SIM_OK;
}

static int add_dev(pctx *c, yaml_node_t *at, const sim_scenario *s, sim_expect *x, const char *id)
{
    if (!each_device(s, is_id, (void *)id))
        return perr(c, at, "device '%s' is not in the scenario", id);
    char(*nd)[SIM_NAME_MAX] = realloc(x->devs, (size_t)(x->ndevs + 1) * sizeof *x->devs);
    if (!nd)
        return SIM_ENOMEM;
    x->devs = nd;
    snprintf(x->devs[x->ndevs++], SIM_NAME_MAX, "%s", id);
    return SIM_OK;
}

/* A device id or a list of them into x->devs. */
static int parse_devlist(pctx *c, yaml_node_t *v, const sim_scenario *s, sim_expect *x)
{
    if (v->type == YAML_SCALAR_NODE)
        return add_dev(c, v, s, x, scalar(v));
    if (v->type != YAML_SEQUENCE_NODE)
        return perr(c, v, "device: a device id or a list of ids");
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        yaml_node_t *n = node(c, *it);
        if (!scalar(n))
            return perr(c, n, "device: a device id or a list of ids");
        int rc = add_dev(c, n, s, x, scalar(n));
        if (rc)
            return rc;
    }
    return SIM_OK;
}

static int parse_site(pctx *c, yaml_node_t *v, yaml_node_t *sites, const sim_scenario *s,
                      sim_expect *x)
{
    if (get_str(c, v, "site", x->site, sizeof x->site))
        return SIM_EINVAL;
    yaml_node_t *members = mget(c, sites, x->site);
    if (!members)
        return perr(c, v, "site '%s' is not under sites:", x->site);
    return parse_devlist(c, members, s, x);
}

/* "holding:0", "input:3" or a bare address (holding). */
static int parse_regref(pctx *c, yaml_node_t *v, int *table, int *addr)
{
    const char *s = scalar(v);
    static const char *const tabs[] = {"coil", "discrete", "holding", "input"};
    long a;
    char *end;
    *table = SIM_TAB_HOLDING;
    if (!s)
        return perr(c, v, "register: holding:ADDR, input:ADDR or ADDR");
    const char *colon = strchr(s, ':');
    if (colon) {
        int t = -1;
        for (int i = 0; i < 4; i++)
            if ((size_t)(colon - s) == strlen(tabs[i]) && !strncmp(s, tabs[i], strlen(tabs[i])))
                t = i;
        if (t < 0)
            return perr(c, v, "register: holding:ADDR, input:ADDR, coil:ADDR or discrete:ADDR");
        *table = t;
        s = colon + 1;
    }
    errno = 0;
    a = strtol(s, &end, 0);
    if (end == s || *end || errno || a < 0 || a > 65535)
        return perr(c, v, "register: address 0..65535");
    *addr = (int)a;
    return SIM_OK;
}

static int parse_level(pctx *c, yaml_node_t *v, int *out)
{
    const char *s = scalar(v);
    long l;
    *out = sim_level_parse(s);
    if (*out)
        return SIM_OK;
    if (s && get_int(c, v, "level", 1, 4, &l) == SIM_OK) {
        *out = (int)l;
        return SIM_OK;
    }
    return perr(c, v, "level: blue, yellow, orange, red (or 1..4)");
}

static const struct {
    const char *name;
    sim_expect_kind kind;
    const char *keys[10];
} expect_kinds[] = {
    {"alarm", SIM_X_ALARM, {"device", "site", "rule", "level", "within", "of", "after", NULL}},
    {"no_alarm", SIM_X_NO_ALARM, {"device", "site", "rule", "level", "all", NULL}},
    {"no_reading_lost", SIM_X_NO_READING_LOST, {"device", "site", "all", NULL}},
    {"online", SIM_X_ONLINE, {"count", "all", "type", "prefix", "device", "site", NULL}},
    {"event", SIM_X_EVENT, {"device", "site", "event", "active", "within", "of", NULL}},
    {"no_event", SIM_X_NO_EVENT, {"device", "site", "event", NULL}},
};

static void expect_label(const sim_expect *x, const char *kname)
{
    char *l = (char *)x->label;
    size_t cap = sizeof x->label, n;
    n = (size_t)snprintf(l, cap, "%s", kname);
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (n < cap)                                                                               \
            n += (size_t)snprintf(l + n, cap - n, __VA_ARGS__);                                    \
    } while (0)
    if (x->site[0])
        ADD(" site %s", x->site);
    else if (x->ndevs == 1)
        ADD(" %s", x->devs[0]);
    else if (x->ndevs > 1)
        ADD(" %s..(%d devices)", x->devs[0], x->ndevs);
    else if (x->kind != SIM_X_ONLINE)
        ADD(" all");
    if (x->kind == SIM_X_EVENT || x->kind == SIM_X_NO_EVENT)
        ADD(" %s%s", x->event, x->ended ? " ended" : "");
    if (x->rule[0])
        ADD(" rule %s", x->rule);
    if (x->kind == SIM_X_ALARM || (x->kind == SIM_X_NO_ALARM && x->level > 1))
        ADD(" >= %s", sim_level_name(x->level));
    if (x->kind == SIM_X_ONLINE) {
        ADD(" %u devices", x->count);
        if (x->type[0])
            ADD(" type %s", x->type);
        if (x->prefix[0])
            ADD(" prefix %s", x->prefix);
    }
    if (x->within >= 0)
        ADD(" within %gs", x->within);
    if (x->has_after)
        ADD(" after %s crosses %g", x->after_metric, x->crosses);
    else if (x->of >= 0)
        ADD(" of t=%gs", x->of);
#undef ADD
}

static int parse_expect(pctx *c, yaml_node_t *item, const sim_scenario *s, yaml_node_t *sites,
                        sim_expect *x)
{
    x->line = (int)item->start_mark.line + 1;
    x->within = -1;
    x->of = -1;
    x->after_addr = -1;
    x->level = 1;
    if (item->type != YAML_MAPPING_NODE ||
        item->data.mapping.pairs.top - item->data.mapping.pairs.start != 1)
        return perr(c, item,
                    "expect: each item is one of {alarm: ...}, {no_alarm: ...}, "
                    "{no_reading_lost: ...}, {online: ...}, {event: ...}, {no_event: ...}");
    const char *kname = scalar(node(c, item->data.mapping.pairs.start->key));
    yaml_node_t *m = node(c, item->data.mapping.pairs.start->value);
    size_t ki;
    for (ki = 0; ki < sizeof expect_kinds / sizeof expect_kinds[0]; ki++)
        if (kname && !strcmp(kname, expect_kinds[ki].name))
            break;
    if (ki == sizeof expect_kinds / sizeof expect_kinds[0])
        return perr(c, item,
                    "expect: unknown kind '%s' (alarm, no_alarm, no_reading_lost, "
                    "online, event, no_event)",
                    kname ? kname : "?");
    x->kind = expect_kinds[ki].kind;
    if (only_keys(c, m, kname, expect_kinds[ki].keys))
        return SIM_EINVAL;
    int all = 0, rc;
    yaml_node_t *v;
    if ((v = mget(c, m, "device")) && mget(c, m, "site"))
        return perr(c, v, "%s: give device or site, not both", kname);
    if ((v = mget(c, m, "device")) && (rc = parse_devlist(c, v, s, x)))
        return rc;
    if ((v = mget(c, m, "site")) && (rc = parse_site(c, v, sites, s, x)))
        return rc;
    if ((v = mget(c, m, "all")) && get_bool(c, v, "all", &all))
        return SIM_EINVAL;
    if ((v = mget(c, m, "rule")) && get_str(c, v, "rule", x->rule, sizeof x->rule))
        return SIM_EINVAL;
    if ((v = mget(c, m, "level")) && parse_level(c, v, &x->level))
        return SIM_EINVAL;
    if ((v = mget(c, m, "within")) && (get_num(c, v, "within", &x->within) || x->within < 0))
        return perr(c, v, "within: a duration >= 0");
    if ((v = mget(c, m, "of")) && (get_num(c, v, "of", &x->of) || x->of < 0))
        return perr(c, v, "of: a scenario time >= 0");
    if ((v = mget(c, m, "event")) && get_str(c, v, "event", x->event, sizeof x->event))
        return SIM_EINVAL;
    if ((v = mget(c, m, "active"))) {
        int active = 1;
        if (get_bool(c, v, "active", &active))
            return SIM_EINVAL;
        x->ended = !active;
    }
    if ((v = mget(c, m, "type")) && get_str(c, v, "type", x->type, sizeof x->type))
        return SIM_EINVAL;
    if ((v = mget(c, m, "prefix")) && get_str(c, v, "prefix", x->prefix, sizeof x->prefix))
        return SIM_EINVAL;
    if ((v = mget(c, m, "after"))) {
        static const char *const after_keys[] = {"metric", "crosses", "register", NULL};
        yaml_node_t *w;
        if (only_keys(c, v, "after", after_keys))
            return SIM_EINVAL;
        if (!(w = mget(c, v, "metric")) ||
            get_str(c, w, "metric", x->after_metric, sizeof x->after_metric))
            return perr(c, w ? w : v, "after: needs metric: NAME");
        if (!(w = mget(c, v, "crosses")) || get_num(c, w, "crosses", &x->crosses))
            return perr(c, w ? w : v, "after: needs crosses: VALUE");
        if ((w = mget(c, v, "register")) && parse_regref(c, w, &x->after_table, &x->after_addr))
            return SIM_EINVAL;
        x->has_after = 1;
        if (x->ndevs == 0)
            return perr(c, v, "after: needs the alarm's device or site");
    }
    if ((x->kind == SIM_X_EVENT || x->kind == SIM_X_NO_EVENT) && !x->event[0])
        return perr(c, m, "%s: needs event: NAME (fire_alarm, ...)", kname);
    if ((x->kind == SIM_X_ALARM || x->kind == SIM_X_EVENT || x->kind == SIM_X_NO_EVENT) &&
        x->ndevs == 0)
        return perr(c, m, "%s: needs device or site", kname);
    if (x->kind == SIM_X_NO_READING_LOST && !all && x->ndevs == 0)
        return perr(c, m, "no_reading_lost: give device, site or all: true");
    if (x->kind == SIM_X_ONLINE) {
        if ((v = mget(c, m, "count"))) {
            long l;
            if (get_int(c, v, "count", 1, 100000000, &l))
                return SIM_EINVAL;
            x->count = (uint32_t)l;
        } else if (x->ndevs) {
            x->count = (uint32_t)x->ndevs;
        } else if (x->type[0]) {
            return perr(c, m, "online: with type, give count (the sim does not know types)");
        } else {
            struct prefix_count pc = {x->prefix, 0};
            each_device(s, count_prefix, &pc);
            x->count = pc.n;
            if (pc.n == 0)
                return perr(c, m, "online: no device of the scenario has prefix '%s'", x->prefix);
        }
    }
    expect_label(x, kname);
    return SIM_OK;
}

static int parse_run(pctx *c, sim_scenario *s, const run_nodes *rn)
{
    yaml_node_t *v;
    if (!rn->platform && !rn->gateway && !rn->broker && !rn->duration && !rn->speed &&
        !rn->expect && !rn->sites && !rn->metrics)
        return SIM_OK;
    sim_run_conf *rc = calloc(1, sizeof *rc);
    if (!rc)
        return SIM_ENOMEM;
    s->run = rc;
    snprintf(rc->topic_prefix, sizeof rc->topic_prefix, "iot");
    rc->duration = 300;
    if (rn->platform) {
        static const char *const keys[] = {"broker", "topic_prefix", "gateway_id", NULL};
        if (only_keys(c, rn->platform, "platform", keys))
            return SIM_EINVAL;
        if ((v = mget(c, rn->platform, "broker")) &&
            get_str(c, v, "broker", rc->broker, sizeof rc->broker))
            return SIM_EINVAL;
        if ((v = mget(c, rn->platform, "topic_prefix")) &&
            get_str(c, v, "topic_prefix", rc->topic_prefix, sizeof rc->topic_prefix))
            return SIM_EINVAL;
        if ((v = mget(c, rn->platform, "gateway_id")) &&
            get_str(c, v, "gateway_id", rc->gateway_id, sizeof rc->gateway_id))
            return SIM_EINVAL;
        if (!rc->broker[0])
            return perr(c, rn->platform, "platform: needs broker: tcp://HOST:PORT");
    }
    if (rn->gateway) {
        static const char *const keys[] = {"binary", "config", NULL};
        char cfg[512] = "";
        if (only_keys(c, rn->gateway, "gateway", keys))
            return SIM_EINVAL;
        snprintf(rc->gw_binary, sizeof rc->gw_binary, "build/gateway");
        if ((v = mget(c, rn->gateway, "binary")) &&
            get_str(c, v, "binary", rc->gw_binary, sizeof rc->gw_binary))
            return SIM_EINVAL;
        if (!(v = mget(c, rn->gateway, "config")) || get_str(c, v, "config", cfg, sizeof cfg))
            return perr(c, v ? v : rn->gateway, "gateway: needs config: FILE");
        if (cfg[0] == '/' || !c->base_dir)
            snprintf(rc->gw_config, sizeof rc->gw_config, "%s", cfg);
        else if (snprintf(rc->gw_config, sizeof rc->gw_config, "%s/%s", c->base_dir, cfg) >=
                 (int)sizeof rc->gw_config)
            return perr(c, v, "config: path too long");
    }
    if (rn->broker) {
        static const char *const keys[] = {"start", "port", NULL};
        long l;
        if (only_keys(c, rn->broker, "broker", keys))
            return SIM_EINVAL;
        if ((v = mget(c, rn->broker, "start")) && get_bool(c, v, "start", &rc->broker_start))
            return SIM_EINVAL;
        if ((v = mget(c, rn->broker, "port"))) {
            if (get_int(c, v, "port", 1, 65535, &l))
                return SIM_EINVAL;
            rc->broker_port = (uint32_t)l;
        }
    }
    if ((rc->gw_binary[0] || rc->broker_start || rn->expect) && !rc->broker[0])
        return perr(c,
                    rn->gateway  ? rn->gateway
                    : rn->broker ? rn->broker
                                 : rn->expect,
                    "sim run needs platform: {broker: tcp://HOST:PORT}");
    if (rn->duration && (get_num(c, rn->duration, "duration", &rc->duration) ||
                         !(rc->duration > 0) || rc->duration > 366 * 86400.0))
        return perr(c, rn->duration, "duration: a duration > 0 (5m)");
    if (rn->speed &&
        (get_num(c, rn->speed, "speed", &rc->speed) || !(rc->speed > 0) || rc->speed > 1e6))
        return perr(c, rn->speed, "speed: a number in (0, 1e6]");
    if (rn->sites && rn->sites->type != YAML_MAPPING_NODE)
        return perr(c, rn->sites, "sites: a mapping of site name -> device id or list");
    if (rn->metrics) {
        if (rn->metrics->type != YAML_MAPPING_NODE)
            return perr(c, rn->metrics, "metrics: a mapping of metric name -> holding:ADDR");
        int n = (int)(rn->metrics->data.mapping.pairs.top - rn->metrics->data.mapping.pairs.start);
        rc->metrics = calloc((size_t)(n ? n : 1), sizeof *rc->metrics);
        if (!rc->metrics)
            return SIM_ENOMEM;
        for (int i = 0; i < n; i++) {
            yaml_node_pair_t *pr = rn->metrics->data.mapping.pairs.start + i;
            sim_metric_map *mm = &rc->metrics[rc->nmetrics++];
            if (get_str(c, node(c, pr->key), "metrics", mm->name, sizeof mm->name) ||
                parse_regref(c, node(c, pr->value), &mm->table, &mm->addr))
                return SIM_EINVAL;
        }
    }
    if (rn->expect) {
        if (rn->expect->type != YAML_SEQUENCE_NODE)
            return perr(c, rn->expect, "expect: a list");
        int n = (int)(rn->expect->data.sequence.items.top - rn->expect->data.sequence.items.start);
        rc->expects = calloc((size_t)(n ? n : 1), sizeof *rc->expects);
        if (!rc->expects)
            return SIM_ENOMEM;
        for (int i = 0; i < n; i++) {
            rc->nexpects = i + 1;
            int r = parse_expect(c, node(c, rn->expect->data.sequence.items.start[i]), s, rn->sites,
                                 &rc->expects[i]);
            if (r)
                return r;
        }
    }
    return SIM_OK;
}

void sim_scenario_free(sim_scenario *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->ngroups; i++) {
        sim_group *g = &s->groups[i];
        for (int r = 0; r < g->nregs; r++)
            sim_curve_free(&g->regs[r].curve);
        free(g->regs);
        free(g->faults);
        sim_rtu_conf_free(g->rtu);
        sim_peer_free(g->peer);
    }
    free(s->groups);
    run_conf_free(s->run);
    free(s);
}

sim_scenario *sim_scenario_parse(const char *text, size_t len, const char *name,
                                 const char *base_dir, char *err, size_t errlen)
{
    pctx c = {.file = name, .base_dir = base_dir, .err = err, .errlen = errlen};
    yaml_parser_t parser;
    sim_scenario *s = calloc(1, sizeof *s);
    int rc = SIM_EINVAL, have_doc = 0;
    if (!s) {
        snprintf(err, errlen, "%s: out of memory", name);
        return NULL;
    }
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "%s: out of memory", name);
        free(s);
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &c.doc)) {
        snprintf(err, errlen, "%s:%lu: %s", name, (unsigned long)parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "YAML error");
        goto out;
    }
    have_doc = 1;
    yaml_node_t *root = yaml_document_get_root_node(&c.doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        perr(&c, root, "expected a mapping with name and devices");
        goto out;
    }
    yaml_node_t *devs = NULL;
    run_nodes rn = {0};
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *kn = node(&c, pr->key), *vn = node(&c, pr->value);
        const char *k = scalar(kn);
        if (k && !strcmp(k, "name")) {
            if (get_str(&c, vn, k, s->name, sizeof s->name))
                goto out;
        } else if (k && !strcmp(k, "description")) {
            continue;
        } else if (k && !strcmp(k, "devices")) {
            devs = vn;
        } else if (k && run_key(&rn, k, vn)) {
            continue; /* sim run keys: parsed once the devices are known */
        } else {
            perr(&c, kn,
                 "unknown key '%s' (name, description, devices; for sim run: platform, gateway, "
                 "broker, duration, speed, sites, metrics, expect)",
                 k ? k : "?");
            goto out;
        }
    }
    if (!devs || devs->type != YAML_SEQUENCE_NODE ||
        devs->data.sequence.items.top == devs->data.sequence.items.start) {
        perr(&c, devs ? devs : root, "devices: expected a non-empty list");
        goto out;
    }
    int n = (int)(devs->data.sequence.items.top - devs->data.sequence.items.start);
    s->groups = calloc((size_t)n, sizeof *s->groups);
    if (!s->groups) {
        snprintf(err, errlen, "%s: out of memory", name);
        goto out;
    }
    for (int i = 0; i < n; i++) {
        s->ngroups = i + 1;
        if (parse_group(&c, node(&c, devs->data.sequence.items.start[i]), &s->groups[i]))
            goto out;
        s->ndevices += s->groups[i].count;
    }
    /* Two devices on one port would fail at bind time; say so here instead. */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) {
            sim_group *a = &s->groups[i], *b = &s->groups[j];
            if (strcmp(a->host, b->host) != 0 || a->port == 0 || b->port == 0 || a->rtu ||
                b->rtu || a->kind->peer || b->kind->peer) /* no listener of their own */
                continue;
            if (a->port < b->port + b->count && b->port < a->port + a->count) {
                perr(&c, node(&c, devs->data.sequence.items.start[i]),
                     "port range %u..%u overlaps the group on line %d", a->port,
                     a->port + a->count - 1, b->line);
                goto out;
            }
        }
    if (check_buses(&c, s, devs) != SIM_OK)
        goto out;
    int prc = parse_run(&c, s, &rn);
    if (prc == SIM_ENOMEM)
        snprintf(err, errlen, "%s: out of memory", name);
    if (prc != SIM_OK)
        goto out;
    rc = SIM_OK;
out:
    if (have_doc)
        yaml_document_delete(&c.doc);
    yaml_parser_delete(&parser);
    if (rc != SIM_OK) {
        sim_scenario_free(s);
        return NULL;
    }
    return s;
}

sim_scenario *sim_scenario_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char dir[1024];
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + len, 1, cap - len, f);
        len += r;
        if (len < cap)
            break;
        if (cap >= (64u << 20)) {
            free(buf);
            buf = NULL;
            break;
        }
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    fclose(f);
    if (!buf) {
        snprintf(err, errlen, "%s: too large or out of memory", path);
        return NULL;
    }
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    sim_scenario *s = sim_scenario_parse(buf, len, path, dir, err, errlen);
    free(buf);
    return s;
}
