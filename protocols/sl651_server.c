/* SL651-2014 centre: RTUs connect to the gateway (TCP, UDP or both) and report.
 *
 * TCP connections belong to the stream listener (stream_listener.h: accept,
 * bounded buffer, auth window, idle timer, limits, replies after commit); this
 * file supplies its scan (gw_sl651_scan: garbage skipped and counted, frames
 * with a bad CRC dropped and optionally NAKed) and its frame handler. UDP
 * datagrams go through the same handler. A valid uplink frame is matched to a
 * configured device by its station address; an unknown station or a wrong
 * password is refused, counted, and the TCP connection closed. The first
 * decode pass reads serial and send time only, so a resent report (same
 * station, serial and send time: gw_core_seen_report, whose window is persisted
 * with the outbox) is stored once; the second pass hands readings and events to
 * the pipeline.
 *
 * Confirm after commit: the M2 confirm of a report is encoded at once (the frame
 * points into the receive buffer) but written only once the data is in the
 * SQLite outbox (gw_sl_reply_after_commit; for UDP gw_core_flush here). While
 * a connection has MAX_PENDING confirms waiting, it stops reading. Keep-alives
 * (2F) get no reply. A report the store queue refused (GW_EFULL) is not
 * confirmed and not remembered, so the RTU's resend is taken.
 *
 * M3 (SYN packets) is put back together per station and function (reasm.h);
 * a gap when the last packet arrives is NAKed at once; the whole message is then
 * one report, confirmed once. A 36H picture is kept as a file in the data
 * directory and announced by one "picture" event. Element 45 is edge-triggered
 * against the station's last word, persisted in the store's state so a restart
 * does not raise a standing condition again. docs/sl651-hj212.md has the why.
 *
 * Devices: each `protocol: sl651` device gets a small state (attach) holding its
 * duplicate memory and element overrides; the core's liveness watches it:
 * silent for offline_after x interval -> "offline" event; the next frame -> "online".
 *
 * Commands (query 37, status 46, clock 4A) from the admin socket or the
 * platform are sent at once to where the station was last heard: the TCP
 * connection (found by id, so a closed one is never touched) or the UDP
 * sender while the device is online; otherwise GW_EAGAIN, nothing is queued.
 *
 * Lifetime: the UDP handle, pending UDP confirms and devices that were heard
 * on a listener hold references on the server, which is freed from the close
 * callback that drops the last one. */
#include "base/hex.h"
#include "gateway/core.h"
#include "base/log.h"
#include "base/netaddr.h"
#include "protocols/reasm.h"
#include "protocols/sl651.h"
#include "protocols/stream_listener.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#define MOD "sl651"
#define MAX_PENDING 16 /* confirms waiting for the outbox, per connection */
#define MAX_OVERRIDES 16
#define REPLY_MAX 256 /* a confirm plus an optional clock-set request */
#define UDP_BUF 65536
#define STATS_MS 60000
#define CLOCK_SYNC_MIN_MS 600000 /* at most one clock set per device per 10 minutes */
/* M3 reassembly bounds (docs/sl651-hj212.md): one message per station and function
 * at a time, at most REASM_OPEN over all stations. */
#define REASM_OPEN 256
#define REASM_PACKETS 4095
#define REASM_MESSAGE (1u << 20)
#define REASM_TOTAL (16u << 20)
#define REASM_TIMEOUT_MS 60000     /* silence after the last packet */
#define REASM_MAX_AGE_MS 600000    /* since the first packet */
#define STATUS_KEY "sl651.status." /* + device id: the last 45H word, persisted */

/* ---- configuration ---- */

enum { T_TCP = 0, T_UDP, T_BOTH };
static const char *const transports[] = {"tcp", "udp", "both", NULL};
static const char *const end_names[] = {"eot", "esc", NULL};

typedef struct sl_lconf {
    gw_sl_conf sl; /* listen, TCP connection limits and timeouts (stream_listener.h) */
    int transport;
    int64_t max_frame;
    int nak_bad_crc;
    int64_t pictures_max;
} sl_lconf;

static const gw_cfgkey listener_keys[] = {
    GW_SL_KEYS(sl_lconf, sl, "127.0.0.1:5005", "4096", "10m", "10s"),
    {"transport", GW_CT_ENUM, "tcp", 0, -1, offsetof(sl_lconf, transport), 0, transports, 0,
     "tcp, udp or both"},
    {"max_frame", GW_CT_SIZE, "8KiB", 64, 65536, offsetof(sl_lconf, max_frame), 0, NULL, 0,
     "receive buffer per connection (frames longer than this are skipped)"},
    {"nak_bad_crc", GW_CT_BOOL, "false", 0, -1, offsetof(sl_lconf, nak_bad_crc), 0, NULL, 0,
     "answer a frame with a bad CRC with NAK"},
    {"pictures_max", GW_CT_SIZE, "256MiB", 0, -1, offsetof(sl_lconf, pictures_max), 0, NULL, 0,
     "total size of the 36H pictures kept in <data_dir>/pictures; a picture that would exceed "
     "it is dropped (counted, and an event says so)"},
    {NULL}};

typedef struct sl_dconf {
    char password[8];
    int confirm_end;
    double base_level;
    double correction;
    int drp_forward;
    int clock_sync;
    int64_t clock_tolerance_ms;
    const gw_ynode *elements; /* parsed in attach, while the config document is alive */
    const gw_ynode *quirks;
} sl_dconf;

