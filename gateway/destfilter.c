/* See destfilter.h. A small bounded scanner, not a JSON parser: it finds the
 * extent of each value (strings with escapes, nested objects and arrays) and
 * compares top-level string fields byte for byte. */
#include "gateway/destfilter.h"

#include <string.h>

/* The end of the JSON value starting at p (a string, an object or a scalar). */
static const char *value_end(const char *p, const char *end)
{
    int depth = 0, str = 0;
    for (; p < end; p++) {
        if (str) {
            if (*p == '\\') {
                p++;
            } else if (*p == '"') {
                str = 0;
                if (depth == 0)
                    return p + 1;
            }
        } else if (*p == '"') {
            str = 1;
        } else if (*p == '{' || *p == '[') {
            depth++;
        } else if (*p == '}' || *p == ']') {
            if (depth == 0)
                return p; /* the end of a scalar that closed its object */
            if (--depth == 0)
                return p + 1;
        } else if (depth == 0 && *p == ',') {
            return p;
        }
    }
    return end;
}

/* The value of the top-level string field key of the object [p, end), or of
 * its "id" when the value is an object (site: {id: ...}). 1 found, 0 not. */
static int field(const char *p, const char *end, const char *key, const char **v, size_t *vlen)
{
    size_t klen = strlen(key);
    if (p >= end || *p != '{')
        return 0;
    p++;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ','))
            p++;
        if (p >= end || *p != '"')
            return 0;
        const char *k = p + 1, *ke = value_end(p, end);
        p = ke;
        while (p < end && *p == ' ')
            p++;
        if (p >= end || *p != ':')
            return 0;
        p++;
        while (p < end && *p == ' ')
            p++;
        const char *ve = value_end(p, end);
        if ((size_t)(ke - 1 - k) == klen && !memcmp(k, key, klen)) {
            if (*p == '{')
                return field(p, ve, "id", v, vlen);
            if (*p != '"' || ve - p < 2)
                return 0;
            *v = p + 1;
            *vlen = (size_t)(ve - p - 2);
            return 1;
        }
        p = ve;
    }
    return 0;
}

/* 1 when the list is empty, the item lacks the field, or the value is listed. */
static int listed(const char (*list)[GW_UPLINK_FILTER_LEN], int n, const char *it, const char *end,
                  const char *key)
{
    const char *v;
    size_t vlen;
    if (!n || !field(it, end, key, &v, &vlen))
        return 1;
    for (int i = 0; i < n; i++)
        if (strlen(list[i]) == vlen && !memcmp(list[i], v, vlen))
            return 1;
    return 0;
}

size_t gw_destfilter_keep(const gw_uplink_filter *f, const char *p, size_t len, char *out,
                          uint64_t *dropped)
{
    const char *end = p + len;
    size_t at = 0;
    while (p < end) {
        while (p < end && *p != '{')
            p++;
        if (p >= end)
            break;
        const char *ie = value_end(p, end);
        if (listed(f->types, f->ntypes, p, ie, "type") &&
            listed(f->sites, f->nsites, p, ie, "site") &&
            listed(f->metrics, f->nmetrics, p, ie, "metric")) {
            if (at)
                out[at++] = ',';
            memcpy(out + at, p, (size_t)(ie - p));
            at += (size_t)(ie - p);
        } else {
            (*dropped)++;
        }
        p = ie;
    }
    return at;
}
