/* HJ 212 upper computer (上位机): environmental stations connect over TCP and
 * upload monitoring data.
 *
 * Per connection a bounded buffer is fed to gw_hj212_scan, which skips garbage
 * and drops packets with a bad CRC (counted; the connection lives on). A packet
 * is matched to a configured device by its MN: an unknown MN is refused,
 * counted and the connection closed, with no answer. A wrong PW is refused and
 * counted; when the Flag's A bit asks for an answer the station gets a 9011
 * with QnRtn=3, then the connection is closed. A station configured for
 * version 2025 is refused with GW_EUNSUPPORTED (logged) until that version's
 * text is implemented in the codec.
 *
 * Data uploads (2011, 2051, 2061, 2031, ...) become readings through
 * gw_hj212_emit with the codec's metric names and flag-derived quality. The
 * answer the A bit asks for (9014 for data, 9011 for other requests) is built at
 * once and written from the gw_core_flush callback, after the readings are in
 * the outbox; every answer goes through that barrier so answers keep the order
 * of the packets. A resent packet (same MN, QN and CN; gw_core_seen_report,
 * persisted with the outbox) is stored once and answered again. A split upload
 * (PNUM/PNO) is answered packet by packet and put back together (reasm.h)
 * before its readings go out. Packets that need a field variant (quirks) are
 * dropped unless the station is configured for it. Each device is watched by
 * the core's liveness: silent for
 * offline_after x interval -> "offline"; the next packet -> "online".
 *
 * Connections belong to the stream listener (stream_listener.h: accept,
 * buffer, auth window, idle timer, limits, replies after commit); this file
 * supplies its scan (gw_hj212_scan) and packet handler. After gw_sl_stop the
 * listener calls nothing here, so the server is freed with its stats timer. */
#include "gateway/core.h"
#include "base/log.h"
#include "protocols/hj212.h"
#include "protocols/reasm.h"
#include "protocols/stream_listener.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOD "hj212"
#define MAX_PENDING 16
#define REPLY_MAX 320
#define STATS_MS 60000
/* PNUM/PNO reassembly bounds (docs/sl651-hj212.md). */
#define REASM_OPEN 256
#define REASM_MESSAGE (256u << 10)
#define REASM_TOTAL (8u << 20)
#define REASM_TIMEOUT_MS 60000
#define REASM_MAX_AGE_MS 600000

static const char *const versions[] = {"2017", "2025", NULL};

typedef struct hj_lconf {
    gw_sl_conf sl; /* listen, connection limits and timeouts (stream_listener.h) */
    int64_t max_data;
} hj_lconf;

static const gw_cfgkey listener_keys[] = {
    GW_SL_KEYS(hj_lconf, sl, "127.0.0.1:9212", "4096", "10m", "10s"),
    {"max_data", GW_CT_INT, "1024", 64, 9999, offsetof(hj_lconf, max_data), 0, NULL, 0,
     "largest data segment accepted (the standard says 1024)"},
    {NULL}};

typedef struct hj_dconf {
    char password[GW_HJ212_PW_LONG_MAX + 1];
    int version; /* index into versions: 0 = 2017, 1 = 2025 */
    const gw_ynode *quirks;
} hj_dconf;

static const gw_cfgkey device_keys[] = {
    {"password", GW_CT_STR, NULL, 0, -1, offsetof(hj_dconf, password),
     sizeof(((hj_dconf *)0)->password), NULL, GW_CF_REQUIRED,
     "the station's PW; a packet with another is refused"},
    {"version", GW_CT_ENUM, "2017", 0, -1, offsetof(hj_dconf, version), 0, versions, 0,
     "HJ 212 version: 2017 (2025 is accepted here but refused at run time)"},
    {"quirks", GW_CT_NODE, NULL, 0, -1, offsetof(hj_dconf, quirks), 0, NULL, 0,
     "field variants this station needs, off by default: long_password (PW of 7..16 "
     "characters), crc_modbus_lsb (CRC-16/Modbus sent low byte first)"},
    {NULL}};

/* The quirks list: GW_HJ212_Q_* bits, or -1 with err set. */
static int parse_quirks(const gw_ynode *n, char *err, size_t errlen)
{
    static const char *const names[] = {"long_password", "crc_modbus_lsb", NULL};
    static const int bits[] = {GW_HJ212_Q_LONG_PW, GW_HJ212_Q_CRC_MODBUS_LSB};
    return gw_cfg_flag_list(n, "quirks", names, bits, err, errlen);
}