#define DF(m) offsetof(sl_dconf, m), sizeof(((sl_dconf *)0)->m)
static const gw_cfgkey device_keys[] = {
    {"password", GW_CT_STR, NULL, 0, -1, DF(password), NULL, GW_CF_REQUIRED,
     "the station's password, 4 hex digits; a frame with another is refused"},
    {"confirm_end", GW_CT_ENUM, "eot", 0, -1, offsetof(sl_dconf, confirm_end), 0, end_names, 0,
     "end character of the M2 confirm: eot (done) or esc (stay online)"},
    {"base_level", GW_CT_DOUBLE, "0", -1e6, 1e6, offsetof(sl_dconf, base_level), 0, NULL, 0,
     "metres added to relative water levels"},
    {"correction", GW_CT_DOUBLE, "0", -1e6, 1e6, offsetof(sl_dconf, correction), 0, NULL, 0,
     "metres added to relative water levels"},
    {"drp_forward", GW_CT_BOOL, "false", 0, -1, offsetof(sl_dconf, drp_forward), 0, NULL, 0,
     "F4..FC samples follow the observation time instead of preceding it"},
    {"clock_sync", GW_CT_BOOL, "false", 0, -1, offsetof(sl_dconf, clock_sync), 0, NULL, 0,
     "set the RTU clock (4A) when a report's send time is off"},
    {"clock_tolerance", GW_CT_DURATION, "60s", 1, 86400, offsetof(sl_dconf, clock_tolerance_ms), 0,
     NULL, 0, "how far off the RTU clock may be before clock_sync sets it"},
    {"elements", GW_CT_NODE, NULL, 0, -1, offsetof(sl_dconf, elements), 0, NULL, 0,
     "element overrides: list of {id, metric, unit, level}"},
    {"quirks", GW_CT_NODE, NULL, 0, -1, offsetof(sl_dconf, quirks), 0, NULL, 0,
     "field variants this station needs, off by default: [id28] (F1 28 / F0 28 identifiers)"},
    {NULL}};

/* The quirks list: GW_SL651_Q_* bits, or -1 with err set. */
static int parse_quirks(const gw_ynode *n, char *err, size_t errlen)
{
    static const char *const names[] = {"id28", NULL};
    static const int bits[] = {GW_SL651_Q_ID28};
    return gw_cfg_flag_list(n, "quirks", names, bits, err, errlen);
}

typedef struct sl_ov_conf {
    char id[8];
    char metric[GW_KEY_MAX];
    char unit[GW_UNIT_MAX];
    int level;
} sl_ov_conf;

#define OF(m) offsetof(sl_ov_conf, m), sizeof(((sl_ov_conf *)0)->m)
static const gw_cfgkey override_keys[] = {
    {"id", GW_CT_STR, NULL, 0, -1, OF(id), NULL, GW_CF_REQUIRED,
     "element identifier: 2 hex digits, or FFxx for a custom element"},
    {"metric", GW_CT_STR, NULL, 0, -1, OF(metric), NULL, GW_CF_REQUIRED, "metric key"},
    {"unit", GW_CT_STR, "", 0, -1, OF(unit), NULL, 0, "unit"},
    {"level", GW_CT_BOOL, "false", 0, -1, offsetof(sl_ov_conf, level), 0, NULL, 0,
     "apply base_level and correction"},
    {NULL}};

/* Parses exactly n hex digits. */
static int parse_hex(const char *s, size_t n, unsigned *out)
{
    long v = strlen(s) == n ? gw_hex_value(s, n) : -1;
    if (v < 0)
        return GW_EINVAL;
    *out = (unsigned)v;
    return GW_OK;
}

/* Parses the `elements` list into ov (n entries). Returns 0 or GW_EINVAL with err. */
static int parse_overrides(const gw_ynode *list, sl_ov_conf *ov, size_t *n, char *err,
                           size_t errlen)
{
    *n = 0;
    if (!list)
        return GW_OK;
    if (list->type != GW_Y_SEQ || list->n > MAX_OVERRIDES) {
        snprintf(err, errlen, "key 'elements' must be a list of at most %d overrides",
                 MAX_OVERRIDES);
        return GW_EINVAL;
    }
    for (size_t i = 0; i < list->n; i++) {
        char e[400];
        if (gw_cfg_apply(override_keys, list->kids[i], &ov[i], "elements[]", e, sizeof(e))) {
            snprintf(err, errlen, "%s", e);
            return GW_EINVAL;
        }
        unsigned id;
        if (!(parse_hex(ov[i].id, 2, &id) == GW_OK ||
              (parse_hex(ov[i].id, 4, &id) == GW_OK && (id & 0xFF00) == 0xFF00))) {
            snprintf(err, errlen, "elements[%zu].id '%s' must be 2 hex digits or FFxx", i,
                     ov[i].id);
            return GW_EINVAL;
        }
    }
    *n = list->n;
    return GW_OK;
}

static int check_device(const gw_device *dev, char *err, size_t errlen)
{
    const sl_dconf *c = dev->proto_conf;
    unsigned pw;
    const char *a = dev->conf.address;
    if (strlen(a) != 10) {
        snprintf(err, errlen, "address must be the 10 hex digits of the station address (got '%s')",
                 a);
        return GW_EINVAL;
    }
    for (size_t i = 0; i < 10; i++) {
        if (gw_hex_digit((unsigned char)a[i]) < 0 || (a[i] >= 'a' && a[i] <= 'f')) {
            snprintf(err, errlen,
                     "address '%s' must be 10 upper-case hex digits (as frames carry it)", a);
            return GW_EINVAL;
        }
    }
    if (parse_hex(c->password, 4, &pw)) {
        snprintf(err, errlen, "password must be 4 hex digits (got '%s')", c->password);
        return GW_EINVAL;
    }
    if (parse_quirks(c->quirks, err, errlen) < 0)
        return GW_EINVAL;
    sl_ov_conf ov[MAX_OVERRIDES];
    size_t n;
    return parse_overrides(c->elements, ov, &n, err, errlen);
}

/* ---- per-device state ---- */

typedef struct sl_srv sl_srv;
static void srv_unref(sl_srv *s);

typedef struct sl_dev {
    gw_device *dev;
    gw_core *core;
    int64_t last_clock_set;
    uint16_t password;
    sl_ov_conf ovc[MAX_OVERRIDES];
    gw_sl651_override ov[MAX_OVERRIDES];
    gw_sl651_station_cfg scfg;
    uint64_t frames, duplicates;
    /* Where the station was last heard, for centre-initiated requests: a
     * counted reference on that listener (NULL until the first frame), the
     * TCP connection's id (0: the last frame came by UDP, from peer) and the
     * link identity (encoding, centre, password) of that frame. */
    sl_srv *srv;
    uint64_t conn_id;
    struct sockaddr_storage peer;
    gw_sl651_link link;
} sl_dev;

