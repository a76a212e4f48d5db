/* SL651-2014 frame layer: CRC, time conversion, single-frame parsing for both
 * encodings, the TCP stream scanner, the downlink encoders and duplicate detection.
 * Body decoding lives in sl651_body.c and JSON rendering in sl651_json.c. */
#include "protocols/sl651.h"

#include "base/civil.h"
#include "base/crc16.h"
#include "base/hex.h"

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

uint16_t gw_sl651_crc16(const uint8_t *p, size_t n)
{
    return gw_crc16_modbus(p, n);
}

/* ---- time ------------------------------------------------------------------------------ */

#define BEIJING_OFFSET_MS (8LL * 3600 * 1000)

int gw_sl651_time_to_ms(const gw_sl651_time *t, int64_t *ms)
{
    if (!t || !ms || t->yy > 99 || t->mo < 1 || t->mo > 12 || t->dd < 1 || t->hh > 23 ||
        t->mi > 59 || t->ss > 59)
        return GW_EINVAL;
    int y = 2000 + t->yy;
    if (t->dd > gw_days_in_month(y, t->mo))
        return GW_EINVAL;
    int64_t days = gw_days_from_civil(y, t->mo, t->dd);
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
    int64_t y;
    unsigned m, d;
    gw_civil_from_days(days, &y, &m, &d);
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

static void station_to_hex(const uint8_t st[5], char out[11])
{
    out[gw_hex_put(st, 5, out)] = '\0';
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
    return gw_hex_value((const char *)p, cnt);
}

/* ASCII frame: SOH, then 22 hex characters (centre 2, station 10, password 4, function 2,
 * dirlen 4; downlink puts the station first), STX|SYN [6 hex chars of counters], body
 * characters, end, 4 hex characters of CRC over SOH..end. */
static int parse_ascii(const uint8_t *b, size_t n, gw_sl651_frame *f, int *rej)
{
    size_t avail = n < 23 ? n : 23;
    for (size_t i = 1; i < avail; i++)
        if (gw_hex_digit(b[i]) < 0) {
            *rej = GW_SL651_REJ_HEADER;
            return GW_EMALFORMED;
        }
    if (n >= 20 && gw_hex_digit(b[19]) != 0 && gw_hex_digit(b[19]) != 8) {
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
            if (gw_hex_digit(b[i]) < 0) {
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
    k += gw_hex_put(hdr, sizeof hdr, (char *)out + k);
    out[k++] = nctr ? GW_SL651_SYN : GW_SL651_STX;
    k += gw_hex_put(ctr, nctr, (char *)out + k);
    k += gw_hex_put(body, sizeof body, (char *)out + k);
    out[k++] = end;
    uint16_t crc = gw_sl651_crc16(out, k);
    for (int s = 12; s >= 0; s -= 4)
        out[k++] = (uint8_t)gw_hex_char(crc >> s);
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
        int v = gw_hex_digit((uint8_t)station_hex[i]);
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
