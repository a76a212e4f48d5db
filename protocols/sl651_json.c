/* JSON rendering of a decoded SL651 frame (header, body fields, readings, events) for
 * `gateway decode --protocol sl651`. The only allocating part of the codec. */
#include "protocols/sl651.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct jctx {
    cJSON *readings;
    cJSON *events;
    int oom;
} jctx;

/* ISO 8601 UTC text of a ms timestamp. */
static void iso_utc(int64_t ms, char *out, size_t cap)
{
    gw_sl651_time t;
    /* Reuse the Beijing converter and shift back: keeps the file free of libc time. */
    if (gw_sl651_time_from_ms(ms - 8LL * 3600 * 1000, &t) != GW_OK) {
        snprintf(out, cap, "%lld", (long long)ms);
        return;
    }
    snprintf(out, cap, "20%02u-%02u-%02uT%02u:%02u:%02uZ", t.yy, t.mo, t.dd, t.hh, t.mi, t.ss);
}

static void local_time(const gw_sl651_time *t, int seconds, char *out, size_t cap)
{
    if (seconds)
        snprintf(out, cap, "20%02u-%02u-%02uT%02u:%02u:%02u+08:00", t->yy, t->mo, t->dd, t->hh,
                 t->mi, t->ss);
    else
        snprintf(out, cap, "20%02u-%02u-%02uT%02u:%02u+08:00", t->yy, t->mo, t->dd, t->hh, t->mi);
}

static int on_reading(void *ctx, const gw_reading *r)
{
    jctx *j = ctx;
    char ts[40];
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(j->readings, o)) {
        cJSON_Delete(o);
        j->oom = 1;
        return GW_ENOMEM;
    }
    iso_utc(r->obs_ms, ts, sizeof ts);
    if (!cJSON_AddStringToObject(o, "metric", r->metric) ||
        !cJSON_AddStringToObject(o, "unit", r->unit) ||
        !cJSON_AddNumberToObject(o, "value", r->value) ||
        !cJSON_AddStringToObject(o, "quality", gw_quality_name(r->quality)) ||
        !cJSON_AddStringToObject(o, "reason", gw_reason_name(r->reason)) ||
        !cJSON_AddNumberToObject(o, "obs_ms", (double)r->obs_ms) ||
        !cJSON_AddStringToObject(o, "obs", ts)) {
        j->oom = 1;
        return GW_ENOMEM;
    }
    return GW_OK;
}

static int on_event(void *ctx, const gw_event *e)
{
    jctx *j = ctx;
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddItemToArray(j->events, o)) {
        cJSON_Delete(o);
        j->oom = 1;
        return GW_ENOMEM;
    }
    if (!cJSON_AddStringToObject(o, "kind", e->kind) ||
        !cJSON_AddBoolToObject(o, "active", e->active) ||
        !cJSON_AddNumberToObject(o, "obs_ms", (double)e->obs_ms) ||
        !cJSON_AddStringToObject(o, "detail", e->detail)) {
        j->oom = 1;
        return GW_ENOMEM;
    }
    return GW_OK;
}

static const char *ctl_name(uint8_t c)
{
    switch (c) {
    case GW_SL651_STX:
        return "STX";
    case GW_SL651_SYN:
        return "SYN";
    case GW_SL651_ETX:
        return "ETX";
    case GW_SL651_ETB:
        return "ETB";
    case GW_SL651_ENQ:
        return "ENQ";
    case GW_SL651_ACK:
        return "ACK";
    case GW_SL651_NAK:
        return "NAK";
    case GW_SL651_EOT:
        return "EOT";
    case GW_SL651_ESC:
        return "ESC";
    default:
        return "?";
    }
}

static const char *station_type_name(uint8_t t)
{
    switch (t) {
    case 0x50:
        return "rain";
    case 0x48:
        return "river";
    case 0x4B:
        return "reservoir";
    case 0x5A:
        return "gate";
    case 0x44:
        return "pump";
    case 0x54:
        return "tide";
    case 0x4D:
        return "soil_moisture";
    case 0x47:
        return "groundwater";
    case 0x51:
        return "water_quality";
    case 0x49:
        return "intake";
    case 0x4F:
        return "outfall";
    default:
        return "unknown";
    }
}

static const char *err_name(int r)
{
    switch (r) {
    case GW_OK:
        return "ok";
    case GW_EMALFORMED:
        return "malformed";
    case GW_ENOMEM:
        return "nomem";
    default:
        return "error";
    }
}