static gw_hj212_version dev_version(const hj_dconf *c)
{
    return c->version == 1 ? GW_HJ212_2025 : GW_HJ212_2017;
}

static int check_device(const gw_device *dev, char *err, size_t errlen)
{
    const hj_dconf *c = dev->proto_conf;
    size_t n = strlen(dev->conf.address);
    if (n == 0 || n > 27) {
        snprintf(err, errlen, "address must be the station's MN (1 to 27 characters, got '%s')",
                 dev->conf.address);
        return GW_EINVAL;
    }
    int q = parse_quirks(c->quirks, err, errlen);
    if (q < 0)
        return GW_EINVAL;
    /* One rule with the codec (gw_hj212_password_ok): what the config accepts, packets may
     * carry. */
    if (!gw_hj212_password_ok(GW_HJ212_2017, (unsigned)q, c->password)) {
        snprintf(err, errlen,
                 "password must be 1 to %d characters without ; , = & # or spaces (HJ 212-2017 PW"
                 "%s; got %zu)",
                 q & GW_HJ212_Q_LONG_PW ? GW_HJ212_PW_LONG_MAX : 6,
                 q & GW_HJ212_Q_LONG_PW ? ", quirk long_password"
                                        : "; a station with a longer one needs quirks: "
                                          "[long_password]",
                 strlen(c->password));
        return GW_EINVAL;
    }
    return GW_OK;
}

/* ---- per-device state ---- */

typedef struct hj_dev {
    gw_device *dev;
    gw_core *core;
    int warned_version;
    unsigned quirks; /* GW_HJ212_Q_* configured */
} hj_dev;

static int dev_attach(gw_core *core, gw_device *dev, char *err, size_t errlen)
{
    hj_dev *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    s->dev = dev;
    s->core = core;
    s->quirks = (unsigned)parse_quirks(((const hj_dconf *)dev->proto_conf)->quirks, err, errlen);
    /* Offline once silent for offline_after report intervals. */
    gw_core_watch(core, dev, dev->interval_ms * dev->conf.offline_after);
    dev->proto_state = s;
    dev->online = -1;
    if (dev_version(dev->proto_conf) != GW_HJ212_2017)
        GW_WARN(MOD,
                "[%s] configured for HJ 212-%s, which is not implemented yet: its packets "
                "will be refused",
                dev->conf.id, versions[((const hj_dconf *)dev->proto_conf)->version]);
    return GW_OK;
}

static void dev_detach(gw_device *dev)
{
    hj_dev *s = dev->proto_state;
    if (!s)
        return;
    dev->proto_state = NULL;
    free(s);
}

/* ---- the server ---- */

typedef struct hj_stats {
    uint64_t packets, bad_crc, malformed, unknown_mn, bad_pw, unsupported, duplicates, refused_full,
        replies, readings, parts, messages, part_timeouts, parts_refused, quirks_used,
        quirk_refused;
} hj_stats;

typedef struct hj_srv {
    gw_core *core;
    hj_lconf conf;
    gw_sl *sl;
    uv_timer_t stats_timer;
    hj_stats st, st_logged;
    gw_sl_stats sst_logged;
    gw_reasm *reasm;      /* PNUM/PNO messages in progress */
    unsigned scan_quirks; /* what the last scan needed (the CRC quirk), for handle_packet */
} hj_srv;

static void on_part_expired(void *ctx, const char *key, unsigned have, unsigned total)
{
    hj_srv *s = ctx;
    s->st.part_timeouts++;
    GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "split upload %s timed out with %u of %u packets: dropped",
              key, have, total);
}

static void send_text(hj_srv *s, gw_slc *c, const char *p, size_t n)
{
    if (gw_sl_send(c, p, n) == GW_OK)
        s->st.replies++;
}

typedef struct hj_sink_ctx {
    gw_core *core;
    gw_device *dev;
    int refused;
    unsigned n;
} hj_sink_ctx;

static int sink_reading(void *ctx, const gw_reading *r)
{
    hj_sink_ctx *k = ctx;
    gw_reading copy = *r;
    if (gw_core_reading(k->core, k->dev, &copy) == GW_EFULL) {
        k->refused = 1;
        return GW_EFULL;
    }
    k->n++;
    return GW_OK;
}

