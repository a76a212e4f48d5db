/* The coap-smoke kind: NB-IoT smoke detectors that POST NB-100 frames as
 * confirmable CoAP requests to the gateway (coap:// or coaps:// with DTLS-PSK,
 * identity = IMEI). Heartbeats are periodic reports (type 01) with event bit
 * 11, scenario events go out as event reports (type 02) and self-tests as
 * self-test reports (type 03); the observation time is the scenario clock as
 * Unix time (wall time at start + scenario time). Each detector has its own libcoap client session,
 * hence its own UDP socket and source port, like a real device behind an operator's network.
 * Sessions are spread over shards of SHARD_SIZE: one libcoap context per shard, whose epoll
 * descriptor a uv_poll watches and whose next deadline a uv_timer follows (coap_io_prepare_epoll
 * walks every session of a context, so small contexts keep each wake-up cheap). Heartbeats, reports
 * and scenario events are timers on the loop in scenario time; CoAP retransmissions run on
 * libcoap's wall-clock timers. libcoap has no retransmission callback, so its
 * debug log line "retransmission #" is parsed and mapped back to the device by
 * the session's local port.
 *
 * coap-cover is the same device posting MC-200 manhole cover frames
 * (enc_cover.c): it samples its tilt/open/water curves every `sample` and sends
 * a change at once as an alarm report (type 02); reports are type 01,
 * heartbeats type 03. */
#include "sim/enc_cover.h"
#include "sim/enc_gauge.h"
#include "sim/enc_nb100.h"
#include "sim/kind.h"
#include "sim/peer.h"
#include "sim/scenario.h"

#include <cjson/cJSON.h>
#include <coap3/coap.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

/* libuv timers have whole-millisecond resolution on a cached clock: a timer
 * may fire up to a millisecond before the hrtime it aimed at. Anything due
 * within SLACK_S (wall) is treated as due, so no timer spins at 0 ms. */
#define SLACK_S 0.002
#define SHARD_SIZE 128
#define ALARM_SMOKE 0.250 /* dB/m reported while the fire alarm is active */
#define ALARM_TEMP_RISE 30.0
#define BATTERY_LOW_V 2.60
#define BATTERY_CRIT_V 2.40
#define COVER_BATTERY_LOW_V 3.30   /* a cover's 3.6 V lithium cell reported low */
#define HANDSHAKE_TIMEOUT_MS 10000 /* a DTLS session not up by then is replaced */

/* Response codes counted one by one; anything else goes to "other". */
static const uint8_t code_slots[] = {
    COAP_RESPONSE_CODE(201), COAP_RESPONSE_CODE(204), COAP_RESPONSE_CODE(205),
    COAP_RESPONSE_CODE(400), COAP_RESPONSE_CODE(401), COAP_RESPONSE_CODE(402),
    COAP_RESPONSE_CODE(403), COAP_RESPONSE_CODE(404), COAP_RESPONSE_CODE(405),
    COAP_RESPONSE_CODE(406), COAP_RESPONSE_CODE(413), COAP_RESPONSE_CODE(415),
    COAP_RESPONSE_CODE(429), COAP_RESPONSE_CODE(500), COAP_RESPONSE_CODE(503),
};
#define NSLOTS (sizeof code_slots + 1)

struct cs_group;
struct cs_shard;

typedef struct cs_dev {
    struct cs_group *cg;
    struct cs_shard *sh;
    uint32_t k, n;
    char id[64];
    char imei[16];
    char query[96];
    uint8_t key[128];
    size_t keylen;
    coap_session_t *session; /* ours (one reference); released before a new one */
    uint16_t local_port;
    int session_dead;            /* failed or closed: replaced at the next send */
    int session_up;              /* plain UDP, or DTLS handshake done */
    uint64_t session_t0;         /* uv_now when the session was created */
    uint32_t in_handshake;       /* frames queued behind the handshake */
    uv_timer_t timer;            /* heartbeats and reports */
    double next_hb, next_report; /* scenario time */
    uint16_t seq;
    uint16_t status; /* sticky event bits; a cover's battery bit */
    uint8_t sent;    /* a cover's status in the last frame sent */
    double next_sample;
    double battery_v;
    int silent, wrong_psk, pend_bad_crc, pend_truncated;
    sim_curve_state cst[5];
    /* counters */
    uint64_t frames, heartbeats, reports, events, bytes_out, skipped_silent;
    uint64_t malformed_sent, send_failed, sessions, dtls_connected;
    uint64_t handshake_timeouts, lost_in_handshake;
    uint64_t answered, retransmissions, timeouts, tls_failures, rst, unreachable;
    uint64_t codes[NSLOTS];
    uint64_t faults[SIM_F__COUNT];
    double rtt_sum_ms, rtt_max_ms;
} cs_dev;

typedef struct cs_shard {
    struct cs_group *cg;
    coap_context_t *ctx;
    uv_poll_t poll;
    uv_timer_t timer;
    int started; /* poll and timer initialised */
} cs_shard;

