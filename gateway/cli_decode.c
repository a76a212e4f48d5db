/* `gateway decode`: the vendor's bench tool. Decodes what a device sent, as the
 * running gateway would, and prints it as JSON on stdout; problems go to
 * stderr. Nothing is stored or sent.
 *
 *   gateway decode --protocol sl651 --hex 7E7E...     every frame in the bytes, one JSON per line
 *   gateway decode --protocol sl651 --text "<SOH>0100..."  ASCII frame; <SOH> <STX> <ETX> ... or
 * \xNN gateway decode --protocol hj212 --text "##0101QN=...&&1C80" [--version 2017|2025] gateway
 * decode --adapter NAME --hex BYTES | --json TEXT   one JSON line per reading/event
 *
 * Passwords (SL651 password, HJ212 PW) are masked unless --show-password is given.
 * Exit codes: 0 decoded, 1 the input was bad (or the adapter unknown), 2 usage. */
#include "gateway/cli.h"

#include "adapters/adapter.h"
#include "base/hex.h"
#include "base/log.h"
#include "base/model.h"
#include "protocols/hj212.h"
#include "protocols/sl651.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MASK "****"

static void usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  gateway decode --protocol sl651 --hex BYTES | --text TEXT [--show-password]\n"
               "                 [--quirks id28]\n"
               "  gateway decode --protocol hj212 --text TEXT | --hex BYTES [--version 2017|2025]\n"
               "                 [--show-password] [--quirks long_password,crc_modbus_lsb]\n"
               "  gateway decode --adapter NAME --hex BYTES | --json TEXT\n"
               "BYTES: hex digits, spaces and ':' allowed. SL651 ASCII TEXT may spell control\n"
               "characters as <SOH> <STX> <SYN> <ETX> <ETB> <ENQ> <EOT> <ESC> or \\xNN.\n"
               "Exit: 0 decoded, 1 bad input, 2 usage.\n");
}

static const char *err_name(int rc)
{
    switch (rc) {
    case GW_OK:
        return "ok";
    case GW_ENOMEM:
        return "out of memory";
    case GW_EMALFORMED:
        return "malformed";
    case GW_EINVAL:
        return "invalid";
    case GW_ENOTFOUND:
        return "not found";
    case GW_EAGAIN:
        return "incomplete";
    case GW_ECRC:
        return "CRC mismatch";
    case GW_EAUTH:
        return "refused";
    case GW_EUNSUPPORTED:
        return "unsupported";
    default:
        return "error";
    }
}

/* Hex text -> bytes (malloc'd). Spaces, tabs, ':' and '-' separate freely; an
 * optional 0x prefix is skipped. Returns 0 or GW_EMALFORMED with a message. */
static int parse_hex(const char *s, uint8_t **out, size_t *n)
{
    size_t cap = strlen(s) / 2 + 1, len = 0;
    uint8_t *b = malloc(cap);
    int hi = -1;
    if (!b)
        return GW_ENOMEM;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s += 2;
    for (const char *p = s; *p; p++) {
        if (*p == ' ' || *p == '\t' || *p == ':' || *p == '-' || *p == '\n' || *p == '\r')
            continue;
        int v = gw_hex_digit((unsigned char)*p);
        if (v < 0) {
            fprintf(stderr, "decode: '%c' at offset %zu is not a hex digit\n", *p, (size_t)(p - s));
            free(b);
            return GW_EMALFORMED;
        }
        if (hi < 0) {
            hi = v;
        } else {
            b[len++] = (uint8_t)(hi << 4 | v);
            hi = -1;
        }
    }
    if (hi >= 0) {
        fprintf(stderr, "decode: odd number of hex digits\n");
        free(b);
        return GW_EMALFORMED;
    }
    if (len == 0) {
        fprintf(stderr, "decode: no bytes given\n");
        free(b);
        return GW_EMALFORMED;
    }
    *out = b;
    *n = len;
    return GW_OK;
}

