#include "gateway/localpub.h"

#include "base/log.h"
#include "base/model.h"
#include "base/mqttc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_localpub {
    gw_mqttc *client; /* publish only: no events come back */
    uint64_t sent, refused;
};

gw_localpub *gw_localpub_new(const gw_localpub_config *cfg, const char *gateway_id, char *err,
                             size_t errlen)
{
    gw_localpub *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    char cid[160];
    snprintf(cid, sizeof(cid), "%s", cfg->client_id[0] ? cfg->client_id : gateway_id);
    if (!cfg->client_id[0])
        strncat(cid, "-local", sizeof(cid) - strlen(cid) - 1);
    char password[256];
    if (gw_mqttc_read_password("local_mqtt.", cfg->password_file, NULL, password, sizeof(password),
                               err, errlen)) {
        free(p);
        return NULL;
    }
    /* Paho reconnects this local link by itself (1 s .. 30 s): nothing here
     * is durable, and the buffer bounds what waits meanwhile. */
    gw_mqttc_config mc = {
        .uri = cfg->uri,
        .client_id = cid,
        .username = cfg->username,
        .password = password,
        .keepalive_ms = 30000,
        .max_buffered = (int)cfg->queue_max,
        .send_while_disconnected = 1,
        .auto_reconnect_max_s = 30,
    };
    char cerr[200];
    p->client = gw_mqttc_new(NULL, &mc, NULL, NULL, cerr, sizeof(cerr));
    memset(password, 0, sizeof(password));
    if (!p->client) {
        snprintf(err, errlen, "local_mqtt.uri %s", cerr);
        free(p);
        return NULL;
    }
    if (gw_mqttc_connect(p->client, NULL))
        GW_WARN("localpub", "connect to %s could not start; will retry", cfg->uri);
    GW_INFO("localpub", "local MQTT for rule actions: %s", cfg->uri);
    return p;
}

int gw_localpub_publish(gw_localpub *p, const char *topic, const char *payload, size_t len)
{
    if (!p)
        return GW_EINVAL;
    int rc;
    if (gw_mqttc_publish(p->client, topic, payload, len, 1, 0, NULL, &rc)) {
        p->refused++;
        GW_LOG_RL(GW_LOG_WARN, 10000, "localpub", "publish to %s refused (code %d, %llu so far)",
                  topic, rc, (unsigned long long)p->refused);
        return GW_EFULL;
    }
    p->sent++;
    return GW_OK;
}

void gw_localpub_free(gw_localpub *p)
{
    if (!p)
        return;
    gw_mqttc_close(p->client, 500);
    free(p);
}