typedef struct cs_group {
    sim_group *g;
    sim_peer *p;
    sim_ctx *ctx;
    coap_address_t dst;
    cs_dev *devs;
    uint32_t ndevs;
    cs_shard *shards;
    uint32_t nshards;
    double clock0; /* Unix time at scenario time 0 */
    uv_timer_t ev_timer;
    int ev_started;
    int next_event;
    int stopping;
    int cover; /* coap-cover: MC-200 frames instead of NB-100 */
} cs_group;

/* libcoap's global state: started once for every coap-smoke group. */
static int coap_users;
static cs_dev **by_port; /* local UDP port -> device, for the log parser */
static uint64_t log_lines_dropped;
static int log_lines_shown;

static int window(const sim_fault *f, double t)
{
    return t >= f->from && (f->to < 0 || t < f->to);
}

/* ---- libcoap callbacks (all on the loop thread, inside coap_io_process) ---- */

static void on_log(coap_log_t level, const char *msg)
{
    const char *r = strstr(msg, "retransmission #");
    if (r) {
        /* "** 127.0.0.1:40123 <-> 127.0.0.1:5683 UDP : mid=..": the first
         * address is the session's local one. */
        const char *sp = strstr(msg, " <-> ");
        const char *colon = NULL;
        for (const char *q = msg; sp && q < sp; q++)
            if (*q == ':')
                colon = q;
        if (colon && by_port) {
            long port = strtol(colon + 1, NULL, 10);
            if (port > 0 && port < 65536 && by_port[port])
                by_port[port]->retransmissions++;
        }
        return;
    }
    if (level > LOG_WARNING)
        return;
    if (log_lines_shown < 20) {
        log_lines_shown++;
        fprintf(stderr, "sim: coap: %s", msg);
    } else {
        log_lines_dropped++;
    }
}

static void dev_forget_port(cs_dev *d)
{
    if (by_port && d->local_port && by_port[d->local_port] == d)
        by_port[d->local_port] = NULL;
    d->local_port = 0;
}

static cs_dev *dev_of(coap_session_t *s)
{
    return s ? coap_session_get_app_data(s) : NULL;
}

static int slot_of(uint8_t code)
{
    for (size_t i = 0; i < sizeof code_slots; i++)
        if (code_slots[i] == code)
            return (int)i;
    return (int)sizeof code_slots;
}

static coap_response_t on_response(coap_session_t *s, const coap_pdu_t *sent,
                                   const coap_pdu_t *received, const coap_mid_t mid)
{
    cs_dev *d = dev_of(s);
    if (!d)
        return COAP_RESPONSE_OK;
    coap_pdu_code_t code = coap_pdu_get_code(received);
    if (code == COAP_EMPTY_CODE)
        return COAP_RESPONSE_OK; /* an empty ACK: the response comes separately */
    d->answered++;
    d->codes[slot_of((uint8_t)code)]++;
    /* Token: seq (2 bytes) then the send time in ms (4 bytes, wraps). */
    coap_bin_const_t tok = coap_pdu_get_token(received);
    if (tok.length == 6) {
        uint32_t t_sent = (uint32_t)tok.s[2] << 24 | (uint32_t)tok.s[3] << 16 |
                          (uint32_t)tok.s[4] << 8 | tok.s[5];
        double rtt = (double)(uint32_t)((uint32_t)uv_now(d->cg->ctx->loop) - t_sent);
        d->rtt_sum_ms += rtt;
        if (rtt > d->rtt_max_ms)
            d->rtt_max_ms = rtt;
    }
    return COAP_RESPONSE_OK;
}

static void on_nack(coap_session_t *s, const coap_pdu_t *sent, const coap_nack_reason_t reason,
                    const coap_mid_t mid)
{
    cs_dev *d = dev_of(s);
    if (!d)
        return;
    switch (reason) {
    case COAP_NACK_TOO_MANY_RETRIES:
        d->timeouts++;
        break;
    case COAP_NACK_RST:
        d->rst++;
        break;
    case COAP_NACK_TLS_FAILED:
        d->tls_failures++;
        d->session_dead = 1;
        break;
    case COAP_NACK_ICMP_ISSUE:
    case COAP_NACK_NOT_DELIVERABLE:
    default:
        d->unreachable++;
        break;
    }
}

static int on_event(coap_session_t *s, const coap_event_t ev)
{
    cs_dev *d = dev_of(s);
    if (!d)
        return 0;
    switch (ev) {
    case COAP_EVENT_DTLS_CONNECTED:
        d->dtls_connected++;
        d->session_up = 1;
        d->in_handshake = 0;
        break;
    case COAP_EVENT_DTLS_CLOSED:
    case COAP_EVENT_DTLS_ERROR:
    case COAP_EVENT_SESSION_FAILED:
        d->session_dead = 1;
        break;
    default:
        break;
    }
    return 0;
}

/* ---- shards: libcoap contexts on the loop ---- */

static void shard_timer_cb(uv_timer_t *t);

static void shard_run(cs_shard *sh)
{
    coap_tick_t now;
    if (sh->cg->stopping)
        return;
    coap_io_process(sh->ctx, COAP_IO_NO_WAIT);
    coap_ticks(&now);
    unsigned next = coap_io_prepare_epoll(sh->ctx, now);
    if (next)
        uv_timer_start(&sh->timer, shard_timer_cb, next, 0);
    else
        uv_timer_stop(&sh->timer);
}

