/* libFuzzer target for the NB-100 smoke detector decoder and the JSON mapping.
 * Byte 0 selects: even = NB-100 frame (the rest of the input; also retried with
 * a correct CRC appended so the field decoding is reached), odd = JSON through
 * a fixed mapping and through the generic mapping. */
// clang-format off
// FUZZ_SOURCES: adapters/smoke_nb100.c adapters/json_map.c base/civil.c base/model.c base/cfgmap.c base/yamldoc.c
// FUZZ_LIBS: -lcjson -lyaml -lm
// clang-format on
#include "adapters/json_map.h"
#include "adapters/smoke_nb100.h"

#include <stdlib.h>
#include <string.h>

static int on_r(void *ctx, const gw_reading *r)
{
    (*(unsigned *)ctx)++;
    return r->value != r->value ? GW_ERR : 0;
}

static int on_e(void *ctx, const gw_event *e)
{
    (*(unsigned *)ctx)++;
    return e->kind[0] ? 0 : GW_ERR;
}

static gw_jmap *map;

static const char MAP[] = "time: ts\n"
                          "points:\n"
                          "  - {path: data.depth, metric: water_depth, unit: cm, scale: 0.1}\n"
                          "  - {path: 'a[2].b[0]', metric: x}\n"
                          "events:\n"
                          "  - {path: alarm, kind: fire_alarm}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned n = 0;
    gw_sink s = {on_r, on_e, &n};
    if (size < 1)
        return 0;
    if (!map) {
        gw_ydoc doc;
        char err[256];
        if (gw_ydoc_parse(&doc, "fuzz", MAP, strlen(MAP), err, sizeof(err)) == 0)
            gw_jmap_load(&map, doc.root, "json_map", err, sizeof(err));
        gw_ydoc_free(&doc);
    }
    const uint8_t *p = data + 1;
    size_t len = size - 1;
    if ((data[0] & 1) == 0) {
        gw_adapter_smoke_nb100.decode(p, len, 0, &s);
        if (len <= GW_NB100_FRAME_MAX - 2) {
            uint8_t buf[GW_NB100_FRAME_MAX];
            memcpy(buf, p, len);
            uint16_t c = gw_nb100_crc(buf, len);
            buf[len] = (uint8_t)(c >> 8);
            buf[len + 1] = (uint8_t)c;
            gw_adapter_smoke_nb100.decode(buf, len + 2, 0, &s);
        }
    } else {
        gw_jmap_decode(map, (const char *)p, len, 0, &s);
        gw_jmap_decode(NULL, (const char *)p, len, 0, &s);
        char out[64];
        char *z = malloc(len + 1);
        if (z) {
            memcpy(z, p, len);
            z[len] = '\0';
            gw_jmap_parse_iso(z, 480, &(int64_t){0});
            free(z);
        }
        gw_jmap_get_text((const char *)p, len, "imei", out, sizeof(out));
    }
    return 0;
}