char *gw_sl651_to_json(const gw_sl651_frame *f, const gw_sl651_station_cfg *cfg)
{
    if (!f)
        return NULL;
    char buf[48];
    cJSON *root = cJSON_CreateObject();
    jctx j = {0};
    if (!root)
        return NULL;
    int ok = 1;
    ok &= cJSON_AddStringToObject(root, "protocol", "sl651") != NULL;
    ok &= cJSON_AddStringToObject(root, "encoding",
                                  f->encoding == GW_SL651_ENC_ASCII ? "ascii" : "hex") != NULL;
    ok &= cJSON_AddStringToObject(root, "direction",
                                  f->direction == GW_SL651_DIR_DOWN ? "down" : "up") != NULL;
    ok &= cJSON_AddNumberToObject(root, "centre", f->centre) != NULL;
    ok &= cJSON_AddStringToObject(root, "station", f->station_hex) != NULL;
    snprintf(buf, sizeof buf, "%04X", f->password);
    ok &= cJSON_AddStringToObject(root, "password", buf) != NULL;
    snprintf(buf, sizeof buf, "%02X", f->function);
    ok &= cJSON_AddStringToObject(root, "function", buf) != NULL;
    ok &=
        cJSON_AddStringToObject(root, "function_name", gw_sl651_function_name(f->function)) != NULL;
    ok &= cJSON_AddNumberToObject(root, "length", f->length) != NULL;
    ok &= cJSON_AddStringToObject(root, "start", ctl_name(f->start)) != NULL;
    if (f->start == GW_SL651_SYN) {
        ok &= cJSON_AddNumberToObject(root, "packet_total", f->packet_total) != NULL;
        ok &= cJSON_AddNumberToObject(root, "packet_no", f->packet_no) != NULL;
    }
    ok &= cJSON_AddStringToObject(root, "end", ctl_name(f->end)) != NULL;
    snprintf(buf, sizeof buf, "%04X", f->crc);
    ok &= cJSON_AddStringToObject(root, "crc", buf) != NULL;
    /* Created attached, so root owns them whatever happens next. */
    j.readings = cJSON_AddArrayToObject(root, "readings");
    j.events = cJSON_AddArrayToObject(root, "events");
    cJSON *unknown = cJSON_AddArrayToObject(root, "unknown_elements");
    if (!ok || !j.readings || !j.events || !unknown)
        goto error;

    gw_sink sink = {on_reading, on_event, &j};
    gw_sl651_report rep;
    int r = gw_sl651_decode(f, cfg, &sink, &rep);
    if (j.oom)
        goto error;
    ok &= cJSON_AddStringToObject(root, "decode", err_name(r)) != NULL;
    if (r == GW_OK) {
        ok &= cJSON_AddNumberToObject(root, "serial", rep.serial) != NULL;
        local_time(&rep.send_time, 1, buf, sizeof buf);
        ok &= cJSON_AddStringToObject(root, "send_time", buf) != NULL;
        ok &= cJSON_AddNumberToObject(root, "send_ms", (double)rep.send_ms) != NULL;
        if (rep.has_station)
            ok &= cJSON_AddStringToObject(root, "body_station", rep.station_hex) != NULL;
        if (rep.station_type) {
            snprintf(buf, sizeof buf, "%02X", rep.station_type);
            ok &= cJSON_AddStringToObject(root, "station_type", buf) != NULL;
            ok &= cJSON_AddStringToObject(root, "station_type_name",
                                          station_type_name(rep.station_type)) != NULL;
        }
        if (rep.has_obs) {
            local_time(&rep.obs_time, 0, buf, sizeof buf);
            ok &= cJSON_AddStringToObject(root, "observed", buf) != NULL;
        }
        if (rep.has_status) {
            snprintf(buf, sizeof buf, "%08X", (unsigned)rep.status);
            ok &= cJSON_AddStringToObject(root, "status", buf) != NULL;
        }
        ok &= cJSON_AddBoolToObject(root, "function_known", rep.function_known) != NULL;
        ok &= cJSON_AddBoolToObject(root, "truncated", rep.truncated) != NULL;
        ok &= cJSON_AddNumberToObject(root, "missing", rep.missing) != NULL;
        ok &= cJSON_AddNumberToObject(root, "bad_bcd", rep.bad_bcd) != NULL;
        if (rep.hours)
            ok &= cJSON_AddNumberToObject(root, "hours", rep.hours) != NULL;
        if (rep.fixed_len)
            ok &= cJSON_AddNumberToObject(root, "fixed_length_elements", rep.fixed_len) != NULL;
        if (rep.quirks_used)
            ok &= cJSON_AddNumberToObject(root, "quirks_used", rep.quirks_used) != NULL;
        if (rep.has_manual)
            ok &= cJSON_AddStringToObject(root, "manual_text", rep.manual) != NULL;
        if (rep.picture)
            ok &= cJSON_AddNumberToObject(root, "picture_bytes", (double)rep.picture_len) != NULL;
        for (unsigned i = 0; i < rep.unknown && i < GW_SL651_UNKNOWN_MAX; i++) {
            snprintf(buf, sizeof buf, rep.unknown_ids[i] > 0xFF ? "%04X" : "%02X",
                     rep.unknown_ids[i]);
            cJSON *s = cJSON_CreateString(buf);
            if (!s || !cJSON_AddItemToArray(unknown, s)) {
                cJSON_Delete(s);
                goto error;
            }
        }
        ok &= cJSON_AddNumberToObject(root, "unknown_count", rep.unknown) != NULL;
    }
    if (!ok)
        goto error;
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
error:
    cJSON_Delete(root);
    return NULL;
}
