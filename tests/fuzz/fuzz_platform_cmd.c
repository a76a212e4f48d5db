/* libFuzzer target for the platform formats' command parsers (gateway/platform*.c):
 * ThingsBoard RPC, Huawei IoTDA commands and Alink service calls. The first byte picks
 * the format and whether the topic is the format's command topic with a fuzzed tail
 * (request id, device and service names) or wholly fuzzed; the input up to the first
 * newline is that topic part, the rest the payload. A translated command is then
 * answered with each of our statuses, and invariants that must hold for any input
 * abort the run: a command is a JSON object under a known-length name, and its one
 * response goes exactly to the response topic the platform documents for the request
 * (IoTDA .../commands/response/request_id={id}, Alink {topic}_reply, ThingsBoard
 * v1/gateway/rpc), as valid JSON. */
// FUZZ_SOURCES: gateway/platform.c gateway/platform_native.c gateway/platform_tb.c
// gateway/platform_huawei.c gateway/platform_alink.c base/model.c base/log.c FUZZ_LIBS: -lcjson
// -lssl -lcrypto -lm
#include "gateway/platform.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gw_platform *pf[3];

static void setup(void)
{
    static const int formats[3] = {GW_PF_THINGSBOARD, GW_PF_HUAWEI, GW_PF_ALINK};
    for (int i = 0; i < 3; i++) {
        gw_uplink_config cfg;
        memset(&cfg, 0, sizeof(cfg));
        cfg.format = formats[i];
        snprintf(cfg.name, sizeof(cfg.name), "default");
        snprintf(cfg.platform_device, sizeof(cfg.platform_device), "gw01");
        snprintf(cfg.product_key, sizeof(cfg.product_key), "pk");
        if (i == 1)
            snprintf(cfg.sub_product_key, sizeof(cfg.sub_product_key), "prod01");
        snprintf(cfg.service_id, sizeof(cfg.service_id), "data");
        char err[256];
        pf[i] = gw_platform_new(&cfg, "gw01", "secret", err, sizeof(err));
        if (!pf[i])
            abort();
    }
}

static const char *const prefixes[3] = {"v1/gateway/rpc", "$oc/devices/gw01/sys/commands/",
                                        "/sys/"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!pf[0])
        setup();
    if (size < 1)
        return 0;
    int f = data[0] % 3, templated = (data[0] >> 2) & 1;
    data++;
    size--;
    const uint8_t *nl = memchr(data, '\n', size);
    size_t tl = nl ? (size_t)(nl - data) : 0;
    if (tl > 600)
        return 0;
    char topic[1024];
    size_t pl = templated ? strlen(prefixes[f]) : 0;
    memcpy(topic, prefixes[f], pl);
    memcpy(topic + pl, data, tl);
    topic[pl + tl] = 0;
    if (strlen(topic) != pl + tl)
        return 0; /* an MQTT topic holds no NUL */
    const char *payload = (const char *)data + (nl ? tl + 1 : 0);
    size_t plen = size - (nl ? tl + 1 : 0);

    gw_pcmd cmd;
    int rc = gw_platform_command(pf[f], topic, payload, plen, &cmd);
    if (rc < 0 || rc == 0) {
        if (cmd.payload)
            abort(); /* nothing to free on a refusal */
        return 0;
    }
    if (rc != 1 || !memchr(cmd.name, 0, sizeof(cmd.name)) || !cmd.name[0])
        abort();
    cJSON *doc = cJSON_ParseWithLength(cmd.payload, cmd.len);
    if (!cJSON_IsObject(doc) || strlen(cmd.payload) != cmd.len)
        abort();
    cJSON_Delete(doc);

    /* The response topic the platform documents for this request. */
    char want[1100];
    if (f == 0)
        snprintf(want, sizeof(want), "v1/gateway/rpc");
    else if (f == 1)
        snprintf(want, sizeof(want), "$oc/devices/gw01/sys/commands/response/%s",
                 topic + strlen(prefixes[1]));
    else
        snprintf(want, sizeof(want), "%s_reply", topic);

    static const char *const statuses[] = {"accepted", "refused", "done", "failed"};
    char reply[512];
    int n = snprintf(reply, sizeof(reply),
                     "{\"v\":1,\"id\":\"%s\",\"cmd\":\"x\",\"status\":\"%s\",\"reason\":\"r\"}",
                     cmd.corr, statuses[plen % 4]);
    gw_pout out = {0};
    int r = gw_platform_reply(pf[f], reply, (size_t)n, 1, &out);
    if (r < 0) {
        /* A response that cannot be addressed as documented: refused, nothing sent. */
        if (out.n)
            abort();
    } else if (r != 1 || out.n != 1 || strcmp(out.m[0].topic, want)) {
        abort();
    } else {
        cJSON *m = cJSON_ParseWithLength(out.m[0].payload, out.m[0].len);
        if (!cJSON_IsObject(m))
            abort();
        cJSON_Delete(m);
    }
    gw_pout_free(&out);
    gw_pcmd_free(&cmd);
    return 0;
}
