/* libFuzzer target for the MC-200 manhole cover decoder (adapters/cover_mc200.c):
 * the input as a frame, then (when it fits) its first 29 bytes sealed with a
 * correct CRC-16/MODBUS so the field checks and the event and reading
 * emission are reached; the identify hook on both. */
// clang-format off
// FUZZ_SOURCES: adapters/cover_mc200.c base/crc16.c base/model.c
// FUZZ_LIBS: -lm
// clang-format on
#include "adapters/adapter.h"
#include "base/crc16.h"

#include <string.h>

extern const gw_adapter gw_adapter_cover_mc200;

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned n = 0;
    gw_sink s = {on_r, on_e, &n};
    char id[32];
    const gw_adapter *a = &gw_adapter_cover_mc200;
    a->decode(data, size, 0, &s);
    a->identify(data, size, id, sizeof(id));
    if (size >= 29) {
        uint8_t buf[31];
        memcpy(buf, data, 29);
        uint16_t c = gw_crc16_modbus(buf, 29);
        buf[29] = (uint8_t)c;
        buf[30] = (uint8_t)(c >> 8);
        a->decode(buf, sizeof(buf), 0, &s);
        a->identify(buf, sizeof(buf), id, sizeof(id));
    }
    return 0;
}
