/* Scenario keys of the Modbus kinds: the modbus-tcp kind (host, port) and what
 * every Modbus kind serves (unit, registers, faults; modbus-rtu and modbus-dtu
 * take these too, see scn_rtu.c). */
#include "sim/kind.h"
#include "sim/scenario.h"
#include "sim/scn.h"

#include <stdlib.h>
#include <string.h>

/* ---- registers ---- */

static const sim_key_choice tables[] = {
    {"holding", SIM_TAB_HOLDING},
    {"input", SIM_TAB_INPUT},
    {"coil", SIM_TAB_COIL},
    {"discrete", SIM_TAB_DISCRETE},
    {NULL, 0},
};

static const sim_key_choice types[] = {
    {"uint16", SIM_T_UINT16},   {"int16", SIM_T_INT16},
    {"uint32", SIM_T_UINT32},   {"int32", SIM_T_INT32},
    {"float32", SIM_T_FLOAT32}, {"uint64", SIM_T_UINT64},
    {"int64", SIM_T_INT64},     {"float64", SIM_T_FLOAT64},
    {"bool", SIM_T_BOOL},       {NULL, 0},
};

enum { K_ORDER = 1 };                        /* a register's hook */
enum { K_UNIT = 50, K_REGISTERS, K_FAULTS }; /* shared: below 100 */

static const sim_key reg_keys[] = {
    SIM_KEY_ENUM("kind", sim_regdef, table, tables, "holding", "the table"),
    SIM_KEY_INT("addr", sim_regdef, addr, 0, 65535, NULL, "first address (required)"),
    SIM_KEY_ENUM("type", sim_regdef, type, types, NULL,
                 "value type (uint16 for registers, bool for bits)"),
    SIM_KEY_HOOK("order", K_ORDER, "byte order on the wire (ABCD, CDAB, BADC, DCBA, ...)"),
    SIM_KEY_NUM("scale", sim_regdef, scale, "1", "raw = value * scale + offset"),
    SIM_KEY_NUM("offset", sim_regdef, offset, NULL, "raw = value * scale + offset"),
    SIM_KEY_BOOL("writable", sim_regdef, writable, NULL, "FC 05/06/0F/10 may write it"),
    SIM_KEY_CURVE("value", sim_regdef, curve, "a constant (or a list, per device)"),
    SIM_KEY_CURVE("curve", sim_regdef, curve, "the value over scenario time"),
    {.type = SIM_K_END},
};

static int reg_key(sim_scn *c, void *arg, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    sim_regdef *r = arg;
    const char *s = sim_scn_scalar(vn);
    if (!s || sim_order_parse(s, &r->order))
        return sim_scn_err(c, vn, "order: a byte order such as ABCD, CDAB, BADC, DCBA, GHEFCDAB");
    return 1;
}

static int parse_reg(sim_scn *c, yaml_node_t *m, void *item, int i, void *arg)
{
    sim_regdef *r = item;
    r->line = sim_scn_line(m);
    int rc = sim_scn_keys(c, m, "register", reg_keys, r, 0, reg_key, r);
    if (rc)
        return rc;
    if (!sim_scn_get(c, m, "addr"))
        return sim_scn_err(c, m, "register: missing addr");
    int bits = r->table == SIM_TAB_COIL || r->table == SIM_TAB_DISCRETE;
    if (!sim_scn_get(c, m, "type"))
        r->type = bits ? SIM_T_BOOL : SIM_T_UINT16;
    if (bits != (r->type == SIM_T_BOOL))
        return sim_scn_err(c, m, "register: coils and discretes are bool, registers are not");
    if (r->order.n && bits)
        return sim_scn_err(c, m, "register: order makes no sense for a bit");
    if (r->order.n) {
        uint16_t w[4];
        if (sim_encode(0, r->type, &r->order, w) < 0)
            return sim_scn_err(c, m, "register: order does not fit type %s",
                               sim_type_name(r->type));
    }
    if ((uint32_t)r->addr + (uint32_t)sim_type_regs(r->type) > 65536)
        return sim_scn_err(c, m, "register: runs past address 65535");
    if (r->writable && r->table != SIM_TAB_COIL && r->table != SIM_TAB_HOLDING)
        return sim_scn_err(c, m, "register: only coils and holding registers are writable");
    return SIM_OK;
}

static int parse_regs(sim_scn *c, yaml_node_t *vn, sim_group *g)
{
    void *items;
    int n, rc = sim_scn_list(c, vn, "registers: expected a list", sizeof *g->regs, &items,
                             &g->nregs, parse_reg, NULL);
    g->regs = items;
    if (rc)
        return rc;
    n = g->nregs;
    yaml_node_item_t *it = vn->data.sequence.items.start;
    /* Overlaps would make a read ambiguous. */
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++) {
            sim_regdef *a = &g->regs[i], *b = &g->regs[j];
            if (a->table != b->table)
                continue;
            int ae = a->addr + sim_type_regs(a->type), be = b->addr + sim_type_regs(b->type);
            if (a->addr < be && b->addr < ae)
                return sim_scn_err(c, sim_scn_node(c, it[i]),
                                   "register: overlaps the one on line %d", b->line);
        }
    return SIM_OK;
}

/* ---- faults ---- */

static const sim_key_choice fault_types[] = {
    {"silent", SIM_F_SILENT},       {"late", SIM_F_LATE},
    {"exception", SIM_F_EXCEPTION}, {"garbage", SIM_F_GARBAGE},
    {"bad_crc", SIM_F_BAD_CRC},     {"drop", SIM_F_DROP},
    {"truncated", SIM_F_TRUNCATED}, {NULL, 0},
};

