/* The table of compiled-in adapters: adding a device type adds one line here
 * (and one C file beside this one). The helpers below are how protocols reach
 * an adapter: by the name a device's config gives, by content format, by the
 * identify hook, or by payload kind, never by naming one. */
#include "adapters/adapter.h"

#include "adapters/json_map.h"

#include <stdio.h>
#include <string.h>

/* One line per adapter: X(name) stands for its descriptor gw_adapter_<name>.
 * Order matters only to gw_adapter_identify and gw_adapter_for_payload. */
#define GW_ADAPTER_TABLE(X)                                                                        \
    X(smoke_nb100)                                                                                 \
    X(json_map)                                                                                    \
    X(cbor_map)                                                                                    \
    X(modbus_profile)                                                                              \
    X(tank_tl1)                                                                                    \
    /* end of the table: every line above ends with a backslash */

#define DECLARE(n) extern const gw_adapter gw_adapter_##n;
#define ENTRY(n) &gw_adapter_##n,
GW_ADAPTER_TABLE(DECLARE)

const gw_adapter *const gw_adapters[] = {GW_ADAPTER_TABLE(ENTRY) NULL};

const gw_adapter *gw_adapter_find(const char *name)
{
    for (size_t i = 0; gw_adapters[i]; i++)
        if (strcmp(gw_adapters[i]->name, name) == 0)
            return gw_adapters[i];
    return NULL;
}

const gw_adapter *gw_adapter_for_payload(int payload)
{
    for (size_t i = 0; gw_adapters[i]; i++)
        if (gw_adapters[i]->payload == payload)
            return gw_adapters[i];
    return NULL;
}

int gw_adapter_accepts(const gw_adapter *a, int cf)
{
    if (cf < 0 || !a->content_formats)
        return 1;
    for (const int *f = a->content_formats; *f != GW_CF_END; f++)
        if (*f == cf)
            return 1;
    return 0;
}

const gw_adapter *gw_adapter_identify(int cf, const uint8_t *buf, size_t len, char *id,
                                      size_t cap)
{
    for (size_t i = 0; gw_adapters[i]; i++) {
        const gw_adapter *a = gw_adapters[i];
        if (a->identify && gw_adapter_accepts(a, cf) && a->identify(buf, len, id, cap) == GW_OK &&
            id[0])
            return a;
    }
    if (cap)
        id[0] = '\0';
    return NULL;
}

int gw_adapter_use_init(gw_adapter_use *use, const char *name, const struct gw_ynode *json_map,
                        char *err, size_t errlen)
{
    const gw_adapter *a = gw_adapter_find(name);
    gw_jmap *m = NULL;
    if (!a) {
        int n = snprintf(err, errlen, "key 'adapter': unknown adapter '%s'; known:", name);
        for (size_t i = 0; gw_adapters[i] && n > 0 && (size_t)n < errlen; i++)
            if (gw_adapters[i]->decode || gw_adapters[i]->decode_mapped)
                n += snprintf(err + n, errlen - (size_t)n, " %s", gw_adapters[i]->name);
        return GW_EINVAL;
    }
    if (!a->decode && !a->decode_mapped) {
        snprintf(err, errlen, "key 'adapter': %s does not read payloads of this protocol", name);
        return GW_EINVAL;
    }
    if (json_map) {
        if (!a->decode_mapped) {
            snprintf(err, errlen, "key 'json_map': adapter %s reads no mapping", name);
            return GW_EINVAL;
        }
        if (gw_jmap_load(&m, json_map, "json_map", err, errlen))
            return GW_EINVAL;
    }
    if (use) {
        use->adapter = a;
        use->map = m;
    } else {
        gw_jmap_free(m);
    }
    return GW_OK;
}

void gw_adapter_use_free(gw_adapter_use *use)
{
    gw_jmap_free(use->map);
    use->map = NULL;
}

int gw_adapter_use_decode(const gw_adapter_use *use, const struct gw_jmap *fallback,
                          const uint8_t *buf, size_t len, int64_t now_ms, const gw_sink *out)
{
    const gw_adapter *a = use->adapter;
    if (a->decode_mapped)
        return a->decode_mapped(use->map ? use->map : fallback, buf, len, now_ms, out);
    return a->decode ? a->decode(buf, len, now_ms, out) : GW_EUNSUPPORTED;
}
