/* Huawei Cloud IoTDA, the gateway and sub-device topics of its MQTT device API
 * (docs/platforms.md has the sources and the choices): sub-devices are added and set online
 * with events on $oc/devices/{id}/sys/events/up, data goes in batches of at most 50
 * sub-devices to .../sys/gateway/sub_devices/properties/report, commands come on
 * .../sys/commands/request_id={r} and are answered on .../sys/commands/response/request_id={r}.
 * The CONNECT password is HMAC-SHA256 of the device secret keyed with the hour (YYYYMMDDHH). */
#include "gateway/platform.h"

#include "base/model.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define MAX_DEVICES 50 /* sub-devices per batch report (the API's limit) */

static void hour_stamp(int64_t ms, char out[16])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 16, "%Y%m%d%H", &tm);
}

/* yyyyMMdd'T'HHmmss'Z', the time format of IoTDA's event_time. */
static void event_time(int64_t ms, char out[20])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 20, "%Y%m%dT%H%M%SZ", &tm);
}

static int hw_credentials(gw_platform *p, int64_t now_ms, char *cid, size_t cidlen, char *user,
                          size_t userlen, char *pass, size_t passlen)
{
    char ts[16], mac[65];
    hour_stamp(now_ms, ts);
    /* Identity type 0 (device id), signature type 0 (HMAC-SHA256, timestamp not checked):
     * a gateway whose clock drifts still connects. */
    snprintf(cid, cidlen, "%s_0_0_%s", p->device, ts);
    gw_strlcpy(user, p->device, userlen);
    if (gw_platform_hmac_sha256_hex(ts, p->secret, mac))
        return GW_ERR;
    gw_strlcpy(pass, mac, passlen);
    memset(mac, 0, sizeof(mac));
    return GW_OK;
}

static int hw_subscriptions(gw_platform *p, char topics[][GW_PF_TOPIC_MAX])
{
    snprintf(topics[0], GW_PF_TOPIC_MAX, "$oc/devices/%s/sys/commands/#", p->device);
    return 1;
}

/* The platform's device id of our device dev: {product_id}_{node_id}, the id IoTDA gives a
 * sub-device added with node_id dev, when the sub-devices' product is configured. */
static const char *sub_id(gw_platform *p, const char *dev)
{
    if (!p->cfg.sub_product_key[0])
        return dev;
    snprintf(p->scratch, sizeof(p->scratch), "%s_%s", p->cfg.sub_product_key, dev);
    return p->scratch;
}

static cJSON *find_device(gw_platform *p, const char *id)
{
    cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(p->msg, "devices"))
    {
        if (!strcmp(gw_platform_str(d, "device_id", ""), id))
            return d;
    }
    return NULL;
}

static int hw_accept(gw_platform *p, int kind, const cJSON *items, int first)
{
    if (first)
        return 1;
    int have = cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(p->msg, "devices")), more = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        if (!find_device(p, sub_id(p, gw_platform_str(it, "device", ""))))
            more++; /* an upper bound: two items of one new device count twice */
    }
    return have + more <= MAX_DEVICES;
}

static const char *const services[] = {NULL, "event", "alarm", "forecast"};

/* A transition or event as flat properties: its scalar fields, under their own names. */
static cJSON *flat(const cJSON *it)
{
    cJSON *o = cJSON_CreateObject();
    const cJSON *f;
    cJSON_ArrayForEach(f, it)
    {
        if (!cJSON_IsObject(f) && !cJSON_IsArray(f) && strcmp(f->string, "device") &&
            strcmp(f->string, "seq"))
            cJSON_AddItemToObject(o, f->string, cJSON_Duplicate(f, 0));
    }
    return o;
}

