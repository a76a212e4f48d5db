/* HJ 212 codec: framing, stream scanning, segment and CP parsing, readings,
 * answers and JSON. Pure: no I/O, no logging, no clock. The per-version
 * differences (CRC, field widths, maximum length, Flag version bits) are one
 * rules row; everything reads them through rules_for(). See hj212.h. */
#include "protocols/hj212.h"

#include "base/crc16.h"

#include "base/civil.h"
#include "base/hex.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct hj212_rules {
    gw_hj212_version version;
    const char *name;
    uint16_t (*crc)(const uint8_t *p, size_t n);
    size_t max_data; /* bound on the data segment */
    size_t qn_len;   /* exact QN length */
    size_t st_max;   /* widths of the header values */
    size_t cn_max;
    size_t pw_max;
    size_t mn_max;
    unsigned flag_max;
    unsigned flag_version; /* value of V5..V0 this version writes */
    unsigned pnum_max;
} hj212_rules;

uint16_t gw_hj212_crc(const uint8_t *p, size_t n)
{
    uint16_t reg = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        reg = (uint16_t)((reg >> 8) ^ p[i]);
        for (int b = 0; b < 8; b++)
            reg = (reg & 1) ? (uint16_t)((reg >> 1) ^ 0xA001) : (uint16_t)(reg >> 1);
    }
    return reg;
}

static const hj212_rules rules_2017 = {
    .version = GW_HJ212_2017,
    .name = "2017",
    .crc = gw_hj212_crc,
    .max_data = GW_HJ212_DATA_MAX,
    .qn_len = 17,
    .st_max = 2,
    .cn_max = 4,
    .pw_max = 6,
    .mn_max = 24,
    .flag_max = 255,
    .flag_version = 1,
    .pnum_max = 9999,
};

/* HJ 212-2025 gets its own row once its text has been checked. */
static const hj212_rules *rules_for(gw_hj212_version v)
{
    switch (v) {
    case GW_HJ212_2017:
        return &rules_2017;
    default:
        return NULL;
    }
}

int gw_hj212_version_supported(gw_hj212_version v)
{
    return rules_for(v) != NULL;
}

const char *gw_hj212_version_name(gw_hj212_version v)
{
    switch (v) {
    case GW_HJ212_2017:
        return "2017";
    case GW_HJ212_2025:
        return "2025";
    default:
        return "?";
    }
}

/* ---- small bounded helpers ---- */

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* Parses n decimal digits (n <= 9). Returns the value or -1. */
static long dec_n(const char *s, size_t n)
{
    long v = 0;
    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static int hex4(const uint8_t *s, uint16_t *out)
{
    long v = gw_hex_value((const char *)s, 4);
    if (v < 0)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static int mem_ieq(const char *a, size_t an, const char *b)
{
    size_t bn = strlen(b);
    if (an != bn)
        return 0;
    for (size_t i = 0; i < an; i++) {
        int x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x >= 'A' && x <= 'Z')
            x += 32;
        if (y >= 'A' && y <= 'Z')
            y += 32;
        if (x != y)
            return 0;
    }
    return 1;
}

static int mem_eq(const char *a, size_t an, const char *b)
{
    return an == strlen(b) && memcmp(a, b, an) == 0;
}

/* ---- time ---- */

int gw_hj212_time_ms(const char *s, size_t n, int64_t *out_ms)
{
    if (!s || !out_ms || (n != 14 && n != 17))
        return GW_EMALFORMED;
    long y = dec_n(s, 4), mo = dec_n(s + 4, 2), d = dec_n(s + 6, 2);
    long h = dec_n(s + 8, 2), mi = dec_n(s + 10, 2), se = dec_n(s + 12, 2);
    long ms = n == 17 ? dec_n(s + 14, 3) : 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 ||
        se > 59 || ms < 0)
        return GW_EMALFORMED;
    if (d > (long)gw_days_in_month(y, (unsigned)mo))
        return GW_EMALFORMED;
    int64_t days = gw_days_from_civil(y, (unsigned)mo, (unsigned)d);
    /* Beijing time is UTC+8 all year. */
    *out_ms = ((days * 24 + h - 8) * 60 + mi) * 60000 + se * 1000 + ms;
    return GW_OK;
}

/* The CRC digits a CRC_MODBUS_LSB station writes: the Modbus register low byte first. */
static uint16_t modbus_lsb(const uint8_t *p, size_t n)
{
    uint16_t m = gw_crc16_modbus(p, n);
    return (uint16_t)((m & 0xFF) << 8 | m >> 8);
}

/* Checks rx against the version's CRC, then (when allowed) the quirk's; sets *used. */
static int crc_matches(const hj212_rules *r, unsigned quirks, const uint8_t *p, size_t n,
                       uint16_t rx, unsigned *used)
{
    if (r->crc(p, n) == rx)
        return 1;
    if ((quirks & GW_HJ212_Q_CRC_MODBUS_LSB) && modbus_lsb(p, n) == rx) {
        *used |= GW_HJ212_Q_CRC_MODBUS_LSB;
        return 1;
    }
    return 0;
}