static void shard_timer_cb(uv_timer_t *t)
{
    shard_run(t->data);
}

static void shard_poll_cb(uv_poll_t *p, int status, int events)
{
    shard_run(p->data);
}

/* Runs the shard soon, once, however many devices sent in this loop turn. */
static void shard_kick(cs_shard *sh)
{
    uv_timer_start(&sh->timer, shard_timer_cb, 0, 0);
}

/* ---- devices ---- */

static int dev_session(cs_dev *d)
{
    cs_group *cg = d->cg;
    sim_peer *p = cg->p;
    uint64_t now = uv_now(cg->ctx->loop);
    if (d->session && !d->session_up && now - d->session_t0 >= HANDSHAKE_TIMEOUT_MS) {
        /* A wrong key makes the server drop our Finished in silence: the
         * handshake never ends and frames would pile up behind it. */
        d->handshake_timeouts++;
        d->session_dead = 1;
    }
    if (d->session && d->session_dead) {
        if (!d->session_up)
            d->lost_in_handshake += d->in_handshake;
        d->in_handshake = 0;
        dev_forget_port(d);
        coap_session_set_app_data(d->session, NULL);
        coap_session_release(d->session);
        d->session = NULL;
    }
    if (d->session)
        return SIM_OK;
    d->session_dead = 0;
    if (p->dtls) {
        uint8_t wrong[sizeof d->key];
        coap_dtls_cpsk_t setup;
        memset(&setup, 0, sizeof setup);
        setup.version = COAP_DTLS_CPSK_SETUP_VERSION;
        setup.psk_info.identity.s = (const uint8_t *)d->imei;
        setup.psk_info.identity.length = strlen(d->imei);
        memcpy(wrong, d->key, d->keylen);
        if (d->wrong_psk)
            wrong[d->keylen - 1] ^= 0x5A; /* same length, last byte wrong */
        setup.psk_info.key.s = wrong;
        setup.psk_info.key.length = d->keylen;
        d->session =
            coap_new_client_session_psk2(d->sh->ctx, NULL, &cg->dst, COAP_PROTO_DTLS, &setup);
    } else {
        d->session = coap_new_client_session(d->sh->ctx, NULL, &cg->dst, COAP_PROTO_UDP);
    }
    if (!d->session)
        return SIM_ERR;
    d->sessions++;
    d->session_up = !p->dtls;
    d->session_t0 = now;
    coap_session_set_app_data(d->session, d);
    coap_fixed_point_t at = {(uint16_t)p->ack_timeout,
                             (uint16_t)lround(fmod(p->ack_timeout, 1.0) * 1000)};
    coap_session_set_ack_timeout(d->session, at);
    coap_session_set_max_retransmit(d->session, (uint16_t)p->max_retransmit);
    const coap_address_t *la = coap_session_get_addr_local(d->session);
    uint16_t port = la ? coap_address_get_port(la) : 0;
    if (port && by_port) {
        by_port[port] = d;
        d->local_port = port;
    }
    shard_kick(d->sh);
    return SIM_OK;
}

static double curve_or(const sim_curve *c, double t, uint32_t k, sim_curve_state *st, double dflt)
{
    return c->kind == SIM_C_NONE ? dflt : sim_curve_eval(c, t, k, st);
}

/* Heartbeats carry 5 extension bytes (readers of version 1 skip them): a
 * vendor TLV, type 01 length 3, firmware version 1.2.3. */
static const uint8_t fw_ext[5] = {0x01, 0x03, 1, 2, 3};

/* Unix seconds of scenario time t, within the 32-bit field. */
static uint32_t unix_time(const cs_group *cg, double t)
{
    double u = floor(cg->clock0 + t);
    return u <= 0 ? 0 : u >= 4294967295.0 ? 0xFFFFFFFFu : (uint32_t)u;
}

/* An NB-100 frame of the detector at scenario time t into buf: its length or
 * SIM_EINVAL. */
static int nb100_frame(cs_dev *d, double t, uint8_t type, uint16_t extra_bits, uint8_t *buf,
                       size_t cap)
{
    sim_nb100 f;
    sim_peer *p = d->cg->p;
    int heartbeat = (extra_bits & SIM_NB_HEARTBEAT) != 0;
    memset(&f, 0, sizeof f);
    f.type = type;
    memcpy(f.imei, d->imei, sizeof f.imei);
    f.seq = d->seq++;
    f.time_s = unix_time(d->cg, t);
    f.events = (uint16_t)(d->status | extra_bits);
    f.battery_v = d->battery_v;
    f.smoke_db_m = curve_or(&p->smoke, t, d->k, &d->cst[0], 0.012);
    f.temp_c = curve_or(&p->temperature, t, d->k, &d->cst[1], 22);
    if (d->status & SIM_NB_FIRE) {
        if (f.smoke_db_m < ALARM_SMOKE)
            f.smoke_db_m = ALARM_SMOKE;
        f.temp_c += ALARM_TEMP_RISE;
    }
    f.rssi_dbm = -65 - (double)(d->k % 40);
    if (heartbeat && p->tlv) {
        f.ext = fw_ext;
        f.next = sizeof fw_ext;
    }
    return sim_nb100_encode(&f, buf, cap);
}

