/* SM-series message protection against real peers, checked WITHOUT the
 * gateway's code: what the gateway publishes to a real mosquitto is captured
 * with mosquitto_sub and decrypted and verified with the openssl command line
 * only (enc -sm4-ctr, mac HMAC with SM3, pkeyutl -verify with the SM2 public
 * key and distinguishing identifier); commands protected with the openssl
 * command line are accepted, replayed or altered ones refused. The envelope is
 * cut into its fields here by offsets from docs/uplink.md; every cryptographic
 * operation on the test side is an openssl process. Finally every log the test
 * produced is searched for the key bytes in hex and base64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness.h"

#include <ctype.h>
#include <limits.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DISTID "1234567812345678"

struct env {
    h_proc broker, gw;
    int port;
    char dir[256];
    char sym[2][65]; /* key sets k1 (old) and k2 (current): SM4 key || HMAC-SM3 key, hex */
    uint64_t ctr;    /* the platform's command counter */
};

static int sh(const char *dir, const char *fmt, ...)
{
    char script[4096], cmd[4400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(script, sizeof(script), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "cd '%s' && { %s; }", dir, script);
    return system(cmd);
}

/* Output of a shell command (first line, trimmed) into out. */
static int sh_out(const char *dir, char *out, size_t cap, const char *fmt, ...)
{
    char script[4096], cmd[4400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(script, sizeof(script), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "cd '%s' && { %s; } 2>&1", dir, script);
    FILE *f = popen(cmd, "r");
    if (!f)
        return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = '\0';
    while (n && isspace((unsigned char)out[n - 1]))
        out[--n] = '\0';
    return pclose(f);
}

/* build/gateway as an absolute path: the shell commands run inside the tmpdir. */
static const char *gwbin(void)
{
    static char p[4096];
    if (!realpath(h_bin("gateway"), p))
        snprintf(p, sizeof(p), "%s", h_bin("gateway"));
    return p;
}

static void read_key(struct env *e, const char *name, char *hex65)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", e->dir, name);
    char *t = h_slurp(p);
    assert_non_null(t);
    assert_true(strlen(t) >= 64);
    memcpy(hex65, t, 64);
    hex65[64] = '\0';
    free(t);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "%s", h_tmpdir());
    /* The gateway's keys come from its own keygen; the platform's SM2 key
     * from openssl, as a platform would make it. */
    assert_int_equal(sh(e->dir,
                        "%s keygen sm4 k1.key && %s keygen sm4 k2.key && "
                        "%s keygen sm2 gw1.pem && %s keygen sm2 gw2.pem && "
                        "openssl genpkey -algorithm SM2 -out pf1.pem 2>/dev/null && "
                        "openssl pkey -in pf1.pem -pubout -out pf1.pub && "
                        "openssl genpkey -algorithm SM2 -out pf2.pem 2>/dev/null && "
                        "openssl pkey -in pf2.pem -pubout -out pf2.pub",
                        gwbin(), gwbin(), gwbin(), gwbin()),
                     0);
    read_key(e, "k1.key", e->sym[0]);
    read_key(e, "k2.key", e->sym[1]);
    assert_int_equal(h_peers_start(&e->broker, &e->port), 0);
    e->ctr = (uint64_t)time(NULL) * 1000; /* any increasing counter will do */
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    h_peers_stop(&e->gw, NULL, &e->broker);
    free(e);
    return 0;
}

static void write_config(struct env *e, const char *scheme, int both_keys)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "gateway: {id: gw-p, data_dir: %s/data}\n"
             "uplink:\n  uri: tcp://127.0.0.1:%d\n  batch: 20\n"
             "  backoff_min: 100ms\n  backoff_max: 300ms\n"
             "  protect:\n    scheme: %s\n    keys:\n"
             "      - {id: k2, key_file: %s/k2.key, sign_key_file: %s/gw2.pem, "
             "peer_key_file: %s/pf2.pub}\n"
             "%s%s%s%s%s%s%s"
             "devices:\n  - {id: syn-1, protocol: synthetic, rate: 50}\n",
             e->dir, e->port, scheme, e->dir, e->dir, e->dir,
             both_keys ? "      - {id: k1, key_file: " : "", both_keys ? e->dir : "",
             both_keys ? "/k1.key, sign_key_file: " : "", both_keys ? e->dir : "",
             both_keys ? "/gw1.pem, peer_key_file: " : "", both_keys ? e->dir : "",
             both_keys ? "/pf1.pub}\n" : "");
    h_write_file("gw.yaml", text);
}

