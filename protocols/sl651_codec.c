/* SL651-2014 frame layer: CRC, time conversion, single-frame parsing for both
 * encodings, the TCP stream scanner, the downlink encoders and duplicate detection.
 * Body decoding lives in sl651_body.c and JSON rendering in sl651_json.c. */
#include "protocols/sl651.h"

#include <string.h>

static const char *const reject_names[GW_SL651_REJ__COUNT] = {
    "header", "length", "end_char", "crc", "truncated",
};

const char *gw_sl651_reject_name(int r)
{
    if (r < 0 || r >= GW_SL651_REJ__COUNT)
        return "unknown";
    return reject_names[r];
}

/* Byte-at-a-time table for the reflected polynomial 0xA001 (entry i is the CRC register
 * after shifting byte i through eight times); equal to the bitwise loop, 8x fewer steps. */
static const uint16_t crc_table[256] = {
    0x0000, 0xC0C1, 0xC181, 0x0140, 0xC301, 0x03C0, 0x0280, 0xC241, 0xC601, 0x06C0, 0x0780, 0xC741,
    0x0500, 0xC5C1, 0xC481, 0x0440, 0xCC01, 0x0CC0, 0x0D80, 0xCD41, 0x0F00, 0xCFC1, 0xCE81, 0x0E40,
    0x0A00, 0xCAC1, 0xCB81, 0x0B40, 0xC901, 0x09C0, 0x0880, 0xC841, 0xD801, 0x18C0, 0x1980, 0xD941,
    0x1B00, 0xDBC1, 0xDA81, 0x1A40, 0x1E00, 0xDEC1, 0xDF81, 0x1F40, 0xDD01, 0x1DC0, 0x1C80, 0xDC41,
    0x1400, 0xD4C1, 0xD581, 0x1540, 0xD701, 0x17C0, 0x1680, 0xD641, 0xD201, 0x12C0, 0x1380, 0xD341,
    0x1100, 0xD1C1, 0xD081, 0x1040, 0xF001, 0x30C0, 0x3180, 0xF141, 0x3300, 0xF3C1, 0xF281, 0x3240,
    0x3600, 0xF6C1, 0xF781, 0x3740, 0xF501, 0x35C0, 0x3480, 0xF441, 0x3C00, 0xFCC1, 0xFD81, 0x3D40,
    0xFF01, 0x3FC0, 0x3E80, 0xFE41, 0xFA01, 0x3AC0, 0x3B80, 0xFB41, 0x3900, 0xF9C1, 0xF881, 0x3840,
    0x2800, 0xE8C1, 0xE981, 0x2940, 0xEB01, 0x2BC0, 0x2A80, 0xEA41, 0xEE01, 0x2EC0, 0x2F80, 0xEF41,
    0x2D00, 0xEDC1, 0xEC81, 0x2C40, 0xE401, 0x24C0, 0x2580, 0xE541, 0x2700, 0xE7C1, 0xE681, 0x2640,
    0x2200, 0xE2C1, 0xE381, 0x2340, 0xE101, 0x21C0, 0x2080, 0xE041, 0xA001, 0x60C0, 0x6180, 0xA141,
    0x6300, 0xA3C1, 0xA281, 0x6240, 0x6600, 0xA6C1, 0xA781, 0x6740, 0xA501, 0x65C0, 0x6480, 0xA441,
    0x6C00, 0xACC1, 0xAD81, 0x6D40, 0xAF01, 0x6FC0, 0x6E80, 0xAE41, 0xAA01, 0x6AC0, 0x6B80, 0xAB41,
    0x6900, 0xA9C1, 0xA881, 0x6840, 0x7800, 0xB8C1, 0xB981, 0x7940, 0xBB01, 0x7BC0, 0x7A80, 0xBA41,
    0xBE01, 0x7EC0, 0x7F80, 0xBF41, 0x7D00, 0xBDC1, 0xBC81, 0x7C40, 0xB401, 0x74C0, 0x7580, 0xB541,
    0x7700, 0xB7C1, 0xB681, 0x7640, 0x7200, 0xB2C1, 0xB381, 0x7340, 0xB101, 0x71C0, 0x7080, 0xB041,
    0x5000, 0x90C1, 0x9181, 0x5140, 0x9301, 0x53C0, 0x5280, 0x9241, 0x9601, 0x56C0, 0x5780, 0x9741,
    0x5500, 0x95C1, 0x9481, 0x5440, 0x9C01, 0x5CC0, 0x5D80, 0x9D41, 0x5F00, 0x9FC1, 0x9E81, 0x5E40,
    0x5A00, 0x9AC1, 0x9B81, 0x5B40, 0x9901, 0x59C0, 0x5880, 0x9841, 0x8801, 0x48C0, 0x4980, 0x8941,
    0x4B00, 0x8BC1, 0x8A81, 0x4A40, 0x4E00, 0x8EC1, 0x8F81, 0x4F40, 0x8D01, 0x4DC0, 0x4C80, 0x8C41,
    0x4400, 0x84C1, 0x8581, 0x4540, 0x8701, 0x47C0, 0x4680, 0x8641, 0x8201, 0x42C0, 0x4380, 0x8341,
    0x4100, 0x81C1, 0x8081, 0x4040,
};

