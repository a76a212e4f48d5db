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

/* A device's settings. The text fields are never NULL ("" when unset) and,
 * with the lists, live in the config's arena; gw_device_conf_pack copies one
 * device out with its text into memory of the caller's, so a device outlives
 * the config it came from (gateway/core.c). */
/* What the platform is told about a device and where it stands (birth message,
 * item place, rule scopes). Most devices configure none of it and share
 * gw_device_about_none: at 10,000 devices these ~100 bytes apiece were a
 * megabyte (issue 17). */
typedef struct gw_device_about {
    const char *site; /* site name; "" when not configured, as every text here */
    const char *site_id, *division, *site_address, *vendor, *model;
    double lon, lat;
    int has_location;
    int ngroups, nparams;
    const char **groups;     /* ngroups names */
    const char **param_keys; /* site parameters: install_height, ... */
    double *param_vals;
} gw_device_about;
extern const gw_device_about gw_device_about_none;

typedef struct gw_device_conf {
    const char *id;
    const char *type;     /* device type; defaults to the profile's */
    const char *protocol; /* modbus-tcp, ... */
    const char *profile;  /* a name, or a path to a profile file (with a '/') */
    const char *connect;  /* tcp://host:port */
    const char *address;  /* protocol address: SL651 station, HJ212 MN, IMEI... */
    int64_t unit;
    int64_t interval_ms;
    int64_t timeout_ms;
    int64_t retries;
    int64_t offline_after;        /* failed polls before the device is offline */
    const gw_device_about *about; /* never NULL */
    int line;                     /* where it was defined, for messages */
    const char *file;
    void *proto_conf; /* the protocol's own keys (gw_protocol.device_keys), owned by the config */
    size_t proto_conf_size;
} gw_device_conf;

/* Bytes gw_device_conf_pack needs for the text and lists of c. */
size_t gw_device_conf_extra(const gw_device_conf *c);
/* Copies src to dst with its text and lists in mem (gw_device_conf_extra(src)
 * bytes, aligned for a pointer): dst is valid while mem is. proto_conf and
 * file are copied as pointers. */
void gw_device_conf_pack(gw_device_conf *dst, const gw_device_conf *src, void *mem);

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
    gw_arena arena;        /* the devices' text and lists */
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
/* Frees the device table and the parsed YAML once devices and rules are built
 * from them (cfg->devices, doc, rules and rule_files are cleared); the rest of
 * cfg stays. */
void gw_config_drop_parsed(gw_config *cfg);
/* Only the device table (and the devices' text): once devices are built the
 * rest of the start-up needs the YAML (rules, listeners) but not the table. */
void gw_config_drop_devices(gw_config *cfg);
const char *gw_config_default_text(void);
/* Writes the reference of every key (core tables and each protocol's) as
 * Markdown: the generated half of docs/config.md. */
void gw_config_reference(FILE *f);

#endif
