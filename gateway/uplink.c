/* MQTT uplink to one destination. See uplink.h for the contract.
 *
 * Delivery: rows are fetched from the outbox in id order per lane, after this
 * destination's cursor, published QoS 1, and on PUBACK (Paho's
 * deliveryComplete, matched by token to an in-flight slot) the cursor moves to
 * the contiguous acknowledged point (gateway/acktrack.h) and the store deletes
 * what every destination has. A filter removes items while rows are buffered;
 * a row left empty is skipped in order, so it counts as done. On connection
 * loss every in-flight message is forgotten and each lane rewinds to its
 * cursor, so the backlog is sent again in order; the platform de-duplicates
 * replays by item id. Paho is reached through base/mqttc.h, which brings its
 * events to the loop. */
#include "gateway/uplink.h"

#include "gateway/acktrack.h"
#include "gateway/destfilter.h"
#include "gateway/platform.h"

#include "base/backoff.h"
#include "base/log.h"
#include "base/model.h"
#include "base/mqttc.h"

#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PRIO_RESERVE 4 /* in-flight slots telemetry may never take */
#define MAX_CMD_EVENTS 256
#define REPLY_ROOM 8 /* replies in the MQTT client at most, beside the lanes' messages */
#define LAT_BUCKETS 1001
#define META_INFLIGHT 4 /* retained metadata messages awaiting PUBACK at once */

struct slot {
    int used;
    int lane;
    int token;
    size_t bytes;
    int64_t first, last;
    size_t rows;
};

struct lanebuf {
    int64_t cursor; /* highest row id fetched */
    int fetching;
    int more; /* the store may hold rows beyond cursor */
    uint32_t epoch, fetch_epoch;
    uint64_t notifies, fetch_notifies;
    size_t n, pos, cap;
    int64_t *id;
    uint8_t *kind;
    size_t *off, *len;
    char *buf;
    size_t used, bufcap;
};

struct gw_uplink {
    uv_loop_t *loop;
    uv_timer_t timer;
    gw_uplink_config cfg;
    char gw[GW_ID_MAX];
    char password[256];
    gw_store *store;
    int dest;                    /* index in gw_store_dests */
    char mod[80];                /* log prefix: uplink, or uplink:<name> */
    unsigned lanes;              /* lanes this destination takes */
    int filtering;               /* a type, site or metric filter is set */
    gw_acktrack track[GW_LANES]; /* the cursor and what is in flight */
    gw_uplink_cmd_cb on_cmd;
    void *ctx;
    gw_mqttc *client;
    gw_protect *prot; /* NULL: protect none */
    int connected, connecting, closing;
    struct slot *slots;
    int nslots, inflight;
    size_t tele_bytes; /* telemetry payload bytes in flight */
    struct lanebuf lane[GW_LANES];
    gw_backoff bo;
    int srv;          /* index into cfg.servers of the current (or next) node */
    int64_t up_since; /* monotonic ms of the last CONNACK */
    int short_run;    /* sessions in a row that ended within the flap window */
    int conflict;     /* a client-id conflict is suspected (see on_lost) */
    char t_status[256], t_cmd[256];
    char t_reply[256]; /* replies to platform commands */
    size_t cmd_prefix_len;
    char status_offline[256];
    gw_uplink_stats st;
    /* The destination's format (gateway/platform.h): messages come from it. */
    gw_platform *pf;
    gw_pout pout, rout;
    const char **rowp;
    size_t *rowl, rowcap;
    gw_platform_exec_fn exec;
    void *exec_ctx;
    char pf_cid[256], pf_user[128], pf_pass[256];
    uint64_t alarm_lat[LAT_BUCKETS]; /* ms buckets; the last one is ">= LAT_BUCKETS-1 ms" */
    gw_uplink_meta_cb meta;          /* retained device metadata (gateway/birth.c), or NULL */
    void *meta_ctx;
    int meta_tok[META_INFLIGHT], meta_n;
    char t_base[256]; /* <prefix>/<gw> */
};

/* ---- Loop thread. ---- */

static void pump(gw_uplink *u);
static void cursor_moved(gw_uplink *u, int li);
static void publish_all(gw_uplink *u, gw_pout *o);
static void do_connect(gw_uplink *u);

static void lane_clear(struct lanebuf *l)
{
    l->n = l->pos = l->used = 0;
}

static int taken(const gw_uplink *u, int li)
{
    return (u->lanes >> li) & 1u;
}

/* Forget everything in flight and buffered; resend from the cursor. */
static void rewind_all(gw_uplink *u)
{
    for (int li = 0; li < GW_LANES; li++) {
        struct lanebuf *l = &u->lane[li];
        gw_acktrack_reset(&u->track[li]);
        l->cursor = u->track[li].point;
        lane_clear(l);
        l->epoch++;
        l->fetching = 0;
        l->more = taken(u, li);
    }
    for (int i = 0; i < u->nslots; i++)
        u->slots[i].used = 0;
    u->inflight = 0;
    u->tele_bytes = 0;
}

/* Appends rows (n > 0, ids after l->cursor) to their lane's buffer; 0, or -1
 * out of memory (logged; the rows are fetched again). */
