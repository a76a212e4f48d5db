#ifndef GW_EMBEDDED_H
#define GW_EMBEDDED_H
#include <stddef.h>

/* Files compiled into the binary by scripts/embed.sh: the default config
 * (gateway/default.yaml) and every shipped profile (adapters/profiles/). The
 * table ends with a NULL name. Contents are NUL-terminated. */
struct gw_embedded {
    const char *name;
    const char *data;
    size_t len;
};
extern const struct gw_embedded gw_embedded_files[];

#endif
