/* libFuzzer target for the SL651 codec: the stream scanner, the body decoder (reached
 * both through CRC-valid frames and directly, since random bytes rarely pass a CRC),
 * the JSON renderer and the confirm encoder.
 * Input byte 0 selects the mode: even = stream of frames, odd = raw body with
 * byte 1 = function code and byte 2 = flags (bit0 ASCII, bit1 downlink). */
// FUZZ_SOURCES: protocols/sl651_codec.c protocols/sl651_body.c protocols/sl651_json.c base/civil.c
// base/crc16.c base/hex.c base/model.c FUZZ_LIBS: -lcjson
#include "protocols/sl651.h"

#include <stdlib.h>
#include <string.h>

static int on_r(void *ctx, const gw_reading *r)
{
    (*(unsigned *)ctx)++;
    return r->value != r->value ? GW_ERR : 0; /* touch the value */
}

static int on_e(void *ctx, const gw_event *e)
{
    (*(unsigned *)ctx)++;
    return e->kind[0] ? 0 : GW_ERR;
}

static const gw_sl651_override ov[] = {
    {0xFF01, "custom_level", "m", 1},
    {0x38, "battery", "V", 0},
    {0xF4, "rain5", "mm", 0},
};

static void exercise(const gw_sl651_frame *f, int i)
{
    gw_sl651_station_cfg cfg = {0};
    cfg.base_level = 10.0;
    cfg.correction = 0.5;
    cfg.overrides = (i & 1) ? ov : NULL;
    cfg.n_overrides = (i & 1) ? 3 : 0;
    cfg.drp_forward = (uint8_t)(i & 2);
    cfg.quirks = (i & 4) ? GW_SL651_Q_ID28 : 0;
    cfg.status_known = (uint8_t)((i >> 3) & 1);
    cfg.status_prev = (uint32_t)i * 0x9E3779B9u;
    unsigned count = 0;
    gw_sink sink = {on_r, on_e, &count};
    gw_sl651_report rep;
    if (gw_sl651_decode(f, &cfg, &sink, &rep) == GW_OK) {
        uint8_t out[128];
        gw_sl651_encode_confirm(f, rep.serial, &rep.send_time, GW_SL651_EOT, out, sizeof out);
        gw_sl651_encode_confirm_m3(f, rep.serial, &rep.send_time, GW_SL651_NAK,
                                   f->packet_total ? f->packet_total : 1, 1, out, sizeof out);
        if (rep.picture &&
            (rep.picture < f->body || rep.picture + rep.picture_len > f->body + f->body_len))
            abort();
        if (rep.has_manual && memchr(rep.manual, '\0', sizeof rep.manual) == NULL)
            abort();
    }
    char *j = gw_sl651_to_json(f, &cfg);
    free(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if ((data[0] & 1) == 0) {
        const uint8_t *p = data + 1;
        size_t n = size - 1;
        gw_sl651_stats st = {0};
        for (int i = 0; n > 0 && i < 64; i++) {
            gw_sl651_frame f;
            size_t consumed = 0, skipped = 0;
            int r = gw_sl651_scan(p, n, &f, &consumed, &skipped, &st);
            if (consumed > n || skipped > consumed)
                abort();
            if (r == GW_OK || r == GW_ECRC) {
                if (f.body + f.body_len > p + n || f.frame_len > n)
                    abort();
                exercise(&f, i);
            }
            if (r == GW_EAGAIN) {
                /* what remains must be a frame start or nothing */
                if (consumed < n && p[consumed] != 0x7E && p[consumed] != GW_SL651_SOH)
                    abort();
                break;
            }
            p += consumed;
            n -= consumed;
        }
        gw_sl651_frame f1;
        gw_sl651_frame_parse(data + 1, size - 1, &f1, &st);
        return 0;
    }
    if (size < 3)
        return 0;
    /* Raw body into an exact-size heap copy so ASan sees any overread. */
    size_t n = size - 3;
    uint8_t *body = malloc(n ? n : 1);
    if (!body)
        return 0;
    memcpy(body, data + 3, n);
    gw_sl651_frame f;
    memset(&f, 0, sizeof f);
    f.encoding = (data[2] & 1) ? GW_SL651_ENC_ASCII : GW_SL651_ENC_HEX;
    f.direction = (data[2] & 2) ? GW_SL651_DIR_DOWN : GW_SL651_DIR_UP;
    f.function = data[1];
    f.start = GW_SL651_STX;
    f.end = GW_SL651_ETX;
    f.body = body;
    f.body_len = n;
    f.length = (uint16_t)(n & 0x0FFF);
    memcpy(f.station_hex, "0012345678", 11);
    exercise(&f, data[2] >> 2);
    free(body);
    return 0;
}
