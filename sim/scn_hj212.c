/* Scenario keys of the hj212 kind (environmental stations, HJ 212-2017): the
 * MN, the packet fields, the schedules and the factors with their flags; the
 * keys both station kinds have are in scn_station.c. */
#include "sim/scenario.h"
#include "sim/scn.h"
#include "sim/station.h"

#include <stdlib.h>
#include <string.h>

enum { K_FACTORS = 100 };

#define DURATION(n, f, d, w) SIM_KEY_RANGE(n, sim_rtu_conf, f, 0, 30 * 86400.0, "0..30d", d, w)

static const sim_key hj212_keys[] = {
    SIM_KEY_STR("mn", sim_rtu_conf, address, NULL, "MN template (required)"),
    SIM_KEY_STR("address", sim_rtu_conf, address, NULL, "the same as mn"),
    SIM_KEY_STR("password", sim_rtu_conf, password, "123456", "PW"),
    SIM_KEY_STR("st", sim_rtu_conf, st, "32", "system code ST"),
    SIM_KEY_BOOL("reply", sim_rtu_conf, reply, NULL, "Flag=5: answers required, 9014 matched"),
    SIM_KEY_INT("resends", sim_rtu_conf, resends, 0, 10, "0", "resends of an unanswered packet"),
    DURATION("interval", interval, "30s", "real-time data (2011) period"),
    DURATION("minute_every", minute_every, "10m", "2051 period; 0 = none"),
    DURATION("hour_every", hour_every, "1h", "2061 period; 0 = none"),
    SIM_KEY_HOOK("factors", K_FACTORS, "[{code, curve|value, flag, flags, decimals}]"),
    SIM_KEY_INT("hour_packets", sim_rtu_conf, hour_packets, 1, 64, "1",
                "2061 split into this many PNUM/PNO packets"),
    SIM_KEY_STR("quirks", sim_rtu_conf, quirks, NULL, "field variants: crc_lsb"),
    {.type = SIM_K_END},
};
static const sim_keytab hj212_tab = {sim_scn_station_conf, hj212_keys};

/* ---- factors ---- */

static int flag_ok(const char *s)
{
    return s && strlen(s) == 1 && strchr("NFMSDCTB", s[0]);
}

static int flag_set(sim_scn *c, yaml_node_t *vn, char *out)
{
    if (!flag_ok(sim_scn_scalar(vn)))
        return sim_scn_err(c, vn, "flag: one of N F M S D C T B");
    *out = sim_scn_scalar(vn)[0];
    return 1;
}

enum { K_CODE = 1, K_FLAG, K_FLAGS };

static const sim_key flag_keys[] = {
    SIM_KEY_NUM("from", sim_rflag, from, NULL, "window start"),
    SIM_KEY_NUM("to", sim_rflag, to, "-1", "window end (default: forever)"),
    SIM_KEY_HOOK("flag", K_FLAG, "N F M S D C T B (required)"),
    {.type = SIM_K_END},
};

static int flag_key(sim_scn *c, void *arg, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    return flag_set(c, vn, &((sim_rflag *)arg)->flag);
}

static int flag_parse(sim_scn *c, yaml_node_t *m, void *item, int i, void *arg)
{
    sim_rflag *fl = item;
    int rc = sim_scn_keys(c, m, "flags", flag_keys, fl, 0, flag_key, fl);
    if (rc)
        return rc;
    return fl->flag ? SIM_OK : sim_scn_err(c, m, "flags: missing flag");
}

static int flags_parse(sim_scn *c, yaml_node_t *vn, sim_factor *f)
{
    void *items;
    int rc = sim_scn_list(c, vn, "flags: expected a list of {from, to, flag}", sizeof *f->flags,
                          &items, &f->nflags, flag_parse, NULL);
    f->flags = items;
    return rc;
}

static const sim_key factor_keys[] = {
    SIM_KEY_HOOK("code", K_CODE, "the factor code, e.g. w01018 (required)"),
    SIM_KEY_CURVE("curve", sim_factor, curve, "its value over scenario time"),
    SIM_KEY_CURVE("value", sim_factor, curve, "a constant"),
    SIM_KEY_HOOK("flag", K_FLAG, "flag outside the flags windows (default N)"),
    SIM_KEY_HOOK("flags", K_FLAGS, "[{from, to, flag}]"),
    SIM_KEY_INT("decimals", sim_factor, decimals, 0, 6, "2", "decimals sent"),
    {.type = SIM_K_END},
};

static int factor_key(sim_scn *c, void *arg, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    sim_factor *f = arg;
    switch (k->id) {
    case K_CODE:
        if (sim_scn_str(c, vn, "code", f->code, sizeof f->code))
            return SIM_EINVAL;
        if (strpbrk(f->code, ";,=&") || !f->code[0])
            return sim_scn_err(c, vn, "code: no ; , = or & allowed");
        return 1;
    case K_FLAG:
        return flag_set(c, vn, &f->flag);
    default:
        return flags_parse(c, vn, f) ? SIM_EINVAL : 1;
    }
}

static int factor_parse(sim_scn *c, yaml_node_t *m, void *item, int i, void *arg)
{
    sim_factor *f = item;
    f->flag = 'N';
    int rc = sim_scn_keys(c, m, "factor", factor_keys, f, 0, factor_key, f);
    if (rc)
        return rc;
    return f->code[0] ? SIM_OK : sim_scn_err(c, m, "factor: missing code");
}

static int factors_parse(sim_scn *c, yaml_node_t *vn, sim_rtu_conf *r)
{
    void *items;
    int rc = sim_scn_list(c, vn, "factors: expected a list of {code, curve, flag}",
                          sizeof *r->factors, &items, &r->nfactors, factor_parse, NULL);
    r->factors = items;
    return rc;
}

static int hj212_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    if (k && k->id == K_FACTORS)
        return factors_parse(c, vn, g->rtu) ? SIM_EINVAL : 1;
    return sim_scn_station_key(c, g, k, kn, vn);
}

static int hj212_finish(sim_scn *c, sim_group *g, yaml_node_t *m)
{
    sim_rtu_conf *r = g->rtu;
    int rc = sim_scn_station_finish(c, g, m);
    if (rc)
        return rc;
    if (!r->address[0])
        return sim_scn_err(c, m, "device group: missing mn");
    if (r->nfactors == 0)
        return sim_scn_err(c, m, "device group: hj212 needs factors: [{code, curve}, ...]");
    if (strpbrk(r->password, ";,=&") || strpbrk(r->st, ";,=&") || strpbrk(r->address, ";,=&"))
        return sim_scn_err(c, m, "password, st and mn may not hold ; , = or &");
    return SIM_OK;
}

const sim_scn_kind sim_scn_hj212 = {
    .name = "hj212",
    .tabs = {&sim_scn_station_keys, &hj212_tab},
    .init = sim_scn_station_init,
    .parse_key = hj212_key,
    .finish = hj212_finish,
};
