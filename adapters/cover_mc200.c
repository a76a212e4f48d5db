/* MC-200 smart manhole cover sensor (智慧井盖, a fictional vendor device): the
 * second worked example of docs/adapters.md, added as a vendor would add one
 * (this file and one line in adapters/adapters.c). The NB-IoT sensor under the
 * cover posts one 31-byte frame over CoAP into LwM2M 19/0/0 (Content-Format 42
 * or none); all multi-byte fields big-endian except the CRC:
 *
 *   off size field
 *   0   2    magic 0x4D 0x43 ("MC")
 *   2   1    version 0x01
 *   3   1    message type: 0x01 periodic report, 0x02 alarm report (a status
 *            bit changed), 0x03 heartbeat
 *   4   8    IMEI: 15 BCD digits, high nibble first, the 16th nibble 0xF
 *   12  2    sequence number (wraps)
 *   14  4    observation time, Unix seconds (0 = the sensor has no clock)
 *   18  1    status: the state now (bits below)
 *   19  1    changed: the status bits that changed since the previous frame the
 *            sensor sent (same layout)
 *   20  2    tilt angle of the cover from level, 0.1 degree, 0..1800 (0xFFFF = not measured)
 *   22  2    water level in the well, mm above its bottom (0xFFFF = not measured)
 *   24  2    battery voltage, mV (0xFFFF = not measured)
 *   26  2    RSRP, int16, 0.1 dBm (0x8000 = not measured)
 *   28  1    SNR, int8, dB (0x7F = not measured)
 *   29  2    CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) over bytes 0..28,
 *            low byte first
 *
 * Status bits: 0 cover open (lifted or displaced from its frame), 1 tilted
 * (beyond the sensor's tilt threshold), 2 overflow warning (water within the
 * sensor's margin of the cover), 3 battery low; 4..7 reserved, must be zero.
 *
 * Events are edge-triggered from the frame: each changed bit becomes one event
 * (cover_open, cover_tilt, water_overflow, battery_low) whose active is the
 * status bit now, so a cover that stays open is reported once when it opens
 * and once when it closes, not at every report. The sensor sends an alarm
 * report as a confirmable request and repeats it until it is acknowledged
 * (the gateway acknowledges after the commit), which is what makes edges
 * without state here safe. A heartbeat carries the same fields; it is a sign
 * of life for the device's `heartbeat:` liveness and emits no event. */
#include "adapters/adapter.h"

#include "base/crc16.h"

#include <stdio.h>
#include <string.h>

#define MC_LEN 31
#define MC_STATUS_BITS 0x0Fu

struct mc200 {
    char imei[16];
    uint8_t type;
    uint16_t seq;
    uint32_t time_s;
    uint8_t status, changed;
    uint16_t tilt, water_mm, battery_mv;
    int16_t rsrp;
    int8_t snr;
};

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* Checks everything (magic, version, exact length, CRC, type, IMEI digits,
 * reserved bits) before the caller emits anything. */
static int mc_parse(const uint8_t *buf, size_t len, struct mc200 *f)
{
    if (len < 3 || buf[0] != 'M' || buf[1] != 'C')
        return GW_EMALFORMED;
    if (buf[2] != 1)
        return GW_EUNSUPPORTED;
    if (len != MC_LEN)
        return GW_EMALFORMED;
    if (gw_crc16_modbus(buf, MC_LEN - 2) != (uint16_t)(buf[MC_LEN - 2] | buf[MC_LEN - 1] << 8))
        return GW_ECRC;
    memset(f, 0, sizeof(*f));
    f->type = buf[3];
    if (f->type < 1 || f->type > 3)
        return GW_EUNSUPPORTED;
    for (int i = 0; i < 16; i++) {
        unsigned nib = (i & 1) ? (buf[4 + i / 2] & 0x0F) : (buf[4 + i / 2] >> 4);
        if (i == 15 ? nib != 0xF : nib > 9)
            return GW_EMALFORMED;
        if (i < 15)
            f->imei[i] = (char)('0' + nib);
    }
    f->seq = be16(buf + 12);
    f->time_s =
        (uint32_t)buf[14] << 24 | (uint32_t)buf[15] << 16 | (uint32_t)buf[16] << 8 | buf[17];
    f->status = buf[18];
    f->changed = buf[19];
    f->tilt = be16(buf + 20);
    f->water_mm = be16(buf + 22);
    f->battery_mv = be16(buf + 24);
    f->rsrp = (int16_t)be16(buf + 26);
    f->snr = (int8_t)buf[28];
    if ((f->status | f->changed) & ~MC_STATUS_BITS)
        return GW_EMALFORMED;
    if (f->tilt != 0xFFFF && f->tilt > 1800)
        return GW_EMALFORMED;
    return GW_OK;
}

