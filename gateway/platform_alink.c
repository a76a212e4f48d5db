/* Alibaba Cloud IoT Platform, Alink JSON over MQTT (docs/platforms.md has the sources and the
 * choices). The gateway signs its CONNECT (client id "...|securemode=..,signmethod=hmacsha256,
 * timestamp=..|", user "deviceName&productKey", password HMAC-SHA256 of the sorted
 * parameters keyed with the DeviceSecret); each sub-device is attached (thing.topo.add) and
 * logged in (combine.login), both signed with the sub-device's own DeviceSecret; then its
 * properties go to /sys/{pk}/{dn}/thing/event/property/post and its events and alarms to
 * .../thing/event/{identifier}/post, one sub-device per message. Service calls come on
 * /sys/{pk}/{dn}/thing/service/{identifier} and are answered on ..._reply. */
#include "gateway/platform.h"

#include "base/log.h"
#include "base/model.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SECRETS 4096

struct alink {
    char dev[128]; /* the sub-device of the message being built */
    unsigned long long id;
    size_t nsec;
    struct {
        char dev[128];
        char secret[128];
    } * sec;
};

static struct alink *st(gw_platform *p)
{
    return p->priv;
}

/* Reads "<device> <DeviceSecret>" lines (# comments). Returns 0 or GW_EINVAL. */
static int load_secrets(gw_platform *p, struct alink *a)
{
    if (!p->cfg.sub_secrets_file[0])
        return GW_OK;
    FILE *f = fopen(p->cfg.sub_secrets_file, "r");
    if (!f)
        return GW_EINVAL;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        char dev[128], sec[128];
        if (line[0] == '#' || sscanf(line, "%127s %127s", dev, sec) != 2)
            continue;
        if (a->nsec == MAX_SECRETS)
            break;
        if (!a->sec && !(a->sec = calloc(MAX_SECRETS, sizeof(*a->sec)))) {
            fclose(f);
            return GW_ENOMEM;
        }
        gw_strlcpy(a->sec[a->nsec].dev, dev, sizeof(a->sec[0].dev));
        gw_strlcpy(a->sec[a->nsec].secret, sec, sizeof(a->sec[0].secret));
        a->nsec++;
    }
    memset(line, 0, sizeof(line));
    fclose(f);
    return GW_OK;
}

static int al_init(gw_platform *p, char *err, size_t errlen)
{
    struct alink *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    p->priv = a;
    if (!p->cfg.product_key[0]) {
        snprintf(err, errlen, "uplink.product_key is required with format aliyun-alink");
        return GW_EINVAL;
    }
    if (load_secrets(p, a)) {
        snprintf(err, errlen, "uplink.sub_secrets_file %s cannot be read", p->cfg.sub_secrets_file);
        return GW_EINVAL;
    }
    return GW_OK;
}

static void al_destroy(gw_platform *p)
{
    struct alink *a = p->priv;
    if (a && a->sec) {
        memset(a->sec, 0, MAX_SECRETS * sizeof(*a->sec));
        free(a->sec);
    }
    free(a);
    p->priv = NULL;
}

/* The Alink sign: HMAC-SHA256 keyed with the secret over the parameters sorted by name,
 * each name followed by its value, nothing between. */
static int sign(const char *secret, const char *cid, const char *dn, const char *pk, const char *ts,
                char out[65])
{
    char content[768];
    snprintf(content, sizeof(content), "clientId%sdeviceName%sproductKey%stimestamp%s", cid, dn, pk,
             ts);
    return gw_platform_hmac_sha256_hex(secret, content, out);
}

static int al_credentials(gw_platform *p, int64_t now_ms, char *cid, size_t cidlen, char *user,
                          size_t userlen, char *pass, size_t passlen)
{
    const char *pk = p->cfg.product_key, *dn = p->device;
    char base[256], ts[24], mac[65];
    if (p->cfg.client_id[0])
        gw_strlcpy(base, p->cfg.client_id, sizeof(base));
    else
        snprintf(base, sizeof(base), "%s.%s", pk, dn);
    snprintf(ts, sizeof(ts), "%lld", (long long)now_ms);
    /* securemode 2: TLS direct connection; 3: TCP direct connection. */
    int tls = !strncmp(p->cfg.uri, "ssl://", 6) || !strncmp(p->cfg.uri, "mqtts://", 8);
    snprintf(cid, cidlen, "%s|securemode=%d,signmethod=hmacsha256,timestamp=%s|", base, tls ? 2 : 3,
             ts);
    snprintf(user, userlen, "%s&%s", dn, pk);
    if (sign(p->secret, base, dn, pk, ts, mac))
        return GW_ERR;
    gw_strlcpy(pass, mac, passlen);
    return GW_OK;
}

static int al_subscriptions(gw_platform *p, char topics[][GW_PF_TOPIC_MAX])
{
    int n = 0;
    snprintf(topics[n++], GW_PF_TOPIC_MAX, "/sys/%s/%s/thing/service/+", p->cfg.product_key,
             p->device);
    if (p->cfg.sub_product_key[0])
        snprintf(topics[n++], GW_PF_TOPIC_MAX, "/sys/%s/+/thing/service/+", p->cfg.sub_product_key);
    return n;
}

