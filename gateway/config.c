/* Config loading: the key tables below are the single source of truth for
 * names, types, defaults and bounds (docs/config.md mirrors them). */
#include "gateway/config.h"

#include "base/cfgmap.h"
#include "base/embedded.h"
#include "base/log.h"
#include "base/model.h"
#include "gateway/platform.h"
#include "gateway/protect.h"
#include "protocols/protocol.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F(s, m) offsetof(s, m), sizeof(((s *)0)->m)

struct top {
    const gw_ynode *gateway, *store, *uplink, *devices, *listeners, *rules, *rule_files,
        *profile_dirs, *local_mqtt, *http, *destinations;
};

static const gw_cfgkey top_keys[] = {
    {"gateway", GW_CT_NODE, NULL, 0, -1, offsetof(struct top, gateway), 0, NULL, GW_CF_REQUIRED,
     "identity and process settings"},
    {"store", GW_CT_NODE, NULL, 0, -1, offsetof(struct top, store), 0, NULL, 0, "the outbox"},
    {"uplink", GW_CT_NODE, NULL, 0, -1, offsetof(struct top, uplink), 0, NULL, 0,
     "the platform MQTT connection: the first (default) destination; required unless "
     "destinations is given"},
    {"destinations", GW_CT_NODE, NULL, 0, -1, offsetof(struct top, destinations), 0, NULL, 0,
     "further northbound destinations: a list of uplink-shaped sections, each with a name "
     "(docs/uplink.md#several-destinations)"},
    {"devices", GW_CT_NODE, NULL, 0, -1, offsetof(struct top, devices), 0, NULL, 0,
     "polled devices"},
    {"listeners", GW_CT_NODE, NULL, 0, -1, offsetof(struct top, listeners), 0, NULL, 0,
     "servers devices connect to"},
    {"rules", GW_CT_NODE, NULL, 0, -1, offsetof(struct top, rules), 0, NULL, 0, "inline rules"},
    {"rule_files", GW_CT_NODE, NULL, 0, -1, offsetof(struct top, rule_files), 0, NULL, 0,
     "rule files"},
    {"profile_dirs", GW_CT_NODE, NULL, 0, -1, offsetof(struct top, profile_dirs), 0, NULL, 0,
     "extra profile folders"},
    {"local_mqtt", GW_CT_NODE, NULL, 0, -1, offsetof(struct top, local_mqtt), 0, NULL, 0,
     "local broker for rules' mqtt_publish actions"},
    {"http", GW_CT_NODE, NULL, 0, -1, offsetof(struct top, http), 0, NULL, 0,
     "local HTTP endpoint: metrics, health, API, status page (off without this section)"},
    {NULL}};

struct gwsec {
    char id[64];
    char data_dir[256];
    char admin_socket[256];
    char modbus_stats[256];
    int log_level, log_format;
    int64_t shutdown_drain_ms;
};
static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
static const char *const log_formats[] = {"auto", "plain", "journal", NULL};

/* The default gateway id: "gw-" and the first 12 hex digits of the machine id
 * (systemd's machine-id(5): 32 hex digits, unique per installation), so a box
 * whose config leaves the id out still has one of its own. */
static int machine_gateway_id(char *out, size_t cap)
{
    const char *path = getenv("GW_MACHINE_ID_FILE"); /* tests */
    FILE *f = fopen(path ? path : "/etc/machine-id", "r");
    char line[64] = "";
    if (!f)
        return GW_ENOTFOUND;
    int ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    size_t n = 0;
    while (ok && n < 32 &&
           ((line[n] >= '0' && line[n] <= '9') || (line[n] >= 'a' && line[n] <= 'f')))
        n++;
    if (n != 32)
        return GW_EINVAL;
    snprintf(out, cap, "gw-%.12s", line);
    return GW_OK;
}
static const gw_cfgkey gateway_keys[] = {
    {"id", GW_CT_STR, "", 0, -1, F(struct gwsec, id), NULL, 0,
     "gateway id, used in topics and message ids; default gw-<first 12 hex digits of "
     "/etc/machine-id>"},
    {"data_dir", GW_CT_STR, "/var/lib/gw", 0, -1, F(struct gwsec, data_dir), NULL, 0,
     "folder for the outbox and state"},
    {"log_level", GW_CT_ENUM, "info", 0, -1, offsetof(struct gwsec, log_level), 0, log_levels, 0,
     "error, warn, info or debug"},
    {"log_format", GW_CT_ENUM, "auto", 0, -1, offsetof(struct gwsec, log_format), 0, log_formats, 0,
     "journal: <N> priority prefixes, no timestamp; auto: journal when stderr is the journal"},
    {"admin_socket", GW_CT_STR, "admin.sock", 0, -1, F(struct gwsec, admin_socket), NULL, 0,
     "local admin Unix socket, relative to data_dir (owner only); empty disables it"},
    {"modbus_stats", GW_CT_STR, "", 0, -1, F(struct gwsec, modbus_stats), NULL, 0,
     "file (relative to data_dir) the Modbus lateness statistics are written to as JSON every "
     "second; empty: none (docs/modbus.md)"},
    {"shutdown_drain", GW_CT_DURATION, "5s", 0, 300, offsetof(struct gwsec, shutdown_drain_ms), 0,
     NULL, 0, "how long SIGTERM waits for the outbox to drain"},
    {NULL}};

struct storesec {
    char path[256];
    int64_t max_bytes, commit_window, queue_max, queue_max_bytes;
    int sync;
    int64_t min_free, replay_window, obs_max_age, obs_max_ahead;
};
static const char *const sync_modes[] = {"normal", "full", NULL};
static const gw_cfgkey store_keys[] = {
    {"path", GW_CT_STR, "outbox.db", 0, -1, F(struct storesec, path), NULL, 0,
     "outbox file, relative to data_dir"},
    {"max_bytes", GW_CT_SIZE, "256MiB", 65536, 1099511627776.0,
     offsetof(struct storesec, max_bytes), 0, NULL, 0, "outbox bound"},
    {"commit_window", GW_CT_DURATION, "5ms", 0, 1, offsetof(struct storesec, commit_window), 0,
     NULL, 0, "group commit window"},
    {"queue_max", GW_CT_INT, "200000", 1000, 10000000, offsetof(struct storesec, queue_max), 0,
     NULL, 0, "rows waiting for the store thread"},
    {"queue_max_bytes", GW_CT_SIZE, "4MiB", 65536, 1073741824,
     offsetof(struct storesec, queue_max_bytes), 0, NULL, 0,
     "telemetry bytes (payload and bookkeeping) waiting for the store thread: its memory; "
     "beyond it telemetry is refused and counted"},
    {"sync", GW_CT_ENUM, "normal", 0, -1, offsetof(struct storesec, sync), 0, sync_modes, 0,
     "SQLite synchronous mode"},
    {"min_free", GW_CT_SIZE, "16MiB", 0, 1099511627776.0, offsetof(struct storesec, min_free), 0,
     NULL, 0, "free-space floor: below it the oldest telemetry is shed (alarms keep a reserve)"},
    {"replay_window", GW_CT_INT, "256", 0, 65536, offsetof(struct storesec, replay_window), 0, NULL,
     0, "reports remembered per station to refuse resends (0 disables)"},
    {"obs_max_age", GW_CT_DURATION, "0", 0, 315360000, offsetof(struct storesec, obs_max_age), 0,
     NULL, 0, "readings observed longer ago are refused and counted (0: no limit)"},
    {"obs_max_ahead", GW_CT_DURATION, "0", 0, 31536000, offsetof(struct storesec, obs_max_ahead), 0,
     NULL, 0, "readings observed further in the future are refused and counted (0: no limit)"},
    {NULL}};

