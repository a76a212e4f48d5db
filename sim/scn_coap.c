/* Scenario keys of the CoAP kinds: coap-smoke (NB-IoT smoke detectors posting
 * NB-100 frames) and coap-cover (manhole cover sensors posting MC-200 frames),
 * over CoAP, optionally DTLS-PSK; the keys every peer kind has are in
 * scn_peer.c. */
#include "sim/enc_gauge.h"
#include "sim/peer.h"
#include "sim/scenario.h"
#include "sim/scn.h"

#include <float.h>
#include <stdio.h>
#include <string.h>

enum { K_PSK_HEX = 100 };

/* clang-format off */
/* The rows both CoAP kinds (coap-smoke, coap-cover) have; libcoap 4.3.1
 * ignores an ACK_TIMEOUT below one second. */
#define COAP_KEYS(battery_dflt)                                                                    \
    SIM_KEY_STR("imei", sim_peer, imei, "86{n:013}", "IMEI template: 15 digits once expanded"),    \
    SIM_KEY_STR("path", sim_peer, path, "/19/0/0", "Uri-Path"),                                    \
    SIM_KEY_STR("query", sim_peer, query, "ep={imei}", "Uri-Query template"),                      \
    SIM_KEY_BOOL("dtls", sim_peer, dtls, NULL, "coaps:// with a PSK"),                             \
    SIM_KEY_STR("psk", sim_peer, psk, "{imei}-secret", "key template (ASCII)"),                    \
    SIM_KEY_HOOK("psk_hex", K_PSK_HEX, "key template giving hex digits"),                          \
    SIM_KEY_RANGE("heartbeat", sim_peer, heartbeat, DBL_TRUE_MIN, DBL_MAX, "must be > 0", "1d",    \
                  "scenario time between heartbeats"),                                             \
    SIM_KEY_RANGE("report", sim_peer, report, 0, DBL_MAX, "must be >= 0", NULL,                    \
                  "scenario time between reports; 0 = none"),                                      \
    SIM_KEY_RANGE("ack_timeout", sim_peer, ack_timeout, 1, 60, "1s..60s", "2",                     \
                  "CoAP ACK_TIMEOUT, wall clock"),                                                 \
    SIM_KEY_INT("max_retransmit", sim_peer, max_retransmit, 0, 20, "4", "CoAP MAX_RETRANSMIT"),    \
    SIM_KEY_RANGE("battery", sim_peer, battery_v, 2.0, 4.55, "2.00..4.55 V", battery_dflt,         \
                  "nominal battery voltage")
/* clang-format on */

static const sim_key coap_keys[] = {
    COAP_KEYS("3.0"),
    SIM_KEY_BOOL("tlv", sim_peer, tlv, "true", "heartbeats carry the firmware-version bytes"),
    SIM_KEY_CURVE("smoke", sim_peer, smoke, "smoke, dB/m (default 0.012)"),
    SIM_KEY_CURVE("temperature", sim_peer, temperature, "temperature, degC (default 22)"),
    {.type = SIM_K_END},
};
static const sim_keytab coap_tab = {sim_scn_peer_conf, coap_keys};

static int coap_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    sim_peer *p = g->peer;
    if (!k || k->id != K_PSK_HEX)
        return sim_scn_peer_key(c, g, k, kn, vn);
    if (sim_scn_str(c, vn, k->name, p->psk, sizeof p->psk))
        return SIM_EINVAL;
    p->psk_hex = 1;
    return 1;
}

static int coap_finish(sim_scn *c, sim_group *g, yaml_node_t *m)
{
    sim_peer *p = g->peer;
    yaml_node_t *imei_n = sim_scn_get(c, m, "imei"), *psk_n = sim_scn_get(c, m, "psk");
    int rc;
    if (psk_n && sim_scn_get(c, m, "psk_hex"))
        return sim_scn_err(c, sim_scn_get(c, m, "psk_hex"), "psk_hex: give one of psk and psk_hex");
    if (!psk_n)
        psk_n = sim_scn_get(c, m, "psk_hex");
    if ((rc = sim_scn_peer_tmpl(c, imei_n ? imei_n : m, g, "imei", p->imei, 1)) ||
        (rc = sim_scn_peer_tmpl(c, m, g, "query", p->query, 0)))
        return rc;
    if (p->dtls && (rc = sim_scn_peer_tmpl(c, psk_n ? psk_n : m, g, p->psk_hex ? "psk_hex" : "psk",
                                           p->psk, 0)))
        return rc;
    if (p->path[0] != '/')
        return sim_scn_err(c, m, "path: must start with /");
    if (p->psk_hex) {
        char id[64], imei[64], key[256];
        sim_format_id(g->id_tmpl, g->first, id, sizeof id);
        sim_expand(p->imei, g->first, id, NULL, imei, sizeof imei);
        int kl = sim_expand(p->psk, g->first, id, imei, key, sizeof key);
        if (kl <= 0 || kl % 2 || (int)strspn(key, "0123456789abcdefABCDEF") != kl)
            return sim_scn_err(c, psk_n, "psk_hex: an even number of hex digits once expanded");
    }
    return sim_scn_peer_finish(c, g, m);
}

static const sim_key cover_keys[] = {
    COAP_KEYS("3.6"),
    SIM_KEY_CURVE("tilt", sim_peer, tilt, "tilt from level, degrees (default 0.5)"),
    SIM_KEY_CURVE("open", sim_peer, open, "open or displaced while >= 0.5 (default 0)"),
    SIM_KEY_CURVE("water_level", sim_peer, water, "water in the well, m (default 0.3)"),
    SIM_KEY_CURVE("rsrp", sim_peer, rsrp, "RSRP, dBm (default -95 - n % 20)"),
    SIM_KEY_CURVE("snr", sim_peer, snr, "SNR, dB (default 10)"),
    SIM_KEY_RANGE("tilt_alarm", sim_peer, tilt_alarm, 0.1, 180, "0.1..180 deg", "15",
                  "the tilt bit is set at or beyond this angle"),
    SIM_KEY_RANGE("overflow", sim_peer, overflow, 0, 65, "0..65 m", "1.5",
                  "the overflow bit is set at or above this water level"),
    SIM_KEY_RANGE("sample", sim_peer, sample, 0.1, DBL_MAX, "must be >= 0.1s", "1",
                  "scenario time between samplings; a change is sent at once"),
    {.type = SIM_K_END},
};
static const sim_keytab cover_tab = {sim_scn_peer_conf, cover_keys};

const sim_scn_kind sim_scn_coap_cover = {
    .name = "coap-cover",
    .tabs = {&sim_scn_peer_addr_keys, &sim_scn_peer_keys, &cover_tab},
    .init = sim_scn_peer_init,
    .parse_key = coap_key,
    .finish = coap_finish,
};

const sim_scn_kind sim_scn_coap_smoke = {
    .name = "coap-smoke",
    .tabs = {&sim_scn_peer_addr_keys, &sim_scn_peer_keys, &coap_tab},
    .init = sim_scn_peer_init,
    .parse_key = coap_key,
    .finish = coap_finish,
};
