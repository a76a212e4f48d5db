/* The platform link over TLS with a password: the gateway verifies the
 * broker's certificate against its CA file and authenticates; a wrong CA, a
 * certificate for another name, an expired certificate or a wrong password
 * gets no data through, and a refused certificate is logged with the reason.
 * mosquitto here has four listeners: TLS with passwords for the gateway (a
 * good certificate, one for another name, an expired one), and plain loopback
 * for the test's own platform subscriber. Certificates are made by the test
 * with openssl. */
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
    int tls_port, plain_port, badname_port, expired_port;
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
    /* From the same CA: one for another name, one that expired in 2020. */
    assert_int_equal(
        sh("openssl req -newkey rsa:2048 -nodes -subj /CN=elsewhere.example -keyout "
           "badname.key -out badname.csr 2>/dev/null && "
           "printf 'subjectAltName=DNS:elsewhere.example\n' > badname.ext && "
           "openssl x509 -req -in badname.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
           "-extfile badname.ext -out badname.pem 2>/dev/null && "
           "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout expired.key "
           "-out expired.csr 2>/dev/null && "
           "printf '[ca]\ndefault_ca=c\n[c]\ndatabase=index.txt\nnew_certs_dir=.\n"
           "certificate=ca.pem\nprivate_key=ca.key\ndefault_md=sha256\npolicy=p\n"
           "serial=serial\n[p]\ncommonName=supplied\n' > ca.cnf && touch index.txt && "
           "echo 01 > serial && openssl ca -batch -notext -config ca.cnf -in expired.csr "
           "-out expired.pem -startdate 20200101000000Z -enddate 20200102000000Z "
           "-extfile san.ext 2>/dev/null && chmod 644 *.pem *.key",
           e->dir),
        0);
    assert_int_equal(sh("touch passwd && mosquitto_passwd -b passwd gw-test "
                        "s3cret-For-Test 2>/dev/null && printf 's3cret-For-Test\\n' > pw && "
                        "printf 'wrong\\n' > badpw && chmod 644 passwd",
                        e->dir),
                     0);
    e->tls_port = h_free_port();
    e->plain_port = h_free_port();
    e->badname_port = h_free_port();
    e->expired_port = h_free_port();
    char conf[4096];
    int n = snprintf(conf, sizeof(conf), "per_listener_settings true\n");
    const struct {
        int port;
        const char *cert;
    } tls[] = {{e->tls_port, "server"}, {e->badname_port, "badname"}, {e->expired_port, "expired"}};
    for (int i = 0; i < 3; i++)
        n += snprintf(conf + n, sizeof(conf) - (size_t)n,
                      "listener %d 127.0.0.1\ncafile %s/ca.pem\ncertfile %s/%s.pem\n"
                      "keyfile %s/%s.key\nallow_anonymous false\npassword_file %s/passwd\n",
                      tls[i].port, e->dir, e->dir, tls[i].cert, e->dir, tls[i].cert, e->dir);
    snprintf(conf + n, sizeof(conf) - (size_t)n,
             "listener %d 127.0.0.1\nallow_anonymous true\n"
             "max_queued_messages 0\nlog_dest stdout\n%s",
             e->plain_port, getuid() == 0 ? "user root\n" : "");
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

static int got_readings(void *ctx)
{
    cJSON *items = h_platform_items("/readings");
    int n = cJSON_GetArraySize(items);
    cJSON_Delete(items);
    return n >= *(int *)ctx;
}

static void start_gateway_at(struct env *e, int port, const char *ca, const char *pwfile)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "gateway: {id: gw-tls, data_dir: %s/data}\n"
             "uplink:\n  uri: ssl://127.0.0.1:%d\n  ca_file: %s/%s\n  username: gw-test\n"
             "  password_file: %s/%s\n  backoff_min: 100ms\n  backoff_max: 300ms\n"
             "devices:\n  - {id: syn-1, protocol: synthetic, rate: 50}\n",
             e->dir, port, e->dir, ca, e->dir, pwfile);
    assert_int_equal(h_gateway_start(&e->gw, h_write_file("gw.yaml", text)), 0);
}

static void start_gateway(struct env *e, const char *ca, const char *pwfile)
{
    start_gateway_at(e, e->tls_port, ca, pwfile);
}

/* The connect fails, the log names why, and no data goes through. */
static void refused_because(struct env *e, const char *why)
{
    assert_true(h_log_wait(&e->gw, why, 15000));
    assert_false(h_log_contains(&e->gw, "connected to ssl://"));
    int want = 1;
    assert_false(got_readings(&want));
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
    /* OpenSSL names it by what the broker sent: its certificate alone, or
     * the chain up to the (unknown) CA. */
    refused_because(e, "(no CA in ca_file signed it)");
}

static void test_wrong_name_refused(void **state)
{
    struct env *e = *state;
    start_gateway_at(e, e->badname_port, "ca.pem", "pw");
    refused_because(e, "certificate was refused: IP address mismatch");
}

static void test_expired_refused(void **state)
{
    struct env *e = *state;
    start_gateway_at(e, e->expired_port, "ca.pem", "pw");
    refused_because(e, "certificate was refused: certificate has expired");
}

static void test_wrong_password_refused(void **state)
{
    struct env *e = *state;
    start_gateway(e, "ca.pem", "badpw");
    assert_true(h_log_wait(&e->gw, "failed", 15000));
    assert_false(h_log_contains(&e->gw, "connected to ssl://"));
    /* The certificate was fine: no TLS reason is invented. */
    assert_false(h_log_contains(&e->gw, "refused:"));
    int want = 1;
    assert_false(got_readings(&want));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tls_with_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_ca_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_name_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_password_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
