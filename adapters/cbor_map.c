/* CBOR payloads through a json_map (format and limits in cbor_map.h).
 *
 * Three steps. check() walks the raw bytes with a bounded cursor and an
 * explicit stack, and refuses anything outside the limits before libcbor
 * allocates: libcbor 0.8's cbor_load sizes a definite array or map from its
 * header, so a five-byte map claiming 2^32 pairs would ask for gigabytes.
 * cbor_load then builds the item tree from bytes known to be one well-formed
 * item. to_json() converts that tree (depth bounded by check()) into cJSON,
 * and json_map's decoder does the mapping, so CBOR and JSON devices behave
 * alike. */
#include "adapters/cbor_map.h"
#include "base/civil.h"

#include <cbor.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- step 1: the raw bytes ---- */

enum { K_ARRAY, K_MAP, K_TAG, K_STRING };

struct frame {
    uint64_t total; /* entries expected (a map counts keys and values); 0 if indefinite */
    uint64_t seen;
    uint8_t kind, indef, major;
};

/* One item has ended: count it in its parents, closing every definite
 * container it completes. Returns 1 when the top-level item is complete. */
static int item_done(struct frame *st, int *depth)
{
    while (*depth > 0) {
        struct frame *f = &st[*depth - 1];
        f->seen++;
        if (f->indef) {
            uint64_t n = f->kind == K_MAP ? f->seen / 2 : f->seen;
            return (f->kind != K_STRING && n > GW_CBOR_MAX_COUNT) ? -1 : 0;
        }
        if (f->seen < f->total)
            return 0;
        (*depth)--;
    }
    return 1;
}

static int nonfinite(int ai, uint64_t v)
{
    if (ai == 25)
        return (v & 0x7c00u) == 0x7c00u;
    if (ai == 26)
        return (v & 0x7f800000u) == 0x7f800000u;
    return (v & 0x7ff0000000000000ull) == 0x7ff0000000000000ull;
}

static int check(const uint8_t *buf, size_t len)
{
    struct frame st[GW_CBOR_MAX_DEPTH];
    int depth = 0;
    size_t pos = 0, items = 0;
    if (len == 0 || len > GW_CBOR_MAX_LEN)
        return GW_EMALFORMED;
    for (;;) {
        if (pos >= len)
            return GW_EMALFORMED; /* truncated */
        uint8_t b = buf[pos++];
        int major = b >> 5, ai = b & 31;
        struct frame *top = depth ? &st[depth - 1] : NULL;
        int r;
        if (b == 0xff) { /* break: closes the innermost indefinite item */
            if (!top || !top->indef || (top->kind == K_MAP && top->seen % 2))
                return GW_EMALFORMED;
            depth--;
            if ((r = item_done(st, &depth)) < 0)
                return GW_EMALFORMED;
            if (r)
                break;
            continue;
        }
        if (top && top->kind == K_STRING && (major != top->major || ai == 31))
            return GW_EMALFORMED; /* an indefinite string holds definite chunks of its type */
        if (++items > GW_CBOR_MAX_ITEMS)
            return GW_EMALFORMED;
        uint64_t v = 0;
        int indef = 0;
        if (ai < 24) {
            v = (uint64_t)ai;
        } else if (ai <= 27) {
            size_t n = (size_t)1 << (ai - 24);
            if (len - pos < n)
                return GW_EMALFORMED;
            for (size_t i = 0; i < n; i++)
                v = (v << 8) | buf[pos++];
        } else if (ai == 31 && major >= 2 && major <= 5) {
            indef = 1;
        } else {
            return GW_EMALFORMED; /* reserved additional information */
        }
        struct frame nf = {0, 0, 0, (uint8_t)indef, (uint8_t)major};
        switch (major) {
        case 0:
        case 1:
            break;
        case 2:
        case 3:
            if (indef) {
                nf.kind = K_STRING;
                goto push;
            }
            if (v > len - pos)
                return GW_EMALFORMED;
            pos += (size_t)v;
            break;
        case 4:
        case 5:
            nf.kind = major == 4 ? K_ARRAY : K_MAP;
            if (indef)
                goto push;
            /* Every entry takes at least one byte: a count beyond the bytes
             * left is a lie, whatever the limit. */
            if (v > GW_CBOR_MAX_COUNT || v * (major == 5 ? 2 : 1) > len - pos)
                return GW_EMALFORMED;
            if (v == 0)
                break;
            nf.total = v * (major == 5 ? 2 : 1);
            goto push;
        case 6:
            nf.kind = K_TAG;
            nf.total = 1;
            goto push;
        default: /* 7: false, true, null, undefined and finite floats only */
            if (ai < 20 || ai == 24 || (ai >= 25 && ai <= 27 && nonfinite(ai, v)))
                return GW_EMALFORMED;
            break;
        }
        if ((r = item_done(st, &depth)) < 0)
            return GW_EMALFORMED;
        if (r)
            break;
        continue;
    push:
        if (depth == GW_CBOR_MAX_DEPTH)
            return GW_EMALFORMED;
        st[depth++] = nf;
    }
    return pos == len ? GW_OK : GW_EMALFORMED; /* one item and nothing after it */
}

