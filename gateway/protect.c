/* Message protection with SM2/SM3/SM4: see protect.h; the envelope is in
 * docs/uplink.md ("Protected messages") and the reasons in docs/security.md.
 *
 * Sealing builds the protected part P = header || [IV] || body length || body
 * in one buffer, then appends HMAC-SM3(mac key, P) and/or the SM2 signature of
 * P. Opening walks the same layout with a bounded cursor, checks the tag and
 * signature before it looks at the counter, and records the counter durably
 * before returning the plaintext. */
#include "gateway/protect.h"

#include "base/keyfile.h"
#include "base/smcrypto.h"
#include "base/log.h"
#include "base/model.h"
#include "gateway/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAGIC "GMP1"
#define CTR_BLOCK 65536 /* outbound counters reserved per write of the state file */
#define SIG_MAX 80      /* an SM2 DER signature is at most 72 bytes */
#define SENDER_MAX 64

const char *const gw_protect_schemes[] = {
    "none", "sm3-hmac", "sm4-sm3", "sm2-sign", "sm3-hmac+sm2-sign", "sm4-sm3+sm2-sign", NULL};

unsigned gw_protect_scheme_flags(int scheme)
{
    static const unsigned f[] = {0,
                                 GW_PROTECT_MAC,
                                 GW_PROTECT_ENC | GW_PROTECT_MAC,
                                 GW_PROTECT_SIG,
                                 GW_PROTECT_MAC | GW_PROTECT_SIG,
                                 GW_PROTECT_ENC | GW_PROTECT_MAC | GW_PROTECT_SIG};
    return scheme >= 0 && scheme < (int)(sizeof(f) / sizeof(f[0])) ? f[scheme] : 0;
}

/* ---- Config. ---- */

struct psec {
    int scheme;
    const gw_ynode *keys;
    char distid[64], peer_distid[64];
    int64_t max_skew_ms;
};

#define P(m) offsetof(struct psec, m), sizeof(((struct psec *)0)->m)
const gw_cfgkey gw_protect_cfg_keys[] = {
    {"scheme", GW_CT_ENUM, "none", 0, -1, offsetof(struct psec, scheme), 0, gw_protect_schemes, 0,
     "none, sm3-hmac, sm4-sm3, sm2-sign, sm3-hmac+sm2-sign or sm4-sm3+sm2-sign (docs/security.md)"},
    {"keys", GW_CT_NODE, NULL, 0, -1, offsetof(struct psec, keys), 0, NULL, 0,
     "key sets, current first (at most 2: the second still opens during a rotation)"},
    {"distid", GW_CT_STR, GW_PROTECT_DISTID, 0, -1, P(distid), NULL, 0,
     "SM2 distinguishing identifier this gateway signs with"},
    {"peer_distid", GW_CT_STR, GW_PROTECT_DISTID, 0, -1, P(peer_distid), NULL, 0,
     "SM2 distinguishing identifier of the platform's signatures"},
    {"max_skew", GW_CT_DURATION, "5m", 0, 86400, offsetof(struct psec, max_skew_ms), 0, NULL, 0,
     "inbound commands timestamped further from the gateway clock are refused (0: no check)"},
    {NULL}};

#define K(m) offsetof(gw_protect_keyconf, m), sizeof(((gw_protect_keyconf *)0)->m)
const gw_cfgkey gw_protect_cfg_keyset[] = {
    {"id", GW_CT_STR, NULL, 0, -1, K(id), NULL, GW_CF_REQUIRED,
     "key id, 1..32 printable ASCII characters, carried in every envelope"},
    {"key_file", GW_CT_STR, "", 0, -1, K(key_file), NULL, 0,
     "SM4 + HMAC-SM3 key, 64 hex digits, mode 0600 (`gateway keygen sm4`)"},
    {"sign_key_file", GW_CT_STR, "", 0, -1, K(sign_key_file), NULL, 0,
     "this gateway's SM2 private key, PEM, mode 0600 (`gateway keygen sm2`)"},
    {"peer_key_file", GW_CT_STR, "", 0, -1, K(peer_key_file), NULL, 0,
     "the platform's SM2 public key, PEM: verifies its commands"},
    {NULL}};

