/* SL651-2014 HEX/BCD frames, written from the standard's description: the
 * frame around a body, the body's head, elements as packed BCD, and the
 * parser a station needs to read the centre's confirms. Pure: no I/O. */
#include "sim/enc_sl651.h"

#include <math.h>
#include <string.h>

static void wb_byte(sim_wbuf *b, uint8_t v)
{
    if (b->len < b->cap)
        b->p[b->len++] = v;
    else
        b->overflow = 1;
}

static void wb_bytes(sim_wbuf *b, const uint8_t *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        wb_byte(b, v[i]);
}

static uint8_t bcd2(int v)
{
    v = v < 0 ? 0 : v % 100;
    return (uint8_t)(((v / 10) << 4) | (v % 10));
}

uint16_t sim_sl651_crc(const uint8_t *p, size_t n)
{
    uint16_t reg = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        reg ^= p[i];
        for (int b = 0; b < 8; b++)
            reg = (reg & 1) ? (uint16_t)((reg >> 1) ^ 0xA001) : (uint16_t)(reg >> 1);
    }
    return reg;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sim_sl651_addr_parse(const char *hex, uint8_t out[5])
{
    size_t n = strlen(hex);
    char d[10];
    if (n == 0 || n > 10)
        return SIM_EINVAL;
    memset(d, '0', sizeof d);
    memcpy(d + 10 - n, hex, n);
    for (int i = 0; i < 5; i++) {
        int hi = hexval(d[2 * i]), lo = hexval(d[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return SIM_EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return SIM_OK;
}

static int frame_any(const sim_sl651_hdr *h, unsigned total, unsigned no, const uint8_t *body,
                     size_t blen, uint8_t *out, size_t cap);

int sim_sl651_frame(const sim_sl651_hdr *h, const uint8_t *body, size_t blen, uint8_t *out,
                    size_t cap)
{
    return frame_any(h, 0, 0, body, blen, out, cap);
}

int sim_sl651_frame_m3(const sim_sl651_hdr *h, unsigned total, unsigned no, const uint8_t *body,
                       size_t blen, uint8_t *out, size_t cap)
{
    if (total < 1 || total > 0xFFF || no < 1 || no > total)
        return SIM_EINVAL;
    return frame_any(h, total, no, body, blen, out, cap);
}

/* total = 0: STX frame; else SYN and the 3 counter bytes, which the length counts. */
static int frame_any(const sim_sl651_hdr *h, unsigned total, unsigned no, const uint8_t *body,
                     size_t blen, uint8_t *out, size_t cap)
{
    size_t ctr = total ? 3 : 0;
    if (blen + ctr > 0x0FFF || cap < blen + ctr + 17)
        return SIM_EINVAL;
    sim_wbuf b = {out, cap, 0, 0};
    wb_byte(&b, 0x7E);
    wb_byte(&b, 0x7E);
    /* The downlink names the station first, the uplink the centre first. */
    if (h->down) {
        wb_bytes(&b, h->station, 5);
        wb_byte(&b, h->centre);
    } else {
        wb_byte(&b, h->centre);
        wb_bytes(&b, h->station, 5);
    }
    wb_byte(&b, (uint8_t)(h->password >> 8));
    wb_byte(&b, (uint8_t)h->password);
    wb_byte(&b, h->fc);
    uint16_t dl = (uint16_t)((h->down ? 0x8000 : 0) | (blen + ctr));
    wb_byte(&b, (uint8_t)(dl >> 8));
    wb_byte(&b, (uint8_t)dl);
    if (ctr) {
        wb_byte(&b, 0x16); /* SYN */
        wb_byte(&b, (uint8_t)(total >> 4));
        wb_byte(&b, (uint8_t)((total & 15) << 4 | no >> 8));
        wb_byte(&b, (uint8_t)no);
    } else {
        wb_byte(&b, SIM_SL651_STX);
    }
    wb_bytes(&b, body, blen);
    wb_byte(&b, h->end ? h->end : SIM_SL651_ETX);
    uint16_t crc = sim_sl651_crc(out, b.len);
    wb_byte(&b, (uint8_t)(crc >> 8)); /* high byte first, unlike Modbus RTU */
    wb_byte(&b, (uint8_t)crc);
    return b.overflow ? SIM_EINVAL : (int)b.len;
}

static void put_time(sim_wbuf *b, const sim_dt *t, int with_sec)
{
    wb_byte(b, bcd2(t->year % 100));
    wb_byte(b, bcd2(t->mon));
    wb_byte(b, bcd2(t->day));
    wb_byte(b, bcd2(t->hour));
    wb_byte(b, bcd2(t->min));
    if (with_sec)
        wb_byte(b, bcd2(t->sec));
}

void sim_sl651_put_head(sim_wbuf *b, uint16_t serial, const sim_dt *send)
{
    wb_byte(b, (uint8_t)(serial >> 8));
    wb_byte(b, (uint8_t)serial);
    put_time(b, send, 1);
}

void sim_sl651_put_station(sim_wbuf *b, const uint8_t station[5], uint8_t type, const sim_dt *obs)
{
    wb_byte(b, 0xF1);
    wb_byte(b, 0xF1);
    wb_bytes(b, station, 5);
    wb_byte(b, type);
    wb_byte(b, 0xF0);
    wb_byte(b, 0xF0);
    put_time(b, obs, 0);
}

int sim_sl651_put_num(sim_wbuf *b, uint8_t id, int nbytes, int decimals, double v)
{
    uint8_t digits[8];
    if (nbytes < 1 || nbytes > 8 || decimals < 0 || decimals > 7)
        return SIM_EINVAL;
    if (isnan(v)) {
        memset(digits, 0xFF, (size_t)nbytes);
    } else {
        double scaled = round(fabs(v) * pow(10, decimals));
        int neg = v < 0 && scaled > 0;
        int nd = 2 * (nbytes - neg);
        if (nd == 0 || scaled >= pow(10, nd))
            return SIM_EINVAL;
        uint64_t u = (uint64_t)scaled;
        for (int i = nbytes - 1; i >= neg; i--) {
            digits[i] = (uint8_t)(((u / 10 % 10) << 4) | (u % 10));
            u /= 100;
        }
        if (neg)
            digits[0] = 0xFF;
    }
    wb_byte(b, id);
    wb_byte(b, (uint8_t)(nbytes << 3 | decimals));
    wb_bytes(b, digits, (size_t)nbytes);
    return SIM_OK;
}

void sim_sl651_put_raw(sim_wbuf *b, uint8_t id, uint8_t def, const uint8_t *data, size_t n)
{
    wb_byte(b, id);
    wb_byte(b, def);
    wb_bytes(b, data, n);
}

int sim_sl651_parse(const uint8_t *buf, size_t len, sim_sl651_msg *out)
{
    if (len >= 1 && buf[0] != 0x7E)
        return SIM_EMALFORMED;
    if (len >= 2 && buf[1] != 0x7E)
        return SIM_EMALFORMED;
    if (len < 14)
        return 0;
    uint16_t dl = (uint16_t)(buf[11] << 8 | buf[12]);
    int dir = dl >> 12;
    size_t blen = dl & 0x0FFF;
    size_t body_at = 14;
    if (dir != 0 && dir != 8)
        return SIM_EMALFORMED;
    if (buf[13] == 0x16) { /* SYN: 3 counter bytes follow, counted in the length */
        if (blen < 3)
            return SIM_EMALFORMED;
        body_at = 17;
        blen -= 3;
    } else if (buf[13] != SIM_SL651_STX) {
        return SIM_EMALFORMED;
    }
    size_t total = body_at + blen + 3;
    if (len < total)
        return 0;
    uint8_t end = buf[body_at + blen];
    if (end != SIM_SL651_ETX && end != SIM_SL651_ETB && end != SIM_SL651_ENQ &&
        end != SIM_SL651_ACK && end != SIM_SL651_NAK && end != SIM_SL651_EOT &&
        end != SIM_SL651_ESC)
        return SIM_EMALFORMED;
    uint16_t crc = sim_sl651_crc(buf, total - 2);
    if (buf[total - 2] != (crc >> 8) || buf[total - 1] != (crc & 0xFF))
        return SIM_EMALFORMED;
    memset(out, 0, sizeof *out);
    out->down = dir == 8;
    if (out->down) {
        memcpy(out->station, buf + 2, 5);
        out->centre = buf[7];
    } else {
        out->centre = buf[2];
        memcpy(out->station, buf + 3, 5);
    }
    out->password = (uint16_t)(buf[8] << 8 | buf[9]);
    out->fc = buf[10];
    out->end = end;
    out->body = buf + body_at;
    out->blen = blen;
    if (body_at == 17) {
        out->total = (unsigned)(buf[14] << 4 | buf[15] >> 4);
        out->no = (unsigned)((buf[15] & 15) << 8 | buf[16]);
    }
    if (blen >= 2)
        out->serial = (uint16_t)(buf[body_at] << 8 | buf[body_at + 1]);
    return (int)total;
}

void sim_sl651_bad_crc(uint8_t *frame, size_t len)
{
    if (len < 2)
        return;
    frame[len - 2] ^= 0x5A;
    frame[len - 1] ^= 0xA5;
}