static int hw_add(gw_platform *p, int kind, const cJSON *items)
{
    if (!p->msg) {
        p->msg = cJSON_CreateObject();
        if (!p->msg || !cJSON_AddArrayToObject(p->msg, "devices"))
            return GW_ENOMEM;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *id = sub_id(p, gw_platform_str(it, "device", ""));
        cJSON *d = find_device(p, id);
        if (!d) {
            d = cJSON_CreateObject();
            cJSON_AddStringToObject(d, "device_id", id);
            cJSON_AddArrayToObject(d, "services");
            cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(p->msg, "devices"), d);
        }
        cJSON *svcs = cJSON_GetObjectItemCaseSensitive(d, "services");
        char et[20];
        event_time(gw_platform_ms_of(gw_platform_str(
                       it, kind == GW_PK_READINGS || kind == GW_PK_EVENTS ? "obs" : "at", NULL)),
                   et);
        const char *svc = kind == GW_PK_READINGS ? p->cfg.service_id : services[kind];
        cJSON *last = cJSON_GetArrayItem(svcs, cJSON_GetArraySize(svcs) - 1);
        if (kind == GW_PK_READINGS && last &&
            !strcmp(gw_platform_str(last, "service_id", ""), svc) &&
            !strcmp(gw_platform_str(last, "event_time", ""), et)) {
            /* Readings of one device and time share one service entry. */
            cJSON *props = cJSON_GetObjectItemCaseSensitive(last, "properties");
            const char *metric = gw_platform_str(it, "metric", "value");
            cJSON_DeleteItemFromObjectCaseSensitive(props, metric);
            cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
            cJSON_AddItemToObject(props, metric, v ? cJSON_Duplicate(v, 0) : cJSON_CreateNull());
            continue;
        }
        cJSON *s = cJSON_CreateObject();
        cJSON_AddStringToObject(s, "service_id", svc);
        cJSON *props;
        if (kind == GW_PK_READINGS) {
            props = cJSON_AddObjectToObject(s, "properties");
            cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
            cJSON_AddItemToObject(props, gw_platform_str(it, "metric", "value"),
                                  v ? cJSON_Duplicate(v, 0) : cJSON_CreateNull());
        } else {
            cJSON_AddItemToObject(s, "properties", flat(it));
        }
        cJSON_AddStringToObject(s, "event_time", et);
        cJSON_AddItemToArray(svcs, s);
    }
    return GW_OK;
}

static int hw_finish(gw_platform *p, int kind, gw_pout *out)
{
    char topic[GW_PF_TOPIC_MAX];
    snprintf(topic, sizeof(topic), "$oc/devices/%s/sys/gateway/sub_devices/properties/report",
             p->device);
    return gw_pout_json(out, topic, p->msg, 0);
}

/* One $sub_device_manager event on events/up. */
static int manager_event(gw_platform *p, const char *type, cJSON *paras, const cJSON *birth,
                         gw_pout *out)
{
    cJSON *m = cJSON_CreateObject();
    cJSON *svcs = cJSON_AddArrayToObject(m, "services");
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "service_id", "$sub_device_manager");
    cJSON_AddStringToObject(s, "event_type", type);
    int64_t at = gw_platform_ms_of(gw_platform_str(birth, "at", NULL));
    if (at) {
        char et[20];
        event_time(at, et);
        cJSON_AddStringToObject(s, "event_time", et);
    }
    cJSON_AddItemToObject(s, "paras", paras);
    cJSON_AddItemToArray(svcs, s);
    char topic[GW_PF_TOPIC_MAX];
    snprintf(topic, sizeof(topic), "$oc/devices/%s/sys/events/up", p->device);
    return gw_pout_put(out, topic, m);
}