static int cfg_err(char *err, size_t errlen, const gw_ynode *n, const char *path, const char *msg)
{
    snprintf(err, errlen, "%s:%d: key '%s': %s", GW_YPOS(n), path, msg);
    return GW_EINVAL;
}

int gw_protect_config_load(gw_protect_config *out, const gw_ynode *node, const char *path,
                           const char *data_dir, const char *dest, char *err, size_t errlen)
{
    struct psec s;
    memset(out, 0, sizeof(*out));
    if (gw_cfg_apply(gw_protect_cfg_keys, node, &s, path, err, errlen))
        return GW_EINVAL;
    out->scheme = s.scheme;
    snprintf(out->distid, sizeof(out->distid), "%s", s.distid);
    snprintf(out->peer_distid, sizeof(out->peer_distid), "%s", s.peer_distid);
    out->max_skew_ms = s.max_skew_ms;
    snprintf(out->state_path, sizeof(out->state_path), "%s/protect-%s.state", data_dir, dest);
    unsigned f = gw_protect_scheme_flags(s.scheme);
    if (!f)
        return GW_OK;
    if (!s.keys || s.keys->type != GW_Y_SEQ || s.keys->n < 1 || s.keys->n > GW_PROTECT_KEYS)
        return cfg_err(err, errlen, s.keys ? s.keys : node, path,
                       "'keys' must list 1 or 2 key sets (current first)");
    for (size_t i = 0; i < s.keys->n; i++) {
        gw_protect_keyconf *k = &out->keys[i];
        char kp[96];
        snprintf(kp, sizeof(kp), "%s.keys[%zu]", path, i);
        if (gw_cfg_apply(gw_protect_cfg_keyset, s.keys->kids[i], k, kp, err, errlen))
            return GW_EINVAL;
        size_t idlen = strlen(k->id);
        int bad = idlen == 0 || idlen > GW_PROTECT_KID_MAX;
        for (size_t j = 0; j < idlen; j++)
            bad |= k->id[j] <= ' ' || k->id[j] > '~';
        if (bad)
            return cfg_err(err, errlen, s.keys->kids[i], kp,
                           "'id' must be 1..32 printable ASCII characters without spaces");
        if (i == 1 && strcmp(k->id, out->keys[0].id) == 0)
            return cfg_err(err, errlen, s.keys->kids[i], kp, "the two key sets need different ids");
        if ((f & GW_PROTECT_MAC) && !k->key_file[0])
            return cfg_err(err, errlen, s.keys->kids[i], kp,
                           "this scheme needs 'key_file' (SM4 + HMAC-SM3 key)");
        if ((f & GW_PROTECT_SIG) && (!k->sign_key_file[0] || !k->peer_key_file[0]))
            return cfg_err(err, errlen, s.keys->kids[i], kp,
                           "sm2-sign needs 'sign_key_file' (ours) and 'peer_key_file' (the "
                           "platform's public key)");
        out->nkeys++;
    }
    return GW_OK;
}

/* ---- Keys and state. ---- */

struct keyset {
    char id[GW_PROTECT_KID_MAX + 1];
    uint8_t sym[2 * GW_SM4_KEY_LEN]; /* SM4 key, then HMAC-SM3 key */
    gw_smctx *sm;                    /* both keyed once: no fetch per message */
    EVP_PKEY *sign, *peer;
};

struct sender {
    char id[SENDER_MAX + 1];
    uint64_t hwm;
};