/* One sub-device per message (its own topic) and, for properties, one value per property:
 * a row joins while both hold. */
static int al_accept(gw_platform *p, int kind, const cJSON *items, int first)
{
    if (first)
        return 1;
    if (kind != GW_PK_READINGS)
        return 0;
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(p->msg, "params");
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        if (strcmp(gw_platform_str(it, "device", ""), st(p)->dev) ||
            cJSON_GetObjectItemCaseSensitive(params, gw_platform_str(it, "metric", "value")))
            return 0;
    }
    return 1;
}

static const char *const events[] = {NULL, "event", "alarm", "forecast"};

static cJSON *request(gw_platform *p, const char *method)
{
    cJSON *m = cJSON_CreateObject();
    char id[24];
    snprintf(id, sizeof(id), "%llu", ++st(p)->id);
    cJSON_AddStringToObject(m, "id", id);
    cJSON_AddStringToObject(m, "version", "1.0");
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(m, "sys"), "ack", 0);
    cJSON_AddStringToObject(m, "method", method);
    return m;
}

static int al_add(gw_platform *p, int kind, const cJSON *items)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *dev = gw_platform_str(it, "device", "");
        if (!p->msg) {
            char method[96];
            if (kind == GW_PK_READINGS)
                snprintf(method, sizeof(method), "thing.event.property.post");
            else
                snprintf(method, sizeof(method), "thing.event.%s.post", events[kind]);
            p->msg = request(p, method);
            cJSON_AddObjectToObject(p->msg, "params");
            gw_strlcpy(st(p)->dev, dev, sizeof(st(p)->dev));
        } else if (strcmp(dev, st(p)->dev) ||
                   (kind != GW_PK_READINGS &&
                    cJSON_GetObjectItemCaseSensitive(p->msg, "params")->child)) {
            /* Only a row holding several devices' items gets here: Alink has no message for
             * them together; counted (docs/platforms.md). */
            p->st.bad_items++;
            continue;
        }
        cJSON *params = cJSON_GetObjectItemCaseSensitive(p->msg, "params");
        int64_t ms = gw_platform_ms_of(gw_platform_str(
            it, kind == GW_PK_READINGS || kind == GW_PK_EVENTS ? "obs" : "at", NULL));
        if (kind == GW_PK_READINGS) {
            const char *metric = gw_platform_str(it, "metric", "value");
            cJSON *v = cJSON_CreateObject();
            const cJSON *val = cJSON_GetObjectItemCaseSensitive(it, "value");
            cJSON_AddItemToObject(v, "value", val ? cJSON_Duplicate(val, 0) : cJSON_CreateNull());
            cJSON_AddNumberToObject(v, "time", (double)ms);
            cJSON_DeleteItemFromObjectCaseSensitive(params, metric);
            cJSON_AddItemToObject(params, metric, v);
        } else {
            cJSON *value = cJSON_AddObjectToObject(params, "value");
            const cJSON *f;
            cJSON_ArrayForEach(f, it)
            {
                if (!cJSON_IsObject(f) && !cJSON_IsArray(f) && strcmp(f->string, "device") &&
                    strcmp(f->string, "seq"))
                    cJSON_AddItemToObject(value, f->string, cJSON_Duplicate(f, 0));
            }
            cJSON_AddNumberToObject(params, "time", (double)ms);
        }
    }
    return GW_OK;
}

static const char *sub_pk(gw_platform *p)
{
    return p->cfg.sub_product_key[0] ? p->cfg.sub_product_key : p->cfg.product_key;
}

static int al_finish(gw_platform *p, int kind, gw_pout *out)
{
    char topic[GW_PF_TOPIC_MAX];
    if (kind == GW_PK_READINGS)
        snprintf(topic, sizeof(topic), "/sys/%s/%s/thing/event/property/post", sub_pk(p),
                 st(p)->dev);
    else
        snprintf(topic, sizeof(topic), "/sys/%s/%s/thing/event/%s/post", sub_pk(p), st(p)->dev,
                 events[kind]);
    return gw_pout_json(out, topic, p->msg, 0);
}

static const char *secret_of(struct alink *a, const char *dev)
{
    for (size_t i = 0; i < a->nsec; i++)
        if (!strcmp(a->sec[i].dev, dev))
            return a->sec[i].secret;
    return NULL;
}

/* The signed identity of a sub-device, as thing.topo.add and combine.login carry it. */
static cJSON *identity(gw_platform *p, const char *dev, const char *secret, const char *ts,
                       const char *method_key)
{
    char cid[300], mac[65];
    snprintf(cid, sizeof(cid), "%s&%s", sub_pk(p), dev);
    if (sign(secret, cid, dev, sub_pk(p), ts, mac))
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "productKey", sub_pk(p));
    cJSON_AddStringToObject(o, "deviceName", dev);
    cJSON_AddStringToObject(o, "clientId", cid);
    cJSON_AddStringToObject(o, "timestamp", ts);
    cJSON_AddStringToObject(o, method_key, "hmacSha256");
    cJSON_AddStringToObject(o, "sign", mac);
    return o;
}

