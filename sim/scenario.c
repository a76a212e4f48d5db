/* Scenario files: libyaml's document tree walked into sim_scenario. The keys
 * of a device group are tables: id, count, first and protocol here, the rest
 * in the scenario half of the group's kind (scn_<kind>.c, listed in `kinds`
 * below), read by one engine (sim_scn_keys, parse_group) that applies
 * defaults, checks types and ranges, and reports unknown and duplicate keys
 * with file:line and the valid choices. Curves, shared by every kind, live
 * here too. Reads the scenario and any csv file it names; no other I/O. */
#include "sim/scenario.h"

#include "sim/kind.h"
#include "sim/peer.h"
#include "sim/scn.h"
#include "sim/station.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct sim_scn {
    yaml_document_t doc;
    const char *file;
    const char *base_dir;
    char *err;
    size_t errlen;
};

int sim_scn_err(sim_scn *c, yaml_node_t *n, const char *fmt, ...)
{
    char msg[448];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "%s:%lu: %s", c->file,
             n ? (unsigned long)n->start_mark.line + 1 : 0ul, msg);
    return SIM_EINVAL;
}

const char *sim_scn_file_dir(const sim_scn *c)
{
    return c->base_dir;
}

yaml_node_t *sim_scn_node(sim_scn *c, int i)
{
    return yaml_document_get_node(&c->doc, i);
}

const char *sim_scn_scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

int sim_scn_line(const yaml_node_t *n)
{
    return n ? (int)n->start_mark.line + 1 : 0;
}

yaml_node_t *sim_scn_get(sim_scn *c, yaml_node_t *m, const char *key)
{
    if (!m || m->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++)
        if (sim_scn_scalar(sim_scn_node(c, pr->key)) &&
            !strcmp(sim_scn_scalar(sim_scn_node(c, pr->key)), key))
            return sim_scn_node(c, pr->value);
    return NULL;
}

int sim_scn_seq(sim_scn *c, yaml_node_t *n, const char *what, yaml_node_item_t **items, int *count)
{
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return sim_scn_err(c, n, "%s: expected a list", what);
    *items = n->data.sequence.items.start;
    *count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    return SIM_OK;
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

int sim_scn_num(sim_scn *c, yaml_node_t *n, const char *key, double *out)
{
    const char *s = sim_scn_scalar(n);
    if (!s || sim_parse_duration(s, out) != SIM_OK)
        return sim_scn_err(c, n, "%s: expected a number or a duration (30s, 10m)", key);
    return SIM_OK;
}

int sim_scn_int(sim_scn *c, yaml_node_t *n, const char *key, long lo, long hi, long *out)
{
    const char *s = sim_scn_scalar(n);
    char *end;
    if (!s)
        return sim_scn_err(c, n, "%s: expected an integer", key);
    errno = 0;
    long v = strtol(s, &end, 0);
    if (end == s || *end || errno || v < lo || v > hi)
        return sim_scn_err(c, n, "%s: expected an integer in %ld..%ld", key, lo, hi);
    *out = v;
    return SIM_OK;
}

int sim_scn_bool(sim_scn *c, yaml_node_t *n, const char *key, int *out)
{
    const char *s = sim_scn_scalar(n);
    if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")))
        *out = 1;
    else if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")))
        *out = 0;
    else
        return sim_scn_err(c, n, "%s: expected true or false", key);
    return SIM_OK;
}

int sim_scn_str(sim_scn *c, yaml_node_t *n, const char *key, char *out, size_t cap)
{
    const char *s = sim_scn_scalar(n);
    if (!s)
        return sim_scn_err(c, n, "%s: expected a string", key);
    if (strlen(s) >= cap)
        return sim_scn_err(c, n, "%s: longer than %zu characters", key, cap - 1);
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

static int parse_param(sim_scn *c, yaml_node_t *v, const char *key, sim_param *p)
{
    if (v->type == YAML_SEQUENCE_NODE) {
        int n = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
        if (n < 1)
            return sim_scn_err(c, v, "%s: empty list", key);
        p->v = calloc((size_t)n, sizeof(double));
        if (!p->v)
            return SIM_ENOMEM;
        p->n = n;
        for (int i = 0; i < n; i++)
            if (sim_scn_num(c, sim_scn_node(c, v->data.sequence.items.start[i]), key, &p->v[i]))
                return SIM_EINVAL;
        return SIM_OK;
    }
    p->v = calloc(1, sizeof(double));
    if (!p->v)
        return SIM_ENOMEM;
    p->n = 1;
    return sim_scn_num(c, v, key, &p->v[0]);
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

static int load_csv(sim_scn *c, yaml_node_t *at, sim_curve *cv, const char *file,
                    const char *column, long time_col)
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
        return sim_scn_err(c, at, "csv: cannot open %s: %s", path, strerror(errno));
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
            rc = sim_scn_err(c, at, "csv %s:%d: bad time", path, lineno);
            break;
        }
        if (col < 0) {
            rc = sim_scn_err(c, at, "csv %s: no column named '%s'", path, column);
            break;
        }
        if (col >= n || sim_parse_duration(f[col], &v) != SIM_OK) {
            rc = sim_scn_err(c, at, "csv %s:%d: bad value in column %d", path, lineno, col + 1);
            break;
        }
        if (cv->npoints && t < cv->pt_t[cv->npoints - 1]) {
            rc = sim_scn_err(c, at, "csv %s:%d: times must not decrease", path, lineno);
            break;
        }
        if ((rc = add_point(cv, &cap, t, v)) != SIM_OK)
            break;
    }
    fclose(fp);
    if (rc == SIM_OK && cv->npoints == 0)
        rc = sim_scn_err(c, at, "csv %s: no data rows", path);
    return rc;
}