struct gw_protect {
    gw_protect_config cfg;
    unsigned flags;
    char self[SENDER_MAX + 1];
    struct keyset keys[GW_PROTECT_KEYS];
    int nkeys;
    uint64_t next, reserved; /* outbound counter: next to use, highest reserved */
    struct sender senders[GW_PROTECT_SENDERS];
    int nsenders;
    uint8_t *buf;
    size_t cap;
    gw_protect_stats st;
};

static EVP_PKEY *load_pem(const char *path, int private, char *err, size_t errlen)
{
    if (private && gw_keyfile_check(path, err, errlen))
        return NULL;
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "key file %s: %s", path, strerror(errno));
        return NULL;
    }
    EVP_PKEY *k =
        private ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : PEM_read_PUBKEY(f, NULL, NULL, NULL);
    fclose(f);
    if (!k || !EVP_PKEY_is_a(k, "SM2")) {
        snprintf(err, errlen, "key file %s is not an SM2 %s key in PEM", path,
                 private ? "private" : "public");
        EVP_PKEY_free(k);
        return NULL;
    }
    return k;
}

/* The state file: "out <reserved>" then "in <sender> <hwm>" lines. */
static int state_save(gw_protect *p, uint64_t reserved)
{
    char text[GW_PROTECT_SENDERS * (SENDER_MAX + 32) + 64];
    int n = snprintf(text, sizeof(text), "out %" PRIu64 "\n", reserved);
    for (int i = 0; i < p->nsenders; i++)
        n += snprintf(text + n, sizeof(text) - (size_t)n, "in %s %" PRIu64 "\n", p->senders[i].id,
                      p->senders[i].hwm);
    char dir[300];
    snprintf(dir, sizeof(dir), "%s", p->cfg.state_path);
    int e = gw_write_file_durable(dirname(dir), p->cfg.state_path, text);
    if (e)
        return GW_ERR;
    p->reserved = reserved;
    return GW_OK;
}

static int state_load(gw_protect *p, char *err, size_t errlen)
{
    FILE *f = fopen(p->cfg.state_path, "re");
    if (!f) {
        if (errno == ENOENT)
            return GW_OK;
        snprintf(err, errlen, "%s: %s", p->cfg.state_path, strerror(errno));
        return GW_EINVAL;
    }
    char line[256], who[SENDER_MAX + 2];
    uint64_t v;
    int rc = GW_OK;
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "out %" SCNu64, &v) == 1) {
            p->reserved = v;
        } else if (sscanf(line, "in %65s %" SCNu64, who, &v) == 2 && strlen(who) <= SENDER_MAX &&
                   p->nsenders < GW_PROTECT_SENDERS) {
            snprintf(p->senders[p->nsenders].id, sizeof(p->senders[0].id), "%s", who);
            p->senders[p->nsenders++].hwm = v;
        } else {
            /* A counter file we cannot read is never taken as zero: that would
             * reuse counters and accept replays. */
            snprintf(err, errlen, "%s: unreadable line; fix or remove it knowingly",
                     p->cfg.state_path);
            rc = GW_EINVAL;
            break;
        }
    }
    fclose(f);
    return rc;
}

