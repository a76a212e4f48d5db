/* ThingsBoard's MQTT gateway API (docs/platforms.md has the source and the choices):
 * v1/gateway/connect and /disconnect announce a device, v1/gateway/attributes carries its
 * metadata, v1/gateway/telemetry its data keyed by device name, v1/gateway/rpc brings
 * server-side RPC ({"device","data":{"id","method","params"}}) and takes the response
 * ({"device","id","data"}). */
#include "gateway/platform.h"

#include "base/model.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#define T_CONNECT "v1/gateway/connect"
#define T_DISCONNECT "v1/gateway/disconnect"
#define T_ATTRIBUTES "v1/gateway/attributes"
#define T_TELEMETRY "v1/gateway/telemetry"
#define T_RPC "v1/gateway/rpc"

static int tb_credentials(gw_platform *p, int64_t now_ms, char *cid, size_t cidlen, char *user,
                          size_t userlen, char *pass, size_t passlen)
{
    /* The access token is the user name; with a user name configured, the secret is the
     * password of ThingsBoard's basic MQTT credentials. */
    gw_strlcpy(cid, p->cfg.client_id[0] ? p->cfg.client_id : p->gw, cidlen);
    if (p->cfg.username[0]) {
        gw_strlcpy(user, p->cfg.username, userlen);
        gw_strlcpy(pass, p->secret, passlen);
    } else {
        gw_strlcpy(user, p->secret, userlen);
        pass[0] = 0;
    }
    return GW_OK;
}

static int tb_subscriptions(gw_platform *p, char topics[][GW_PF_TOPIC_MAX])
{
    gw_strlcpy(topics[0], T_RPC, GW_PF_TOPIC_MAX);
    return 1;
}

static int tb_accept(gw_platform *p, int kind, const cJSON *items, int first)
{
    return 1;
}

/* The {"ts","values"} entry of device dev at ts in the message, made when missing. */
static cJSON *entry(gw_platform *p, const char *dev, int64_t ts)
{
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(p->msg, dev);
    if (!arr)
        arr = cJSON_AddArrayToObject(p->msg, dev);
    cJSON *last = arr ? cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1) : NULL;
    if (last && cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(last, "ts")) == (double)ts)
        return cJSON_GetObjectItemCaseSensitive(last, "values");
    cJSON *e = cJSON_CreateObject();
    cJSON_AddNumberToObject(e, "ts", (double)ts);
    cJSON *v = cJSON_AddObjectToObject(e, "values");
    cJSON_AddItemToArray(arr, e);
    return v;
}

static void put(cJSON *values, const char *key, cJSON *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(values, key); /* a later value of a key wins */
    cJSON_AddItemToObject(values, key, v);
}

static int tb_add(gw_platform *p, int kind, const cJSON *items)
{
    if (!p->msg && !(p->msg = cJSON_CreateObject()))
        return GW_ENOMEM;
    const cJSON *it;
    char key[160];
    cJSON_ArrayForEach(it, items)
    {
        const char *dev = gw_platform_str(it, "device", "");
        int64_t ts = gw_platform_ms_of(gw_platform_str(
            it, kind == GW_PK_READINGS || kind == GW_PK_EVENTS ? "obs" : "at", NULL));
        cJSON *values = entry(p, dev, ts);
        if (!values)
            return GW_ENOMEM;
        if (kind == GW_PK_READINGS) {
            const char *metric = gw_platform_str(it, "metric", "value");
            cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
            put(values, metric, v ? cJSON_Duplicate(v, 1) : cJSON_CreateNull());
            const char *q = gw_platform_str(it, "quality", "good");
            if (strcmp(q, "good")) {
                snprintf(key, sizeof(key), "%s_quality", metric);
                put(values, key, cJSON_CreateString(q));
            }
        } else if (kind == GW_PK_EVENTS) {
            const char *ev = gw_platform_str(it, "event", "event");
            put(values, ev,
                cJSON_CreateBool(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "active"))));
            const char *detail = gw_platform_str(it, "detail", NULL);
            if (detail) {
                snprintf(key, sizeof(key), "%s_detail", ev);
                put(values, key, cJSON_CreateString(detail));
            }
        } else {
            /* A transition is one JSON value (ThingsBoard stores JSON telemetry) under
             * "alarm" or "forecast": rule chains read its fields. */
            put(values, kind == GW_PK_ALARMS ? "alarm" : "forecast", cJSON_Duplicate(it, 1));
        }
    }
    return GW_OK;
}

