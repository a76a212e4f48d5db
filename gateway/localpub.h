#ifndef GW_LOCALPUB_H
#define GW_LOCALPUB_H
/* A second MQTT connection, to a local or field broker, for rules' local
 * `mqtt_publish` actions (a road sign controller, a siren panel, a local
 * dashboard). Independent of the platform uplink, so alarms act locally while
 * the uplink is down. Fire-and-forget QoS 1 with a bounded buffer while the
 * local broker is away: past `queue_max` publishes are dropped and counted. */
#include "gateway/localpub_conf.h"

#include <stddef.h>
#include <stdint.h>

typedef struct gw_localpub gw_localpub;

gw_localpub *gw_localpub_new(const gw_localpub_config *cfg, const char *gateway_id, char *err,
                             size_t errlen);
/* Queues a publish. Returns 0, or a negative code when refused (counted). */
int gw_localpub_publish(gw_localpub *p, const char *topic, const char *payload, size_t len);
void gw_localpub_free(gw_localpub *p);

#endif
