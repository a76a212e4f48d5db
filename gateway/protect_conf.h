#ifndef GW_PROTECT_CONF_H
#define GW_PROTECT_CONF_H
/* A `protect:` block (uplink.protect) as gw_config holds it; loaded by
 * gw_protect_config_load (gateway/protect.h), apart from it so the config
 * layer names it without the crypto. */
#include <stdint.h>

#define GW_PROTECT_KEYS 2     /* key sets at once: current and previous */
#define GW_PROTECT_KID_MAX 32 /* key id bytes */

typedef struct gw_protect_keyconf {
    char id[GW_PROTECT_KID_MAX + 1];
    char key_file[256];      /* SM4 key then HMAC-SM3 key, 32 bytes as 64 hex digits */
    char sign_key_file[256]; /* this gateway's SM2 private key (PEM) */
    char peer_key_file[256]; /* the peer's SM2 public key (PEM), for what it signs */
} gw_protect_keyconf;

typedef struct gw_protect_config {
    int scheme; /* index into gw_protect_schemes; 0 = none */
    gw_protect_keyconf keys[GW_PROTECT_KEYS];
    int nkeys;
    char distid[64];      /* our SM2 signer id */
    char peer_distid[64]; /* the peer's */
    int64_t max_skew_ms;  /* inbound timestamps further from our clock are refused; 0: no check */
    char state_path[300]; /* counters: <data_dir>/protect-<destination>.state */
} gw_protect_config;

#endif