/* A cover's status at t from its curves (the battery bit from its events). */
static uint8_t cover_status(cs_dev *d, double t, sim_cover *f)
{
    const sim_peer *p = d->cg->p;
    f->tilt_deg = curve_or(&p->tilt, t, d->k, &d->cst[0], 0.5);
    double open = curve_or(&p->open, t, d->k, &d->cst[1], 0);
    f->water_m = curve_or(&p->water, t, d->k, &d->cst[2], 0.3);
    f->rsrp_dbm = curve_or(&p->rsrp, t, d->k, &d->cst[3], -95 - (double)(d->k % 20));
    f->snr_db = curve_or(&p->snr, t, d->k, &d->cst[4], 10);
    f->battery_v = d->battery_v;
    return (uint8_t)((d->status & SIM_COVER_BATTERY_LOW) | (open >= 0.5 ? SIM_COVER_OPEN : 0) |
                     (f->tilt_deg >= p->tilt_alarm ? SIM_COVER_TILT : 0) |
                     (f->water_m >= p->overflow ? SIM_COVER_OVERFLOW : 0));
}

/* An MC-200 frame of the cover at t into buf: its length or SIM_EINVAL. The
 * changed bits are those that differ from the last frame sent; *now gets the
 * status, which becomes "sent" once the request is handed to libcoap. */
static int cover_frame(cs_dev *d, double t, uint8_t type, uint8_t *now, uint8_t *buf, size_t cap)
{
    sim_cover f;
    memset(&f, 0, sizeof f);
    f.status = *now = cover_status(d, t, &f);
    f.changed = (uint8_t)(f.status ^ d->sent);
    f.type = type;
    memcpy(f.imei, d->imei, sizeof f.imei);
    f.seq = d->seq++;
    f.time_s = unix_time(d->cg, t);
    return sim_cover_encode(&f, buf, cap);
}

/* Builds, damages (per events and faults) and sends one frame: type is the
 * message type, extra_bits the one-shot event bits added to the sticky ones
 * (SIM_NB_HEARTBEAT makes a report a heartbeat). The MC-200 numbers its report
 * and alarm types as the NB-100 its report and event types (1, 2), so the
 * counters below hold for both. */
static void dev_send(cs_dev *d, uint8_t type, uint16_t extra_bits)
{
    cs_group *cg = d->cg;
    sim_peer *p = cg->p;
    const sim_group *g = cg->g;
    double t = sim_now(cg->ctx);
    int bad_crc = 0, truncated = 0;
    for (int i = 0; i < g->nfaults; i++) {
        const sim_fault *f = &g->faults[i];
        if (f->kind == SIM_F_SILENT && window(f, t)) {
            d->faults[SIM_F_SILENT]++;
            d->skipped_silent++;
            return;
        }
    }
    if (d->silent) {
        d->skipped_silent++;
        return;
    }
    d->frames++;
    for (int i = 0; i < g->nfaults; i++) {
        const sim_fault *f = &g->faults[i];
        if (!window(f, t) || (f->every && d->frames % f->every))
            continue;
        if (f->kind == SIM_F_BAD_CRC) {
            bad_crc = 1;
            d->faults[SIM_F_BAD_CRC]++;
        } else if (f->kind == SIM_F_GARBAGE) {
            truncated = 1;
            d->faults[SIM_F_GARBAGE]++;
        }
    }
    bad_crc |= d->pend_bad_crc;
    truncated |= d->pend_truncated;
    d->pend_bad_crc = d->pend_truncated = 0;

    uint8_t buf[SIM_NB100_MAX];
    uint8_t cover_now = 0;
    int heartbeat = (extra_bits & SIM_NB_HEARTBEAT) != 0;
    uint16_t seq = d->seq; /* the frame's, the token's */
    int len = cg->cover ? cover_frame(d, t, type, &cover_now, buf, sizeof buf)
                        : nb100_frame(d, t, type, extra_bits, buf, sizeof buf);
    if (len < 0) {
        d->send_failed++;
        return;
    }
    if (bad_crc)
        buf[len - 1] ^= 0xFF;
    if (truncated)
        len = len / 2;
    if (bad_crc || truncated)
        d->malformed_sent++;

    if (dev_session(d) != SIM_OK) {
        d->send_failed++;
        return;
    }
    coap_pdu_t *pdu = coap_new_pdu(COAP_MESSAGE_CON, COAP_REQUEST_CODE_POST, d->session);
    if (!pdu) {
        d->send_failed++;
        return;
    }
    uint32_t now_ms = (uint32_t)uv_now(cg->ctx->loop);
    uint8_t tok[6] = {(uint8_t)(seq >> 8),     (uint8_t)seq,           (uint8_t)(now_ms >> 24),
                      (uint8_t)(now_ms >> 16), (uint8_t)(now_ms >> 8), (uint8_t)now_ms};
    uint8_t cf[2];
    int ok = coap_add_token(pdu, sizeof tok, tok);
    /* Options in ascending number: Uri-Path (11), Content-Format (12), Uri-Query (15). */
    const char *seg = p->path;
    while (ok && *seg) {
        while (*seg == '/')
            seg++;
        size_t sl = strcspn(seg, "/");
        if (sl)
            ok = coap_add_option(pdu, COAP_OPTION_URI_PATH, sl, (const uint8_t *)seg) != 0;
        seg += sl;
    }
    if (ok)
        ok = coap_add_option(
                 pdu, COAP_OPTION_CONTENT_FORMAT,
                 coap_encode_var_safe(cf, sizeof cf, COAP_MEDIATYPE_APPLICATION_OCTET_STREAM),
                 cf) != 0;
    if (ok && d->query[0])
        ok = coap_add_option(pdu, COAP_OPTION_URI_QUERY, strlen(d->query),
                             (const uint8_t *)d->query) != 0;
    if (ok)
        ok = coap_add_data(pdu, (size_t)len, buf) != 0;
    if (!ok) {
        coap_delete_pdu(pdu);
        d->send_failed++;
        return;
    }
    if (coap_send(d->session, pdu) == COAP_INVALID_MID) {
        d->send_failed++;
        return;
    }
    d->bytes_out += (uint64_t)len;
    if (!bad_crc && !truncated)
        d->sent = cover_now; /* a damaged frame is refused: its changes go again */
    if (!d->session_up)
        d->in_handshake++;
    if (heartbeat)
        d->heartbeats++;
    else if (type == SIM_NB100_REPORT)
        d->reports++;
    else
        d->events++;
    shard_kick(d->sh);
}