/* Part PNO of PNUM: kept until the message is whole. The CP groups of the parts are
 * joined with ';' (each part carries whole groups). Returns GW_OK with p rewritten to the
 * whole message (p->cp = *joined, caller frees), GW_EAGAIN while parts are missing, or
 * GW_EFULL / GW_EINVAL when the part was refused (counted). */
static int add_part(hj_srv *s, gw_device *d, gw_hj212_packet *p, uint8_t **joined)
{
    char key[GW_REASM_KEY_MAX];
    snprintf(key, sizeof key, "%.27s/%s/%s", p->mn, p->cn, p->qn);
    int64_t now = (int64_t)uv_now(gw_core_loop(s->core));
    gw_reasm_expire(s->reasm, now, on_part_expired, s);
    s->st.parts++;
    char part[GW_HJ212_DATA_MAX + 2];
    int pl = snprintf(part, sizeof part, "%s%.*s", p->pno > 1 ? ";" : "", (int)p->cp_len, p->cp);
    size_t n = 0;
    int r = gw_reasm_add(s->reasm, key, (unsigned)p->pnum, (unsigned)p->pno, (const uint8_t *)part,
                         pl > 0 ? (size_t)pl : 0, now, joined, &n);
    if (r == GW_EAGAIN)
        return r;
    if (r != GW_OK) {
        s->st.parts_refused++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] split upload %s part %d/%d refused (%d)",
                  d->conf.id, p->qn, p->pno, p->pnum, r);
        return r;
    }
    s->st.messages++;
    p->cp = (const char *)*joined;
    p->cp_len = n;
    p->pnum = p->pno = 0;
    return GW_OK;
}

/* Handles one packet with a good CRC from connection c. Returns GW_SL_ACCEPT
 * once MN and PW matched, GW_SL_IGNORE before, GW_SL_CLOSE for a refused peer. */
static int handle_packet(void *ctx, gw_slc *c, const void *seg, size_t len)
{
    hj_srv *s = ctx;
    gw_hj212_packet p;
    char out[REPLY_MAX];
    s->st.packets++;
    /* Parsed with every quirk allowed; the station's own list is checked once it is known. */
    if (gw_hj212_parse_q(GW_HJ212_2017, GW_HJ212_Q_LONG_PW, seg, len, &p) != GW_OK) {
        s->st.malformed++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "malformed packet from %s dropped", gw_sl_peer(c));
        return GW_SL_IGNORE;
    }
    gw_device *d = gw_core_find_device(s->core, MOD, p.mn);
    if (!d || !d->proto_state) {
        s->st.unknown_mn++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "MN '%s' from %s is not configured: refused", p.mn,
                  gw_sl_peer(c));
        return GW_SL_CLOSE;
    }
    const hj_dconf *dc = d->proto_conf;
    gw_hj212_version v = dev_version(dc);
    if (!gw_hj212_version_supported(v)) {
        s->st.unsupported++;
        GW_LOG_RL(GW_LOG_ERROR, 60000, MOD,
                  "[%s] HJ 212-%s is not implemented (GW_EUNSUPPORTED): packet refused; set "
                  "version: 2017 if the station speaks 2017",
                  d->conf.id, gw_hj212_version_name(v));
        return GW_SL_IGNORE;
    }
    int qn_rtn = 0;
    if (gw_hj212_auth(&p, dc->password, NULL, &qn_rtn) != GW_OK) {
        s->st.bad_pw++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] wrong PW from %s: refused", d->conf.id,
                  gw_sl_peer(c));
        if (p.flag >= 0 && (p.flag & GW_HJ212_FLAG_A)) {
            int n = gw_hj212_build_request_ack(&p, GW_HJ212_QN_PW_ERROR, out, sizeof(out));
            if (n > 0)
                send_text(s, c, out, (size_t)n); /* nothing was stored: no barrier needed */
        }
        return GW_SL_CLOSE;
    }
    const hj_dev *ds = d->proto_state;
    p.quirks |= s->scan_quirks;
    if (p.quirks & ~ds->quirks) {
        s->st.quirk_refused++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD,
                  "[%s] packet needs quirk %s, not configured for this station: dropped",
                  d->conf.id,
                  p.quirks & GW_HJ212_Q_CRC_MODBUS_LSB ? "crc_modbus_lsb" : "long_password");
        return GW_SL_IGNORE;
    }
    if (p.quirks) {
        s->st.quirks_used++;
        GW_LOG_RL(GW_LOG_INFO, 3600000, MOD, "[%s] quirks used: %s%s", d->conf.id,
                  p.quirks & GW_HJ212_Q_LONG_PW ? "long_password " : "",
                  p.quirks & GW_HJ212_Q_CRC_MODBUS_LSB ? "crc_modbus_lsb" : "");
    }
    gw_core_seen(s->core, d, NULL);
    int data = gw_hj212_is_data_cn(p.cn);
    uint8_t *joined = NULL;
    if (data && p.pnum > 1) {
        /* A split upload: every packet gets its own answer (the station may wait for
         * it before the next); the readings go out once the last part is in. */
        int r = add_part(s, d, &p, &joined);
        if (r != GW_OK) {
            int n = gw_hj212_build_reply(&p, GW_HJ212_QN_READY, out, sizeof(out));
            if (n > 0 && r == GW_EAGAIN)
                gw_sl_reply_after_commit(c, out, (size_t)n);
            return GW_SL_ACCEPT;
        }
    }
    if (data) {
        char key[32];
        snprintf(key, sizeof(key), "%s/%s", p.qn, p.cn);
        if (p.qn[0] && gw_core_seen_report(s->core, d, key)) {
            s->st.duplicates++;
        } else {
            hj_sink_ctx k = {s->core, d, 0, 0};
            gw_sink sink = {sink_reading, NULL, &k};
            int rc = gw_hj212_emit(&p, &sink);
            s->st.readings += k.n;
            if (k.refused || rc < 0) {
                if (p.qn[0])
                    gw_core_forget_report(s->core, d, key); /* a resend must be taken */
                if (k.refused) {
                    s->st.refused_full++;
                    GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] store queue full: packet not answered",
                              d->conf.id);
                } else {
                    s->st.malformed++;
                    GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] CN %s: CP malformed (%d), dropped",
                              d->conf.id, p.cn, rc);
                }
                free(joined);
                return GW_SL_ACCEPT;
            }
        }
    }
    free(joined);
    /* Data: 9014. Other requests: 9011 QnRtn=1, as gateway decode shows (the codec's reply). */
    int n = gw_hj212_build_reply(&p, GW_HJ212_QN_READY, out, sizeof(out));
    if (n > 0)
        gw_sl_reply_after_commit(c, out, (size_t)n);
    return GW_SL_ACCEPT;
}