static int tb_finish(gw_platform *p, int kind, gw_pout *out)
{
    return gw_pout_json(out, T_TELEMETRY, p->msg, 0);
}

static void copy_str(cJSON *to, const char *key, const cJSON *from, const char *name)
{
    const char *s = gw_platform_str(from, name, NULL);
    if (s)
        cJSON_AddStringToObject(to, key, s);
}

static int tb_device(gw_platform *p, const cJSON *birth, gw_pout *out)
{
    const char *dev = gw_platform_str(birth, "device", "");
    int rc;
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "device", dev);
    if (!gw_platform_birth_online(birth)) {
        return gw_pout_put(out, T_DISCONNECT, m);
    }
    copy_str(m, "type", birth, "type");
    rc = gw_pout_put(out, T_CONNECT, m);
    if (rc)
        return rc;
    /* The metadata as client-side attributes of the device, flat where ThingsBoard's own
     * widgets look (latitude/longitude for maps). */
    cJSON *attrs = cJSON_CreateObject();
    static const char *const keys[] = {"type", "vendor", "model", "profile", "protocol"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        copy_str(attrs, keys[i], birth, keys[i]);
    const cJSON *site = cJSON_GetObjectItemCaseSensitive(birth, "site");
    if (cJSON_IsObject(site)) {
        copy_str(attrs, "site_id", site, "id");
        copy_str(attrs, "site_name", site, "name");
        copy_str(attrs, "division", site, "division");
        copy_str(attrs, "address", site, "address");
        const cJSON *lat = cJSON_GetObjectItemCaseSensitive(site, "lat");
        const cJSON *lon = cJSON_GetObjectItemCaseSensitive(site, "lon");
        if (cJSON_IsNumber(lat) && cJSON_IsNumber(lon)) {
            cJSON_AddNumberToObject(attrs, "latitude", lat->valuedouble);
            cJSON_AddNumberToObject(attrs, "longitude", lon->valuedouble);
        }
    }
    const cJSON *metrics = cJSON_GetObjectItemCaseSensitive(birth, "metrics");
    if (cJSON_IsArray(metrics))
        cJSON_AddItemToObject(attrs, "metrics", cJSON_Duplicate(metrics, 1));
    if (attrs->child) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddItemToObject(a, dev, attrs);
        rc = gw_pout_put(out, T_ATTRIBUTES, a);
    } else {
        cJSON_Delete(attrs);
    }
    return rc;
}

static int tb_command(gw_platform *p, const char *topic, const cJSON *doc, gw_pcmd *cmd,
                      cJSON **ctx)
{
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    const char *method = gw_platform_str(data, "method", NULL);
    const char *dev = gw_platform_str(doc, "device", NULL);
    if (strcmp(topic, T_RPC) || !cJSON_IsObject(data))
        return 0;
    if (!method) /* a response (ours, echoed by the broker) has no method */
        return cJSON_GetObjectItemCaseSensitive(doc, "id") ? 0 : GW_EMALFORMED;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(data, "id");
    if (!dev || !id)
        return GW_EMALFORMED;
    *ctx = cJSON_CreateObject();
    cJSON_AddStringToObject(*ctx, "device", dev);
    cJSON_AddItemToObject(*ctx, "id", cJSON_Duplicate(id, 1));
    return gw_platform__cmd(
        cmd, method, gw_platform__params(cJSON_GetObjectItemCaseSensitive(data, "params"), dev));
}

static int tb_reply(gw_platform *p, const cJSON *ctx, const cJSON *reply, gw_pout *out)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "device", gw_platform_str(ctx, "device", ""));
    cJSON_AddItemToObject(m, "id", cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(ctx, "id"), 1));
    cJSON_AddItemToObject(m, "data", gw_platform__outcome(reply));
    return gw_pout_put(out, T_RPC, m);
}

const gw_platform_ops gw_platform_tb = {
    .name = "thingsboard",
    .credentials = tb_credentials,
    .subscriptions = tb_subscriptions,
    .accept = tb_accept,
    .add = tb_add,
    .finish = tb_finish,
    .device = tb_device,
    .command = tb_command,
    .reply = tb_reply,
};