/* The uplink table fills a gw_uplink_config; the server list is checked here. */
struct upsec {
    gw_uplink_config u; /* first: the U() offsets hold */
    const gw_ynode *servers;
    const gw_ynode *commands;
};
#define U(m) F(gw_uplink_config, m)
static const char *const mqtt_versions[] = {"3.1.1", "5", NULL};
static const gw_cfgkey uplink_keys[] = {
    {"name", GW_CT_STR, "", 0, -1, U(name), NULL, 0,
     "destination name (letters, digits, - _ . :), the key of its cursor in the outbox; "
     "default 'default' in uplink, required in destinations[]"},
    {"uri", GW_CT_STR, "", 0, -1, U(uri), NULL, 0,
     "tcp://host:port or ssl://host:port (or: servers)"},
    {"servers", GW_CT_NODE, NULL, 0, -1, offsetof(struct upsec, servers), 0, NULL, 0,
     "list of broker URIs (nodes of one cluster): the first is used, the next on loss; "
     "excludes uri"},
    {"commands", GW_CT_NODE, NULL, 0, -1, offsetof(struct upsec, commands), 0, NULL, 0,
     "platform commands this destination may send (ack device rule.set rule.enable meta "
     "inventory poll); default [ack, device, meta, inventory]"},
    {"flap_window", GW_CT_DURATION, "10s", 0.1, 3600, offsetof(gw_uplink_config, flap_window_ms), 0,
     NULL, 0,
     "a session lost sooner keeps the backoff growing; 3 in a row are logged as a client-id "
     "conflict"},
    {"client_id", GW_CT_STR, "", 0, -1, U(client_id), NULL, 0, "MQTT client id"},
    {"topic_prefix", GW_CT_STR, "iot", 0, -1, U(topic_prefix), NULL, 0, "topic prefix"},
    {"username", GW_CT_STR, "", 0, -1, U(username), NULL, 0, "MQTT user"},
    {"password_file", GW_CT_STR, "", 0, -1, U(password_file), NULL, 0, "file with the password"},
    {"password_env", GW_CT_STR, "", 0, -1, U(password_env), NULL, 0, "env var with the password"},
    {"ca_file", GW_CT_STR, "", 0, -1, U(ca_file), NULL, 0, "CA bundle for server verification"},
    {"cert_file", GW_CT_STR, "", 0, -1, U(cert_file), NULL, 0, "client certificate"},
    {"key_file", GW_CT_STR, "", 0, -1, U(key_file), NULL, 0, "client key"},
    {"verify_host", GW_CT_BOOL, "true", 0, -1, offsetof(gw_uplink_config, tls_verify_host), 0, NULL,
     0, "check the server name"},
    {"keepalive", GW_CT_DURATION, "30s", 1, 3600, offsetof(gw_uplink_config, keepalive_ms), 0, NULL,
     0, "MQTT keepalive"},
    {"connect_timeout", GW_CT_DURATION, "10s", 1, 300,
     offsetof(gw_uplink_config, connect_timeout_ms), 0, NULL, 0, "connect timeout"},
    {"backoff_min", GW_CT_DURATION, "500ms", 0.01, 3600, offsetof(gw_uplink_config, backoff_min_ms),
     0, NULL, 0, "first reconnect delay"},
    {"backoff_max", GW_CT_DURATION, "60s", 0.01, 86400, offsetof(gw_uplink_config, backoff_max_ms),
     0, NULL, 0, "reconnect delay cap"},
    {"batch", GW_CT_INT, "100", 1, 5000, offsetof(gw_uplink_config, batch), 0, NULL, 0,
     "readings per message"},
    {"max_inflight", GW_CT_INT, "32", 8, 1000, offsetof(gw_uplink_config, max_inflight), 0, NULL, 0,
     "unacknowledged messages"},
    {"max_message_bytes", GW_CT_SIZE, "256KiB", 4096, 67108864,
     offsetof(gw_uplink_config, max_message_bytes), 0, NULL, 0, "bound on one message"},
    {"tele_inflight_bytes", GW_CT_SIZE, "256KiB", 4096, 1073741824,
     offsetof(gw_uplink_config, tele_inflight_bytes), 0, NULL, 0,
     "telemetry bytes awaiting PUBACK at most (what a new alarm may queue behind)"},
    {"mqtt_version", GW_CT_ENUM, "3.1.1", 0, -1, offsetof(gw_uplink_config, mqtt5), 0,
     mqtt_versions, 0,
     "5: commands' replies follow their response topic and correlation data; 3.1.1 (the "
     "default) for brokers that refuse 5 (docs/uplink.md)"},
    {"format", GW_CT_ENUM, "native", 0, -1, offsetof(gw_uplink_config, format), 0,
     gw_platform_names, 0,
     "topics and payloads: native, thingsboard, huawei-iotda, aliyun-alink (docs/platforms.md)"},
    {"platform_device", GW_CT_STR, "", 0, -1, U(platform_device), NULL, 0,
     "the gateway's device id (IoTDA) or DeviceName (Alink) on the platform; default gateway id"},
    {"product_key", GW_CT_STR, "", 0, -1, U(product_key), NULL, 0,
     "Alink: the gateway's ProductKey"},
    {"sub_product_key", GW_CT_STR, "", 0, -1, U(sub_product_key), NULL, 0,
     "Alink: the sub-devices' ProductKey; IoTDA: their product_id"},
    {"sub_secrets_file", GW_CT_STR, "", 0, -1, U(sub_secrets_file), NULL, 0,
     "Alink: file of '<device> <DeviceSecret>' lines"},
    {"service_id", GW_CT_STR, "data", 0, -1, U(service_id), NULL, 0,
     "IoTDA: the product model's service that holds the readings"},
    {NULL}};

/* Blocks inside uplink that have tables of their own. */
static const gw_cfgkey uplink_blocks[] = {
    {"protect", GW_CT_NODE, NULL, 0, -1, 0, 0, NULL, 0, "message protection (uplink.protect)"},
    {"filter", GW_CT_NODE, NULL, 0, -1, 0, 0, NULL, 0, "what this destination receives"},
    {NULL}};