/* ---- step 3: item tree -> cJSON ---- */

static int utf8_ok(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t k;
        uint32_t cp;
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            k = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            k = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i <= k)
            return 0;
        for (size_t j = 1; j <= k; j++) {
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + j] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += k + 1;
    }
    return 1;
}

/* The text of a string item as a new C string (free()), or NULL. */
static char *text_of(const cbor_item_t *it)
{
    size_t n = cbor_string_length(it), nchunks = 1;
    cbor_item_t **chunks = NULL;
    if (cbor_string_is_indefinite(it)) {
        chunks = cbor_string_chunks_handle(it);
        nchunks = cbor_string_chunk_count(it);
        n = 0;
        for (size_t i = 0; i < nchunks; i++)
            n += cbor_string_length(chunks[i]);
    }
    char *s = malloc(n + 1);
    if (!s)
        return NULL;
    size_t at = 0;
    for (size_t i = 0; i < nchunks; i++) {
        const cbor_item_t *c = chunks ? chunks[i] : it;
        size_t cn = cbor_string_length(c);
        if (cn)
            memcpy(s + at, cbor_string_handle(c), cn);
        at += cn;
    }
    s[n] = '\0';
    if (!utf8_ok((const uint8_t *)s, n)) {
        free(s);
        return NULL;
    }
    return s;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Epoch seconds -> "YYYY-MM-DDTHH:MM:SS.mmmZ" (years 1970..9999). */
static int iso_of(double secs, char *out, size_t cap)
{
    if (!isfinite(secs) || secs < 0 || secs >= 253402300800.0)
        return GW_EMALFORMED;
    int64_t ms = (int64_t)llround(secs * 1000.0);
    int64_t days = floor_div(ms, 86400000), rem = ms - days * 86400000;
    int64_t y;
    unsigned m, d;
    gw_civil_from_days(days, &y, &m, &d);
    if (y > 9999)
        return GW_EMALFORMED;
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)y, (int)m, (int)d,
             (int)(rem / 3600000), (int)(rem / 60000 % 60), (int)(rem / 1000 % 60),
             (int)(rem % 1000));
    return GW_OK;
}

static int to_json(const cbor_item_t *it, cJSON **out);

static int number_item(const cbor_item_t *it, double *v)
{
    switch (cbor_typeof(it)) {
    case CBOR_TYPE_UINT:
        *v = (double)cbor_get_int(it);
        return GW_OK;
    case CBOR_TYPE_NEGINT:
        *v = -1.0 - (double)cbor_get_int(it);
        return GW_OK;
    case CBOR_TYPE_FLOAT_CTRL:
        if (cbor_float_ctrl_is_ctrl(it))
            return GW_EMALFORMED;
        *v = cbor_float_get_float(it);
        return isfinite(*v) ? GW_OK : GW_EMALFORMED;
    default:
        return GW_EMALFORMED;
    }
}

