/* The simulator's scenario key tables (sim/scn.h): unknown, duplicate and
 * misplaced keys are errors with file:line and the valid choices; defaults
 * come from the tables; every table row is well formed. Links libsim.a only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <string.h>

#include "sim/kind.h"
#include "sim/peer.h"
#include "sim/scenario.h"
#include "sim/scn.h"
#include "sim/station.h"

/* The device kinds (linked through the kinds table) read main.c's clock. */
double sim_now(const sim_ctx *ctx)
{
    return 0;
}

static sim_scenario *parse(const char *group, char *err, size_t cap)
{
    char y[1024];
    snprintf(y, sizeof y, "name: t\ndevices:\n  - %s\n", group);
    return sim_scenario_parse(y, strlen(y), "t.yaml", NULL, err, cap);
}

static void expect_error(const char *group, const char *want)
{
    char err[512] = "";
    sim_scenario *s = parse(group, err, sizeof err);
    if (s) {
        sim_scenario_free(s);
        fail_msg("'%s' parsed, expected '%s'", group, want);
    }
    if (!strstr(err, want))
        fail_msg("error '%s' does not contain '%s'", err, want);
}

static void test_duplicate_keys(void **st)
{
    expect_error("{id: a, port: 1, port: 2}",
                 "t.yaml:3: device group: duplicate key 'port' (first on line 3)");
    expect_error("{id: a, port: 1, registers: [{addr: 1, addr: 2}]}",
                 "register: duplicate key 'addr'");
    expect_error("{id: a, protocol: hj212, connect: 'h:1', mn: x, factors: [{code: a, code: b}]}",
                 "factor: duplicate key 'code'");
}

static void test_unknown_keys_name_the_choices(void **st)
{
    expect_error("{id: a, port: 1, colour: red}",
                 "t.yaml:3: device group: unknown key 'colour' (modbus-tcp keys: id, first, "
                 "count, protocol, host, port, unit, registers, faults)");
    expect_error("{id: a, port: 1, faults: [{type: late, every: 2}]}",
                 "fault late: unknown key 'every' (type, from, to, delay)");
    /* A key of another kind says whose it is. */
    expect_error("{id: a, protocol: sl651, connect: 'h:1', address: 1, st: '32'}",
                 "st: not a key of sl651 (it is for hj212)");
    expect_error("{id: a, protocol: coap-smoke, port: 1, registers: []}",
                 "registers: not a key of coap-smoke (it is for modbus-tcp, modbus-rtu and "
                 "modbus-dtu)");
    expect_error("{id: a, protocol: sl651, connect: 'h:1', address: 1, port: 5}",
                 "port: not used by sl651 (the centre is connect: host:port)");
    expect_error("{id: a, protocol: sl651, connect: 'h:1', address: 1, mode: M3}",
                 "mode: M1, m1, M2 or m2");
}

static void test_defaults_per_kind(void **st)
{
    char err[512] = "";
    sim_scenario *s =
        parse("{id: a, protocol: sl651, connect: 'h:1', address: 1}", err, sizeof err);
    assert_non_null(s);
    assert_true(s->groups[0].rtu->interval == 300);
    assert_string_equal(s->groups[0].rtu->password, "1234");
    assert_int_equal(s->groups[0].rtu->resends, 2);
    assert_int_equal(s->groups[0].rtu->m2, 1);
    sim_scenario_free(s);
    s = parse("{id: a, protocol: hj212, connect: 'h:1', mn: x, factors: [{code: a}]}", err,
              sizeof err);
    assert_non_null(s);
    assert_true(s->groups[0].rtu->interval == 30);
    assert_string_equal(s->groups[0].rtu->password, "123456");
    assert_string_equal(s->groups[0].rtu->st, "32");
    assert_int_equal(s->groups[0].rtu->factors[0].decimals, 2);
    assert_int_equal(s->groups[0].rtu->factors[0].flag, 'N');
    sim_scenario_free(s);
    s = parse("{id: a, protocol: coap-smoke, port: 1}", err, sizeof err);
    assert_non_null(s);
    assert_string_equal(s->groups[0].peer->psk, "{imei}-secret");
    assert_true(s->groups[0].peer->heartbeat == 86400);
    assert_int_equal(s->groups[0].peer->tlv, 1);
    sim_scenario_free(s);
}

/* Every row of every kind's tables: a name once per kind, a meaning, hook ids
 * unique within the kind, a type the engine knows. */
static void test_tables_well_formed(void **st)
{
    const sim_scn_kind *kinds[] = {&sim_scn_modbus_tcp, &sim_scn_modbus_rtu, &sim_scn_modbus_dtu,
                                   &sim_scn_sl651,      &sim_scn_hj212,      &sim_scn_coap_smoke,
                                   &sim_scn_mqtt_gauge};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        const sim_key *rows[64];
        int n = 0;
        for (int t = 0; t < 4 && kinds[i]->tabs[t]; t++)
            for (const sim_key *k = kinds[i]->tabs[t]->keys; k->type != SIM_K_END; k++) {
                if (!k->name || !k->what || k->type > SIM_K_UNUSED)
                    fail_msg("%s: a row without name, meaning or type", kinds[i]->name);
                for (int j = 0; j < n; j++) {
                    if (!strcmp(rows[j]->name, k->name))
                        fail_msg("%s: key %s twice", kinds[i]->name, k->name);
                    if (k->type == SIM_K_HOOK && rows[j]->type == SIM_K_HOOK &&
                        rows[j]->id == k->id)
                        fail_msg("%s: hook id %d twice", kinds[i]->name, k->id);
                }
                assert_true(n < 64);
                rows[n++] = k;
            }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_unknown_keys_name_the_choices),
        cmocka_unit_test(test_defaults_per_kind),
        cmocka_unit_test(test_tables_well_formed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
