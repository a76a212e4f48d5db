/* base/cfgmap.c: the config table. Defaults, types, units, bounds, unknown, duplicate
 * and missing keys, each error naming the file, the line and the full key path. */
#include "base/cfgmap.h"
#include "base/model.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

typedef struct conf {
    char name[8];
    int64_t count;
    double ratio;
    int on;
    int64_t wait_ms;
    int64_t bytes;
    int mode;
    const gw_ynode *extra;
} conf;

static const char *const modes[] = {"fast", "safe", NULL};

#define OF(f) offsetof(conf, f)
static const gw_cfgkey tab[] = {
    {"name", GW_CT_STR, "dflt", 0, -1, OF(name), sizeof(((conf *)0)->name), NULL, 0, "a name"},
    {"count", GW_CT_INT, "3", 1, 10, OF(count), 0, NULL, 0, "a count"},
    {"ratio", GW_CT_DOUBLE, "0.5", 0, 1, OF(ratio), 0, NULL, 0, "a ratio"},
    {"on", GW_CT_BOOL, "false", 0, -1, OF(on), 0, NULL, 0, "a switch"},
    {"wait", GW_CT_DURATION, "2s", 0.001, 3600, OF(wait_ms), 0, NULL, 0, "a duration"},
    {"bytes", GW_CT_SIZE, "1KiB", 0, -1, OF(bytes), 0, NULL, 0, "a size"},
    {"mode", GW_CT_ENUM, "safe", 0, -1, OF(mode), 0, modes, 0, "a mode"},
    {"extra", GW_CT_NODE, NULL, 0, -1, OF(extra), 0, NULL, 0, "a subtree"},
    {NULL}};

static const gw_cfgkey required_tab[] = {{"id", GW_CT_STR, NULL, 0, -1, OF(name),
                                          sizeof(((conf *)0)->name), NULL, GW_CF_REQUIRED, "an id"},
                                         {NULL}};

static const gw_cfgkey other_tab[] = {
    {"port", GW_CT_INT, "1", 0, -1, 0, 0, NULL, 0, "someone else's key"}, {NULL}};

/* Parses text as test.yaml and applies tab; returns the rc, err holds the message. */
static int apply(const gw_cfgkey *t, const gw_cfgkey *ignore, const char *text, conf *c, char *err,
                 size_t errlen)
{
    gw_ydoc doc;
    char perr[200];
    memset(c, 0, sizeof *c);
    err[0] = '\0';
    int rc = gw_ydoc_parse(&doc, "test.yaml", text, strlen(text), perr, sizeof perr);
    if (rc) {
        snprintf(err, errlen, "parse: %s", perr);
        gw_ydoc_free(&doc);
        return rc;
    }
    rc = gw_cfg_apply_ex(t, ignore, doc.root, c, "dev", err, errlen);
    gw_ydoc_free(&doc);
    return rc;
}

static void defaults_only(void **state)
{
    (void)state;
    conf c;
    char err[256] = "";
    assert_int_equal(gw_cfg_apply(tab, NULL, &c, "", err, sizeof err), GW_OK);
    assert_string_equal(c.name, "dflt");
    assert_int_equal(c.count, 3);
    assert_true(c.ratio == 0.5);
    assert_int_equal(c.on, 0);
    assert_int_equal(c.wait_ms, 2000);
    assert_int_equal(c.bytes, 1024);
    assert_int_equal(c.mode, 1);
    assert_null(c.extra);
}

static void every_type(void **state)
{
    (void)state;
    conf c;
    char err[256];
    assert_int_equal(apply(tab, NULL,
                           "name: abc\ncount: 10\nratio: 1\non: yes\nwait: 250ms\n"
                           "bytes: 64MiB\nmode: fast\nextra: {a: 1}\n",
                           &c, err, sizeof err),
                     GW_OK);
    assert_string_equal(c.name, "abc");
    assert_int_equal(c.count, 10);
    assert_true(c.ratio == 1.0);
    assert_int_equal(c.on, 1);
    assert_int_equal(c.wait_ms, 250);
    assert_int_equal(c.bytes, 64 * 1048576);
    assert_int_equal(c.mode, 0);
    assert_non_null(c.extra);
}

static void units(void **state)
{
    (void)state;
    int64_t v;
    assert_int_equal(gw_parse_duration_ms("5", &v), GW_OK); /* a bare number is seconds */
    assert_int_equal(v, 5000);
    assert_int_equal(gw_parse_duration_ms("1.5s", &v), GW_OK);
    assert_int_equal(v, 1500);
    assert_int_equal(gw_parse_duration_ms("2m", &v), GW_OK);
    assert_int_equal(v, 120000);
    assert_int_equal(gw_parse_duration_ms("1h", &v), GW_OK);
    assert_int_equal(v, 3600000);
    assert_int_equal(gw_parse_duration_ms("1d", &v), GW_OK);
    assert_int_equal(v, 86400000);
    assert_int_equal(gw_parse_duration_ms("-1s", &v), GW_EINVAL);
    assert_int_equal(gw_parse_duration_ms("5 parsecs", &v), GW_EINVAL);
    assert_int_equal(gw_parse_duration_ms("", &v), GW_EINVAL);
    assert_int_equal(gw_parse_duration_ms("nan", &v), GW_EINVAL);
    assert_int_equal(gw_parse_duration_ms("1e300d", &v), GW_EINVAL); /* beyond int64 ms */
    assert_int_equal(gw_parse_size("512", &v), GW_OK);
    assert_int_equal(v, 512);
    assert_int_equal(gw_parse_size("2KB", &v), GW_OK);
    assert_int_equal(v, 2000);
    assert_int_equal(gw_parse_size("1GiB", &v), GW_OK);
    assert_int_equal(v, 1073741824);
    assert_int_equal(gw_parse_size("1 TiB", &v), GW_EINVAL);
    assert_int_equal(gw_parse_size("inf", &v), GW_EINVAL);
    int b;
    assert_int_equal(gw_parse_bool("on", &b), GW_OK);
    assert_int_equal(b, 1);
    assert_int_equal(gw_parse_bool("TRUE", &b), GW_EINVAL);
    assert_int_equal(gw_parse_int("12x", &v), GW_EINVAL);
    assert_int_equal(gw_parse_int("99999999999999999999", &v), GW_EINVAL);
    double d;
    assert_int_equal(gw_parse_double("1e999", &d), GW_EINVAL);
    assert_int_equal(gw_parse_double("-0.25", &d), GW_OK);
    assert_true(d == -0.25);
}

