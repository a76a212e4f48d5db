/* Scenario keys of the serial kinds: modbus-rtu buses and modbus-dtu links.
 * Groups of these kinds name a `bus`; every group on one bus shares its line
 * (a pty, or the DTU's TCP connection), and one of them carries the link keys
 * below. Devices of a group take unit ids unit, unit+1, ... on that bus; their
 * registers and faults are those of every Modbus kind (scn_modbus.c). */
#include "sim/kind.h"
#include "sim/scenario.h"
#include "sim/scn.h"

#include <stdlib.h>
#include <string.h>

enum {
    K_BUS = 100,
    K_PTY_LINK,
    K_PATH,
    K_CONNECT,
    K_REGISTER,
    K_REGISTER_HEX,
    K_HB_DATA,
    K_HB_HEX
};

#define LINK_KEY_BAUD                                                                              \
    SIM_KEY_INT("baud", sim_link_conf, baud, 0, 4000000, NULL,                                     \
                "emulated line speed (0 = answers at once)")
#define LINK_KEY_SILENCE                                                                           \
    SIM_KEY_RANGE("silence", sim_link_conf, silence_s, 0.001, 10, "1ms..10s", NULL,                \
                  "end-of-frame silence (default 3.5 characters)")
#define LINK_KEY_BUS                                                                               \
    SIM_KEY_HOOK("bus", K_BUS, "bus name shared by groups (default: the group alone)")
#define LINK_KEY_PORT SIM_KEY_UNUSED("port", "see bus, pty_link, connect")

static const sim_key rtu_keys[] = {
    LINK_KEY_BUS,
    LINK_KEY_BAUD,
    LINK_KEY_SILENCE,
    SIM_KEY_HOOK("pty_link", K_PTY_LINK, "symlink to the created pty's slave end"),
    SIM_KEY_HOOK("path", K_PATH, "serve this existing tty instead of creating a pty"),
    LINK_KEY_PORT,
    {.type = SIM_K_END},
};

static const sim_key dtu_keys[] = {
    LINK_KEY_BUS,
    LINK_KEY_BAUD,
    LINK_KEY_SILENCE,
    SIM_KEY_HOOK("connect", K_CONNECT, "host:port to dial (required)"),
    SIM_KEY_INT("number", sim_link_conf, number, 0, 100000000, "1", "the DTU's number for {n}"),
    SIM_KEY_HOOK("register", K_REGISTER, "registration packet as text, {n} = number"),
    SIM_KEY_HOOK("register_hex", K_REGISTER_HEX, "registration packet as hex bytes"),
    SIM_KEY_RANGE("heartbeat", sim_link_conf, heartbeat_s, 0.01, 86400, "10ms..1d", NULL,
                  "heartbeat interval (default none)"),
    SIM_KEY_HOOK("heartbeat_data", K_HB_DATA, "heartbeat bytes as text (default HB)"),
    SIM_KEY_HOOK("heartbeat_hex", K_HB_HEX, "heartbeat bytes as hex"),
    SIM_KEY_RANGE("reconnect", sim_link_conf, reconnect_s, 0.01, 3600, "10ms..1h", "1",
                  "first redial delay"),
    SIM_KEY_RANGE("reconnect_max", sim_link_conf, reconnect_max_s, 0.01, 3600, "10ms..1h", NULL,
                  "redial backoff cap (default 30s)"),
    LINK_KEY_PORT,
    {.type = SIM_K_END},
};

static void *link_conf(sim_group *g)
{
    return &g->link;
}

static const sim_keytab rtu_tab = {link_conf, rtu_keys};
static const sim_keytab dtu_tab = {link_conf, dtu_keys};

/* One of a pair of keys giving the same bytes as text (`register`,
 * `heartbeat_data`) or as hex (`register_hex`, `heartbeat_hex`). Text stays
 * NUL-terminated: a registration text is a template. */
static int data_key(sim_scn *c, yaml_node_t *kn, yaml_node_t *vn, int hex, const char *pair,
                    uint8_t *buf, size_t *len)
{
    const char *k = sim_scn_scalar(kn), *s = sim_scn_scalar(vn);
    int n;
    if (*len)
        return sim_scn_err(c, kn, "%s: give one of %s", k, pair);
    if (hex) {
        if (!s || (n = sim_scn_hex(s, buf, SIM_LINK_DATA_MAX)) < 0)
            return sim_scn_err(c, vn, "%s: expected hex bytes (\"7E 01 0A\"), at most %d", k,
                               SIM_LINK_DATA_MAX);
    } else {
        if (!s || !s[0] || strlen(s) >= SIM_LINK_DATA_MAX)
            return sim_scn_err(c, vn, "%s: 1..%d characters", k, SIM_LINK_DATA_MAX - 1);
        n = (int)strlen(s);
        memcpy(buf, s, (size_t)n + 1);
    }
    *len = (size_t)n;
    return 1;
}

