/* The adapters table as protocols use it: content formats, identify, device-key
 * checking and decoding through a device's adapter and mapping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "adapters/adapter.h"
#include "adapters/smoke_nb100.h"
#include "base/yamldoc.h"

#include <string.h>

static size_t nb100_frame(uint8_t *buf, const char *imei)
{
    gw_nb100_frame f;
    memset(&f, 0, sizeof(f));
    strcpy(f.imei, imei);
    f.type = GW_NB100_T_REPORT;
    f.battery_mv = 3000;
    f.temp = 215;
    int n = gw_nb100_encode(&f, buf, 64);
    assert_true(n > 0);
    return (size_t)n;
}

static void test_content_formats(void **st)
{
    const gw_adapter *nb = gw_adapter_find("smoke-nb100"), *cb = gw_adapter_find("cbor-map"),
                     *js = gw_adapter_find("json-map");
    assert_non_null(nb);
    assert_non_null(cb);
    assert_non_null(js);
    assert_true(gw_adapter_accepts(cb, 60));
    assert_true(gw_adapter_accepts(cb, -1)); /* none stated */
    assert_false(gw_adapter_accepts(cb, 50));
    assert_true(gw_adapter_accepts(nb, 42));
    assert_false(gw_adapter_accepts(nb, 60));
    assert_true(gw_adapter_accepts(js, 50)); /* NULL list: any */
    assert_true(gw_adapter_accepts(js, 1234));
}

static void test_identify(void **st)
{
    uint8_t buf[64];
    char id[64];
    size_t n = nb100_frame(buf, "861234567890123");
    assert_ptr_equal(gw_adapter_identify(-1, buf, n, id, sizeof(id)),
                     gw_adapter_find("smoke-nb100"));
    assert_string_equal(id, "861234567890123");
    /* A format the NB-100 adapter does not read: it is not asked. */
    assert_ptr_not_equal(gw_adapter_identify(60, buf, n, id, sizeof(id)),
                         gw_adapter_find("smoke-nb100"));
    /* A corrupted frame names nobody. */
    buf[n - 1] ^= 1;
    assert_null(gw_adapter_identify(-1, buf, n, id, sizeof(id)));
    assert_string_equal(id, "");
    const char *json = "{\"ep\":\"wl-7\",\"depth\":1}";
    assert_ptr_equal(gw_adapter_identify(50, (const uint8_t *)json, strlen(json), id, sizeof(id)),
                     gw_adapter_find("json-map"));
    assert_string_equal(id, "wl-7");
    /* {"imei": "42"} in CBOR. */
    const uint8_t cbor[] = {0xA1, 0x64, 'i', 'm', 'e', 'i', 0x62, '4', '2'};
    assert_ptr_equal(gw_adapter_identify(60, cbor, sizeof(cbor), id, sizeof(id)),
                     gw_adapter_find("cbor-map"));
    assert_string_equal(id, "42");
    /* Too small a buffer for the id: nobody. */
    assert_null(gw_adapter_identify(60, cbor, sizeof(cbor), id, 2));
}

static void test_use_init_checks_keys(void **st)
{
    char err[256];
    gw_ydoc doc;
    const char *yaml = "points:\n  - {path: d, metric: water_depth, unit: cm}\n";
    assert_int_equal(gw_ydoc_parse(&doc, "m.yaml", yaml, strlen(yaml), err, sizeof(err)), 0);
    assert_int_equal(gw_adapter_use_init(NULL, "no-such", NULL, err, sizeof(err)), GW_EINVAL);
    assert_non_null(strstr(err, "unknown adapter 'no-such'"));
    assert_non_null(strstr(err, "smoke-nb100")); /* the known ones are listed */
    assert_int_equal(gw_adapter_use_init(NULL, "smoke-nb100", doc.root, err, sizeof(err)),
                     GW_EINVAL);
    assert_non_null(strstr(err, "json_map"));
    /* The registers adapter reads no byte payload. */
    assert_int_equal(gw_adapter_use_init(NULL, "modbus-profile", NULL, err, sizeof(err)),
                     GW_EINVAL);
    gw_adapter_use u;
    assert_int_equal(gw_adapter_use_init(&u, "json-map", doc.root, err, sizeof(err)), 0);
    assert_non_null(u.map);
    gw_adapter_use_free(&u);
    assert_null(u.map);
    gw_ydoc_free(&doc);
    assert_ptr_equal(gw_adapter_for_payload(GW_PAYLOAD_REGISTERS),
                     gw_adapter_find("modbus-profile"));
}

static int count(void *ctx, const gw_reading *r)
{
    (*(int *)ctx)++;
    return GW_OK;
}

static void test_use_decode(void **st)
{
    char err[256];
    gw_adapter_use u;
    int n = 0;
    gw_sink sink = {count, NULL, &n};
    const char *json = "{\"a\":1,\"b\":2}";
    assert_int_equal(gw_adapter_use_init(&u, "json-map", NULL, err, sizeof(err)), 0);
    assert_int_equal(
        gw_adapter_use_decode(&u, NULL, (const uint8_t *)json, strlen(json), 1000, &sink), 0);
    assert_int_equal(n, 2);
    gw_adapter_use_free(&u);
    uint8_t buf[64];
    size_t len = nb100_frame(buf, "861234567890123");
    n = 0;
    assert_int_equal(gw_adapter_use_init(&u, "smoke-nb100", NULL, err, sizeof(err)), 0);
    assert_int_equal(gw_adapter_use_decode(&u, NULL, buf, len, 1000, &sink), 0);
    assert_true(n > 0);
    gw_adapter_use_free(&u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_formats),
        cmocka_unit_test(test_identify),
        cmocka_unit_test(test_use_init_checks_keys),
        cmocka_unit_test(test_use_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
