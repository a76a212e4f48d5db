#ifndef GW_CONFIG_H
#define GW_CONFIG_H
/* The gateway's configuration: one YAML file (or the embedded default). Every
 * key is a row in a table in config.c and documented in docs/config.md.
 * gw_config_load either returns a complete, checked config or an error naming
 * file, line and key; nothing is half-applied. */
#include "base/yamldoc.h"
#include "gateway/http_conf.h"
#include "gateway/localpub_conf.h"
#include "gateway/store_conf.h"
#include "gateway/uplink_conf.h"

struct gw_protocol;

#include <stdint.h>
#include <stdio.h>

#define GW_MAX_GROUPS 8
#define GW_MAX_PARAMS 8

typedef struct gw_device_conf {
    char id[64];
    char type[32];     /* device type; defaults to the profile's */
    char protocol[32]; /* modbus-tcp, ... */
    char profile[256]; /* a name, or a path to a profile file (with a '/') */
    char connect[160]; /* tcp://host:port */
    char address[64];  /* protocol address: SL651 station, HJ212 MN, IMEI... */
    int64_t unit;
    int64_t interval_ms;
    int64_t timeout_ms;
    int64_t retries;
    int64_t offline_after; /* failed polls before the device is offline */
    char site[64];         /* site name */
    double lon, lat;
    int has_location;
    /* What the platform is told about the device (birth message, item place);
     * heap strings owned by this struct, NULL when not configured. A copy
     * takes its own with gw_device_conf_dup_meta. */
    char *site_id, *division, *site_address, *vendor, *model;
    char groups[GW_MAX_GROUPS][32];
    int ngroups;
    char param_keys[GW_MAX_PARAMS][32]; /* site parameters: install_height, ... */
    double param_vals[GW_MAX_PARAMS];
    int nparams;
    int line; /* where it was defined, for messages */
    const char *file;
    void *proto_conf; /* the protocol's own keys (gw_protocol.device_keys), owned by the config */
    size_t proto_conf_size;
} gw_device_conf;

typedef struct gw_listener_conf {
    const struct gw_protocol *proto;
    void *conf; /* filled by proto->listener_keys, owned by the config */
    size_t conf_size;
    int line;
} gw_listener_conf;

typedef struct gw_config {
    char source[256]; /* file name, or "<embedded default>" */
    char gateway_id[64];
    char data_dir[256];
    char admin_socket[300]; /* resolved path, empty = disabled */
    char modbus_stats[300]; /* resolved path of the Modbus statistics file, empty = none */
    int log_level;
    int log_format; /* GW_LOG_FMT_* */
    int64_t shutdown_drain_ms;
    char profile_dirs[4][256];
    int nprofile_dirs;
    gw_store_config store;
    gw_uplink_config uplink; /* the first destination (uplink:, else destinations[0]) */
    gw_uplink_config *dests; /* the destinations after it, ndests of them (heap) */
    int ndests;
    gw_localpub_config local_mqtt; /* uri empty: no local broker */
    gw_http_config http;           /* enabled 0: no http: section */
    gw_device_conf *devices;
    int ndevices;
    gw_listener_conf *listeners;
    int nlisteners;
    gw_ydoc doc;           /* kept for sections parsed by other modules (rules) */
    const gw_ynode *rules; /* "rules" list, or NULL */
    const gw_ynode *rule_files;
} gw_config;

/* Loads path, or the embedded default when path is NULL. On failure returns
 * GW_EINVAL with "FILE:LINE: key ...: problem" in err and leaves *cfg empty. */
int gw_config_load(gw_config *cfg, const char *path, char *err, size_t errlen);

/* The northbound destinations: 1 + ndests; index 0 is cfg->uplink. */
int gw_config_ndests(const gw_config *cfg);
const gw_uplink_config *gw_config_dest(const gw_config *cfg, int i);
void gw_config_free(gw_config *cfg);
/* dst is a struct copy of src: gives dst its own copies of the metadata strings.
 * GW_ENOMEM leaves them NULL. free_meta frees them (NULL-safe). */
int gw_device_conf_dup_meta(gw_device_conf *dst, const gw_device_conf *src);
void gw_device_conf_free_meta(gw_device_conf *d);
const char *gw_config_default_text(void);
/* Writes the reference of every key (core tables and each protocol's) as
 * Markdown: the generated half of docs/config.md. */
void gw_config_reference(FILE *f);

#endif