/* ---- stream scanner ---- */

enum { CAND_BAD, CAND_PARTIAL, CAND_OK, CAND_CRC };

int gw_hj212_scan(gw_hj212_version v, const uint8_t *buf, size_t len, size_t max_data,
                  gw_hj212_span *out)
{
    return gw_hj212_scan_q(v, 0, buf, len, max_data, out);
}

int gw_hj212_scan_q(gw_hj212_version v, unsigned quirks, const uint8_t *buf, size_t len,
                    size_t max_data, gw_hj212_span *out)
{
    const hj212_rules *r = rules_for(v);
    if (!r)
        return GW_EUNSUPPORTED;
    if (!out || (!buf && len) || max_data > 9999)
        return GW_EINVAL;
    if (max_data == 0)
        max_data = r->max_data;
    memset(out, 0, sizeof *out);

    size_t nl = 0; /* index of the first CR or LF at or after some point; len = none */
    int nl_valid = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '#' || buf[i + 1] != '#')
            continue;
        size_t avail = len - i;
        int cand = CAND_OK;
        size_t dlen = 0;
        /* Header: four decimal digits, each checked as soon as it is there. */
        for (size_t k = 2; k < 6 && k < avail; k++)
            if (!is_digit(buf[i + k]))
                cand = CAND_BAD;
        if (cand == CAND_BAD)
            continue;
        if (avail < 6) {
            cand = CAND_PARTIAL;
        } else {
            dlen = (size_t)dec_n((const char *)buf + i + 2, 4);
            if (dlen > max_data)
                continue;
            /* A data segment never holds CR or LF: one inside means a bogus header. */
            if (!nl_valid || nl < i + 6) {
                nl = i + 6;
                while (nl < len && buf[nl] != '\r' && buf[nl] != '\n')
                    nl++;
                nl_valid = 1;
            }
            if (nl < len && nl < i + 6 + dlen)
                continue;
            size_t need = 6 + dlen + 6, t = i + 6 + dlen;
            for (size_t k = 0; k < 4 && t + k < len; k++)
                if (gw_hex_digit(buf[t + k]) < 0)
                    cand = CAND_BAD;
            if (t + 4 < len && buf[t + 4] != '\r')
                cand = CAND_BAD;
            if (t + 5 < len && buf[t + 5] != '\n')
                cand = CAND_BAD;
            if (cand == CAND_BAD)
                continue;
            if (avail < need) {
                cand = CAND_PARTIAL;
            } else {
                uint16_t rx = 0;
                (void)hex4(buf + t, &rx);
                out->crc_rx = rx;
                out->crc_calc = r->crc(buf + i + 6, dlen);
                out->quirks = 0;
                cand = crc_matches(r, quirks, buf + i + 6, dlen, rx, &out->quirks) ? CAND_OK
                                                                                   : CAND_CRC;
                out->offset = i;
                out->total = need;
                out->data = (const char *)buf + i + 6;
                out->data_len = dlen;
            }
        }
        out->skipped = i;
        if (cand == CAND_PARTIAL) {
            out->consumed = i;
            return 0;
        }
        out->consumed = i + out->total;
        return cand == CAND_OK ? 1 : GW_ECRC;
    }
    /* No packet: everything is garbage except a trailing '#' that may begin one. */
    out->skipped = out->consumed = (len > 0 && buf[len - 1] == '#') ? len - 1 : len;
    return 0;
}

/* ---- data segment ---- */

/* Header values are echoed in answers, so they must not carry separators. */
static int safe_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7E || c == '&' || c == '=' || c == ';' || c == '#' || c == ',')
            return 0;
    }
    return 1;
}

static int all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_digit((unsigned char)s[i]))
            return 0;
    return 1;
}

int gw_hj212_password_ok(gw_hj212_version v, unsigned quirks, const char *pw)
{
    const hj212_rules *r = rules_for(v);
    if (!r || !pw)
        return 0;
    size_t n = strlen(pw);
    size_t max = (quirks & GW_HJ212_Q_LONG_PW) ? GW_HJ212_PW_LONG_MAX : r->pw_max;
    return n > 0 && n <= max && safe_chars(pw, n);
}

int gw_hj212_parse(gw_hj212_version v, const char *seg, size_t len, gw_hj212_packet *out)
{
    return gw_hj212_parse_q(v, 0, seg, len, out);
}