gw_protect *gw_protect_new(const gw_protect_config *cfg, const char *self, char *err, size_t errlen)
{
    if (errlen)
        err[0] = '\0';
    unsigned flags = gw_protect_scheme_flags(cfg->scheme);
    if (!flags)
        return NULL;
    gw_protect *p = calloc(1, sizeof(*p));
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->cfg = *cfg;
    p->flags = flags;
    snprintf(p->self, sizeof(p->self), "%s", self);
    char kerr[400];
    for (int i = 0; i < cfg->nkeys; i++) {
        const gw_protect_keyconf *kc = &cfg->keys[i];
        struct keyset *k = &p->keys[i];
        snprintf(k->id, sizeof(k->id), "%s", kc->id);
        p->nkeys++;
        if ((flags & GW_PROTECT_MAC) &&
            gw_keyfile_read_hex(kc->key_file, k->sym, sizeof(k->sym), kerr, sizeof(kerr)))
            goto fail;
        if ((flags & GW_PROTECT_MAC) &&
            !(k->sm = gw_smctx_new(k->sym, k->sym + GW_SM4_KEY_LEN, GW_SM4_KEY_LEN))) {
            snprintf(kerr, sizeof(kerr), "OpenSSL offers no SM4-CTR or HMAC-SM3");
            goto fail;
        }
        if ((flags & GW_PROTECT_SIG) &&
            (!(k->sign = load_pem(kc->sign_key_file, 1, kerr, sizeof(kerr))) ||
             !(k->peer = load_pem(kc->peer_key_file, 0, kerr, sizeof(kerr)))))
            goto fail;
    }
    if (state_load(p, kerr, sizeof(kerr)))
        goto fail;
    p->next = p->reserved + 1;
    if (state_save(p, p->reserved + CTR_BLOCK)) {
        snprintf(kerr, sizeof(kerr), "%s: cannot write the counter state", cfg->state_path);
        goto fail;
    }
    return p;
fail:
    snprintf(err, errlen, "%s", kerr);
    gw_protect_free(p);
    return NULL;
}

void gw_protect_free(gw_protect *p)
{
    if (!p)
        return;
    for (int i = 0; i < GW_PROTECT_KEYS; i++) {
        OPENSSL_cleanse(p->keys[i].sym, sizeof(p->keys[i].sym));
        gw_smctx_free(p->keys[i].sm);
        EVP_PKEY_free(p->keys[i].sign); /* frees and clears the private scalar */
        EVP_PKEY_free(p->keys[i].peer);
    }
    if (p->buf)
        OPENSSL_cleanse(p->buf, p->cap); /* plaintext of the last opened command */
    free(p->buf);
    free(p);
}

void gw_protect_get_stats(const gw_protect *p, gw_protect_stats *out)
{
    if (p)
        *out = p->st;
    else
        memset(out, 0, sizeof(*out));
}

/* ---- SM2. ---- */

static EVP_MD_CTX *sm2_ctx(EVP_PKEY *k, const char *distid, int sign)
{
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(k, NULL);
    if (!m || !pc || EVP_PKEY_CTX_set1_id(pc, distid, strlen(distid)) <= 0)
        goto fail;
    EVP_MD_CTX_set_pkey_ctx(m, pc); /* m does not take pc: freed below, after m */
    if ((sign ? EVP_DigestSignInit(m, NULL, EVP_sm3(), NULL, k)
              : EVP_DigestVerifyInit(m, NULL, EVP_sm3(), NULL, k)) != 1)
        goto fail;
    return m;
fail:
    EVP_MD_CTX_free(m);
    EVP_PKEY_CTX_free(pc);
    return NULL;
}

static void sm2_ctx_free(EVP_MD_CTX *m)
{
    if (!m)
        return;
    EVP_PKEY_CTX *pc = EVP_MD_CTX_get_pkey_ctx(m);
    EVP_MD_CTX_free(m);
    EVP_PKEY_CTX_free(pc);
}

static int sm2_sign(EVP_PKEY *k, const char *distid, const uint8_t *d, size_t n, uint8_t *sig,
                    size_t *siglen)
{
    EVP_MD_CTX *m = sm2_ctx(k, distid, 1);
    size_t len = SIG_MAX;
    int ok = m && EVP_DigestSign(m, sig, &len, d, n) == 1;
    sm2_ctx_free(m);
    *siglen = len;
    return ok ? GW_OK : GW_ERR;
}

static int sm2_verify(EVP_PKEY *k, const char *distid, const uint8_t *d, size_t n,
                      const uint8_t *sig, size_t siglen)
{
    EVP_MD_CTX *m = sm2_ctx(k, distid, 0);
    int ok = m && EVP_DigestVerify(m, sig, siglen, d, n) == 1;
    sm2_ctx_free(m);
    return ok ? GW_OK : GW_EAUTH;
}

