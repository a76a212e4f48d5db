/* Every device-facing listener binds loopback unless the file says
 * otherwise (docs/config.md): adding a listener never exposes a port by
 * accident. The CoAP listener used to default to 0.0.0.0 while SL651 and
 * HJ212 defaulted to 127.0.0.1 (issue 15, item 7). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "protocols/protocol.h"

#include <string.h>

static void test_listeners_default_to_loopback(void **state)
{
    int checked = 0;
    for (size_t i = 0; gw_protocols[i]; i++) {
        const gw_cfgkey *k = gw_protocols[i]->listener_keys;
        for (; k && k->key; k++) {
            if (strcmp(k->key, "listen") || !k->def)
                continue; /* required keys have no default to check */
            print_message("%s: listen defaults to %s\n", gw_protocols[i]->name, k->def);
            assert_true(strncmp(k->def, "127.0.0.1", 9) == 0);
            checked++;
        }
    }
    assert_true(checked >= 3); /* coap, sl651, hj212 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_listeners_default_to_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