#define F(x) (1u << (x))
#define EVERY_FAULTS (F(SIM_F_GARBAGE) | F(SIM_F_DROP) | F(SIM_F_BAD_CRC) | F(SIM_F_TRUNCATED))

static const sim_key fault_keys[] = {
    SIM_KEY_ENUM("type", sim_fault, kind, fault_types, NULL, "the fault"),
    SIM_KEY_NUM("from", sim_fault, from, NULL, "window start, scenario time"),
    SIM_KEY_NUM("to", sim_fault, to, "-1", "window end (default: forever)"),
    SIM_KEY_RANGE_FOR(F(SIM_F_LATE), "delay", sim_fault, delay_s, 0, 3600, "0..1h", NULL,
                      "late: wall-clock delay"),
    SIM_KEY_INT_FOR(EVERY_FAULTS, "every", sim_fault, every, 1, 1000000000, NULL,
                    "every Nth answer or request"),
    SIM_KEY_INT_FOR(F(SIM_F_EXCEPTION), "code", sim_fault, code, 1, 255, "4", "exception code"),
    SIM_KEY_INT_FOR(F(SIM_F_EXCEPTION), "addr", sim_fault, addr, 0, 65535, NULL,
                    "only requests touching it"),
    SIM_KEY_INT_FOR(F(SIM_F_EXCEPTION), "fc", sim_fault, fc, 1, 127, NULL,
                    "only this function code"),
    {.type = SIM_K_END},
};

static int parse_fault(sim_scn *c, yaml_node_t *m, void *item, int i, void *arg)
{
    sim_fault *f = item;
    f->addr = -1;
    int rc = sim_scn_typed(c, m, "fault", fault_types, fault_keys, f, NULL, NULL);
    if (rc)
        return rc;
    if (f->to >= 0 && f->to < f->from)
        return sim_scn_err(c, m, "fault: to is before from");
    return SIM_OK;
}

static int parse_faults(sim_scn *c, yaml_node_t *vn, sim_group *g)
{
    void *items;
    int rc = sim_scn_list(c, vn, "faults: expected a list", sizeof *g->faults, &items, &g->nfaults,
                          parse_fault, NULL);
    g->faults = items;
    return rc;
}

/* ---- what every Modbus kind serves ---- */

static const sim_key mbdev_keys[] = {
    SIM_KEY_HOOK("unit", K_UNIT, "unit id 0..255, or any (default 1)"),
    SIM_KEY_HOOK("registers", K_REGISTERS, "what each device serves"),
    SIM_KEY_HOOK("faults", K_FAULTS, "scheduled faults"),
    {.type = SIM_K_END},
};
const sim_keytab sim_scn_mbdev_keys = {NULL, mbdev_keys};

int sim_scn_mbdev_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    long l;
    int rc = SIM_OK;
    switch (k ? k->id : 0) {
    case K_UNIT:
        if (sim_scn_scalar(vn) && !strcmp(sim_scn_scalar(vn), "any"))
            g->unit = SIM_UNIT_ANY;
        else if ((rc = sim_scn_int(c, vn, "unit", 0, 255, &l)) == SIM_OK)
            g->unit = (int)l;
        break;
    case K_REGISTERS:
        rc = parse_regs(c, vn, g);
        break;
    case K_FAULTS:
        rc = parse_faults(c, vn, g);
        break;
    default:
        return 0;
    }
    return rc ? rc : 1;
}

/* ---- modbus-tcp ---- */

static const sim_key tcp_keys[] = {
    SIM_KEY_STR("host", sim_group, host, NULL, "listen address (default: --bind)"),
    SIM_KEY_INT("port", sim_group, port, 1, 65535, NULL,
                "device k (0-based) listens on port + k (required)"),
    {.type = SIM_K_END},
};
static const sim_keytab tcp_tab = {NULL, tcp_keys};

static int tcp_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    const char *name = sim_scn_scalar(kn);
    if (!k && (sim_scn_kind_has("modbus-rtu", name) || sim_scn_kind_has("modbus-dtu", name)))
        return sim_scn_err(c, kn, "%s: bus and link keys are for modbus-rtu and modbus-dtu",
                           g->protocol);
    return sim_scn_mbdev_key(c, g, k, kn, vn);
}

static int tcp_finish(sim_scn *c, sim_group *g, yaml_node_t *m)
{
    if (!g->port)
        return sim_scn_err(c, m, "device group: missing port");
    if (g->port + g->count - 1 > 65535)
        return sim_scn_err(c, m, "port: %u devices from port %u run past 65535", g->count, g->port);
    return SIM_OK;
}

/* Two devices on one port would fail at bind time; say so here instead. */
static int tcp_check(sim_scn *c, sim_scenario *s, yaml_node_t *devs)
{
    for (int i = 0; i < s->ngroups; i++)
        for (int j = 0; j < i; j++) {
            sim_group *a = &s->groups[i], *b = &s->groups[j];
            if (strcmp(a->protocol, "modbus-tcp") || strcmp(b->protocol, "modbus-tcp") ||
                strcmp(a->host, b->host))
                continue;
            if (a->port < b->port + b->count && b->port < a->port + a->count)
                return sim_scn_err(c, sim_scn_node(c, devs->data.sequence.items.start[i]),
                                   "port range %u..%u overlaps the group on line %d", a->port,
                                   a->port + a->count - 1, b->line);
        }
    return SIM_OK;
}

const sim_scn_kind sim_scn_modbus_tcp = {
    .name = "modbus-tcp",
    .tabs = {&tcp_tab, &sim_scn_mbdev_keys},
    .parse_key = tcp_key,
    .finish = tcp_finish,
    .check = tcp_check,
};