/* SL651 ASCII text with <NAME> or \xNN spellings of control characters -> bytes. */
static int parse_text(const char *s, uint8_t **out, size_t *n)
{
    static const struct {
        const char *name;
        uint8_t c;
    } ctl[] = {{"<SOH>", GW_SL651_SOH}, {"<STX>", GW_SL651_STX}, {"<SYN>", GW_SL651_SYN},
               {"<ETX>", GW_SL651_ETX}, {"<ETB>", GW_SL651_ETB}, {"<ENQ>", GW_SL651_ENQ},
               {"<EOT>", GW_SL651_EOT}, {"<ESC>", GW_SL651_ESC}, {"<ACK>", GW_SL651_ACK},
               {"<NAK>", GW_SL651_NAK}};
    size_t len = 0;
    uint8_t *b = malloc(strlen(s) + 1);
    if (!b)
        return GW_ENOMEM;
    for (const char *p = s; *p;) {
        size_t i, k = sizeof(ctl) / sizeof(ctl[0]);
        for (i = 0; i < k; i++)
            if (strncmp(p, ctl[i].name, strlen(ctl[i].name)) == 0)
                break;
        if (i < k) {
            b[len++] = ctl[i].c;
            p += strlen(ctl[i].name);
        } else if (p[0] == '\\' && p[1] == 'x' && gw_hex_digit((unsigned char)p[2]) >= 0 &&
                   gw_hex_digit((unsigned char)p[3]) >= 0) {
            b[len++] = (uint8_t)(gw_hex_digit((unsigned char)p[2]) << 4 |
                                 gw_hex_digit((unsigned char)p[3]));
            p += 4;
        } else {
            b[len++] = (uint8_t)*p++;
        }
    }
    if (len == 0) {
        free(b);
        fprintf(stderr, "decode: empty text\n");
        return GW_EMALFORMED;
    }
    *out = b;
    *n = len;
    return GW_OK;
}

static void print_json(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    if (s) {
        puts(s);
        free(s);
    }
}

/* ---- SL651 ---- */

static int decode_sl651(const uint8_t *buf, size_t len, int show_pw, unsigned quirks)
{
    gw_sl651_station_cfg cfg = {0};
    cfg.quirks = quirks;
    size_t at = 0, frames = 0, bad = 0, garbage = 0;
    while (at < len) {
        gw_sl651_frame f;
        size_t consumed = 0, skipped = 0;
        int rc = gw_sl651_scan(buf + at, len - at, &f, &consumed, &skipped, NULL);
        garbage += skipped;
        if (rc == GW_ECRC) {
            bad++;
            if (f.encoding == GW_SL651_ENC_HEX && f.frame_len >= 2 && consumed >= f.frame_len) {
                const uint8_t *start = buf + at + consumed - f.frame_len;
                fprintf(stderr,
                        "decode: frame of station %s: CRC mismatch (frame says %04X, computed "
                        "%04X)\n",
                        f.station_hex, f.crc, gw_sl651_crc16(start, f.frame_len - 2));
            } else {
                fprintf(stderr, "decode: frame of station %s: CRC mismatch (frame says %04X)\n",
                        f.station_hex, f.crc);
            }
        } else if (rc == GW_OK) {
            frames++;
            char *js = gw_sl651_to_json(&f, &cfg);
            cJSON *o = js ? cJSON_Parse(js) : NULL;
            free(js);
            if (!o) {
                fprintf(stderr, "decode: out of memory\n");
                return 1;
            }
            if (!show_pw)
                cJSON_ReplaceItemInObject(o, "password", cJSON_CreateString(MASK));
            const char *dec = cJSON_GetStringValue(cJSON_GetObjectItem(o, "decode"));
            if (dec && strcmp(dec, "ok") != 0) {
                bad++;
                fprintf(stderr, "decode: frame of station %s function %02X: body %s\n",
                        f.station_hex, f.function, dec);
            }
            print_json(o);
            cJSON_Delete(o);
        }
        at += consumed;
        if (rc == GW_EAGAIN) {
            if (at < len) {
                garbage += len - at;
                fprintf(stderr,
                        "decode: %zu bytes at the end are not a complete frame (cut short, or "
                        "the length field is wrong)\n",
                        len - at);
            }
            break;
        }
        if (consumed == 0)
            break; /* the scanner always makes progress; this only guards the loop */
    }
    if (garbage)
        fprintf(stderr, "decode: %zu bytes skipped as garbage\n", garbage);
    if (frames == 0) {
        fprintf(stderr, "decode: no valid SL651 frame found\n");
        return 1;
    }
    return bad ? 1 : 0;
}

/* ---- HJ212 ---- */

/* Masks "PW=xxxx" inside a packet text; s must have room for 2 * strlen(s) + 8. */
static void mask_pw_text(char *s)
{
    for (char *p = strstr(s, "PW="); p; p = strstr(p, "PW=")) {
        p += 3;
        char *e = p;
        while (*e && *e != ';' && *e != '&')
            e++;
        memmove(p + strlen(MASK), e, strlen(e) + 1);
        memcpy(p, MASK, strlen(MASK));
        p += strlen(MASK);
    }
}