int gw_hj212_parse_q(gw_hj212_version v, unsigned quirks, const char *seg, size_t len,
                     gw_hj212_packet *out)
{
    const hj212_rules *r = rules_for(v);
    if (!r)
        return GW_EUNSUPPORTED;
    if (!out || (!seg && len))
        return GW_EINVAL;
    memset(out, 0, sizeof *out);
    out->version = v;
    out->flag = -1;
    out->data_len = len;

    enum {
        F_QN = 1,
        F_ST = 2,
        F_CN = 4,
        F_PW = 8,
        F_MN = 16,
        F_FLAG = 32,
        F_PNUM = 64,
        F_PNO = 128
    };
    unsigned seen = 0;
    size_t pos = 0;
    for (;;) {
        if (pos >= len)
            return GW_EMALFORMED; /* no CP */
        const char *k = seg + pos;
        size_t rest = len - pos;
        if (rest >= 3 && memcmp(k, "CP=", 3) == 0) {
            const char *c = k + 3;
            size_t cl = rest - 3;
            if (cl < 4 || memcmp(c, "&&", 2) != 0 || memcmp(c + cl - 2, "&&", 2) != 0)
                return GW_EMALFORMED;
            out->cp = c + 2;
            out->cp_len = cl - 4;
            break;
        }
        const char *semi = memchr(k, ';', rest);
        if (!semi)
            return GW_EMALFORMED;
        const char *eq = memchr(k, '=', (size_t)(semi - k));
        if (!eq)
            return GW_EMALFORMED;
        size_t kl = (size_t)(eq - k);
        const char *val = eq + 1;
        size_t vl = (size_t)(semi - val);
        unsigned bit = 0;
        if (mem_eq(k, kl, "QN")) {
            if (vl != r->qn_len || !all_digits(val, vl))
                return GW_EMALFORMED;
            memcpy(out->qn, val, vl);
            out->qn[vl] = '\0';
            /* A station with a broken clock still sends data: QN time is advisory. */
            if (gw_hj212_time_ms(val, vl, &out->qn_ms) != GW_OK)
                out->qn_ms = 0;
            bit = F_QN;
        } else if (mem_eq(k, kl, "ST")) {
            if (vl == 0 || vl > r->st_max || vl >= sizeof out->st || !all_digits(val, vl))
                return GW_EMALFORMED;
            memcpy(out->st, val, vl);
            bit = F_ST;
        } else if (mem_eq(k, kl, "CN")) {
            if (vl == 0 || vl > r->cn_max || vl >= sizeof out->cn || !all_digits(val, vl))
                return GW_EMALFORMED;
            memcpy(out->cn, val, vl);
            bit = F_CN;
        } else if (mem_eq(k, kl, "PW")) {
            size_t pw_max = (quirks & GW_HJ212_Q_LONG_PW) ? GW_HJ212_PW_LONG_MAX : r->pw_max;
            if (vl > pw_max || vl >= sizeof out->pw || !safe_chars(val, vl))
                return GW_EMALFORMED;
            if (vl > r->pw_max)
                out->quirks |= GW_HJ212_Q_LONG_PW;
            memcpy(out->pw, val, vl);
            bit = F_PW;
        } else if (mem_eq(k, kl, "MN")) {
            if (vl > r->mn_max || vl >= sizeof out->mn || !safe_chars(val, vl))
                return GW_EMALFORMED;
            memcpy(out->mn, val, vl);
            bit = F_MN;
        } else if (mem_eq(k, kl, "Flag")) {
            long f = vl <= 3 ? dec_n(val, vl) : -1;
            if (f < 0 || (unsigned long)f > r->flag_max)
                return GW_EMALFORMED;
            out->flag = (int)f;
            bit = F_FLAG;
        } else if (mem_eq(k, kl, "PNUM") || mem_eq(k, kl, "PNO")) {
            long n = vl <= 4 ? dec_n(val, vl) : -1;
            if (n < 1 || (unsigned long)n > r->pnum_max)
                return GW_EMALFORMED;
            if (kl == 4) {
                out->pnum = (int)n;
                bit = F_PNUM;
            } else {
                out->pno = (int)n;
                bit = F_PNO;
            }
        } else if (kl == 0 || kl > 16) {
            return GW_EMALFORMED;
        }
        /* Unknown header keys (vendor additions) are skipped. */
        if (seen & bit)
            return GW_EMALFORMED; /* duplicate */
        seen |= bit;
        pos = (size_t)(semi - seg) + 1;
    }
    if (!(seen & F_ST) || !(seen & F_CN))
        return GW_EMALFORMED;
    if (!!(seen & F_PNUM) != !!(seen & F_PNO) || out->pno > out->pnum)
        return GW_EMALFORMED;
    return GW_OK;
}

int gw_hj212_decode(gw_hj212_version v, const uint8_t *buf, size_t len, gw_hj212_packet *out)
{
    return gw_hj212_decode_q(v, 0, buf, len, out);
}

int gw_hj212_decode_q(gw_hj212_version v, unsigned quirks, const uint8_t *buf, size_t len,
                      gw_hj212_packet *out)
{
    const hj212_rules *r = rules_for(v);
    if (!r)
        return GW_EUNSUPPORTED;
    if (!out || (!buf && len))
        return GW_EINVAL;
    memset(out, 0, sizeof *out);
    out->flag = -1;
    if (len < GW_HJ212_OVERHEAD || buf[0] != '#' || buf[1] != '#')
        return GW_EMALFORMED;
    long dl = dec_n((const char *)buf + 2, 4);
    if (dl < 0 || (size_t)dl > r->max_data || len != (size_t)dl + GW_HJ212_OVERHEAD)
        return GW_EMALFORMED;
    size_t t = 6 + (size_t)dl;
    uint16_t rx;
    if (hex4(buf + t, &rx) != 0 || buf[t + 4] != '\r' || buf[t + 5] != '\n')
        return GW_EMALFORMED;
    unsigned used = 0;
    if (!crc_matches(r, quirks, buf + 6, (size_t)dl, rx, &used)) {
        out->crc = rx;
        return GW_ECRC;
    }
    int rc = gw_hj212_parse_q(v, quirks, (const char *)buf + 6, (size_t)dl, out);
    out->crc = rx;
    out->quirks |= used;
    return rc;
}

