#include "base/cfgmap.h"

#include "base/model.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int gw_parse_int(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 0);
    if (errno || end == s || *end != '\0')
        return GW_EINVAL;
    *out = v;
    return GW_OK;
}

int gw_parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v))
        return GW_EINVAL;
    *out = v;
    return GW_OK;
}

int gw_parse_bool(const char *s, int *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) {
        *out = 1;
        return GW_OK;
    }
    if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) {
        *out = 0;
        return GW_OK;
    }
    return GW_EINVAL;
}

/* Splits "12.5ms" into a number and a suffix. */
static int num_suffix(const char *s, double *v, const char **suffix)
{
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    if (errno || end == s || !isfinite(*v) || *v < 0)
        return GW_EINVAL;
    while (*end == ' ')
        end++;
    *suffix = end;
    return GW_OK;
}

int gw_parse_duration_ms(const char *s, int64_t *out)
{
    static const struct {
        const char *u;
        double ms;
    } units[] = {{"", 1000},     {"ms", 1},      {"s", 1000},    {"m", 60000},
                 {"min", 60000}, {"h", 3600000}, {"d", 86400000}};
    double v;
    const char *suf;
    if (num_suffix(s, &v, &suf))
        return GW_EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(suf, units[i].u) == 0) {
            double ms = v * units[i].ms;
            if (ms > 9.0e15)
                return GW_EINVAL;
            *out = (int64_t)llround(ms);
            return GW_OK;
        }
    }
    return GW_EINVAL;
}

int gw_parse_size(const char *s, int64_t *out)
{
    static const struct {
        const char *u;
        double m;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"KiB", 1024.0},
                 {"MiB", 1048576.0},
                 {"GiB", 1073741824.0},
                 {"KB", 1e3},
                 {"MB", 1e6},
                 {"GB", 1e9},
                 {"k", 1024.0},
                 {"M", 1048576.0},
                 {"G", 1073741824.0}};
    double v;
    const char *suf;
    if (num_suffix(s, &v, &suf))
        return GW_EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(suf, units[i].u) == 0) {
            double b = v * units[i].m;
            if (b > 9.0e15)
                return GW_EINVAL;
            *out = (int64_t)llround(b);
            return GW_OK;
        }
    }
    return GW_EINVAL;
}

static const char *type_name(gw_ctype t)
{
    switch (t) {
    case GW_CT_STR:
        return "a string";
    case GW_CT_INT:
        return "an integer";
    case GW_CT_DOUBLE:
        return "a number";
    case GW_CT_BOOL:
        return "true or false";
    case GW_CT_DURATION:
        return "a duration (e.g. 500ms, 5s, 2m)";
    case GW_CT_SIZE:
        return "a size (e.g. 512KiB, 64MiB)";
    case GW_CT_ENUM:
        return "one of the listed names";
    default:
        return "a mapping or list";
    }
}

static int set_value(const gw_cfgkey *k, const char *text, const gw_ynode *node, void *out,
                     const char *path, char *err, size_t errlen)
{
    char *dst = (char *)out + k->offset;
    const char *file = node ? node->file : "<default>";
    int line = node ? node->line : 0;
    double num = 0;
    int have_num = 0;

    if (node && node->type != GW_Y_SCALAR && k->type != GW_CT_NODE) {
        snprintf(err, errlen, "%s:%d: key '%s%s%s' must be %s", file, line, path, *path ? "." : "",
                 k->key, type_name(k->type));
        return GW_EINVAL;
    }
    switch (k->type) {
    case GW_CT_STR:
        if (strlen(text) >= k->size) {
            snprintf(err, errlen, "%s:%d: key '%s%s%s' is longer than %zu characters", file, line,
                     path, *path ? "." : "", k->key, k->size - 1);
            return GW_EINVAL;
        }
        memcpy(dst, text, strlen(text) + 1);
        return GW_OK;
    case GW_CT_INT: {
        int64_t v;
        if (gw_parse_int(text, &v) || (node && node->quoted))
            goto bad_type;
        *(int64_t *)dst = v;
        num = (double)v;
        have_num = 1;
        break;
    }
    case GW_CT_DOUBLE: {
        double v;
        if (gw_parse_double(text, &v) || (node && node->quoted))
            goto bad_type;
        *(double *)dst = v;
        num = v;
        have_num = 1;
        break;
    }
    case GW_CT_BOOL: {
        int v;
        if (gw_parse_bool(text, &v) || (node && node->quoted))
            goto bad_type;
        *(int *)dst = v;
        return GW_OK;
    }
    case GW_CT_DURATION:
    case GW_CT_SIZE: {
        int64_t v;
        int rc =
            k->type == GW_CT_DURATION ? gw_parse_duration_ms(text, &v) : gw_parse_size(text, &v);
        if (rc)
            goto bad_type;
        *(int64_t *)dst = v;
        num = k->type == GW_CT_DURATION ? (double)v / 1000.0 : (double)v;
        have_num = 1;
        break;
    }
    case GW_CT_ENUM:
        for (int i = 0; k->names[i]; i++) {
            if (strcmp(k->names[i], text) == 0) {
                *(int *)dst = i;
                return GW_OK;
            }
        }
        {
            char list[256] = "";
            for (int i = 0; k->names[i]; i++) {
                strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
                strncat(list, k->names[i], sizeof(list) - strlen(list) - 1);
            }
            snprintf(err, errlen, "%s:%d: key '%s%s%s' must be one of: %s (got '%s')", file, line,
                     path, *path ? "." : "", k->key, list, text);
        }
        return GW_EINVAL;
    case GW_CT_NODE:
        *(const gw_ynode **)dst = node;
        return GW_OK;
    }
    if (have_num && k->min <= k->max && (num < k->min || num > k->max)) {
        const char *u = k->type == GW_CT_DURATION ? " s" : k->type == GW_CT_SIZE ? " bytes" : "";
        snprintf(err, errlen, "%s:%d: key '%s%s%s' must be between %g%s and %g%s (got %s)", file,
                 line, path, *path ? "." : "", k->key, k->min, u, k->max, u, text);
        return GW_EINVAL;
    }
    return GW_OK;
bad_type:
    snprintf(err, errlen, "%s:%d: key '%s%s%s' must be %s (got '%s')", file, line, path,
             *path ? "." : "", k->key, type_name(k->type), text);
    return GW_EINVAL;
}