/* ---- Sealing. ---- */

static int ensure(gw_protect *p, size_t need)
{
    if (need <= p->cap)
        return GW_OK;
    size_t cap = need + need / 2;
    uint8_t *b = malloc(cap);
    if (!b)
        return GW_ENOMEM;
    if (p->buf) {
        OPENSSL_cleanse(p->buf, p->cap);
        free(p->buf);
    }
    p->buf = b;
    p->cap = cap;
    return GW_OK;
}

static size_t put_be(uint8_t *at, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        at[i] = (uint8_t)(v >> (8 * (bytes - 1 - i)));
    return (size_t)bytes;
}

static uint64_t get_be(const uint8_t *at, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | at[i];
    return v;
}

static int mac_of(const struct keyset *k, const uint8_t *d, size_t n, uint8_t tag[GW_SM3_LEN])
{
    const void *parts[] = {d};
    size_t lens[] = {n};
    return gw_smctx_hmac(k->sm, parts, lens, 1, tag);
}

int gw_protect_seal(gw_protect *p, const void *in, size_t len, const uint8_t **out, size_t *outlen)
{
    const struct keyset *k = &p->keys[0];
    size_t kid = strlen(k->id), self = strlen(p->self);
    if (len > UINT32_MAX)
        return GW_EINVAL;
    if (p->next > p->reserved && state_save(p, p->next - 1 + CTR_BLOCK))
        return GW_ERR; /* a counter must be durable before it is used */
    if (ensure(p, 4 + 1 + 1 + kid + 1 + self + 8 + 8 + GW_SM4_BLOCK + 4 + len + GW_SM3_LEN + 2 +
                      SIG_MAX))
        return GW_ENOMEM;
    uint8_t *b = p->buf;
    size_t at = 0;
    memcpy(b, MAGIC, 4);
    at += 4;
    b[at++] = (uint8_t)p->flags;
    b[at++] = (uint8_t)kid;
    memcpy(b + at, k->id, kid);
    at += kid;
    b[at++] = (uint8_t)self;
    memcpy(b + at, p->self, self);
    at += self;
    at += put_be(b + at, (uint64_t)gw_now_ms(), 8);
    at += put_be(b + at, p->next, 8);
    const uint8_t *iv = b + at;
    if (p->flags & GW_PROTECT_ENC) {
        if (RAND_bytes(b + at, GW_SM4_BLOCK) != 1)
            return GW_ERR;
        at += GW_SM4_BLOCK;
    }
    at += put_be(b + at, len, 4);
    if (p->flags & GW_PROTECT_ENC) {
        if (gw_smctx_ctr(k->sm, iv, in, len, b + at))
            return GW_ERR;
    } else {
        memcpy(b + at, in, len);
    }
    at += len;
    size_t signed_len = at;
    if (p->flags & GW_PROTECT_MAC) {
        if (mac_of(k, b, signed_len, b + at))
            return GW_ERR;
        at += GW_SM3_LEN;
    }
    if (p->flags & GW_PROTECT_SIG) {
        size_t sl;
        if (sm2_sign(k->sign, p->cfg.distid, b, signed_len, b + at + 2, &sl))
            return GW_ERR;
        put_be(b + at, sl, 2);
        at += 2 + sl;
    }
    p->next++;
    p->st.sealed++;
    *out = b;
    *outlen = at;
    return GW_OK;
}

/* ---- Opening. ---- */

struct cur {
    const uint8_t *p;
    size_t left;
};

static const uint8_t *take(struct cur *c, size_t n)
{
    if (c->left < n)
        return NULL;
    const uint8_t *r = c->p;
    c->p += n;
    c->left -= n;
    return r;
}

static int refuse(uint64_t *counter, int rc, char *why, size_t whylen, const char *reason)
{
    (*counter)++;
    snprintf(why, whylen, "%s", reason);
    return rc;
}