static int append_rows(gw_uplink *u, const gw_rows *rows)
{
    struct lanebuf *l = &u->lane[rows->lane];
    /* Compact what is left, then append. */
    if (l->pos > 0) {
        size_t left = l->n - l->pos;
        size_t base = left ? l->off[l->pos] : l->used;
        memmove(l->id, l->id + l->pos, left * sizeof(*l->id));
        memmove(l->kind, l->kind + l->pos, left);
        memmove(l->len, l->len + l->pos, left * sizeof(*l->len));
        for (size_t i = 0; i < left; i++)
            l->off[i] = l->off[l->pos + i] - base;
        memmove(l->buf, l->buf + base, l->used - base);
        l->used -= base;
        l->n = left;
        l->pos = 0;
    }
    size_t need = l->n + rows->n;
    if (need > l->cap) {
        size_t cap = need * 2;
        int64_t *id = realloc(l->id, cap * sizeof(*id));
        if (id)
            l->id = id;
        uint8_t *kind = realloc(l->kind, cap);
        if (kind)
            l->kind = kind;
        size_t *off = realloc(l->off, cap * sizeof(*off));
        if (off)
            l->off = off;
        size_t *len = realloc(l->len, cap * sizeof(*len));
        if (len)
            l->len = len;
        if (!id || !kind || !off || !len) {
            GW_ERROR(u->mod, "out of memory buffering rows; will fetch again");
            return -1;
        }
        l->cap = cap;
    }
    size_t bytes = rows->n ? rows->off[rows->n - 1] + rows->len[rows->n - 1] : 0;
    if (l->used + bytes > l->bufcap) {
        /* A quarter spare, not double: the buffer holds up to a read-ahead
         * (1 MiB) of kilobyte rows, so doubling kept ~4 MiB per lane (issue 17). */
        size_t cap = (l->used + bytes) + (l->used + bytes) / 4;
        char *b = realloc(l->buf, cap);
        if (!b) {
            GW_ERROR(u->mod, "out of memory buffering rows; will fetch again");
            return -1;
        }
        l->buf = b;
        l->bufcap = cap;
    }
    if (!u->filtering)
        memcpy(l->buf + l->used, rows->buf, bytes);
    size_t at = l->used;
    for (size_t i = 0; i < rows->n; i++) {
        l->id[l->n + i] = rows->id[i];
        l->kind[l->n + i] = rows->kind[i];
        l->off[l->n + i] = u->filtering ? at : l->used + rows->off[i];
        l->len[l->n + i] = u->filtering
                               ? gw_destfilter_keep(&u->cfg.filter, rows->buf + rows->off[i],
                                                    rows->len[i], l->buf + at, &u->st.rows_filtered)
                               : rows->len[i];
        at += l->len[l->n + i];
    }
    l->n += rows->n;
    l->used = u->filtering ? at : l->used + bytes;
    l->cursor = rows->id[rows->n - 1];
    return 0;
}

static void on_fetch(void *ctx, const gw_rows *rows)
{
    gw_uplink *u = ctx;
    struct lanebuf *l = &u->lane[rows->lane];
    if (u->closing)
        return;
    if (l->fetch_epoch != l->epoch)
        return; /* from before a rewind */
    l->fetching = 0;
    if (rows->n == 0) {
        if (l->notifies == l->fetch_notifies)
            l->more = 0;
    } else {
        append_rows(u, rows);
    }
    pump(u);
}

/* Bytes one fetch reads ahead: enough for a full message. A poll's row holds
 * all its readings (kilobytes), so a bound in rows alone kept ~8 MiB read ahead
 * per lane at 10,000 devices (issue 17, bench/mem_bench.sh). */
static size_t fetch_bytes(const gw_uplink *u)
{
    size_t m = (size_t)u->cfg.max_message_bytes;
    return m > (1u << 20) ? m : 1u << 20;
}

static void start_fetch(gw_uplink *u, int li)
{
    struct lanebuf *l = &u->lane[li];
    size_t rows = li == GW_LANE_PRIO ? 64 : (size_t)u->cfg.batch * 8;
    l->fetching = 1;
    u->st.fetches++;
    l->fetch_epoch = l->epoch;
    l->fetch_notifies = l->notifies;
    if (gw_store_fetch(u->store, li, l->cursor, rows, fetch_bytes(u), on_fetch, u))
        l->fetching = 0;
}