/* uplink.filter: lists of names, checked in load_filter. */
struct filtsec {
    const gw_ynode *types, *sites, *metrics, *lanes;
};
static const gw_cfgkey filter_keys[] = {
    {"types", GW_CT_NODE, NULL, 0, -1, offsetof(struct filtsec, types), 0, NULL, 0,
     "device types sent (list; default all)"},
    {"sites", GW_CT_NODE, NULL, 0, -1, offsetof(struct filtsec, sites), 0, NULL, 0,
     "site ids sent (list; default all)"},
    {"metrics", GW_CT_NODE, NULL, 0, -1, offsetof(struct filtsec, metrics), 0, NULL, 0,
     "metrics sent (list; default all)"},
    {"lanes", GW_CT_NODE, NULL, 0, -1, offsetof(struct filtsec, lanes), 0, NULL, 0,
     "priority (events, alarms, forecasts) and/or telemetry (readings); default both"},
    {NULL}};

#define LP(m) F(gw_localpub_config, m)
static const gw_cfgkey local_keys[] = {
    {"uri", GW_CT_STR, NULL, 0, -1, LP(uri), NULL, GW_CF_REQUIRED, "tcp://host:port"},
    {"client_id", GW_CT_STR, "", 0, -1, LP(client_id), NULL, 0, "default <gateway id>-local"},
    {"username", GW_CT_STR, "", 0, -1, LP(username), NULL, 0, "MQTT user"},
    {"password_file", GW_CT_STR, "", 0, -1, LP(password_file), NULL, 0, "file with the password"},
    {"queue_max", GW_CT_INT, "1000", 10, 100000, offsetof(gw_localpub_config, queue_max), 0, NULL,
     0, "publishes buffered while the local broker is away"},
    {NULL}};

struct devsec {
    char id[64], type[32], protocol[32], profile[256], connect[160], address[64];
    char vendor[128], model[128];
    int64_t unit, interval_ms, timeout_ms, retries, offline_after;
    const gw_ynode *site, *groups;
};
static const gw_cfgkey device_keys[] = {
    {"id", GW_CT_STR, NULL, 0, -1, F(struct devsec, id), NULL, GW_CF_REQUIRED, "device id"},
    {"type", GW_CT_STR, "", 0, -1, F(struct devsec, type), NULL, 0, "device type"},
    {"protocol", GW_CT_STR, "modbus-tcp", 0, -1, F(struct devsec, protocol), NULL, 0,
     "how it is reached"},
    {"profile", GW_CT_STR, "", 0, -1, F(struct devsec, profile), NULL, 0,
     "device profile: a name, or a path to a profile file (has a '/'; relative to this file)"},
    {"connect", GW_CT_STR, "", 0, -1, F(struct devsec, connect), NULL, 0, "tcp://host:port"},
    {"address", GW_CT_STR, "", 0, -1, F(struct devsec, address), NULL, 0,
     "protocol address (station, MN, IMEI)"},
    {"unit", GW_CT_INT, "1", 0, 255, offsetof(struct devsec, unit), 0, NULL, 0, "Modbus unit id"},
    {"interval", GW_CT_DURATION, "10s", 0.05, 86400, offsetof(struct devsec, interval_ms), 0, NULL,
     0, "poll interval"},
    {"timeout", GW_CT_DURATION, "1s", 0.01, 60, offsetof(struct devsec, timeout_ms), 0, NULL, 0,
     "response timeout"},
    {"retries", GW_CT_INT, "1", 0, 10, offsetof(struct devsec, retries), 0, NULL, 0,
     "retries of a failed request within a poll"},
    {"offline_after", GW_CT_INT, "3", 1, 1000, offsetof(struct devsec, offline_after), 0, NULL, 0,
     "failed polls before offline"},
    {"site", GW_CT_NODE, NULL, 0, -1, offsetof(struct devsec, site), 0, NULL, 0, "site data"},
    {"vendor", GW_CT_STR, "", 0, -1, F(struct devsec, vendor), NULL, 0,
     "manufacturer, told to the platform (birth message)"},
    {"model", GW_CT_STR, "", 0, -1, F(struct devsec, model), NULL, 0,
     "device model, told to the platform (birth message)"},
    {"groups", GW_CT_NODE, NULL, 0, -1, offsetof(struct devsec, groups), 0, NULL, 0, "groups"},
    {NULL}};

struct sitesec {
    char id[64], name[64], division[16], address[256];
    const gw_ynode *location, *params;
    double install_height;
};
static const gw_cfgkey site_keys[] = {
    {"id", GW_CT_STR, "", 0, -1, F(struct sitesec, id), NULL, 0,
     "site id (letters, digits, - _ . :); readings carry it as `site`"},
    {"name", GW_CT_STR, "", 0, -1, F(struct sitesec, name), NULL, 0, "site name (UTF-8)"},
    {"division", GW_CT_STR, "", 0, -1, F(struct sitesec, division), NULL, 0,
     "administrative division code (GB/T 2260, 6 digits, or 9/12 with township/village)"},
    {"address", GW_CT_STR, "", 0, -1, F(struct sitesec, address), NULL, 0, "address text (UTF-8)"},
    {"location", GW_CT_NODE, NULL, 0, -1, offsetof(struct sitesec, location), 0, NULL, 0,
     "[longitude, latitude]"},
    {"install_height", GW_CT_DOUBLE, "-1", -1, 10000, offsetof(struct sitesec, install_height), 0,
     NULL, 0, "sensor height above the bottom, metres"},
    {"params", GW_CT_NODE, NULL, 0, -1, offsetof(struct sitesec, params), 0, NULL, 0,
     "other numeric site parameters"},
    {NULL}};

/* The devices' text and lists: one arena per config, in chunks, freed with
 * the device table (gw_config_drop_parsed) instead of fixed-size fields in
 * every device (at 10,000 devices those were 14 MB). */
static void *arena_alloc(gw_config *cfg, size_t n)
{
    return gw_arena_alloc(&cfg->arena, n);
}

/* A copy of s in the arena; "" is shared. NULL when out of memory. */
static const char *arena_str(gw_config *cfg, const char *s)
{
    return *s ? gw_arena_strdup(&cfg->arena, s) : "";
}

const gw_device_about gw_device_about_none = {
    .site = "", .site_id = "", .division = "", .site_address = "", .vendor = "", .model = ""};

/* The text fields of a device, for gw_device_conf_pack: a new one is one line. */
static const size_t conf_text[] = {
    offsetof(gw_device_conf, id),       offsetof(gw_device_conf, type),
    offsetof(gw_device_conf, protocol), offsetof(gw_device_conf, profile),
    offsetof(gw_device_conf, connect),  offsetof(gw_device_conf, address),
    offsetof(gw_device_conf, file),
};
static const size_t about_text[] = {
    offsetof(gw_device_about, site),     offsetof(gw_device_about, site_id),
    offsetof(gw_device_about, division), offsetof(gw_device_about, site_address),
    offsetof(gw_device_about, vendor),   offsetof(gw_device_about, model),
};
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define TEXT_AT(base, off) (*(const char **)((char *)(base) + (off)))

