/* The NB-100 smoke detector decoder (frame format in smoke_nb100.h). The whole
 * frame is checked (length, digits, CRC) before anything is emitted; then the
 * events go out first, the fire alarm before everything else, and the readings
 * after them. */
#include "adapters/smoke_nb100.h"

#include <stdio.h>
#include <string.h>

uint16_t gw_nb100_crc(const uint8_t *buf, size_t len)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

int gw_nb100_parse(const uint8_t *buf, size_t len, gw_nb100_frame *out)
{
    if (!buf || len < 4)
        return GW_EMALFORMED;
    if (buf[0] != GW_NB100_MAGIC0 || buf[1] != GW_NB100_MAGIC1)
        return GW_EMALFORMED;
    if (buf[2] != GW_NB100_VERSION)
        return GW_EUNSUPPORTED;
    size_t body = buf[3];
    /* The length field is checked against what arrived, never used to read. */
    if (body < GW_NB100_BODY_MIN || len != 4 + body + 2)
        return GW_EMALFORMED;
    if (gw_nb100_crc(buf, len - 2) != be16(buf + len - 2))
        return GW_ECRC;
    memset(out, 0, sizeof(*out));
    const uint8_t *p = buf + 4;
    for (int i = 0; i < 16; i++) {
        unsigned nib = (i & 1) ? (p[i / 2] & 0x0F) : (p[i / 2] >> 4);
        if (i == 15) {
            if (nib != 0xF)
                return GW_EMALFORMED;
        } else if (nib > 9) {
            return GW_EMALFORMED;
        } else {
            out->imei[i] = (char)('0' + nib);
        }
    }
    out->imei[15] = '\0';
    out->type = p[8];
    if (out->type < GW_NB100_T_REPORT || out->type > GW_NB100_T_SELFTEST)
        return GW_EUNSUPPORTED;
    out->seq = be16(p + 9);
    out->time_s = be32(p + 11);
    out->events = be16(p + 15);
    out->battery_mv = be16(p + 17);
    out->smoke = be16(p + 19);
    out->temp = (int16_t)be16(p + 21);
    out->rssi = (int8_t)p[23];
    return GW_OK;
}

int gw_nb100_encode(const gw_nb100_frame *f, uint8_t *out, size_t cap)
{
    if (cap < GW_NB100_FRAME_MIN || strlen(f->imei) != 15)
        return GW_EINVAL;
    uint8_t *p = out;
    p[0] = GW_NB100_MAGIC0;
    p[1] = GW_NB100_MAGIC1;
    p[2] = GW_NB100_VERSION;
    p[3] = GW_NB100_BODY_MIN;
    for (int i = 0; i < 8; i++) {
        char a = f->imei[2 * i], b = i < 7 ? f->imei[2 * i + 1] : 0;
        if (a < '0' || a > '9' || (i < 7 && (b < '0' || b > '9')))
            return GW_EINVAL;
        p[4 + i] = (uint8_t)(((a - '0') << 4) | (i < 7 ? (b - '0') : 0x0F));
    }
    p[12] = f->type;
    p[13] = (uint8_t)(f->seq >> 8);
    p[14] = (uint8_t)f->seq;
    p[15] = (uint8_t)(f->time_s >> 24);
    p[16] = (uint8_t)(f->time_s >> 16);
    p[17] = (uint8_t)(f->time_s >> 8);
    p[18] = (uint8_t)f->time_s;
    p[19] = (uint8_t)(f->events >> 8);
    p[20] = (uint8_t)f->events;
    p[21] = (uint8_t)(f->battery_mv >> 8);
    p[22] = (uint8_t)f->battery_mv;
    p[23] = (uint8_t)(f->smoke >> 8);
    p[24] = (uint8_t)f->smoke;
    p[25] = (uint8_t)((uint16_t)f->temp >> 8);
    p[26] = (uint8_t)f->temp;
    p[27] = (uint8_t)f->rssi;
    uint16_t crc = gw_nb100_crc(p, 28);
    p[28] = (uint8_t)(crc >> 8);
    p[29] = (uint8_t)crc;
    return GW_NB100_FRAME_MIN;
}

static int emit_event(const gw_sink *out, const gw_nb100_frame *f, int64_t obs, const char *kind,
                      int active, const char *extra)
{
    if (!out->event)
        return GW_OK;
    gw_event e;
    memset(&e, 0, sizeof(e));
    gw_strlcpy(e.kind, kind, sizeof(e.kind));
    e.active = (uint8_t)active;
    e.obs_ms = obs;
    snprintf(e.detail, sizeof(e.detail), "%s%sseq=%u", extra, extra[0] ? "; " : "",
             (unsigned)f->seq);
    return out->event(out->ctx, &e);
}