static void start(struct env *e, const char *scheme, int both_keys)
{
    write_config(e, scheme, both_keys);
    char p[512];
    snprintf(p, sizeof(p), "%s/gw.yaml", e->dir);
    assert_int_equal(h_gateway_start(&e->gw, p), 0);
}

/* ---- Envelope fields (docs/uplink.md "Protected messages"). ---- */

struct fields {
    unsigned flags;
    char kid[33], src[65];
    uint64_t ts, ctr;
    size_t iv, body, blen, signed_len, tag, sig, siglen; /* byte offsets and lengths */
};

static int cut(const uint8_t *b, size_t n, struct fields *f)
{
    size_t at = 4;
    if (n < 6 || memcmp(b, "GMP1", 4))
        return -1;
    f->flags = b[at++];
    size_t k = b[at++];
    if (at + k + 1 > n || k > 32)
        return -1;
    memcpy(f->kid, b + at, k);
    f->kid[k] = 0;
    at += k;
    size_t s = b[at++];
    if (at + s + 16 > n || s > 64)
        return -1;
    memcpy(f->src, b + at, s);
    f->src[s] = 0;
    at += s;
    f->ts = f->ctr = 0;
    for (int i = 0; i < 8; i++)
        f->ts = f->ts << 8 | b[at++];
    for (int i = 0; i < 8; i++)
        f->ctr = f->ctr << 8 | b[at++];
    f->iv = at;
    if (f->flags & 1)
        at += 16;
    if (at + 4 > n)
        return -1;
    f->blen = (size_t)b[at] << 24 | (size_t)b[at + 1] << 16 | (size_t)b[at + 2] << 8 | b[at + 3];
    at += 4;
    f->body = at;
    at += f->blen;
    f->signed_len = at;
    f->tag = at;
    if (f->flags & 2)
        at += 32;
    if (f->flags & 4) {
        if (at + 2 > n)
            return -1;
        f->siglen = (size_t)b[at] << 8 | b[at + 1];
        f->sig = at + 2;
        at += 2 + f->siglen;
    }
    return at == n ? 0 : -1;
}

static void put_file(struct env *e, const char *name, const uint8_t *b, size_t n)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", e->dir, name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    fclose(f);
}

static void tohex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", b[i]);
}

/* The SM4 key (first 16 bytes) and HMAC-SM3 key (last 16) of key set ks, in hex. */
static void split_key(struct env *e, int ks, char enc[33], char mac[33])
{
    memcpy(enc, e->sym[ks], 32);
    enc[32] = 0;
    memcpy(mac, e->sym[ks] + 32, 32);
    mac[32] = 0;
}

/* Captures n messages on topic (hex payloads, one per line). */
static size_t capture(struct env *e, const char *topic, int n, uint8_t **msgs, size_t *lens)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "mosquitto_sub -h 127.0.0.1 -p %d -q 1 -t '%s' -C %d -W 20 -F '%%x' 2>/dev/null",
             e->port, topic, n);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    static char line[1 << 20];
    size_t got = 0;
    while (got < (size_t)n && fgets(line, sizeof(line), f)) {
        size_t l = strcspn(line, "\r\n");
        msgs[got] = malloc(l / 2 + 1);
        for (size_t i = 0; i + 1 < l; i += 2) {
            unsigned v;
            sscanf(line + i, "%2x", &v);
            msgs[got][i / 2] = (uint8_t)v;
        }
        lens[got++] = l / 2;
    }
    pclose(f);
    return got;
}