static int dev_attach(gw_core *core, gw_device *dev, char *err, size_t errlen)
{
    const sl_dconf *c = dev->proto_conf;
    sl_dev *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    s->dev = dev;
    s->core = core;
    unsigned pw = 0;
    size_t n = 0;
    parse_hex(c->password, 4, &pw); /* checked by check_device */
    s->password = (uint16_t)pw;
    if (parse_overrides(c->elements, s->ovc, &n, err, errlen)) {
        free(s);
        return GW_EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned id = 0;
        if (parse_hex(s->ovc[i].id, 2, &id))
            parse_hex(s->ovc[i].id, 4, &id);
        s->ov[i].element = (uint16_t)id;
        s->ov[i].metric = s->ovc[i].metric;
        s->ov[i].unit = s->ovc[i].unit;
        s->ov[i].level = (uint8_t)s->ovc[i].level;
    }
    s->scfg.base_level = c->base_level;
    s->scfg.correction = c->correction;
    s->scfg.overrides = n ? s->ov : NULL;
    s->scfg.n_overrides = n;
    s->scfg.drp_forward = (uint8_t)c->drp_forward;
    s->scfg.quirks = (unsigned)parse_quirks(c->quirks, err, errlen); /* checked */
    /* The last 45H word survives a restart, so a standing condition is not raised again. */
    char key[GW_ID_MAX + sizeof STATUS_KEY];
    void *val;
    size_t vlen;
    snprintf(key, sizeof key, "%s%s", STATUS_KEY, dev->conf.id);
    if (gw_core_state_get(core, key, &val, &vlen) == GW_OK && vlen == 4) {
        const uint8_t *b = val;
        s->scfg.status_prev =
            (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        s->scfg.status_known = 1;
    }
    /* Offline once silent for offline_after report intervals. */
    gw_core_watch(core, dev, dev->interval_ms * dev->conf.offline_after);
    dev->proto_state = s;
    dev->online = -1;
    return GW_OK;
}

static void dev_detach(gw_device *dev)
{
    sl_dev *s = dev->proto_state;
    if (!s)
        return;
    dev->proto_state = NULL;
    if (s->srv)
        srv_unref(s->srv);
    s->srv = NULL;
    free(s);
}

/* ---- the server ---- */

typedef struct sl_stats {
    uint64_t frames, bad_crc, skipped, unknown_station, bad_password, wrong_direction,
        encoding_mismatch, malformed, duplicates, refused_full, confirms, clock_sets, oversize,
        keepalives, m3_packets, m3_messages, m3_naks, m3_timeouts, m3_refused, pictures,
        pictures_dropped, quirks_used, status_changes;
} sl_stats;

/* Per TCP connection (the stream listener's conn_size). */
typedef struct sl_conn {
    int enc; /* encoding of the first frame + 1; 0 until then */
} sl_conn;

struct sl_srv {
    gw_core *core;
    sl_lconf conf;
    gw_sl *tcp; /* NULL without TCP or once stopping */
    uv_udp_t udp;
    uv_timer_t stats_timer;
    int refs; /* open handles + pending UDP confirms + devices that remember it */
    int stopping;
    int udp_open;
    uint16_t serial; /* for centre-initiated requests */
    sl_stats st, st_logged;
    gw_sl_stats tst_logged;
    gw_sl651_stats codec;
    gw_sl651_frame frame; /* what tcp_scan decoded, for tcp_frame */
    uint8_t *ubuf;        /* UDP receive buffer */
    gw_reasm *reasm;      /* M3 messages in progress */
    int64_t pic_bytes;    /* bytes in <data_dir>/pictures; -1 until counted */
};

/* A UDP confirm waiting for gw_core_flush (TCP ones wait in the stream listener). */
typedef struct sl_pending {
    sl_srv *srv;
    struct sockaddr_storage peer;
    size_t len;
    uint8_t data[REPLY_MAX];
} sl_pending;

typedef struct sl_write {
    uv_udp_send_t req;
    size_t len;
    uint8_t data[REPLY_MAX];
} sl_write;

static void srv_unref(sl_srv *s)
{
    if (--s->refs > 0)
        return;
    gw_reasm_free(s->reasm);
    free(s->ubuf);
    free(s);
}

static void on_srv_handle_closed(uv_handle_t *h)
{
    srv_unref(h->data);
}

static void on_udp_sent(uv_udp_send_t *u, int status)
{
    sl_write *wr = (sl_write *)u;
    if (status < 0 && status != UV_ECANCELED)
        GW_LOG_RL(GW_LOG_INFO, 10000, MOD, "UDP reply failed: %s", uv_strerror(status));
    free(wr);
}

/* Sends bytes to a TCP connection, or to a UDP peer when c is NULL. Returns 0
 * when the write was queued, else a negative code (already logged). */
static int send_bytes(sl_srv *s, gw_slc *c, const struct sockaddr *peer, const uint8_t *p, size_t n)
{
    if (n == 0 || n > REPLY_MAX)
        return GW_EINVAL;
    if (c)
        return gw_sl_send(c, p, n);
    if (!s->udp_open || s->stopping)
        return GW_EAGAIN;
    sl_write *wr = malloc(sizeof(*wr));
    if (!wr) {
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "out of memory for a reply%s", "");
        return GW_ENOMEM;
    }
    memcpy(wr->data, p, n);
    wr->len = n;
    uv_buf_t b = uv_buf_init((char *)wr->data, (unsigned)n);
    int rc = uv_udp_send(&wr->req, &s->udp, &b, 1, peer, on_udp_sent);
    if (rc) {
        GW_LOG_RL(GW_LOG_INFO, 10000, MOD, "reply not sent: %s", uv_strerror(rc));
        free(wr);
        return GW_ERR;
    }
    return GW_OK;
}

static void on_udp_flushed(void *ctx, int status)
{
    sl_pending *p = ctx;
    sl_srv *s = p->srv;
    if (status == 0) {
        if (!s->stopping &&
            send_bytes(s, NULL, (const struct sockaddr *)&p->peer, p->data, p->len) == GW_OK)
            s->st.confirms++;
    } else {
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "outbox commit failed (%d): report not confirmed",
                  status);
    }
    free(p);
    srv_unref(s);
}

