#ifndef GW_PLATFORM_H
#define GW_PLATFORM_H
/* Destination formats: how one uplink destination speaks to its platform. Our own schema
 * (docs/uplink.md) is the `native` format; the others are the MQTT device APIs of the
 * platforms cities run (ThingsBoard gateway API, Huawei Cloud IoTDA, Alibaba Cloud IoT
 * Alink), documented with their sources in docs/platforms.md.
 *
 * One descriptor per format (platform_<name>.c) fills the ops table below; the uplink keeps
 * delivery (lanes, in-flight window, acknowledgement) and asks the format for the MQTT
 * identity, the topics to subscribe, the message for a run of outbox rows, the messages that
 * register a device, and the translation of platform commands and of our replies. Everything
 * here runs on the loop thread and does no I/O: messages are returned, the uplink publishes.
 * The native format builds its messages from the raw rows; the others parse the rows' items
 * (CONTRACT: a row is one or more complete item objects separated by ',') with cJSON. */
#include "gateway/uplink_conf.h"

#include <stddef.h>
#include <stdint.h>

struct cJSON;

enum { GW_PF_NATIVE, GW_PF_THINGSBOARD, GW_PF_HUAWEI, GW_PF_ALINK, GW_PF_COUNT };
/* The `format:` names, in the order above, NULL-terminated (the config enum). */
extern const char *const gw_platform_names[];

/* What a run of rows is: the kinds of base/model.h the uplink sends. */
enum { GW_PK_READINGS, GW_PK_EVENTS, GW_PK_ALARMS, GW_PK_FORECASTS };

#define GW_PF_TOPIC_MAX 256
#define GW_PF_MAX_SUBS 4

/* One message to publish (QoS 1). payload is owned by the gw_pout it sits in. */
typedef struct gw_pmsg {
    char topic[GW_PF_TOPIC_MAX];
    char *payload;
    size_t len;
    int retained;
} gw_pmsg;

/* A growing list of messages; gw_pout_clear frees the payloads and keeps the array. */
typedef struct gw_pout {
    gw_pmsg *m;
    int n, cap;
} gw_pout;

void gw_pout_clear(gw_pout *o);
void gw_pout_free(gw_pout *o);
/* Appends a message; takes payload (malloc'd, len bytes) even on failure. */
int gw_pout_take(gw_pout *o, const char *topic, char *payload, size_t len, int retained);
/* Appends cJSON_PrintUnformatted(j); j stays the caller's. */
int gw_pout_json(gw_pout *o, const char *topic, const struct cJSON *j, int retained);
/* The same, not retained, and j is deleted (the formats' usual last step). */
int gw_pout_put(gw_pout *o, const char *topic, struct cJSON *j);

/* A platform command translated to ours: name and JSON payload for the command
 * handler (gateway/commands.h), with the correlation id under which the reply comes back. */
typedef struct gw_pcmd {
    char name[64];
    char corr[160];
    char *payload; /* malloc'd JSON object; gw_pcmd_free */
    size_t len;
} gw_pcmd;

void gw_pcmd_free(gw_pcmd *c);

/* The command entry point (gw_commands_handle, taken as a pointer so the
 * formats compile without it): reply is called with our reply JSON (`{"v":1,"id":..,"cmd":..,
 * "status":"accepted|refused|done|failed",...}`), once or twice, on the loop thread. */
typedef void (*gw_platform_reply_fn)(void *reply_ctx, const char *reply, size_t len);
typedef void (*gw_platform_exec_fn)(void *ctx, const char *dest, const char *name,
                                    const char *payload, size_t len, const char *corr,
                                    gw_platform_reply_fn reply, void *reply_ctx);

typedef struct gw_platform gw_platform;

typedef struct gw_platform_stats {
    uint64_t registered;   /* device announcements sent (connect/add/login), per session */
    uint64_t unregistered; /* devices that could not be announced (no sub-device secret...) */
    uint64_t bad_items;    /* items that did not parse or lacked a device: dropped, counted */
    uint64_t commands, commands_bad, replies, replies_lost;
} gw_platform_stats;

/* The descriptor of one format. Ops a format lacks are NULL. */
typedef struct gw_platform_ops {
    const char *name;
    /* Reads what the format needs beyond the config (files); frees it. */
    int (*init)(gw_platform *p, char *err, size_t errlen);
    void (*destroy)(gw_platform *p);
    /* The MQTT client id, user name and password at time now_ms (the signed formats). */
    int (*credentials)(gw_platform *p, int64_t now_ms, char *client_id, size_t cidlen, char *user,
                       size_t userlen, char *pass, size_t passlen);
    /* The command topics to subscribe; returns how many were written (<= GW_PF_MAX_SUBS). */
    int (*subscriptions)(gw_platform *p, char topics[][GW_PF_TOPIC_MAX]);
    /* Raw-row formats (native): the message for rows[0..n). Returns the rows used (>= 1). */
    int (*rows)(gw_platform *p, int kind, const char *const *row, const size_t *len, size_t n,
                int64_t first_id, int64_t last_id, gw_pout *out);
    /* Item formats: may the items of one more row join the message begun (first: none yet)? */
    int (*accept)(gw_platform *p, int kind, const struct cJSON *items, int first);
    /* Adds the items (an array) to the message begun; finish appends it to out. */
    int (*add)(gw_platform *p, int kind, const struct cJSON *items);
    int (*finish)(gw_platform *p, int kind, gw_pout *out);
    /* Messages announcing a device described by a birth object (docs/uplink.md, "Device metadata").
     */
    int (*device)(gw_platform *p, const struct cJSON *birth, gw_pout *out);
    /* A message on a subscribed topic: 1 with *cmd filled when it is a command, 0 when it is
     * not one (our own reply echoed back...), negative when malformed. */
    int (*command)(gw_platform *p, const char *topic, const struct cJSON *doc, gw_pcmd *cmd,
                   struct cJSON **ctx);
    /* Our final reply to the command whose context ctx command() left: the platform's
     * response (one message). */
    int (*reply)(gw_platform *p, const struct cJSON *ctx, const struct cJSON *reply, gw_pout *out);
} gw_platform_ops;

