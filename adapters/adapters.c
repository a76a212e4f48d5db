/* The table of compiled-in adapters: adding a device type adds one line here
 * (and one C file beside this one). The helpers below are how protocols reach
 * an adapter: by the name a device's config gives, by content format, by the
 * identify hook, or by payload kind, never by naming one. */
#include "adapters/adapter.h"

#include "adapters/json_map.h"
#include "base/keyfile.h"
#include "base/smcrypto.h"

#include <openssl/crypto.h>
#include <stdlib.h>

#include <stdio.h>
#include <string.h>

/* One line per adapter: X(name) stands for its descriptor gw_adapter_<name>.
 * Order matters only to gw_adapter_identify and gw_adapter_for_payload. */
#define GW_ADAPTER_TABLE(X)                                                                        \
    X(smoke_nb100)                                                                                 \
    X(json_map)                                                                                    \
    X(cbor_map)                                                                                    \
    X(modbus_profile)                                                                              \
    X(tank_tl1)                                                                                    \
    X(cover_mc200)                                                                                 \
    /* end of the table: every line above ends with a backslash */

#define DECLARE(n) extern const gw_adapter gw_adapter_##n;
#define ENTRY(n) &gw_adapter_##n,
GW_ADAPTER_TABLE(DECLARE)

const gw_adapter *const gw_adapters[] = {GW_ADAPTER_TABLE(ENTRY) NULL};

const gw_adapter *gw_adapter_find(const char *name)
{
    for (size_t i = 0; gw_adapters[i]; i++)
        if (strcmp(gw_adapters[i]->name, name) == 0)
            return gw_adapters[i];
    return NULL;
}

const gw_adapter *gw_adapter_for_payload(int payload)
{
    for (size_t i = 0; gw_adapters[i]; i++)
        if (gw_adapters[i]->payload == payload)
            return gw_adapters[i];
    return NULL;
}

int gw_adapter_accepts(const gw_adapter *a, int cf)
{
    if (cf < 0 || !a->content_formats)
        return 1;
    for (const int *f = a->content_formats; *f != GW_CF_END; f++)
        if (*f == cf)
            return 1;
    return 0;
}

const gw_adapter *gw_adapter_identify(int cf, const uint8_t *buf, size_t len, char *id, size_t cap)
{
    for (size_t i = 0; gw_adapters[i]; i++) {
        const gw_adapter *a = gw_adapters[i];
        if (a->identify && gw_adapter_accepts(a, cf) && a->identify(buf, len, id, cap) == GW_OK &&
            id[0])
            return a;
    }
    if (cap)
        id[0] = '\0';
    return NULL;
}

int gw_adapter_use_init(gw_adapter_use *use, const char *name, const struct gw_ynode *json_map,
                        char *err, size_t errlen)
{
    const gw_adapter *a = gw_adapter_find(name);
    gw_jmap *m = NULL;
    if (!a) {
        int n = snprintf(err, errlen, "key 'adapter': unknown adapter '%s'; known:", name);
        for (size_t i = 0; gw_adapters[i] && n > 0 && (size_t)n < errlen; i++)
            if (gw_adapters[i]->decode || gw_adapters[i]->decode_mapped)
                n += snprintf(err + n, errlen - (size_t)n, " %s", gw_adapters[i]->name);
        return GW_EINVAL;
    }
    if (!a->decode && !a->decode_mapped) {
        snprintf(err, errlen, "key 'adapter': %s does not read payloads of this protocol", name);
        return GW_EINVAL;
    }
    if (json_map) {
        if (!a->decode_mapped) {
            snprintf(err, errlen, "key 'json_map': adapter %s reads no mapping", name);
            return GW_EINVAL;
        }
        if (gw_jmap_load(&m, json_map, "json_map", err, errlen))
            return GW_EINVAL;
    }
    if (use) {
        memset(use, 0, sizeof(*use));
        use->adapter = a;
        use->map = m;
    } else {
        gw_jmap_free(m);
    }
    return GW_OK;
}

void gw_adapter_use_free(gw_adapter_use *use)
{
    gw_jmap_free(use->map);
    use->map = NULL;
    OPENSSL_cleanse(use->sm4_key, sizeof(use->sm4_key));
    use->sm4_mode = GW_SM4_NONE;
}

int gw_adapter_use_sm4(gw_adapter_use *use, const char *key_file, const char *mode, char *err,
                       size_t errlen)
{
    if (!key_file || !key_file[0])
        return GW_OK;
    int m = strcmp(mode, "ctr") == 0 ? GW_SM4_CTR : strcmp(mode, "cbc") == 0 ? GW_SM4_CBC : 0;
    if (!m) {
        snprintf(err, errlen, "key 'sm4_mode' must be ctr or cbc");
        return GW_EINVAL;
    }
    uint8_t k[GW_SM4_KEY_LEN];
    char kerr[300];
    if (gw_keyfile_read_hex(key_file, k, sizeof(k), kerr, sizeof(kerr))) {
        snprintf(err, errlen, "key 'sm4_key_file': %s", kerr);
        return GW_EINVAL;
    }
    if (use) {
        memcpy(use->sm4_key, k, sizeof(k));
        use->sm4_mode = m;
    }
    OPENSSL_cleanse(k, sizeof(k));
    return GW_OK;
}

/* Decrypts an IV || ciphertext frame into a fresh buffer (caller wipes and
 * frees), or NULL when it is too short, badly padded or memory is short. */
static uint8_t *sm4_open(const gw_adapter_use *use, const uint8_t *buf, size_t len, size_t *n)
{
    if (len <= GW_SM4_BLOCK)
        return NULL;
    size_t clen = len - GW_SM4_BLOCK;
    uint8_t *pt = malloc(clen);
    if (!pt)
        return NULL;
    int rc = use->sm4_mode == GW_SM4_CTR
                 ? gw_sm4_ctr(use->sm4_key, buf, buf + GW_SM4_BLOCK, clen, pt)
                 : gw_sm4_cbc_decrypt(use->sm4_key, buf, buf + GW_SM4_BLOCK, clen, pt, &clen);
    *n = clen;
    if (rc) {
        OPENSSL_cleanse(pt, len - GW_SM4_BLOCK);
        free(pt);
        return NULL;
    }
    return pt;
}

int gw_adapter_use_decode(const gw_adapter_use *use, const struct gw_jmap *fallback,
                          const uint8_t *buf, size_t len, int64_t now_ms, const gw_sink *out)
{
    if (use->sm4_mode != GW_SM4_NONE) {
        size_t n = 0;
        uint8_t *pt = sm4_open(use, buf, len, &n);
        if (!pt)
            return GW_EMALFORMED;
        gw_adapter_use plain = *use;
        plain.sm4_mode = GW_SM4_NONE;
        int rc = gw_adapter_use_decode(&plain, fallback, pt, n, now_ms, out);
        OPENSSL_cleanse(&plain, sizeof(plain));
        OPENSSL_cleanse(pt, len - GW_SM4_BLOCK);
        free(pt);
        return rc;
    }
    const gw_adapter *a = use->adapter;
    if (a->decode_mapped)
        return a->decode_mapped(use->map ? use->map : fallback, buf, len, now_ms, out);
    return a->decode ? a->decode(buf, len, now_ms, out) : GW_EUNSUPPORTED;
}