/* ---- CP ---- */

void gw_hj212_cp_begin(gw_hj212_cp_iter *it, const gw_hj212_packet *p)
{
    it->p = p ? p->cp : NULL;
    it->end = p && p->cp ? p->cp + p->cp_len : NULL;
    it->group = 0;
}

static int key_char(int c)
{
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-' || c == '_';
}

int gw_hj212_cp_next(gw_hj212_cp_iter *it, gw_hj212_kv *kv)
{
    while (it->p && it->p < it->end) {
        const char *s = it->p, *e = s;
        while (e < it->end && *e != ',' && *e != ';')
            e++;
        int semi = e < it->end && *e == ';';
        it->p = e < it->end ? e + 1 : it->end;
        unsigned group = it->group;
        if (semi)
            it->group++;
        if (e == s)
            continue; /* empty field: ",," or a trailing ';' */
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (!eq || eq == s || (size_t)(eq - s) > GW_HJ212_KEY_MAX) {
            it->p = it->end; /* a broken CP ends the iteration for good */
            return GW_EMALFORMED;
        }
        for (const char *c = s; c < eq; c++)
            if (!key_char((unsigned char)*c)) {
                it->p = it->end;
                return GW_EMALFORMED;
            }
        kv->key = s;
        kv->key_len = (size_t)(eq - s);
        kv->val = eq + 1;
        kv->val_len = (size_t)(e - eq - 1);
        kv->group = group;
        return 1;
    }
    return 0;
}

int gw_hj212_cp_find(const gw_hj212_packet *p, const char *key, gw_hj212_kv *kv)
{
    gw_hj212_cp_iter it;
    gw_hj212_kv x;
    int rc;
    gw_hj212_cp_begin(&it, p);
    while ((rc = gw_hj212_cp_next(&it, &x)) == 1) {
        if (mem_ieq(x.key, x.key_len, key)) {
            if (kv)
                *kv = x;
            return 1;
        }
    }
    return rc;
}

/* ---- units and flags ---- */

typedef struct unit_row {
    const char *code;
    const char *unit;
    const char *ambient; /* unit at ambient air stations (ST=22), NULL = same */
    const char *cou;     /* unit of -Cou */
} unit_row;

static const unit_row units[] = {
    {"w00000", "L/s", NULL, "m3"},      /* waste water flow */
    {"w01001", "", NULL, ""},           /* pH */
    {"w01003", "NTU", NULL, ""},        /* turbidity */
    {"w01009", "mg/L", NULL, "kg"},     /* dissolved oxygen */
    {"w01010", "degC", NULL, ""},       /* water temperature */
    {"w01014", "uS/cm", NULL, ""},      /* conductivity */
    {"w01018", "mg/L", NULL, "kg"},     /* COD */
    {"w01019", "mg/L", NULL, "kg"},     /* permanganate index */
    {"w21001", "mg/L", NULL, "kg"},     /* total nitrogen */
    {"w21003", "mg/L", NULL, "kg"},     /* ammonia nitrogen */
    {"w21011", "mg/L", NULL, "kg"},     /* total phosphorus */
    {"a00000", "m3/s", NULL, "m3"},     /* flue gas flow */
    {"a01001", "degC", NULL, ""},       /* air temperature */
    {"a01002", "%", NULL, ""},          /* relative humidity */
    {"a01006", "kPa", NULL, ""},        /* atmospheric pressure */
    {"a01007", "m/s", NULL, ""},        /* wind speed */
    {"a01008", "deg", NULL, ""},        /* wind direction */
    {"a01011", "m/s", NULL, ""},        /* flue gas velocity */
    {"a01012", "degC", NULL, ""},       /* flue gas temperature */
    {"a01013", "kPa", NULL, ""},        /* flue gas pressure */
    {"a01014", "%", NULL, ""},          /* flue gas humidity */
    {"a05024", "mg/m3", "ug/m3", "kg"}, /* O3 */
    {"a19001", "%", NULL, ""},          /* oxygen content */
    {"a21002", "mg/m3", "ug/m3", "kg"}, /* NOx */
    {"a21003", "mg/m3", "ug/m3", "kg"}, /* NO */
    {"a21004", "mg/m3", "ug/m3", "kg"}, /* NO2 */
    {"a21005", "mg/m3", NULL, "kg"},    /* CO */
    {"a21026", "mg/m3", "ug/m3", "kg"}, /* SO2 */
    {"a34002", "ug/m3", NULL, ""},      /* PM10 */
    {"a34004", "ug/m3", NULL, ""},      /* PM2.5 */
    {"a34013", "mg/m3", NULL, "kg"},    /* smoke dust / particulate matter */
};

