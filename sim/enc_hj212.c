/* HJ 212-2017 packets, written from the standard's description: the data
 * segment, its length and CRC around it, and the parser a station needs for
 * the server's 9014 answers. Pure: no I/O. */
#include "sim/enc_hj212.h"

#include <stdio.h>
#include <string.h>

uint16_t sim_hj212_crc(const uint8_t *p, size_t n)
{
    /* Not the Modbus CRC: the register is shifted right 8 and xored with the
     * byte, instead of xoring the byte into the low half. */
    uint16_t reg = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        reg = (uint16_t)((reg >> 8) ^ p[i]);
        for (int b = 0; b < 8; b++)
            reg = (reg & 1) ? (uint16_t)((reg >> 1) ^ 0xA001) : (uint16_t)(reg >> 1);
    }
    return reg;
}

void sim_hj212_qn(const sim_dt *t, char out[18])
{
    snprintf(out, 18, "%04u%02u%02u%02u%02u%02u%03u", (unsigned)t->year % 10000u,
             (unsigned)t->mon % 100u, (unsigned)t->day % 100u, (unsigned)t->hour % 100u,
             (unsigned)t->min % 100u, (unsigned)t->sec % 100u, (unsigned)t->ms % 1000u);
}

/* Wraps a data segment of seg_len bytes already at out + 6. */
static int wrap(char *out, size_t cap, size_t seg_len)
{
    if (seg_len > 9999 || cap < seg_len + 12)
        return SIM_EINVAL;
    char head[8];
    snprintf(head, sizeof head, "##%04u", (unsigned)seg_len);
    memcpy(out, head, 6);
    uint16_t crc = sim_hj212_crc((const uint8_t *)out + 6, seg_len);
    char tail[8];
    snprintf(tail, sizeof tail, "%04X\r\n", crc);
    memcpy(out + 6 + seg_len, tail, 6);
    return (int)(seg_len + 12);
}

int sim_hj212_packet(char *out, size_t cap, const char *qn, const char *st, int cn, const char *pw,
                     const char *mn, int flag, const char *cp)
{
    if (cap < 12)
        return SIM_EINVAL;
    int n = snprintf(out + 6, cap - 6, "%s%s%sST=%s;CN=%04d;PW=%s;MN=%s;Flag=%d;CP=&&%s&&",
                     qn ? "QN=" : "", qn ? qn : "", qn ? ";" : "", st, cn, pw, mn, flag, cp);
    if (n < 0 || (size_t)n + 12 > cap)
        return SIM_EINVAL;
    return wrap(out, cap, (size_t)n);
}

/* The crc_lsb quirk: CRC-16/Modbus of the segment as the 4 digits show it, low byte
 * first. */
static unsigned modbus_lsb(const char *seg, size_t n)
{
    uint16_t reg = 0xFFFF;
    for (size_t i = 0; i < n; i++) {
        reg ^= (uint8_t)seg[i];
        for (int b = 0; b < 8; b++)
            reg = (reg & 1) ? (uint16_t)((reg >> 1) ^ 0xA001) : (uint16_t)(reg >> 1);
    }
    return (unsigned)((reg & 0xFF) << 8 | reg >> 8);
}

int sim_hj212_packet_part(char *out, size_t cap, const char *qn, const char *st, int cn,
                          const char *pw, const char *mn, int flag, int pnum, int pno,
                          const char *cp)
{
    if (cap < 12 || pnum < 1 || pno < 1 || pno > pnum)
        return SIM_EINVAL;
    /* Flag bit D (2) says the packet carries PNUM and PNO. */
    int n = snprintf(
        out + 6, cap - 6, "%s%s%sST=%s;CN=%04d;PW=%s;MN=%s;Flag=%d;PNUM=%d;PNO=%d;CP=&&%s&&",
        qn ? "QN=" : "", qn ? qn : "", qn ? ";" : "", st, cn, pw, mn, flag | 2, pnum, pno, cp);
    if (n < 0 || (size_t)n + 12 > cap)
        return SIM_EINVAL;
    return wrap(out, cap, (size_t)n);
}