static int decode_hj212(const char *text, size_t len, gw_hj212_version v, int show_pw,
                        unsigned quirks)
{
    cJSON *o = gw_hj212_to_json_q(v, quirks, text, len);
    if (!o) {
        fprintf(stderr, "decode: out of memory\n");
        return 1;
    }
    if (!show_pw) {
        if (cJSON_GetObjectItem(o, "pw"))
            cJSON_ReplaceItemInObject(o, "pw", cJSON_CreateString(MASK));
        cJSON *r = cJSON_GetObjectItem(o, "reply");
        if (cJSON_IsString(r)) {
            size_t n = 2 * strlen(r->valuestring) + 16;
            char *t = malloc(n);
            if (t) {
                snprintf(t, n, "%s", r->valuestring);
                mask_pw_text(t);
                cJSON_ReplaceItemInObject(o, "reply", cJSON_CreateString(t));
                free(t);
            }
        }
    }
    int rc = 0;
    const char *e = cJSON_GetStringValue(cJSON_GetObjectItem(o, "error"));
    if (e) {
        rc = 1;
        cJSON *exp = cJSON_GetObjectItem(o, "crc_expected");
        if (v != GW_HJ212_2017 && !gw_hj212_version_supported(v))
            fprintf(stderr, "decode: HJ 212-%s is not implemented yet\n", gw_hj212_version_name(v));
        else if (cJSON_IsString(exp))
            fprintf(stderr, "decode: CRC mismatch (expected %s over the data segment)\n",
                    exp->valuestring);
        else
            fprintf(stderr, "decode: packet %s\n", e);
    }
    const char *re = cJSON_GetStringValue(cJSON_GetObjectItem(o, "readings_error"));
    if (re) {
        rc = 1;
        fprintf(stderr, "decode: CP data %s: no readings\n", re);
    }
    print_json(o);
    cJSON_Delete(o);
    return rc;
}

/* ---- adapters ---- */