const char *gw_hj212_unit(const char *code, const char *st, int cumulative)
{
    if (!code)
        return "";
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(units[i].code, code) != 0)
            continue;
        if (cumulative)
            return units[i].cou;
        if (units[i].ambient && st && strcmp(st, "22") == 0)
            return units[i].ambient;
        return units[i].unit;
    }
    return "";
}

void gw_hj212_flag_quality(char flag, uint8_t *quality, uint8_t *reason)
{
    uint8_t q, r;
    switch (flag) {
    case 0:
    case 'N':
        q = GW_Q_GOOD, r = GW_R_NONE;
        break;
    case 'S':
        q = GW_Q_UNCERTAIN, r = GW_R_MANUAL;
        break;
    case 'T':
        q = GW_Q_UNCERTAIN, r = GW_R_OVER_RANGE;
        break;
    case 'F':
        q = GW_Q_BAD, r = GW_R_STOPPED;
        break;
    case 'M':
        q = GW_Q_BAD, r = GW_R_MAINTENANCE;
        break;
    case 'D':
        q = GW_Q_BAD, r = GW_R_SENSOR_FAULT;
        break;
    case 'C':
        q = GW_Q_BAD, r = GW_R_CALIBRATING;
        break;
    case 'B':
        q = GW_Q_BAD, r = GW_R_COMM_FAIL;
        break;
    default:
        q = GW_Q_UNCERTAIN, r = GW_R_DEVICE_FLAG;
        break;
    }
    if (quality)
        *quality = q;
    if (reason)
        *reason = r;
}

/* ---- readings ---- */

int gw_hj212_is_data_cn(const char *cn)
{
    static const char *const data_cns[] = {"2011", "2021", "2031", "2041",
                                           "2051", "2061", "2081", "3020"};
    if (!cn)
        return 0;
    for (size_t i = 0; i < sizeof data_cns / sizeof data_cns[0]; i++)
        if (strcmp(cn, data_cns[i]) == 0)
            return 1;
    return 0;
}

enum { S_RTD, S_ZSRTD, S_AVG, S_MIN, S_MAX, S_COU, S_ZSAVG, S_ZSMIN, S_ZSMAX, S__COUNT };

static const struct {
    const char *suffix; /* CP field suffix after '-' */
    const char *name;   /* metric part */
    int realtime;       /* 1 for 2011, 0 for the statistics commands */
} stats[S__COUNT] = {
    {"Rtd", "", 1},         {"ZsRtd", "zs", 1},     {"Avg", "avg", 0},
    {"Min", "min", 0},      {"Max", "max", 0},      {"Cou", "cou", 0},
    {"ZsAvg", "zs_avg", 0}, {"ZsMin", "zs_min", 0}, {"ZsMax", "zs_max", 0},
};

#define CODE_MAX 16 /* longest factor code: "<16>_zs_avg_minute" fits GW_KEY_MAX */

typedef struct factor {
    char code[CODE_MAX + 1];
    char flag; /* 0 = none given */
    uint16_t have;
    double v[S__COUNT];
    int64_t sample_ms; /* 0 = use DataTime */
} factor;

static int parse_value(const char *s, size_t n, double *out)
{
    char tmp[40];
    if (n == 0 || n >= sizeof tmp)
        return GW_EMALFORMED;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!is_digit((unsigned char)c) && c != '.' && c != '-' && c != '+' && c != 'e' && c != 'E')
            return GW_EMALFORMED;
    }
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    char *end = NULL;
    double d = strtod(tmp, &end);
    if (end != tmp + n || !isfinite(d))
        return GW_EMALFORMED;
    *out = d;
    return GW_OK;
}

/* The period word of a statistics command, "" for real-time, NULL for others. */
static const char *period_of(const char *cn)
{
    if (strcmp(cn, "2011") == 0)
        return "";
    if (strcmp(cn, "2051") == 0)
        return "minute";
    if (strcmp(cn, "2061") == 0)
        return "hour";
    if (strcmp(cn, "2031") == 0)
        return "day";
    return NULL;
}