size_t gw_device_conf_extra(const gw_device_conf *c)
{
    size_t n = 0;
    for (size_t i = 0; i < NELEM(conf_text); i++)
        n += strlen(TEXT_AT(c, conf_text[i])) + 1;
    const gw_device_about *a = c->about;
    if (a == &gw_device_about_none)
        return n; /* shared, not copied */
    n += sizeof(*a) + (size_t)(a->ngroups + a->nparams) * sizeof(char *) +
         (size_t)a->nparams * sizeof(double);
    for (size_t i = 0; i < NELEM(about_text); i++)
        n += strlen(TEXT_AT(a, about_text[i])) + 1;
    for (int i = 0; i < a->ngroups; i++)
        n += strlen(a->groups[i]) + 1;
    for (int i = 0; i < a->nparams; i++)
        n += strlen(a->param_keys[i]) + 1;
    return n;
}

static const char *put_text(char **at, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = memcpy(*at, s, n);
    *at += n;
    return p;
}

void gw_device_conf_pack(gw_device_conf *dst, const gw_device_conf *src, void *mem)
{
    char *at = mem;
    *dst = *src;
    const gw_device_about *sa = src->about;
    gw_device_about *da = NULL;
    if (sa != &gw_device_about_none) {
        /* The block, pointers and doubles first, while at is aligned; the text after. */
        da = (gw_device_about *)(void *)at;
        at += sizeof(*da);
        *da = *sa;
        da->groups = sa->ngroups ? (const char **)(void *)at : NULL;
        at += (size_t)sa->ngroups * sizeof(char *);
        da->param_keys = sa->nparams ? (const char **)(void *)at : NULL;
        at += (size_t)sa->nparams * sizeof(char *);
        da->param_vals = sa->nparams ? (double *)(void *)at : NULL;
        at += (size_t)sa->nparams * sizeof(double);
        for (int i = 0; i < sa->nparams; i++)
            da->param_vals[i] = sa->param_vals[i];
        dst->about = da;
    }
    for (size_t i = 0; i < NELEM(conf_text); i++)
        TEXT_AT(dst, conf_text[i]) = put_text(&at, TEXT_AT(src, conf_text[i]));
    if (!da)
        return;
    for (size_t i = 0; i < NELEM(about_text); i++)
        TEXT_AT(da, about_text[i]) = put_text(&at, TEXT_AT(sa, about_text[i]));
    for (int i = 0; i < sa->ngroups; i++)
        da->groups[i] = put_text(&at, sa->groups[i]);
    for (int i = 0; i < sa->nparams; i++)
        da->param_keys[i] = put_text(&at, sa->param_keys[i]);
}

/* The device's own about block, made in the arena on first use. NULL when
 * out of memory. */
static gw_device_about *about_of(gw_config *cfg, gw_device_conf *d)
{
    if (d->about == &gw_device_about_none) {
        gw_device_about *a = arena_alloc(cfg, sizeof(*a));
        if (!a)
            return NULL;
        *a = gw_device_about_none;
        d->about = a;
    }
    return (gw_device_about *)d->about;
}

static int valid_id(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return 0;
    }
    return 1;
}

__attribute__((format(printf, 4, 5))) static int err_at(char *err, size_t errlen, const gw_ynode *n,
                                                        const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "%s:%d: %s", GW_YPOS(n), msg);
    return GW_EINVAL;
}

/* Where an error about key of map points: the key's line, or, when the file
 * never wrote it (a default is at fault), the line of map itself. */
static const gw_ynode *key_at(const gw_ynode *map, const char *key)
{
    const gw_ynode *k = gw_ymap_get(map, key);
    return k ? k : map;
}

static int number_node(const gw_ynode *n, double *v)
{
    return n && n->type == GW_Y_SCALAR && !n->quoted && gw_parse_double(n->str, v) == GW_OK
               ? GW_OK
               : GW_EINVAL;
}

static int load_site(gw_config *cfg, gw_device_conf *dc, const gw_ynode *site, const char *path,
                     char *err, size_t errlen)
{
    gw_device_about *d = about_of(cfg, dc);
    if (!d)
        return GW_ENOMEM;
    struct sitesec s;
    char p[96];
    const char *keys[GW_MAX_PARAMS];
    double vals[GW_MAX_PARAMS];
    snprintf(p, sizeof(p), "%s.site", path);
    if (gw_cfg_apply(site_keys, site, &s, p, err, errlen))
        return GW_EINVAL;
    if (s.id[0] && !valid_id(s.id))
        return err_at(err, errlen, gw_ymap_get(site, "id"),
                      "key '%s.id': '%s' may only hold letters, digits and - _ . :", p, s.id);
    size_t dl = strlen(s.division);
    if (dl && (strspn(s.division, "0123456789") != dl || (dl != 6 && dl != 9 && dl != 12)))
        return err_at(err, errlen, gw_ymap_get(site, "division"),
                      "key '%s.division' must be a division code of 6, 9 or 12 digits (got '%s')",
                      p, s.division);
    if (!(d->site = arena_str(cfg, s.name)) || !(d->site_id = arena_str(cfg, s.id)) ||
        !(d->division = arena_str(cfg, s.division)) ||
        !(d->site_address = arena_str(cfg, s.address)))
        return GW_ENOMEM;
    if (s.location) {
        if (s.location->type != GW_Y_SEQ || s.location->n != 2 ||
            number_node(s.location->kids[0], &d->lon) ||
            number_node(s.location->kids[1], &d->lat) || d->lon < -180 || d->lon > 180 ||
            d->lat < -90 || d->lat > 90)
            return err_at(err, errlen, s.location,
                          "key '%s.location' must be [longitude, latitude] in degrees", p);
        d->has_location = 1;
    }
    if (s.install_height >= 0) {
        keys[0] = "install_height";
        vals[0] = s.install_height;
        d->nparams = 1;
    }
    if (s.params) {
        if (s.params->type != GW_Y_MAP)
            return err_at(err, errlen, s.params, "key '%s.params' must be a mapping of numbers", p);
        for (size_t i = 0; i < s.params->n; i++) {
            double v;
            if (d->nparams == GW_MAX_PARAMS)
                return err_at(err, errlen, s.params, "key '%s.params': more than 8 parameters", p);
            if (number_node(s.params->kids[i], &v) || strlen(s.params->keys[i]) >= 32 ||
                !valid_id(s.params->keys[i]))
                return err_at(err, errlen, s.params->kids[i],
                              "key '%s.params': each parameter must be a short name and a number",
                              p);
            keys[d->nparams] = s.params->keys[i];
            vals[d->nparams++] = v;
        }
    }
    if (d->nparams) {
        d->param_keys = arena_alloc(cfg, (size_t)d->nparams * sizeof(char *));
        d->param_vals = arena_alloc(cfg, (size_t)d->nparams * sizeof(double));
        if (!d->param_keys || !d->param_vals)
            return GW_ENOMEM;
        for (int i = 0; i < d->nparams; i++) {
            if (!(d->param_keys[i] = arena_str(cfg, keys[i])))
                return GW_ENOMEM;
            d->param_vals[i] = vals[i];
        }
    }
    return GW_OK;
}