static int tag_to_json(const cbor_item_t *it, cJSON **out)
{
    uint64_t tag = cbor_tag_value(it);
    cbor_item_t *content = cbor_tag_item(it); /* a new reference */
    int rc = GW_EMALFORMED;
    if (!content)
        return GW_EMALFORMED;
    if (tag == 1) {
        double secs;
        char iso[40];
        if (number_item(content, &secs) == GW_OK && iso_of(secs, iso, sizeof(iso)) == GW_OK) {
            *out = cJSON_CreateString(iso);
            rc = *out ? GW_OK : GW_ENOMEM;
        }
    } else if (tag == 0) {
        if (cbor_isa_string(content))
            rc = to_json(content, out);
    } else if (tag != 2 && tag != 3) {
        rc = to_json(content, out);
    }
    cbor_decref(&content);
    return rc;
}

static int map_key(const cbor_item_t *k, char **key)
{
    char num[32];
    *key = NULL;
    if (cbor_isa_string(k)) {
        *key = text_of(k);
        return *key ? GW_OK : GW_EMALFORMED;
    }
    if (cbor_isa_uint(k))
        snprintf(num, sizeof(num), "%llu", (unsigned long long)cbor_get_int(k));
    else if (cbor_isa_negint(k) && cbor_get_int(k) < UINT64_MAX)
        snprintf(num, sizeof(num), "-%llu", (unsigned long long)cbor_get_int(k) + 1);
    else
        return GW_EMALFORMED;
    *key = strdup(num);
    return *key ? GW_OK : GW_ENOMEM;
}

static int to_json(const cbor_item_t *it, cJSON **out)
{
    *out = NULL;
    int rc = GW_OK;
    double v;
    switch (cbor_typeof(it)) {
    case CBOR_TYPE_UINT:
    case CBOR_TYPE_NEGINT:
        number_item(it, &v);
        *out = cJSON_CreateNumber(v);
        break;
    case CBOR_TYPE_BYTESTRING:
        *out = cJSON_CreateNull(); /* ignored: no JSON field carries raw bytes */
        break;
    case CBOR_TYPE_STRING: {
        char *s = text_of(it);
        if (!s)
            return GW_EMALFORMED;
        *out = cJSON_CreateString(s);
        free(s);
        break;
    }
    case CBOR_TYPE_ARRAY: {
        if (!(*out = cJSON_CreateArray()))
            return GW_ENOMEM;
        cbor_item_t **h = cbor_array_handle(it);
        for (size_t i = 0, n = cbor_array_size(it); i < n && rc == GW_OK; i++) {
            cJSON *c;
            if ((rc = to_json(h[i], &c)) == GW_OK && !cJSON_AddItemToArray(*out, c)) {
                cJSON_Delete(c);
                rc = GW_ENOMEM;
            }
        }
        break;
    }
    case CBOR_TYPE_MAP: {
        if (!(*out = cJSON_CreateObject()))
            return GW_ENOMEM;
        struct cbor_pair *h = cbor_map_handle(it);
        for (size_t i = 0, n = cbor_map_size(it); i < n && rc == GW_OK; i++) {
            char *key;
            cJSON *c = NULL;
            if ((rc = map_key(h[i].key, &key)) == GW_OK &&
                (rc = to_json(h[i].value, &c)) == GW_OK && !cJSON_AddItemToObject(*out, key, c)) {
                cJSON_Delete(c);
                rc = GW_ENOMEM;
            }
            free(key);
        }
        break;
    }
    case CBOR_TYPE_TAG:
        return tag_to_json(it, out);
    case CBOR_TYPE_FLOAT_CTRL:
        if (!cbor_float_ctrl_is_ctrl(it)) {
            if ((rc = number_item(it, &v)))
                return rc;
            *out = cJSON_CreateNumber(v);
        } else if (cbor_ctrl_value(it) == CBOR_CTRL_TRUE ||
                   cbor_ctrl_value(it) == CBOR_CTRL_FALSE) {
            *out = cJSON_CreateBool(cbor_ctrl_value(it) == CBOR_CTRL_TRUE);
        } else if (cbor_ctrl_value(it) == CBOR_CTRL_NULL ||
                   cbor_ctrl_value(it) == CBOR_CTRL_UNDEF) {
            *out = cJSON_CreateNull();
        } else {
            return GW_EMALFORMED;
        }
        break;
    default:
        return GW_EMALFORMED;
    }
    if (rc) {
        cJSON_Delete(*out);
        *out = NULL;
        return rc;
    }
    return *out ? GW_OK : GW_ENOMEM;
}