int gw_protect_open(gw_protect *p, const void *in, size_t len, const uint8_t **out, size_t *outlen,
                    char *why, size_t whylen)
{
    struct cur c = {in, len};
    gw_protect_stats *st = &p->st;
    const uint8_t *magic = take(&c, 4), *fl = take(&c, 1), *kl = take(&c, 1);
    if (!magic || !fl || !kl || memcmp(magic, MAGIC, 4))
        return refuse(&st->refused_malformed, GW_EMALFORMED, why, whylen,
                      "not a protected envelope");
    if (*fl != p->flags)
        return refuse(&st->refused_scheme, GW_EAUTH, why, whylen,
                      "not protected with the configured scheme");
    const uint8_t *kid = take(&c, *kl), *sl = kid ? take(&c, 1) : NULL;
    const uint8_t *src = sl ? take(&c, *sl) : NULL;
    const uint8_t *ts = src ? take(&c, 8) : NULL, *ctr = ts ? take(&c, 8) : NULL;
    const uint8_t *iv = NULL;
    if (ctr && (p->flags & GW_PROTECT_ENC))
        iv = take(&c, GW_SM4_BLOCK);
    const uint8_t *bl = ctr && (iv || !(p->flags & GW_PROTECT_ENC)) ? take(&c, 4) : NULL;
    uint64_t blen = bl ? get_be(bl, 4) : 0;
    const uint8_t *body = bl ? take(&c, (size_t)blen) : NULL;
    if (!body || *sl == 0 || *sl > SENDER_MAX)
        return refuse(&st->refused_malformed, GW_EMALFORMED, why, whylen, "truncated envelope");
    size_t signed_len = (size_t)(c.p - (const uint8_t *)in);
    const uint8_t *tag = (p->flags & GW_PROTECT_MAC) ? take(&c, GW_SM3_LEN) : NULL;
    const uint8_t *sigl = (p->flags & GW_PROTECT_SIG) ? take(&c, 2) : NULL;
    const uint8_t *sig = sigl ? take(&c, (size_t)get_be(sigl, 2)) : NULL;
    if (((p->flags & GW_PROTECT_MAC) && !tag) || ((p->flags & GW_PROTECT_SIG) && !sig) || c.left)
        return refuse(&st->refused_malformed, GW_EMALFORMED, why, whylen,
                      "truncated envelope or trailing bytes");
    const struct keyset *k = NULL;
    for (int i = 0; i < p->nkeys && !k; i++)
        if (strlen(p->keys[i].id) == *kl && memcmp(p->keys[i].id, kid, *kl) == 0)
            k = &p->keys[i];
    if (!k)
        return refuse(&st->refused_key, GW_EAUTH, why, whylen, "unknown key id");
    if (tag) {
        uint8_t want[GW_SM3_LEN];
        if (mac_of(k, in, signed_len, want) || CRYPTO_memcmp(want, tag, GW_SM3_LEN))
            return refuse(&st->refused_mac, GW_EAUTH, why, whylen, "HMAC-SM3 tag does not verify");
    }
    if (sig && sm2_verify(k->peer, p->cfg.peer_distid, in, signed_len, sig, get_be(sigl, 2)))
        return refuse(&st->refused_sig, GW_EAUTH, why, whylen, "SM2 signature does not verify");
    /* Authentic from here on: judge freshness. */
    char who[SENDER_MAX + 1];
    memcpy(who, src, *sl);
    who[*sl] = '\0';
    if (strcmp(who, p->self) == 0)
        return refuse(&st->refused_sender, GW_EAUTH, why, whylen,
                      "sender is this gateway (a reflected message)");
    struct sender *s = NULL;
    for (int i = 0; i < p->nsenders && !s; i++)
        if (strcmp(p->senders[i].id, who) == 0)
            s = &p->senders[i];
    if (!s && p->nsenders == GW_PROTECT_SENDERS)
        return refuse(&st->refused_sender, GW_EAUTH, why, whylen, "too many senders");
    uint64_t n = get_be(ctr, 8);
    if (s && n <= s->hwm)
        return refuse(&st->refused_replay, GW_EAUTH, why, whylen,
                      "counter not above the sender's last (a replay)");
    int64_t skew = (int64_t)get_be(ts, 8) - gw_now_ms();
    if (p->cfg.max_skew_ms && (skew > p->cfg.max_skew_ms || skew < -p->cfg.max_skew_ms))
        return refuse(&st->refused_stale, GW_EAUTH, why, whylen,
                      "timestamp too far from the gateway clock");
    if (ensure(p, (size_t)blen + 1))
        return GW_ENOMEM;
    if (iv ? gw_smctx_ctr(k->sm, iv, body, (size_t)blen, p->buf) != GW_OK
           : (memcpy(p->buf, body, (size_t)blen), 0))
        return GW_ERR;
    if (!s) {
        s = &p->senders[p->nsenders++];
        snprintf(s->id, sizeof(s->id), "%s", who);
    }
    uint64_t old = s->hwm;
    s->hwm = n;
    if (state_save(p, p->reserved)) {
        s->hwm = old;
        snprintf(why, whylen, "cannot record the counter (state file)");
        return GW_ERR;
    }
    p->buf[blen] = 0;
    p->st.opened++;
    *out = p->buf;
    *outlen = (size_t)blen;
    return GW_OK;
}