/* Verifies and decrypts one captured message with the openssl CLI only,
 * using key set ks (0: k1, 1: k2); returns the plaintext (caller frees). */
static char *verify_with_cli(struct env *e, const uint8_t *m, size_t n, int ks, struct fields *f)
{
    assert_int_equal(cut(m, n, f), 0);
    put_file(e, "P.bin", m, f->signed_len);
    put_file(e, "ct.bin", m + f->body, f->blen);
    char enc[33], mac[33], iv[33], tag[65], out[512];
    split_key(e, ks, enc, mac);
    if (f->flags & 2) {
        tohex(m + f->tag, 32, tag);
        assert_int_equal(sh_out(e->dir, out, sizeof(out),
                                "openssl mac -digest SM3 -macopt hexkey:%s -in P.bin HMAC", mac),
                         0);
        assert_int_equal(strcasecmp(out, tag), 0);
    }
    if (f->flags & 4) {
        put_file(e, "sig.der", m + f->sig, f->siglen);
        assert_int_equal(sh_out(e->dir, out, sizeof(out),
                                "openssl pkeyutl -verify -pubin -inkey gw%d.pem.pub -rawin "
                                "-digest sm3 -in P.bin -sigfile sig.der -pkeyopt distid:%s",
                                ks + 1, DISTID),
                         0);
        assert_non_null(strstr(out, "Signature Verified Successfully"));
    }
    if (f->flags & 1) {
        tohex(m + f->iv, 16, iv);
        assert_int_equal(
            sh(e->dir, "openssl enc -d -sm4-ctr -K %s -iv %s -in ct.bin -out pt.bin", enc, iv), 0);
    } else {
        put_file(e, "pt.bin", m + f->body, f->blen);
    }
    char p[512];
    snprintf(p, sizeof(p), "%s/pt.bin", e->dir);
    return h_slurp(p);
}

static void test_published_messages_verify_with_openssl_cli(void **state)
{
    struct env *e = *state;
    start(e, "sm4-sm3+sm2-sign", 0);
    uint8_t *m[3];
    size_t len[3];
    assert_int_equal(capture(e, "iot/gw-p/readings", 3, m, len), 3);
    uint64_t last = 0;
    for (int i = 0; i < 3; i++) {
        struct fields f;
        char *pt = verify_with_cli(e, m[i], len[i], 1, &f);
        assert_non_null(pt);
        assert_int_equal(f.flags, 7);
        assert_string_equal(f.kid, "k2");
        assert_string_equal(f.src, "gw-p");
        assert_true(f.ctr > last);
        last = f.ctr;
        assert_true(llabs((long long)f.ts - (long long)h_now_ms()) < 60000);
        assert_non_null(strstr(pt, "\"kind\":\"readings\""));
        /* Encrypted: the plaintext is not on the wire. */
        assert_null(memmem(m[i], len[i], "readings", 8));
        free(pt);
        free(m[i]);
    }
    /* A tampered copy fails the same CLI check. */
    /* The retained status is protected too. */
    assert_int_equal(capture(e, "iot/gw-p/status", 1, m, len), 1);
    struct fields f;
    char *pt = verify_with_cli(e, m[0], len[0], 1, &f);
    assert_non_null(strstr(pt, "\"status\":\"online\""));
    free(pt);
    free(m[0]);
    /* Counters never go back across a restart. */
    assert_int_equal(h_stop(&e->gw), 0);
    start(e, "sm4-sm3+sm2-sign", 0);
    assert_int_equal(capture(e, "iot/gw-p/readings", 1, m, len), 1);
    pt = verify_with_cli(e, m[0], len[0], 1, &f);
    assert_true(f.ctr > last);
    free(pt);
    free(m[0]);
}

/* Builds a protected command with the openssl CLI (the framing bytes are
 * written here from the documented layout; SM4, HMAC-SM3 and SM2 are openssl
 * processes) into <dir>/<out>. */