/* Hands reply bytes to the outbox barrier: they go out once everything stored
 * so far is committed. */
static void reply_after_commit(sl_srv *s, gw_slc *c, const struct sockaddr *peer,
                               const uint8_t *data, size_t len)
{
    if (c) {
        gw_sl_reply_after_commit(c, data, len);
        return;
    }
    sl_pending *p = calloc(1, sizeof(*p));
    if (!p || len > REPLY_MAX) {
        free(p);
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "out of memory: report not confirmed%s", "");
        return;
    }
    p->srv = s;
    memcpy(&p->peer, peer,
           peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    memcpy(p->data, data, len);
    p->len = len;
    if (gw_core_flush(s->core, on_udp_flushed, p)) {
        free(p);
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "flush failed: report not confirmed%s", "");
        return;
    }
    s->refs++;
}

static void link_of(const gw_sl651_frame *f, gw_sl651_link *l)
{
    l->encoding = f->encoding;
    l->centre = f->centre;
    memcpy(l->station, f->station, sizeof(l->station));
    l->password = f->password;
}

/* A centre-initiated request (37 query real-time data, 46 query status, 4A set
 * clock, with the gateway's clock as Beijing time) to the station of link l,
 * appended to out. Used by clock_sync and by the command hook. Returns the
 * bytes written or a negative code; the serial used is s->serial. */
static int encode_request(sl_srv *s, const gw_sl651_link *l, uint8_t fn, uint8_t *out, size_t cap)
{
    gw_sl651_time t;
    if (gw_sl651_time_from_ms(gw_now_ms(), &t))
        return GW_EINVAL;
    if (++s->serial == 0)
        s->serial = 1;
    return gw_sl651_encode_request(l, fn, s->serial, &t, out, cap);
}

/* Remembers where station ds was heard last (connection c, or UDP peer). */
static void remember_route(sl_srv *s, sl_dev *ds, gw_slc *c, const struct sockaddr *peer,
                           const gw_sl651_frame *f)
{
    if (ds->srv != s) {
        s->refs++;
        if (ds->srv)
            srv_unref(ds->srv);
        ds->srv = s;
    }
    ds->conn_id = c ? gw_sl_conn_id(c) : 0;
    if (!c && peer)
        memcpy(&ds->peer, peer,
               peer->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                           : sizeof(struct sockaddr_in));
    link_of(f, &ds->link);
}

typedef struct sl_sink_ctx {
    gw_core *core;
    gw_device *dev;
    int refused;
} sl_sink_ctx;

static int sink_reading(void *ctx, const gw_reading *r)
{
    sl_sink_ctx *k = ctx;
    gw_reading copy = *r;
    int rc = gw_core_reading(k->core, k->dev, &copy);
    if (rc == GW_EFULL) {
        k->refused = 1;
        return GW_EFULL; /* stop: the report is not confirmed, the RTU resends it */
    }
    return GW_OK;
}

static int sink_event(void *ctx, const gw_event *e)
{
    sl_sink_ctx *k = ctx;
    gw_event copy = *e;
    gw_core_event(k->core, k->dev, &copy);
    return GW_OK;
}

static int is_report(uint8_t fn)
{
    return fn >= 0x30 && fn <= 0x36;
}

static const char *who(gw_slc *c, const struct sockaddr *peer, char *buf, size_t n)
{
    if (c)
        return gw_sl_peer(c);
    buf[0] = '\0';
    if (peer && peer->sa_family == AF_INET)
        uv_ip4_name((const struct sockaddr_in *)peer, buf, n);
    else if (peer && peer->sa_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)peer, buf, n);
    return buf;
}

static int handle_report(sl_srv *s, gw_slc *c, const struct sockaddr *peer, gw_device *d,
                         const gw_sl651_frame *f, unsigned m3_total);

/* The station's 45H word changed (or is the first one ever seen): remember it, with the
 * events the decoder just queued, in the same commit group, so a restart neither loses
 * nor repeats an edge. */
static void status_changed(sl_srv *s, gw_device *d, uint32_t word)
{
    sl_dev *ds = d->proto_state;
    ds->scfg.status_prev = word;
    ds->scfg.status_known = 1;
    s->st.status_changes++;
    char key[GW_ID_MAX + sizeof STATUS_KEY];
    uint8_t b[4] = {(uint8_t)(word >> 24), (uint8_t)(word >> 16), (uint8_t)(word >> 8),
                    (uint8_t)word};
    snprintf(key, sizeof key, "%s%s", STATUS_KEY, d->conf.id);
    if (gw_core_state_put(s->core, key, b, sizeof b) != GW_OK)
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] 45H status not persisted (out of memory)",
                  d->conf.id);
}