void sim_hj212_crc_modbus_lsb(char *pkt, size_t len)
{
    if (len < 12)
        return;
    char tail[8];
    snprintf(tail, sizeof tail, "%04X", modbus_lsb(pkt + 6, len - 12));
    memcpy(pkt + len - 6, tail, 4);
}

int sim_hj212_malform(const char *in, size_t len, char *out, size_t cap)
{
    if (len < 12 || in[0] != '#' || in[1] != '#' || cap < len)
        return SIM_EINVAL;
    size_t seg_len = len - 12;
    const char *seg = in + 6;
    const char *cp = memmem(seg, seg_len, "CP=&&", 5);
    if (!cp || seg_len < 2 || memcmp(seg + seg_len - 2, "&&", 2) != 0)
        return SIM_EINVAL;
    size_t o = 6;
    int eq_dropped = 0;
    for (const char *s = seg; s < seg + seg_len - 2; s++) {
        /* Drop the first '=' inside the CP: "k=v" becomes "kv". */
        if (!eq_dropped && s > cp + 4 && *s == '=') {
            eq_dropped = 1;
            continue;
        }
        out[o++] = *s;
    }
    return wrap(out, cap, o - 6);
}

static int digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

static int hexdig(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Finds the first "key=" at a field start (segment start, or after ';', ','
 * or '&': a server may echo QN inside the CP) and returns the value's start,
 * with its length in *vl. */
static const char *field(const char *seg, size_t n, const char *key, size_t *vl)
{
    size_t kl = strlen(key);
    for (size_t i = 0; i + kl < n; i++) {
        char prev = i ? seg[i - 1] : ';';
        if ((prev == ';' || prev == ',' || prev == '&') && memcmp(seg + i, key, kl) == 0 &&
            seg[i + kl] == '=') {
            size_t j = i + kl + 1, e = j;
            while (e < n && seg[e] != ';' && seg[e] != '&')
                e++;
            *vl = e - j;
            return seg + j;
        }
    }
    return NULL;
}

int sim_hj212_parse(const char *buf, size_t len, sim_hj212_msg *out)
{
    if ((len >= 1 && buf[0] != '#') || (len >= 2 && buf[1] != '#'))
        return SIM_EMALFORMED;
    if (len < 6)
        return 0;
    if (!digits(buf + 2, 4))
        return SIM_EMALFORMED;
    size_t seg_len = 0;
    for (int i = 2; i < 6; i++)
        seg_len = seg_len * 10 + (size_t)(buf[i] - '0');
    if (seg_len > 1024)
        return SIM_EMALFORMED;
    size_t total = seg_len + 12;
    if (len < total)
        return 0;
    const char *seg = buf + 6;
    unsigned crc = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexdig(seg[seg_len + (size_t)i]);
        if (h < 0)
            return SIM_EMALFORMED;
        crc = crc << 4 | (unsigned)h;
    }
    /* An answer to a crc_lsb station comes framed its way (Modbus CRC, low byte first). */
    if ((crc != sim_hj212_crc((const uint8_t *)seg, seg_len) && crc != modbus_lsb(seg, seg_len)) ||
        seg[seg_len + 4] != '\r' || seg[seg_len + 5] != '\n')
        return SIM_EMALFORMED;
    memset(out, 0, sizeof *out);
    out->seg = seg;
    out->seg_len = seg_len;
    out->cn = -1;
    size_t vl;
    const char *v = field(seg, seg_len, "CN", &vl);
    if (v && vl > 0 && vl <= 4 && digits(v, vl)) {
        out->cn = 0;
        for (size_t i = 0; i < vl; i++)
            out->cn = out->cn * 10 + (v[i] - '0');
    }
    v = field(seg, seg_len, "QN", &vl);
    if (v && vl < sizeof out->qn) {
        memcpy(out->qn, v, vl);
        out->qn[vl] = 0;
    }
    return (int)total;
}

void sim_hj212_bad_crc(char *pkt, size_t len)
{
    if (len < 12)
        return;
    char *c = pkt + len - 6;
    unsigned crc = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexdig(c[i]);
        crc = crc << 4 | (unsigned)(h < 0 ? 0 : h);
    }
    char tmp[8];
    snprintf(tmp, sizeof tmp, "%04X", (crc ^ 0x5A5Au) & 0xFFFFu);
    memcpy(c, tmp, 4);
}
