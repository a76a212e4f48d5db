/* SM3, HMAC-SM3 and SM4 through OpenSSL's EVP layer: see smcrypto.h. */
#include "base/smcrypto.h"

#include "base/model.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

int gw_sm3(const void *d, size_t n, uint8_t out[GW_SM3_LEN])
{
    unsigned int len = 0;
    int ok = EVP_Digest(d, n, out, &len, EVP_sm3(), NULL) == 1 && len == GW_SM3_LEN;
    return ok ? GW_OK : GW_ERR;
}

int gw_hmac_sm3(const uint8_t *key, size_t klen, const void *const *parts, const size_t *lens,
                size_t nparts, uint8_t out[GW_SM3_LEN])
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SM3", 0),
        OSSL_PARAM_construct_end(),
    };
    size_t len = 0;
    int ok = ctx && EVP_MAC_init(ctx, key, klen, params) == 1;
    for (size_t i = 0; ok && i < nparts; i++)
        ok = EVP_MAC_update(ctx, parts[i], lens[i]) == 1;
    ok = ok && EVP_MAC_final(ctx, out, &len, GW_SM3_LEN) == 1 && len == GW_SM3_LEN;
    EVP_MAC_CTX_free(ctx); /* cleanses the key schedule */
    EVP_MAC_free(mac);
    return ok ? GW_OK : GW_ERR;
}

int gw_sm4_ctr(const uint8_t key[GW_SM4_KEY_LEN], const uint8_t iv[GW_SM4_BLOCK],
               const uint8_t *in, size_t n, uint8_t *out)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int a = 0, b = 0;
    int ok = c && EVP_EncryptInit_ex(c, EVP_sm4_ctr(), NULL, key, iv) == 1;
    /* EVP lengths are int: feed large inputs in pieces (CTR keeps its state). */
    for (size_t done = 0; ok && done < n; done += (size_t)a) {
        size_t piece = n - done > (1u << 30) ? (1u << 30) : n - done;
        ok = EVP_EncryptUpdate(c, out + done, &a, in + done, (int)piece) == 1 && a == (int)piece;
    }
    ok = ok && EVP_EncryptFinal_ex(c, out + n, &b) == 1 && b == 0;
    EVP_CIPHER_CTX_free(c);
    return ok ? GW_OK : GW_ERR;
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
