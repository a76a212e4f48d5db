/* libFuzzer target for the HJ 212 codec. The input is used twice: as a TCP
 * stream for the scanner (every packet found is decoded, emitted, answered and
 * rendered as JSON), and as a bare data segment (so the header and CP parsers are
 * reached without the fuzzer having to forge CRCs). Invariants that must hold
 * for any input abort the run. */
// FUZZ_SOURCES: protocols/hj212_codec.c base/civil.c base/hex.c base/model.c
// FUZZ_LIBS: -lcjson -lm
#include "protocols/hj212.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int check_reading(void *ctx, const gw_reading *r)
{
    size_t *n = ctx;
    if (memchr(r->metric, '\0', sizeof r->metric) == NULL || r->metric[0] == '\0')
        abort();
    if (memchr(r->unit, '\0', sizeof r->unit) == NULL)
        abort();
    if (!isfinite(r->value) || r->quality > GW_Q_BAD || r->reason >= GW_R__COUNT)
        abort();
    (*n)++;
    return 0;
}

static void exercise(const gw_hj212_packet *p, const char *framed, size_t framed_len)
{
    size_t n = 0;
    gw_sink sink = {check_reading, NULL, &n};
    int rc = gw_hj212_emit(p, &sink);
    if (rc >= 0 && (size_t)rc != n)
        abort();

    gw_hj212_cp_iter it;
    gw_hj212_kv kv;
    gw_hj212_cp_begin(&it, p);
    while (gw_hj212_cp_next(&it, &kv) == 1)
        if (kv.key_len == 0 || kv.key + kv.key_len > p->cp + p->cp_len ||
            kv.val + kv.val_len > p->cp + p->cp_len)
            abort();

    int q = 0;
    (void)gw_hj212_auth(p, "123456", "010000A8900016F000169DC0", &q);

    /* Any answer we build must decode as a good answer. */
    char out[GW_HJ212_PACKET_MAX + 1];
    int rl = gw_hj212_build_reply(p, q ? q : GW_HJ212_QN_READY, out, sizeof out);
    if (rl > 0) {
        gw_hj212_packet a;
        if (gw_hj212_decode((gw_hj212_version)p->version, (const uint8_t *)out, (size_t)rl, &a) !=
                GW_OK ||
            a.cn[0] != '9' || strcmp(a.qn, p->qn) != 0 || strcmp(a.mn, p->mn) != 0)
            abort();
    } else if (rl < 0) {
        abort();
    }

    if (framed) {
        cJSON *j = gw_hj212_to_json(GW_HJ212_2017, framed, framed_len);
        if (j) {
            char *s = cJSON_PrintUnformatted(j);
            free(s);
            cJSON_Delete(j);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* As a stream, with the standard bound and with a large configured one. */
    for (int pass = 0; pass < 2; pass++) {
        size_t off = 0, max = pass ? 9999 : 0;
        while (off < size) {
            gw_hj212_span sp;
            int rc = gw_hj212_scan(GW_HJ212_2017, data + off, size - off, max, &sp);
            if (sp.consumed > size - off)
                abort();
            if (rc == 1) {
                gw_hj212_packet p;
                if (sp.data < (const char *)data + off ||
                    sp.data + sp.data_len > (const char *)data + size)
                    abort();
                if (gw_hj212_parse(GW_HJ212_2017, sp.data, sp.data_len, &p) == GW_OK)
                    exercise(&p, pass ? NULL : (const char *)data + off + sp.offset, sp.total);
                if (pass == 0 &&
                    gw_hj212_decode(GW_HJ212_2017, data + off + sp.offset, sp.total, &p) ==
                        GW_EMALFORMED &&
                    gw_hj212_parse(GW_HJ212_2017, sp.data, sp.data_len, &p) == GW_OK)
                    abort(); /* scanner and decoder disagree on framing */
            }
            if (sp.consumed == 0)
                break; /* waiting for more bytes */
            off += sp.consumed;
        }
    }

    /* As a bare data segment, framed by us so the JSON path sees a good CRC. */
    gw_hj212_packet p;
    if (gw_hj212_parse(GW_HJ212_2017, (const char *)data, size, &p) == GW_OK) {
        char framed[GW_HJ212_PACKET_MAX + 1];
        int fl = gw_hj212_frame(GW_HJ212_2017, (const char *)data, size, framed, sizeof framed);
        exercise(&p, fl > 0 ? framed : NULL, fl > 0 ? (size_t)fl : 0);
    }
    return 0;
}