static int load_device(gw_config *cfg, int idx, const gw_ynode *n, char *err, size_t errlen)
{
    struct devsec s;
    char path[64];
    int rc;
    gw_device_conf *d = &cfg->devices[idx];
    snprintf(path, sizeof(path), "devices[%d]", idx);
    memset(d, 0, sizeof(*d));
    d->about = &gw_device_about_none;
    const gw_ynode *pn = gw_ymap_get(n, "protocol");
    const gw_protocol *proto =
        gw_protocol_find(pn && pn->type == GW_Y_SCALAR ? pn->str : "modbus-tcp");
    if (gw_cfg_apply_ex(device_keys, proto ? proto->device_keys : NULL, n, &s, path, err, errlen))
        return GW_EINVAL;
    if (!valid_id(s.id))
        return err_at(err, errlen, gw_ymap_get(n, "id"),
                      "key 'id': '%s' may only hold letters, digits and - _ . :", s.id);
    for (int i = 0; i < idx; i++)
        if (strcmp(cfg->devices[i].id, s.id) == 0)
            return err_at(err, errlen, gw_ymap_get(n, "id"),
                          "key 'id': device '%s' is defined twice", s.id);
    if (!gw_protocol_find(s.protocol))
        return err_at(err, errlen, gw_ymap_get(n, "protocol"),
                      "key 'protocol': unknown protocol '%s' (see docs/config.md)", s.protocol);
    if (strcmp(s.protocol, "modbus-tcp") == 0) {
        if (!s.profile[0])
            return err_at(err, errlen, n, "missing required key 'devices[%d].profile'", idx);
        if (strncmp(s.connect, "tcp://", 6) != 0 || !strchr(s.connect + 6, ':'))
            return err_at(err, errlen, gw_ymap_get(n, "connect") ? gw_ymap_get(n, "connect") : n,
                          "key 'connect' must be tcp://HOST:PORT (got '%s')", s.connect);
    }
    if (!(d->id = arena_str(cfg, s.id)) || !(d->type = arena_str(cfg, s.type)) ||
        !(d->protocol = arena_str(cfg, s.protocol)) || !(d->profile = arena_str(cfg, s.profile)) ||
        !(d->connect = arena_str(cfg, s.connect)) || !(d->address = arena_str(cfg, s.address)) ||
        !(d->file = idx ? cfg->devices[0].file : arena_str(cfg, cfg->source)))
        return GW_ENOMEM;
    if (s.vendor[0] || s.model[0]) {
        gw_device_about *a = about_of(cfg, d);
        if (!a || !(a->vendor = arena_str(cfg, s.vendor)) || !(a->model = arena_str(cfg, s.model)))
            return GW_ENOMEM;
    }
    if (proto->device_keys) {
        d->proto_conf = calloc(1, proto->device_conf_size ? proto->device_conf_size : 1);
        if (!d->proto_conf)
            return GW_ENOMEM;
        d->proto_conf_size = proto->device_conf_size;
        if (gw_cfg_apply_ex(proto->device_keys, device_keys, n, d->proto_conf, path, err, errlen))
            return GW_EINVAL;
    }
    d->unit = s.unit;
    d->interval_ms = s.interval_ms;
    d->timeout_ms = s.timeout_ms;
    d->retries = s.retries;
    d->offline_after = s.offline_after;
    d->line = n->line;
    if (d->timeout_ms >= d->interval_ms)
        return err_at(err, errlen, key_at(n, "timeout"),
                      "key 'timeout' (%lld ms%s) must be shorter than the interval (%lld ms) of "
                      "device '%s'",
                      (long long)d->timeout_ms, gw_ymap_get(n, "timeout") ? "" : ", the default",
                      (long long)d->interval_ms, s.id);
    if (s.site && (rc = load_site(cfg, d, s.site, path, err, errlen)))
        return rc;
    if (s.groups) {
        if (s.groups->type != GW_Y_SEQ || s.groups->n > GW_MAX_GROUPS)
            return err_at(err, errlen, s.groups, "key 'groups' must be a list of at most 8 names%s",
                          "");
        for (size_t i = 0; i < s.groups->n; i++) {
            const gw_ynode *g = s.groups->kids[i];
            if (g->type != GW_Y_SCALAR || !valid_id(g->str) || strlen(g->str) >= 32)
                return err_at(err, errlen, g, "key 'groups': '%s' is not a valid group name",
                              g->type == GW_Y_SCALAR ? g->str : "?");
        }
        gw_device_about *a = s.groups->n ? about_of(cfg, d) : NULL;
        if (s.groups->n && (!a || !(a->groups = arena_alloc(cfg, s.groups->n * sizeof(char *)))))
            return GW_ENOMEM;
        for (size_t i = 0; i < s.groups->n; i++)
            if (!(a->groups[a->ngroups++] = arena_str(cfg, s.groups->kids[i]->str)))
                return GW_ENOMEM;
    }
    return GW_OK;
}

static int check_uri(const char *uri, const gw_ynode *at, const char *key, char *err, size_t errlen)
{
    if (strncmp(uri, "tcp://", 6) && strncmp(uri, "ssl://", 6) && strncmp(uri, "mqtt://", 7) &&
        strncmp(uri, "mqtts://", 8))
        return err_at(err, errlen, at,
                      "key '%s' must start with tcp://, ssl://, mqtt:// or mqtts:// (got '%s')",
                      key, uri);
    return GW_OK;
}

/* uplink.commands: a list of command names, kept as a bit mask. */
static int load_commands(gw_uplink_config *u, const gw_ynode *list, const char *path, char *err,
                         size_t errlen)
{
    static const char *const names[] = GW_COMMAND_NAMES;
    const size_t nn = sizeof(names) / sizeof(names[0]);
    u->commands = GW_COMMANDS_DEFAULT;
    if (!list)
        return GW_OK;
    if (list->type != GW_Y_SEQ)
        return err_at(err, errlen, list, "key '%s.commands' must be a list of command names", path);
    u->commands = 0;
    for (size_t i = 0; i < list->n; i++) {
        const gw_ynode *n = list->kids[i];
        size_t k = 0;
        while (n->type == GW_Y_SCALAR && k < nn && strcmp(n->str, names[k]))
            k++;
        if (k == nn)
            return err_at(err, errlen, n,
                          "key '%s.commands': not a command name (ack, device, rule.set, "
                          "rule.enable, meta, inventory, poll)",
                          path);
        u->commands |= 1u << k;
    }
    return GW_OK;
}

