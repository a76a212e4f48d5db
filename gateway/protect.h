#ifndef GW_PROTECT_H
#define GW_PROTECT_H
/* Message protection with the SM-series algorithms, per destination (today the
 * uplink; another destination gets its own `protect:` block and its own
 * gw_protect). A message is sealed into a binary envelope (docs/uplink.md,
 * "Protected messages", gives it byte for byte):
 *
 *   sm3-hmac   HMAC-SM3 tag over header and payload
 *   sm4-sm3    SM4-CTR with a fresh random IV, then HMAC-SM3 over header, IV
 *              and ciphertext (encrypt-then-MAC)
 *   sm2-sign   SM2 signature (SM3, distinguishing identifier) over the same
 *   a+b        sm3-hmac or sm4-sm3 together with sm2-sign
 *
 * Every envelope carries a key id, a timestamp and a counter that the sender
 * never repeats: outbound counters are reserved in blocks in a state file
 * before use (so a restart never goes back), and an opened envelope must carry
 * a counter above the high-water mark of its sender, which is written durably
 * before the message is handed on. Two key sets may be configured (rotation):
 * the first seals, both open.
 *
 * Keys are read at gw_protect_new from files that group and others cannot
 * read (refused otherwise), kept in memory only, and wiped with
 * OPENSSL_cleanse when freed; no message, log line or statistic carries key
 * bytes. Loop thread only: a gw_protect is not thread-safe. */
#include "base/cfgmap.h"
#include "base/yamldoc.h"
#include "gateway/protect_conf.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Envelope flags (byte 4 of an envelope). */
#define GW_PROTECT_ENC 0x01 /* body is SM4-CTR ciphertext, IV present */
#define GW_PROTECT_MAC 0x02 /* HMAC-SM3 tag present */
#define GW_PROTECT_SIG 0x04 /* SM2 signature present */

#define GW_PROTECT_SENDERS 16                /* senders whose high-water marks are kept */
#define GW_PROTECT_DISTID "1234567812345678" /* GB/T 32918's default signer id */

/* Scheme names as the config spells them, and their envelope flags. */
extern const char *const gw_protect_schemes[];
unsigned gw_protect_scheme_flags(int scheme);

/* The config tables (for docs/config.md): the `protect` block and one entry
 * of its `keys` list. */
extern const gw_cfgkey gw_protect_cfg_keys[];
extern const gw_cfgkey gw_protect_cfg_keyset[];

/* Fills out from a `protect:` mapping (node may be NULL: none). path names the
 * block in messages ("uplink.protect"); dest names the destination (state file
 * name). Checks the shape only; key files are read by gw_protect_new. Returns
 * 0 or GW_EINVAL with "FILE:LINE: ..." in err. */
int gw_protect_config_load(gw_protect_config *out, const gw_ynode *node, const char *path,
                           const char *data_dir, const char *dest, char *err, size_t errlen);

typedef struct gw_protect gw_protect;

typedef struct gw_protect_stats {
    uint64_t sealed, opened;
    uint64_t refused_malformed; /* not an envelope, or trailing bytes */
    uint64_t refused_scheme;    /* protected otherwise than configured */
    uint64_t refused_key;       /* unknown key id */
    uint64_t refused_mac;       /* HMAC-SM3 tag wrong */
    uint64_t refused_sig;       /* SM2 signature wrong */
    uint64_t refused_replay;    /* counter not above the sender's high-water mark */
    uint64_t refused_stale;     /* timestamp outside max_skew */
    uint64_t refused_sender; /* our own id as sender (a reflected message), or too many senders */
} gw_protect_stats;

/* Reads the keys (checking their permissions) and the counter state, and
 * reserves the first block of counters. self is our sender id. Returns NULL
 * with a message in err (naming files, never their contents). With scheme
 * none it returns NULL and err empty: nothing to do. */
gw_protect *gw_protect_new(const gw_protect_config *cfg, const char *self, char *err,
                           size_t errlen);

/* Seals in[0..len) under the first key set. *out points into p's buffer, valid
 * until the next call on p. Returns 0, or GW_ERR (crypto or state-file
 * failure: nothing may be sent). */
int gw_protect_seal(gw_protect *p, const void *in, size_t len, const uint8_t **out, size_t *outlen);

/* Opens an envelope: checks scheme, key id, tag/signature, counter and time,
 * then records the sender's new high-water mark durably. On success *out is
 * the plaintext (p's buffer, valid until the next call). On refusal returns
 * GW_EMALFORMED, GW_EAUTH (or GW_ERR when the state cannot be written) with a
 * reason in why: no key bytes, no payload bytes. */
int gw_protect_open(gw_protect *p, const void *in, size_t len, const uint8_t **out, size_t *outlen,
                    char *why, size_t whylen);

void gw_protect_get_stats(const gw_protect *p, gw_protect_stats *out);
/* Wipes the keys and frees p (NULL is fine). */
void gw_protect_free(gw_protect *p);

/* `gateway keygen sm2|sm4 FILE`: writes a new key with mode 0600 (never over
 * an existing file). sm4 writes 64 hex digits (SM4 key, HMAC-SM3 key); sm2 a
 * PEM private key and FILE.pub with its public key (0644). Returns 0 or
 * GW_EINVAL with err. */
int gw_protect_keygen(const char *kind, const char *path, char *err, size_t errlen);

#endif
