#ifndef GW_CBOR_MAP_H
#define GW_CBOR_MAP_H
/* CBOR payloads (RFC 8949, CoAP Content-Format 60 application/cbor) through the
 * same mapping as JSON (adapters/json_map.h): the data item is checked, loaded
 * with libcbor and converted to the JSON model, then mapped by json_map. Pure
 * code: no I/O, no logging, no clock.
 *
 * CONVERSION
 *   map            -> object; keys must be text or integers (an integer key 7
 *                     becomes "7", so a mapping can name it); a duplicate key
 *                     keeps the first value, as JSON does
 *   array          -> array
 *   integers       -> numbers, every width (beyond 2^53 precision is lost)
 *   floats         -> numbers (half, single, double); NaN or infinity anywhere
 *                     makes the payload malformed
 *   text           -> string (must be UTF-8 without NUL)
 *   true/false/null-> the same; undefined -> null
 *   byte strings   -> null: ignored (a mapped field holding one counts as absent)
 *   tag 0 (date/time text)  -> the text
 *   tag 1 (epoch seconds)   -> ISO 8601 text in UTC with milliseconds, so the
 *                              unit is never guessed: use time_format auto or iso8601
 *   tags 2/3 (bignums)      -> malformed
 *   any other tag           -> its content
 *   other simple values     -> malformed
 *
 * LIMITS, checked on the raw bytes before libcbor allocates anything:
 * payload <= GW_CBOR_MAX_LEN bytes, exactly one data item and nothing after it,
 * nesting (arrays, maps, tags, indefinite strings) <= GW_CBOR_MAX_DEPTH,
 * an array or map at most GW_CBOR_MAX_COUNT entries and never more than the
 * bytes left, at most GW_CBOR_MAX_ITEMS data items in all. */
#include "adapters/adapter.h"
#include "adapters/json_map.h"

#include <stddef.h>
#include <stdint.h>

#define GW_CBOR_MAX_LEN 65536
#define GW_CBOR_MAX_DEPTH 16
#define GW_CBOR_MAX_COUNT 1024
#define GW_CBOR_MAX_ITEMS 8192

struct cJSON;

/* Converts one CBOR data item (buf, len bytes) into a cJSON tree. Returns 0 and
 * *out (the caller frees it with cJSON_Delete), GW_EMALFORMED, or GW_ENOMEM. */
int gw_cbor_to_json(const uint8_t *buf, size_t len, struct cJSON **out);

/* Decodes one CBOR payload through the mapping m (NULL: the generic mapping,
 * as gw_jmap_decode). Same results and all-or-nothing rule as gw_jmap_decode. */
int gw_cbor_decode(const gw_jmap *m, const uint8_t *buf, size_t len, int64_t now_ms,
                   const gw_sink *out);

/* Copies the text or non-negative integer at top-level key (e.g. "imei") of a
 * CBOR map. Returns 0, GW_ENOTFOUND, or GW_EMALFORMED (not acceptable CBOR). */
int gw_cbor_get_text(const uint8_t *buf, size_t len, const char *key, char *out, size_t cap);

/* The adapter descriptor ("cbor-map", generic mapping). */
extern const gw_adapter gw_adapter_cbor_map;

#endif