/* uplink.uri is a one-element uplink.servers: either fills servers[]. */
static int load_servers(gw_uplink_config *u, const gw_ynode *list, const gw_ynode *sec,
                        const char *path, char *err, size_t errlen)
{
    char key[96];
    if (list && u->uri[0])
        return err_at(err, errlen, list, "keys '%s.uri' and '%s.servers' exclude each other", path,
                      path);
    if (!list) {
        if (!u->uri[0])
            return err_at(err, errlen, sec, "key '%s.uri' (or '%s.servers') is required", path,
                          path);
        snprintf(key, sizeof(key), "%s.uri", path);
        if (check_uri(u->uri, gw_ymap_get(sec, "uri"), key, err, errlen))
            return GW_EINVAL;
        strcpy(u->servers[0], u->uri);
        u->nservers = 1;
        return GW_OK;
    }
    snprintf(key, sizeof(key), "%s.servers", path);
    if (list->type != GW_Y_SEQ || list->n < 1 || list->n > GW_UPLINK_MAX_SERVERS)
        return err_at(err, errlen, list, "key '%s' must be a list of 1 to %d URIs", key,
                      GW_UPLINK_MAX_SERVERS);
    for (size_t i = 0; i < list->n; i++) {
        const gw_ynode *n = list->kids[i];
        if (n->type != GW_Y_SCALAR || strlen(n->str) >= sizeof(u->servers[0]))
            return err_at(err, errlen, n, "key '%s': not a URI", key);
        if (check_uri(n->str, n, key, err, errlen))
            return GW_EINVAL;
        strcpy(u->servers[i], n->str);
    }
    u->nservers = (int)list->n;
    strcpy(u->uri, u->servers[0]);
    return GW_OK;
}

/* A list of names (filter.types ...) into fixed slots. */
static int load_names(const gw_ynode *list, const char *key, char (*out)[GW_UPLINK_FILTER_LEN],
                      int *n, char *err, size_t errlen)
{
    *n = 0;
    if (!list)
        return GW_OK;
    if (list->type != GW_Y_SEQ || list->n < 1 || list->n > GW_UPLINK_FILTER_MAX)
        return err_at(err, errlen, list, "key '%s' must be a list of 1 to %d names", key,
                      GW_UPLINK_FILTER_MAX);
    for (size_t i = 0; i < list->n; i++) {
        const gw_ynode *e = list->kids[i];
        if (e->type != GW_Y_SCALAR || !e->str[0] || strlen(e->str) >= GW_UPLINK_FILTER_LEN ||
            strchr(e->str, '"') || strchr(e->str, '\\'))
            return err_at(err, errlen, e, "key '%s': entry %zu is not a name of 1 to %d bytes", key,
                          i + 1, GW_UPLINK_FILTER_LEN - 1);
        strcpy(out[i], e->str);
    }
    *n = (int)list->n;
    return GW_OK;
}

static int load_filter(gw_uplink_filter *f, const gw_ynode *node, const char *path, char *err,
                       size_t errlen)
{
    struct filtsec fs;
    char key[96];
    memset(f, 0, sizeof(*f));
    f->lanes = GW_UPLINK_LANE_PRIO | GW_UPLINK_LANE_TELE;
    if (!node)
        return GW_OK;
    snprintf(key, sizeof(key), "%s.filter", path);
    if (gw_cfg_apply(filter_keys, node, &fs, key, err, errlen))
        return GW_EINVAL;
    snprintf(key, sizeof(key), "%s.filter.types", path);
    if (load_names(fs.types, key, f->types, &f->ntypes, err, errlen))
        return GW_EINVAL;
    snprintf(key, sizeof(key), "%s.filter.sites", path);
    if (load_names(fs.sites, key, f->sites, &f->nsites, err, errlen))
        return GW_EINVAL;
    snprintf(key, sizeof(key), "%s.filter.metrics", path);
    if (load_names(fs.metrics, key, f->metrics, &f->nmetrics, err, errlen))
        return GW_EINVAL;
    if (fs.lanes) {
        static const char *const names[] = {"priority", "telemetry", NULL};
        static const int bits[] = {GW_UPLINK_LANE_PRIO, GW_UPLINK_LANE_TELE};
        snprintf(key, sizeof(key), "%s.filter.lanes", path);
        int b = gw_cfg_flag_list(fs.lanes, key, names, bits, err, errlen);
        if (b < 0)
            return GW_EINVAL;
        if (!b)
            return err_at(err, errlen, fs.lanes, "key '%s' names no lane", key);
        f->lanes = (unsigned)b;
    }
    return GW_OK;
}

/* One destination: the uplink: section or an entry of destinations[]. */
static int load_uplink(gw_config *cfg, gw_uplink_config *out, const gw_ynode *sec, const char *path,
                       int first, char *err, size_t errlen)
{
    struct upsec up;
    char key[96];
    memset(&up, 0, sizeof(up));
    if (gw_cfg_apply_ex(uplink_keys, uplink_blocks, sec, &up, path, err, errlen))
        return GW_EINVAL;
    *out = up.u;
    if (!out->name[0] && first && !strcmp(path, "uplink"))
        strcpy(out->name, "default");
    if (!valid_id(out->name))
        return err_at(err, errlen, key_at(sec, "name"),
                      "key '%s.name': '%s' must be 1 to 63 letters, digits or - _ . :", path,
                      out->name);
    /* Two destinations on one broker must not share a client id (a platform
     * format derives its own from the platform's rules). */
    if (!out->client_id[0] && !first && out->format == GW_PF_NATIVE)
        snprintf(out->client_id, sizeof(out->client_id), "%.60s-%.63s", cfg->gateway_id, out->name);
    snprintf(key, sizeof(key), "%s.protect", path);
    if (load_servers(out, up.servers, sec, path, err, errlen) ||
        load_commands(out, up.commands, path, err, errlen) ||
        gw_protect_config_load(&out->protect, gw_ymap_get(sec, "protect"), key, cfg->data_dir,
                               first ? "uplink" : out->name, err, errlen) ||
        load_filter(&out->filter, gw_ymap_get(sec, "filter"), path, err, errlen))
        return GW_EINVAL;
    if (out->password_file[0] && out->password_env[0])
        return err_at(err, errlen, sec,
                      "keys '%s.password_file' and '%s.password_env' exclude each other", path,
                      path);
    if ((out->cert_file[0] != 0) != (out->key_file[0] != 0))
        return err_at(err, errlen, sec, "keys '%s.cert_file' and '%s.key_file' go together", path,
                      path);
    if (out->backoff_min_ms > out->backoff_max_ms)
        return err_at(err, errlen,
                      gw_ymap_get(sec, "backoff_min") ? gw_ymap_get(sec, "backoff_min")
                                                      : key_at(sec, "backoff_max"),
                      "key '%s.backoff_min' must not exceed backoff_max", path);
    return GW_OK;
}

