/* Scenario keys of the mqtt-gauge kind (gauges publishing JSON readings to a
 * broker); the keys both peer kinds have are in scn_peer.c. */
#include "sim/enc_gauge.h"
#include "sim/peer.h"
#include "sim/scenario.h"
#include "sim/scn.h"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { K_FIELDS = 100 };

static const sim_key_choice ts_formats[] = {
    {"iso", SIM_TS_ISO},
    {"epoch", SIM_TS_EPOCH},
    {"epoch_ms", SIM_TS_EPOCH_MS},
    {"none", SIM_TS_NONE},
    {NULL, 0},
};

static const sim_key mqtt_keys[] = {
    SIM_KEY_STR("topic", sim_peer, topic, "field/gauges/{id}/data", "topic template"),
    SIM_KEY_STR("status_topic", sim_peer, status_topic, NULL,
                "default: topic with its last level replaced by status"),
    SIM_KEY_STR("client_id", sim_peer, client_id, "{id}", "client id template"),
    SIM_KEY_RANGE("interval", sim_peer, interval, DBL_TRUE_MIN, DBL_MAX, "must be > 0", "10",
                  "scenario time between readings"),
    SIM_KEY_RANGE("keepalive", sim_peer, keepalive, 1, 3600, "1s..1h", "30", "MQTT keep-alive"),
    SIM_KEY_INT("qos", sim_peer, qos, 0, 2, "1", "publish QoS"),
    SIM_KEY_STR("ts_field", sim_peer, ts_field, "ts", "name of the time field"),
    SIM_KEY_ENUM("ts", sim_peer, ts_format, ts_formats, "iso", "time format"),
    SIM_KEY_STR("id_field", sim_peer, id_field, NULL, "name of the device id field (none)"),
    SIM_KEY_HOOK("fields", K_FIELDS, "[{name, value|curve, decimals}]"),
    {.type = SIM_K_END},
};
static const sim_keytab mqtt_tab = {sim_scn_peer_conf, mqtt_keys};

static int mqtt_key(sim_scn *c, sim_group *g, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    if (k && k->id == K_FIELDS)
        return 1; /* read by finish, once ts_field and id_field are known */
    return sim_scn_peer_key(c, g, k, kn, vn);
}

/* ---- fields ---- */

enum { K_NAME = 1 };

static const sim_key field_keys[] = {
    SIM_KEY_HOOK("name", K_NAME, "JSON name (required)"),
    SIM_KEY_CURVE("value", sim_field, curve, "a constant"),
    SIM_KEY_CURVE("curve", sim_field, curve, "the value over scenario time"),
    SIM_KEY_INT("decimals", sim_field, decimals, 0, 9, "3", "decimals sent"),
    {.type = SIM_K_END},
};

static int field_key(sim_scn *c, void *arg, const sim_key *k, yaml_node_t *kn, yaml_node_t *vn)
{
    sim_field *f = arg;
    if (sim_scn_str(c, vn, "name", f->name, sizeof f->name))
        return SIM_EINVAL;
    if (!sim_scn_json_name_ok(f->name))
        return sim_scn_err(c, vn, "name: letters, digits, _ . - only");
    return 1;
}

static int field_parse(sim_scn *c, yaml_node_t *m, void *item, int i, void *arg)
{
    sim_field *f = item, *first = f - i;
    const sim_peer *p = arg;
    int rc = sim_scn_keys(c, m, "field", field_keys, f, 0, field_key, f);
    if (rc)
        return rc;
    if (!f->name[0])
        return sim_scn_err(c, m, "field: missing name");
    if (!strcmp(f->name, p->ts_field) || !strcmp(f->name, p->id_field))
        return sim_scn_err(c, m, "field: '%s' is already the ts or id field", f->name);
    for (int j = 0; j < i; j++)
        if (!strcmp(first[j].name, f->name))
            return sim_scn_err(c, m, "field: duplicate name '%s'", f->name);
    return SIM_OK;
}

static int fields_parse(sim_scn *c, yaml_node_t *seq, sim_peer *p)
{
    static const char expected[] = "fields: expected a list of {name, value|curve, decimals}";
    yaml_node_item_t *it;
    void *items;
    int n;
    if (sim_scn_seq(c, seq, "fields", &it, &n))
        return sim_scn_err(c, seq, "%s", expected);
    if (n < 1 || n > 64)
        return sim_scn_err(c, seq, "fields: 1..64 fields");
    int rc = sim_scn_list(c, seq, expected, sizeof *p->fields, &items, &p->nfields, field_parse, p);
    p->fields = items;
    return rc;
}

/* Without fields: a level (no curve: 0) and a battery at 3.6 V. */
static int default_fields(sim_peer *p)
{
    p->fields = calloc(2, sizeof *p->fields);
    if (!p->fields)
        return SIM_ENOMEM;
    p->nfields = 2;
    snprintf(p->fields[0].name, sizeof p->fields[0].name, "level");
    p->fields[0].decimals = 3;
    snprintf(p->fields[1].name, sizeof p->fields[1].name, "battery");
    p->fields[1].decimals = 2;
    p->fields[1].curve.kind = SIM_C_CONSTANT;
    p->fields[1].curve.p[SIM_P_VALUE].v = malloc(sizeof(double));
    if (!p->fields[1].curve.p[SIM_P_VALUE].v)
        return SIM_ENOMEM;
    p->fields[1].curve.p[SIM_P_VALUE].n = 1;
    p->fields[1].curve.p[SIM_P_VALUE].v[0] = 3.6;
    return SIM_OK;
}

static int mqtt_finish(sim_scn *c, sim_group *g, yaml_node_t *m)
{
    sim_peer *p = g->peer;
    yaml_node_t *topic_n = sim_scn_get(c, m, "topic"), *fields = sim_scn_get(c, m, "fields");
    int rc;
    static const char *const names[] = {"ts_field", "id_field"};
    for (int i = 0; i < 2; i++) {
        const char *v = i ? p->id_field : p->ts_field;
        if ((v[0] || !i) && !sim_scn_json_name_ok(v))
            return sim_scn_err(c, sim_scn_get(c, m, names[i]), "%s: letters, digits, _ . - only",
                               names[i]);
    }
    if (!topic_n)
        topic_n = m;
    if (!p->status_topic[0]) {
        const char *slash = strrchr(p->topic, '/');
        size_t keep = slash ? (size_t)(slash - p->topic) + 1 : 0;
        if (keep + sizeof "status" > sizeof p->status_topic)
            return sim_scn_err(c, topic_n, "topic: too long to derive status_topic");
        memcpy(p->status_topic, p->topic, keep);
        memcpy(p->status_topic + keep, "status", sizeof "status");
    }
    if ((rc = sim_scn_peer_tmpl(c, topic_n, g, "topic", p->topic, 0)) ||
        (rc = sim_scn_peer_tmpl(c, m, g, "status_topic", p->status_topic, 0)) ||
        (rc = sim_scn_peer_tmpl(c, m, g, "client_id", p->client_id, 0)))
        return rc;
    if ((rc = fields ? fields_parse(c, fields, p) : default_fields(p)))
        return rc;
    return sim_scn_peer_finish(c, g, m);
}

const sim_scn_kind sim_scn_mqtt_gauge = {
    .name = "mqtt-gauge",
    .tabs = {&sim_scn_peer_addr_keys, &sim_scn_peer_keys, &mqtt_tab},
    .init = sim_scn_peer_init,
    .parse_key = mqtt_key,
    .finish = mqtt_finish,
};
