/* Fuzzes the profile loader and the decoder. Input: YAML text, optionally a NUL
 * byte and a stream of results. The text is loaded as a profile; when it does
 * not load, a built-in profile with every type, order and feature is used. The
 * stream then answers each planned request with a status byte (0 ok, anything
 * else a failure) followed, when ok, by a length byte and that many data bytes
 * (usually the right length, sometimes not), and finally drives writes and the
 * report-by-exception helper with values taken from the remaining bytes. */
// FUZZ_SOURCES: adapters/modbus_profile.c adapters/modbus_expr.c adapters/modbus_decode.c
// base/yamldoc.c base/cfgmap.c base/model.c FUZZ_LIBS: -lyaml -lm
#include "adapters/modbus_profile.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char builtin[] =
    "name: fuzz\ndevice_type: fuzz\nmax_gap: 4\n"
    "unreadable: [{kind: holding, from: 40, to: 41}]\n"
    "params: {h: {fallback: u16, default: 3}, z: {}}\n"
    "points:\n"
    "  - {name: c0, kind: coil, address: 0, type: bool, writable: true}\n"
    "  - {name: c9, kind: coil, address: 9, type: bool, writable: true, write_fc: 15}\n"
    "  - {name: d3, kind: discrete, address: 3, type: bool}\n"
    "  - {name: u16, kind: holding, address: 0, type: uint16, scale: 0.1, range: [0, 100],"
    " writable: true}\n"
    "  - {name: s16, kind: holding, address: 1, type: int16, order: BA, writable: true}\n"
    "  - {name: f32, kind: holding, address: 2, type: float32, order: CDAB, writable: true}\n"
    "  - {name: i32, kind: holding, address: 4, type: int32, order: BADC, writable: true}\n"
    "  - {name: u64, kind: holding, address: 6, type: uint64, order: HGFEDCBA, writable: true}\n"
    "  - {name: f64, kind: holding, address: 10, type: float64, order: GHEFCDAB, writable: "
    "true}\n"
    "  - {name: i64, kind: input, address: 0, type: int64, writable: false}\n"
    "  - {name: b16, kind: input, address: 4, type: bcd16, deadband: 2%}\n"
    "  - {name: b32, kind: holding, address: 14, type: bcd32, order: DCBA, writable: true}\n"
    "  - {name: bits, kind: input, address: 5, type: bits, bit: 3, width: 5}\n"
    "  - {name: flag, kind: input, address: 5, type: bool, bit: 15}\n"
    "  - {name: str, kind: holding, address: 16, type: string, length: 4, order: BA}\n"
    "  - {name: dec, kind: holding, address: 20, type: uint16, internal: true}\n"
    "  - {name: uc, kind: holding, address: 21, type: uint16, internal: true}\n"
    "  - {name: p, kind: holding, address: 22, type: int16, decimals_from: dec, unit_from: uc,"
    " unit: kPa, unit_codes: {0: {unit: MPa, factor: 1000}, 1: kPa}, deadband: 0.5,"
    " max_silence: 1m}\n"
    "  - {name: far, kind: holding, address: 42, type: uint16}\n"
    "  - {name: st, kind: input, address: 6, type: uint16, events: [{bit: 0, event: e0},"
    " {bit: 15, event: e15, active: low}]}\n"
    "  - {name: en, kind: input, address: 7, type: uint16, codes: {1: en1, 2: {reason: "
    "calibrating, quality: uncertain}}, applies_to: [b16, p]}\n"
    "  - {name: dv, derived: \"h - u16 / (s16 - 1) * -f32 + z\", range: [-1e6, 1e6]}\n"
    "  - {name: dv2, derived: \"(dv + p) * 2\"}\n";

typedef struct rd {
    const uint8_t *p;
    size_t n;
} rd;

static int next(rd *r)
{
    if (r->n == 0)
        return -1;
    r->n--;
    return *r->p++;
}

static int count_reading(void *ctx, const gw_reading *r)
{
    size_t *n = ctx;
    (*n)++;
    /* Touch every field so sanitizers see uninitialised or unterminated data. */
    return (strlen(r->metric) + strlen(r->unit) > 1000 || r->quality > 2) ? -1 : 0;
}

static const gw_profile *cur; /* the profile being decoded, for the edge filter */
static uint8_t evstate[GW_PROFILE_MAX_EVENTS];