/* Sums the sizes of the files in dir (the pictures already kept). */
static int64_t dir_bytes(const char *dir)
{
    int64_t sum = 0;
    DIR *dp = opendir(dir);
    if (!dp)
        return 0;
    struct dirent *e;
    char path[1024];
    while ((e = readdir(dp)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            sum += st.st_size;
    }
    closedir(dp);
    return sum;
}

/* Writes path durably: temp file, fsync, rename, fsync of the directory. */
static int write_file(const char *dir, const char *path, const uint8_t *p, size_t n)
{
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return GW_ERR;
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            unlink(tmp);
            return GW_ERR;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return GW_ERR;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return GW_OK;
}

/* A 36H picture: kept as <data_dir>/pictures/<device>-<obs>-<serial>.jpg within
 * pictures_max, and announced by one "picture" event whose detail names the file
 * (docs/uplink.md). Pictures are rare and small: the write happens on the loop. */
static void store_picture(sl_srv *s, gw_device *d, const gw_sl651_report *rep, void *sinkctx)
{
    char dir[300], path[512], detail[GW_DETAIL_MAX];
    _Static_assert(sizeof(((gw_config *)0)->data_dir) < 300 - 9, "dir holds data_dir/pictures");
    const gw_sl651_time *t = rep->has_obs ? &rep->obs_time : &rep->send_time;
    const char *data_dir = gw_core_config(s->core)->data_dir;
    snprintf(dir, sizeof dir, "%s/pictures", data_dir[0] ? data_dir : ".");
    char name[160];
    snprintf(name, sizeof name, "%s-20%02u%02u%02u%02u%02u%02u-%u.jpg", d->conf.id, t->yy, t->mo,
             t->dd, t->hh, t->mi, t->ss, rep->serial);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    gw_event e;
    memset(&e, 0, sizeof e);
    gw_strlcpy(e.kind, "picture", sizeof e.kind);
    e.active = 1;
    e.obs_ms = rep->has_obs ? rep->obs_ms : rep->send_ms;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] %s: %s: picture dropped", d->conf.id, dir,
                  strerror(errno));
        s->st.pictures_dropped++;
        return;
    }
    if (s->pic_bytes < 0)
        s->pic_bytes = dir_bytes(dir);
    if (s->pic_bytes + (int64_t)rep->picture_len > s->conf.pictures_max) {
        s->st.pictures_dropped++;
        GW_LOG_RL(GW_LOG_WARN, 60000, MOD,
                  "[%s] pictures_max (%lld bytes) reached: picture of %zu bytes dropped",
                  d->conf.id, (long long)s->conf.pictures_max, rep->picture_len);
        snprintf(detail, sizeof detail, "dropped bytes=%zu (pictures_max)", rep->picture_len);
    } else if (write_file(dir, path, rep->picture, rep->picture_len) != GW_OK) {
        s->st.pictures_dropped++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] %s: %s: picture dropped", d->conf.id, path,
                  strerror(errno));
        snprintf(detail, sizeof detail, "dropped bytes=%zu (write failed)", rep->picture_len);
    } else {
        s->pic_bytes += (int64_t)rep->picture_len;
        s->st.pictures++;
        snprintf(detail, sizeof detail, "file=pictures/%.50s bytes=%zu", name, rep->picture_len);
    }
    gw_strlcpy(e.detail, detail, sizeof e.detail);
    sink_event(sinkctx, &e);
}

static void on_m3_expired(void *ctx, const char *key, unsigned have, unsigned total)
{
    sl_srv *s = ctx;
    s->st.m3_timeouts++;
    GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "M3 message %s timed out with %u of %u packets: dropped",
              key, have, total);
}

/* An M3 packet (SYN). Packets are put back together per station and function; the
 * whole message is then handled as one report and confirmed once. When the last packet
 * (ETX: the last one, or a resent one) leaves a gap, the centre NAKs the first missing
 * packet at once and the station resends it. */
static int m3_packet(sl_srv *s, gw_slc *c, const struct sockaddr *peer, gw_device *d,
                     const gw_sl651_frame *f)
{
    char key[GW_REASM_KEY_MAX];
    snprintf(key, sizeof key, "%s/%02X", f->station_hex, f->function);
    int64_t now = (int64_t)uv_now(gw_core_loop(s->core));
    gw_reasm_expire(s->reasm, now, on_m3_expired, s);
    s->st.m3_packets++;
    uint8_t *body = NULL;
    size_t blen = 0;
    int r = gw_reasm_add(s->reasm, key, f->packet_total, f->packet_no, f->body, f->body_len, now,
                         &body, &blen);
    if (r == GW_EAGAIN) {
        unsigned total = 0, miss = gw_reasm_first_missing(s->reasm, key, &total);
        if (f->end == GW_SL651_ETX && miss) {
            gw_sl651_time t;
            uint8_t out[REPLY_MAX];
            int n = gw_sl651_time_from_ms(gw_now_ms(), &t) == GW_OK
                        ? gw_sl651_encode_confirm_m3(f, 0, &t, GW_SL651_NAK, total, miss, out,
                                                     sizeof out)
                        : GW_EINVAL;
            if (n > 0 && send_bytes(s, c, peer, out, (size_t)n) == GW_OK)
                s->st.m3_naks++;
            GW_LOG_RL(GW_LOG_INFO, 10000, MOD, "[%s] M3 %02X: packet %u of %u missing: NAK",
                      d->conf.id, f->function, miss, total);
        }
        return GW_SL_ACCEPT;
    }
    if (r != GW_OK) {
        s->st.m3_refused++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD,
                  "[%s] M3 %02X packet %u/%u refused (%d): message dropped", d->conf.id,
                  f->function, f->packet_no, f->packet_total, r);
        return GW_SL_ACCEPT;
    }
    s->st.m3_messages++;
    gw_sl651_frame whole = *f;
    whole.body = body;
    whole.body_len = blen;
    int rc = handle_report(s, c, peer, d, &whole, f->packet_total);
    free(body);
    return rc;
}

/* Handles one valid frame from TCP connection c or UDP sender peer. Returns
 * GW_SL_ACCEPT once the station and password matched, GW_SL_IGNORE before,
 * GW_SL_CLOSE for a refused peer (unknown station, wrong password). */
static int handle_frame(sl_srv *s, gw_slc *c, const struct sockaddr *peer, const gw_sl651_frame *f)
{
    char pbuf[64];
    s->st.frames++;
    if (f->direction != GW_SL651_DIR_UP) {
        s->st.wrong_direction++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "downlink frame from %s ignored",
                  who(c, peer, pbuf, sizeof(pbuf)));
        return GW_SL_IGNORE;
    }
    gw_device *d = gw_core_find_device(s->core, MOD, f->station_hex);
    if (!d || !d->proto_state) {
        s->st.unknown_station++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "station %s from %s is not configured: refused",
                  f->station_hex, who(c, peer, pbuf, sizeof(pbuf)));
        return GW_SL_CLOSE;
    }
    sl_dev *ds = d->proto_state;
    if (f->password != ds->password) {
        s->st.bad_password++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] wrong password from %s: refused", d->conf.id,
                  who(c, peer, pbuf, sizeof(pbuf)));
        return GW_SL_CLOSE;
    }
    if (c) {
        sl_conn *sc = gw_sl_conn_data(c);
        if (!sc->enc) {
            sc->enc = f->encoding + 1;
        } else if (sc->enc != f->encoding + 1) {
            s->st.encoding_mismatch++;
            GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] %s frame on a %s connection: dropped",
                      d->conf.id, f->encoding ? "ASCII" : "HEX", sc->enc > 1 ? "ASCII" : "HEX");
            return GW_SL_IGNORE;
        }
    }
    gw_core_seen(s->core, d, NULL);
    remember_route(s, ds, c, peer, f);
    ds->frames++;
    if (f->function == 0x2F) {
        s->st.keepalives++;
        return GW_SL_ACCEPT; /* keep-alive: no reply */
    }
    if (f->start == GW_SL651_SYN)
        return m3_packet(s, c, peer, d, f);
    return handle_report(s, c, peer, d, f, 0);
}

