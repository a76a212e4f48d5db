#ifndef GW_UPLINK_CONF_H
#define GW_UPLINK_CONF_H
/* The `uplink:` section as gw_config holds it (keys: gateway/config.c),
 * apart from uplink.h so the config layer names it without the client. */
#include "gateway/protect_conf.h"

#include <stdint.h>

#define GW_UPLINK_MAX_SERVERS 8
#define GW_UPLINK_MAX_DESTS 8   /* destinations: uplink plus destinations[] */
#define GW_UPLINK_FILTER_MAX 16 /* entries per filter list */
#define GW_UPLINK_FILTER_LEN 64 /* bytes per entry */
#define GW_UPLINK_LANE_PRIO 1u  /* filter.lanes bits: 1 << GW_LANE_PRIO */
#define GW_UPLINK_LANE_TELE 2u  /* 1 << GW_LANE_TELE */

/* Which items a destination receives (empty lists: all). An item is judged by
 * a list only when it carries that field (a device event has no metric). */
typedef struct gw_uplink_filter {
    char types[GW_UPLINK_FILTER_MAX][GW_UPLINK_FILTER_LEN]; /* device types */
    int ntypes;
    char sites[GW_UPLINK_FILTER_MAX][GW_UPLINK_FILTER_LEN]; /* site ids */
    int nsites;
    char metrics[GW_UPLINK_FILTER_MAX][GW_UPLINK_FILTER_LEN];
    int nmetrics;
    unsigned lanes; /* GW_UPLINK_LANE_* bits */
} gw_uplink_filter;

/* Platform command names (gateway/commands.h), in the bit order of
 * gw_uplink_config.commands. A destination runs only the commands it lists;
 * the default keeps what every destination could do before the list existed
 * (ack, device) plus the read-only meta and inventory. */
#define GW_COMMAND_NAMES                                                                           \
    {                                                                                              \
        "ack", "device", "rule.set", "rule.enable", "meta", "inventory", "poll"                    \
    }
#define GW_COMMANDS_DEFAULT 0x33u

typedef struct gw_uplink_config {
    char name[64]; /* destination name: its cursor in the outbox; "default" for uplink: */
    char uri[256]; /* tcp://host:port or ssl://host:port; or servers[] */
    char servers[GW_UPLINK_MAX_SERVERS][256]; /* broker nodes, tried in order; [0] = uri */
    int nservers;
    int64_t flap_window_ms; /* a session shorter than this does not reset the backoff */
    char client_id[128];    /* default: the gateway id */
    char topic_prefix[128]; /* topics are <prefix>/<gateway id>/<kind> */
    char username[128];
    char password_file[256]; /* first line is the password; never logged */
    char password_env[64];   /* or: the name of an environment variable */
    char ca_file[256];
    char cert_file[256];
    char key_file[256];
    int tls_verify_host;
    int64_t keepalive_ms;
    int64_t connect_timeout_ms;
    int64_t backoff_min_ms, backoff_max_ms;
    int64_t batch;               /* readings per telemetry message */
    int64_t max_inflight;        /* QoS 1 messages awaiting PUBACK */
    int64_t max_message_bytes;   /* bound on one telemetry message */
    int64_t tele_inflight_bytes; /* telemetry bytes unacknowledged at most: what an alarm may queue
                                    behind */
    gw_protect_config protect;   /* message protection of this destination (uplink.protect) */
    gw_uplink_filter filter;     /* what this destination receives */
    /* The destination's format (gateway/platform.h, docs/platforms.md) and its platform keys. */
    int mqtt5;                  /* mqtt_version: 0 = 3.1.1, 1 = 5 */
    int format;                 /* GW_PF_NATIVE, GW_PF_THINGSBOARD, GW_PF_HUAWEI, GW_PF_ALINK */
    char platform_device[128];  /* the gateway's id on the platform (default: gateway id) */
    char product_key[64];       /* Alink: the gateway's ProductKey */
    char sub_product_key[64];   /* Alink: sub-devices' ProductKey; IoTDA: their product_id */
    char sub_secrets_file[256]; /* Alink: "<device> <DeviceSecret>" lines; never logged */
    char service_id[64];        /* IoTDA: the product model's service of the readings */
    unsigned commands;          /* platform commands it may send: bit i = GW_COMMAND_NAMES[i] */
} gw_uplink_config;

#endif
