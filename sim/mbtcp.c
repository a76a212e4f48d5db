/* Modbus TCP as a server sees it, framed by hand: the MBAP header (transaction
 * id, protocol id 0, length, unit id) then a PDU. Every length is checked
 * against the bytes present before it is used. Pure: no I/O. */
#include "sim/mbtcp.h"

#include <string.h>

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

int sim_mbtcp_frame(const uint8_t *buf, size_t len, sim_mb_req *out)
{
    /* Reject as early as the bytes allow, so garbage never waits for more. */
    if (len >= 4 && be16(buf + 2) != 0)
        return SIM_EMALFORMED;
    if (len < 6)
        return 0;
    uint16_t l = be16(buf + 4); /* unit id + PDU */
    if (l < 2 || l > 254)
        return SIM_EMALFORMED;
    size_t total = 6 + (size_t)l;
    if (len < total)
        return 0;
    if (out) {
        out->tid = be16(buf);
        out->proto = 0;
        out->unit = buf[6];
        out->fc = buf[7];
        out->pdu = buf + 8;
        out->pdu_len = total - 8;
    }
    return (int)total;
}

/* Writes the MBAP header for a PDU of pdu_len bytes (function code included). */
static size_t finish(const sim_mb_req *rq, uint8_t *resp, size_t pdu_len)
{
    put16(resp, rq->tid);
    put16(resp + 2, 0);
    put16(resp + 4, (uint16_t)(pdu_len + 1));
    resp[6] = rq->unit;
    return 7 + pdu_len;
}

size_t sim_mbtcp_exception(const sim_mb_req *rq, int code, uint8_t *resp, size_t cap)
{
    if (cap < 9)
        return 0;
    resp[7] = (uint8_t)(rq->fc | 0x80);
    resp[8] = (uint8_t)code;
    return finish(rq, resp, 2);
}

int sim_mbtcp_range(const sim_mb_req *rq, uint16_t *addr, uint16_t *count)
{
    if (rq->pdu_len < 4)
        return 0;
    switch (rq->fc) {
    case 0x01:
    case 0x02:
    case 0x03:
    case 0x04:
    case 0x0F:
    case 0x10:
        *addr = be16(rq->pdu);
        *count = be16(rq->pdu + 2);
        return 1;
    case 0x05:
    case 0x06:
        *addr = be16(rq->pdu);
        *count = 1;
        return 1;
    }
    return 0;
}

size_t sim_mbtcp_serve(const sim_mb_req *rq, const sim_regio *io, void *ctx, int force_exc,
                       uint8_t *resp, size_t cap)
{
    uint16_t vals[2000];
    const uint8_t *p = rq->pdu;
    size_t n = rq->pdu_len;
    uint8_t *out = resp + 7; /* PDU of the response */
    int exc;

    if (cap < SIM_MB_MAX_ADU)
        return 0;
    if (force_exc)
        return sim_mbtcp_exception(rq, force_exc, resp, cap);
    switch (rq->fc) {
    case 0x01:
    case 0x02: {
        if (n != 4)
            return sim_mbtcp_exception(rq, 3, resp, cap);
        uint16_t a = be16(p), c = be16(p + 2);
        if (c < 1 || c > 2000)
            return sim_mbtcp_exception(rq, 3, resp, cap);
        if ((uint32_t)a + c > 65536)
            return sim_mbtcp_exception(rq, 2, resp, cap);
        exc = io->read(ctx, rq->fc == 1 ? SIM_TAB_COIL : SIM_TAB_DISCRETE, a, c, vals);
        if (exc)
            return sim_mbtcp_exception(rq, exc, resp, cap);
        size_t nb = (c + 7u) / 8u;
        out[0] = rq->fc;
        out[1] = (uint8_t)nb;
        memset(out + 2, 0, nb);
        for (unsigned i = 0; i < c; i++)
            if (vals[i])
                out[2 + i / 8] |= (uint8_t)(1u << (i % 8));
        return finish(rq, resp, 2 + nb);
    }
    case 0x03:
    case 0x04: {
        if (n != 4)
            return sim_mbtcp_exception(rq, 3, resp, cap);
        uint16_t a = be16(p), c = be16(p + 2);
        if (c < 1 || c > 125)
            return sim_mbtcp_exception(rq, 3, resp, cap);
        if ((uint32_t)a + c > 65536)
            return sim_mbtcp_exception(rq, 2, resp, cap);
        exc = io->read(ctx, rq->fc == 3 ? SIM_TAB_HOLDING : SIM_TAB_INPUT, a, c, vals);
        if (exc)
            return sim_mbtcp_exception(rq, exc, resp, cap);
        out[0] = rq->fc;
        out[1] = (uint8_t)(2 * c);
        for (unsigned i = 0; i < c; i++)
            put16(out + 2 + 2 * i, vals[i]);
        return finish(rq, resp, 2 + 2u * c);
    }
    case 0x05:
    case 0x06: {
        if (n != 4)
            return sim_mbtcp_exception(rq, 3, resp, cap);
        uint16_t a = be16(p), v = be16(p + 2);
        if (rq->fc == 5) {
            if (v != 0xFF00 && v != 0x0000)
                return sim_mbtcp_exception(rq, 3, resp, cap);
            vals[0] = v ? 1 : 0;
        } else {
            vals[0] = v;
        }
        exc = io->write(ctx, rq->fc == 5 ? SIM_TAB_COIL : SIM_TAB_HOLDING, a, 1, vals);
        if (exc)
            return sim_mbtcp_exception(rq, exc, resp, cap);
        out[0] = rq->fc;
        memcpy(out + 1, p, 4); /* the echo */
        return finish(rq, resp, 5);
    }
    case 0x0F:
    case 0x10: {
        if (n < 5)
            return sim_mbtcp_exception(rq, 3, resp, cap);
        uint16_t a = be16(p), c = be16(p + 2);
        size_t bc = p[4];
        int coils = rq->fc == 0x0F;
        if (c < 1 || c > (coils ? 1968 : 123))
            return sim_mbtcp_exception(rq, 3, resp, cap);
        if (bc != (coils ? (c + 7u) / 8u : 2u * c) || n != 5 + bc)
            return sim_mbtcp_exception(rq, 3, resp, cap);
        if ((uint32_t)a + c > 65536)
            return sim_mbtcp_exception(rq, 2, resp, cap);
        for (unsigned i = 0; i < c; i++)
            vals[i] = coils ? (uint16_t)((p[5 + i / 8] >> (i % 8)) & 1) : be16(p + 5 + 2 * i);
        exc = io->write(ctx, coils ? SIM_TAB_COIL : SIM_TAB_HOLDING, a, c, vals);
        if (exc)
            return sim_mbtcp_exception(rq, exc, resp, cap);
        out[0] = rq->fc;
        put16(out + 1, a);
        put16(out + 3, c);
        return finish(rq, resp, 5);
    }
    default:
        return sim_mbtcp_exception(rq, 1, resp, cap);
    }
}
