/* Scenario keys of the sl651 kind (hydrological RTUs, SL651-2014): the
 * station's address, schedules, curves and status events; the keys both
 * station kinds have are in scn_station.c. */
#include "sim/scenario.h"
#include "sim/scn.h"
#include "sim/station.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { K_STATION_TYPE = 100, K_ENCODING, K_TEST_AT, K_EVENTS };

static const sim_key_choice modes[] = {{"M1", 0}, {"m1", 0}, {"M2", 1}, {"m2", 1}, {NULL, 0}};
static const sim_key_choice extra_on[] = {{"rain", 1}, {"level", 0}, {NULL, 0}};

#define DURATION(n, f, d, w) SIM_KEY_RANGE(n, sim_rtu_conf, f, 0, 30 * 86400.0, "0..30d", d, w)

static const sim_key sl651_keys[] = {
    SIM_KEY_STR("address", sim_rtu_conf, address, NULL,
                "station address: a template of up to 10 hex digits or a decimal base"),
    SIM_KEY_STR("password", sim_rtu_conf, password, "1234", "up to 4 hex digits"),
    SIM_KEY_INT("centre", sim_rtu_conf, centre, 0, 255, "1", "centre address"),
    SIM_KEY_HOOK("station_type", K_STATION_TYPE, "rain, river, reservoir, ... or a number"),
    SIM_KEY_HOOK("encoding", K_ENCODING, "hex only"),
    SIM_KEY_ENUM("mode", sim_rtu_conf, m2, modes, "M2", "M2: reports wait for confirms; M1: not"),
    SIM_KEY_INT("resends", sim_rtu_conf, resends, 0, 2, "2", "resends of an unconfirmed report"),
    DURATION("interval", interval, "5m", "timed report (32) period"),
    DURATION("hourly_every", hourly_every, "1h", "hourly report (34) period; 0 = none"),
    DURATION("keepalive", keepalive, NULL, "keep-alive (2F) period; 0 = none"),
    SIM_KEY_NUM("extra_threshold", sim_rtu_conf, extra_threshold, NULL,
                "extra reports (33) at or above this"),
    SIM_KEY_ENUM("extra_on", sim_rtu_conf, extra_on_rain, extra_on, NULL,
                 "what extra_threshold watches: level (default) or rain"),
    DURATION("extra_interval", extra_interval, "5m", "extra report period"),
    SIM_KEY_BOOL("status", sim_rtu_conf, status, NULL, "reports carry element 45"),
    SIM_KEY_CURVE("rainfall", sim_rtu_conf, rain, "rain intensity, mm/h"),
    SIM_KEY_NUM("rain_base", sim_rtu_conf, rain_base, NULL, "cumulative rainfall at t=0, mm"),
    SIM_KEY_CURVE("level", sim_rtu_conf, level, "water level, m"),
    SIM_KEY_CURVE("voltage", sim_rtu_conf, voltage, "supply voltage, V"),
    SIM_KEY_HOOK("test_at", K_TEST_AT, "scenario times of test reports (30)"),
    SIM_KEY_HOOK("events", K_EVENTS, "status events [{at, kind}]"),
    SIM_KEY_NUM("picture_at", sim_rtu_conf, picture_at, "-1",
                "one 36H picture in M3 packets at this time (< 0: never)"),
    SIM_KEY_INT("picture_packets", sim_rtu_conf, picture_packets, 1, 64, "5",
                "M3 packets of the picture"),
    SIM_KEY_NUM("history_at", sim_rtu_conf, history_at, "-1",
                "one 38H history (04 18 000000, F5 runs) at this time (< 0: never)"),
    SIM_KEY_INT("history_hours", sim_rtu_conf, history_hours, 1, 64, "18", "hours of history"),
    SIM_KEY_BOOL("water_quality", sim_rtu_conf, water_quality, NULL,
                 "reports carry 46, 47, 4A, 4C, 4D, 4E, 57"),
    SIM_KEY_STR("manual", sim_rtu_conf, manual, NULL, "F2 text of a 35H manual report"),
    SIM_KEY_NUM("manual_at", sim_rtu_conf, manual_at, "-1", "time of the 35H report (< 0: never)"),
    SIM_KEY_STR("quirks", sim_rtu_conf, quirks, NULL, "field variants: id28"),
    {.type = SIM_K_END},
};
static const sim_keytab sl651_tab = {sim_scn_station_conf, sl651_keys};

