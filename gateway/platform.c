/* The destination formats' common part: the table, the row walk that announces devices and
 * fills one message, the commands awaiting replies, HMAC. See platform.h. */
#include "gateway/platform.h"

#include "base/model.h"

#include <cjson/cJSON.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEEN_MAX 65536 /* devices remembered per session; beyond, announced again */

const char *const gw_platform_names[] = {"native", "thingsboard", "huawei-iotda", "aliyun-alink",
                                         NULL};

static const gw_platform_ops *const formats[GW_PF_COUNT] = {
    &gw_platform_native, &gw_platform_tb, &gw_platform_huawei, &gw_platform_alink};

void gw_pout_clear(gw_pout *o)
{
    for (int i = 0; i < o->n; i++)
        free(o->m[i].payload);
    o->n = 0;
}

void gw_pout_free(gw_pout *o)
{
    gw_pout_clear(o);
    free(o->m);
    o->m = NULL;
    o->cap = 0;
}

int gw_pout_take(gw_pout *o, const char *topic, char *payload, size_t len, int retained)
{
    if (!payload)
        return GW_ENOMEM;
    if (o->n == o->cap) {
        int cap = o->cap ? o->cap * 2 : 8;
        gw_pmsg *m = realloc(o->m, (size_t)cap * sizeof(*m));
        if (!m) {
            free(payload);
            return GW_ENOMEM;
        }
        o->m = m;
        o->cap = cap;
    }
    gw_pmsg *m = &o->m[o->n];
    if ((size_t)gw_strlcpy(m->topic, topic, sizeof(m->topic)) >= sizeof(m->topic)) {
        free(payload);
        return GW_EINVAL;
    }
    m->payload = payload;
    m->len = len;
    m->retained = retained;
    o->n++;
    return GW_OK;
}

int gw_pout_json(gw_pout *o, const char *topic, const cJSON *j, int retained)
{
    char *s = cJSON_PrintUnformatted(j);
    return gw_pout_take(o, topic, s, s ? strlen(s) : 0, retained);
}

int gw_pout_put(gw_pout *o, const char *topic, cJSON *j)
{
    int rc = gw_pout_json(o, topic, j, 0);
    cJSON_Delete(j);
    return rc;
}

void gw_pcmd_free(gw_pcmd *c)
{
    free(c->payload);
    c->payload = NULL;
}

int gw_platform_hmac_sha256_hex(const char *key, const char *msg, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)msg, strlen(msg), md,
              &mdlen) ||
        mdlen != 32)
        return GW_ERR;
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
    return GW_OK;
}

int64_t gw_platform_ms_of(const char *iso)
{
    struct tm tm;
    int ms = 0;
    if (!iso)
        return 0;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
               &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

int gw_platform_birth_online(const cJSON *birth)
{
    return !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(birth, "online"));
}

const char *gw_platform_str(const cJSON *o, const char *name, const char *def)
{
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name));
    return s ? s : def;
}

/* Our command payload from a platform's parameters: an object (a bare value becomes
 * {"value":..}) with the addressed device added when it names none. */
cJSON *gw_platform__params(const cJSON *params, const char *device)
{
    cJSON *o = cJSON_IsObject(params) ? cJSON_Duplicate(params, 1) : cJSON_CreateObject();
    if (params && !cJSON_IsObject(params) && !cJSON_IsNull(params))
        cJSON_AddItemToObject(o, "value", cJSON_Duplicate(params, 1));
    if (device && device[0] && !cJSON_GetObjectItemCaseSensitive(o, "device"))
        cJSON_AddStringToObject(o, "device", device);
    return o;
}

/* Fills cmd's name and payload; GW_EMALFORMED when the name does not fit. */
int gw_platform__cmd(gw_pcmd *cmd, const char *name, cJSON *payload)
{
    if (!name || !name[0] ||
        (size_t)gw_strlcpy(cmd->name, name, sizeof(cmd->name)) >= sizeof(cmd->name)) {
        cJSON_Delete(payload);
        return GW_EMALFORMED;
    }
    for (char *c = cmd->name; *c; c++)
        if (*c == '_')
            *c = '.'; /* model identifiers cannot hold '.': rule_set is our rule.set */
    cmd->payload = cJSON_PrintUnformatted(payload);
    cJSON_Delete(payload);
    if (!cmd->payload)
        return GW_ENOMEM;
    cmd->len = strlen(cmd->payload);
    return 1;
}

/* Our reply's status, reason and result as one object (the platforms' "data"/"paras"). */
cJSON *gw_platform__outcome(const cJSON *reply)
{
    cJSON *o = cJSON_CreateObject();
    const char *status = gw_platform_str(reply, "status", "failed");
    cJSON_AddBoolToObject(o, "success", !strcmp(status, "done") || !strcmp(status, "accepted"));
    cJSON_AddStringToObject(o, "status", status);
    const char *reason = gw_platform_str(reply, "reason", NULL);
    if (reason)
        cJSON_AddStringToObject(o, "reason", reason);
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(reply, "result");
    if (result)
        cJSON_AddItemToObject(o, "result", cJSON_Duplicate(result, 1));
    return o;
}

