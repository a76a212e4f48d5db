#ifndef GW_ADAPTER_H
#define GW_ADAPTER_H
/* An adapter turns one device payload into readings and events of the common
 * model. One C file, one descriptor, everything else static; the table in
 * adapters/adapters.c lists them, and a protocol finds a device's adapter only
 * through that table (by name from the config, by content format or by the
 * identify hook): no protocol names an adapter. decode() must treat buf as
 * hostile: check the remaining length before every read, never trust a length
 * field, and return GW_EMALFORMED (having emitted nothing it is unsure of)
 * instead of guessing. Adapters do no I/O and do not log. */
#include "base/model.h"

#include <stddef.h>
#include <stdint.h>

struct gw_jmap;
struct gw_ynode;
struct gw_profile;
struct gw_param;
struct gw_mb_result;

typedef enum {
    GW_PAYLOAD_BINARY = 0, /* vendor binary frame (e.g. LwM2M object 19/0/0) */
    GW_PAYLOAD_JSON,       /* a document read through a json_map (JSON text, CBOR) */
    GW_PAYLOAD_REGISTERS   /* Modbus registers, decoded through a profile */
} gw_payload_kind;

/* The end of a content_formats list. */
#define GW_CF_END (-1)

typedef struct gw_adapter {
    const char *name; /* referenced from profiles and config */
    const char *version;
    const char *description;
    int payload; /* gw_payload_kind */
    /* The CoAP Content-Format numbers (RFC 7252 section 12.3: 42 octet-stream,
     * 50 JSON, 60 CBOR) its payloads come as, ended by GW_CF_END; NULL for any.
     * A CoAP request stating another format gets 4.15; one stating none is
     * always tried. */
    const int *content_formats;
    /* Decodes buf (len bytes) received at now_ms into out. Returns 0, or a
     * negative GW_E* code. Readings leave device empty: the caller fills it.
     * NULL for a registers adapter. */
    int (*decode)(const uint8_t *buf, size_t len, int64_t now_ms, const gw_sink *out);
    /* Adapters that read their payload through a json_map mapping (a device's
     * or listener's `json_map`, adapters/json_map.h) set this; map may be
     * NULL for the generic mapping. Protocols call it instead of decode when
     * it is set (gw_adapter_use_decode does). May be NULL. */
    int (*decode_mapped)(const struct gw_jmap *map, const uint8_t *buf, size_t len, int64_t now_ms,
                         const gw_sink *out);
    /* The device id a payload carries (an NB-100 frame's IMEI, a JSON or CBOR
     * "imei"/"ep"), written into id (cap bytes). Returns 0, or GW_ENOTFOUND
     * when the payload is not recognisably this adapter's or names no device;
     * never emits. Listeners that find a device by its payload ask the table
     * (gw_adapter_identify); a payload that names another device than the one
     * it was sent for is refused. May be NULL. */
    int (*identify)(const uint8_t *buf, size_t len, char *id, size_t cap);
    /* Registers adapters: decodes the answers to the reads the profile planned
     * (adapters/modbus_profile.h, gw_profile_decode). May be NULL. */
    int (*decode_registers)(const struct gw_profile *profile, const struct gw_param *site,
                            size_t nsite, const struct gw_mb_result *results, size_t n,
                            int64_t now_ms, const gw_sink *out);
} gw_adapter;

/* NULL-terminated table of every compiled-in adapter (adapters/adapters.c). */
extern const gw_adapter *const gw_adapters[];
const gw_adapter *gw_adapter_find(const char *name);
/* The first adapter in the table of this payload kind, or NULL (the Modbus
 * protocols take the registers adapter this way). */
const gw_adapter *gw_adapter_for_payload(int payload);
/* 1 when a accepts CoAP Content-Format cf (-1: none stated), else 0. */
int gw_adapter_accepts(const gw_adapter *a, int cf);
/* Asks every adapter that accepts cf and has an identify hook, in table
 * order, for the device id buf carries. Returns the adapter that named one
 * (id filled) or NULL (id empty). */
const gw_adapter *gw_adapter_identify(int cf, const uint8_t *buf, size_t len, char *id, size_t cap);

/* What a protocol keeps per device: its adapter and its compiled json_map. */
typedef struct gw_adapter_use {
    const gw_adapter *adapter;
    struct gw_jmap *map; /* NULL: none given */
    int sm4_mode;        /* GW_SM4_NONE, or how payloads are encrypted (gw_adapter_use_sm4) */
    uint8_t sm4_key[16];
} gw_adapter_use;

enum { GW_SM4_NONE = 0, GW_SM4_CTR = 1, GW_SM4_CBC = 2 };

/* Checks a device's adapter keys, `adapter: name` and `json_map: node` (node
 * may be NULL), against the table: the adapter exists, reads byte payloads,
 * and a mapping is given only to one that reads it and compiles. With use
 * non-NULL it is filled (free with gw_adapter_use_free); with NULL this only
 * checks. Returns 0, or GW_EINVAL with a message naming the key in err. */
int gw_adapter_use_init(gw_adapter_use *use, const char *name, const struct gw_ynode *json_map,
                        char *err, size_t errlen);
void gw_adapter_use_free(gw_adapter_use *use);
/* Device payloads encrypted with a per-device SM4 key (some NB-IoT vendors):
 * reads the key (16 bytes as 32 hex digits) from key_file, which group and
 * others must not be able to read, and makes gw_adapter_use_decode decrypt
 * every payload before the adapter sees it. mode is "ctr" or "cbc" (PKCS#7
 * padding); the frame is IV (16 bytes) || ciphertext (docs/adapters.md). An
 * empty key_file does nothing. With use NULL this only checks. Returns 0 or
 * GW_EINVAL with a message naming the file, never the key, in err. The key is
 * wiped by gw_adapter_use_free. */
int gw_adapter_use_sm4(gw_adapter_use *use, const char *key_file, const char *mode, char *err,
                       size_t errlen);
/* Decodes one payload through use: with its mapping, else fallback (e.g. an
 * MQTT listener's mapping, may be NULL), for adapters that read one; through
 * decode otherwise. Returns what the adapter returned. */
int gw_adapter_use_decode(const gw_adapter_use *use, const struct gw_jmap *fallback,
                          const uint8_t *buf, size_t len, int64_t now_ms, const gw_sink *out);

#endif