static void answered(sl_srv *s, gw_device *d, const gw_sl651_frame *f, unsigned serial);

/* A report (a single frame, or an M3 message put back together: m3_total packets).
 * Returns what handle_frame returns. */
static int handle_report(sl_srv *s, gw_slc *c, const struct sockaddr *peer, gw_device *d,
                         const gw_sl651_frame *f, unsigned m3_total)
{
    sl_dev *ds = d->proto_state;
    /* Pass 1: serial and send time only. */
    gw_sl651_report rep;
    gw_sink none = {NULL, NULL, NULL};
    if (gw_sl651_decode(f, &ds->scfg, &none, &rep) != GW_OK) {
        s->st.malformed++;
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] function %02X: body malformed, not confirmed",
                  d->conf.id, f->function);
        return GW_SL_ACCEPT;
    }
    /* A resend: same station, serial and send time; the window is the core's,
     * persisted with the outbox, so a resend after a restart is caught too. */
    char key[48];
    const gw_sl651_time *t = &rep.send_time;
    snprintf(key, sizeof(key), "%u/%02u%02u%02u%02u%02u%02u", rep.serial, t->yy, t->mo, t->dd,
             t->hh, t->mi, t->ss);
    answered(s, d, f, rep.serial);
    int dup = gw_core_seen_report(s->core, d, key);
    if (dup) {
        s->st.duplicates++;
        ds->duplicates++;
        GW_DEBUG(MOD, "[%s] serial %u resent: stored once", d->conf.id, rep.serial);
    } else {
        sl_sink_ctx k = {s->core, d, 0};
        gw_sink sink = {sink_reading, sink_event, &k};
        gw_sl651_decode(f, &ds->scfg, &sink, &rep);
        if (!k.refused && rep.picture)
            store_picture(s, d, &rep, &k);
        if (k.refused) {
            gw_core_forget_report(s->core, d, key); /* so the RTU's resend is taken */
            s->st.refused_full++;
            GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] store queue full: report not confirmed",
                      d->conf.id);
            return GW_SL_ACCEPT;
        }
        if (rep.quirks_used) {
            s->st.quirks_used += rep.quirks_used;
            GW_LOG_RL(GW_LOG_INFO, 3600000, MOD, "[%s] quirk id28 used (F1 28 / F0 28)",
                      d->conf.id);
        }
        if (rep.has_status && (!ds->scfg.status_known || rep.status != ds->scfg.status_prev))
            status_changed(s, d, rep.status);
        if (rep.unknown)
            GW_LOG_RL(GW_LOG_INFO, 60000, MOD, "[%s] %u unknown elements skipped (first %X)",
                      d->conf.id, rep.unknown, rep.unknown_ids[0]);
    }
    /* M2: confirm reports; M3 packets that say more is coming wait for the last. */
    if (!is_report(f->function) || f->end == GW_SL651_ETB)
        return GW_SL_ACCEPT;
    const sl_dconf *dc = d->proto_conf;
    uint8_t out[REPLY_MAX];
    uint8_t end = dc->confirm_end ? GW_SL651_ESC : GW_SL651_EOT;
    /* M3: one confirm for the whole message, naming the last packet (6.3.1.2 c). */
    int n = m3_total
                ? gw_sl651_encode_confirm_m3(f, rep.serial, &rep.send_time, end, m3_total, m3_total,
                                             out, sizeof(out))
                : gw_sl651_encode_confirm(f, rep.serial, &rep.send_time, end, out, sizeof(out));
    if (n < 0) {
        GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "[%s] confirm not encoded (%d)", d->conf.id, n);
        return GW_SL_ACCEPT;
    }
    size_t len = (size_t)n;
    int64_t now_ms = gw_now_ms(), loop_now = (int64_t)uv_now(gw_core_loop(s->core));
    if (dc->clock_sync && rep.send_ms && llabs(rep.send_ms - now_ms) > dc->clock_tolerance_ms &&
        (!ds->last_clock_set || loop_now - ds->last_clock_set >= CLOCK_SYNC_MIN_MS)) {
        gw_sl651_link l;
        link_of(f, &l);
        int m = encode_request(s, &l, GW_SL651_FN_SET_CLOCK, out + len, sizeof(out) - len);
        if (m > 0) {
            len += (size_t)m;
            ds->last_clock_set = loop_now;
            s->st.clock_sets++;
            GW_INFO(MOD, "[%s] RTU clock off by %lld s: setting it", d->conf.id,
                    (long long)((rep.send_ms - now_ms) / 1000));
        }
    }
    reply_after_commit(s, c, peer, out, len);
    return GW_SL_ACCEPT;
}

static void nak_bad_crc(sl_srv *s, gw_slc *c, const struct sockaddr *peer, const gw_sl651_frame *f)
{
    /* The serial cannot be trusted in a corrupted frame: NAK with serial 0. */
    gw_sl651_time t;
    uint8_t out[REPLY_MAX];
    if (gw_sl651_time_from_ms(gw_now_ms(), &t))
        return;
    int n = gw_sl651_encode_confirm(f, 0, &t, GW_SL651_NAK, out, sizeof(out));
    if (n > 0)
        send_bytes(s, c, peer, out, (size_t)n);
}

static void bad_crc(sl_srv *s, gw_slc *c, const struct sockaddr *peer, const gw_sl651_frame *f)
{
    s->st.bad_crc++;
    GW_LOG_RL(GW_LOG_WARN, 10000, MOD, "frame with a bad CRC from station %s dropped",
              f->station_hex);
    if (s->conf.nak_bad_crc)
        nak_bad_crc(s, c, peer, f);
}