int gw_hj212_emit(const gw_hj212_packet *p, const gw_sink *sink)
{
    if (!p)
        return GW_EINVAL;
    const char *period = period_of(p->cn);
    if (!period)
        return 0;
    int realtime = period[0] == '\0';

    /* Pass 1: validate the whole CP and gather factors, so nothing goes out of a
     * packet that turns out to be broken further on. */
    factor *f = calloc(GW_HJ212_FACTORS_MAX, sizeof *f);
    if (!f)
        return GW_ENOMEM;
    size_t nf = 0;
    int64_t data_ms = 0;
    int have_time = 0, rc;
    gw_hj212_cp_iter it;
    gw_hj212_kv kv;
    gw_hj212_cp_begin(&it, p);
    while ((rc = gw_hj212_cp_next(&it, &kv)) == 1) {
        const char *dash = memchr(kv.key, '-', kv.key_len);
        if (!dash) {
            if (mem_ieq(kv.key, kv.key_len, "DataTime")) {
                if (have_time || gw_hj212_time_ms(kv.val, kv.val_len, &data_ms) != GW_OK)
                    goto malformed;
                have_time = 1;
            }
            continue; /* other plain parameters carry no reading */
        }
        size_t cl = (size_t)(dash - kv.key);
        const char *suf = dash + 1;
        size_t sl = kv.key_len - cl - 1;
        if (cl == 0 || cl > CODE_MAX)
            goto malformed;
        size_t i;
        for (i = 0; i < nf; i++)
            if (strlen(f[i].code) == cl && memcmp(f[i].code, kv.key, cl) == 0)
                break;
        int stat = -1;
        for (int s = 0; s < S__COUNT; s++)
            if (stats[s].realtime == realtime && mem_ieq(suf, sl, stats[s].suffix))
                stat = s;
        int is_flag = mem_ieq(suf, sl, "Flag");
        int is_sample = mem_ieq(suf, sl, "SampleTime");
        if (stat < 0 && !is_flag && !is_sample)
            continue; /* -EFlag, -Info and other fields carry no reading */
        if (i == nf) {
            if (nf == GW_HJ212_FACTORS_MAX)
                goto malformed;
            memcpy(f[nf].code, kv.key, cl);
            f[nf].code[cl] = '\0';
            nf++;
        }
        if (is_flag) {
            if (f[i].flag)
                goto malformed;
            f[i].flag = kv.val_len == 1 ? kv.val[0] : '?';
            if (f[i].flag == 0)
                f[i].flag = '?';
        } else if (is_sample) {
            if (f[i].sample_ms || gw_hj212_time_ms(kv.val, kv.val_len, &f[i].sample_ms) != GW_OK)
                goto malformed;
        } else {
            if (f[i].have & (1u << stat) || parse_value(kv.val, kv.val_len, &f[i].v[stat]) != GW_OK)
                goto malformed;
            f[i].have |= (uint16_t)(1u << stat);
        }
    }
    if (rc < 0 || !have_time)
        goto malformed;

    /* Pass 2: emit. */
    int n = 0;
    for (size_t i = 0; i < nf; i++) {
        for (int s = 0; s < S__COUNT; s++) {
            if (!(f[i].have & (1u << s)))
                continue;
            gw_reading r;
            memset(&r, 0, sizeof r);
            if (realtime)
                snprintf(r.metric, sizeof r.metric, "%s%s%s", f[i].code, s == S_RTD ? "" : "_",
                         stats[s].name);
            else
                snprintf(r.metric, sizeof r.metric, "%s_%s_%s", f[i].code, stats[s].name, period);
            gw_strlcpy(r.unit, gw_hj212_unit(f[i].code, p->st, s == S_COU), sizeof r.unit);
            r.value = f[i].v[s];
            gw_hj212_flag_quality(f[i].flag, &r.quality, &r.reason);
            r.obs_ms = f[i].sample_ms ? f[i].sample_ms : data_ms;
            if (sink && sink->reading) {
                int cb = sink->reading(sink->ctx, &r);
                if (cb < 0) {
                    free(f);
                    return cb;
                }
            }
            n++;
        }
    }
    free(f);
    return n;

malformed:
    free(f);
    return GW_EMALFORMED;
}

/* ---- authentication ---- */

static int ct_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned diff = (unsigned)(la ^ lb);
    size_t n = la > lb ? la : lb;
    for (size_t i = 0; i < n; i++) {
        unsigned ca = i < la ? (unsigned char)a[i] : 0;
        unsigned cb = i < lb ? (unsigned char)b[i] : 0;
        diff |= ca ^ cb;
    }
    return diff == 0;
}

int gw_hj212_auth(const gw_hj212_packet *p, const char *pw, const char *mn, int *qn_rtn)
{
    if (!p)
        return GW_EINVAL;
    if (mn && strcmp(p->mn, mn) != 0) {
        if (qn_rtn)
            *qn_rtn = GW_HJ212_QN_MN_ERROR;
        return GW_EAUTH;
    }
    if (pw && !ct_equal(p->pw, pw)) {
        if (qn_rtn)
            *qn_rtn = GW_HJ212_QN_PW_ERROR;
        return GW_EAUTH;
    }
    return GW_OK;
}

/* ---- building packets ---- */

static int frame_q(gw_hj212_version v, unsigned quirks, const char *seg, size_t len, char *out,
                   size_t cap);

int gw_hj212_frame(gw_hj212_version v, const char *seg, size_t len, char *out, size_t cap)
{
    return frame_q(v, 0, seg, len, out, cap);
}

static int frame_q(gw_hj212_version v, unsigned quirks, const char *seg, size_t len, char *out,
                   size_t cap)
{
    const hj212_rules *r = rules_for(v);
    if (!r)
        return GW_EUNSUPPORTED;
    if (!out || (!seg && len))
        return GW_EINVAL;
    if (len > r->max_data)
        return GW_EINVAL;
    size_t total = len + GW_HJ212_OVERHEAD;
    if (cap < total + 1)
        return GW_EFULL;
    snprintf(out, 7, "##%04u", (unsigned)len);
    if (len)
        memcpy(out + 6, seg, len);
    uint16_t crc = (quirks & GW_HJ212_Q_CRC_MODBUS_LSB) ? modbus_lsb((const uint8_t *)seg, len)
                                                        : r->crc((const uint8_t *)seg, len);
    snprintf(out + 6 + len, 7, "%04X\r\n", (unsigned)crc);
    return (int)total;
}

