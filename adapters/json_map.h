#ifndef GW_JSON_MAP_H
#define GW_JSON_MAP_H
/* A JSON payload adapter driven by a mapping: JSON paths -> metric, unit, scale,
 * events and the observation time. Used by CoAP JSON devices and MQTT devices,
 * so a vendor whose device speaks JSON adds a device type with configuration
 * only (docs/adapters.md). Pure code: no I/O, no logging, no clock.
 *
 * MAPPING (YAML, under a device's or listener's `json_map:` key)
 *
 *   time: ts                    path of the observation time (optional; absent -> none)
 *   time_format: auto           auto | unix_s | unix_ms | iso8601
 *                               auto: a number >= 1e11 is milliseconds, else seconds; a
 *                               string of digits is a number; any other string is ISO 8601
 *   time_zone: "+08:00"         offset for ISO times written without one (default UTC)
 *   points:                     1..64 readings
 *     - path: data.depth        required: keys separated by '.', array indexes as [N]
 *       metric: water_depth     reading key (default: the last key of the path)
 *       unit: cm                (default: none)
 *       scale: 0.1              value = raw * scale + offset (defaults 1 and 0)
 *       offset: 0
 *   events:                     0..32 device-reported conditions
 *     - path: alarm.smoke       true/false, a number (non-zero = active) or one of the
 *       kind: fire_alarm        strings 1/0, true/false, on/off, active/inactive,
 *       detail: "from json"     alarm/normal, alarm/cleared
 *
 * PAYLOAD: an object is one record; an array of objects is a batch of records
 * (at most 1000). A missing or null field is skipped. A field of the wrong type
 * (an object where a number belongs, a non-numeric string), a bad time, text
 * that is not JSON, or a payload where no mapped field is present at all makes
 * the whole payload GW_EMALFORMED and nothing is emitted. */
#include "adapters/adapter.h"
#include "base/yamldoc.h"

#include <stddef.h>
#include <stdint.h>

typedef struct gw_jmap gw_jmap;

/* Compiles a mapping from its YAML node. path names the key in messages
 * ("devices[3].json_map"). Returns 0 and *out (free with gw_jmap_free), or
 * GW_EINVAL with "FILE:LINE: ..." in err. */
int gw_jmap_load(gw_jmap **out, const gw_ynode *node, const char *path, char *err, size_t errlen);
void gw_jmap_free(gw_jmap *m);

/* Decodes one payload through the mapping. m == NULL is the generic mapping:
 * every top-level number or boolean becomes a reading named after its key,
 * and "ts", "time" or "timestamp" is the observation time (auto format). */
int gw_jmap_decode(const gw_jmap *m, const char *json, size_t len, int64_t now_ms,
                   const gw_sink *out);

/* The same on a tree already parsed (the CBOR adapter builds one from CBOR).
 * root stays the caller's. */
struct cJSON;
int gw_jmap_decode_tree(const gw_jmap *m, const struct cJSON *root, int64_t now_ms,
                        const gw_sink *out);

/* Finds a string or integer at path ("imei", "dev.id") in a JSON object and
 * copies it as text. Returns 0, GW_ENOTFOUND, or GW_EMALFORMED (not JSON). */
int gw_jmap_get_text(const char *json, size_t len, const char *path, char *out, size_t cap);

/* Parses an ISO 8601 time ("2026-06-01T08:00:00.250+08:00", "2026-06-01 08:00:00")
 * to ms since the epoch; times without an offset use tz_min minutes east of UTC. */
int gw_jmap_parse_iso(const char *s, int tz_min, int64_t *ms);

/* The adapter descriptor ("json-map", generic mapping). */
extern const gw_adapter gw_adapter_json_map;

#endif