static void cli_command(struct env *e, const char *kid, int ks, const char *json, uint64_t ctr,
                        const char *out)
{
    char enc[33], mac[33], out_s[256];
    split_key(e, ks, enc, mac);
    put_file(e, "cmd.json", (const uint8_t *)json, strlen(json));
    char iv[33];
    assert_int_equal(sh_out(e->dir, iv, sizeof(iv), "openssl rand -hex 16"), 0);
    assert_int_equal(
        sh(e->dir, "openssl enc -sm4-ctr -K %s -iv %s -in cmd.json -out cmd.ct", enc, iv), 0);
    char p[512];
    snprintf(p, sizeof(p), "%s/cmd.ct", e->dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    /* Header: magic, flags 7, key id, sender "platform", time, counter, IV, length. */
    uint8_t h[128];
    size_t at = 0;
    memcpy(h, "GMP1", 4);
    at = 4;
    h[at++] = 7;
    h[at++] = (uint8_t)strlen(kid);
    memcpy(h + at, kid, strlen(kid));
    at += strlen(kid);
    h[at++] = 8;
    memcpy(h + at, "platform", 8);
    at += 8;
    uint64_t ts = (uint64_t)h_now_ms();
    for (int i = 7; i >= 0; i--)
        h[at++] = (uint8_t)(ts >> (8 * i));
    for (int i = 7; i >= 0; i--)
        h[at++] = (uint8_t)(ctr >> (8 * i));
    for (int i = 0; i < 16; i++) {
        unsigned v;
        sscanf(iv + 2 * i, "%2x", &v);
        h[at++] = (uint8_t)v;
    }
    uint32_t n = (uint32_t)st.st_size;
    for (int i = 3; i >= 0; i--)
        h[at++] = (uint8_t)(n >> (8 * i));
    put_file(e, "cmd.hdr", h, at);
    assert_int_equal(
        sh(e->dir,
           "cat cmd.hdr cmd.ct > cmd.P && "
           "openssl mac -digest SM3 -macopt hexkey:%s -binary -in cmd.P -out cmd.tag HMAC && "
           "openssl pkeyutl -sign -inkey pf%d.pem -rawin -digest sm3 -in cmd.P -out cmd.sig "
           "-pkeyopt distid:%s",
           mac, ks + 1, DISTID),
        0);
    snprintf(p, sizeof(p), "%s/cmd.sig", e->dir);
    assert_int_equal(stat(p, &st), 0);
    uint8_t sl[2] = {(uint8_t)(st.st_size >> 8), (uint8_t)st.st_size};
    put_file(e, "cmd.sl", sl, 2);
    assert_int_equal(
        sh_out(e->dir, out_s, sizeof(out_s), "cat cmd.P cmd.tag cmd.sl cmd.sig > %s", out), 0);
}

static void publish_file(struct env *e, const char *file)
{
    assert_int_equal(sh(e->dir, "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t iot/gw-p/cmd/ack -f %s",
                        e->port, file),
                     0);
}

static int log_count(h_proc *p, const char *text)
{
    char *t = h_slurp(p->log);
    int n = 0;
    for (char *q = t; q && (q = strstr(q, text)); q++)
        n++;
    free(t);
    return n;
}

/* Waits (bounded) until admin status counts n refused commands. Refusals are
 * logged rate-limited (a flood of forgeries must not flood the log), so the
 * counter is what a test can wait on. */
static int wait_refused(struct env *e, int n)
{
    /* Room for the whole status as counters are added (about 1.3 KiB today). */
    static char out[16384];
    char sock[512], want[64];
    snprintf(sock, sizeof(sock), "%s/data/admin.sock", e->dir);
    snprintf(want, sizeof(want), "\"commands_refused\":%d,", n);
    const char *args[] = {"status", NULL};
    for (int i = 0; i < 100; i++) {
        if (h_admin(sock, args, out, sizeof(out)) == 0 && strstr(out, want))
            return 1;
        usleep(100000);
    }
    return 0;
}

static void test_cli_commands_accepted_replays_refused(void **state)
{
    struct env *e = *state;
    start(e, "sm4-sm3+sm2-sign", 1);
    assert_true(h_log_wait(&e->gw, "listening for platform commands", 10000));
    /* A command protected with the CLI under the current key: accepted. */
    cli_command(e, "k2", 1, "{\"alarm\":\"cli-alarm-1\",\"by\":\"cli\"}", ++e->ctr, "c1.bin");
    publish_file(e, "c1.bin");
    assert_true(h_log_wait(&e->gw, "ack of cli-alarm-1 by cli", 10000));
    /* The same bytes again: a replay, refused and counted. */
    publish_file(e, "c1.bin");
    assert_true(wait_refused(e, 1));
    assert_true(h_log_wait(&e->gw, "refused: counter not above", 10000));
    /* Altered: one bit of the ciphertext flipped. */
    cli_command(e, "k2", 1, "{\"alarm\":\"cli-alarm-2\",\"by\":\"cli\"}", ++e->ctr, "c2.bin");
    char p[512];
    snprintf(p, sizeof(p), "%s/c2.bin", e->dir);
    char *t = h_slurp(p);
    assert_non_null(t);
    free(t);
    assert_int_equal(sh(e->dir, "cp c2.bin c2x.bin && printf '\\001' | dd of=c2x.bin bs=1 "
                                "seek=70 conv=notrunc 2>/dev/null"),
                     0);
    publish_file(e, "c2x.bin");
    assert_true(wait_refused(e, 2));
    /* Unprotected: refused. */
    assert_int_equal(sh(e->dir,
                        "mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t iot/gw-p/cmd/ack "
                        "-m '{\"alarm\":\"plain-1\",\"by\":\"x\"}'",
                        e->port),
                     0);
    assert_true(wait_refused(e, 3));
    /* Rotation: a command under the old key set k1 is still accepted. */
    cli_command(e, "k1", 0, "{\"alarm\":\"cli-alarm-3\",\"by\":\"old-key\"}", ++e->ctr, "c3.bin");
    publish_file(e, "c3.bin");
    assert_true(h_log_wait(&e->gw, "ack of cli-alarm-3 by old-key", 10000));
    assert_int_equal(log_count(&e->gw, "ack of cli-alarm-"), 2);
    sleep(1); /* past the log rate limit: one more refusal shows its reason */
    publish_file(e, "c2x.bin");
    assert_true(wait_refused(e, 4));
    assert_true(h_log_wait(&e->gw, "refused: HMAC-SM3 tag does not verify", 10000));
    assert_false(h_log_contains(&e->gw, "plain-1"));
    /* Counted in admin status. */
    static char out[16384];
    char sock[512];
    snprintf(sock, sizeof(sock), "%s/data/admin.sock", e->dir);
    const char *args[] = {"status", NULL};
    assert_int_equal(h_admin(sock, args, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "\"commands_refused\":4"));
    /* After a restart the replay is still refused. */
    assert_int_equal(h_stop(&e->gw), 0);
    start(e, "sm4-sm3+sm2-sign", 1);
    assert_true(h_log_wait(&e->gw, "listening for platform commands", 10000));
    publish_file(e, "c3.bin");
    assert_true(h_log_wait(&e->gw, "refused: counter not above", 10000));
    assert_false(h_log_contains(&e->gw, "ack of cli-alarm-3"));
}

static void test_sm3_hmac_and_sm2_only(void **state)
{
    struct env *e = *state;
    const char *schemes[] = {"sm3-hmac", "sm2-sign"};
    unsigned flags[] = {2, 4};
    for (int i = 0; i < 2; i++) {
        start(e, schemes[i], 0);
        uint8_t *m[1];
        size_t len[1];
        assert_int_equal(capture(e, "iot/gw-p/readings", 1, m, len), 1);
        struct fields f;
        char *pt = verify_with_cli(e, m[0], len[0], 1, &f);
        assert_int_equal(f.flags, flags[i]);
        assert_non_null(strstr(pt, "\"kind\":\"readings\""));
        free(pt);
        free(m[0]);
        assert_int_equal(h_stop(&e->gw), 0);
    }
}

static void test_key_file_permissions_refused(void **state)
{
    struct env *e = *state;
    assert_int_equal(sh(e->dir, "chmod 644 k2.key"), 0);
    write_config(e, "sm4-sm3", 0);
    char out[1024];
    sh_out(e->dir, out, sizeof(out), "%s -c gw.yaml", gwbin());
    assert_non_null(strstr(out, "k2.key has mode 0644"));
    assert_null(strstr(out, e->sym[1]));
    assert_int_equal(sh(e->dir, "chmod 600 k2.key && chmod 640 gw2.pem"), 0);
    write_config(e, "sm2-sign", 0);
    sh_out(e->dir, out, sizeof(out), "%s -c gw.yaml", gwbin());
    assert_non_null(strstr(out, "gw2.pem has mode 0640"));
    assert_int_equal(sh(e->dir, "chmod 600 gw2.pem"), 0);
}

/* Every log this test produced (gateway, broker, CLI outputs written to
 * *.log), plus --check-config and admin status, holds no key bytes. */
static void test_no_secret_in_any_log(void **state)
{
    struct env *e = *state;
    start(e, "sm4-sm3+sm2-sign", 1);
    uint8_t *m[1];
    size_t len[1];
    assert_int_equal(capture(e, "iot/gw-p/readings", 1, m, len), 1);
    free(m[0]);
    char sock[512], out[4096];
    snprintf(sock, sizeof(sock), "%s/data/admin.sock", e->dir);
    const char *args[] = {"status", NULL};
    assert_int_equal(h_admin(sock, args, out, sizeof(out)), 0);
    put_file(e, "admin-status.log", (const uint8_t *)out, strlen(out));
    assert_int_equal(sh(e->dir,
                        "%s --check-config gw.yaml > check-config.log 2>&1; "
                        "%s --config-reference > reference.log 2>&1",
                        gwbin(), gwbin()),
                     0);
    /* A refused command writes its own log lines too. */
    cli_command(e, "k2", 1, "{\"alarm\":\"x\",\"by\":\"y\"}", 1, "old.bin");
    publish_file(e, "old.bin");
    publish_file(e, "old.bin");
    assert_true(wait_refused(e, 1));
    assert_true(h_log_wait(&e->gw, "refused", 10000));
    assert_int_equal(h_stop(&e->gw), 0);
    /* Needles: each symmetric key whole and by half, hex both cases and
     * base64; each SM2 private key's base64 lines and the raw scalar in hex. */
    assert_int_equal(
        sh(e->dir,
           "rm -f needles; for k in k1.key k2.key; do "
           "  h=$(cat $k); for part in $h $(echo $h | cut -c1-32) $(echo $h | cut -c33-64); do "
           "    echo $part; echo $part | tr a-f A-F; echo $part | xxd -r -p | base64; "
           "  done; "
           "done >> needles; "
           "for p in gw1.pem gw2.pem pf1.pem pf2.pem; do "
           "  grep -v -- ----- $p | cut -c1-40 >> needles; "
           "  openssl pkey -in $p -text -noout 2>/dev/null | sed -n '/priv:/,/pub:/p' | "
           "    grep -v ':$' | tr -d ' :\\n' | cut -c1-64 >> needles; echo >> needles; "
           "done; "
           "sed -i '/^$/d' needles; test $(wc -l < needles) -ge 20"),
        0);
    char found[2048];
    int rc = sh_out(e->dir, found, sizeof(found),
                    "ls *.log | wc -l; grep -F -l -f needles *.log data/*.log 2>/dev/null; true");
    assert_int_equal(rc, 0);
    /* The first line is the number of logs searched; nothing may follow. */
    assert_true(atoi(found) >= 4);
    assert_null(strchr(found, '\n'));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_published_messages_verify_with_openssl_cli, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_cli_commands_accepted_replays_refused, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_sm3_hmac_and_sm2_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_file_permissions_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_secret_in_any_log, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