uint16_t gw_sl651_crc16(const uint8_t *p, size_t n)
{
    uint16_t crc = 0xFFFF;
    for (size_t i = 0; i < n; i++)
        crc = (uint16_t)((crc >> 8) ^ crc_table[(crc ^ p[i]) & 0xFF]);
    return crc;
}

/* ---- time ------------------------------------------------------------------------------ */

#define BEIJING_OFFSET_MS (8LL * 3600 * 1000)

/* Days since 1970-01-01 of a proleptic Gregorian date (valid for the years used here). */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int days_in_month(int y, int m)
{
    static const uint8_t dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

int gw_sl651_time_to_ms(const gw_sl651_time *t, int64_t *ms)
{
    if (!t || !ms || t->yy > 99 || t->mo < 1 || t->mo > 12 || t->dd < 1 || t->hh > 23 ||
        t->mi > 59 || t->ss > 59)
        return GW_EINVAL;
    int y = 2000 + t->yy;
    if (t->dd > days_in_month(y, t->mo))
        return GW_EINVAL;
    int64_t days = days_from_civil(y, t->mo, t->dd);
    int64_t s = days * 86400 + t->hh * 3600 + t->mi * 60 + t->ss;
    *ms = s * 1000 - BEIJING_OFFSET_MS;
    return GW_OK;
}

int gw_sl651_time_from_ms(int64_t utc_ms, gw_sl651_time *t)
{
    if (!t)
        return GW_EINVAL;
    int64_t local = utc_ms + BEIJING_OFFSET_MS;
    int64_t s = local >= 0 ? local / 1000 : (local - 999) / 1000;
    int64_t days = s >= 0 ? s / 86400 : (s - 86399) / 86400;
    int64_t sod = s - days * 86400;
    /* civil_from_days */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    if (y < 2000 || y > 2099)
        return GW_EINVAL;
    t->yy = (uint8_t)(y - 2000);
    t->mo = (uint8_t)m;
    t->dd = (uint8_t)d;
    t->hh = (uint8_t)(sod / 3600);
    t->mi = (uint8_t)(sod / 60 % 60);
    t->ss = (uint8_t)(sod % 60);
    return GW_OK;
}

/* ---- frame parsing ----------------------------------------------------------------------- */

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static const char hexdig[] = "0123456789ABCDEF";

static void station_to_hex(const uint8_t st[5], char out[11])
{
    for (int i = 0; i < 5; i++) {
        out[2 * i] = hexdig[st[i] >> 4];
        out[2 * i + 1] = hexdig[st[i] & 15];
    }
    out[10] = '\0';
}

static int end_ok(uint8_t dir, uint8_t e)
{
    if (dir == GW_SL651_DIR_UP)
        return e == GW_SL651_ETX || e == GW_SL651_ETB;
    return e == GW_SL651_ENQ || e == GW_SL651_ACK || e == GW_SL651_NAK || e == GW_SL651_EOT ||
           e == GW_SL651_ESC || e == GW_SL651_ETX || e == GW_SL651_ETB;
}

static int reject(gw_sl651_stats *st, int reason, int code)
{
    if (st)
        st->reject[reason]++;
    return code;
}

/* HEX/BCD frame at b[0..n). Layout (uplink): 7E7E centre(1) station(5) password(2)
 * function(1) dirlen(2) STX|SYN [counters(3)] body end crc(2). Downlink swaps the two
 * addresses. *rej receives the reason when the return is an error. */
static int parse_hex(const uint8_t *b, size_t n, gw_sl651_frame *f, int *rej)
{
    if (n >= 12 && (b[11] >> 4) != 0 && (b[11] >> 4) != 8) {
        *rej = GW_SL651_REJ_HEADER;
        return GW_EMALFORMED;
    }
    if (n >= 14 && b[13] != GW_SL651_STX && b[13] != GW_SL651_SYN) {
        *rej = GW_SL651_REJ_HEADER;
        return GW_EMALFORMED;
    }
    if (n < 14)
        return GW_EAGAIN;
    uint8_t dir = b[11] >> 4;
    /* The length counts every byte after the start character up to the end character,
     * so after SYN it includes the 3 packet-counter bytes (SL651-2014 Table 22). */
    size_t blen = ((size_t)(b[11] & 0x0F) << 8) | b[12];
    size_t ctr = b[13] == GW_SL651_SYN ? 3 : 0;
    if (blen < ctr) {
        *rej = GW_SL651_REJ_LENGTH;
        return GW_EMALFORMED;
    }
    size_t total = 14 + blen + 1 + 2;
    if (n < 14 + blen + 1)
        return GW_EAGAIN;
    uint8_t end = b[14 + blen];
    if (!end_ok(dir, end)) {
        *rej = GW_SL651_REJ_END;
        return GW_EMALFORMED;
    }
    if (n < total)
        return GW_EAGAIN;

    memset(f, 0, sizeof *f);
    f->encoding = GW_SL651_ENC_HEX;
    f->direction = dir;
    if (dir == GW_SL651_DIR_UP) {
        f->centre = b[2];
        memcpy(f->station, b + 3, 5);
    } else {
        memcpy(f->station, b + 2, 5);
        f->centre = b[7];
    }
    station_to_hex(f->station, f->station_hex);
    f->password = (uint16_t)(b[8] << 8 | b[9]);
    f->function = b[10];
    f->length = (uint16_t)blen;
    f->start = b[13];
    if (f->start == GW_SL651_SYN) {
        f->packet_total = (uint16_t)(b[14] << 4 | b[15] >> 4);
        f->packet_no = (uint16_t)((b[15] & 0x0F) << 8 | b[16]);
    }
    f->body = b + 14 + ctr;
    f->body_len = blen - ctr;
    f->end = end;
    f->crc = (uint16_t)(b[total - 2] << 8 | b[total - 1]);
    f->frame_len = total;
    if (gw_sl651_crc16(b, total - 2) != f->crc) {
        *rej = GW_SL651_REJ_CRC;
        return GW_ECRC;
    }
    return (int)total;
}

/* Reads cnt hex characters at p as a number; -1 if one is not a hex digit. */
static long hexnum(const uint8_t *p, size_t cnt)
{
    long v = 0;
    for (size_t i = 0; i < cnt; i++) {
        int d = hexval(p[i]);
        if (d < 0)
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* ASCII frame: SOH, then 22 hex characters (centre 2, station 10, password 4, function 2,
 * dirlen 4; downlink puts the station first), STX|SYN [6 hex chars of counters], body
 * characters, end, 4 hex characters of CRC over SOH..end. */
static int parse_ascii(const uint8_t *b, size_t n, gw_sl651_frame *f, int *rej)
{
    size_t avail = n < 23 ? n : 23;
    for (size_t i = 1; i < avail; i++)
        if (hexval(b[i]) < 0) {
            *rej = GW_SL651_REJ_HEADER;
            return GW_EMALFORMED;
        }
    if (n >= 20 && hexval(b[19]) != 0 && hexval(b[19]) != 8) {
        *rej = GW_SL651_REJ_HEADER;
        return GW_EMALFORMED;
    }
    if (n >= 24 && b[23] != GW_SL651_STX && b[23] != GW_SL651_SYN) {
        *rej = GW_SL651_REJ_HEADER;
        return GW_EMALFORMED;
    }
    if (n < 24)
        return GW_EAGAIN;
    size_t hdr = 24;
    if (b[23] == GW_SL651_SYN) {
        hdr = 30;
        size_t a2 = n < hdr ? n : hdr;
        for (size_t i = 24; i < a2; i++)
            if (hexval(b[i]) < 0) {
                *rej = GW_SL651_REJ_HEADER;
                return GW_EMALFORMED;
            }
        if (n < hdr)
            return GW_EAGAIN;
    }
    long dl = hexnum(b + 19, 4);
    uint8_t dir = (uint8_t)(dl >> 12);
    /* Characters after the start character up to the end character: after SYN the
     * 6 counter characters are included (SL651-2014 Tables 16 and 18). */
    size_t blen = (size_t)dl & 0x0FFF;
    if (blen < hdr - 24) {
        *rej = GW_SL651_REJ_LENGTH;
        return GW_EMALFORMED;
    }
    size_t total = 24 + blen + 1 + 4;
    if (n < 24 + blen + 1)
        return GW_EAGAIN;
    uint8_t end = b[24 + blen];
    if (!end_ok(dir, end)) {
        *rej = GW_SL651_REJ_END;
        return GW_EMALFORMED;
    }
    if (n < total)
        return GW_EAGAIN;
    long crc = hexnum(b + total - 4, 4);
    if (crc < 0) {
        *rej = GW_SL651_REJ_END;
        return GW_EMALFORMED;
    }

    memset(f, 0, sizeof *f);
    f->encoding = GW_SL651_ENC_ASCII;
    f->direction = dir;
    const uint8_t *cp = dir == GW_SL651_DIR_UP ? b + 1 : b + 11;
    const uint8_t *sp = dir == GW_SL651_DIR_UP ? b + 3 : b + 1;
    f->centre = (uint8_t)hexnum(cp, 2);
    for (int i = 0; i < 5; i++)
        f->station[i] = (uint8_t)hexnum(sp + 2 * i, 2);
    station_to_hex(f->station, f->station_hex);
    f->password = (uint16_t)hexnum(b + 13, 4);
    f->function = (uint8_t)hexnum(b + 17, 2);
    f->length = (uint16_t)blen;
    f->start = b[23];
    if (f->start == GW_SL651_SYN) {
        f->packet_total = (uint16_t)hexnum(b + 24, 3);
        f->packet_no = (uint16_t)hexnum(b + 27, 3);
    }
    f->body = b + hdr;
    f->body_len = blen - (hdr - 24);
    f->end = end;
    f->crc = (uint16_t)crc;
    f->frame_len = total;
    if (gw_sl651_crc16(b, total - 4) != f->crc) {
        *rej = GW_SL651_REJ_CRC;
        return GW_ECRC;
    }
    return (int)total;
}

/* Dispatch on the first byte. Returns as parse_hex does; GW_EMALFORMED for a wrong start. */
static int parse_at(const uint8_t *b, size_t n, gw_sl651_frame *f, int *rej)
{
    if (n == 0)
        return GW_EAGAIN;
    if (b[0] == 0x7E) {
        if (n < 2)
            return GW_EAGAIN;
        if (b[1] != 0x7E) {
            *rej = GW_SL651_REJ_HEADER;
            return GW_EMALFORMED;
        }
        return parse_hex(b, n, f, rej);
    }
    if (b[0] == GW_SL651_SOH)
        return parse_ascii(b, n, f, rej);
    *rej = GW_SL651_REJ_HEADER;
    return GW_EMALFORMED;
}

int gw_sl651_frame_parse(const uint8_t *buf, size_t len, gw_sl651_frame *f, gw_sl651_stats *st)
{
    if (!buf || !f)
        return GW_EINVAL;
    int rej = GW_SL651_REJ_HEADER;
    int r = parse_at(buf, len, f, &rej);
    if (r > 0) {
        if (st)
            st->frames++;
        return r;
    }
    if (r == GW_EAGAIN)
        return r;
    return reject(st, rej, r);
}

static int is_start(const uint8_t *b, size_t i, size_t n)
{
    if (b[i] == GW_SL651_SOH)
        return 1;
    if (b[i] == 0x7E)
        return i + 1 == n || b[i + 1] == 0x7E;
    return 0;
}

int gw_sl651_scan(const uint8_t *buf, size_t len, gw_sl651_frame *f, size_t *consumed,
                  size_t *skipped, gw_sl651_stats *st)
{
    if (!consumed || !skipped || !f || (!buf && len))
        return GW_EINVAL;
    *consumed = *skipped = 0;
    size_t pending = SIZE_MAX; /* first plausible but incomplete frame start */
    for (size_t i = 0; i < len; i++) {
        if (!is_start(buf, i, len))
            continue;
        int rej = GW_SL651_REJ_HEADER;
        gw_sl651_frame tmp;
        int r = parse_at(buf + i, len - i, &tmp, &rej);
        if (r == GW_EAGAIN) {
            if (pending == SIZE_MAX)
                pending = i;
            continue; /* look further: a complete frame later wins over a false start */
        }
        if (r > 0 || r == GW_ECRC) {
            *f = tmp;
            *skipped = i;
            *consumed = i + tmp.frame_len;
            if (st) {
                st->bytes_skipped += i;
                if (r > 0)
                    st->frames++;
                else
                    st->reject[GW_SL651_REJ_CRC]++;
            }
            return r > 0 ? GW_OK : GW_ECRC;
        }
        if (st && pending == SIZE_MAX)
            st->reject[rej]++;
    }
    size_t keep_from = pending != SIZE_MAX ? pending : len;
    *skipped = *consumed = keep_from;
    if (st)
        st->bytes_skipped += keep_from;
    return GW_EAGAIN;
}

/* ---- encoders ----------------------------------------------------------------------------- */

static uint8_t bcd(unsigned v)
{
    return (uint8_t)((v / 10 % 10) << 4 | v % 10);
}

/* Writes a downlink frame whose body is serial + send time; after SYN with the packet
 * counter (total, no) when total > 0 (M3 answers). */
static int encode_down(const gw_sl651_link *l, uint8_t fn, uint16_t serial, const gw_sl651_time *t,
                       uint8_t end, unsigned total, unsigned no, uint8_t *out, size_t cap)
{
    if (!l || !t || !out || t->yy > 99 || t->mo > 12 || t->dd > 31 || t->hh > 23 || t->mi > 59 ||
        t->ss > 59)
        return GW_EINVAL;
    uint8_t body[8] = {(uint8_t)(serial >> 8),
                       (uint8_t)serial,
                       bcd(t->yy),
                       bcd(t->mo),
                       bcd(t->dd),
                       bcd(t->hh),
                       bcd(t->mi),
                       bcd(t->ss)};
    uint8_t hdr[11];
    memcpy(hdr, l->station, 5);
    hdr[5] = l->centre;
    hdr[6] = (uint8_t)(l->password >> 8);
    hdr[7] = (uint8_t)l->password;
    hdr[8] = fn;
    if (total > 0xFFF || no > 0xFFF)
        return GW_EINVAL;
    uint8_t ctr[3] = {(uint8_t)(total >> 4), (uint8_t)((total & 15) << 4 | no >> 8), (uint8_t)no};
    size_t nctr = total ? sizeof ctr : 0;
    size_t blen = l->encoding == GW_SL651_ENC_ASCII ? 2 * (sizeof body + nctr) : sizeof body + nctr;
    hdr[9] = (uint8_t)(0x80 | blen >> 8);
    hdr[10] = (uint8_t)blen;

    size_t k = 0;
    if (l->encoding == GW_SL651_ENC_HEX) {
        size_t need = 2 + sizeof hdr + 1 + nctr + sizeof body + 1 + 2;
        if (cap < need)
            return GW_EFULL;
        out[k++] = 0x7E;
        out[k++] = 0x7E;
        memcpy(out + k, hdr, sizeof hdr);
        k += sizeof hdr;
        out[k++] = nctr ? GW_SL651_SYN : GW_SL651_STX;
        memcpy(out + k, ctr, nctr);
        k += nctr;
        memcpy(out + k, body, sizeof body);
        k += sizeof body;
        out[k++] = end;
        uint16_t crc = gw_sl651_crc16(out, k);
        out[k++] = (uint8_t)(crc >> 8);
        out[k++] = (uint8_t)crc;
        return (int)k;
    }
    if (l->encoding != GW_SL651_ENC_ASCII)
        return GW_EINVAL;
    size_t need = 1 + 2 * sizeof hdr + 1 + 2 * nctr + 2 * sizeof body + 1 + 4;
    if (cap < need)
        return GW_EFULL;
    out[k++] = GW_SL651_SOH;
    for (size_t i = 0; i < sizeof hdr; i++) {
        out[k++] = (uint8_t)hexdig[hdr[i] >> 4];
        out[k++] = (uint8_t)hexdig[hdr[i] & 15];
    }
    out[k++] = nctr ? GW_SL651_SYN : GW_SL651_STX;
    for (size_t i = 0; i < nctr; i++) {
        out[k++] = (uint8_t)hexdig[ctr[i] >> 4];
        out[k++] = (uint8_t)hexdig[ctr[i] & 15];
    }
    for (size_t i = 0; i < sizeof body; i++) {
        out[k++] = (uint8_t)hexdig[body[i] >> 4];
        out[k++] = (uint8_t)hexdig[body[i] & 15];
    }
    out[k++] = end;
    uint16_t crc = gw_sl651_crc16(out, k);
    for (int s = 12; s >= 0; s -= 4)
        out[k++] = (uint8_t)hexdig[(crc >> s) & 15];
    return (int)k;
}

/* The answer to an uplink frame goes back on its link: same encoding, centre, station and
 * password. */
static int answer(const gw_sl651_frame *up, uint16_t serial, const gw_sl651_time *t, uint8_t end,
                  unsigned total, unsigned no, uint8_t *out, size_t cap)
{
    gw_sl651_link l;
    l.encoding = up->encoding;
    l.centre = up->centre;
    memcpy(l.station, up->station, 5);
    l.password = up->password;
    return encode_down(&l, up->function, serial, t, end, total, no, out, cap);
}

int gw_sl651_encode_confirm(const gw_sl651_frame *up, uint16_t serial, const gw_sl651_time *t,
                            uint8_t end, uint8_t *out, size_t cap)
{
    if (!up ||
        (end != GW_SL651_EOT && end != GW_SL651_ESC && end != GW_SL651_ACK && end != GW_SL651_NAK))
        return GW_EINVAL;
    return answer(up, serial, t, end, 0, 0, out, cap);
}

int gw_sl651_encode_confirm_m3(const gw_sl651_frame *up, uint16_t serial, const gw_sl651_time *t,
                               uint8_t end, unsigned total, unsigned no, uint8_t *out, size_t cap)
{
    if (!up || total == 0 || no == 0 || no > total ||
        (end != GW_SL651_EOT && end != GW_SL651_ESC && end != GW_SL651_NAK))
        return GW_EINVAL;
    return answer(up, serial, t, end, total, no, out, cap);
}

int gw_sl651_encode_request(const gw_sl651_link *link, uint8_t function, uint16_t serial,
                            const gw_sl651_time *t, uint8_t *out, size_t cap)
{
    return encode_down(link, function, serial, t, GW_SL651_ENQ, 0, 0, out, cap);
}

/* ---- duplicate detection -------------------------------------------------------------------- */

void gw_sl651_dedup_init(gw_sl651_dedup *d)
{
    if (d)
        memset(d, 0, sizeof *d);
}

int gw_sl651_dedup_check(gw_sl651_dedup *d, const char *station_hex, uint16_t serial,
                         const gw_sl651_time *send_time)
{
    if (!d || !station_hex || !send_time)
        return 0;
    uint8_t st[5] = {0};
    for (int i = 0; i < 10 && station_hex[i]; i++) {
        int v = hexval((uint8_t)station_hex[i]);
        if (v < 0)
            v = 0;
        st[i / 2] = (uint8_t)(st[i / 2] << 4 | v);
    }
    for (unsigned i = 0; i < GW_SL651_DEDUP_SLOTS; i++) {
        if (d->slot[i].used && d->slot[i].serial == serial &&
            memcmp(d->slot[i].station, st, 5) == 0 &&
            memcmp(&d->slot[i].t, send_time, sizeof *send_time) == 0)
            return 1;
    }
    unsigned k = d->next % GW_SL651_DEDUP_SLOTS;
    memcpy(d->slot[k].station, st, 5);
    d->slot[k].serial = serial;
    d->slot[k].t = *send_time;
    d->slot[k].used = 1;
    d->next = (k + 1) % GW_SL651_DEDUP_SLOTS;
    return 0;
}