static int link_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    sim_link_conf *L = &g->link;
    const char *name = sim_scn_scalar(kn);
    switch (k ? k->id : 0) {
    case K_BUS:
        if (sim_scn_str(c, vn, name, L->bus, sizeof L->bus) || !L->bus[0] || L->bus[0] == '@')
            return sim_scn_err(c, vn, "bus: expected a name (not starting with @)");
        return 1;
    case K_PTY_LINK:
        if (sim_scn_str(c, vn, name, L->pty_link, sizeof L->pty_link) || !L->pty_link[0])
            return sim_scn_err(c, vn, "pty_link: expected a path");
        return 1;
    case K_PATH:
        if (sim_scn_str(c, vn, name, L->path, sizeof L->path) || !L->path[0])
            return sim_scn_err(c, vn, "path: expected a tty path");
        return 1;
    case K_CONNECT: {
        if (sim_scn_str(c, vn, name, L->connect, sizeof L->connect))
            return SIM_EINVAL;
        const char *colon = strrchr(L->connect, ':');
        char *end;
        long port = colon ? strtol(colon + 1, &end, 10) : 0;
        if (!colon || colon == L->connect || *end || port < 1 || port > 65535)
            return sim_scn_err(c, vn, "connect: expected host:port");
        return 1;
    }
    case K_REGISTER:
    case K_REGISTER_HEX:
        L->register_tmpl = k->id == K_REGISTER;
        return data_key(c, kn, vn, k->id == K_REGISTER_HEX, "register and register_hex", L->reg,
                        &L->reg_len);
    case K_HB_DATA:
    case K_HB_HEX:
        return data_key(c, kn, vn, k->id == K_HB_HEX, "heartbeat_data and heartbeat_hex", L->hb,
                        &L->hb_len);
    default:
        return sim_scn_mbdev_key(c, g, k, kn, vn);
    }
}

/* Checks one serial group once all its keys are read. */
static int link_finish(sim_scn *c, sim_group *g, yaml_node_t *m)
{
    sim_link_conf *L = &g->link;
    int dtu = !strcmp(g->protocol, "modbus-dtu");
    /* The group that carries the bus's line settings: any key but bus. */
    L->link_line = sim_scn_first_line(c, m, dtu ? dtu_keys : rtu_keys, "bus");
    L->have_link = L->link_line > 0;
    if (g->unit == SIM_UNIT_ANY || g->unit < 1 || g->unit + (int)g->count - 1 > 247)
        return sim_scn_err(c, m, "unit: %s devices take unit ids unit..unit+count-1 in 1..247",
                           g->protocol);
    if (L->pty_link[0] && L->path[0])
        return sim_scn_err(c, m, "give either pty_link (create a pty) or path (an existing tty)");
    if (!dtu) {
        L->reconnect_s = 1;
        L->number = 1;
    }
    if (L->reconnect_max_s == 0)
        L->reconnect_max_s = L->reconnect_s > 30 ? L->reconnect_s : 30;
    if (L->reconnect_max_s < L->reconnect_s)
        return sim_scn_err(c, m, "reconnect_max is below reconnect");
    if (L->heartbeat_s > 0 && L->hb_len == 0) {
        memcpy(L->hb, "HB", 2);
        L->hb_len = 2;
    }
    if (L->register_tmpl) {
        char probe[SIM_LINK_DATA_MAX];
        if (sim_format_id((char *)L->reg, L->number, probe, sizeof probe))
            return sim_scn_err(c, m, "register: bad template '%s' (use {n} or {n:04})",
                               (char *)L->reg);
    }
    if (!L->bus[0])
        snprintf(L->bus, sizeof L->bus, "@%d", g->line); /* a bus of its own */
    return SIM_OK;
}

static int is_serial(const sim_group *g)
{
    return !strcmp(g->protocol, "modbus-rtu") || !strcmp(g->protocol, "modbus-dtu");
}

/* Groups on one bus, of both serial kinds: same kind, link keys in one group
 * only (copied to the others), unit ids unique, a DTU has somewhere to dial. */
static int check_buses(sim_scn *c, sim_scenario *s, yaml_node_t *devs)
{
    for (int i = 0; i < s->ngroups; i++) {
        sim_group *a = &s->groups[i];
        yaml_node_t *at = sim_scn_node(c, devs->data.sequence.items.start[i]);
        if (!is_serial(a))
            continue;
        int linked = a->link.have_link ? i : -1;
        for (int j = 0; j < s->ngroups; j++) {
            sim_group *b = &s->groups[j];
            if (j == i || !is_serial(b) || strcmp(a->link.bus, b->link.bus))
                continue;
            if (strcmp(a->protocol, b->protocol))
                return sim_scn_err(c, at, "bus %s: mixes %s and %s (line %d)", a->link.bus,
                                   a->protocol, b->protocol, b->line);
            if (b->link.have_link) {
                if (linked >= 0 && linked != j)
                    return sim_scn_err(c, at, "bus %s: link keys given twice (lines %d and %d)",
                                       a->link.bus, s->groups[linked].link.link_line,
                                       b->link.link_line);
                linked = j;
            }
            if (j < i && a->unit < b->unit + (int)b->count && b->unit < a->unit + (int)a->count)
                return sim_scn_err(c, at, "bus %s: unit ids %d..%d overlap the group on line %d",
                                   a->link.bus, a->unit, a->unit + (int)a->count - 1, b->line);
        }
        if (linked >= 0 && linked != i) {
            char bus[sizeof a->link.bus];
            memcpy(bus, a->link.bus, sizeof bus);
            a->link = s->groups[linked].link;
            a->link.have_link = 0;
            memcpy(a->link.bus, bus, sizeof bus);
        }
        if (!strcmp(a->protocol, "modbus-dtu") && !a->link.connect[0])
            return sim_scn_err(c, at, "bus %s: a modbus-dtu bus needs connect: host:port",
                               a->link.bus);
    }
    return SIM_OK;
}

const sim_scn_kind sim_scn_modbus_rtu = {
    .name = "modbus-rtu",
    .tabs = {&rtu_tab, &sim_scn_mbdev_keys},
    .parse_key = link_key,
    .finish = link_finish,
    .check = check_buses, /* both serial kinds */
};

const sim_scn_kind sim_scn_modbus_dtu = {
    .name = "modbus-dtu",
    .tabs = {&dtu_tab, &sim_scn_mbdev_keys},
    .parse_key = link_key,
    .finish = link_finish,
};