/* uplink: and destinations[]: the first becomes cfg->uplink, the rest cfg->dests. */
static int load_dests(gw_config *cfg, const gw_ynode *uplink, const gw_ynode *list, char *err,
                      size_t errlen)
{
    if (!uplink && !list)
        return err_at(err, errlen, cfg->doc.root,
                      "missing required key 'uplink' (or 'destinations')");
    if (list &&
        (list->type != GW_Y_SEQ || list->n < 1 || list->n + (uplink != NULL) > GW_UPLINK_MAX_DESTS))
        return err_at(err, errlen, list, "key 'destinations' must be a list of 1 to %d sections",
                      GW_UPLINK_MAX_DESTS - (uplink != NULL));
    int n = (uplink != NULL) + (list ? (int)list->n : 0);
    gw_uplink_config *all = calloc((size_t)n, sizeof(*all));
    if (!all)
        return GW_ENOMEM;
    int rc = GW_OK;
    for (int i = 0; i < n && rc == GW_OK; i++) {
        const gw_ynode *sec = uplink && i == 0 ? uplink : list->kids[i - (uplink != NULL)];
        char path[48];
        if (uplink && i == 0)
            snprintf(path, sizeof(path), "uplink");
        else
            snprintf(path, sizeof(path), "destinations[%d]", i - (uplink != NULL));
        if (sec->type != GW_Y_MAP) {
            rc = err_at(err, errlen, sec, "key '%s' must be a mapping", path);
            break;
        }
        if (!uplink || i > 0) {
            const gw_ynode *nm = gw_ymap_get(sec, "name");
            if (!nm) {
                rc = err_at(err, errlen, sec, "key '%s.name' is required", path);
                break;
            }
        }
        rc = load_uplink(cfg, &all[i], sec, path, i == 0, err, errlen);
        for (int j = 0; j < i && rc == GW_OK; j++)
            if (!strcmp(all[j].name, all[i].name))
                rc = err_at(err, errlen, key_at(sec, "name"),
                            "key '%s.name': destination '%s' is named twice", path, all[i].name);
    }
    if (rc == GW_OK) {
        cfg->uplink = all[0];
        cfg->ndests = n - 1;
        if (n > 1) {
            cfg->dests = all;
            memmove(all, all + 1, (size_t)(n - 1) * sizeof(*all));
            return GW_OK;
        }
    }
    free(all);
    return rc;
}

int gw_config_ndests(const gw_config *cfg)
{
    return 1 + cfg->ndests;
}

const gw_uplink_config *gw_config_dest(const gw_config *cfg, int i)
{
    return i == 0 ? &cfg->uplink : &cfg->dests[i - 1];
}

static int load_doc(gw_config *cfg, char *err, size_t errlen)
{
    struct top t;
    const gw_ynode *root = cfg->doc.root;
    if (!root)
        return err_at(err, errlen, NULL, "the configuration is empty");
    if (gw_cfg_apply(top_keys, root, &t, "", err, errlen))
        return GW_EINVAL;

    struct gwsec g;
    if (gw_cfg_apply(gateway_keys, t.gateway, &g, "gateway", err, errlen))
        return GW_EINVAL;
    if (!g.id[0] && machine_gateway_id(g.id, sizeof(g.id)))
        return err_at(err, errlen, t.gateway,
                      "key 'gateway.id' is missing and /etc/machine-id gives none to derive");
    if (!valid_id(g.id))
        return err_at(err, errlen, gw_ymap_get(t.gateway, "id"),
                      "key 'gateway.id': '%s' may only hold letters, digits and - _ . :", g.id);
    memcpy(cfg->gateway_id, g.id, sizeof(cfg->gateway_id));
    memcpy(cfg->data_dir, g.data_dir, sizeof(cfg->data_dir));
    if (!g.admin_socket[0])
        cfg->admin_socket[0] = '\0';
    else if (g.admin_socket[0] == '/')
        snprintf(cfg->admin_socket, sizeof(cfg->admin_socket), "%s", g.admin_socket);
    else if ((size_t)snprintf(cfg->admin_socket, sizeof(cfg->admin_socket), "%s/%s", g.data_dir,
                              g.admin_socket) >= sizeof(cfg->admin_socket))
        return err_at(err, errlen, t.gateway, "key 'gateway.admin_socket': path too long");
    if (g.modbus_stats[0] && (size_t)snprintf(cfg->modbus_stats, sizeof(cfg->modbus_stats),
                                              "%s%s%s", g.modbus_stats[0] == '/' ? "" : g.data_dir,
                                              g.modbus_stats[0] == '/' ? "" : "/",
                                              g.modbus_stats) >= sizeof(cfg->modbus_stats))
        return err_at(err, errlen, t.gateway, "key 'gateway.modbus_stats': path too long");
    cfg->log_level = g.log_level;
    cfg->log_format = g.log_format;
    cfg->shutdown_drain_ms = g.shutdown_drain_ms;

    struct storesec s;
    if (gw_cfg_apply(store_keys, t.store, &s, "store", err, errlen))
        return GW_EINVAL;
    if (s.path[0] == '/')
        snprintf(cfg->store.path, sizeof(cfg->store.path), "%s", s.path);
    else if ((size_t)snprintf(cfg->store.path, sizeof(cfg->store.path), "%s/%s", cfg->data_dir,
                              s.path) >= sizeof(cfg->store.path))
        return err_at(err, errlen, t.store, "key 'store.path': path too long%s", "");
    cfg->store.max_bytes = s.max_bytes;
    cfg->store.commit_window = s.commit_window;
    cfg->store.queue_max = s.queue_max;
    cfg->store.queue_max_bytes = s.queue_max_bytes;
    cfg->store.sync_full = s.sync == 1;
    cfg->store.min_free = s.min_free;
    cfg->store.replay_window = s.replay_window;
    cfg->store.obs_max_age = s.obs_max_age;
    cfg->store.obs_max_ahead = s.obs_max_ahead;

    if (load_dests(cfg, t.uplink, t.destinations, err, errlen))
        return GW_EINVAL;

    if (gw_cfg_apply(gw_http_keys, t.http, &cfg->http, "http", err, errlen))
        return GW_EINVAL;
    cfg->http.enabled = t.http != NULL;
    char msg[256];
    if (t.http && gw_http_config_check(&cfg->http, msg, sizeof(msg)))
        return err_at(err, errlen, t.http, "%s", msg);
    if (t.local_mqtt &&
        gw_cfg_apply(local_keys, t.local_mqtt, &cfg->local_mqtt, "local_mqtt", err, errlen))
        return GW_EINVAL;
    if (t.devices) {
        if (t.devices->type != GW_Y_SEQ)
            return err_at(err, errlen, t.devices, "key 'devices' must be a list%s", "");
        cfg->devices = calloc(t.devices->n + 1, sizeof(*cfg->devices));
        if (!cfg->devices)
            return GW_ENOMEM;
        for (size_t i = 0; i < t.devices->n; i++) {
            int rc = load_device(cfg, (int)i, t.devices->kids[i], err, errlen);
            if (rc == GW_ENOMEM)
                return err_at(err, errlen, t.devices->kids[i], "out of memory%s", "");
            if (rc)
                return rc;
            cfg->ndevices++;
        }
    }
    if (t.listeners) {
        if (t.listeners->type != GW_Y_SEQ)
            return err_at(err, errlen, t.listeners, "key 'listeners' must be a list");
        cfg->listeners = calloc(t.listeners->n ? t.listeners->n : 1, sizeof(*cfg->listeners));
        if (!cfg->listeners)
            return GW_ENOMEM;
        for (size_t i = 0; i < t.listeners->n; i++) {
            const gw_ynode *ln = t.listeners->kids[i];
            const gw_ynode *pn = gw_ymap_get(ln, "protocol");
            char path[64];
            snprintf(path, sizeof(path), "listeners[%zu]", i);
            if (ln->type != GW_Y_MAP || !pn || pn->type != GW_Y_SCALAR)
                return err_at(err, errlen, ln, "'%s' needs a 'protocol' key", path);
            const gw_protocol *proto = gw_protocol_find(pn->str);
            if (!proto || !proto->listen)
                return err_at(err, errlen, pn, "key '%s.protocol': '%s' has no listener", path,
                              pn->str);
            static const gw_cfgkey only_protocol[] = {
                {"protocol", GW_CT_STR, NULL, 0, -1, 0, 0, NULL, 0, "listener protocol"}, {NULL}};
            gw_listener_conf *lc = &cfg->listeners[cfg->nlisteners++];
            lc->proto = proto;
            lc->line = ln->line;
            lc->conf_size = proto->listener_conf_size;
            lc->conf = calloc(1, lc->conf_size ? lc->conf_size : 1);
            if (!lc->conf)
                return GW_ENOMEM;
            if (gw_cfg_apply_ex(proto->listener_keys, only_protocol, ln, lc->conf, path, err,
                                errlen))
                return GW_EINVAL;
        }
    }
    if (t.profile_dirs) {
        if (t.profile_dirs->type != GW_Y_SEQ || t.profile_dirs->n > 4)
            return err_at(err, errlen, t.profile_dirs,
                          "key 'profile_dirs' must be a list of at most 4 folders%s", "");
        for (size_t i = 0; i < t.profile_dirs->n; i++) {
            const gw_ynode *p = t.profile_dirs->kids[i];
            if (p->type != GW_Y_SCALAR || strlen(p->str) >= 256)
                return err_at(err, errlen, p, "key 'profile_dirs': not a folder name%s", "");
            strcpy(cfg->profile_dirs[cfg->nprofile_dirs++], p->str);
        }
    }
    if (t.rules && t.rules->type != GW_Y_SEQ)
        return err_at(err, errlen, t.rules, "key 'rules' must be a list%s", "");
    if (t.rule_files && t.rule_files->type != GW_Y_SEQ)
        return err_at(err, errlen, t.rule_files, "key 'rule_files' must be a list%s", "");
    cfg->rules = t.rules;
    cfg->rule_files = t.rule_files;
    return GW_OK;
}