static int build_answer(const gw_hj212_packet *req, const char *cn, const char *cp, char *out,
                        size_t cap)
{
    if (!req)
        return GW_EINVAL;
    const hj212_rules *r = rules_for((gw_hj212_version)req->version);
    if (!r)
        return GW_EUNSUPPORTED;
    char seg[256];
    int n = snprintf(
        seg, sizeof seg, "%s%s%sST=91;CN=%s;%s%s%s%s%s%sFlag=%u;CP=&&%s&&", req->qn[0] ? "QN=" : "",
        req->qn, req->qn[0] ? ";" : "", cn, req->pw[0] ? "PW=" : "", req->pw, req->pw[0] ? ";" : "",
        req->mn[0] ? "MN=" : "", req->mn, req->mn[0] ? ";" : "", r->flag_version << 2, cp);
    if (n < 0 || (size_t)n >= sizeof seg)
        return GW_EINVAL;
    return frame_q((gw_hj212_version)req->version, req->quirks & GW_HJ212_Q_CRC_MODBUS_LSB, seg,
                   (size_t)n, out, cap);
}

int gw_hj212_build_data_ack(const gw_hj212_packet *req, char *out, size_t cap)
{
    return build_answer(req, "9014", "", out, cap);
}

int gw_hj212_build_request_ack(const gw_hj212_packet *req, int qn_rtn, char *out, size_t cap)
{
    char cp[24];
    if (qn_rtn < 0 || qn_rtn > 999)
        return GW_EINVAL;
    snprintf(cp, sizeof cp, "QnRtn=%d", qn_rtn);
    return build_answer(req, "9011", cp, out, cap);
}

int gw_hj212_build_exec_result(const gw_hj212_packet *req, int exe_rtn, char *out, size_t cap)
{
    char cp[24];
    if (exe_rtn < 0 || exe_rtn > 999)
        return GW_EINVAL;
    snprintf(cp, sizeof cp, "ExeRtn=%d", exe_rtn);
    return build_answer(req, "9012", cp, out, cap);
}

int gw_hj212_build_reply(const gw_hj212_packet *req, int qn_rtn, char *out, size_t cap)
{
    if (!req)
        return GW_EINVAL;
    if (req->flag < 0 || !((unsigned)req->flag & GW_HJ212_FLAG_A) || req->cn[0] == '9')
        return 0;
    if (gw_hj212_is_data_cn(req->cn))
        return gw_hj212_build_data_ack(req, out, cap);
    return gw_hj212_build_request_ack(req, qn_rtn, out, cap);
}

/* ---- JSON ---- */

static const char *err_name(int rc)
{
    switch (rc) {
    case GW_EMALFORMED:
        return "malformed";
    case GW_ECRC:
        return "crc";
    case GW_EUNSUPPORTED:
        return "unsupported";
    case GW_EINVAL:
        return "invalid";
    case GW_ENOMEM:
        return "nomem";
    default:
        return "error";
    }
}

static int json_reading(void *ctx, const gw_reading *r)
{
    cJSON *arr = ctx, *o = cJSON_CreateObject();
    if (!o)
        return GW_ENOMEM;
    cJSON_AddItemToArray(arr, o);
    if (!cJSON_AddStringToObject(o, "metric", r->metric) ||
        !cJSON_AddStringToObject(o, "unit", r->unit) ||
        !cJSON_AddNumberToObject(o, "value", r->value) ||
        !cJSON_AddStringToObject(o, "quality", gw_quality_name(r->quality)) ||
        !cJSON_AddStringToObject(o, "reason", gw_reason_name(r->reason)) ||
        !cJSON_AddNumberToObject(o, "obs_ms", (double)r->obs_ms))
        return GW_ENOMEM;
    return 0;
}

static cJSON *add_strn(cJSON *o, const char *name, const char *s, size_t n)
{
    char tmp[GW_HJ212_DATA_MAX + 1];
    if (n > GW_HJ212_DATA_MAX)
        n = GW_HJ212_DATA_MAX;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return cJSON_AddStringToObject(o, name, tmp);
}

