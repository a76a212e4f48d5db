/* SM3, HMAC-SM3 and SM4 through OpenSSL's EVP layer: see smcrypto.h. */
#include "base/smcrypto.h"

#include "base/model.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

int gw_sm3(const void *d, size_t n, uint8_t out[GW_SM3_LEN])
{
    unsigned int len = 0;
    int ok = EVP_Digest(d, n, out, &len, EVP_sm3(), NULL) == 1 && len == GW_SM3_LEN;
    return ok ? GW_OK : GW_ERR;
}

struct gw_smctx {
    EVP_CIPHER *cipher;
    EVP_CIPHER_CTX *ctr; /* keyed; each call sets only the IV */
    EVP_MAC *mac;
    EVP_MAC_CTX *hmac; /* keyed; each call re-initialises it without a key */
};

gw_smctx *gw_smctx_new(const uint8_t *sm4_key, const uint8_t *mac_key, size_t mac_klen)
{
    gw_smctx *c = OPENSSL_zalloc(sizeof(*c));
    if (!c)
        return NULL;
    int ok = 1;
    if (sm4_key) {
        c->cipher = EVP_CIPHER_fetch(NULL, "SM4-CTR", NULL);
        c->ctr = c->cipher ? EVP_CIPHER_CTX_new() : NULL;
        ok = c->ctr && EVP_EncryptInit_ex2(c->ctr, c->cipher, sm4_key, NULL, NULL) == 1;
    }
    if (ok && mac_key) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SM3", 0),
            OSSL_PARAM_construct_end(),
        };
        c->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        c->hmac = c->mac ? EVP_MAC_CTX_new(c->mac) : NULL;
        ok = c->hmac && EVP_MAC_init(c->hmac, mac_key, mac_klen, params) == 1;
    }
    if (!ok) {
        gw_smctx_free(c);
        return NULL;
    }
    return c;
}

void gw_smctx_free(gw_smctx *c)
{
    if (!c)
        return;
    EVP_CIPHER_CTX_free(c->ctr); /* both cleanse their key schedules */
    EVP_MAC_CTX_free(c->hmac);
    EVP_CIPHER_free(c->cipher);
    EVP_MAC_free(c->mac);
    OPENSSL_free(c);
}

int gw_smctx_hmac(gw_smctx *c, const void *const *parts, const size_t *lens, size_t nparts,
                  uint8_t out[GW_SM3_LEN])
{
    size_t len = 0;
    int ok = c->hmac && EVP_MAC_init(c->hmac, NULL, 0, NULL) == 1;
    for (size_t i = 0; ok && i < nparts; i++)
        ok = EVP_MAC_update(c->hmac, parts[i], lens[i]) == 1;
    ok = ok && EVP_MAC_final(c->hmac, out, &len, GW_SM3_LEN) == 1 && len == GW_SM3_LEN;
    return ok ? GW_OK : GW_ERR;
}

int gw_smctx_ctr(gw_smctx *c, const uint8_t iv[GW_SM4_BLOCK], const uint8_t *in, size_t n,
                 uint8_t *out)
{
    int a = 0, b = 0;
    int ok = c->ctr && EVP_EncryptInit_ex2(c->ctr, NULL, NULL, iv, NULL) == 1;
    /* EVP lengths are int: feed large inputs in pieces (CTR keeps its state). */
    for (size_t done = 0; ok && done < n; done += (size_t)a) {
        size_t piece = n - done > (1u << 30) ? (1u << 30) : n - done;
        ok = EVP_EncryptUpdate(c->ctr, out + done, &a, in + done, (int)piece) == 1 &&
             a == (int)piece;
    }
    ok = ok && EVP_EncryptFinal_ex(c->ctr, out + n, &b) == 1 && b == 0;
    return ok ? GW_OK : GW_ERR;
}

int gw_hmac_sm3(const uint8_t *key, size_t klen, const void *const *parts, const size_t *lens,
                size_t nparts, uint8_t out[GW_SM3_LEN])
{
    gw_smctx *c = gw_smctx_new(NULL, key, klen);
    int rc = c ? gw_smctx_hmac(c, parts, lens, nparts, out) : GW_ERR;
    gw_smctx_free(c);
    return rc;
}

int gw_sm4_ctr(const uint8_t key[GW_SM4_KEY_LEN], const uint8_t iv[GW_SM4_BLOCK], const uint8_t *in,
               size_t n, uint8_t *out)
{
    gw_smctx *c = gw_smctx_new(key, NULL, 0);
    int rc = c ? gw_smctx_ctr(c, iv, in, n, out) : GW_ERR;
    gw_smctx_free(c);
    return rc;
}

int gw_sm4_cbc_decrypt(const uint8_t key[GW_SM4_KEY_LEN], const uint8_t iv[GW_SM4_BLOCK],
                       const uint8_t *in, size_t n, uint8_t *out, size_t *outlen)
{
    if (n == 0 || n % GW_SM4_BLOCK || n > (1u << 30))
        return GW_EMALFORMED;
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int a = 0, b = 0;
    int ok = c && EVP_DecryptInit_ex(c, EVP_sm4_cbc(), NULL, key, iv) == 1 &&
             EVP_DecryptUpdate(c, out, &a, in, (int)n) == 1;
    /* Final checks and strips the PKCS#7 padding; it fails on bad padding. */
    int fin = ok && EVP_DecryptFinal_ex(c, out + a, &b) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok)
        return GW_ERR;
    if (!fin)
        return GW_EMALFORMED;
    *outlen = (size_t)(a + b);
    return GW_OK;
}