/* The "at" time (ms) of an alarm item, or 0. */
static int64_t item_at_ms(const char *p, size_t len)
{
    static const char key[] = "\"at\":\"";
    const char *end = p + len, *q = memmem(p, len, key, sizeof(key) - 1);
    struct tm tm;
    int ms;
    if (!q || end - q < (ptrdiff_t)(sizeof(key) - 1 + 24))
        return 0;
    q += sizeof(key) - 1;
    memset(&tm, 0, sizeof(tm));
    if (sscanf(q, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (int64_t)timegm(&tm) * 1000 + ms;
}

void gw_uplink_alarm_latency(const gw_uplink *u, uint64_t *n, int *p50, int *p99)
{
    uint64_t total = 0, acc = 0;
    for (int i = 0; i < LAT_BUCKETS; i++)
        total += u->alarm_lat[i];
    *n = total;
    *p50 = *p99 = -1;
    for (int i = 0; i < LAT_BUCKETS && total; i++) {
        acc += u->alarm_lat[i];
        if (*p50 < 0 && acc * 2 >= total)
            *p50 = i;
        if (*p99 < 0 && acc * 100 >= total * 99)
            *p99 = i;
    }
}

static int free_slot(gw_uplink *u)
{
    for (int i = 0; i < u->nslots; i++)
        if (!u->slots[i].used)
            return i;
    return -1;
}

/* Publishes rows [pos, pos+k) of lane as one message. Returns 1 when sent, 0
 * when Paho pushed back (try again on the next delivery), -1 on error. */
static int send_rows(gw_uplink *u, int li, size_t k)
{
    struct lanebuf *l = &u->lane[li];
    int si = free_slot(u);
    if (si < 0)
        return 0;
    int64_t first = l->id[l->pos], last = l->id[l->pos + k - 1];
    int kind = li == GW_LANE_TELE                    ? GW_PK_READINGS
               : l->kind[l->pos] == GW_KIND_ALARM    ? GW_PK_ALARMS
               : l->kind[l->pos] == GW_KIND_FORECAST ? GW_PK_FORECASTS
                                                     : GW_PK_EVENTS;
    if (k > u->rowcap) {
        const char **rp = realloc(u->rowp, k * sizeof(*rp));
        if (rp)
            u->rowp = rp;
        size_t *rl = realloc(u->rowl, k * sizeof(*rl));
        if (rl)
            u->rowl = rl;
        if (!rp || !rl)
            return -1;
        u->rowcap = k;
    }
    for (size_t i = 0; i < k; i++) {
        u->rowp[i] = l->buf + l->off[l->pos + i];
        u->rowl[i] = l->len[l->pos + i];
    }
    gw_pout_clear(&u->pout);
    int used = gw_platform_batch(u->pf, kind, u->rowp, u->rowl, k, first, last, &u->pout);
    if (used < 1)
        return -1;
    k = (size_t)used;
    last = l->id[l->pos + k - 1];
    if (u->pout.n == 0) { /* nothing in these rows could be sent (counted): done with them */
        int64_t was = u->track[li].point;
        gw_acktrack_skip(&u->track[li], last);
        if (u->track[li].point != was)
            cursor_moved(u, li);
        l->pos += k;
        return 1;
    }
    /* Device announcements first (no slot: a lost one is sent again next session). */
    for (int i = 0; i + 1 < u->pout.n; i++) {
        gw_pmsg *m = &u->pout.m[i];
        if (gw_mqttc_publish(u->client, m->topic, m->payload, m->len, 1, m->retained, NULL, NULL) !=
            GW_OK) {
            gw_platform_session(u->pf);
            u->st.publish_refused++;
            return 0;
        }
    }
    gw_pmsg *m = &u->pout.m[u->pout.n - 1];
    const char *topic = m->topic;
    size_t at = m->len;

    int token, prc;
    const uint8_t *wire = (const uint8_t *)m->payload;
    size_t wlen = at;
    if (u->prot && gw_protect_seal(u->prot, m->payload, at, &wire, &wlen)) {
        GW_LOG_RL(GW_LOG_ERROR, 5000, u->mod, "cannot protect a message (%s)",
                  "counter state file or OpenSSL failed; retried");
        return -1;
    }
    int rc = gw_mqttc_publish(u->client, topic, (const char *)wire, wlen, 1, 0, &token, &prc);
    if (rc != GW_OK) {
        u->st.publish_refused++;
        if (rc != GW_EFULL)
            GW_LOG_RL(GW_LOG_WARN, 5000, u->mod, "publish refused by the MQTT client (code %d)",
                      prc);
        return 0;
    }
    if (li == GW_LANE_PRIO && l->kind[l->pos] == GW_KIND_ALARM) {
        int64_t t_at = item_at_ms(l->buf + l->off[l->pos], l->len[l->pos]);
        if (t_at) {
            int64_t lat = gw_now_ms() - t_at;
            u->alarm_lat[lat < 0 ? 0 : lat >= LAT_BUCKETS ? LAT_BUCKETS - 1 : lat]++;
        }
    }
    gw_acktrack_sent(&u->track[li], first, last); /* room: one per slot */
    struct slot *s = &u->slots[si];
    s->used = 1;
    s->lane = li;
    s->token = token;
    s->first = first;
    s->last = last;
    s->rows = k;
    s->bytes = at;
    if (li == GW_LANE_TELE)
        u->tele_bytes += at;
    u->inflight++;
    u->st.msgs_sent[li]++;
    l->pos += k;
    return 1;
}

/* The cursor of lane moved to the acknowledged point: make it durable. */
static void cursor_moved(gw_uplink *u, int li)
{
    if (gw_store_ack_upto(u->store, u->dest, li, u->track[li].point))
        GW_LOG_RL(GW_LOG_ERROR, 5000, u->mod, "cannot queue the cursor of lane %d (%s)", li,
                  "out of memory; the next acknowledgement carries it");
}

/* Rows at the head of a lane the filter emptied are done for this destination. */
static void skip_empty(gw_uplink *u, int li)
{
    struct lanebuf *l = &u->lane[li];
    int64_t upto = -1;
    while (l->pos < l->n && l->len[l->pos] == 0)
        upto = l->id[l->pos++];
    if (upto >= 0) {
        int64_t was = u->track[li].point;
        gw_acktrack_skip(&u->track[li], upto);
        if (u->track[li].point != was)
            cursor_moved(u, li);
    }
}

static void pump(gw_uplink *u)
{
    if (!u->connected || u->closing)
        return;
    for (int guard = 0; guard < 100000; guard++) {
        int progressed = 0;
        skip_empty(u, GW_LANE_PRIO);
        skip_empty(u, GW_LANE_TELE);
        struct lanebuf *p = &u->lane[GW_LANE_PRIO];
        if (p->pos < p->n && u->inflight < u->nslots) {
            int r = send_rows(u, GW_LANE_PRIO, 1);
            if (r < 0 || r == 0)
                return;
            progressed = 1;
        }
        if (p->pos >= p->n && p->more && !p->fetching)
            start_fetch(u, GW_LANE_PRIO);

        struct lanebuf *t = &u->lane[GW_LANE_TELE];
        /* Telemetry waits while an alarm or event is buffered or being fetched:
         * after a reconnect the priority lane goes out first. */
        /* Telemetry in flight is also bounded in bytes: an alarm published now
         * queues behind at most that much in the socket and the broker. */
        if (p->pos >= p->n && !p->fetching && t->pos < t->n &&
            u->inflight < u->nslots - PRIO_RESERVE &&
            u->tele_bytes < (size_t)u->cfg.tele_inflight_bytes) {
            size_t k = 0, bytes = 0;
            while (t->pos + k < t->n && k < (size_t)u->cfg.batch) {
                size_t l = t->len[t->pos + k] + 1;
                if (k > 0 && bytes + l > (size_t)u->cfg.max_message_bytes)
                    break;
                bytes += l;
                k++;
            }
            int r = send_rows(u, GW_LANE_TELE, k);
            if (r < 0 || r == 0)
                return;
            progressed = 1;
        }
        size_t t_left = t->used - (t->pos < t->n ? t->off[t->pos] : t->used);
        if (t->n - t->pos < (size_t)u->cfg.batch * 2 && t_left < fetch_bytes(u) && t->more &&
            !t->fetching)
            start_fetch(u, GW_LANE_TELE);
        if (!progressed)
            return;
    }
}

/* A PUBACK's token is Paho's message id, given at publish to every QoS 1 message of this
 * client (replies, births and announcements too): never one it still holds, and the next
 * free one after the last given, wrapping at 65,535. So a reply's or birth's DELIVERED cannot
 * name a slot: no slot gets the id while the reply holds it, and once Paho freed it at the
 * PUBACK it comes round only after some 63,000 more publishes (Paho holds at most about
 * 2 x max_inflight), while the loop publishes a few hundred at most before it handles this
 * event (events keep their order, are never dropped: GW_MAIL_OVER, and slots free only
 * here). A lost connection resets Paho's ids (clean session), but its LOST comes after every
 * DELIVERED of that connection and forgets every slot, and Paho refuses publishes until the
 * loop reconnects. itest_mqttc test_tokens_distinct checks the premise. */
static void on_delivered(gw_uplink *u, int token)
{
    for (int i = 0; i < u->nslots; i++) {
        struct slot *s = &u->slots[i];
        if (s->used && s->token == token) {
            if (gw_acktrack_acked(&u->track[s->lane], s->first))
                cursor_moved(u, s->lane);
            u->st.msgs_acked[s->lane]++;
            u->st.rows_acked[s->lane] += s->rows;
            if (s->lane == GW_LANE_TELE)
                u->tele_bytes -= s->bytes;
            s->used = 0;
            u->inflight--;
            return;
        }
    }
    for (int i = 0; i < u->meta_n; i++)
        if (u->meta_tok[i] == token) {
            u->meta_tok[i] = u->meta_tok[--u->meta_n];
            return;
        }
}

void gw_uplink_set_meta(gw_uplink *u, gw_uplink_meta_cb cb, void *ctx)
{
    u->meta = cb;
    u->meta_ctx = ctx;
}

int gw_uplink_publish_meta(gw_uplink *u, const char *sub, const char *payload, size_t len)
{
    char topic[512];
    int token, prc;
    if (!u->connected || u->closing)
        return GW_EAGAIN;
    if (!gw_platform_is_native(u->pf)) {
        /* A platform registers a device its own way (gateway/platform.h) and keeps no
         * retained inventory; a removed device simply stops being announced. */
        if (strncmp(sub, "devices/", 8) != 0 || !len)
            return GW_OK;
        int rc = gw_platform_device(u->pf, payload, len, &u->rout);
        publish_all(u, &u->rout);
        return rc < 0 ? rc : GW_OK;
    }
    if (u->meta_n == META_INFLIGHT)
        return GW_EFULL;
    snprintf(topic, sizeof(topic), "%s/%s", u->t_base, sub);
    const uint8_t *wire = (const uint8_t *)payload;
    size_t wlen = len;
    if (len && u->prot && gw_protect_seal(u->prot, payload, len, &wire, &wlen))
        return GW_ERR;
    int rc = gw_mqttc_publish(u->client, topic, wire, wlen, 1, 1, &token, &prc);
    if (rc)
        return rc == GW_EFULL ? GW_EFULL : GW_ERR;
    u->meta_tok[u->meta_n++] = token;
    return GW_OK;
}

static void publish_status(gw_uplink *u, const char *status)
{
    if (!gw_platform_is_native(u->pf))
        return; /* the platforms track their gateway's connection themselves */
    char payload[256];
    int n =
        snprintf(payload, sizeof(payload), "{\"v\":1,\"gw\":\"%s\",\"status\":\"%s\",\"ts\":%lld}",
                 u->gw, status, (long long)gw_now_ms());
    const uint8_t *wire = (const uint8_t *)payload;
    size_t wlen = (size_t)n;
    if (u->prot && gw_protect_seal(u->prot, payload, (size_t)n, &wire, &wlen))
        return;
    gw_mqttc_publish(u->client, u->t_status, (const char *)wire, wlen, 1, 1, NULL, NULL);
}

int gw_uplink_reply(gw_uplink *u, const char *json, size_t len)
{
    static const gw_mqttc_route none;
    return gw_uplink_reply_route(u, &none, json, len);
}

/* Replies share the MQTT client's buffer (max_inflight + 16) with the lanes:
 * past REPLY_ROOM publishes beside the lanes' own, a reply is dropped and
 * counted, so a flood of commands never makes the client refuse an alarm. */
static int reply_room(gw_uplink *u)
{
    int n = gw_mqttc_pending(u->client);
    if (n >= 0 && n - u->inflight >= REPLY_ROOM) {
        u->st.replies_dropped++;
        return 0;
    }
    return 1;
}

int gw_uplink_reply_route(gw_uplink *u, const gw_mqttc_route *r, const char *json, size_t len)
{
    const uint8_t *wire = (const uint8_t *)json;
    size_t wlen = len;
    if (!u->client || !reply_room(u))
        return GW_EFULL;
    if (u->prot && gw_protect_seal(u->prot, json, len, &wire, &wlen))
        return GW_ERR;
    return gw_mqttc_publish_corr(u->client, r->topic[0] ? r->topic : u->t_reply, (const char *)wire,
                                 wlen, 1, r->corr, r->corr_len, NULL);
}

static void on_reconnect_timer(uv_timer_t *t)
{
    do_connect(t->data);
}

/* After a lost or refused connection: the next node of the list (a cluster
 * shares sessions and streams, so any node will do), after the backoff. The
 * gateway never goes back to servers[0] by itself: which node is preferred is
 * configuration, applied at start. */
static void schedule_reconnect(gw_uplink *u)
{
    if (u->closing)
        return;
    if (u->cfg.nservers > 1) {
        const char *from = u->cfg.servers[u->srv];
        u->srv = (u->srv + 1) % u->cfg.nservers;
        u->st.failovers++;
        if (gw_mqttc_set_server(u->client, u->cfg.servers[u->srv]) == GW_OK)
            GW_INFO(u->mod, "failing over from %s to %s", from, u->cfg.servers[u->srv]);
    }
    int64_t d = gw_backoff_next(&u->bo);
    GW_INFO(u->mod, "reconnecting to %s in %lld ms", u->cfg.servers[u->srv], (long long)d);
    uv_timer_start(&u->timer, on_reconnect_timer, (uint64_t)d, 0);
}

/* A broker closes the older of two connections with one client id (MQTT
 * 3.1.1 section 3.1.4): two gateways sharing an id, or a stale session
 * of this one, look like sessions lost right after CONNACK, over and over.
 * Such short sessions do not reset the backoff, so the delays grow instead
 * of flapping; three in a row are reported. While a conflict is suspected a
 * session must also outlive the backoff cap to count as stable, since the
 * other client's delays are that long. */
static void on_lost(gw_uplink *u)
{
    int64_t lived = gw_mono_ms() - u->up_since;
    int64_t stable = u->cfg.flap_window_ms + (u->conflict ? u->cfg.backoff_max_ms : 0);
    if (lived >= stable) {
        u->short_run = 0;
        u->conflict = 0;
        gw_backoff_reset(&u->bo);
        return;
    }
    if (++u->short_run % 3 == 0) {
        u->conflict = 1;
        u->st.id_conflicts++;
        GW_ERROR(u->mod,
                 "client id '%s': %d sessions in a row ended within %lld ms of connecting; another "
                 "client is probably using this id (two gateways with one gateway.id or "
                 "uplink.client_id, or a stale session); backing off",
                 u->cfg.client_id, u->short_run, (long long)stable);
    }
}

/* The command topics: ours, or the format's. A new session announces every device again. */
static void subscribe(gw_uplink *u)
{
    char subs[GW_PF_MAX_SUBS][GW_PF_TOPIC_MAX];
    char *topics[GW_PF_MAX_SUBS];
    int qos[GW_PF_MAX_SUBS], n = 1;
    gw_platform_session(u->pf);
    if (gw_platform_is_native(u->pf))
        topics[0] = u->t_cmd;
    else
        for (int i = 0, m = gw_platform_ops_of(u->pf)->subscriptions(u->pf, subs); i < m; i++)
            topics[(n = i + 1) - 1] = subs[i];
    for (int i = 0; i < n; i++)
        qos[i] = 1;
    gw_mqttc_subscribe(u->client, n, topics, qos);
}

static void publish_all(gw_uplink *u, gw_pout *o)
{
    for (int i = 0; i < o->n; i++)
        if (gw_mqttc_publish(u->client, o->m[i].topic, o->m[i].payload, o->m[i].len, 1,
                             o->m[i].retained, NULL, NULL) != GW_OK)
            u->st.publish_refused++;
    gw_pout_clear(o);
}

/* Our reply to a platform's command, in the platform's words (the final one only, unless no
 * command handler follows up). */
static void on_platform_reply(void *ctx, const char *reply, size_t len)
{
    gw_uplink *u = ctx;
    if (u->closing || !reply_room(u))
        return;
    if (gw_platform_reply(u->pf, reply, len, u->exec == NULL, &u->rout) < 0)
        GW_LOG_RL(GW_LOG_WARN, 5000, u->mod, "a command reply could not be translated%s", "");
    publish_all(u, &u->rout);
}

/* A message on the format's command topics: translated to our command and executed. Without
 * a command handler (gw_uplink_set_commands) the command goes to the uplink's callback, which
 * gives no outcome: the platform gets "accepted" at once. */
static void platform_message(gw_uplink *u, const char *topic, const char *payload, size_t len)
{
    gw_pcmd cmd;
    int rc = gw_platform_command(u->pf, topic, payload, len, &cmd);
    if (rc < 0) {
        u->st.commands_refused++;
        GW_LOG_RL(GW_LOG_WARN, 1000, u->mod, "malformed platform command on %.120s (%llu)", topic,
                  (unsigned long long)u->st.commands_refused);
        return;
    }
    if (rc == 0)
        return;
    if (u->exec) {
        u->exec(u->exec_ctx, u->cfg.name, cmd.name, cmd.payload, cmd.len, cmd.corr,
                on_platform_reply, u);
    } else {
        if (u->on_cmd)
            u->on_cmd(u->ctx, u->cfg.name, cmd.name, cmd.payload, cmd.len, NULL);
        char r[512];
        int n =
            snprintf(r, sizeof(r), "{\"v\":1,\"id\":\"%s\",\"cmd\":\"%s\",\"status\":\"accepted\"}",
                     cmd.corr, cmd.name);
        if (n > 0 && (size_t)n < sizeof(r))
            on_platform_reply(u, r, (size_t)n);
    }
    gw_pcmd_free(&cmd);
}

static void on_event(void *ctx, const gw_mqttc_event *e)
{
    gw_uplink *u = ctx;
    if (u->closing)
        return;
    if (e->type == GW_MQTTC_CONNECTED) {
        u->connecting = 0;
        u->connected = 1;
        u->st.connects++;
        u->up_since = gw_mono_ms();
        GW_INFO(u->mod, "connected to %s", u->cfg.servers[u->srv]);
        subscribe(u);
        publish_status(u, "online");
        rewind_all(u);
        pump(u);
        u->meta_n = 0;
        if (u->meta)
            u->meta(u->meta_ctx, u, 1);
    } else if (e->type == GW_MQTTC_CONNECT_FAILED) {
        u->connecting = 0;
        GW_LOG_RL(GW_LOG_WARN, 10000, u->mod, "connect to %s failed (code %d)%s%s",
                  u->cfg.servers[u->srv], e->code, e->why ? ": " : "", e->why ? e->why : "");
        schedule_reconnect(u);
    } else if (e->type == GW_MQTTC_LOST) {
        if (u->connected) {
            u->connected = 0;
            u->st.disconnects++;
            GW_WARN(u->mod, "connection to %s lost; %d messages in flight will be resent",
                    u->cfg.servers[u->srv], u->inflight);
            on_lost(u);
            rewind_all(u);
            schedule_reconnect(u);
        }
    } else if (e->type == GW_MQTTC_SUBSCRIBED) {
        GW_INFO(u->mod, "listening for platform commands (%s format)",
                gw_platform_ops_of(u->pf)->name);
    } else if (e->type == GW_MQTTC_DELIVERED) {
        on_delivered(u, e->token);
    } else if (e->type == GW_MQTTC_MESSAGE) {
        u->st.commands++;
        const uint8_t *body = (const uint8_t *)e->payload;
        size_t blen = e->len;
        char why[96];
        if (u->prot &&
            gw_protect_open(u->prot, e->payload, e->len, &body, &blen, why, sizeof(why))) {
            u->st.commands_refused++;
            GW_LOG_RL(GW_LOG_WARN, 1000, u->mod, "command on %.120s refused: %s (%llu refused)",
                      e->topic, why, (unsigned long long)u->st.commands_refused);
        } else if (!gw_platform_is_native(u->pf)) {
            platform_message(u, e->topic, (const char *)body, blen);
        } else if (strncmp(e->topic, u->t_cmd, u->cmd_prefix_len) == 0 && u->on_cmd) {
            gw_mqttc_route r = {.corr_len = e->corr_len};
            if (e->response_topic)
                gw_strlcpy(r.topic, e->response_topic, sizeof(r.topic));
            if (e->corr_len)
                memcpy(r.corr, e->corr, e->corr_len);
            u->on_cmd(u->ctx, u->cfg.name, e->topic + u->cmd_prefix_len, (const char *)body, blen,
                      e->response_topic || e->corr_len ? &r : NULL);
        }
    } else if (e->type == GW_MQTTC_BATCH_END) {
        pump(u); /* deliveries of the batch freed slots: send what can go now */
        if (u->meta)
            u->meta(u->meta_ctx, u, 0);
    }
}

static void do_connect(gw_uplink *u)
{
    if (u->closing || u->connected || u->connecting)
        return;
    u->connecting = 1;
    int prc;
    if (gw_mqttc_connect(u->client, &prc)) {
        u->connecting = 0;
        GW_WARN(u->mod, "connect to %s could not start (code %d)", u->cfg.servers[u->srv], prc);
        schedule_reconnect(u);
    }
}

unsigned gw_uplink_lanes(const gw_uplink_config *cfg)
{
    unsigned l = 0;
    if (cfg->filter.lanes & GW_UPLINK_LANE_PRIO)
        l |= 1u << GW_LANE_PRIO;
    if (cfg->filter.lanes & GW_UPLINK_LANE_TELE)
        l |= 1u << GW_LANE_TELE;
    return l;
}

const char *gw_uplink_name(const gw_uplink *u)
{
    return u->cfg.name;
}

gw_uplink *gw_uplink_new(uv_loop_t *loop, const gw_uplink_config *cfg, const char *gateway_id,
                         gw_store *store, int dest, const int64_t cursor[GW_LANES],
                         gw_uplink_cmd_cb on_cmd, void *ctx, char *err, size_t errlen)
{
    gw_uplink *u = calloc(1, sizeof(*u));
    if (!u) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    u->loop = loop;
    u->cfg = *cfg;
    u->store = store;
    u->dest = dest;
    if (!strcmp(u->cfg.name, "default") || !u->cfg.name[0])
        snprintf(u->mod, sizeof(u->mod), "uplink");
    else
        snprintf(u->mod, sizeof(u->mod), "uplink:%.60s", u->cfg.name);
    u->lanes = gw_uplink_lanes(cfg);
    u->filtering = cfg->filter.ntypes || cfg->filter.nsites || cfg->filter.nmetrics;
    u->on_cmd = on_cmd;
    u->ctx = ctx;
    gw_strlcpy(u->gw, gateway_id, sizeof(u->gw));
    if (!u->cfg.client_id[0])
        gw_strlcpy(u->cfg.client_id, gateway_id, sizeof(u->cfg.client_id));
    if (gw_mqttc_read_password("uplink.", u->cfg.password_file, u->cfg.password_env, u->password,
                               sizeof(u->password), err, errlen))
        goto error;
    /* The configuration as given: a format has its own default client id. */
    u->pf = gw_platform_new(cfg, gateway_id, u->password, err, errlen);
    if (!u->pf)
        goto error;
    if (!gw_platform_is_native(u->pf) &&
        gw_platform_ops_of(u->pf)->credentials(u->pf, gw_now_ms(), u->pf_cid, sizeof(u->pf_cid),
                                               u->pf_user, sizeof(u->pf_user), u->pf_pass,
                                               sizeof(u->pf_pass))) {
        snprintf(err, errlen, "uplink.format %s: cannot compute the MQTT credentials",
                 gw_platform_ops_of(u->pf)->name);
        goto error;
    }
    const char *pre = u->cfg.topic_prefix;
    const char *sep = pre[0] ? "/" : "";
    snprintf(u->t_status, sizeof(u->t_status), "%s%s%s/status", pre, sep, u->gw);
    snprintf(u->t_base, sizeof(u->t_base), "%s%s%s", pre, sep, u->gw);
    snprintf(u->t_cmd, sizeof(u->t_cmd), "%s%s%s/cmd/#", pre, sep, u->gw);
    snprintf(u->t_reply, sizeof(u->t_reply), "%s%s%s/reply", pre, sep, u->gw);
    u->cmd_prefix_len = strlen(u->t_cmd) - 1; /* match up to and including "cmd/" */
    snprintf(u->status_offline, sizeof(u->status_offline),
             "{\"v\":1,\"gw\":\"%s\",\"status\":\"offline\"}", u->gw);
    u->nslots = (int)cfg->max_inflight;
    u->slots = calloc((size_t)u->nslots, sizeof(*u->slots));
    if (!u->slots) {
        snprintf(err, errlen, "out of memory");
        goto error;
    }
    for (int i = 0; i < GW_LANES; i++) {
        if (gw_acktrack_init(&u->track[i], (size_t)u->nslots, cursor[i])) {
            snprintf(err, errlen, "out of memory");
            goto error;
        }
        u->lane[i].cursor = cursor[i];
        u->lane[i].more = taken(u, i);
    }
    gw_backoff_init(&u->bo, cfg->backoff_min_ms, cfg->backoff_max_ms,
                    (uint64_t)gw_mono_ns() ^ (uint64_t)getpid());

    gw_mqttc_config mc = {
        .uri = u->cfg.uri,
        .client_id = u->cfg.client_id,
        .username = u->cfg.username,
        .password = u->password,
        .ca_file = u->cfg.ca_file,
        .cert_file = u->cfg.cert_file,
        .key_file = u->cfg.key_file,
        .verify_host = u->cfg.tls_verify_host,
        .keepalive_ms = u->cfg.keepalive_ms,
        .connect_timeout_ms = u->cfg.connect_timeout_ms,
        .max_inflight = (int)u->cfg.max_inflight + 8,
        .max_buffered = (int)cfg->max_inflight + 16,
        .will_topic = u->t_status,
        .will_payload = u->status_offline,
        .queue_max = MAX_CMD_EVENTS,
        .mqtt5 = u->cfg.mqtt5,
    };
    if (!gw_platform_is_native(u->pf)) {
        mc.client_id = u->pf_cid;
        mc.username = u->pf_user;
        mc.password = u->pf_pass;
        mc.will_topic = mc.will_payload = NULL;
    }
    char cerr[200];
    u->prot = gw_protect_new(&u->cfg.protect, gateway_id, cerr, sizeof(cerr));
    if (u->prot && !gw_platform_is_native(u->pf)) {
        snprintf(err, errlen, "uplink.protect: only the native format carries protection%s", "");
        goto error;
    }
    if (!u->prot && cerr[0]) {
        snprintf(err, errlen, "%s.protect: %s", u->cfg.name, cerr);
        goto error;
    }
    u->client = gw_mqttc_new(loop, &mc, on_event, u, cerr, sizeof(cerr));
    if (!u->client) {
        snprintf(err, errlen, "destination %s: uri %s", u->cfg.name, cerr);
        goto error;
    }
    uv_timer_init(loop, &u->timer);
    u->timer.data = u;
    return u;
error:
    gw_protect_free(u->prot);
    for (int i = 0; i < GW_LANES; i++)
        gw_acktrack_free(&u->track[i]);
    gw_platform_free(u->pf);
    free(u->slots);
    memset(u->password, 0, sizeof(u->password));
    memset(u->pf_pass, 0, sizeof(u->pf_pass));
    free(u);
    return NULL;
}

void gw_uplink_set_commands(gw_uplink *u, gw_platform_exec_fn exec, void *ctx)
{
    u->exec = exec;
    u->exec_ctx = ctx;
}

int gw_uplink_start(gw_uplink *u)
{
    do_connect(u);
    return GW_OK;
}

void gw_uplink_committed(gw_uplink *u, unsigned lanes, const gw_rows *const *rows)
{
    unsigned fetch = 0;
    for (int i = 0; i < GW_LANES; i++) {
        if (!((lanes & u->lanes) & (1u << i)))
            continue;
        struct lanebuf *l = &u->lane[i];
        const gw_rows *r = rows ? rows[i] : NULL;
        /* Caught up (the last fetch found nothing since and none is running)
         * and the rows follow the cursor: take them as fetched. Bounded as a
         * fetch is: not beyond one read-ahead. */
        size_t left = l->used - (l->pos < l->n ? l->off[l->pos] : l->used);
        size_t bytes = r ? r->off[r->n - 1] + r->len[r->n - 1] : 0;
        if (r && u->connected && !u->closing && !l->more && !l->fetching &&
            r->id[0] == l->cursor + 1 && left + bytes <= fetch_bytes(u) && append_rows(u, r) == 0) {
            u->st.rows_pushed += r->n;
            continue;
        }
        fetch |= 1u << i;
    }
    gw_uplink_notify(u, fetch);
}

void gw_uplink_notify(gw_uplink *u, unsigned lanes)
{
    for (int i = 0; i < GW_LANES; i++) {
        if ((lanes & u->lanes) & (1u << i)) {
            u->lane[i].more = 1;
            u->lane[i].notifies++;
        }
    }
    pump(u);
}

int gw_uplink_idle(const gw_uplink *u)
{
    if (u->inflight)
        return 0;
    for (int i = 0; i < GW_LANES; i++) {
        const struct lanebuf *l = &u->lane[i];
        if (l->pos < l->n || l->more || l->fetching)
            return 0;
    }
    return 1;
}

void gw_uplink_get_stats(const gw_uplink *u, gw_uplink_stats *out)
{
    *out = u->st;
    out->connected = u->connected;
    out->server = u->srv;
    if (u->client) { /* else: the figures kept at close */
        out->commands_dropped = gw_mqttc_dropped(u->client);
        out->mailbox_over = gw_mqttc_over(u->client);
    }
    gw_protect_get_stats(u->prot, &out->protect);
    gw_store_stats ss;
    gw_store_get_stats(u->store, &ss);
    out->readahead_bytes = 0;
    for (int i = 0; i < GW_LANES; i++) {
        out->readahead_bytes += u->lane[i].used;
        out->cursor[i] = u->track[i].point;
        out->backlog[i] =
            taken(u, i) && ss.last_id[i] > out->cursor[i] ? ss.last_id[i] - out->cursor[i] : 0;
        if (out->backlog[i] > ss.rows[i])
            out->backlog[i] = ss.rows[i]; /* ids shed or never used */
    }
    gw_platform_get_stats(u->pf, &out->platform);
}

static void on_closed(uv_handle_t *h)
{
    gw_uplink *u = h->data;
    for (int i = 0; i < GW_LANES; i++) {
        free(u->lane[i].id);
        free(u->lane[i].kind);
        free(u->lane[i].off);
        free(u->lane[i].len);
        free(u->lane[i].buf);
        gw_acktrack_free(&u->track[i]);
    }
    free(u->slots);
    free(u->rowp);
    free(u->rowl);
    gw_pout_free(&u->pout);
    gw_pout_free(&u->rout);
    gw_platform_free(u->pf);
    gw_protect_free(u->prot);
    memset(u->password, 0, sizeof(u->password));
    memset(u->pf_pass, 0, sizeof(u->pf_pass));
    free(u);
}

void gw_uplink_close(gw_uplink *u, int64_t timeout_ms)
{
    if (!u)
        return;
    u->closing = 1;
    if (u->connected)
        publish_status(u, "offline");
    u->st.commands_dropped = gw_mqttc_dropped(u->client);
    u->st.mailbox_over = gw_mqttc_over(u->client);
    gw_mqttc_close(u->client, u->connected ? timeout_ms : 0);
    u->client = NULL;
    uv_timer_stop(&u->timer);
    uv_close((uv_handle_t *)&u->timer, on_closed);
}
