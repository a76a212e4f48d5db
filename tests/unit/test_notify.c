/* The pure halves of the service manager protocol (gateway/notify.c): the
 * NOTIFY_SOCKET value turned into an AF_UNIX address (path and abstract, the
 * limits of sun_path) and the WATCHDOG_USEC / WATCHDOG_PID decision of
 * sd_watchdog_enabled(3). The datagrams themselves are tested in
 * tests/integration/itest_ops.c against real sockets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gateway/notify.h"

#include <errno.h>
#include <string.h>

#define SUN_OFF offsetof(struct sockaddr_un, sun_path)

static void test_path(void **state)
{
    struct sockaddr_un sa;
    socklen_t len = 0;
    assert_int_equal(gw_notify_addr("/run/systemd/notify", &sa, &len), 0);
    assert_int_equal(sa.sun_family, AF_UNIX);
    assert_string_equal(sa.sun_path, "/run/systemd/notify");
    assert_int_equal(len, SUN_OFF + strlen("/run/systemd/notify") + 1); /* with its NUL */
}

static void test_abstract(void **state)
{
    struct sockaddr_un sa;
    socklen_t len = 0;
    assert_int_equal(gw_notify_addr("@/org/freedesktop/systemd1/notify", &sa, &len), 0);
    assert_int_equal(sa.sun_path[0], '\0');
    assert_memory_equal(sa.sun_path + 1, "/org/freedesktop/systemd1/notify", 32);
    /* The name is every byte after the NUL up to len: no trailing NUL may count. */
    assert_int_equal(len, SUN_OFF + 1 + 32);
}

static void test_lengths(void **state)
{
    struct sockaddr_un sa;
    socklen_t len = 0;
    char v[sizeof(sa.sun_path) + 2];
    /* A path of 107 bytes fits with its NUL; 108 does not. */
    memset(v, 'p', sizeof(v));
    v[0] = '/';
    v[sizeof(sa.sun_path) - 1] = '\0';
    assert_int_equal(gw_notify_addr(v, &sa, &len), 0);
    assert_int_equal(len, sizeof(sa));
    v[sizeof(sa.sun_path) - 1] = 'p';
    v[sizeof(sa.sun_path)] = '\0';
    assert_int_equal(gw_notify_addr(v, &sa, &len), -ENAMETOOLONG);
    /* An abstract name has no NUL: '@' and 107 name bytes fill all of sun_path
     * (the '@' becomes its leading NUL); one more is refused, never truncated. */
    memset(v, 'a', sizeof(v));
    v[0] = '@';
    v[sizeof(sa.sun_path)] = '\0';
    assert_int_equal(gw_notify_addr(v, &sa, &len), 0);
    assert_int_equal(len, sizeof(sa));
    assert_int_equal(sa.sun_path[0], '\0');
    assert_int_equal(sa.sun_path[sizeof(sa.sun_path) - 1], 'a');
    v[sizeof(sa.sun_path)] = 'a';
    v[sizeof(sa.sun_path) + 1] = '\0';
    assert_int_equal(gw_notify_addr(v, &sa, &len), -ENAMETOOLONG);
    /* Far too long: refused, nothing written past sun_path. */
    char big[4096];
    memset(big, 'x', sizeof(big) - 1);
    big[0] = '/';
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(gw_notify_addr(big, &sa, &len), -ENAMETOOLONG);
}

static void test_invalid(void **state)
{
    struct sockaddr_un sa;
    socklen_t len = 0;
    const char *bad[] = {"", "@", "notify.sock", "run/notify", "vsock:2:1234", " /run/x", NULL};
    for (const char **b = bad; *b; b++)
        if (gw_notify_addr(*b, &sa, &len) != -EINVAL)
            fail_msg("NOTIFY_SOCKET '%s' accepted", *b);
    assert_int_equal(gw_notify_addr(NULL, &sa, &len), -EINVAL);
}

static void test_watchdog(void **state)
{
    uint64_t usec = 7;
    assert_int_equal(gw_notify_watchdog(NULL, NULL, 42, &usec), 0);
    assert_int_equal(usec, 0);
    assert_int_equal(gw_notify_watchdog(NULL, "42", 42, &usec), 0);
    assert_int_equal(gw_notify_watchdog("30000000", NULL, 42, &usec), 1);
    assert_int_equal(usec, 30000000);
    assert_int_equal(gw_notify_watchdog("30000000", "42", 42, &usec), 1);
    assert_int_equal(usec, 30000000);
    /* Another process's watchdog (an inherited environment): not ours. */
    assert_int_equal(gw_notify_watchdog("30000000", "41", 42, &usec), 0);
    assert_int_equal(usec, 0);
    const char *bad[] = {"",  "0", "-5", "+5", " 5", "5 ", "12x", "0x10", "99999999999999999999999",
                         NULL};
    for (const char **b = bad; *b; b++) {
        if (gw_notify_watchdog(*b, NULL, 42, &usec) != -EINVAL)
            fail_msg("WATCHDOG_USEC '%s' accepted", *b);
        if (gw_notify_watchdog("30000000", *b, 42, &usec) != -EINVAL)
            fail_msg("WATCHDOG_PID '%s' accepted", *b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path),     cmocka_unit_test(test_abstract),
        cmocka_unit_test(test_lengths),  cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_watchdog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