static void dev_timer_cb(uv_timer_t *tm);

static void dev_heartbeat(cs_dev *d)
{
    if (d->cg->cover)
        dev_send(d, SIM_COVER_HEARTBEAT, SIM_NB_HEARTBEAT);
    else
        dev_send(d, SIM_NB100_REPORT, SIM_NB_HEARTBEAT);
}

static void dev_arm(cs_dev *d)
{
    cs_group *cg = d->cg;
    double next = d->next_hb;
    if (cg->p->report > 0 && d->next_report < next)
        next = d->next_report;
    if (cg->cover && d->next_sample < next)
        next = d->next_sample;
    double wait_s = (next - sim_now(cg->ctx)) / cg->ctx->speed;
    uint64_t ms = wait_s > 0 ? (uint64_t)ceil(wait_s * 1000.0) : 0;
    uv_timer_start(&d->timer, dev_timer_cb, ms, 0);
}

static void dev_timer_cb(uv_timer_t *tm)
{
    cs_dev *d = tm->data;
    cs_group *cg = d->cg;
    sim_peer *p = cg->p;
    double t = sim_now(cg->ctx) + SLACK_S * cg->ctx->speed;
    if (cg->stopping)
        return;
    if (cg->cover && t >= d->next_sample) {
        /* A cover reports a change of state at once, as an alarm report. */
        sim_cover f;
        if (cover_status(d, t, &f) != d->sent)
            dev_send(d, SIM_COVER_ALARM, 0);
        d->next_sample += p->sample;
        if (d->next_sample < t)
            d->next_sample = t + p->sample;
    }
    if (t >= d->next_hb) {
        dev_heartbeat(d);
        /* Catch up without a burst if the loop was held up (or speed is huge). */
        d->next_hb += p->heartbeat;
        if (d->next_hb < t)
            d->next_hb = t + p->heartbeat;
    }
    if (p->report > 0 && t >= d->next_report) {
        dev_send(d, SIM_NB100_REPORT, 0);
        d->next_report += p->report;
        if (d->next_report < t)
            d->next_report = t + p->report;
    }
    dev_arm(d);
}

/* The events only a cover treats its own way: 1 if k was one of them. */
static int cover_event(cs_dev *d, sim_event_kind k)
{
    if (k != SIM_EV_BATTERY_LOW && k != SIM_EV_BATTERY_OK)
        return 0;
    d->status = k == SIM_EV_BATTERY_LOW ? SIM_COVER_BATTERY_LOW : 0;
    d->battery_v = k == SIM_EV_BATTERY_LOW ? COVER_BATTERY_LOW_V : d->cg->p->battery_v;
    dev_send(d, SIM_COVER_ALARM, 0);
    return 1;
}

