/* The device keys the platform is told about: site id, name, division,
 * address and location, vendor and model. Today's forms keep working; bad
 * values are errors naming the file, line and key; a packed copy (what a device
 * keeps) owns its text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/model.h"
#include "gateway/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[64];

static int load(gw_config *cfg, const char *devices, char *err, size_t errlen)
{
    snprintf(path, sizeof path, "/tmp/test_config_site.%ld.yaml", (long)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f,
            "gateway: {id: gw-t, data_dir: /tmp/x}\nuplink: {uri: tcp://127.0.0.1:1883}\n"
            "devices:\n%s",
            devices);
    fclose(f);
    int rc = gw_config_load(cfg, path, err, errlen);
    unlink(path);
    return rc;
}

static void new_keys(void **state)
{
    (void)state;
    gw_config cfg;
    char err[512];
    int rc = load(&cfg,
                  "  - {id: wl-1, protocol: synthetic, vendor: 示例仪表, model: WL-100,\n"
                  "     site: {id: st-1, name: 人民路下穿隧道, division: \"440511\",\n"
                  "            address: 汕头市金平区人民路, location: [116.68, 23.35]}}\n"
                  "  - {id: wl-2, protocol: synthetic,\n"
                  "     site: {name: Renmin Rd, location: [116.7, 23.4], install_height: 0.2}}\n",
                  err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    const gw_device_conf *ca = &cfg.devices[0];
    const gw_device_about *a = ca->about, *b = cfg.devices[1].about;
    assert_string_equal(a->site_id, "st-1");
    assert_string_equal(a->site, "人民路下穿隧道");
    assert_string_equal(a->division, "440511");
    assert_string_equal(a->site_address, "汕头市金平区人民路");
    assert_string_equal(a->vendor, "示例仪表");
    assert_string_equal(a->model, "WL-100");
    assert_true(a->has_location && a->lon == 116.68 && a->lat == 23.35);
    /* Today's form: a name and a location, nothing else set. */
    assert_string_equal(b->site, "Renmin Rd");
    assert_string_equal(b->site_id, "");
    assert_string_equal(b->division, "");
    assert_string_equal(b->vendor, "");
    assert_int_equal(b->nparams, 1);
    /* A packed copy owns its text: freeing the config leaves it intact. */
    gw_device_conf copy;
    void *mem = malloc(gw_device_conf_extra(ca));
    assert_non_null(mem);
    gw_device_conf_pack(&copy, ca, mem);
    assert_ptr_not_equal(copy.about, a);
    assert_ptr_not_equal(copy.about->site_id, a->site_id);
    gw_config_free(&cfg);
    assert_string_equal(copy.about->site_address, "汕头市金平区人民路");
    assert_string_equal(copy.about->vendor, "示例仪表");
    assert_string_equal(copy.about->model, "WL-100");
    assert_true(copy.about->has_location && copy.about->lat == 23.35);
    free(mem);
}

static void expect_error(const char *devices, const char *want)
{
    gw_config cfg;
    char err[512] = "";
    assert_int_equal(load(&cfg, devices, err, sizeof err), GW_EINVAL);
    if (!strstr(err, want))
        fail_msg("error '%s' does not contain '%s'", err, want);
}

static void bad_values(void **state)
{
    (void)state;
    expect_error("  - {id: a, protocol: synthetic, site: {division: \"4405\"}}\n",
                 ":4: key 'devices[0].site.division' must be a division code of 6, 9 or 12");
    expect_error("  - {id: a, protocol: synthetic, site: {division: 44051a}}\n", "division");
    expect_error("  - {id: a, protocol: synthetic, site: {id: \"st 1\"}}\n",
                 "key 'devices[0].site.id': 'st 1' may only hold");
    expect_error("  - {id: a, protocol: synthetic, site: {colour: red}}\n", "colour");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(new_keys),
        cmocka_unit_test(bad_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