gw_platform *gw_platform_new(const gw_uplink_config *cfg, const char *gw, const char *secret,
                             char *err, size_t errlen)
{
    if (cfg->format < 0 || cfg->format >= GW_PF_COUNT) {
        snprintf(err, errlen, "uplink.format: unknown format %d", cfg->format);
        return NULL;
    }
    gw_platform *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->ops = formats[cfg->format];
    p->cfg = *cfg;
    gw_strlcpy(p->gw, gw, sizeof(p->gw));
    gw_strlcpy(p->device, cfg->platform_device[0] ? cfg->platform_device : gw, sizeof(p->device));
    gw_strlcpy(p->secret, secret ? secret : "", sizeof(p->secret));
    err[0] = 0;
    if (p->ops->init && p->ops->init(p, err, errlen)) {
        gw_platform_free(p);
        return NULL;
    }
    return p;
}

static void seen_clear(gw_platform *p)
{
    for (size_t i = 0; i < p->capseen; i++) {
        free(p->seen[i]);
        p->seen[i] = NULL;
    }
    p->nseen = 0;
}

void gw_platform_free(gw_platform *p)
{
    if (!p)
        return;
    seen_clear(p);
    free(p->seen);
    cJSON_Delete(p->msg);
    for (size_t i = 0; i < sizeof(p->pend) / sizeof(p->pend[0]); i++)
        cJSON_Delete(p->pend[i].ctx);
    if (p->ops->destroy)
        p->ops->destroy(p);
    memset(p->secret, 0, sizeof(p->secret));
    free(p);
}

const gw_platform_ops *gw_platform_ops_of(const gw_platform *p)
{
    return p->ops;
}

int gw_platform_is_native(const gw_platform *p)
{
    return p->ops == &gw_platform_native;
}

void gw_platform_session(gw_platform *p)
{
    seen_clear(p);
}

static size_t hash_of(const char *s)
{
    size_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* 1 when id was already announced in this session; else remembers it and returns 0. */
static int seen_add(gw_platform *p, const char *id)
{
    if (p->nseen * 2 >= p->capseen) {
        if (p->capseen >= SEEN_MAX * 2) {
            seen_clear(p); /* bounded: everyone is announced again, which is harmless */
        } else {
            size_t cap = p->capseen ? p->capseen * 2 : 64;
            char **n = calloc(cap, sizeof(*n));
            if (!n)
                return 0;
            for (size_t i = 0; i < p->capseen; i++) {
                if (!p->seen[i])
                    continue;
                size_t j = hash_of(p->seen[i]) & (cap - 1);
                while (n[j])
                    j = (j + 1) & (cap - 1);
                n[j] = p->seen[i];
            }
            free(p->seen);
            p->seen = n;
            p->capseen = cap;
        }
    }
    size_t j = hash_of(id) & (p->capseen - 1);
    for (; p->seen[j]; j = (j + 1) & (p->capseen - 1))
        if (!strcmp(p->seen[j], id))
            return 1;
    p->seen[j] = strdup(id);
    if (p->seen[j])
        p->nseen++;
    return 0;
}

/* Announces the devices of items not yet seen in this session. Only the id and type are
 * known from an item; the birth message (gw_platform_device) carries the rest. */
static void announce(gw_platform *p, const cJSON *items, gw_pout *out)
{
    if (!p->ops->device)
        return;
    const cJSON *it;
    cJSON_ArrayForEach(it, items)
    {
        const char *dev = gw_platform_str(it, "device", NULL);
        if (!dev || seen_add(p, dev))
            continue;
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "device", dev);
        const char *type = gw_platform_str(it, "type", NULL);
        if (type)
            cJSON_AddStringToObject(b, "type", type);
        cJSON_AddBoolToObject(b, "online", 1);
        /* The item's own time: the announcement is then a function of the data alone. */
        const char *at = gw_platform_str(it, "obs", gw_platform_str(it, "at", NULL));
        if (at)
            cJSON_AddStringToObject(b, "at", at);
        int before = out->n;
        if (!p->ops->device(p, b, out) && out->n > before)
            p->st.registered++;
        cJSON_Delete(b);
    }
}

/* The items of one row as an array (NULL when the row does not parse). Items without a
 * device are removed and counted: every format addresses data by device. */
static cJSON *row_items(gw_platform *p, const char *row, size_t len)
{
    char *s = malloc(len + 3);
    if (!s)
        return NULL;
    s[0] = '[';
    memcpy(s + 1, row, len);
    s[len + 1] = ']';
    s[len + 2] = 0;
    cJSON *a = cJSON_ParseWithLength(s, len + 2);
    free(s);
    if (!cJSON_IsArray(a)) {
        cJSON_Delete(a);
        p->st.bad_items++;
        return NULL;
    }
    for (cJSON *it = a->child, *next; it; it = next) {
        next = it->next;
        if (!cJSON_IsObject(it) || !gw_platform_str(it, "device", NULL)) {
            cJSON_Delete(cJSON_DetachItemViaPointer(a, it));
            p->st.bad_items++;
        }
    }
    return a;
}

