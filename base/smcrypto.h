/* The SM-series primitives the gateway uses, as thin wrappers over OpenSSL 3's
 * EVP interfaces (Debian's OpenSSL provides SM3, HMAC-SM3 through EVP_MAC and
 * SM4 in CTR and CBC; nothing here implements a primitive). Functions over
 * caller buffers: no I/O, no logging. Each returns 0 or GW_ERR (OpenSSL
 * refused; nothing useful is in out). The one-shot functions fetch the
 * algorithm and schedule the key per call; a gw_smctx does that once for
 * callers that process many messages under one key. */
#ifndef GW_BASE_SMCRYPTO_H
#define GW_BASE_SMCRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define GW_SM3_LEN 32
#define GW_SM4_KEY_LEN 16
#define GW_SM4_BLOCK 16

/* SM3 digest (GB/T 32905) of d[0..n). */
int gw_sm3(const void *d, size_t n, uint8_t out[GW_SM3_LEN]);

/* HMAC-SM3 (RFC 2104 construction with SM3) of the concatenation of the nparts
 * parts, under key[0..klen). */
int gw_hmac_sm3(const uint8_t *key, size_t klen, const void *const *parts, const size_t *lens,
                size_t nparts, uint8_t out[GW_SM3_LEN]);

/* SM4 (GB/T 32907) in CTR mode: the IV is the first 128-bit counter block,
 * incremented as one big-endian integer (what `openssl enc -sm4-ctr -iv` does).
 * Encryption and decryption are the same operation; out may equal in. */
int gw_sm4_ctr(const uint8_t key[GW_SM4_KEY_LEN], const uint8_t iv[GW_SM4_BLOCK], const uint8_t *in,
               size_t n, uint8_t *out);

/* SM4-CBC decryption with PKCS#7 padding removed (what `openssl enc -sm4-cbc`
 * writes). out needs n bytes; *outlen gets the plaintext length. GW_EMALFORMED
 * when n is not a positive multiple of 16 or the padding is wrong. */
int gw_sm4_cbc_decrypt(const uint8_t key[GW_SM4_KEY_LEN], const uint8_t iv[GW_SM4_BLOCK],
                       const uint8_t *in, size_t n, uint8_t *out, size_t *outlen);

/* A keyed context for repeated SM4-CTR and HMAC-SM3: the algorithms are
 * fetched from the provider and the keys scheduled once, not per message.
 * sm4_key (16 bytes) or mac_key may be NULL: that half is then unavailable
 * (its call returns GW_ERR). The caller may wipe its key copies after new.
 * Returns NULL when OpenSSL refuses or memory is short. Not thread-safe. */
typedef struct gw_smctx gw_smctx;
gw_smctx *gw_smctx_new(const uint8_t *sm4_key, const uint8_t *mac_key, size_t mac_klen);
/* gw_sm4_ctr and gw_hmac_sm3 under the context's keys. */
int gw_smctx_ctr(gw_smctx *c, const uint8_t iv[GW_SM4_BLOCK], const uint8_t *in, size_t n,
                 uint8_t *out);
int gw_smctx_hmac(gw_smctx *c, const void *const *parts, const size_t *lens, size_t nparts,
                  uint8_t out[GW_SM3_LEN]);
/* Frees c and cleanses its key schedules (NULL is fine). */
void gw_smctx_free(gw_smctx *c);

#endif
