#ifndef GW_ADAPTER_H
#define GW_ADAPTER_H
/* An adapter turns one device payload into readings and events of the common
 * model. One C file, one descriptor, everything else static; the table in
 * adapters/adapters.c lists them. decode() must treat buf as hostile: check the
 * remaining length before every read, never trust a length field, and return
 * GW_EMALFORMED (having emitted nothing it is unsure of) instead of guessing.
 * Adapters do no I/O and do not log. */
#include "gateway/model.h"

#include <stddef.h>
#include <stdint.h>

struct gw_jmap;

typedef enum {
    GW_PAYLOAD_BINARY = 0, /* vendor binary frame (e.g. LwM2M object 19/0/0) */
    GW_PAYLOAD_JSON,       /* JSON text */
    GW_PAYLOAD_REGISTERS   /* Modbus registers, decoded through a profile */
} gw_payload_kind;

typedef struct gw_adapter {
    const char *name;        /* referenced from profiles and config */
    const char *version;
    const char *description;
    int payload;             /* gw_payload_kind */
    /* Decodes buf (len bytes) received at now_ms into out. Returns 0, or a
     * negative GW_E* code. Readings leave device empty: the caller fills it. */
    int (*decode)(const uint8_t *buf, size_t len, int64_t now_ms, const gw_sink *out);
    /* Adapters that read their payload through a json_map mapping (a device's
     * or listener's `json_map`, adapters/json_map.h) set this; map may be
     * NULL for the generic mapping. Protocols call it instead of decode when
     * it is set, so no protocol needs to know adapter names. May be NULL. */
    int (*decode_mapped)(const struct gw_jmap *map, const uint8_t *buf, size_t len, int64_t now_ms,
                         const gw_sink *out);
} gw_adapter;

/* NULL-terminated table of every compiled-in adapter (adapters/adapters.c). */
extern const gw_adapter *const gw_adapters[];
const gw_adapter *gw_adapter_find(const char *name);

#endif