static int in_table(const gw_cfgkey *tab, const char *key)
{
    for (const gw_cfgkey *k = tab; k && k->key; k++)
        if (strcmp(k->key, key) == 0)
            return 1;
    return 0;
}

int gw_cfg_apply(const gw_cfgkey *tab, const gw_ynode *map, void *out, const char *path, char *err,
                 size_t errlen)
{
    return gw_cfg_apply_ex(tab, NULL, map, out, path, err, errlen);
}

int gw_cfg_apply_ex(const gw_cfgkey *tab, const gw_cfgkey *ignore, const gw_ynode *map, void *out,
                    const char *path, char *err, size_t errlen)
{
    if (map && map->type != GW_Y_MAP) {
        snprintf(err, errlen, "%s:%d: '%s' must be a mapping of keys", map->file, map->line,
                 *path ? path : "(top level)");
        return GW_EINVAL;
    }
    for (const gw_cfgkey *k = tab; k->key; k++) {
        if (k->type == GW_CT_NODE) {
            *(const gw_ynode **)((char *)out + k->offset) = NULL;
            continue;
        }
        if (k->def && set_value(k, k->def, NULL, out, path, err, errlen))
            return GW_EINVAL;
    }
    if (!map) {
        for (const gw_cfgkey *k = tab; k->key; k++) {
            if (k->flags & GW_CF_REQUIRED) {
                snprintf(err, errlen, "missing required key '%s%s%s'", path, *path ? "." : "",
                         k->key);
                return GW_EINVAL;
            }
        }
        return GW_OK;
    }
    for (size_t i = 0; i < map->n; i++) {
        const gw_cfgkey *k = tab;
        while (k->key && strcmp(k->key, map->keys[i]) != 0)
            k++;
        if (!k->key && in_table(ignore, map->keys[i]))
            continue;
        if (!k->key) {
            snprintf(err, errlen, "%s:%d: unknown key '%s%s%s'", map->file, map->key_lines[i], path,
                     *path ? "." : "", map->keys[i]);
            return GW_EINVAL;
        }
        const gw_ynode *v = map->kids[i];
        if (set_value(k, v->type == GW_Y_SCALAR ? v->str : "", v, out, path, err, errlen))
            return GW_EINVAL;
    }
    for (const gw_cfgkey *k = tab; k->key; k++) {
        if ((k->flags & GW_CF_REQUIRED) && !gw_ymap_get(map, k->key)) {
            snprintf(err, errlen, "%s:%d: missing required key '%s%s%s'", map->file, map->line,
                     path, *path ? "." : "", k->key);
            return GW_EINVAL;
        }
    }
    return GW_OK;
}

int gw_cfg_equal(const gw_cfgkey *tab, const void *a, const void *b)
{
    const char *x = a, *y = b;
    for (const gw_cfgkey *k = tab; k && k->key; k++) {
        const char *p = x + k->offset, *q = y + k->offset;
        switch (k->type) {
        case GW_CT_STR:
            if (strncmp(p, q, k->size))
                return 0;
            break;
        case GW_CT_INT:
        case GW_CT_DURATION:
        case GW_CT_SIZE:
            if (*(const int64_t *)(const void *)p != *(const int64_t *)(const void *)q)
                return 0;
            break;
        case GW_CT_DOUBLE:
            if (*(const double *)(const void *)p != *(const double *)(const void *)q)
                return 0;
            break;
        case GW_CT_BOOL:
        case GW_CT_ENUM:
            if (*(const int *)(const void *)p != *(const int *)(const void *)q)
                return 0;
            break;
        case GW_CT_NODE:
            if (*(const void *const *)(const void *)p || *(const void *const *)(const void *)q)
                return 0;
            break;
        }
    }
    return 1;
}

int gw_cfg_flag_list(const gw_ynode *n, const char *key, const char *const *names, const int *bits,
                     char *err, size_t errlen)
{
    char choices[256] = "";
    for (size_t j = 0; names[j]; j++)
        snprintf(choices + strlen(choices), sizeof(choices) - strlen(choices), "%s%s",
                 j ? ", " : "", names[j]);
    if (!n)
        return 0;
    if (n->type != GW_Y_SEQ) {
        snprintf(err, errlen, "key '%s' must be a list of: %s", key, choices);
        return -1;
    }
    int q = 0;
    for (size_t i = 0; i < n->n; i++) {
        const char *k = n->kids[i]->type == GW_Y_SCALAR ? n->kids[i]->str : NULL;
        size_t j = 0;
        while (names[j] && !(k && !strcmp(k, names[j])))
            j++;
        if (!names[j]) {
            snprintf(err, errlen, "%s[%zu] '%s' is not one of: %s", key, i, k ? k : "?", choices);
            return -1;
        }
        q |= bits[j];
    }
    return q;
}
