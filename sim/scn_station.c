/* Scenario keys both dialing station kinds (sl651, hj212) have: the centre to
 * dial, the link's timers, the station clock and the station faults. Their
 * groups dial out (`connect:`) instead of listening and keep their keys in
 * g->rtu; scn_sl651.c and scn_hj212.c add each kind's own. */
#include "sim/dial.h"
#include "sim/scenario.h"
#include "sim/scn.h"
#include "sim/station.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const sim_rfault_names[SIM_RF__COUNT] = {
    "silent", "garbage", "bad_crc", "truncated", "drop", "clock_skew", "duplicate", "malformed_cp",
};

void sim_rtu_conf_free(sim_rtu_conf *r)
{
    if (!r)
        return;
    sim_curve_free(&r->rain);
    sim_curve_free(&r->level);
    sim_curve_free(&r->voltage);
    for (int i = 0; i < r->nfactors; i++) {
        sim_curve_free(&r->factors[i].curve);
        free(r->factors[i].flags);
    }
    free(r->factors);
    free(r->faults);
    free(r->events);
    free(r->test_at);
    free(r);
}

void *sim_scn_station_conf(sim_group *g)
{
    return g->rtu;
}

int sim_scn_station_init(sim_scn *c, sim_group *g)
{
    sim_rtu_conf *r = calloc(1, sizeof *r);
    if (!r)
        return SIM_ENOMEM;
    r->extra_threshold = NAN; /* no extra reports */
    r->clock0 = NAN;          /* now */
    g->rtu = r;
    return SIM_OK;
}

/* "2024-07-01 08:00:00" as seconds since 1970 of that clock reading. */
static int parse_clock(const char *s, double *out)
{
    int y, mo, d, h = 0, mi = 0, se = 0;
    char tail;
    int n = sscanf(s, "%d-%d-%d %d:%d:%d%c", &y, &mo, &d, &h, &mi, &se, &tail);
    if ((n != 3 && n != 6) || y < 1970 || y > 2099 || mo < 1 || mo > 12 || d < 1 || d > 31 ||
        h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 59)
        return SIM_EINVAL;
    /* Days from 1970-01-01 in the proleptic Gregorian calendar. */
    int yy = mo <= 2 ? y - 1 : y;
    int era = yy / 400, yoe = yy - era * 400;
    int doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    long days = (long)era * 146097 + doe - 719468;
    *out = (double)days * 86400 + h * 3600 + mi * 60 + se;
    return SIM_OK;
}

/* ---- faults ---- */

static const sim_key_choice rfault_types[] = {
    {"silent", SIM_RF_SILENT},
    {"garbage", SIM_RF_GARBAGE},
    {"bad_crc", SIM_RF_BAD_CRC},
    {"truncated", SIM_RF_TRUNCATED},
    {"drop", SIM_RF_DROP},
    {"clock_skew", SIM_RF_CLOCK_SKEW},
    {"duplicate", SIM_RF_DUPLICATE},
    {"malformed_cp", SIM_RF_MALFORMED},
    {NULL, 0},
};

#define F(x) (1u << (x))
enum { K_OFFSET = 1, K_ONLY };

static const sim_key rfault_keys[] = {
    SIM_KEY_ENUM("type", sim_rfault, kind, rfault_types, NULL, "the fault"),
    SIM_KEY_NUM("from", sim_rfault, from, NULL, "window start, scenario time"),
    SIM_KEY_NUM("to", sim_rfault, to, "-1", "window end (default: forever)"),
    SIM_KEY_INT_FOR(~(F(SIM_RF_SILENT) | F(SIM_RF_CLOCK_SKEW)), "every", sim_rfault, every, 1,
                    1000000000, NULL, "every Nth frame of the device"),
    SIM_KEY_HOOK_FOR(F(SIM_RF_CLOCK_SKEW), "offset", K_OFFSET, "clock_skew: -7m, 90s"),
    SIM_KEY_INT_FOR(F(SIM_RF_GARBAGE), "bytes", sim_rfault, bytes, 1, 1024, "16",
                    "garbage: how many bytes"),
    SIM_KEY_HOOK("only", K_ONLY, "device numbers n it applies to (default: all)"),
    {.type = SIM_K_END},
};

static int rfault_key(sim_scn *c, void *arg, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    sim_rfault *f = arg;
    const char *s = sim_scn_scalar(vn);
    long l;
    if (k->id == K_OFFSET) {
        double v;
        /* A leading minus sign: the clock is behind. */
        if (!s || sim_parse_duration(s[0] == '-' ? s + 1 : s, &v))
            return sim_scn_err(c, vn, "offset: a duration such as -5m or 90s");
        f->offset_s = s[0] == '-' ? -v : v;
        return 1;
    }
    if (vn->type == YAML_SCALAR_NODE) {
        if (sim_scn_int(c, vn, "only", 0, 100000000, &l))
            return SIM_EINVAL;
        f->only[0] = (uint32_t)l;
        f->nonly = 1;
        return 1;
    }
    yaml_node_item_t *it;
    int n;
    if (vn->type != YAML_SEQUENCE_NODE || sim_scn_seq(c, vn, "only", &it, &n) || n < 1 ||
        n > SIM_RF_ONLY_MAX)
        return sim_scn_err(c, vn, "only: a device number or a list of 1..%d of them",
                           SIM_RF_ONLY_MAX);
    for (int i = 0; i < n; i++) {
        if (sim_scn_int(c, sim_scn_node(c, it[i]), "only", 0, 100000000, &l))
            return SIM_EINVAL;
        f->only[i] = (uint32_t)l;
    }
    f->nonly = n;
    return 1;
}