static int al_device(gw_platform *p, const cJSON *birth, gw_pout *out)
{
    struct alink *a = st(p);
    const char *dev = gw_platform_str(birth, "device", "");
    char topic[GW_PF_TOPIC_MAX];
    int rc;
    if (!gw_platform_birth_online(birth)) {
        cJSON *m = request(p, "combine.logout");
        cJSON *params = cJSON_AddObjectToObject(m, "params");
        cJSON_AddStringToObject(params, "productKey", sub_pk(p));
        cJSON_AddStringToObject(params, "deviceName", dev);
        snprintf(topic, sizeof(topic), "/ext/session/%s/%s/combine/logout", p->cfg.product_key,
                 p->device);
        return gw_pout_put(out, topic, m);
    }
    const char *secret = secret_of(a, dev);
    if (!secret) {
        /* Without the sub-device's DeviceSecret neither request can be signed. */
        p->st.unregistered++;
        return GW_OK;
    }
    char ts[24];
    int64_t at = gw_platform_ms_of(gw_platform_str(birth, "at", NULL));
    snprintf(ts, sizeof(ts), "%lld", (long long)(at ? at : gw_now_ms()));
    cJSON *m = request(p, "thing.topo.add");
    cJSON *list = cJSON_AddArrayToObject(m, "params");
    cJSON_AddItemToArray(list, identity(p, dev, secret, ts, "signmethod"));
    snprintf(topic, sizeof(topic), "/sys/%s/%s/thing/topo/add", p->cfg.product_key, p->device);
    rc = gw_pout_put(out, topic, m);
    if (rc)
        return rc;
    m = request(p, "combine.login");
    cJSON *params = identity(p, dev, secret, ts, "signMethod");
    cJSON_AddStringToObject(params, "cleanSession", "true");
    cJSON_AddItemToObject(m, "params", params);
    cJSON_DeleteItemFromObjectCaseSensitive(m, "version"); /* combine.login carries none */
    cJSON_DeleteItemFromObjectCaseSensitive(m, "sys");
    snprintf(topic, sizeof(topic), "/ext/session/%s/%s/combine/login", p->cfg.product_key,
             p->device);
    return gw_pout_put(out, topic, m);
}

static int al_command(gw_platform *p, const char *topic, const cJSON *doc, gw_pcmd *cmd,
                      cJSON **ctx)
{
    char pk[64], dn[128], ident[96];
    int n = 0;
    if (sscanf(topic, "/sys/%63[^/]/%127[^/]/thing/service/%95[^/]%n", pk, dn, ident, &n) != 3 ||
        topic[n])
        return 0;
    size_t il = strlen(ident);
    if (il > 6 && !strcmp(ident + il - 6, "_reply"))
        return 0; /* our own reply, echoed */
    const char *dev = NULL;
    if (!strcmp(pk, p->cfg.product_key) && !strcmp(dn, p->device))
        dev = NULL; /* the gateway itself */
    else if (!strcmp(pk, sub_pk(p)))
        dev = dn;
    else
        return 0;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(doc, "id");
    if (!cJSON_IsString(id))
        return GW_EMALFORMED;
    char rtopic[GW_PF_TOPIC_MAX];
    if ((size_t)snprintf(rtopic, sizeof(rtopic), "%s_reply", topic) >= sizeof(rtopic))
        return GW_EMALFORMED; /* a cut reply topic would reach nobody */
    *ctx = cJSON_CreateObject();
    cJSON_AddStringToObject(*ctx, "topic", rtopic);
    cJSON_AddStringToObject(*ctx, "id", id->valuestring);
    return gw_platform__cmd(
        cmd, ident, gw_platform__params(cJSON_GetObjectItemCaseSensitive(doc, "params"), dev));
}

static int al_reply(gw_platform *p, const cJSON *ctx, const cJSON *reply, gw_pout *out)
{
    const char *status = gw_platform_str(reply, "status", "failed");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "id", gw_platform_str(ctx, "id", ""));
    /* 200 as Alink's success; 400 (refused: the request) and 500 (failed: the execution). */
    cJSON_AddNumberToObject(m, "code",
                            !strcmp(status, "done") || !strcmp(status, "accepted") ? 200
                            : !strcmp(status, "refused")                           ? 400
                                                                                   : 500);
    cJSON_AddItemToObject(m, "data", gw_platform__outcome(reply));
    return gw_pout_put(out, gw_platform_str(ctx, "topic", ""), m);
}

const gw_platform_ops gw_platform_alink = {
    .name = "aliyun-alink",
    .init = al_init,
    .destroy = al_destroy,
    .credentials = al_credentials,
    .subscriptions = al_subscriptions,
    .accept = al_accept,
    .add = al_add,
    .finish = al_finish,
    .device = al_device,
    .command = al_command,
    .reply = al_reply,
};