/* Status events: value = bit of element 45 * 2 + 1 when the condition starts. */
#define EV(name, bit, starts)                                                                      \
    {                                                                                              \
        name, (bit)*2 + (starts)                                                                   \
    }
static const sim_key_choice events[] = {
    EV("ac_lost", 0, 1),
    EV("ac_restored", 0, 0),
    EV("battery_low", 1, 1),
    EV("battery_ok", 1, 0),
    EV("level_over", 2, 1),
    EV("level_ok", 2, 0),
    EV("flow_alarm", 3, 1),
    EV("flow_ok", 3, 0),
    EV("quality_alarm", 4, 1),
    EV("quality_ok", 4, 0),
    EV("flowmeter_fault", 5, 1),
    EV("flowmeter_ok", 5, 0),
    EV("levelmeter_fault", 6, 1),
    EV("levelmeter_ok", 6, 0),
    EV("door_open", 7, 1),
    EV("door_close", 7, 0),
    EV("storage_fault", 8, 1),
    EV("storage_ok", 8, 0),
    {NULL, 0},
};

enum { K_KIND = 1 };

static const sim_key event_keys[] = {
    SIM_KEY_NUM("at", sim_revent, at, NULL, "scenario time (required)"),
    SIM_KEY_HOOK("kind", K_KIND, "the event (required)"),
    {.type = SIM_K_END},
};

static int event_key(sim_scn *c, void *arg, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    sim_revent *e = arg;
    int j = sim_scn_choice(events, sim_scn_scalar(vn));
    if (j < 0)
        return sim_scn_err(c, vn,
                           "kind: ac_lost, ac_restored, battery_low, battery_ok, "
                           "level_over, level_ok, flow_alarm, flow_ok, quality_alarm, "
                           "quality_ok, flowmeter_fault, flowmeter_ok, levelmeter_fault, "
                           "levelmeter_ok, door_open, door_close, storage_fault, storage_ok");
    e->bit = events[j].value / 2;
    e->alarm = events[j].value % 2;
    return 1;
}

static int event_parse(sim_scn *c, yaml_node_t *m, void *item, int i, void *arg)
{
    sim_revent *e = item;
    int rc = sim_scn_keys(c, m, "event", event_keys, e, 0, event_key, e);
    if (rc)
        return rc;
    if (!sim_scn_get(c, m, "at") || !sim_scn_get(c, m, "kind"))
        return sim_scn_err(c, m, "event: needs at and kind");
    if (i && e->at < e[-1].at)
        return sim_scn_err(c, m, "events: times must not decrease");
    return SIM_OK;
}

static int events_parse(sim_scn *c, yaml_node_t *vn, sim_rtu_conf *r)
{
    void *items;
    int rc = sim_scn_list(c, vn, "events: expected a list of {at, kind}", sizeof *r->events, &items,
                          &r->nevents, event_parse, NULL);
    r->events = items;
    return rc;
}

static int test_at_parse(sim_scn *c, yaml_node_t *vn, sim_rtu_conf *r)
{
    int n = vn->type == YAML_SEQUENCE_NODE
                ? (int)(vn->data.sequence.items.top - vn->data.sequence.items.start)
                : 1;
    free(r->test_at);
    r->test_at = calloc((size_t)(n ? n : 1), sizeof(double));
    if (!r->test_at)
        return SIM_ENOMEM;
    for (int j = 0; j < n; j++) {
        yaml_node_t *tn =
            vn->type == YAML_SEQUENCE_NODE ? sim_scn_node(c, vn->data.sequence.items.start[j]) : vn;
        if (sim_scn_num(c, tn, "test_at", &r->test_at[j]))
            return SIM_EINVAL;
        if (j && r->test_at[j] < r->test_at[j - 1])
            return sim_scn_err(c, tn, "test_at: times must not decrease");
    }
    r->ntest = n;
    return SIM_OK;
}