/* ---- Key generation. ---- */

int gw_protect_keygen(const char *kind, const char *path, char *err, size_t errlen)
{
    if (strcmp(kind, "sm4") == 0) {
        uint8_t k[2 * GW_SM4_KEY_LEN];
        char hex[4 * GW_SM4_KEY_LEN + 2];
        if (RAND_bytes(k, sizeof(k)) != 1) {
            snprintf(err, errlen, "no randomness from OpenSSL");
            return GW_EINVAL;
        }
        for (size_t i = 0; i < sizeof(k); i++)
            snprintf(hex + 2 * i, 3, "%02x", k[i]);
        hex[2 * sizeof(k)] = '\n';
        int rc = gw_keyfile_write(path, hex, 2 * sizeof(k) + 1, 0600, err, errlen);
        OPENSSL_cleanse(k, sizeof(k));
        OPENSSL_cleanse(hex, sizeof(hex));
        return rc;
    }
    if (strcmp(kind, "sm2") != 0) {
        snprintf(err, errlen, "keygen: kind must be sm2 or sm4");
        return GW_EINVAL;
    }
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "SM2");
    BIO *priv = BIO_new(BIO_s_secmem()), *pub = BIO_new(BIO_s_mem());
    int rc = GW_EINVAL;
    char *pp = NULL, *qp = NULL;
    char pubpath[300];
    snprintf(pubpath, sizeof(pubpath), "%s.pub", path);
    if (!k || !priv || !pub || PEM_write_bio_PrivateKey(priv, k, NULL, NULL, 0, NULL, NULL) != 1 ||
        PEM_write_bio_PUBKEY(pub, k) != 1) {
        snprintf(err, errlen, "OpenSSL could not make an SM2 key");
        goto done;
    }
    long pl = BIO_get_mem_data(priv, &pp), ql = BIO_get_mem_data(pub, &qp);
    if (gw_keyfile_write(path, pp, (size_t)pl, 0600, err, errlen))
        goto done;
    if (gw_keyfile_write(pubpath, qp, (size_t)ql, 0644, err, errlen)) {
        unlink(path);
        goto done;
    }
    rc = GW_OK;
done:
    BIO_free(priv); /* secure-heap BIO: cleansed on free */
    BIO_free(pub);
    EVP_PKEY_free(k);
    return rc;
}