static int json_fill(cJSON *o, const gw_hj212_packet *p)
{
    char crc[8];
    snprintf(crc, sizeof crc, "%04X", p->crc);
    if (!cJSON_AddNumberToObject(o, "length", (double)p->data_len) ||
        !cJSON_AddStringToObject(o, "crc", crc) || !cJSON_AddStringToObject(o, "qn", p->qn) ||
        !cJSON_AddNumberToObject(o, "qn_ms", (double)p->qn_ms) ||
        !cJSON_AddStringToObject(o, "st", p->st) || !cJSON_AddStringToObject(o, "cn", p->cn) ||
        !cJSON_AddStringToObject(o, "pw", p->pw) || !cJSON_AddStringToObject(o, "mn", p->mn) ||
        !cJSON_AddNumberToObject(o, "flag", p->flag))
        return GW_ENOMEM;
    if (p->flag >= 0) {
        if (!cJSON_AddNumberToObject(o, "flag_version", GW_HJ212_FLAG_VERSION(p->flag)) ||
            !cJSON_AddBoolToObject(o, "reply_required", (p->flag & GW_HJ212_FLAG_A) != 0) ||
            !cJSON_AddBoolToObject(o, "packet_numbered", (p->flag & GW_HJ212_FLAG_D) != 0))
            return GW_ENOMEM;
    }
    if (p->pnum && (!cJSON_AddNumberToObject(o, "pnum", p->pnum) ||
                    !cJSON_AddNumberToObject(o, "pno", p->pno)))
        return GW_ENOMEM;
    if (!add_strn(o, "cp_text", p->cp, p->cp_len))
        return GW_ENOMEM;

    /* CP as a list of groups, each an object of the group's key=value pairs. */
    cJSON *cp = cJSON_AddArrayToObject(o, "cp");
    if (!cp)
        return GW_ENOMEM;
    gw_hj212_cp_iter it;
    gw_hj212_kv kv;
    cJSON *grp = NULL;
    unsigned gno = 0;
    int rc;
    gw_hj212_cp_begin(&it, p);
    while ((rc = gw_hj212_cp_next(&it, &kv)) == 1) {
        if (!grp || kv.group != gno) {
            grp = cJSON_CreateObject();
            if (!grp)
                return GW_ENOMEM;
            cJSON_AddItemToArray(cp, grp);
            gno = kv.group;
        }
        char key[GW_HJ212_KEY_MAX + 1];
        memcpy(key, kv.key, kv.key_len);
        key[kv.key_len] = '\0';
        if (!add_strn(grp, key, kv.val, kv.val_len))
            return GW_ENOMEM;
    }
    if (rc < 0 && !cJSON_AddStringToObject(o, "cp_error", err_name(rc)))
        return GW_ENOMEM;

    cJSON *rd = cJSON_AddArrayToObject(o, "readings");
    if (!rd)
        return GW_ENOMEM;
    gw_sink sink = {json_reading, NULL, rd};
    int n = gw_hj212_emit(p, &sink);
    if (n == GW_ENOMEM)
        return GW_ENOMEM;
    /* emit() validates before it emits, so on an error the array is empty. */
    if (n < 0 && !cJSON_AddStringToObject(o, "readings_error", err_name(n)))
        return GW_ENOMEM;

    char reply[GW_HJ212_PACKET_MAX + 1];
    int rl = gw_hj212_build_reply(p, GW_HJ212_QN_READY, reply, sizeof reply);
    if (rl > 0 && !cJSON_AddStringToObject(o, "reply", reply))
        return GW_ENOMEM;
    return GW_OK;
}

struct cJSON *gw_hj212_to_json(gw_hj212_version v, const char *text, size_t len)
{
    return gw_hj212_to_json_q(v, 0, text, len);
}

struct cJSON *gw_hj212_to_json_q(gw_hj212_version v, unsigned quirks, const char *text, size_t len)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (!cJSON_AddStringToObject(o, "protocol", "hj212") ||
        !cJSON_AddStringToObject(o, "version", gw_hj212_version_name(v)))
        goto nomem;

    /* Command-line text often lacks the CR LF or carries a stray newline. */
    static const size_t cap = GW_HJ212_PACKET_MAX + 2;
    uint8_t *buf = malloc(cap);
    if (!buf)
        goto nomem;
    while (len > 0 && text &&
           (text[len - 1] == '\r' || text[len - 1] == '\n' || text[len - 1] == ' ' ||
            text[len - 1] == '\t'))
        len--;
    int rc;
    gw_hj212_packet p;
    if (!text || len + 2 > cap) {
        rc = GW_EMALFORMED;
    } else {
        memcpy(buf, text, len);
        buf[len] = '\r';
        buf[len + 1] = '\n';
        rc = gw_hj212_decode_q(v, quirks, buf, len + 2, &p);
    }
    if (rc == GW_OK && p.quirks && !cJSON_AddNumberToObject(o, "quirks_used", (double)p.quirks)) {
        free(buf);
        goto nomem;
    }
    if (rc == GW_ECRC && len >= GW_HJ212_OVERHEAD - 2) {
        char exp[8];
        snprintf(exp, sizeof exp, "%04X", gw_hj212_crc(buf + 6, len - (GW_HJ212_OVERHEAD - 2)));
        if (!cJSON_AddStringToObject(o, "crc_expected", exp)) {
            free(buf);
            goto nomem;
        }
    }
    if (rc == GW_OK)
        rc = json_fill(o, &p);
    free(buf);
    if (rc == GW_ENOMEM)
        goto nomem;
    if (rc != GW_OK && (!cJSON_AddStringToObject(o, "error", err_name(rc)) ||
                        !cJSON_AddNumberToObject(o, "code", rc)))
        goto nomem;
    return o;

nomem:
    cJSON_Delete(o);
    return NULL;
}
