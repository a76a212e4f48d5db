#ifndef GW_CFGMAP_H
#define GW_CFGMAP_H
/* Config as a table: each row names a key, its type, default, bounds and where
 * it lands in a struct. gw_cfg_apply checks a YAML mapping against the table:
 * unknown keys, wrong types and out-of-range values are errors naming the
 * file, line and full key path. Durations accept ms/s/m/h/d (a bare number is
 * seconds); sizes accept B, KiB/MiB/GiB and KB/MB/GB (a bare number is bytes). */
#include "base/yamldoc.h"

#include <stddef.h>
#include <stdint.h>

typedef enum {
    GW_CT_STR,      /* char[size] at offset */
    GW_CT_INT,      /* int64_t */
    GW_CT_DOUBLE,   /* double */
    GW_CT_BOOL,     /* int (0/1) */
    GW_CT_DURATION, /* int64_t milliseconds */
    GW_CT_SIZE,     /* int64_t bytes */
    GW_CT_ENUM,     /* int: index into names */
    GW_CT_NODE      /* const gw_ynode * (the caller checks the subtree) */
} gw_ctype;

#define GW_CF_REQUIRED 1u

typedef struct gw_cfgkey {
    const char *key;
    gw_ctype type;
    const char *def; /* default as text, NULL for none (or required) */
    double min, max; /* inclusive bounds for numbers; ignored when min > max */
    size_t offset;
    size_t size;              /* GW_CT_STR buffer size */
    const char *const *names; /* GW_CT_ENUM: NULL-terminated */
    unsigned flags;
    const char *desc;
} gw_cfgkey;

/* Applies defaults then the mapping node (NULL = only defaults) to out.
 * path is the key prefix used in messages ("uplink", "devices[3]"). Returns 0
 * or GW_EINVAL with "FILE:LINE: message" in err. */
int gw_cfg_apply(const gw_cfgkey *tab, const gw_ynode *map, void *out, const char *path, char *err,
                 size_t errlen);

/* As gw_cfg_apply, but keys found in `ignore` (another table, may be NULL)
 * are skipped instead of being unknown: a device entry carries the core's keys
 * and its protocol's keys side by side, each table checks its own. */
int gw_cfg_apply_ex(const gw_cfgkey *tab, const gw_cfgkey *ignore, const gw_ynode *map, void *out,
                    const char *path, char *err, size_t errlen);

/* 1 when every key of tab holds the same value in a and b (structs filled by
 * gw_cfg_apply): strings compared as strings, numbers by value. A GW_CT_NODE
 * key compares equal only when it is absent from both, since the parsed YAML
 * it points into does not outlive loading. */
int gw_cfg_equal(const gw_cfgkey *tab, const void *a, const void *b);

/* Parsers shared by the table and by callers with their own syntax. Return 0
 * or GW_EINVAL. */
int gw_parse_duration_ms(const char *s, int64_t *out);
int gw_parse_size(const char *s, int64_t *out);
int gw_parse_int(const char *s, int64_t *out);
int gw_parse_double(const char *s, double *out);
int gw_parse_bool(const char *s, int *out);

/* "FILE:LINE: " prefix helper for callers reporting their own errors. */
#define GW_YPOS(n) ((n) ? (n)->file : "?"), ((n) ? (n)->line : 0)

/* A list of names that each set a bit, e.g. a station's `quirks: [id28]`:
 * names[i] sets bits[i] (names NULL-terminated). Returns the bits (0 for a
 * missing node), or -1 with err naming the key, the entry and the choices. */
int gw_cfg_flag_list(const gw_ynode *n, const char *key, const char *const *names, const int *bits,
                     char *err, size_t errlen);

#endif
