/* Scenario keys both peer kinds (coap-smoke, mqtt-gauge) have: the gateway's
 * address, the start-up spread and the scheduled events; also the templates
 * ({id}, {imei}, {n}) their other keys use. Devices of these kinds connect out
 * to the gateway; scn_coap.c and scn_mqtt.c add each kind's own keys. */
#include "sim/enc_gauge.h"
#include "sim/kind.h"
#include "sim/peer.h"
#include "sim/scenario.h"
#include "sim/scn.h"

#include <ctype.h>
#include <float.h>
#include <stdlib.h>
#include <string.h>

int sim_expand(const char *tmpl, uint32_t n, const char *id, const char *imei, char *out,
               size_t cap)
{
    size_t o = 0;
    if (cap == 0)
        return SIM_EINVAL;
    for (const char *s = tmpl; *s;) {
        const char *val = NULL;
        size_t skip = 0;
        if (!strncmp(s, "{id}", 4)) {
            val = id;
            skip = 4;
        } else if (!strncmp(s, "{imei}", 6)) {
            val = imei;
            skip = 6;
        } else if (s[0] == '{') {
            const char *e = strchr(s, '}');
            char one[32], got[32];
            if (!e || (size_t)(e - s) >= sizeof one - 1 || s[1] != 'n')
                return SIM_EINVAL;
            memcpy(one, s, (size_t)(e - s) + 1);
            one[e - s + 1] = 0;
            if (sim_format_id(one, n, got, sizeof got) != SIM_OK)
                return SIM_EINVAL;
            size_t gl = strlen(got);
            if (o + gl >= cap)
                return SIM_EINVAL;
            memcpy(out + o, got, gl);
            o += gl;
            s = e + 1;
            continue;
        }
        if (skip) {
            if (!val)
                return SIM_EINVAL;
            size_t vl = strlen(val);
            if (o + vl >= cap)
                return SIM_EINVAL;
            memcpy(out + o, val, vl);
            o += vl;
            s += skip;
            continue;
        }
        if (o + 1 >= cap)
            return SIM_EINVAL;
        out[o++] = *s++;
    }
    out[o] = 0;
    return (int)o;
}

static const char *const event_names[SIM_EV__COUNT] = {
    "fire_alarm", "alarm_cleared", "self_test",       "self_test_fail",
    "mute",       "unmute",        "battery_low",     "battery_critical",
    "battery_ok", "tamper",        "tamper_restored", "hw_fault",
    "dirty",      "end_of_life",   "fault_cleared",   "heartbeat",
    "bad_crc",    "truncated",     "wrong_psk",       "right_psk",
    "silent",     "resume",        "malformed",       "disconnect",
    "reconnect",  "offline",
};

const char *sim_event_name(sim_event_kind k)
{
    return (unsigned)k < SIM_EV__COUNT ? event_names[k] : "?";
}

static int event_allowed(const char *protocol, sim_event_kind k)
{
    if (k == SIM_EV_SILENT || k == SIM_EV_RESUME)
        return 1;
    if (!strcmp(protocol, "coap-smoke"))
        return k <= SIM_EV_RIGHT_PSK;
    if (!strcmp(protocol, "coap-cover"))
        return k == SIM_EV_BATTERY_LOW || k == SIM_EV_BATTERY_OK ||
               (k >= SIM_EV_HEARTBEAT && k <= SIM_EV_RIGHT_PSK);
    return k >= SIM_EV_MALFORMED;
}

void sim_peer_free(sim_peer *p)
{
    if (!p)
        return;
    sim_curve_free(&p->smoke);
    sim_curve_free(&p->temperature);
    sim_curve *cover[] = {&p->tilt, &p->open, &p->water, &p->rsrp, &p->snr};
    for (size_t i = 0; i < sizeof cover / sizeof cover[0]; i++)
        sim_curve_free(cover[i]);
    for (int i = 0; i < p->nfields; i++)
        sim_curve_free(&p->fields[i].curve);
    free(p->fields);
    free(p->events);
    free(p);
}

void *sim_scn_peer_conf(sim_group *g)
{
    return g->peer;
}

int sim_scn_peer_init(sim_scn *c, sim_group *g)
{
    g->peer = calloc(1, sizeof *g->peer);
    if (!g->peer)
        return SIM_ENOMEM;
    g->peer->spread = -1; /* the kind's default */
    return SIM_OK;
}

int sim_scn_json_name_ok(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
            return 0;
    return 1;
}

/* ---- events ---- */

enum { K_DEVICE = 1, K_KIND };

static const sim_key event_keys[] = {
    SIM_KEY_RANGE("at", sim_event, at, 0, DBL_MAX, "a time >= 0", NULL, "scenario time (required)"),
    SIM_KEY_HOOK("device", K_DEVICE, "the device's n, or all (default)"),
    SIM_KEY_HOOK("kind", K_KIND, "the event (required)"),
    {.type = SIM_K_END},
};