const char *gw_config_default_text(void)
{
    for (const struct gw_embedded *e = gw_embedded_files; e->name; e++)
        if (strcmp(e->name, "gateway/default.yaml") == 0)
            return e->data;
    return "";
}

int gw_config_load(gw_config *cfg, const char *path, char *err, size_t errlen)
{
    memset(cfg, 0, sizeof(*cfg));
    int rc;
    if (path) {
        snprintf(cfg->source, sizeof(cfg->source), "%s", path);
        rc = gw_ydoc_load(&cfg->doc, path, err, errlen);
    } else {
        snprintf(cfg->source, sizeof(cfg->source), "<embedded default>");
        const char *text = gw_config_default_text();
        rc = gw_ydoc_parse(&cfg->doc, cfg->source, text, strlen(text), err, errlen);
    }
    if (rc == GW_OK)
        rc = load_doc(cfg, err, errlen);
    if (rc != GW_OK) {
        gw_config_free(cfg);
        return GW_EINVAL;
    }
    return GW_OK;
}

void gw_config_free(gw_config *cfg)
{
    for (int i = 0; cfg->devices && i < cfg->ndevices + 1; i++)
        free(cfg->devices[i].proto_conf);
    for (int i = 0; i < cfg->nlisteners; i++)
        free(cfg->listeners[i].conf);
    free(cfg->listeners);
    free(cfg->devices);
    gw_arena_free(&cfg->arena);
    free(cfg->dests);
    gw_ydoc_free(&cfg->doc);
    memset(cfg, 0, sizeof(*cfg));
}

void gw_config_drop_devices(gw_config *cfg)
{
    for (int i = 0; cfg->devices && i <= cfg->ndevices; i++)
        free(cfg->devices[i].proto_conf);
    free(cfg->devices);
    cfg->devices = NULL;
    gw_arena_free(&cfg->arena);
}

void gw_config_drop_parsed(gw_config *cfg)
{
    gw_config_drop_devices(cfg);
    gw_ydoc_free(&cfg->doc);
    cfg->rules = cfg->rule_files = NULL;
}

static void dump_table(FILE *f, const char *title, const char *prefix, const gw_cfgkey *tab)
{
    fprintf(f, "\n### %s\n\n| key | type | default | range | meaning |\n|---|---|---|---|---|\n",
            title);
    for (const gw_cfgkey *k = tab; k->key; k++) {
        static const char *const types[] = {"string",   "integer", "number", "bool",
                                            "duration", "size",    "enum",   "section"};
        char range[96] = "";
        if (k->type == GW_CT_ENUM) {
            for (int i = 0; k->names[i]; i++) {
                strncat(range, i ? ", " : "", sizeof(range) - strlen(range) - 1);
                strncat(range, k->names[i], sizeof(range) - strlen(range) - 1);
            }
        } else if (k->min <= k->max && k->type != GW_CT_STR && k->type != GW_CT_NODE) {
            const char *u = k->type == GW_CT_DURATION ? " s" : k->type == GW_CT_SIZE ? " B" : "";
            snprintf(range, sizeof(range), "%g%s .. %g%s", k->min, u, k->max, u);
        }
        fprintf(f, "| `%s%s` | %s | %s | %s | %s |\n", prefix, k->key, types[k->type],
                (k->flags & GW_CF_REQUIRED) ? "**required**"
                : k->def && *k->def         ? k->def
                                            : "",
                range, k->desc ? k->desc : "");
    }
}

void gw_config_reference(FILE *f)
{
    fprintf(f, "<!-- generated by `build/gateway --config-reference`; do not edit by hand -->\n");
    dump_table(f, "Top level", "", top_keys);
    dump_table(f, "gateway", "gateway.", gateway_keys);
    dump_table(f, "store", "store.", store_keys);
    dump_table(f, "uplink", "uplink.", uplink_keys);
    dump_table(f, "uplink.protect (docs/security.md)", "uplink.protect.", gw_protect_cfg_keys);
    dump_table(f, "uplink.protect.keys[]", "", gw_protect_cfg_keyset);
    dump_table(f, "uplink.filter (also destinations[].filter)", "uplink.filter.", filter_keys);
    dump_table(f, "local_mqtt", "local_mqtt.", local_keys);
    dump_table(f, "http", "http.", gw_http_keys);
    dump_table(f, "devices[] (every protocol)", "", device_keys);
    dump_table(f, "devices[].site", "site.", site_keys);
    for (size_t i = 0; gw_protocols[i]; i++) {
        const gw_protocol *p = gw_protocols[i];
        char title[128];
        if (p->device_keys) {
            snprintf(title, sizeof(title), "devices[] with `protocol: %s`", p->name);
            dump_table(f, title, "", p->device_keys);
        }
        if (p->listener_keys) {
            snprintf(title, sizeof(title), "listeners[] with `protocol: %s`", p->name);
            dump_table(f, title, "", p->listener_keys);
        }
    }
}
