#include "gateway/localpub.h"

#include "gateway/log.h"
#include "gateway/model.h"

#include <MQTTAsync.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gw_localpub {
    MQTTAsync client;
    char password[256];
    uint64_t sent, refused;
};

/* Paho thread: nothing of ours is touched; the counters live on the loop. */
static void on_connected(void *ctx, char *cause)
{
}

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
    if (cfg->password_file[0]) {
        FILE *f = fopen(cfg->password_file, "r");
        if (!f) {
            snprintf(err, errlen, "local_mqtt.password_file: %s: %s", cfg->password_file,
                     strerror(errno));
            free(p);
            return NULL;
        }
        if (!fgets(p->password, sizeof(p->password), f))
            p->password[0] = '\0';
        fclose(f);
        p->password[strcspn(p->password, "\r\n")] = '\0';
    }
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.sendWhileDisconnected = 1;
    co.maxBufferedMessages = (int)cfg->queue_max;
    if (MQTTAsync_createWithOptions(&p->client, cfg->uri, cid, MQTTCLIENT_PERSISTENCE_NONE, NULL,
                                    &co) != MQTTASYNC_SUCCESS) {
        snprintf(err, errlen, "local_mqtt.uri '%s': cannot create MQTT client", cfg->uri);
        free(p);
        return NULL;
    }
    MQTTAsync_setConnected(p->client, p, on_connected);
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    o.cleansession = 1;
    o.keepAliveInterval = 30;
    /* Paho reconnects this local link by itself (1 s .. 30 s): nothing here
     * is durable, and the buffer above bounds what waits meanwhile. */
    o.automaticReconnect = 1;
    o.minRetryInterval = 1;
    o.maxRetryInterval = 30;
    if (cfg->username[0])
        o.username = cfg->username;
    if (p->password[0])
        o.password = p->password;
    if (MQTTAsync_connect(p->client, &o) != MQTTASYNC_SUCCESS)
        GW_WARN("localpub", "connect to %s could not start; will retry", cfg->uri);
    GW_INFO("localpub", "local MQTT for rule actions: %s", cfg->uri);
    return p;
}

int gw_localpub_publish(gw_localpub *p, const char *topic, const char *payload, size_t len)
{
    if (!p)
        return GW_EINVAL;
    MQTTAsync_message m = MQTTAsync_message_initializer;
    m.payload = (void *)payload;
    m.payloadlen = (int)len;
    m.qos = 1;
    int rc = MQTTAsync_sendMessage(p->client, topic, &m, NULL);
    if (rc != MQTTASYNC_SUCCESS) {
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
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = 500;
    MQTTAsync_disconnect(p->client, &d);
    MQTTAsync_destroy(&p->client);
    memset(p->password, 0, sizeof(p->password));
    free(p);
}
