/* Our own format (docs/uplink.md): one envelope per run of rows on <prefix>/<gw>/<kind>,
 * the rows' items copied as they are into "items" (no parsing: this is the hot path). The
 * native commands arrive on <prefix>/<gw>/cmd/<name> and are the uplink's own business. */
#include "gateway/platform.h"

#include "base/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kinds[] = {"readings", "events", "alarms", "forecasts"};

static int native_rows(gw_platform *p, int kind, const char *const *row, const size_t *len,
                       size_t n, int64_t first_id, int64_t last_id, gw_pout *out)
{
    size_t body = 0;
    for (size_t i = 0; i < n; i++)
        body += len[i] + 1;
    char *msg = malloc(body + 512);
    if (!msg)
        return GW_ENOMEM;
    int h =
        snprintf(msg, body + 512,
                 "{\"v\":1,\"id\":\"%s:%c:%lld-%lld\",\"gw\":\"%s\",\"kind\":\"%s\",\"items\":[",
                 p->gw, kind == GW_PK_READINGS ? 'r' : 'p', (long long)first_id, (long long)last_id,
                 p->gw, kinds[kind]);
    size_t at = (size_t)h, items = 0;
    for (size_t i = 0; i < n; i++) {
        if (!len[i])
            continue; /* a row a destination's filter emptied (gateway/destfilter.h) */
        if (items++)
            msg[at++] = ',';
        memcpy(msg + at, row[i], len[i]);
        at += len[i];
    }
    msg[at++] = ']';
    msg[at++] = '}';
    const char *pre = p->cfg.topic_prefix;
    char topic[2 * GW_PF_TOPIC_MAX]; /* gw_pout_take refuses what does not fit a topic */
    snprintf(topic, sizeof(topic), "%s%s%s/%s", pre, pre[0] ? "/" : "", p->gw, kinds[kind]);
    int rc = gw_pout_take(out, topic, msg, at, 0);
    return rc ? rc : (int)n;
}

const gw_platform_ops gw_platform_native = {
    .name = "native",
    .rows = native_rows,
};