static void iso_time(int64_t ms, char *out, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (ms <= 0 || !gmtime_r(&t, &tm)) {
        snprintf(out, cap, "%s", "");
        return;
    }
    snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static int print_reading(void *ctx, const gw_reading *r)
{
    char ts[80];
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return GW_ENOMEM;
    iso_time(r->obs_ms, ts, sizeof(ts));
    cJSON_AddStringToObject(o, "item", "reading");
    cJSON_AddStringToObject(o, "metric", r->metric);
    cJSON_AddNumberToObject(o, "value", r->value);
    cJSON_AddStringToObject(o, "unit", r->unit);
    cJSON_AddStringToObject(o, "quality", gw_quality_name(r->quality));
    cJSON_AddStringToObject(o, "reason", gw_reason_name(r->reason));
    if (r->obs_ms)
        cJSON_AddStringToObject(o, "obs", ts);
    print_json(o);
    cJSON_Delete(o);
    (*(unsigned *)ctx)++;
    return GW_OK;
}

static int print_event(void *ctx, const gw_event *e)
{
    char ts[80];
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return GW_ENOMEM;
    iso_time(e->obs_ms, ts, sizeof(ts));
    cJSON_AddStringToObject(o, "item", "event");
    cJSON_AddStringToObject(o, "event", e->kind);
    cJSON_AddBoolToObject(o, "active", e->active);
    cJSON_AddStringToObject(o, "detail", e->detail);
    if (e->obs_ms)
        cJSON_AddStringToObject(o, "obs", ts);
    print_json(o);
    cJSON_Delete(o);
    (*(unsigned *)ctx)++;
    return GW_OK;
}

static int decode_adapter(const char *name, const uint8_t *buf, size_t len)
{
    const gw_adapter *a = gw_adapter_find(name);
    if (!a) {
        fprintf(stderr, "decode: unknown adapter '%s'; known:", name);
        if (!gw_adapters[0])
            fprintf(stderr, " (none compiled in)");
        for (size_t i = 0; gw_adapters[i]; i++)
            fprintf(stderr, " %s", gw_adapters[i]->name);
        fprintf(stderr, "\n");
        return 1;
    }
    unsigned n = 0;
    gw_sink sink = {print_reading, print_event, &n};
    if (!a->decode) {
        fprintf(stderr, "decode: adapter %s does not decode a payload (%s)\n", a->name,
                a->payload == GW_PAYLOAD_REGISTERS ? "registers: try gateway read --profile"
                                                   : "no decode hook");
        return 1;
    }
    int rc = a->decode(buf, len, gw_now_ms(), &sink);
    if (rc < 0) {
        fprintf(stderr, "decode: adapter %s: %s input (%d)\n", a->name, err_name(rc), rc);
        return 1;
    }
    if (n == 0)
        fprintf(stderr, "decode: adapter %s: decoded, but nothing to report\n", a->name);
    return 0;
}

/* "--quirks a,b": the named field variants of one protocol; -1 for an unknown name. */
static long parse_quirks(const char *protocol, const char *list)
{
    static const struct {
        const char *proto, *name;
        unsigned bit;
    } known[] = {{"sl651", "id28", GW_SL651_Q_ID28},
                 {"hj212", "long_password", GW_HJ212_Q_LONG_PW},
                 {"hj212", "crc_modbus_lsb", GW_HJ212_Q_CRC_MODBUS_LSB}};
    long q = 0;
    const char *p = list;
    while (p && *p) {
        size_t n = strcspn(p, ",");
        size_t i;
        for (i = 0; i < sizeof known / sizeof known[0]; i++)
            if (!strcmp(known[i].proto, protocol) && strlen(known[i].name) == n &&
                !strncmp(known[i].name, p, n))
                break;
        if (i == sizeof known / sizeof known[0]) {
            fprintf(stderr, "decode: unknown %s quirk '%.*s'\n", protocol, (int)n, p);
            return -1;
        }
        q |= known[i].bit;
        p += n + (p[n] == ',');
    }
    return q;
}

int gw_cli_decode(int argc, char **argv)
{
    const char *protocol = NULL, *adapter = NULL, *hex = NULL, *text = NULL, *json = NULL;
    const char *version = "2017", *quirk_list = NULL;
    int show_pw = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--protocol")  ? &protocol
                            : !strcmp(a, "--adapter") ? &adapter
                            : !strcmp(a, "--hex")     ? &hex
                            : !strcmp(a, "--text")    ? &text
                            : !strcmp(a, "--json")    ? &json
                            : !strcmp(a, "--version") ? &version
                            : !strcmp(a, "--quirks")  ? &quirk_list
                                                      : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--show-password")) {
            show_pw = 1;
            continue;
        }
        if (!slot || i + 1 >= argc) {
            fprintf(stderr, slot ? "decode: %s needs a value\n" : "decode: unknown argument '%s'\n",
                    a);
            usage(stderr);
            return 2;
        }
        *slot = argv[++i];
    }
    int inputs = (hex != NULL) + (text != NULL) + (json != NULL);
    if ((protocol != NULL) == (adapter != NULL) || inputs != 1) {
        fprintf(stderr, "decode: give one of --protocol or --adapter, and one input\n");
        usage(stderr);
        return 2;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc;
    if (adapter) {
        if (text) {
            fprintf(stderr, "decode: an adapter takes --hex or --json\n");
            return 2;
        }
        if (hex) {
            rc = parse_hex(hex, &buf, &len);
            if (rc)
                return 1;
        } else {
            buf = (uint8_t *)strdup(json);
            len = strlen(json);
            if (!buf)
                return 1;
        }
        rc = decode_adapter(adapter, buf, len);
        free(buf);
        return rc;
    }
    if (json) {
        fprintf(stderr, "decode: --json is for adapters; use --hex or --text\n");
        return 2;
    }
    long quirks = parse_quirks(protocol, quirk_list);
    if (quirks < 0)
        return 2;
    if (!strcmp(protocol, "sl651")) {
        rc = hex ? parse_hex(hex, &buf, &len) : parse_text(text, &buf, &len);
        if (rc)
            return 1;
        rc = decode_sl651(buf, len, show_pw, (unsigned)quirks);
        free(buf);
        return rc;
    }
    if (!strcmp(protocol, "hj212")) {
        gw_hj212_version v;
        if (!strcmp(version, "2017")) {
            v = GW_HJ212_2017;
        } else if (!strcmp(version, "2025")) {
            v = GW_HJ212_2025;
        } else {
            fprintf(stderr, "decode: --version must be 2017 or 2025\n");
            return 2;
        }
        if (hex) {
            if (parse_hex(hex, &buf, &len))
                return 1;
            rc = decode_hj212((const char *)buf, len, v, show_pw, (unsigned)quirks);
            free(buf);
            return rc;
        }
        return decode_hj212(text, strlen(text), v, show_pw, (unsigned)quirks);
    }
    fprintf(stderr, "decode: unknown protocol '%s' (known: sl651, hj212)\n", protocol);
    return 2;
}