/* The stream listener's scan: one gw_hj212_scan step. */
static int tcp_scan(void *ctx, gw_slc *c, const uint8_t *buf, size_t len, gw_sl_span *sp)
{
    hj_srv *s = ctx;
    gw_hj212_span h;
    /* The CRC quirk is accepted here, before the station is known; handle_packet drops
     * the packet unless the station is configured for it. */
    int rc = gw_hj212_scan_q(GW_HJ212_2017, GW_HJ212_Q_CRC_MODBUS_LSB, buf, len,
                             (size_t)s->conf.max_data, &h);
    s->scan_quirks = h.quirks;
    sp->consumed = h.consumed;
    sp->skipped = h.skipped;
    if (rc == 1) {
        sp->frame = h.data;
        sp->frame_len = h.data_len;
        return GW_SL_FRAME;
    }
    if (rc == GW_ECRC) {
        s->st.bad_crc++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "packet with a bad CRC from %s dropped", gw_sl_peer(c));
        return GW_SL_DROP;
    }
    if (rc < 0) { /* cannot happen with a fixed version; drop everything */
        sp->consumed = len;
        return GW_SL_DROP;
    }
    return GW_SL_MORE;
}

static const gw_sl_proto tcp_proto = {
    .module = MOD,
    .frame_starts = "#",
    .max_pending = MAX_PENDING,
    .scan = tcp_scan,
    .on_frame = handle_packet,
};