/* Each bad document fails with a message naming file, line and the key path. */
static void errors_name_file_line_key(void **state)
{
    (void)state;
    static const struct {
        const char *text, *want;
    } cases[] = {
        {"name: abc\ncolour: red\n", "test.yaml:2: unknown key 'dev.colour'"},
        {"count: 11\n", "test.yaml:1: key 'dev.count' must be between 1 and 10 (got 11)"},
        {"count: 0\n", "key 'dev.count' must be between"},
        {"count: three\n", "test.yaml:1: key 'dev.count' must be an integer (got 'three')"},
        {"count: \"3\"\n", "key 'dev.count' must be an integer"}, /* quoted: a string */
        {"ratio: 1.5\n", "key 'dev.ratio' must be between 0 and 1"},
        {"on: maybe\n", "key 'dev.on' must be true or false"},
        {"wait: 2 weeks\n", "key 'dev.wait' must be a duration"},
        {"wait: 0ms\n", "key 'dev.wait' must be between 0.001 s and 3600 s"},
        {"bytes: lots\n", "key 'dev.bytes' must be a size"},
        {"mode: slow\n", "key 'dev.mode' must be one of: fast, safe (got 'slow')"},
        {"name: abcdefgh\n", "key 'dev.name' is longer than 7 characters"},
        {"name: [a, b]\n", "test.yaml:1: key 'dev.name' must be a string"},
        {"- a\n- b\n", "'dev' must be a mapping of keys"},
        {"name: a\nname: b\n", "test.yaml:2"}, /* duplicate keys: the parser refuses */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        conf c;
        char err[256];
        int rc = apply(tab, NULL, cases[i].text, &c, err, sizeof err);
        if (rc == GW_OK || !strstr(err, cases[i].want))
            fail_msg("case %zu: rc %d, err '%s', want '%s'", i, rc, err, cases[i].want);
    }
}

static void required_and_ignored(void **state)
{
    (void)state;
    conf c;
    char err[256];
    assert_int_equal(apply(required_tab, NULL, "other: 1\n", &c, err, sizeof err), GW_EINVAL);
    assert_non_null(strstr(err, "unknown key 'dev.other'"));
    assert_int_equal(apply(required_tab, other_tab, "port: 5\n", &c, err, sizeof err), GW_EINVAL);
    assert_non_null(strstr(err, "test.yaml:1: missing required key 'dev.id'"));
    assert_int_equal(gw_cfg_apply(required_tab, NULL, &c, "dev", err, sizeof err), GW_EINVAL);
    assert_non_null(strstr(err, "missing required key 'dev.id'"));
    /* Keys of the other table are skipped, not applied and not refused. */
    assert_int_equal(apply(required_tab, other_tab, "id: x1\nport: 5\n", &c, err, sizeof err),
                     GW_OK);
    assert_string_equal(c.name, "x1");
}

/* A message longer than the caller's buffer is cut, never overrun. */
static void small_error_buffer(void **state)
{
    (void)state;
    conf c;
    char err[16];
    memset(err, 'x', sizeof err);
    assert_int_equal(apply(tab, NULL, "colour: red\n", &c, err, 12), GW_EINVAL);
    assert_int_equal(strlen(err), 11);
    assert_int_equal(err[12], 'x');
}

/* A list of names setting bits (a station's quirks): known names OR their
 * bits, anything else is an error naming the entry and the choices. */
static void flag_list(void **state)
{
    (void)state;
    static const char *const names[] = {"a", "b", NULL};
    static const int bits[] = {1, 4};
    const char *cases[] = {"q: [a, b]\n", "q: [b]\n", "q: []\n", "q: [a, c]\n", "q: a\n"};
    const int want[] = {5, 4, 0, -1, -1};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        gw_ydoc doc;
        char err[200] = "";
        assert_int_equal(gw_ydoc_parse(&doc, "t.yaml", cases[i], strlen(cases[i]), err, sizeof err),
                         GW_OK);
        int q =
            gw_cfg_flag_list(gw_ymap_get(doc.root, "q"), "quirks", names, bits, err, sizeof err);
        assert_int_equal(q, want[i]);
        if (q < 0)
            assert_non_null(strstr(err, "a, b"));
        if (i == 3)
            assert_non_null(strstr(err, "quirks[1] 'c'"));
        gw_ydoc_free(&doc);
    }
    char err[64];
    assert_int_equal(gw_cfg_flag_list(NULL, "quirks", names, bits, err, sizeof err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_only),
        cmocka_unit_test(every_type),
        cmocka_unit_test(units),
        cmocka_unit_test(errors_name_file_line_key),
        cmocka_unit_test(required_and_ignored),
        cmocka_unit_test(small_error_buffer),
        cmocka_unit_test(flag_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
