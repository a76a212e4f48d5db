/* gateway/destfilter.c: a destination keeps the items of a row its filter lets through,
 * judges an item only by the fields it carries, finds a site by its id whether the site is
 * an object or a string, and is not fooled by keys or braces inside strings. */
#include "gateway/destfilter.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* The filtered row as a string, and how many items were left out. */
static const char *keep(const gw_uplink_filter *f, const char *row, uint64_t *dropped)
{
    static char out[1024];
    *dropped = 0;
    size_t n = gw_destfilter_keep(f, row, strlen(row), out, dropped);
    out[n] = '\0';
    return out;
}

static void empty_filter_keeps_all(void **state)
{
    gw_uplink_filter f;
    memset(&f, 0, sizeof(f));
    uint64_t d;
    const char *row =
        "{\"id\":\"g-1\",\"type\":\"river\",\"value\":1},{\"id\":\"g-2\",\"value\":2}";
    assert_string_equal(keep(&f, row, &d), row);
    assert_int_equal(d, 0);
}

static void types_and_metrics(void **state)
{
    gw_uplink_filter f;
    memset(&f, 0, sizeof(f));
    strcpy(f.types[f.ntypes++], "river");
    strcpy(f.metrics[f.nmetrics++], "water_level");
    uint64_t d;
    /* Several items in one row; the event has no metric, so only its type judges it. */
    assert_string_equal(keep(&f,
                             "{\"type\":\"river\",\"metric\":\"water_level\",\"value\":1.5},"
                             "{\"type\":\"river\",\"metric\":\"rain\",\"value\":2},"
                             "{\"type\":\"tank\",\"metric\":\"water_level\",\"value\":3},"
                             "{\"type\":\"river\",\"event\":\"door_open\",\"active\":true}",
                             &d),
                        "{\"type\":\"river\",\"metric\":\"water_level\",\"value\":1.5},"
                        "{\"type\":\"river\",\"event\":\"door_open\",\"active\":true}");
    assert_int_equal(d, 2);
    /* Nothing for us: an empty result, every item counted. */
    assert_string_equal(keep(&f, "{\"type\":\"tank\",\"value\":9}", &d), "");
    assert_int_equal(d, 1);
}

static void sites_object_or_string(void **state)
{
    gw_uplink_filter f;
    memset(&f, 0, sizeof(f));
    strcpy(f.sites[f.nsites++], "s-07");
    uint64_t d;
    assert_string_equal(
        keep(&f,
             "{\"site\":{\"name\":\"{not\\\"a\\\"key}\",\"lon\":113.5,\"id\":\"s-07\"},\"v\":1},"
             "{\"site\":{\"id\":\"s-08\",\"lat\":22.2}},{\"site\":\"s-07\"},{\"v\":[1,{\"a\":2}]}",
             &d),
        "{\"site\":{\"name\":\"{not\\\"a\\\"key}\",\"lon\":113.5,\"id\":\"s-07\"},\"v\":1},"
        "{\"site\":\"s-07\"},{\"v\":[1,{\"a\":2}]}");
    assert_int_equal(d, 1);
}

/* A value that only looks like the key, keys inside strings, and a truncated row. */
static void not_fooled(void **state)
{
    gw_uplink_filter f;
    memset(&f, 0, sizeof(f));
    strcpy(f.types[f.ntypes++], "river");
    uint64_t d;
    assert_string_equal(keep(&f, "{\"detail\":\"type\",\"type\":\"tank\"}", &d), "");
    assert_string_equal(
        keep(&f, "{\"detail\":\"\\\"type\\\":\\\"river\\\"\",\"type\":\"tank\"}", &d), "");
    assert_string_equal(keep(&f, "{\"n\":12,\"type\":\"river\"}", &d),
                        "{\"n\":12,\"type\":\"river\"}");
    char out[64];
    const char *cut = "{\"type\":\"riv";
    assert_true(gw_destfilter_keep(&f, cut, strlen(cut), out, &d) <= strlen(cut));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_filter_keeps_all),
        cmocka_unit_test(types_and_metrics),
        cmocka_unit_test(sites_object_or_string),
        cmocka_unit_test(not_fooled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
