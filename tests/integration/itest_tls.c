/* The platform link over TLS with a password: the gateway verifies the
 * broker's certificate against its CA file and authenticates; a wrong CA or a
 * wrong password gets no data through. mosquitto here has two listeners: TLS
 * with passwords for the gateway, and plain loopback for the test's own
 * platform subscriber. Certificates are made by the test with openssl. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct env {
    int tls_port, plain_port;
    h_proc broker, gw;
    char dir[256];
};

/* Runs a shell command inside dir. */
static int sh(const char *script, const char *dir)
{
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "cd '%s' && %s", dir, script);
    return system(cmd);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "%s", h_tmpdir());
    /* A CA, a server certificate for 127.0.0.1/localhost, and an unrelated CA. */
    assert_int_equal(
        sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca "
           "-keyout ca.key -out ca.pem 2>/dev/null && "
           "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key "
           "-out server.csr 2>/dev/null && "
           "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext && "
           "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
           "-extfile san.ext -out server.pem 2>/dev/null && "
           "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca "
           "-keyout other.key -out other.pem 2>/dev/null && chmod 644 *.pem *.key",
           e->dir),
        0);
    assert_int_equal(sh("touch passwd && mosquitto_passwd -b passwd gw-test "
                        "s3cret-For-Test 2>/dev/null && printf 's3cret-For-Test\\n' > pw && "
                        "printf 'wrong\\n' > badpw && chmod 644 passwd",
                        e->dir),
                     0);
    e->tls_port = h_free_port();
    e->plain_port = h_free_port();
    char conf[2048];
    snprintf(conf, sizeof(conf),
             "per_listener_settings true\n"
             "listener %d 127.0.0.1\ncafile %s/ca.pem\ncertfile %s/server.pem\n"
             "keyfile %s/server.key\nallow_anonymous false\npassword_file %s/passwd\n"
             "listener %d 127.0.0.1\nallow_anonymous true\n"
             "max_queued_messages 0\nlog_dest stdout\n%s",
             e->tls_port, e->dir, e->dir, e->dir, e->dir, e->plain_port,
             getuid() == 0 ? "user root\n" : "");
    const char *path = h_write_file("mosq.conf", conf);
    char *argv[] = {"mosquitto", "-c", (char *)path, NULL};
    assert_int_equal(h_spawn(&e->broker, "mosquitto.log", argv), 0);
    assert_true(h_port_wait(e->plain_port, 10000));
    assert_true(h_port_wait(e->tls_port, 10000));
    assert_int_equal(h_platform_start(e->plain_port), 0);
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    h_stop(&e->gw);
    h_platform_stop();
    h_stop(&e->broker);
    h_cleanup();
    free(e);
    return 0;
}

static void start_gateway(struct env *e, const char *ca, const char *pwfile)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "gateway: {id: gw-tls, data_dir: %s/data}\n"
             "uplink:\n  uri: ssl://127.0.0.1:%d\n  ca_file: %s/%s\n  username: gw-test\n"
             "  password_file: %s/%s\n  backoff_min: 100ms\n  backoff_max: 300ms\n"
             "devices:\n  - {id: syn-1, protocol: synthetic, rate: 50}\n",
             e->dir, e->tls_port, e->dir, ca, e->dir, pwfile);
    assert_int_equal(h_gateway_start(&e->gw, h_write_file("gw.yaml", text)), 0);
}

static int got_readings(void *ctx)
{
    cJSON *items = h_platform_items("/readings");
    int n = cJSON_GetArraySize(items);
    cJSON_Delete(items);
    return n >= *(int *)ctx;
}

static void test_tls_with_password(void **state)
{
    struct env *e = *state;
    start_gateway(e, "ca.pem", "pw");
    int want = 20;
    assert_true(h_platform_wait(got_readings, &want, 20000));
    assert_true(h_log_contains(&e->gw, "connected to ssl://"));
    /* The password never reaches the log. */
    assert_false(h_log_contains(&e->gw, "s3cret"));
}

static void test_wrong_ca_refused(void **state)
{
    struct env *e = *state;
    start_gateway(e, "other.pem", "pw");
    assert_true(h_log_wait(&e->gw, "failed", 15000));
    assert_false(h_log_contains(&e->gw, "connected to ssl://"));
    int want = 1;
    assert_false(got_readings(&want));
}

static void test_wrong_password_refused(void **state)
{
    struct env *e = *state;
    start_gateway(e, "ca.pem", "badpw");
    assert_true(h_log_wait(&e->gw, "failed", 15000));
    assert_false(h_log_contains(&e->gw, "connected to ssl://"));
    int want = 1;
    assert_false(got_readings(&want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tls_with_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_ca_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_password_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