int gw_platform_batch(gw_platform *p, int kind, const char *const *row, const size_t *len, size_t n,
                      int64_t first_id, int64_t last_id, gw_pout *out)
{
    if (p->ops->rows)
        return p->ops->rows(p, kind, row, len, n, first_id, last_id, out);
    size_t used = 0;
    int began = 0;
    for (; used < n; used++) {
        cJSON *items = row_items(p, row[used], len[used]);
        if (!items || !cJSON_GetArraySize(items)) {
            cJSON_Delete(items);
            continue; /* consumed: nothing of it can be sent */
        }
        if (!p->ops->accept(p, kind, items, !began)) {
            cJSON_Delete(items);
            break;
        }
        announce(p, items, out);
        int rc = p->ops->add(p, kind, items);
        cJSON_Delete(items);
        if (rc)
            return rc;
        began = 1;
    }
    if (!began) {
        /* Nothing usable in the run: an empty message would be refused by the platform;
         * the rows are consumed with nothing to send (out ends with no data message). */
        cJSON_Delete(p->msg);
        p->msg = NULL;
        return used ? (int)used : 1;
    }
    int rc = p->ops->finish(p, kind, out);
    cJSON_Delete(p->msg);
    p->msg = NULL;
    return rc ? rc : (int)used;
}

int gw_platform_device(gw_platform *p, const char *birth, size_t len, gw_pout *out)
{
    if (!p->ops->device)
        return 0;
    cJSON *b = cJSON_ParseWithLength(birth, len);
    if (!cJSON_IsObject(b) || !gw_platform_str(b, "device", NULL)) {
        cJSON_Delete(b);
        p->st.bad_items++;
        return GW_EINVAL;
    }
    int before = out->n;
    int rc = p->ops->device(p, b, out);
    if (!rc && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b, "online"))) {
        seen_add(p, gw_platform_str(b, "device", ""));
        if (out->n > before)
            p->st.registered++;
    }
    cJSON_Delete(b);
    return rc ? rc : out->n - before;
}

int gw_platform_command(gw_platform *p, const char *topic, const char *payload, size_t len,
                        gw_pcmd *cmd)
{
    memset(cmd, 0, sizeof(*cmd));
    if (!p->ops->command)
        return 0;
    cJSON *doc = cJSON_ParseWithLength(payload, len);
    cJSON *ctx = NULL;
    int rc = doc ? p->ops->command(p, topic, doc, cmd, &ctx) : GW_EMALFORMED;
    cJSON_Delete(doc);
    if (rc <= 0) {
        cJSON_Delete(ctx);
        gw_pcmd_free(cmd);
        if (rc < 0)
            p->st.commands_bad++;
        return rc;
    }
    p->st.commands++;
    /* The oldest pending command gives its place up: it is bounded, and its platform has
     * long timed it out (ThingsBoard, IoTDA and Alink wait seconds, not minutes). */
    size_t n = sizeof(p->pend) / sizeof(p->pend[0]);
    struct pending *slot = &p->pend[p->next_corr % n];
    if (slot->ctx)
        p->st.replies_lost++;
    cJSON_Delete(slot->ctx);
    snprintf(slot->corr, sizeof(slot->corr), "%s-pf-%llu", p->gw,
             (unsigned long long)++p->next_corr);
    slot->ctx = ctx;
    gw_strlcpy(cmd->corr, slot->corr, sizeof(cmd->corr));
    return 1;
}

int gw_platform_reply(gw_platform *p, const char *reply, size_t len, int final_any, gw_pout *out)
{
    cJSON *r = cJSON_ParseWithLength(reply, len);
    const char *id = gw_platform_str(r, "id", NULL);
    const char *status = gw_platform_str(r, "status", "");
    int rc = 0;
    if (!id) {
        rc = GW_EINVAL;
        goto done;
    }
    if (!final_any && strcmp(status, "refused") && strcmp(status, "done") &&
        strcmp(status, "failed"))
        goto done; /* accepted: the outcome follows */
    for (size_t i = 0; i < sizeof(p->pend) / sizeof(p->pend[0]); i++) {
        struct pending *s = &p->pend[i];
        if (!s->ctx || strcmp(s->corr, id))
            continue;
        rc = p->ops->reply(p, s->ctx, r, out);
        cJSON_Delete(s->ctx);
        s->ctx = NULL;
        if (!rc) {
            p->st.replies++;
            rc = 1;
        }
        goto done;
    }
done:
    cJSON_Delete(r);
    return rc;
}

void gw_platform_get_stats(const gw_platform *p, gw_platform_stats *out)
{
    *out = p->st;
}