static void dev_event(cs_dev *d, sim_event_kind k)
{
    double nominal = d->cg->p->battery_v;
    if (d->cg->cover && cover_event(d, k))
        return;
    switch (k) {
    case SIM_EV_FIRE_ALARM:
        d->status |= SIM_NB_FIRE;
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_ALARM_CLEARED:
        d->status &= (uint16_t)~SIM_NB_FIRE;
        dev_send(d, SIM_NB100_EVENT, SIM_NB_CLEARED);
        break;
    case SIM_EV_SELF_TEST:
        dev_send(d, SIM_NB100_SELFTEST, SIM_NB_TEST_PASS);
        break;
    case SIM_EV_SELF_TEST_FAIL:
        dev_send(d, SIM_NB100_SELFTEST, SIM_NB_TEST_FAIL);
        break;
    case SIM_EV_MUTE:
        d->status |= SIM_NB_MUTE;
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_UNMUTE:
        d->status &= (uint16_t)~SIM_NB_MUTE;
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_BATTERY_LOW:
        d->status |= SIM_NB_BATTERY_LOW;
        if (d->battery_v > BATTERY_LOW_V)
            d->battery_v = BATTERY_LOW_V;
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_BATTERY_CRITICAL:
        d->status |= SIM_NB_BATTERY_LOW | SIM_NB_BATTERY_CRIT;
        if (d->battery_v > BATTERY_CRIT_V)
            d->battery_v = BATTERY_CRIT_V;
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_BATTERY_OK:
        d->status &= (uint16_t) ~(SIM_NB_BATTERY_LOW | SIM_NB_BATTERY_CRIT);
        d->battery_v = nominal;
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_TAMPER:
        d->status |= SIM_NB_TAMPER;
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_TAMPER_RESTORED:
        d->status &= (uint16_t)~SIM_NB_TAMPER;
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_HW_FAULT:
        d->status |= SIM_NB_HW_FAULT;
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_DIRTY:
        d->status |= SIM_NB_DIRTY;
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_END_OF_LIFE:
        d->status |= SIM_NB_END_OF_LIFE;
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_FAULT_CLEARED:
        d->status &= (uint16_t) ~(SIM_NB_HW_FAULT | SIM_NB_DIRTY | SIM_NB_END_OF_LIFE);
        dev_send(d, SIM_NB100_EVENT, 0);
        break;
    case SIM_EV_HEARTBEAT:
        dev_heartbeat(d);
        break;
    case SIM_EV_BAD_CRC:
        d->pend_bad_crc = 1;
        break;
    case SIM_EV_TRUNCATED:
        d->pend_truncated = 1;
        break;
    case SIM_EV_WRONG_PSK:
    case SIM_EV_RIGHT_PSK:
        d->wrong_psk = k == SIM_EV_WRONG_PSK;
        d->session_dead = 1; /* a new handshake with the new key at the next send */
        break;
    case SIM_EV_SILENT:
        d->silent = 1;
        break;
    case SIM_EV_RESUME:
        if (d->silent) {
            d->silent = 0;
            dev_heartbeat(d);
        }
        break;
    default:
        break;
    }
}

static void ev_timer_cb(uv_timer_t *tm)
{
    cs_group *cg = tm->data;
    sim_peer *p = cg->p;
    double t = sim_now(cg->ctx) + SLACK_S * cg->ctx->speed;
    if (cg->stopping)
        return;
    while (cg->next_event < p->nevents && p->events[cg->next_event].at <= t) {
        const sim_event *ev = &p->events[cg->next_event++];
        for (uint32_t k = 0; k < cg->ndevs; k++)
            if (ev->device == 0 || cg->devs[k].n == ev->device)
                dev_event(&cg->devs[k], ev->kind);
    }
    if (cg->next_event < p->nevents) {
        double wait_s = (p->events[cg->next_event].at - sim_now(cg->ctx)) / cg->ctx->speed;
        uv_timer_start(&cg->ev_timer, ev_timer_cb, wait_s > 0 ? (uint64_t)ceil(wait_s * 1000.0) : 0,
                       0);
    }
}

/* ---- the kind ---- */

static int hexval(char ch)
{
    return ch >= '0' && ch <= '9'   ? ch - '0'
           : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
           : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                    : -1;
}

static int dev_init(cs_group *cg, cs_dev *d, uint32_t k)
{
    sim_peer *p = cg->p;
    char imei[64], key[256];
    d->cg = cg;
    d->k = k;
    d->n = cg->g->first + k;
    d->sh = &cg->shards[k / SHARD_SIZE];
    d->battery_v = p->battery_v;
    for (size_t i = 0; i < sizeof d->cst / sizeof d->cst[0]; i++)
        d->cst[i].step = -1;
    if (sim_format_id(cg->g->id_tmpl, d->n, d->id, sizeof d->id) != SIM_OK ||
        sim_expand(p->imei, d->n, d->id, NULL, imei, sizeof imei) != 15 ||
        sim_expand(p->query, d->n, d->id, imei, d->query, sizeof d->query) < 0)
        return SIM_EINVAL;
    memcpy(d->imei, imei, 16);
    if (p->dtls) {
        int kl = sim_expand(p->psk, d->n, d->id, imei, key, sizeof key);
        if (kl <= 0)
            return SIM_EINVAL;
        if (p->psk_hex) {
            if (kl % 2 || (size_t)kl / 2 > sizeof d->key)
                return SIM_EINVAL;
            for (int i = 0; i < kl / 2; i++) {
                int hi = hexval(key[2 * i]), lo = hexval(key[2 * i + 1]);
                if (hi < 0 || lo < 0)
                    return SIM_EINVAL;
                d->key[i] = (uint8_t)(hi << 4 | lo);
            }
            d->keylen = (size_t)kl / 2;
        } else {
            if ((size_t)kl > sizeof d->key)
                return SIM_EINVAL;
            memcpy(d->key, key, (size_t)kl);
            d->keylen = (size_t)kl;
        }
    }
    return SIM_OK;
}