static int rfault_parse(sim_scn *c, yaml_node_t *m, void *item, int i, void *arg)
{
    sim_rfault *f = item;
    int hj = !strcmp(((sim_group *)arg)->protocol, "hj212");
    int rc = sim_scn_typed(c, m, "fault", rfault_types, rfault_keys, f, rfault_key, f);
    if (rc)
        return rc;
    if (f->to >= 0 && f->to < f->from)
        return sim_scn_err(c, m, "fault: to is before from");
    if (f->kind == SIM_RF_MALFORMED && !hj)
        return sim_scn_err(c, m, "malformed_cp: HJ212 only");
    return SIM_OK;
}

static int rfaults_parse(sim_scn *c, yaml_node_t *vn, sim_group *g)
{
    void *items;
    int rc = sim_scn_list(c, vn, "faults: expected a list", sizeof *g->rtu->faults, &items,
                          &g->rtu->nfaults, rfault_parse, g);
    g->rtu->faults = items;
    return rc;
}

/* ---- the shared keys ---- */

enum { K_CONNECT = 1, K_CLOCK, K_FAULTS };

static const sim_key_choice transports[] = {{"tcp", 0}, {"udp", 1}, {NULL, 0}};

static const sim_key station_keys[] = {
    SIM_KEY_HOOK("connect", K_CONNECT, "host:port of the centre (required)"),
    SIM_KEY_ENUM("transport", sim_rtu_conf, udp, transports, "tcp", "tcp or udp"),
    SIM_KEY_BOOL("spread", sim_rtu_conf, spread, "true",
                 "device k of n reports at phase k*interval/n"),
    SIM_KEY_HOOK("clock", K_CLOCK, "station clock at start: now or \"YYYY-MM-DD hh:mm:ss\""),
    SIM_KEY_RANGE("confirm_timeout", sim_rtu_conf, confirm_timeout, 0, 30 * 86400.0, "0..30d", "10",
                  "wall-clock wait for a confirm before a resend"),
    SIM_KEY_RANGE("reconnect", sim_rtu_conf, reconnect, 0, 30 * 86400.0, "0..30d", "2",
                  "wall-clock delay before dialing again"),
    SIM_KEY_HOOK("faults", K_FAULTS, "station faults"),
    SIM_KEY_UNUSED("port", "the centre is connect: host:port"),
    {.type = SIM_K_END},
};
const sim_keytab sim_scn_station_keys = {sim_scn_station_conf, station_keys};

int sim_scn_station_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn,
                        yaml_node_t *vn)
{
    sim_rtu_conf *r = g->rtu;
    const char *s = sim_scn_scalar(vn);
    switch (k ? k->id : 0) {
    case K_CONNECT: {
        char tmp[96], *end;
        if (sim_scn_str(c, vn, "connect", tmp, sizeof tmp))
            return SIM_EINVAL;
        char *colon = strrchr(tmp, ':');
        if (!colon)
            return sim_scn_err(c, vn, "connect: expected host:port");
        *colon = 0;
        long l = strtol(colon + 1, &end, 10);
        if (*end || end == colon + 1 || l < 1 || l > 65535)
            return sim_scn_err(c, vn, "connect: bad port");
        char *h = tmp;
        size_t hl = strlen(h);
        if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { /* [::1]:port */
            h[hl - 1] = 0;
            h++;
        }
        if (!h[0] || strlen(h) >= sizeof r->host)
            return sim_scn_err(c, vn, "connect: bad host");
        memcpy(r->host, h, strlen(h) + 1);
        r->port = (uint32_t)l;
        return 1;
    }
    case K_CLOCK:
        if (s && !strcmp(s, "now"))
            r->clock0 = NAN;
        else if (!s || parse_clock(s, &r->clock0))
            return sim_scn_err(c, vn,
                               "clock: now or \"YYYY-MM-DD hh:mm:ss\" (station time at start)");
        return 1;
    case K_FAULTS:
        return rfaults_parse(c, vn, g) ? SIM_EINVAL : 1;
    default:
        return 0;
    }
}

/* Checks both kinds make once every key is read. */
int sim_scn_station_finish(sim_scn *c, sim_group *g, yaml_node_t *m)
{
    if (!g->rtu->port)
        return sim_scn_err(c, m, "device group: missing connect: host:port (the centre)");
    if (!(g->rtu->interval > 0))
        return sim_scn_err(c, m, "interval must be > 0");
    return SIM_OK;
}