static int emit_reading(const gw_sink *out, int64_t obs, const char *metric, const char *unit,
                        double v)
{
    if (!out->reading)
        return GW_OK;
    gw_reading r;
    memset(&r, 0, sizeof(r));
    gw_strlcpy(r.metric, metric, sizeof(r.metric));
    gw_strlcpy(r.unit, unit, sizeof(r.unit));
    r.value = v;
    r.obs_ms = obs;
    return out->reading(out->ctx, &r);
}

/* One row per event bit besides fire/cleared, self-test and mute, which need
 * more than a name. The order is the order of emission. */
static const struct {
    uint16_t bit;
    const char *kind;
} plain_events[] = {
    {GW_NB100_BATT_CRIT, "battery_critical"},
    {GW_NB100_BATT_LOW, "battery_low"},
    {GW_NB100_TAMPER, "tamper"},
    {GW_NB100_HW_FAULT, "hw_fault"},
    {GW_NB100_DIRTY, "dirty_chamber"},
    {GW_NB100_EOL, "end_of_life"},
    {GW_NB100_HEARTBEAT, "heartbeat"},
};

static int nb100_decode(const uint8_t *buf, size_t len, int64_t now_ms, const gw_sink *out)
{
    gw_nb100_frame f;
    int rc = gw_nb100_parse(buf, len, &f);
    if (rc)
        return rc;
    int64_t obs = f.time_s ? (int64_t)f.time_s * 1000 : 0;
    uint16_t ev = f.events;
    char extra[64];

    /* Fire first. The fire bit wins over "cleared" and over "muted": a muted
     * or contradictory frame must never hide a fire. */
    if (ev & GW_NB100_FIRE) {
        snprintf(extra, sizeof(extra), "%s", (ev & GW_NB100_MUTE) ? "sounder muted" : "");
        if ((rc = emit_event(out, &f, obs, "fire_alarm", 1, extra)))
            return rc;
    } else if (ev & GW_NB100_CLEARED) {
        if ((rc = emit_event(out, &f, obs, "fire_alarm", 0, "cleared")))
            return rc;
    }
    if (ev & (GW_NB100_TEST_PASS | GW_NB100_TEST_FAIL)) {
        /* Both bits: the detector contradicts itself; report the failure. */
        const char *d = (ev & GW_NB100_TEST_FAIL) ? "fail" : "pass";
        if ((rc = emit_event(out, &f, obs, "self_test", 1, d)))
            return rc;
    }
    if (ev & GW_NB100_MUTE) {
        const char *d = (ev & GW_NB100_FIRE) ? "fire alarm not muted" : "";
        if ((rc = emit_event(out, &f, obs, "mute", 1, d)))
            return rc;
    }
    for (size_t i = 0; i < sizeof(plain_events) / sizeof(plain_events[0]); i++)
        if ((ev & plain_events[i].bit) &&
            (rc = emit_event(out, &f, obs, plain_events[i].kind, 1, "")))
            return rc;

    if (f.battery_mv != 0xFFFF &&
        (rc = emit_reading(out, obs, "battery_voltage", "V", f.battery_mv / 1000.0)))
        return rc;
    if (f.smoke != 0xFFFF &&
        (rc = emit_reading(out, obs, "smoke_density", "dB/m", f.smoke / 100.0)))
        return rc;
    if ((uint16_t)f.temp != 0x8000 && (rc = emit_reading(out, obs, "temperature",
                                                         "\xc2\xb0"
                                                         "C",
                                                         f.temp / 10.0)))
        return rc;
    if (f.rssi != 0x7F && (rc = emit_reading(out, obs, "rssi", "dBm", f.rssi)))
        return rc;
    return GW_OK;
}

/* The IMEI of a frame that parses (magic, length, digits, CRC all checked). */
static int nb100_identify(const uint8_t *buf, size_t len, char *id, size_t cap)
{
    gw_nb100_frame f;
    if (len < 2 || buf[0] != GW_NB100_MAGIC0 || buf[1] != GW_NB100_MAGIC1 ||
        gw_nb100_parse(buf, len, &f) != GW_OK)
        return GW_ENOTFOUND;
    return gw_strlcpy(id, f.imei, cap) ? GW_ENOTFOUND : GW_OK;
}

static const int nb100_formats[] = {42 /* application/octet-stream */, GW_CF_END};

const gw_adapter gw_adapter_smoke_nb100 = {
    .name = "smoke-nb100",
    .version = "1.0",
    .description = "NB-100 NB-IoT smoke detector, binary frame in LwM2M 19/0/0",
    .payload = GW_PAYLOAD_BINARY,
    .content_formats = nb100_formats,
    .decode = nb100_decode,
    .identify = nb100_identify,
};