static int cs_start(sim_ctx *ctx, sim_group *g)
{
    sim_peer *p = g->peer;
    const char *host = g->host[0] ? g->host : ctx->bind;
    if (!p)
        return SIM_EINVAL;
    cs_group *cg = calloc(1, sizeof *cg);
    if (!cg)
        return SIM_ENOMEM;
    g->kstate = cg;
    cg->g = g;
    cg->p = p;
    cg->ctx = ctx;
    cg->cover = !strcmp(g->protocol, "coap-cover");
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    cg->clock0 = (double)wall.tv_sec + wall.tv_nsec / 1e9 - sim_now(ctx);
    if (coap_users++ == 0) {
        coap_startup();
        coap_set_log_handler(on_log);
        /* The retransmission lines are at debug level. */
        coap_set_log_level(LOG_DEBUG);
        coap_set_show_pdu_output(0); /* PDU dumps go to on_log too, which drops them */
        coap_dtls_set_log_level(LOG_ERR);
    }
    if (!by_port && !(by_port = calloc(65536, sizeof *by_port)))
        return SIM_ENOMEM;
    if (p->dtls && !coap_dtls_is_supported()) {
        fprintf(stderr, "sim: group line %d: this libcoap has no DTLS\n", g->line);
        return SIM_EINVAL;
    }
    coap_address_init(&cg->dst);
    if (strchr(host, ':')) {
        cg->dst.size = sizeof(struct sockaddr_in6);
        if (uv_ip6_addr(host, (int)g->port, &cg->dst.addr.sin6) < 0)
            goto bad_host;
    } else {
        cg->dst.size = sizeof(struct sockaddr_in);
        if (uv_ip4_addr(host, (int)g->port, &cg->dst.addr.sin) < 0)
            goto bad_host;
    }
    cg->nshards = (g->count + SHARD_SIZE - 1) / SHARD_SIZE;
    cg->shards = calloc(cg->nshards, sizeof *cg->shards);
    cg->devs = calloc(g->count, sizeof *cg->devs);
    if (!cg->shards || !cg->devs)
        return SIM_ENOMEM;
    for (uint32_t i = 0; i < cg->nshards; i++) {
        cs_shard *sh = &cg->shards[i];
        sh->cg = cg;
        sh->ctx = coap_new_context(NULL);
        if (!sh->ctx)
            return SIM_ENOMEM;
        coap_context_set_keepalive(sh->ctx, 0);
        coap_register_response_handler(sh->ctx, on_response);
        coap_register_nack_handler(sh->ctx, on_nack);
        coap_register_event_handler(sh->ctx, on_event);
        int fd = coap_context_get_coap_fd(sh->ctx);
        if (fd < 0) {
            fprintf(stderr, "sim: libcoap has no epoll descriptor\n");
            return SIM_ERR;
        }
        uv_poll_init(ctx->loop, &sh->poll, fd);
        uv_timer_init(ctx->loop, &sh->timer);
        sh->poll.data = sh->timer.data = sh;
        sh->started = 1;
        uv_poll_start(&sh->poll, UV_READABLE, shard_poll_cb);
    }
    /* Started before the devices' timers, so events at t=0 (silent from the
     * start, say) apply before the first frames. */
    uv_timer_init(ctx->loop, &cg->ev_timer);
    cg->ev_timer.data = cg;
    cg->ev_started = 1;
    if (p->nevents)
        uv_timer_start(&cg->ev_timer, ev_timer_cb, 0, 0);
    /* First heartbeats spread evenly over `spread` (default: the heartbeat
     * interval, at most 10 s) so thousands of devices do not start at once. */
    double spread = p->spread >= 0 ? p->spread : (p->heartbeat < 10 ? p->heartbeat : 10);
    double t0 = sim_now(ctx);
    for (uint32_t k = 0; k < g->count; k++) {
        cs_dev *d = &cg->devs[k];
        if (dev_init(cg, d, k) != SIM_OK) {
            fprintf(stderr, "sim: group line %d: device %u: bad imei, query or key\n", g->line,
                    g->first + k);
            return SIM_EINVAL;
        }
        uv_timer_init(ctx->loop, &d->timer);
        d->timer.data = d;
        cg->ndevs = k + 1;
        d->next_hb = t0 + spread * k / g->count;
        d->next_report = d->next_hb + (p->report > 0 ? p->report / 2 : 0);
        d->next_sample = d->next_hb + p->sample;
        dev_arm(d);
    }
    if (!ctx->quiet)
        fprintf(stderr, "sim: %u %s devices -> %s://%s:%u%s, %u contexts\n", g->count, g->protocol,
                p->dtls ? "coaps" : "coap", host, g->port, p->path, cg->nshards);
    return SIM_OK;
bad_host:
    fprintf(stderr, "sim: group line %d: bad host '%s'\n", g->line, host);
    return SIM_EINVAL;
}

static void cs_stop(sim_ctx *ctx, sim_group *g)
{
    cs_group *cg = g->kstate;
    if (!cg || cg->stopping)
        return;
    cg->stopping = 1;
    for (uint32_t k = 0; k < cg->ndevs; k++)
        uv_close((uv_handle_t *)&cg->devs[k].timer, NULL);
    for (uint32_t i = 0; i < cg->nshards; i++)
        if (cg->shards[i].started) {
            uv_close((uv_handle_t *)&cg->shards[i].poll, NULL);
            uv_close((uv_handle_t *)&cg->shards[i].timer, NULL);
        }
    if (cg->ev_started)
        uv_close((uv_handle_t *)&cg->ev_timer, NULL);
}