static void log_stats(hj_srv *s, const char *when)
{
    hj_stats *t = &s->st;
    gw_sl_stats c;
    gw_sl_get_stats(s->sl, &c);
    GW_INFO(MOD,
            "%sconnections %llu open (%llu unauthenticated), %llu accepted | closed: auth timeout "
            "%llu, idle %llu, evicted %llu | refused: full %llu, per source %llu | packets %llu, "
            "readings %llu, duplicates %llu, replies %llu | dropped: bad CRC %llu, garbage bytes "
            "%llu, malformed %llu | refused: unknown MN %llu, bad PW %llu, unsupported version "
            "%llu, queue full %llu | split packets %llu, messages %llu, timeouts %llu, refused "
            "%llu | quirks used %llu, refused %llu",
            when, (unsigned long long)c.open, (unsigned long long)c.unauth,
            (unsigned long long)c.accepted, (unsigned long long)c.auth_timeouts,
            (unsigned long long)c.idle_closed, (unsigned long long)c.evicted_unauth,
            (unsigned long long)c.refused_full, (unsigned long long)c.refused_per_source,
            (unsigned long long)t->packets, (unsigned long long)t->readings,
            (unsigned long long)t->duplicates, (unsigned long long)(t->replies + c.replies),
            (unsigned long long)t->bad_crc, (unsigned long long)c.skipped,
            (unsigned long long)t->malformed, (unsigned long long)t->unknown_mn,
            (unsigned long long)t->bad_pw, (unsigned long long)t->unsupported,
            (unsigned long long)t->refused_full, (unsigned long long)t->parts,
            (unsigned long long)t->messages, (unsigned long long)t->part_timeouts,
            (unsigned long long)t->parts_refused, (unsigned long long)t->quirks_used,
            (unsigned long long)t->quirk_refused);
    s->st_logged = s->st;
    s->sst_logged = c;
}

static void on_stats(uv_timer_t *t)
{
    hj_srv *s = t->data;
    gw_reasm_expire(s->reasm, (int64_t)uv_now(gw_core_loop(s->core)), on_part_expired, s);
    gw_sl_stats c;
    gw_sl_get_stats(s->sl, &c);
    if (memcmp(&s->st, &s->st_logged, sizeof(s->st)) || memcmp(&c, &s->sst_logged, sizeof(c)))
        log_stats(s, "");
}

static void on_stats_closed(uv_handle_t *h)
{
    hj_srv *s = h->data;
    gw_reasm_free(s->reasm);
    free(s);
}

static int hj_listen(gw_core *core, const void *conf, void **state, char *err, size_t errlen)
{
    const hj_lconf *lc = conf;
    hj_srv *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    s->core = core;
    s->conf = *lc;
    const gw_reasm_limits rl = {REASM_OPEN,      9999, REASM_MESSAGE, REASM_TOTAL, REASM_TIMEOUT_MS,
                                REASM_MAX_AGE_MS};
    s->reasm = gw_reasm_new(&rl);
    if (!s->reasm) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    s->sl = gw_sl_start(core, &lc->sl, (size_t)lc->max_data + GW_HJ212_OVERHEAD, &tcp_proto, s, err,
                        errlen);
    if (!s->sl) {
        gw_reasm_free(s->reasm);
        free(s);
        return GW_EINVAL;
    }
    uv_timer_init(gw_core_loop(core), &s->stats_timer);
    s->stats_timer.data = s;
    uv_timer_start(&s->stats_timer, on_stats, STATS_MS, STATS_MS);
    GW_INFO(MOD, "listening on %s (tcp), max %lld connections, auth window %lld ms", lc->sl.listen,
            (long long)lc->sl.max_connections, (long long)lc->sl.auth_timeout_ms);
    *state = s;
    return GW_OK;
}

/* The listener calls no hook after gw_sl_stop, so the server goes with its timer. */
static void hj_unlisten(void *state)
{
    hj_srv *s = state;
    if (!s)
        return;
    log_stats(s, "stopped: ");
    gw_sl_stop(s->sl);
    s->sl = NULL;
    uv_timer_stop(&s->stats_timer);
    uv_close((uv_handle_t *)&s->stats_timer, on_stats_closed);
}

static void hj_listener_stats(const void *state, gw_proto_counters *sum)
{
    const hj_stats *t = &((const hj_srv *)state)->st;
    sum->frames += t->packets;
    sum->crc_errors += t->bad_crc;
    sum->unknown_devices += t->unknown_mn;
    sum->malformed += t->malformed;
}

const gw_protocol gw_proto_hj212 = {
    .name = "hj212",
    .version = "1.0",
    .description = "HJ 212-2017 upper computer: stations upload over TCP, 9014 after commit",
    .device_keys = device_keys,
    .device_conf_size = sizeof(hj_dconf),
    .check_device = check_device,
    .attach = dev_attach,
    .detach = dev_detach,
    .listener_keys = listener_keys,
    .listener_conf_size = sizeof(hj_lconf),
    .listen = hj_listen,
    .unlisten = hj_unlisten,
    .listener_stats = hj_listener_stats,
};