static int event_key(sim_scn *c, void *arg, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    const sim_group *g = ((void **)arg)[0];
    sim_event *ev = ((void **)arg)[1];
    const char *s = sim_scn_scalar(vn);
    long l;
    int ek;
    if (k->id == K_DEVICE) {
        if (s && !strcmp(s, "all"))
            ev->device = 0;
        else if (sim_scn_int(c, vn, "device", g->first, (long)g->first + g->count - 1, &l))
            return SIM_EINVAL;
        else
            ev->device = (uint32_t)l;
        return 1;
    }
    for (ek = 0; ek < SIM_EV__COUNT && s; ek++)
        if (!strcmp(s, event_names[ek]))
            break;
    if (!s || ek == SIM_EV__COUNT || !event_allowed(g->protocol, (sim_event_kind)ek))
        return sim_scn_err(c, vn, "kind: '%s' is not an event of %s (see docs/sim.md)", s ? s : "?",
                           g->protocol);
    ev->kind = (sim_event_kind)ek;
    return 1;
}

static int event_parse(sim_scn *c, yaml_node_t *m, void *item, int i, void *arg)
{
    sim_group *g = arg;
    sim_event *ev = item;
    void *hook_arg[2] = {g, ev};
    ev->kind = SIM_EV__COUNT;
    ev->line = sim_scn_line(m);
    int rc = sim_scn_keys(c, m, "event", event_keys, ev, 0, event_key, hook_arg);
    if (rc)
        return rc;
    if (!sim_scn_get(c, m, "at") || ev->kind == SIM_EV__COUNT)
        return sim_scn_err(c, m, "event: needs at and kind");
    if ((ev->kind == SIM_EV_WRONG_PSK || ev->kind == SIM_EV_RIGHT_PSK) && !g->peer->dtls)
        return sim_scn_err(c, m, "event %s: needs dtls: true", event_names[ev->kind]);
    return SIM_OK;
}

static int events_parse(sim_scn *c, yaml_node_t *seq, sim_group *g)
{
    sim_peer *p = g->peer;
    void *items;
    int rc = sim_scn_list(c, seq, "events: expected a list of {at, device, kind}",
                          sizeof *p->events, &items, &p->nevents, event_parse, g);
    p->events = items;
    if (rc)
        return rc;
    /* In time order; an insertion sort keeps the file's order among events at
     * the same time. */
    for (int i = 1; i < p->nevents; i++) {
        sim_event ev = p->events[i];
        int j = i;
        for (; j > 0 && p->events[j - 1].at > ev.at; j--)
            p->events[j] = p->events[j - 1];
        p->events[j] = ev;
    }
    return SIM_OK;
}

/* ---- the shared keys ---- */

enum { K_EVENTS = 1 };

static const sim_key addr_keys[] = {
    SIM_KEY_STR("host", sim_group, host, NULL, "the gateway's address (default: --bind)"),
    SIM_KEY_INT("port", sim_group, port, 1, 65535, NULL,
                "the gateway's port, shared by every device (required)"),
    {.type = SIM_K_END},
};

static const sim_key peer_keys[] = {
    SIM_KEY_RANGE("spread", sim_peer, spread, 0, DBL_MAX, "must be >= 0", NULL,
                  "first sends spread over this many s"),
    SIM_KEY_HOOK("events", K_EVENTS, "scheduled events [{at, device, kind}]"),
    {.type = SIM_K_END},
};

const sim_keytab sim_scn_peer_addr_keys = {NULL, addr_keys};
const sim_keytab sim_scn_peer_keys = {sim_scn_peer_conf, peer_keys};

int sim_scn_peer_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    return k && k->id == K_EVENTS ? 1 : 0; /* events: read by finish, once dtls is known */
}

int sim_scn_peer_finish(sim_scn *c, sim_group *g, yaml_node_t *m)
{
    yaml_node_t *events = sim_scn_get(c, m, "events");
    if (!g->port)
        return sim_scn_err(c, m, "device group: missing port");
    return events ? events_parse(c, events, g) : SIM_OK;
}

int sim_scn_peer_tmpl(sim_scn *c, yaml_node_t *at, const sim_group *g, const char *key,
                      const char *tmpl, int imei_digits)
{
    char id[64], imei[64], out[256];
    uint32_t ns[2] = {g->first, g->first + g->count - 1};
    for (int i = 0; i < 2; i++) {
        if (sim_format_id(g->id_tmpl, ns[i], id, sizeof id) != SIM_OK)
            return sim_scn_err(c, at, "%s: bad id template", key);
        const sim_peer *p = g->peer;
        /* Only detectors have an IMEI. */
        int il = strncmp(g->protocol, "coap-", 5)
                     ? -1
                     : sim_expand(p->imei, ns[i], id, NULL, imei, sizeof imei);
        int rc = sim_expand(tmpl, ns[i], id, il >= 0 ? imei : NULL, out, sizeof out);
        if (rc < 0)
            return sim_scn_err(c, at,
                               "%s: cannot expand '%s' (placeholders {id}, {imei}, {n}, {n:05})",
                               key, tmpl);
        if (imei_digits && (rc != 15 || strspn(out, "0123456789") != 15))
            return sim_scn_err(c, at, "%s: '%s' gives '%s', not 15 digits", key, tmpl, out);
    }
    return SIM_OK;
}