static int count_event(void *ctx, const gw_event *e)
{
    size_t *n = ctx;
    (*n)++;
    if (gw_profile_event_edge(cur, evstate, e) > 1)
        abort();
    return strlen(e->kind) + strlen(e->detail) > 1000 ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    size_t tlen = nul ? (size_t)(nul - data) : size;
    char err[256];
    gw_profile *p = NULL;

    if (gw_profile_load_text(&p, "fuzz.yaml", (const char *)data, tlen, err, sizeof(err)) != 0) {
        if (!nul)
            return 0;
        if (gw_profile_load_text(&p, "builtin", builtin, sizeof(builtin) - 1, err, sizeof(err)))
            abort(); /* the built-in profile must always load */
    }
    rd r = {nul ? nul + 1 : data + size, nul ? size - tlen - 1 : 0};

    const gw_mb_request *reqs;
    size_t nreq = gw_profile_requests(p, &reqs);
    gw_mb_result *res = calloc(nreq ? nreq : 1, sizeof(*res));
    uint8_t **bufs = calloc(nreq ? nreq : 1, sizeof(*bufs));
    if (!res || !bufs)
        abort();
    for (size_t i = 0; i < nreq; i++) {
        size_t want = reqs[i].fc <= 2 ? (reqs[i].count + 7u) / 8u : reqs[i].count * 2u;
        int st = next(&r);
        res[i].status = st < 0 ? GW_EAGAIN : st == 0 ? 0 : st < 128 ? st : -st;
        if (res[i].status != 0)
            continue;
        int l = next(&r);
        /* Mostly the right length; a length byte of 0xFF or above asks for a wrong one. */
        size_t len = l == 0xFF ? want + 1 : l == 0xFE && want ? want - 1 : want;
        bufs[i] = malloc(len ? len : 1);
        if (!bufs[i])
            abort();
        for (size_t k = 0; k < len; k++) {
            int b = next(&r);
            bufs[i][k] = (uint8_t)(b < 0 ? 0 : b);
        }
        res[i].data = bufs[i];
        res[i].len = len;
    }
    size_t nr = 0, ne = 0;
    gw_sink s = {count_reading, count_event, &nr};
    gw_sink s2 = {count_reading, count_event, &ne};
    gw_param site[2] = {{"h", 2.5}, {"install_height", 4}};
    cur = p;
    memset(evstate, 0, sizeof(evstate));
    gw_profile_decode(p, site, (size_t)(r.n & 2), res, nreq, 1700000000000, &s);
    gw_profile_decode(p, NULL, 0, res, nreq, 0, &s2);

    size_t np = gw_profile_point_count(p);
    for (size_t i = 0; i < np; i++) {
        gw_profile_point_info info;
        uint8_t fc, buf[GW_MB_WRITE_MAX];
        uint16_t addr, count;
        size_t len = 0;
        double v = 0;
        if (gw_profile_point_get(p, i, &info))
            abort();
        if (r.n >= sizeof(v)) {
            memcpy(&v, r.p, sizeof(v));
            r.p += sizeof(v);
            r.n -= sizeof(v);
        }
        if (gw_profile_encode_write(p, info.name, v, &fc, &addr, &count, buf, &len) == 0 &&
            (len > GW_MB_WRITE_MAX || count == 0))
            abort();
        gw_profile_rbe_should_report(p, i, v, 1000, v * 1.5, 5000);
    }
    /* The edge state survives its own text; any text loads without harm. */
    char text[GW_PROFILE_MAX_EVENTS * (GW_KEY_MAX + 3)], desc[256];
    uint8_t back[GW_PROFILE_MAX_EVENTS] = {0};
    int tl = gw_profile_event_state_save(p, evstate, text, sizeof(text));
    if (tl < 0)
        abort();
    gw_profile_event_state_load(p, back, text, (size_t)tl);
    if (memcmp(back, evstate, gw_profile_event_count(p)))
        abort();
    gw_profile_event_state_load(p, back, (const char *)r.p, r.n);
    for (size_t i = 0; i < np; i++)
        if (gw_profile_point_describe(p, i, desc, sizeof(desc)) >= (int)sizeof(desc))
            abort();
    for (size_t i = 0; i < nreq; i++)
        free(bufs[i]);
    free(bufs);
    free(res);
    gw_profile_free(p);
    return 0;
}