static int hw_device(gw_platform *p, const cJSON *birth, gw_pout *out)
{
    const char *dev = gw_platform_str(birth, "device", "");
    int online = gw_platform_birth_online(birth);
    int rc = GW_OK;
    if (online) {
        cJSON *paras = cJSON_CreateObject();
        cJSON *list = cJSON_AddArrayToObject(paras, "devices");
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "node_id", dev);
        cJSON_AddStringToObject(d, "name", dev);
        const char *type = gw_platform_str(birth, "type", NULL);
        if (type)
            cJSON_AddStringToObject(d, "description", type);
        if (p->cfg.sub_product_key[0])
            cJSON_AddStringToObject(d, "product_id", p->cfg.sub_product_key);
        /* The rest of the metadata rides in extension_info, which IoTDA keeps as given. */
        cJSON *ext = cJSON_Duplicate(birth, 1);
        static const char *const drop[] = {"v", "kind", "device", "online", "at"};
        for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
            cJSON_DeleteItemFromObjectCaseSensitive(ext, drop[i]);
        cJSON_AddItemToObject(d, "extension_info", ext);
        cJSON_AddItemToArray(list, d);
        rc = manager_event(p, "add_sub_device_request", paras, birth, out);
        if (rc)
            return rc;
    }
    cJSON *paras = cJSON_CreateObject();
    cJSON *list = cJSON_AddArrayToObject(paras, "device_statuses");
    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "device_id", sub_id(p, dev));
    cJSON_AddStringToObject(s, "status", online ? "ONLINE" : "OFFLINE");
    cJSON_AddItemToArray(list, s);
    return manager_event(p, "sub_device_update_status", paras, birth, out);
}

static int hw_command(gw_platform *p, const char *topic, const cJSON *doc, gw_pcmd *cmd,
                      cJSON **ctx)
{
    char prefix[GW_PF_TOPIC_MAX];
    int n = snprintf(prefix, sizeof(prefix), "$oc/devices/%s/sys/commands/", p->device);
    if (strncmp(topic, prefix, (size_t)n) || strncmp(topic + n, "request_id=", 11))
        return 0; /* our responses come back on .../commands/response/... */
    const char *rid = topic + n + 11;
    const char *name = gw_platform_str(doc, "command_name", NULL);
    const char *obj = gw_platform_str(doc, "object_device_id", NULL);
    /* The response topic must hold the whole request id, or it reaches nobody. */
    if (!rid[0] || !name ||
        (size_t)n + strlen("response/request_id=") + strlen(rid) >= GW_PF_TOPIC_MAX)
        return GW_EMALFORMED;
    /* Our device id from the platform's: without the {product_id}_ prefix; the gateway
     * itself addresses no device. */
    const char *dev = NULL;
    size_t pl = strlen(p->cfg.sub_product_key);
    if (obj && strcmp(obj, p->device)) {
        dev = obj;
        if (pl && !strncmp(obj, p->cfg.sub_product_key, pl) && obj[pl] == '_')
            dev = obj + pl + 1;
    }
    *ctx = cJSON_CreateObject();
    cJSON_AddStringToObject(*ctx, "request_id", rid);
    cJSON_AddStringToObject(*ctx, "name", name);
    return gw_platform__cmd(
        cmd, name, gw_platform__params(cJSON_GetObjectItemCaseSensitive(doc, "paras"), dev));
}

static int hw_reply(gw_platform *p, const cJSON *ctx, const cJSON *reply, gw_pout *out)
{
    const char *status = gw_platform_str(reply, "status", "failed");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddNumberToObject(m, "result_code",
                            !strcmp(status, "done") || !strcmp(status, "accepted") ? 0 : 1);
    cJSON_AddStringToObject(m, "response_name", gw_platform_str(ctx, "name", ""));
    cJSON_AddItemToObject(m, "paras", gw_platform__outcome(reply));
    char topic[GW_PF_TOPIC_MAX];
    snprintf(topic, sizeof(topic), "$oc/devices/%s/sys/commands/response/request_id=%s", p->device,
             gw_platform_str(ctx, "request_id", ""));
    return gw_pout_put(out, topic, m);
}

const gw_platform_ops gw_platform_huawei = {
    .name = "huawei-iotda",
    .credentials = hw_credentials,
    .subscriptions = hw_subscriptions,
    .accept = hw_accept,
    .add = hw_add,
    .finish = hw_finish,
    .device = hw_device,
    .command = hw_command,
    .reply = hw_reply,
};
