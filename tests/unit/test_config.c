/* gw_device_conf as the config loads it and as a device keeps it: text and
 * lists in the config's arena, packed into the device's own memory so that a
 * device outlives the config (a reload frees the old one). Run under ASan a
 * packed device that still pointed into the config would be a
 * use-after-free. */
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

static const char *write_tmp(const char *text)
{
    static char path[64];
    snprintf(path, sizeof(path), "/tmp/gw-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static const char two_devices[] =
    "gateway: {id: gw-t, data_dir: /tmp/gw-test-config}\n"
    "uplink: {uri: \"tcp://127.0.0.1:1883\"}\n"
    "devices:\n"
    "  - {id: plain, profile: waterlogging-wl100, connect: \"tcp://127.0.0.1:5020\"}\n"
    "  - id: full-1\n"
    "    type: gauge\n"
    "    profile: waterlogging-wl100\n"
    "    connect: \"tcp://127.0.0.1:5021\"\n"
    "    address: \"0012345678\"\n"
    "    interval: 2s\n"
    "    groups: [east, bridges]\n"
    "    site:\n"
    "      name: Underpass 4\n"
    "      location: [114.05, 22.54]\n"
    "      install_height: 2.5\n"
    "      params: {alarm_depth: 0.3, road_width: 12}\n";

static void packed_device_outlives_config(void **state)
{
    const char *path = write_tmp(two_devices);
    gw_config cfg;
    char err[512] = "";
    if (gw_config_load(&cfg, path, err, sizeof(err)))
        fail_msg("%s", err);
    assert_int_equal(cfg.ndevices, 2);
    const gw_device_conf *src = &cfg.devices[1];
    size_t extra = gw_device_conf_extra(src);
    gw_device_conf *d = malloc(sizeof(*d) + extra);
    assert_non_null(d);
    gw_device_conf_pack(d, src, d + 1);
    /* The plain device: unset text is "", never NULL; no lists. */
    assert_string_equal(cfg.devices[0].type, "");
    /* A device with no site, groups, vendor or model shares the empty block. */
    assert_ptr_equal(cfg.devices[0].about, &gw_device_about_none);
    assert_string_equal(cfg.devices[0].about->site, "");
    assert_int_equal(cfg.devices[0].about->ngroups, 0);
    assert_int_equal(cfg.devices[0].about->nparams, 0);
    gw_config_free(&cfg);
    unlink(path);

    assert_string_equal(d->id, "full-1");
    assert_string_equal(d->type, "gauge");
    assert_string_equal(d->protocol, "modbus-tcp");
    assert_string_equal(d->profile, "waterlogging-wl100");
    assert_string_equal(d->connect, "tcp://127.0.0.1:5021");
    assert_string_equal(d->address, "0012345678");
    const gw_device_about *a = d->about;
    assert_true((const char *)a >= (const char *)(d + 1));
    assert_string_equal(a->site, "Underpass 4");
    assert_string_equal(d->file, path);
    assert_int_equal(d->interval_ms, 2000);
    assert_int_equal(a->has_location, 1);
    assert_true(a->lon == 114.05 && a->lat == 22.54);
    assert_int_equal(a->ngroups, 2);
    assert_string_equal(a->groups[0], "east");
    assert_string_equal(a->groups[1], "bridges");
    assert_int_equal(a->nparams, 3);
    assert_string_equal(a->param_keys[0], "install_height");
    assert_true(a->param_vals[0] == 2.5);
    assert_string_equal(a->param_keys[1], "alarm_depth");
    assert_true(a->param_vals[1] == 0.3);
    assert_string_equal(a->param_keys[2], "road_width");
    assert_true(a->param_vals[2] == 12);
    /* Everything the device points to is inside its own block. */
    const char *lo = (const char *)(d + 1), *hi = lo + extra;
    const char *texts[] = {d->id,           d->type,      d->protocol,      d->profile,
                           d->connect,      d->address,   a->site,          d->file,
                           a->groups[0],    a->groups[1], a->param_keys[0], a->param_keys[1],
                           a->param_keys[2]};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        assert_true(texts[i] >= lo && texts[i] + strlen(texts[i]) < hi);
    free(d);
}

/* The limits of the fixed-size fields stay: an id of 64 characters or more is
 * refused with its line, as before. */
static void long_id_refused(void **state)
{
    char text[1024], id[80];
    memset(id, 'a', 70);
    id[70] = '\0';
    snprintf(text, sizeof(text),
             "gateway: {id: gw-t, data_dir: /tmp/gw-test-config}\n"
             "uplink: {uri: \"tcp://127.0.0.1:1883\"}\n"
             "devices:\n"
             "  - {id: %s, profile: waterlogging-wl100, connect: \"tcp://127.0.0.1:5020\"}\n",
             id);
    const char *path = write_tmp(text);
    gw_config cfg;
    char err[512] = "";
    assert_int_equal(gw_config_load(&cfg, path, err, sizeof(err)), GW_EINVAL);
    assert_non_null(strstr(err, ":4:"));
    unlink(path);
}

/* drop_parsed frees the device table and the YAML, keeps the rest. */
static void drop_parsed_keeps_settings(void **state)
{
    const char *path = write_tmp(two_devices);
    gw_config cfg;
    char err[512] = "";
    if (gw_config_load(&cfg, path, err, sizeof(err)))
        fail_msg("%s", err);
    gw_config_drop_parsed(&cfg);
    assert_null(cfg.devices);
    assert_null(cfg.doc.root);
    assert_string_equal(cfg.gateway_id, "gw-t");
    assert_string_equal(cfg.uplink.uri, "tcp://127.0.0.1:1883");
    gw_config_free(&cfg);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(packed_device_outlives_config),
        cmocka_unit_test(long_id_refused),
        cmocka_unit_test(drop_parsed_keeps_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