static void cs_destroy(sim_ctx *ctx, sim_group *g)
{
    cs_group *cg = g->kstate;
    if (!cg)
        return;
    for (uint32_t k = 0; k < cg->ndevs; k++) {
        cs_dev *d = &cg->devs[k];
        dev_forget_port(d);
        if (d->session) {
            coap_session_set_app_data(d->session, NULL);
            coap_session_release(d->session);
        }
    }
    for (uint32_t i = 0; i < cg->nshards; i++)
        if (cg->shards[i].ctx)
            coap_free_context(cg->shards[i].ctx);
    free(cg->shards);
    free(cg->devs);
    free(cg);
    g->kstate = NULL;
    if (--coap_users == 0) {
        coap_cleanup();
        free(by_port);
        by_port = NULL;
        if (log_lines_dropped)
            fprintf(stderr, "sim: coap: %llu more libcoap warnings not shown\n",
                    (unsigned long long)log_lines_dropped);
    }
}

static void code_name(uint8_t code, char *out, size_t cap)
{
    snprintf(out, cap, "%u.%02u", code >> 5, code & 31);
}

static const char *fault_key[SIM_F__COUNT] = {"silent",  "late",    "exception",
                                              "garbage", "bad_crc", "drop"};

static void cs_stats(sim_ctx *ctx, sim_group *g, void *arr)
{
    cs_group *cg = g->kstate;
    if (!cg)
        return;
    for (uint32_t k = 0; k < cg->ndevs; k++) {
        cs_dev *d = &cg->devs[k];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return;
        cJSON_AddStringToObject(o, "id", d->id);
        cJSON_AddStringToObject(o, "protocol", g->protocol);
        cJSON_AddStringToObject(o, "imei", d->imei);
        cJSON_AddNumberToObject(o, "requests", (double)(d->heartbeats + d->reports + d->events));
        cJSON_AddNumberToObject(o, "heartbeats", (double)d->heartbeats);
        cJSON_AddNumberToObject(o, "reports", (double)d->reports);
        cJSON_AddNumberToObject(o, "events", (double)d->events);
        cJSON_AddNumberToObject(o, "seq", d->seq);
        cJSON_AddNumberToObject(o, "status_bits", d->status);
        cJSON_AddNumberToObject(o, "bytes_out", (double)d->bytes_out);
        cJSON_AddNumberToObject(o, "answered", (double)d->answered);
        cJSON *rc = cJSON_AddObjectToObject(o, "responses");
        for (size_t i = 0; i < NSLOTS; i++) {
            char name[16];
            if (!d->codes[i])
                continue;
            if (i < sizeof code_slots)
                code_name(code_slots[i], name, sizeof name);
            else
                snprintf(name, sizeof name, "other");
            cJSON_AddNumberToObject(rc, name, (double)d->codes[i]);
        }
        cJSON_AddNumberToObject(o, "retransmissions", (double)d->retransmissions);
        cJSON_AddNumberToObject(o, "timeouts", (double)d->timeouts);
        cJSON_AddNumberToObject(o, "rst", (double)d->rst);
        cJSON_AddNumberToObject(o, "unreachable", (double)d->unreachable);
        cJSON_AddNumberToObject(o, "tls_failures", (double)d->tls_failures);
        cJSON_AddNumberToObject(o, "sessions", (double)d->sessions);
        cJSON_AddNumberToObject(o, "dtls_connected", (double)d->dtls_connected);
        cJSON_AddNumberToObject(o, "handshake_timeouts", (double)d->handshake_timeouts);
        cJSON_AddNumberToObject(o, "lost_in_handshake", (double)d->lost_in_handshake);
        cJSON_AddNumberToObject(o, "send_failed", (double)d->send_failed);
        cJSON_AddNumberToObject(o, "malformed_sent", (double)d->malformed_sent);
        cJSON_AddNumberToObject(o, "skipped_silent", (double)d->skipped_silent);
        cJSON_AddBoolToObject(o, "silent", d->silent);
        cJSON_AddBoolToObject(o, "wrong_psk", d->wrong_psk);
        cJSON_AddNumberToObject(o, "rtt_avg_ms",
                                d->answered ? d->rtt_sum_ms / (double)d->answered : 0);
        cJSON_AddNumberToObject(o, "rtt_max_ms", d->rtt_max_ms);
        cJSON *fo = cJSON_AddObjectToObject(o, "faults");
        for (int i = 0; i < SIM_F__COUNT; i++)
            if (d->faults[i])
                cJSON_AddNumberToObject(fo, fault_key[i], (double)d->faults[i]);
        cJSON_AddItemToArray(arr, o);
    }
}

const sim_kind sim_kind_coap_smoke = {
    .name = "coap-smoke",
    .start = cs_start,
    .stop = cs_stop,
    .stats = cs_stats,
    .destroy = cs_destroy,
    .peer = 1,
};

/* The same CoAP device, posting MC-200 manhole cover frames. */
const sim_kind sim_kind_coap_cover = {
    .name = "coap-cover",
    .start = cs_start,
    .stop = cs_stop,
    .stats = cs_stats,
    .destroy = cs_destroy,
    .peer = 1,
};