/* ---- the entry points ---- */

int gw_cbor_to_json(const uint8_t *buf, size_t len, cJSON **out)
{
    *out = NULL;
    if (!buf || check(buf, len))
        return GW_EMALFORMED;
    struct cbor_load_result res;
    cbor_item_t *item = cbor_load(buf, len, &res);
    if (!item)
        return res.error.code == CBOR_ERR_MEMERROR ? GW_ENOMEM : GW_EMALFORMED;
    int rc = res.read == len ? to_json(item, out) : GW_EMALFORMED;
    cbor_decref(&item);
    return rc;
}

int gw_cbor_decode(const gw_jmap *m, const uint8_t *buf, size_t len, int64_t now_ms,
                   const gw_sink *out)
{
    cJSON *root;
    int rc = gw_cbor_to_json(buf, len, &root);
    if (rc)
        return rc;
    rc = gw_jmap_decode_tree(m, root, now_ms, out);
    cJSON_Delete(root);
    return rc;
}

int gw_cbor_get_text(const uint8_t *buf, size_t len, const char *key, char *out, size_t cap)
{
    cJSON *root;
    int rc = gw_cbor_to_json(buf, len, &root);
    if (rc)
        return rc == GW_ENOMEM ? rc : GW_EMALFORMED;
    const cJSON *n = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, key) : NULL;
    rc = GW_ENOTFOUND;
    if (cJSON_IsString(n)) {
        rc = gw_strlcpy(out, n->valuestring, cap) ? GW_ENOTFOUND : GW_OK;
    } else if (cJSON_IsNumber(n) && n->valuedouble >= 0 && n->valuedouble < 1e15 &&
               n->valuedouble == floor(n->valuedouble)) {
        rc = (size_t)snprintf(out, cap, "%.0f", n->valuedouble) < cap ? GW_OK : GW_ENOTFOUND;
    }
    cJSON_Delete(root);
    return rc;
}

static int generic_decode(const uint8_t *buf, size_t len, int64_t now_ms, const gw_sink *out)
{
    return gw_cbor_decode(NULL, buf, len, now_ms, out);
}

/* A map's "imei", else its "ep" (the LwM2M endpoint name). */
static int cbor_identify(const uint8_t *buf, size_t len, char *id, size_t cap)
{
    if (gw_cbor_get_text(buf, len, "imei", id, cap) == GW_OK ||
        gw_cbor_get_text(buf, len, "ep", id, cap) == GW_OK)
        return GW_OK;
    return GW_ENOTFOUND;
}

static const int cbor_formats[] = {60 /* application/cbor */, GW_CF_END};

const gw_adapter gw_adapter_cbor_map = {
    .name = "cbor-map",
    .version = "1.0",
    .description = "CBOR payloads (application/cbor); generic or through a json_map",
    .payload = GW_PAYLOAD_BINARY, /* CBOR: bytes, mapped like JSON */
    .content_formats = cbor_formats,
    .decode = generic_decode,
    .decode_mapped = gw_cbor_decode,
    .identify = cbor_identify,
};
