/* The simulator's own register encoder: a value becomes the register words a
 * device would put on the wire, for each type and byte order. Pure. */
#include "sim/encode.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    sim_type t;
} types[] = {
    {"uint16", SIM_T_UINT16}, {"int16", SIM_T_INT16},     {"uint32", SIM_T_UINT32},
    {"int32", SIM_T_INT32},   {"float32", SIM_T_FLOAT32}, {"uint64", SIM_T_UINT64},
    {"int64", SIM_T_INT64},   {"float64", SIM_T_FLOAT64}, {"bool", SIM_T_BOOL},
};

int sim_type_parse(const char *s, sim_type *out)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (strcmp(s, types[i].name) == 0) {
            *out = types[i].t;
            return SIM_OK;
        }
    }
    return SIM_EINVAL;
}

const char *sim_type_name(sim_type t)
{
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (types[i].t == t)
            return types[i].name;
    return "?";
}

int sim_type_regs(sim_type t)
{
    switch (t) {
    case SIM_T_UINT32:
    case SIM_T_INT32:
    case SIM_T_FLOAT32:
        return 2;
    case SIM_T_UINT64:
    case SIM_T_INT64:
    case SIM_T_FLOAT64:
        return 4;
    default:
        return 1;
    }
}

static int type_bytes(sim_type t)
{
    return t == SIM_T_BOOL ? 2 : sim_type_regs(t) * 2;
}

int sim_order_parse(const char *s, sim_order *out)
{
    size_t n = strlen(s);
    unsigned seen = 0;
    if (n != 2 && n != 4 && n != 8)
        return SIM_EINVAL;
    memset(out, 0, sizeof *out);
    out->n = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        int c = s[i];
        if (c >= 'a' && c <= 'h')
            c -= 'a' - 'A';
        int b = c - 'A';
        if (b < 0 || (size_t)b >= n || (seen & (1u << b)))
            return SIM_EINVAL;
        seen |= 1u << b;
        out->perm[i] = (uint8_t)b;
    }
    return SIM_OK;
}

/* Fits an order to nbytes. An exact-size order is used as given. Otherwise the
 * order must be one of the regular shapes (AB/BA, ABCD/CDAB/BADC/DCBA) and it
 * is read as two facts that carry over to any width: is the low word first
 * (CDAB, DCBA) and are the bytes inside each word swapped (BADC, DCBA). So
 * CDAB on a 64-bit type is GHEFCDAB and DCBA is HGFEDCBA. */
static int fit_order(const sim_order *o, int nbytes, uint8_t perm[8])
{
    int word_rev = 0, byte_swap = 0, nw = nbytes / 2;
    if (o && o->n == nbytes) {
        memcpy(perm, o->perm, (size_t)nbytes);
        return SIM_OK;
    }
    if (o && o->n == 2) {
        byte_swap = o->perm[0] == 1;
    } else if (o && o->n == 4) {
        if (o->perm[1] != (o->perm[0] ^ 1) || o->perm[3] != (o->perm[2] ^ 1) ||
            o->perm[0] / 2 == o->perm[2] / 2)
            return SIM_EINVAL;
        word_rev = o->perm[0] / 2 == 1;
        byte_swap = o->perm[0] % 2 == 1;
    } else if (o && o->n != 0) {
        return SIM_EINVAL;
    }
    for (int i = 0; i < nw; i++) {
        int w = word_rev ? nw - 1 - i : i;
        perm[2 * i] = (uint8_t)(2 * w + (byte_swap ? 1 : 0));
        perm[2 * i + 1] = (uint8_t)(2 * w + (byte_swap ? 0 : 1));
    }
    return SIM_OK;
}

static double clampr(double v, double lo, double hi)
{
    if (isnan(v))
        return 0;
    v = nearbyint(v);
    return v < lo ? lo : v > hi ? hi : v;
}

int sim_encode(double raw, sim_type t, const sim_order *o, uint16_t out[4])
{
    uint8_t be[8] = {0}, wire[8], perm[8];
    int nb = type_bytes(t);
    uint64_t u = 0;
    switch (t) {
    case SIM_T_BOOL:
        u = (raw != 0 && !isnan(raw)) ? 1 : 0;
        break;
    case SIM_T_UINT16:
        u = (uint64_t)clampr(raw, 0, 65535);
        break;
    case SIM_T_INT16:
        u = (uint16_t)(int16_t)clampr(raw, -32768, 32767);
        break;
    case SIM_T_UINT32:
        u = (uint64_t)clampr(raw, 0, 4294967295.0);
        break;
    case SIM_T_INT32:
        u = (uint32_t)(int32_t)clampr(raw, -2147483648.0, 2147483647.0);
        break;
    case SIM_T_FLOAT32: {
        float f = (float)raw;
        uint32_t b;
        memcpy(&b, &f, 4);
        u = b;
        break;
    }
    case SIM_T_UINT64:
        /* 2^64 is not representable below; saturate just under it. */
        u = raw >= 18446744073709549568.0 ? UINT64_MAX
                                          : (uint64_t)clampr(raw, 0, 1.8446744073709550e19);
        break;
    case SIM_T_INT64: {
        double v = clampr(raw, -9223372036854775808.0, 9223372036854774784.0);
        u = (uint64_t)(int64_t)v;
        break;
    }
    case SIM_T_FLOAT64:
        memcpy(&u, &raw, 8);
        break;
    default:
        return SIM_EINVAL;
    }
    for (int i = 0; i < nb; i++)
        be[i] = (uint8_t)(u >> (8 * (nb - 1 - i)));
    if (fit_order(o, nb, perm) != SIM_OK)
        return SIM_EINVAL;
    for (int i = 0; i < nb; i++)
        wire[i] = be[perm[i]];
    for (int i = 0; i < nb / 2; i++)
        out[i] = (uint16_t)(wire[2 * i] << 8 | wire[2 * i + 1]);
    return nb / 2;
}