extern const gw_platform_ops gw_platform_native, gw_platform_tb, gw_platform_huawei,
    gw_platform_alink;

/* Creates the format of cfg->format for gateway gw. secret is the destination's password
 * (file/env of uplink.password_*): the device secret of the signed formats, copied and
 * wiped at free, never logged. Returns NULL with a message in err. */
gw_platform *gw_platform_new(const gw_uplink_config *cfg, const char *gw, const char *secret,
                             char *err, size_t errlen);
void gw_platform_free(gw_platform *p);
const gw_platform_ops *gw_platform_ops_of(const gw_platform *p);
int gw_platform_is_native(const gw_platform *p);

/* The messages for rows[0..n) of one kind: device announcements for devices not yet
 * announced in this session first, then the data message (last in out). Returns the number
 * of rows the data message holds (>= 1; the caller sends the rest later), or a negative code.
 * Rows whose items cannot be parsed are counted (bad_items) and still consumed. */
int gw_platform_batch(gw_platform *p, int kind, const char *const *row, const size_t *len, size_t n,
                      int64_t first_id, int64_t last_id, gw_pout *out);
/* A new MQTT session: every device is announced again before its next data. */
void gw_platform_session(gw_platform *p);
/* Messages for a birth message of ours (JSON, docs/uplink.md); none for native. */
int gw_platform_device(gw_platform *p, const char *birth, size_t len, gw_pout *out);
/* A message on a subscribed topic: 1 and *cmd to execute; 0 not a command; < 0 malformed. */
int gw_platform_command(gw_platform *p, const char *topic, const char *payload, size_t len,
                        gw_pcmd *cmd);
/* Our reply (JSON) to a command: the platform's response in out when the reply is final
 * (refused/done/failed, or any status when final_any is set: no command handler will follow
 * up). Returns the messages added (0 or 1) or a negative code. */
int gw_platform_reply(gw_platform *p, const char *reply, size_t len, int final_any, gw_pout *out);
void gw_platform_get_stats(const gw_platform *p, gw_platform_stats *out);

/* ---- For the formats (platform_*.c). ---- */

/* The configuration and state every format shares. */
struct gw_platform {
    const gw_platform_ops *ops;
    gw_uplink_config cfg;
    char gw[128];
    char device[128]; /* the gateway's id on the platform (uplink.platform_device or gw) */
    char secret[256];
    struct cJSON *msg; /* the message being built (item formats) */
    char scratch[GW_PF_TOPIC_MAX];
    void *priv; /* the format's own state */
    gw_platform_stats st;
    /* Devices announced in this session (open addressing, bounded). */
    char **seen;
    size_t nseen, capseen;
    /* Commands awaiting our final reply: corr -> the context command() returned. */
    struct pending {
        char corr[160];
        struct cJSON *ctx;
    } pend[64];
    uint64_t next_corr;
};

/* HMAC-SHA256 of msg under key, as 64 lowercase hex digits and a NUL (OpenSSL). */
int gw_platform_hmac_sha256_hex(const char *key, const char *msg, char out[65]);
/* "2026-12-03T10:00:00.123Z" -> ms since the epoch, or 0. */
int64_t gw_platform_ms_of(const char *iso);
/* Our command payload from a platform's parameters: an object (a bare value becomes
 * {"value":..}) with the addressed device (NULL: the gateway) added when it names none. */
struct cJSON *gw_platform__params(const struct cJSON *params, const char *device);
/* Fills cmd from name ('_' read as '.') and payload (taken); returns 1 or a negative code. */
int gw_platform__cmd(gw_pcmd *cmd, const char *name, struct cJSON *payload);
/* Our reply's status, reason and result as one object (the platforms' "data"/"paras"). */
struct cJSON *gw_platform__outcome(const struct cJSON *reply);
/* The string member name of o, or def. */
const char *gw_platform_str(const struct cJSON *o, const char *name, const char *def);
/* Whether a birth announces the device: only an explicit "online": false takes it off the
 * platform (the field is absent while the gateway has not yet heard from the device). */
int gw_platform_birth_online(const struct cJSON *birth);

#endif