/* The stream listener's scan: one gw_sl651_scan step; a frame is kept in
 * s->frame for tcp_frame, which the listener calls right after. */
static int tcp_scan(void *ctx, gw_slc *c, const uint8_t *buf, size_t len, gw_sl_span *sp)
{
    sl_srv *s = ctx;
    int rc = gw_sl651_scan(buf, len, &s->frame, &sp->consumed, &sp->skipped, &s->codec);
    if (rc == GW_OK) {
        sp->frame = &s->frame;
        return GW_SL_FRAME;
    }
    if (rc == GW_ECRC) {
        bad_crc(s, c, NULL, &s->frame);
        return GW_SL_DROP;
    }
    return GW_SL_MORE;
}

static int tcp_frame(void *ctx, gw_slc *c, const void *frame, size_t len)
{
    return handle_frame(ctx, c, NULL, frame);
}

static const gw_sl_proto tcp_proto = {
    .module = MOD,
    .frame_starts = "\x7E\x01", /* 7E 7E (HEX/BCD) or SOH (ASCII) */
    .conn_size = sizeof(sl_conn),
    .max_pending = MAX_PENDING,
    .scan = tcp_scan,
    .on_frame = tcp_frame,
};

/* A datagram: every frame in it is handled; what is left is never completed. */
static void scan_datagram(sl_srv *s, const struct sockaddr *peer, const uint8_t *buf, size_t len)
{
    size_t at = 0;
    while (at < len) {
        gw_sl651_frame f;
        size_t consumed = 0, skipped = 0;
        int rc = gw_sl651_scan(buf + at, len - at, &f, &consumed, &skipped, &s->codec);
        s->st.skipped += skipped;
        if (rc == GW_OK)
            handle_frame(s, NULL, peer, &f);
        else if (rc == GW_ECRC)
            bad_crc(s, NULL, peer, &f);
        else if (consumed == 0)
            break;
        at += consumed;
    }
    s->st.skipped += len - at;
}

static void on_udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    sl_srv *s = h->data;
    b->base = (char *)s->ubuf;
    b->len = UDP_BUF;
}

static void on_udp(uv_udp_t *h, ssize_t n, const uv_buf_t *b, const struct sockaddr *peer,
                   unsigned flags)
{
    sl_srv *s = h->data;
    if (n <= 0 || !peer || s->stopping)
        return;
    if (flags & UV_UDP_PARTIAL) {
        s->st.oversize++;
        return;
    }
    scan_datagram(s, peer, s->ubuf, (size_t)n);
}

static void log_stats(sl_srv *s, const char *when)
{
    sl_stats *t = &s->st;
    gw_sl_stats c;
    memset(&c, 0, sizeof(c));
    if (s->tcp)
        gw_sl_get_stats(s->tcp, &c);
    GW_INFO(MOD,
            "%sconnections %llu open (%llu unauthenticated), %llu accepted | closed: auth timeout "
            "%llu, idle %llu, evicted %llu | refused: full %llu, per source %llu | frames %llu, "
            "keep-alives %llu, duplicates %llu, confirms %llu | dropped: bad CRC %llu, garbage "
            "bytes %llu, malformed %llu, oversize %llu | refused: unknown station %llu, bad "
            "password %llu, queue full %llu | M3 packets %llu, messages %llu, NAKs %llu, "
            "timeouts %llu, refused %llu | pictures %llu, dropped %llu | quirks used %llu, 45H "
            "changes %llu",
            when, (unsigned long long)c.open, (unsigned long long)c.unauth,
            (unsigned long long)c.accepted, (unsigned long long)c.auth_timeouts,
            (unsigned long long)c.idle_closed, (unsigned long long)c.evicted_unauth,
            (unsigned long long)c.refused_full, (unsigned long long)c.refused_per_source,
            (unsigned long long)t->frames, (unsigned long long)t->keepalives,
            (unsigned long long)t->duplicates, (unsigned long long)(t->confirms + c.replies),
            (unsigned long long)t->bad_crc, (unsigned long long)(t->skipped + c.skipped),
            (unsigned long long)t->malformed, (unsigned long long)(t->oversize + c.oversize),
            (unsigned long long)t->unknown_station, (unsigned long long)t->bad_password,
            (unsigned long long)t->refused_full, (unsigned long long)t->m3_packets,
            (unsigned long long)t->m3_messages, (unsigned long long)t->m3_naks,
            (unsigned long long)t->m3_timeouts, (unsigned long long)t->m3_refused,
            (unsigned long long)t->pictures, (unsigned long long)t->pictures_dropped,
            (unsigned long long)t->quirks_used, (unsigned long long)t->status_changes);
    s->st_logged = s->st;
    s->tst_logged = c;
}

static void on_stats(uv_timer_t *t)
{
    sl_srv *s = t->data;
    gw_reasm_expire(s->reasm, (int64_t)uv_now(gw_core_loop(s->core)), on_m3_expired, s);
    gw_sl_stats c;
    memset(&c, 0, sizeof(c));
    if (s->tcp)
        gw_sl_get_stats(s->tcp, &c);
    if (memcmp(&s->st, &s->st_logged, sizeof(s->st)) || memcmp(&c, &s->tst_logged, sizeof(c)))
        log_stats(s, "");
}

/* "HOST:PORT" or "[V6]:PORT". */
/* ---- commands ---- */

static const struct {
    const char *verb;
    uint8_t fn;
} verbs[] = {{"query", GW_SL651_FN_QUERY_REALTIME},
             {"status", GW_SL651_FN_QUERY_STATUS},
             {"clock", GW_SL651_FN_SET_CLOCK}};

/* An answer to one of the verbs' requests (the station answers with the
 * request's function code): a platform command waiting for it completes. */
static void answered(sl_srv *s, gw_device *d, const gw_sl651_frame *f, unsigned serial)
{
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
        if (verbs[i].fn == f->function) {
            char answer[64];
            snprintf(answer, sizeof(answer), "answer %02X serial %u", f->function, serial);
            gw_core_command_answered(s->core, d, verbs[i].verb, answer);
        }
    }
}