static const sim_key_choice station_types[] = {
    {"rain", 0x50}, {"river", 0x48}, {"reservoir", 0x4B}, {"gate", 0x5A},    {"pump", 0x44},
    {"tide", 0x54}, {"soil", 0x4D},  {"ground", 0x47},    {"quality", 0x51}, {NULL, 0},
};

static int sl651_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    sim_rtu_conf *r = g->rtu;
    const char *s = sim_scn_scalar(vn);
    long l;
    int i;
    switch (k ? k->id : 0) {
    case K_STATION_TYPE:
        if ((i = sim_scn_choice(station_types, s)) >= 0)
            r->station_type = station_types[i].value;
        else if (sim_scn_int(c, vn, "station_type", 0, 255, &l))
            return sim_scn_err(c, vn,
                               "station_type: rain, river, reservoir, gate, pump, tide, soil, "
                               "ground, quality or a number such as 0x48");
        else
            r->station_type = (int)l;
        return 1;
    case K_ENCODING:
        if (!s || strcmp(s, "hex") != 0)
            return sim_scn_err(c, vn, "encoding: only hex is implemented (ascii is not yet)");
        return 1;
    case K_TEST_AT:
        return test_at_parse(c, vn, r) ? SIM_EINVAL : 1;
    case K_EVENTS:
        return events_parse(c, vn, r) ? SIM_EINVAL : 1;
    default:
        return sim_scn_station_key(c, g, k, kn, vn);
    }
}

static int sl651_init(sim_scn *c, sim_group *g)
{
    int rc = sim_scn_station_init(c, g);
    if (rc == SIM_OK)
        g->rtu->station_type = 0x48; /* river */
    return rc;
}

/* 1..max hex digits. */
static int hex_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    return n >= 1 && n <= max && strspn(s, "0123456789abcdefABCDEF") == n;
}

static int sl651_finish(sim_scn *c, sim_group *g, yaml_node_t *m)
{
    sim_rtu_conf *r = g->rtu;
    int rc = sim_scn_station_finish(c, g, m);
    if (rc)
        return rc;
    if (!r->address[0])
        return sim_scn_err(c, m, "device group: missing address");
    if (!(r->extra_interval > 0))
        return sim_scn_err(c, m, "interval and extra_interval must be > 0");
    r->has_rain = r->rain.kind != SIM_C_NONE;
    r->has_level = r->level.kind != SIM_C_NONE;
    r->has_voltage = r->voltage.kind != SIM_C_NONE;
    if (r->nevents)
        r->status = 1; /* events show in element 45 */
    if (!hex_ok(r->password, 4))
        return sim_scn_err(c, m, "password: up to 4 hex digits (e.g. 1234)");
    uint32_t ends[2] = {g->first, g->first + g->count - 1};
    for (int e = 0; e < 2; e++) {
        char addr[64];
        uint32_t n = ends[e];
        if (strstr(r->address, "{n")) {
            if (sim_format_id(r->address, n, addr, sizeof addr))
                return sim_scn_err(c, m, "address: bad template '%s'", r->address);
        } else {
            char *end;
            errno = 0;
            unsigned long long base = strtoull(r->address, &end, 10);
            if (*end || errno || base + (n - g->first) > 9999999999ull)
                return sim_scn_err(c, m, "address: 10 digits, a template or a decimal base");
            snprintf(addr, sizeof addr, "%010llu", base + (n - g->first));
        }
        if (!hex_ok(addr, 10))
            return sim_scn_err(c, m, "address: '%s' is not up to 10 hex digits", addr);
    }
    return SIM_OK;
}

const sim_scn_kind sim_scn_sl651 = {
    .name = "sl651",
    .tabs = {&sim_scn_station_keys, &sl651_tab},
    .init = sl651_init,
    .parse_key = sl651_key,
    .finish = sl651_finish,
};
