/* TL-1 tank level gauge (a fictional vendor device): the worked example of
 * docs/adapters.md section 3, added as a vendor would add one (this file and
 * one line in adapters/adapters.c, nothing else). The gauge posts one 17-byte
 * frame over CoAP, Content-Format 42 or none:
 *
 *   54 4C | 01  | 8 ASCII chars | level u16 | temp i16   | flags | sum
 *   "TL"    ver   serial          mm          0.1 degC     bit0    8-bit sum of bytes 0..15
 *
 * Multi-byte fields are big-endian. The serial is the device's address, so a
 * frame names its device (identify) and may go to /19/0/0 without ?ep=.
 * flags bit 0 is the high-level alarm (emitted as event high_level, active
 * 1/0); the other bits must be zero. level 0xFFFF and temp 0x8000 mean "not
 * measured" and are left out. */
#include "adapters/adapter.h"

#include <string.h>

#define TL1_LEN 17
#define TL1_SERIAL 8

struct tl1 {
    char serial[TL1_SERIAL + 1];
    uint16_t level_mm;
    int16_t temp;
    uint8_t flags;
};

/* Checks everything (magic, version, exact length, serial characters, sum,
 * reserved bits) before the caller emits anything. */
static int tl1_parse(const uint8_t *buf, size_t len, struct tl1 *f)
{
    if (len != TL1_LEN || buf[0] != 'T' || buf[1] != 'L')
        return GW_EMALFORMED;
    if (buf[2] != 1)
        return GW_EUNSUPPORTED;
    uint8_t sum = 0;
    for (size_t i = 0; i < TL1_LEN - 1; i++)
        sum = (uint8_t)(sum + buf[i]);
    if (sum != buf[TL1_LEN - 1])
        return GW_ECRC;
    for (size_t i = 0; i < TL1_SERIAL; i++) {
        uint8_t c = buf[3 + i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')))
            return GW_EMALFORMED;
        f->serial[i] = (char)c;
    }
    f->serial[TL1_SERIAL] = '\0';
    f->level_mm = (uint16_t)(buf[11] << 8 | buf[12]);
    f->temp = (int16_t)(uint16_t)(buf[13] << 8 | buf[14]);
    f->flags = buf[15];
    return f->flags & ~1u ? GW_EMALFORMED : GW_OK;
}

static int tl1_reading(const gw_sink *out, const char *metric, const char *unit, double v)
{
    gw_reading r;
    memset(&r, 0, sizeof(r));
    gw_strlcpy(r.metric, metric, sizeof(r.metric));
    gw_strlcpy(r.unit, unit, sizeof(r.unit));
    r.value = v;
    return out->reading ? out->reading(out->ctx, &r) : GW_OK;
}

static int tl1_decode(const uint8_t *buf, size_t len, int64_t now_ms, const gw_sink *out)
{
    struct tl1 f;
    int rc = tl1_parse(buf, len, &f);
    if (rc)
        return rc;
    if (out->event) {
        gw_event e;
        memset(&e, 0, sizeof(e));
        gw_strlcpy(e.kind, "high_level", sizeof(e.kind));
        e.active = f.flags & 1;
        if ((rc = out->event(out->ctx, &e)))
            return rc;
    }
    if (f.level_mm != 0xFFFF && (rc = tl1_reading(out, "water_level", "m", f.level_mm / 1000.0)))
        return rc;
    if ((uint16_t)f.temp != 0x8000 && (rc = tl1_reading(out, "temperature",
                                                        "\xc2\xb0"
                                                        "C",
                                                        f.temp / 10.0)))
        return rc;
    return GW_OK;
}

static int tl1_identify(const uint8_t *buf, size_t len, char *id, size_t cap)
{
    struct tl1 f;
    if (tl1_parse(buf, len, &f))
        return GW_ENOTFOUND;
    return gw_strlcpy(id, f.serial, cap) ? GW_ENOTFOUND : GW_OK;
}

static const int tl1_formats[] = {42 /* application/octet-stream */, GW_CF_END};

const gw_adapter gw_adapter_tank_tl1 = {
    .name = "tank-tl1",
    .version = "1.0",
    .description = "TL-1 tank level gauge, 17-byte binary frame over CoAP (example vendor adapter)",
    .payload = GW_PAYLOAD_BINARY,
    .content_formats = tl1_formats,
    .decode = tl1_decode,
    .identify = tl1_identify,
};