/* Sends a request to the station at once, on the TCP connection it last used
 * (if still open) or to its last UDP sender (if it is online). Nothing is
 * queued: a station that is not reachable now gives GW_EAGAIN. The answer
 * (37/46/4A uplink) is handled like any frame by handle_frame. */
static int dev_command(gw_device *dev, const char *verb, const char *arg, char *reply,
                       size_t replylen)
{
    sl_dev *ds = dev->proto_state;
    int fn = -1;
    for (size_t i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
        if (!strcmp(verb, verbs[i].verb))
            fn = verbs[i].fn;
    if (fn < 0) {
        snprintf(reply, replylen, "unknown verb '%.32s' (query, status, clock)", verb);
        return GW_EUNSUPPORTED;
    }
    if (arg && arg[0]) {
        snprintf(reply, replylen, "verb '%s' takes no argument", verb);
        return GW_EINVAL;
    }
    sl_srv *s = ds ? ds->srv : NULL;
    gw_slc *c = NULL;
    int udp = 0;
    if (s && !s->stopping) {
        if (ds->conn_id) {
            c = gw_sl_find(s->tcp, ds->conn_id);
        } else {
            udp = s->udp_open && dev->online == 1;
        }
    }
    if (!c && !udp) {
        snprintf(reply, replylen, "station not connected");
        return GW_EAGAIN;
    }
    uint8_t out[REPLY_MAX];
    int n = encode_request(s, &ds->link, (uint8_t)fn, out, sizeof(out));
    if (n < 0) {
        snprintf(reply, replylen, "request not encoded (%d)", n);
        return n;
    }
    int rc = send_bytes(s, c, c ? NULL : (const struct sockaddr *)&ds->peer, out, (size_t)n);
    if (rc) {
        snprintf(reply, replylen, "request not sent (%d)", rc);
        return rc == GW_EAGAIN ? GW_EAGAIN : GW_ERR;
    }
    snprintf(reply, replylen, "sent %02X serial %u to %s by %s", fn, s->serial, dev->conf.address,
             c ? "TCP" : "UDP");
    return GW_OK;
}

static void srv_close(sl_srv *s);

static int sl_listen(gw_core *core, const void *conf, void **state, char *err, size_t errlen)
{
    const sl_lconf *lc = conf;
    struct sockaddr_storage ss;
    if (gw_sockaddr_parse(lc->sl.listen, 1, &ss)) {
        snprintf(err, errlen, "listen '%s' must be IP:PORT (e.g. 0.0.0.0:5005)", lc->sl.listen);
        return GW_EINVAL;
    }
    sl_srv *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    s->core = core;
    s->conf = *lc;
    s->refs = 1; /* released by srv_close */
    s->pic_bytes = -1;
    const gw_reasm_limits rl = {REASM_OPEN,  REASM_PACKETS,    REASM_MESSAGE,
                                REASM_TOTAL, REASM_TIMEOUT_MS, REASM_MAX_AGE_MS};
    s->reasm = gw_reasm_new(&rl);
    if (!s->reasm) {
        free(s);
        snprintf(err, errlen, "out of memory");
        return GW_ENOMEM;
    }
    uv_timer_init(gw_core_loop(core), &s->stats_timer);
    s->stats_timer.data = s;
    s->refs++;
    if (lc->transport != T_UDP) {
        s->tcp = gw_sl_start(core, &lc->sl, (size_t)lc->max_frame, &tcp_proto, s, err, errlen);
        if (!s->tcp) {
            srv_close(s);
            return GW_EINVAL;
        }
    }
    if (lc->transport != T_TCP) {
        s->ubuf = malloc(UDP_BUF);
        uv_udp_init(gw_core_loop(core), &s->udp);
        s->udp.data = s;
        s->udp_open = 1;
        s->refs++;
        int rc = s->ubuf ? uv_udp_bind(&s->udp, (struct sockaddr *)&ss, 0) : UV_ENOMEM;
        if (!rc)
            rc = uv_udp_recv_start(&s->udp, on_udp_alloc, on_udp);
        if (rc) {
            snprintf(err, errlen, "UDP %s: %s", lc->sl.listen, uv_strerror(rc));
            srv_close(s);
            return GW_EINVAL;
        }
    }
    uv_timer_start(&s->stats_timer, on_stats, STATS_MS, STATS_MS);
    GW_INFO(MOD, "listening on %s (%s), max %lld connections, auth window %lld ms", lc->sl.listen,
            transports[lc->transport], (long long)lc->sl.max_connections,
            (long long)lc->sl.auth_timeout_ms);
    *state = s;
    return GW_OK;
}

static void srv_close(sl_srv *s)
{
    s->stopping = 1;
    gw_sl_stop(s->tcp);
    s->tcp = NULL;
    uv_timer_stop(&s->stats_timer);
    uv_close((uv_handle_t *)&s->stats_timer, on_srv_handle_closed);
    if (s->udp_open) {
        uv_udp_recv_stop(&s->udp);
        uv_close((uv_handle_t *)&s->udp, on_srv_handle_closed);
    }
    s->udp_open = 0;
    srv_unref(s);
}

static void sl_unlisten(void *state)
{
    sl_srv *s = state;
    if (!s)
        return;
    log_stats(s, "stopped: ");
    srv_close(s);
}

static void sl_listener_stats(const void *state, gw_proto_counters *sum)
{
    const sl_stats *t = &((const sl_srv *)state)->st;
    sum->frames += t->frames;
    sum->crc_errors += t->bad_crc;
    sum->unknown_devices += t->unknown_station;
    sum->malformed += t->malformed + t->oversize;
}

const gw_protocol gw_proto_sl651 = {
    .name = "sl651",
    .version = "1.0",
    .description = "SL651-2014 hydrological centre: RTUs report over TCP/UDP, M2 confirm after "
                   "commit",
    .device_keys = device_keys,
    .device_conf_size = sizeof(sl_dconf),
    .check_device = check_device,
    .attach = dev_attach,
    .detach = dev_detach,
    .command = dev_command,
    .command_answers = 1,
    .listener_keys = listener_keys,
    .listener_conf_size = sizeof(sl_lconf),
    .listen = sl_listen,
    .unlisten = sl_unlisten,
    .listener_stats = sl_listener_stats,
};
