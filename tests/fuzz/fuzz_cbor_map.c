/* libFuzzer target for the CBOR adapter: the whole input is one payload,
 * decoded through a fixed mapping and the generic one, converted to cJSON (whose
 * printed form must parse back as JSON) and searched for an identity. */
// clang-format off
// FUZZ_SOURCES: adapters/cbor_map.c adapters/json_map.c base/civil.c base/model.c base/cfgmap.c base/yamldoc.c
// FUZZ_LIBS: -lcbor -lcjson -lyaml -lm
// clang-format on
#include "adapters/cbor_map.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int on_r(void *ctx, const gw_reading *r)
{
    (*(unsigned *)ctx)++;
    if (!isfinite(r->value))
        abort(); /* the adapter promised finite values */
    return 0;
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
                          "  - {path: '7', metric: rssi}\n"
                          "events:\n"
                          "  - {path: alarm, kind: fire_alarm}\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned n = 0;
    gw_sink s = {on_r, on_e, &n};
    if (!map) {
        gw_ydoc doc;
        char err[256];
        if (gw_ydoc_parse(&doc, "fuzz", MAP, strlen(MAP), err, sizeof(err)) == 0)
            gw_jmap_load(&map, doc.root, "json_map", err, sizeof(err));
        gw_ydoc_free(&doc);
    }
    gw_cbor_decode(map, data, size, 0, &s);
    gw_cbor_decode(NULL, data, size, 0, &s);
    cJSON *j = NULL;
    if (gw_cbor_to_json(data, size, &j) == GW_OK) {
        char *txt = cJSON_PrintUnformatted(j);
        if (txt) {
            cJSON *back = cJSON_Parse(txt);
            if (!back)
                abort(); /* what we build must be JSON */
            cJSON_Delete(back);
            free(txt);
        }
        cJSON_Delete(j);
    } else if (j) {
        abort(); /* a failed conversion leaves nothing behind */
    }
    char out[64];
    gw_cbor_get_text(data, size, "imei", out, sizeof(out));
    return 0;
}