static int parse_curve(sim_scn *c, yaml_node_t *m, sim_curve *cv)
{
    yaml_node_pair_t *pr;
    const char *type = NULL;
    yaml_node_t *pts = NULL;
    char file[512] = "", column[64] = "";
    long time_col = 1;
    int loop = 0;
    uint32_t allowed = 0;
    if (m->type != YAML_MAPPING_NODE)
        return sim_scn_err(c, m, "curve: expected a mapping");
    for (pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++)
        if (!strcmp(sim_scn_scalar(sim_scn_node(c, pr->key))
                        ? sim_scn_scalar(sim_scn_node(c, pr->key))
                        : "",
                    "type"))
            type = sim_scn_scalar(sim_scn_node(c, pr->value));
    if (!type)
        return sim_scn_err(c, m, "curve: missing type");
    size_t ti;
    for (ti = 0; ti < sizeof curve_types / sizeof curve_types[0]; ti++)
        if (!strcmp(type, curve_types[ti].name))
            break;
    if (ti == sizeof curve_types / sizeof curve_types[0])
        return sim_scn_err(
            c, m,
            "curve: unknown type '%s' (constant, ramp, sine, random_walk, storm, points, csv)",
            type);
    cv->kind = curve_types[ti].kind;
    allowed = curve_types[ti].params | B(SIM_P_REPEAT);
    int is_csv = !strcmp(type, "csv");
    for (pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = sim_scn_node(c, pr->key), *vn = sim_scn_node(c, pr->value);
        const char *k = sim_scn_scalar(kn);
        if (!k)
            return sim_scn_err(c, kn, "curve: keys must be strings");
        if (!strcmp(k, "type"))
            continue;
        if (cv->kind == SIM_C_POINTS && !strcmp(k, "loop")) {
            if (sim_scn_bool(c, vn, k, &loop))
                return SIM_EINVAL;
            continue;
        }
        if (!is_csv && cv->kind == SIM_C_POINTS && !strcmp(k, "points")) {
            pts = vn;
            continue;
        }
        if (is_csv && !strcmp(k, "file")) {
            if (sim_scn_str(c, vn, k, file, sizeof file))
                return SIM_EINVAL;
            continue;
        }
        if (is_csv && !strcmp(k, "column")) {
            if (sim_scn_str(c, vn, k, column, sizeof column))
                return SIM_EINVAL;
            continue;
        }
        if (is_csv && !strcmp(k, "time_column")) {
            if (sim_scn_int(c, vn, k, 1, 64, &time_col))
                return SIM_EINVAL;
            continue;
        }
        size_t pi;
        for (pi = 0; pi < sizeof param_keys / sizeof param_keys[0]; pi++)
            if (!strcmp(k, param_keys[pi].key))
                break;
        if (pi == sizeof param_keys / sizeof param_keys[0] || !(allowed & B(param_keys[pi].id)))
            return sim_scn_err(c, kn, "curve %s: unknown key '%s'", type, k);
        if (cv->p[param_keys[pi].id].n)
            return sim_scn_err(c, kn, "curve %s: duplicate key '%s'", type, k);
        int rc = parse_param(c, vn, k, &cv->p[param_keys[pi].id]);
        if (rc)
            return rc;
    }
    if (cv->kind == SIM_C_POINTS) {
        int cap = 0, rc;
        if (is_csv) {
            if (!file[0] || !column[0])
                return sim_scn_err(c, m, "curve csv: needs file and column");
            if ((rc = load_csv(c, m, cv, file, column, time_col)))
                return rc;
        } else {
            if (!pts || pts->type != YAML_SEQUENCE_NODE)
                return sim_scn_err(c, m, "curve points: needs points: [[t, value], ...]");
            for (yaml_node_item_t *it = pts->data.sequence.items.start;
                 it < pts->data.sequence.items.top; it++) {
                yaml_node_t *pn = sim_scn_node(c, *it);
                double t, v;
                if (pn->type != YAML_SEQUENCE_NODE ||
                    pn->data.sequence.items.top - pn->data.sequence.items.start != 2)
                    return sim_scn_err(c, pn, "points: each point is [t, value]");
                if (sim_scn_num(c, sim_scn_node(c, pn->data.sequence.items.start[0]), "points t",
                                &t) ||
                    sim_scn_num(c, sim_scn_node(c, pn->data.sequence.items.start[1]),
                                "points value", &v))
                    return SIM_EINVAL;
                if (cv->npoints && t < cv->pt_t[cv->npoints - 1])
                    return sim_scn_err(c, pn, "points: times must not decrease");
                if ((rc = add_point(cv, &cap, t, v)))
                    return rc;
            }
            if (cv->npoints == 0)
                return sim_scn_err(c, pts, "points: empty");
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

int sim_scn_curve(sim_scn *c, yaml_node_t *n, const char *key, sim_curve *cv)
{
    if (cv->kind != SIM_C_NONE)
        return sim_scn_err(c, n, "%s: the curve is already given (give one of value and curve)",
                           key);
    if (n->type == YAML_MAPPING_NODE)
        return parse_curve(c, n, cv);
    cv->kind = SIM_C_CONSTANT;
    return parse_param(c, n, key, &cv->p[SIM_P_VALUE]);
}

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

/* ---- hex bytes ---- */

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

int sim_scn_hex(const char *s, uint8_t *out, size_t cap)
{
    return hex_parse(s, out, cap);
}

/* ---- the key tables ---- */

int sim_scn_choice(const sim_key_choice *choices, const char *s)
{
    for (int i = 0; s && choices[i].name; i++)
        if (!strcmp(s, choices[i].name))
            return i;
    return -1;
}

/* "a, b or c" into out. */
static void choice_list(const sim_key_choice *choices, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    for (int i = 0; choices[i].name && n < cap; i++)
        n += (size_t)snprintf(out + n, cap - n, "%s%s",
                              i == 0                 ? ""
                              : !choices[i + 1].name ? " or "
                                                     : ", ",
                              choices[i].name);
}

static int row_applies(const sim_key *k, uint32_t variant)
{
    return !k->only || (k->only & variant);
}

static const sim_key *find_row(const sim_key *keys, const char *name, uint32_t variant)
{
    for (const sim_key *k = keys; k->type != SIM_K_END; k++)
        if (!strcmp(k->name, name) && row_applies(k, variant))
            return k;
    return NULL;
}

/* Appends the names of the rows that apply to out ("a, b, c"). */
static size_t key_list(const sim_key *keys, uint32_t variant, char *out, size_t n, size_t cap)
{
    for (const sim_key *k = keys; k->type != SIM_K_END && n < cap; k++)
        if (k->type != SIM_K_UNUSED && row_applies(k, variant))
            n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? ", " : "", k->name);
    return n < cap ? n : cap;
}

static void put_int(void *p, size_t size, long v)
{
    switch (size) {
    case 1:
        *(uint8_t *)p = (uint8_t)v;
        break;
    case 2:
        *(uint16_t *)p = (uint16_t)v;
        break;
    case 8:
        *(int64_t *)p = (int64_t)v;
        break;
    default:
        *(int32_t *)p = (int32_t)v;
        break;
    }
}

/* Sets a scalar row from text s (a value of the file at node at, or a default:
 * at NULL). */
static int row_set(sim_scn *c, const sim_key *k, void *conf, const char *s, yaml_node_t *at)
{
    void *p = (char *)conf + k->off;
    char list[256];
    long l;
    double d;
    int b;
    switch (k->type) {
    case SIM_K_STR:
        if (!s)
            return sim_scn_err(c, at, "%s: expected a string", k->name);
        if (strlen(s) >= k->size)
            return sim_scn_err(c, at, "%s: longer than %zu characters", k->name, k->size - 1);
        memcpy(p, s, strlen(s) + 1);
        return SIM_OK;
    case SIM_K_INT: {
        char *end;
        if (!s)
            return sim_scn_err(c, at, "%s: expected an integer", k->name);
        errno = 0;
        l = strtol(s, &end, 0);
        if (end == s || *end || errno || l < (long)k->min || l > (long)k->max)
            return sim_scn_err(c, at, "%s: expected an integer in %ld..%ld", k->name, (long)k->min,
                               (long)k->max);
        put_int(p, k->size, l);
        return SIM_OK;
    }
    case SIM_K_NUM:
        if (!s || sim_parse_duration(s, &d) != SIM_OK) {
            if (k->range)
                return sim_scn_err(c, at, "%s: %s", k->name, k->range);
            return sim_scn_err(c, at, "%s: expected a number or a duration (30s, 10m)", k->name);
        }
        if (k->range && !(d >= k->min && d <= k->max))
            return sim_scn_err(c, at, "%s: %s", k->name, k->range);
        *(double *)p = d;
        return SIM_OK;
    case SIM_K_BOOL:
        if (s && (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")))
            b = 1;
        else if (s && (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")))
            b = 0;
        else
            return sim_scn_err(c, at, "%s: expected true or false", k->name);
        *(int *)p = b;
        return SIM_OK;
    case SIM_K_ENUM:
        if ((b = sim_scn_choice(k->choices, s)) < 0) {
            choice_list(k->choices, list, sizeof list);
            return sim_scn_err(c, at, "%s: %s", k->name, list);
        }
        *(int *)p = k->choices[b].value;
        return SIM_OK;
    default:
        return SIM_OK;
    }
}

/* Every row's default, whatever the variant: a default a variant does not use
 * is harmless. */
static int apply_defaults(sim_scn *c, const sim_key *keys, void *conf, yaml_node_t *at)
{
    for (const sim_key *k = keys; k->type != SIM_K_END; k++) {
        int rc;
        if (k->dflt && (rc = row_set(c, k, conf, k->dflt, at)))
            return rc;
    }
    return SIM_OK;
}

/* Parses one key of a row: typed rows here, SIM_K_HOOK rows by hook. */
static int row_parse(sim_scn *c, const sim_key *k, void *conf, yaml_node_t *kn, yaml_node_t *vn,
                     sim_key_hook hook, void *arg)
{
    if (k->type == SIM_K_CURVE)
        return sim_scn_curve(c, vn, k->name, (sim_curve *)((char *)conf + k->off));
    if (k->type == SIM_K_HOOK) {
        int rc = hook ? hook(c, arg, k, kn, vn) : 0;
        return rc < 0 ? rc : SIM_OK;
    }
    return row_set(c, k, conf, sim_scn_scalar(vn), vn);
}

/* The key node of pair i of m, and an error if it is not a string or repeats
 * an earlier key. */
static int pair_key(sim_scn *c, yaml_node_t *m, yaml_node_pair_t *pr, const char *what,
                    const char **out)
{
    yaml_node_t *kn = sim_scn_node(c, pr->key);
    const char *k = sim_scn_scalar(kn);
    if (!k)
        return sim_scn_err(c, kn, "%s: keys must be strings", what);
    for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < pr; q++) {
        const char *o = sim_scn_scalar(sim_scn_node(c, q->key));
        if (o && !strcmp(o, k))
            return sim_scn_err(c, kn, "%s: duplicate key '%s' (first on line %d)", what, k,
                               sim_scn_line(sim_scn_node(c, q->key)));
    }
    *out = k;
    return SIM_OK;
}

int sim_scn_keys(sim_scn *c, yaml_node_t *m, const char *what, const sim_key *keys, void *conf,
                 uint32_t variant, sim_key_hook hook, void *arg)
{
    int rc;
    if (!m || m->type != YAML_MAPPING_NODE)
        return sim_scn_err(c, m, "%s: expected a mapping", what);
    if ((rc = apply_defaults(c, keys, conf, m)))
        return rc;
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        const char *name;
        if ((rc = pair_key(c, m, pr, what, &name)))
            return rc;
        const sim_key *k = find_row(keys, name, variant);
        if (!k || k->type == SIM_K_UNUSED) {
            char list[300];
            key_list(keys, variant, list, 0, sizeof list);
            return sim_scn_err(c, sim_scn_node(c, pr->key), "%s: unknown key '%s' (%s)", what, name,
                               list);
        }
        if ((rc = row_parse(c, k, conf, sim_scn_node(c, pr->key), sim_scn_node(c, pr->value), hook,
                            arg)))
            return rc;
    }
    return SIM_OK;
}

int sim_scn_list(sim_scn *c, yaml_node_t *seq, const char *expected, size_t item_size, void **out,
                 int *n, sim_scn_item_fn fn, void *arg)
{
    *out = NULL;
    *n = 0;
    if (!seq || seq->type != YAML_SEQUENCE_NODE)
        return sim_scn_err(c, seq, "%s", expected);
    int count = (int)(seq->data.sequence.items.top - seq->data.sequence.items.start);
    char *items = calloc((size_t)(count ? count : 1), item_size);
    *out = items;
    if (!items)
        return SIM_ENOMEM;
    for (int i = 0; i < count; i++) {
        *n = i + 1;
        int rc = fn(c, sim_scn_node(c, seq->data.sequence.items.start[i]),
                    items + (size_t)i * item_size, i, arg);
        if (rc)
            return rc;
    }
    return SIM_OK;
}

int sim_scn_typed(sim_scn *c, yaml_node_t *m, const char *what, const sim_key_choice *variants,
                  const sim_key *keys, void *conf, sim_key_hook hook, void *arg)
{
    char name[64], list[256];
    if (m->type != YAML_MAPPING_NODE)
        return sim_scn_err(c, m, "%s: expected a mapping", what);
    const char *type = sim_scn_scalar(sim_scn_get(c, m, "type"));
    if (!type)
        return sim_scn_err(c, m, "%s: missing type", what);
    int t = sim_scn_choice(variants, type);
    if (t < 0) {
        size_t n = 0;
        for (int i = 0; variants[i].name && n < sizeof list; i++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "",
                                  variants[i].name);
        return sim_scn_err(c, m, "%s: unknown type '%s' (%s)", what, type, list);
    }
    snprintf(name, sizeof name, "%s %s", what, type);
    return sim_scn_keys(c, m, name, keys, conf, 1u << variants[t].value, hook, arg);
}

int sim_scn_first_line(sim_scn *c, yaml_node_t *m, const sim_key *keys, const char *except)
{
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        const char *k = sim_scn_scalar(sim_scn_node(c, pr->key));
        if (k && (!except || strcmp(k, except)) && find_row(keys, k, ~0u))
            return sim_scn_line(sim_scn_node(c, pr->key));
    }
    return 0;
}

/* ---- device groups ---- */

/* The kinds a scenario may name: the scenario half of each (scn_<kind>.c); the
 * runtime half is the sim_kind of the same name (kinds.c). */
static const sim_scn_kind *const kinds[] = {
    &sim_scn_modbus_tcp, &sim_scn_modbus_rtu, &sim_scn_modbus_dtu, &sim_scn_sl651,
    &sim_scn_hj212,      &sim_scn_coap_smoke, &sim_scn_mqtt_gauge, &sim_scn_coap_cover,
};
#define NKINDS (sizeof kinds / sizeof kinds[0])

/* Keys of every group. */
static const sim_key group_keys[] = {
    SIM_KEY_STR("id", sim_group, id_tmpl, NULL, "id template: {n}, {n:03} (zero-padded), {n:5}"),
    SIM_KEY_INT("first", sim_group, first, 0, 100000000, "1", "n of the first device"),
    SIM_KEY_INT("count", sim_group, count, 1, 100000, "1", "devices in the group"),
    SIM_KEY_STR("protocol", sim_group, protocol, "modbus-tcp", "the device kind"),
    {.type = SIM_K_END},
};
static const sim_keytab group_tab = {NULL, group_keys};

static const sim_scn_kind *kind_find(const char *name)
{
    for (size_t i = 0; i < NKINDS; i++)
        if (!strcmp(kinds[i]->name, name))
            return kinds[i];
    return NULL;
}

/* The tables of kind sk, the group's own first; NULL-ended. */
static int kind_tabs(const sim_scn_kind *sk, const sim_keytab **out)
{
    int n = 0;
    out[n++] = &group_tab;
    for (int i = 0; i < 4 && sk->tabs[i]; i++)
        out[n++] = sk->tabs[i];
    out[n] = NULL;
    return n;
}

int sim_scn_kind_has(const char *kind, const char *k)
{
    const sim_scn_kind *sk = kind_find(kind);
    for (int i = 0; sk && i < 4 && sk->tabs[i]; i++) {
        const sim_key *row = find_row(sk->tabs[i]->keys, k, ~0u);
        if (row && row->type != SIM_K_UNUSED)
            return 1;
    }
    return 0;
}

/* A key the group's kind does not have: say which kinds have it, or list the
 * kind's keys. */
static int key_unknown(sim_scn *c, yaml_node_t *kn, const sim_group *g,
                       const sim_keytab *const *tabs)
{
    const char *k = sim_scn_scalar(kn);
    char list[320];
    size_t n = 0;
    int nk = 0;
    list[0] = 0;
    for (size_t i = 0; i < NKINDS; i++)
        if (sim_scn_kind_has(kinds[i]->name, k))
            nk++;
    for (size_t i = 0, seen = 0; nk && i < NKINDS && n < sizeof list; i++)
        if (sim_scn_kind_has(kinds[i]->name, k)) {
            seen++;
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s",
                                  seen == 1         ? ""
                                  : (int)seen == nk ? " and "
                                                    : ", ",
                                  kinds[i]->name);
        }
    if (nk)
        return sim_scn_err(c, kn, "%s: not a key of %s (it is for %s)", k, g->protocol, list);
    for (int t = 0; tabs[t]; t++)
        n = key_list(tabs[t]->keys, ~0u, list, n, sizeof list);
    return sim_scn_err(c, kn, "device group: unknown key '%s' (%s keys: %s)", k, g->protocol, list);
}

static int parse_group(sim_scn *c, yaml_node_t *m, sim_group *g)
{
    const sim_keytab *tabs[6];
    void *conf[6];
    int rc, ntabs;
    g->unit = 1;
    g->line = sim_scn_line(m);
    if (m->type != YAML_MAPPING_NODE)
        return sim_scn_err(c, m, "device group: expected a mapping");
    if ((rc = apply_defaults(c, group_keys, g, m)))
        return rc;
    /* The protocol decides which tables the other keys are read against. */
    const sim_key *prow = find_row(group_keys, "protocol", ~0u);
    yaml_node_t *pn = sim_scn_get(c, m, "protocol");
    if (pn && (rc = row_set(c, prow, g, sim_scn_scalar(pn), pn)))
        return rc;
    const sim_scn_kind *sk = kind_find(g->protocol);
    g->kind = sim_kind_find(g->protocol);
    if (!sk || !g->kind) {
        char list[256];
        size_t n = 0;
        for (size_t i = 0; i < NKINDS && n < sizeof list; i++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", kinds[i]->name);
        return sim_scn_err(c, pn ? pn : m, "protocol: unknown '%s' (%s)", g->protocol, list);
    }
    if (sk->init && (rc = sk->init(c, g)))
        return rc;
    ntabs = kind_tabs(sk, tabs);
    for (int t = 0; t < ntabs; t++) {
        conf[t] = tabs[t]->conf ? tabs[t]->conf(g) : g;
        if (t && (rc = apply_defaults(c, tabs[t]->keys, conf[t], m)))
            return rc;
    }
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        yaml_node_t *kn = sim_scn_node(c, pr->key), *vn = sim_scn_node(c, pr->value);
        const char *name;
        const sim_key *k = NULL;
        int t;
        if ((rc = pair_key(c, m, pr, "device group", &name)))
            return rc;
        for (t = 0; t < ntabs && !k; t++)
            k = find_row(tabs[t]->keys, name, ~0u);
        t--;
        if (k && k->type == SIM_K_UNUSED)
            return sim_scn_err(c, kn, "%s: not used by %s (%s)", name, g->protocol, k->what);
        if (k && k->type == SIM_K_HOOK) {
            if (sk->parse_key && (rc = sk->parse_key(c, g, k, kn, vn)) < 0)
                return rc;
        } else if (k) {
            if (k != prow && (rc = row_parse(c, k, conf[t], kn, vn, NULL, NULL)))
                return rc;
        } else {
            rc = sk->parse_key ? sk->parse_key(c, g, NULL, kn, vn) : 0;
            if (rc < 0)
                return rc;
            if (rc == 0)
                return key_unknown(c, kn, g, tabs);
        }
    }
    if (!g->id_tmpl[0])
        return sim_scn_err(c, m, "device group: missing id");
    char probe[128];
    if (sim_format_id(g->id_tmpl, g->first + g->count - 1, probe, 64))
        return sim_scn_err(c, m, "id: bad template '%s' (use {n} or {n:03})", g->id_tmpl);
    if (g->count > 1 && !strstr(g->id_tmpl, "{n"))
        return sim_scn_err(c, m, "id: a group of %u devices needs {n} in its id", g->count);
    return sk->finish ? sk->finish(c, g, m) : SIM_OK;
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
    sim_scn_run_free(s->run);
    free(s);
}

sim_scenario *sim_scenario_parse(const char *text, size_t len, const char *name,
                                 const char *base_dir, char *err, size_t errlen)
{
    sim_scn c = {.file = name, .base_dir = base_dir, .err = err, .errlen = errlen};
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
        sim_scn_err(&c, root, "expected a mapping with name and devices");
        goto out;
    }
    yaml_node_t *devs = NULL;
    sim_scn_run_nodes rn = {0};
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *kn = sim_scn_node(&c, pr->key), *vn = sim_scn_node(&c, pr->value);
        const char *k = sim_scn_scalar(kn);
        if (k && !strcmp(k, "name")) {
            if (sim_scn_str(&c, vn, k, s->name, sizeof s->name))
                goto out;
        } else if (k && !strcmp(k, "description")) {
            continue;
        } else if (k && !strcmp(k, "devices")) {
            devs = vn;
        } else if (k && sim_scn_run_key(&rn, k, vn)) {
            continue; /* sim run keys: parsed once the devices are known */
        } else {
            sim_scn_err(
                &c, kn,
                "unknown key '%s' (name, description, devices; for sim run: platform, gateway, "
                "broker, duration, speed, sites, metrics, expect)",
                k ? k : "?");
            goto out;
        }
    }
    if (!devs || devs->type != YAML_SEQUENCE_NODE ||
        devs->data.sequence.items.top == devs->data.sequence.items.start) {
        sim_scn_err(&c, devs ? devs : root, "devices: expected a non-empty list");
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
        if (parse_group(&c, sim_scn_node(&c, devs->data.sequence.items.start[i]), &s->groups[i]))
            goto out;
        s->ndevices += s->groups[i].count;
    }
    for (size_t i = 0; i < NKINDS; i++)
        if (kinds[i]->check && kinds[i]->check(&c, s, devs) != SIM_OK)
            goto out;
    int prc = sim_scn_run_parse(&c, s, &rn);
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

static int kept_port(const sim_group *g, const uint32_t *keep, int nkeep)
{
    for (int i = 0; g->kind && g->kind->peer && g->port && i < nkeep; i++)
        if (keep[i] && g->port == keep[i])
            return 1;
    return 0;
}

int sim_scenario_move_ports(sim_scenario *s, uint32_t base, const uint32_t *keep, int nkeep,
                            sim_port_map *map, int *nmap, int cap, char *err, size_t errlen)
{
    uint32_t lo = 65535;
    for (int i = 0; i < s->ngroups; i++) {
        const sim_group *g = &s->groups[i];
        uint32_t p = g->rtu ? g->rtu->port : g->port;
        if (p && p < lo && !kept_port(g, keep, nkeep))
            lo = p;
    }
    for (int i = 0; i < s->ngroups; i++) {
        sim_group *g = &s->groups[i];
        uint32_t *pp = g->rtu ? &g->rtu->port : &g->port;
        uint32_t count = g->rtu || (g->kind && g->kind->peer) ? 1 : g->count;
        if (!*pp || kept_port(g, keep, nkeep))
            continue;
        uint32_t np = base + (*pp - lo);
        if (np + count - 1 > 65535) {
            snprintf(err, errlen, "--base-port %u moves group on line %d past 65535", base,
                     g->line);
            return SIM_EINVAL;
        }
        if (*nmap < cap)
            map[(*nmap)++] = (sim_port_map){*pp, np, count};
        *pp = np;
    }
    return SIM_OK;
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