static int mc_reading(const gw_sink *out, int64_t obs, const char *metric, const char *unit,
                      double v)
{
    gw_reading r;
    memset(&r, 0, sizeof(r));
    gw_strlcpy(r.metric, metric, sizeof(r.metric));
    gw_strlcpy(r.unit, unit, sizeof(r.unit));
    r.value = v;
    r.obs_ms = obs;
    return out->reading ? out->reading(out->ctx, &r) : GW_OK;
}

/* The status bits in the order their events go out: an opened cover first. */
static const char *const mc_events[4] = {"cover_open", "cover_tilt", "water_overflow",
                                         "battery_low"};

static int mc_decode(const uint8_t *buf, size_t len, int64_t now_ms, const gw_sink *out)
{
    struct mc200 f;
    int rc = mc_parse(buf, len, &f);
    if (rc)
        return rc;
    int64_t obs = f.time_s ? (int64_t)f.time_s * 1000 : 0;
    for (unsigned b = 0; b < 4 && out->event; b++) {
        if (!(f.changed & (1u << b)))
            continue;
        gw_event e;
        memset(&e, 0, sizeof(e));
        gw_strlcpy(e.kind, mc_events[b], sizeof(e.kind));
        e.active = (uint8_t)((f.status >> b) & 1);
        e.obs_ms = obs;
        int n = snprintf(e.detail, sizeof(e.detail), "seq=%u", (unsigned)f.seq);
        if (b == 1 && f.tilt != 0xFFFF && n > 0)
            snprintf(e.detail + n, sizeof(e.detail) - (size_t)n, "; tilt=%.1f deg", f.tilt / 10.0);
        if ((rc = out->event(out->ctx, &e)))
            return rc;
    }
    if (f.tilt != 0xFFFF && (rc = mc_reading(out, obs, "tilt_angle", "\xc2\xb0", f.tilt / 10.0)))
        return rc;
    if (f.water_mm != 0xFFFF &&
        (rc = mc_reading(out, obs, "water_level", "m", f.water_mm / 1000.0)))
        return rc;
    if (f.battery_mv != 0xFFFF &&
        (rc = mc_reading(out, obs, "battery_voltage", "V", f.battery_mv / 1000.0)))
        return rc;
    if ((uint16_t)f.rsrp != 0x8000 && (rc = mc_reading(out, obs, "rsrp", "dBm", f.rsrp / 10.0)))
        return rc;
    if (f.snr != 0x7F && (rc = mc_reading(out, obs, "snr", "dB", f.snr)))
        return rc;
    return GW_OK;
}

static int mc_identify(const uint8_t *buf, size_t len, char *id, size_t cap)
{
    struct mc200 f;
    if (mc_parse(buf, len, &f))
        return GW_ENOTFOUND;
    return gw_strlcpy(id, f.imei, cap) ? GW_ENOTFOUND : GW_OK;
}

static const int mc_formats[] = {42 /* application/octet-stream */, GW_CF_END};

const gw_adapter gw_adapter_cover_mc200 = {
    .name = "cover-mc200",
    .version = "1.0",
    .description = "MC-200 NB-IoT manhole cover sensor, 31-byte frame in LwM2M 19/0/0",
    .payload = GW_PAYLOAD_BINARY,
    .content_formats = mc_formats,
    .decode = mc_decode,
    .identify = mc_identify,
};
