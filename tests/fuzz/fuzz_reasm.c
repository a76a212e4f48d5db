/* libFuzzer target for the reassembler. The input is a script of packets: per step
 * byte 0 = key (0..7), byte 1 = total, byte 2 = packet number, byte 3 = payload length,
 * byte 4 = time step in seconds, then the payload. Invariants (bounded bytes and
 * messages, a completed message is the sum of its packets, expiry frees everything)
 * abort the run when broken. */
// FUZZ_SOURCES: protocols/reasm.c base/model.c
// FUZZ_LIBS:
#include "protocols/reasm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const gw_reasm_limits lim = {
        .max_open = 4,
        .max_packets = 32,
        .max_message = 600,
        .max_total = 1000,
        .timeout_ms = 30000,
        .max_age_ms = 90000,
    };
    gw_reasm *r = gw_reasm_new(&lim);
    if (!r)
        return 0;
    int64_t now = 0;
    size_t off = 0;
    while (off + 5 <= size) {
        const uint8_t *h = data + off;
        size_t n = h[3];
        off += 5;
        if (n > size - off)
            n = size - off;
        char key[8];
        snprintf(key, sizeof key, "k%u", h[0] & 7u);
        now += h[4] * 1000;
        uint8_t *out = NULL;
        size_t olen = 0;
        int rc = gw_reasm_add(r, key, h[1], h[2], data + off, n, now, &out, &olen);
        off += n;
        if (rc == GW_OK) {
            if (!out || olen > lim.max_message)
                abort();
            free(out);
        } else if (out) {
            abort();
        }
        unsigned total = 0;
        unsigned miss = gw_reasm_first_missing(r, key, &total);
        if (miss > total)
            abort();
        gw_reasm_stats st;
        gw_reasm_get_stats(r, &st);
        if (st.bytes > lim.max_total || st.open > lim.max_open)
            abort();
        if (now >= gw_reasm_next_deadline(r) && gw_reasm_expire(r, now, NULL, NULL) == 0)
            abort();
    }
    gw_reasm_expire(r, INT64_MAX / 2, NULL, NULL);
    gw_reasm_stats st;
    gw_reasm_get_stats(r, &st);
    if (st.open != 0 || st.bytes != 0)
        abort();
    gw_reasm_free(r);
    return 0;
}
