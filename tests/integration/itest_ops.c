/* Running as a service: no config means no start (unless --demo), the demo's
 * id is refused elsewhere, a machine id seeds the gateway id, journald
 * priorities, the sd_notify protocol against a real datagram socket (READY,
 * WATCHDOG at half WATCHDOG_USEC, STOPPING; an abstract '@' socket, a
 * WATCHDOG_PID naming another process, an unusable NOTIFY_SOCKET), and the
 * Debian package (no libsystemd among its dependencies): built,
 * inspected with dpkg-deb, extracted into a scratch root whose binary checks
 * the installed default config, and its unit verified by systemd-analyze. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/integration/harness.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int teardown(void **state)
{
    h_cleanup();
    return 0;
}

static const char *config(const char *name, const char *id_line, const char *extra)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "gateway:\n%s  data_dir: %s/data-%s\n  shutdown_drain: 1s\n%s"
             "uplink:\n  uri: tcp://127.0.0.1:1\n  backoff_min: 100ms\n  backoff_max: 300ms\n",
             id_line, h_tmpdir(), name, extra ? extra : "");
    char file[96];
    snprintf(file, sizeof(file), "%s.yaml", name);
    return h_write_file(file, text);
}

/* No -c and no --demo: exit 2 with a message, before anything is created. */
static void test_no_config_refused(void **state)
{
    h_proc p = {0};
    char *argv[] = {(char *)h_bin("gateway"), NULL};
    assert_int_equal(h_spawn(&p, "noconf.log", argv), 0);
    assert_int_equal(h_wait(&p, 10000), 2);
    assert_true(h_log_contains(&p, "no configuration: give -c FILE (or --demo"));

    /* The demo's id in a real config: refused by the run and by --check-config. */
    const char *c = config("demo-id", "  id: gw-demo\n", NULL);
    char *run[] = {(char *)h_bin("gateway"), "-c", (char *)c, NULL};
    h_proc q = {0};
    assert_int_equal(h_spawn(&q, "demoid.log", run), 0);
    assert_int_equal(h_wait(&q, 10000), 1);
    assert_true(h_log_contains(&q, "gateway.id 'gw-demo' is the demo's"));
    char *chk[] = {(char *)h_bin("gateway"), "--check-config", (char *)c, NULL};
    h_proc r = {0};
    assert_int_equal(h_spawn(&r, "demoid-check.log", chk), 0);
    assert_int_equal(h_wait(&r, 10000), 1);
    assert_true(h_log_contains(&r, "is the demo's"));
}

/* No gateway.id: gw-<12 hex digits of the machine id>; journal format prefixes
 * priorities and drops the timestamp. */
static void test_machine_id_and_journal(void **state)
{
    const char *mid = h_write_file("machine-id", "0123456789abcdef0123456789abcdef\n");
    setenv("GW_MACHINE_ID_FILE", mid, 1);
    const char *c = config("mid", "", "  log_format: journal\n");
    h_proc p = {0};
    assert_int_equal(h_gateway_start(&p, c), 0);
    assert_true(h_log_contains(&p, "<6>info  [core] gateway gw-0123456789ab started"));
    assert_false(h_log_contains(&p, "Z info  ["));
    assert_int_equal(h_stop(&p), 0);

    /* A bad machine id and no gateway.id: a clear error. */
    h_write_file("machine-id", "not-hex\n");
    h_proc q = {0};
    char *chk[] = {(char *)h_bin("gateway"), "--check-config", (char *)c, NULL};
    assert_int_equal(h_spawn(&q, "badmid.log", chk), 0);
    assert_int_equal(h_wait(&q, 10000), 1);
    assert_true(h_log_contains(&q, "'gateway.id' is missing"));
    unsetenv("GW_MACHINE_ID_FILE");

    /* auto: the journal format only when JOURNAL_STREAM names stderr itself. The
     * harness appends to an existing log file, so its inode is known beforehand. */
    const char *c2 = config("auto", "  id: gw-auto\n", NULL);
    const char *log = h_write_file("auto.log", "");
    struct stat st;
    assert_int_equal(stat(log, &st), 0);
    char js[64];
    snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
             (unsigned long long)st.st_ino);
    setenv("JOURNAL_STREAM", js, 1);
    h_proc a = {0};
    char *run[] = {(char *)h_bin("gateway"), "-c", (char *)c2, NULL};
    assert_int_equal(h_spawn(&a, "auto.log", run), 0);
    assert_true(h_log_wait(&a, "<6>info  [core] gateway gw-auto started", 15000));
    assert_int_equal(h_stop(&a), 0);
    setenv("JOURNAL_STREAM", "1:2", 1); /* some other stream: plain lines */
    h_proc b = {0};
    assert_int_equal(h_spawn(&b, "auto2.log", run), 0);
    assert_true(h_log_wait(&b, "Z info  [core] gateway gw-auto started", 15000));
    assert_int_equal(h_stop(&b), 0);
    unsetenv("JOURNAL_STREAM");
}

/* Reads one datagram within timeout_ms into buf; its length, or -1. With
 * from, the sender's pid from the SCM_CREDENTIALS the kernel attaches for a
 * socket with SO_PASSCRED (0 when none came), which is how systemd tells the
 * main process's messages (NotifyAccess=main) from others. */
static int recv_dgram(int fd, char *buf, size_t cap, int timeout_ms, pid_t *from)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    union {
        struct cmsghdr h;
        char space[CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    struct iovec iov = {buf, cap - 1};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctl, .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(fd, &m, 0);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    if (from) {
        *from = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
                struct ucred u;
                memcpy(&u, CMSG_DATA(c), sizeof(u));
                *from = u.pid;
            }
    }
    return (int)n;
}

/* The gateway of a notify test: the teardown stops it, so a failing test
 * leaves no process behind. */
static h_proc notified;

static int teardown_notified(void **state)
{
    h_stop(&notified);
    h_cleanup();
    return 0;
}

/* Starts the gateway with the service manager's variables set (NULL: unset)
 * only for it, so they never leak into later tests. */
static void spawn_notified(h_proc *p, const char *name, const char *sock, const char *usec,
                           const char *pid)
{
    const char *keys[] = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"};
    const char *vals[] = {sock, usec, pid};
    for (int i = 0; i < 3; i++)
        if (vals[i])
            setenv(keys[i], vals[i], 1);
    char id[64], log[64];
    snprintf(id, sizeof(id), "  id: gw-%s\n", name);
    snprintf(log, sizeof(log), "%s.log", name);
    const char *c = config(name, id, NULL);
    char *run[] = {(char *)h_bin("gateway"), "-c", (char *)c, NULL};
    assert_int_equal(h_spawn(p, log, run), 0);
    for (int i = 0; i < 3; i++)
        unsetenv(keys[i]);
}

/* The first datagram must be READY=1, sent after the start. */
static void expect_ready(int fd, h_proc *p)
{
    char msg[512];
    pid_t from;
    if (recv_dgram(fd, msg, sizeof(msg), 15000, &from) <= 0)
        fail_msg("no READY within 15 s");
    if (!strstr(msg, "READY=1"))
        fail_msg("first notification is not READY: %s", msg);
    if (from != p->pid)
        fail_msg("READY came from pid %ld, not the gateway's %ld", (long)from, (long)p->pid);
    assert_true(h_log_contains(p, "started from")); /* READY comes after the start */
}

/* SIGTERM: STOPPING=1 arrives (pings may come before it) and the gateway exits 0. */
static void expect_stopping(int fd, h_proc *p)
{
    char msg[512];
    h_signal(p, SIGTERM);
    int stopping = 0;
    for (int i = 0; i < 50 && !stopping; i++) {
        if (recv_dgram(fd, msg, sizeof(msg), 200, NULL) > 0 && strstr(msg, "STOPPING=1"))
            stopping = 1;
    }
    assert_true(stopping);
    assert_int_equal(h_wait(p, 10000), 0);
}

/* A datagram socket bound at <tmpdir>/notify.sock, standing in for the
 * service manager's (with SO_PASSCRED, as systemd's); its path goes to path. */
static int bind_notify_socket(char *path, size_t cap)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/notify.sock", h_tmpdir());
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &(int){1}, sizeof(int)), 0);
    snprintf(path, cap, "%s", sa.sun_path);
    return fd;
}

static void test_sd_notify(void **state)
{
    char path[108];
    int fd = bind_notify_socket(path, sizeof(path));
    h_proc *p = &notified;
    spawn_notified(p, "notify", path, "400000", NULL); /* 400 ms: pings every 200 ms */
    expect_ready(fd, p);
    char msg[512];
    /* Watchdog pings for 2 s: about 10 at 200 ms. */
    int64_t t0 = h_now_ms(), first = 0, last = 0;
    int pings = 0;
    while (h_now_ms() - t0 < 2000) {
        if (recv_dgram(fd, msg, sizeof(msg), 500, NULL) <= 0)
            continue;
        assert_non_null(strstr(msg, "WATCHDOG=1"));
        last = h_now_ms();
        if (!pings++)
            first = last;
    }
    if (pings < 7 || pings > 13)
        fail_msg("%d watchdog pings in 2 s, want about 10", pings);
    double every = (double)(last - first) / (pings - 1);
    if (every < 150 || every > 260)
        fail_msg("watchdog pings every %.0f ms, want about 200", every);
    expect_stopping(fd, p);
    close(fd);
}

/* "@name": a socket in Linux's abstract namespace (no file); READY, pings and
 * STOPPING all reach it. */
static void test_sd_notify_abstract(void **state)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    char name[64];
    snprintf(name, sizeof(name), "@citygw-itest-%ld-%lld", (long)getpid(), (long long)h_now_ms());
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(sa.sun_path + 1, name + 1, n - 1); /* sun_path[0] stays NUL */
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &(int){1}, sizeof(int)), 0);
    h_proc *p = &notified;
    spawn_notified(p, "abstract", name, "400000", NULL);
    expect_ready(fd, p);
    char msg[512];
    int pings = 0;
    for (int i = 0; i < 10 && pings < 2; i++)
        if (recv_dgram(fd, msg, sizeof(msg), 500, NULL) > 0 && strstr(msg, "WATCHDOG=1"))
            pings++;
    assert_int_equal(pings, 2);
    expect_stopping(fd, p);
    close(fd);
}

/* WATCHDOG_PID naming another process (here: this test): the watchdog is not
 * ours, so no pings, though READY and STOPPING still go out. */
static void test_sd_notify_other_pid(void **state)
{
    char path[108];
    int fd = bind_notify_socket(path, sizeof(path));
    char pid[24];
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    h_proc *p = &notified;
    spawn_notified(p, "otherpid", path, "100000", pid); /* would ping every 50 ms */
    expect_ready(fd, p);
    char msg[512];
    if (recv_dgram(fd, msg, sizeof(msg), 1000, NULL) > 0)
        fail_msg("a datagram although WATCHDOG_PID names pid %s: %s", pid, msg);
    assert_true(h_log_contains(p, "is another process"));
    expect_stopping(fd, p);
    close(fd);
}

/* An unusable NOTIFY_SOCKET (longer than an AF_UNIX address holds, or not an
 * absolute path): a warning that says why, and the gateway runs and stops as
 * usual. */
static void test_sd_notify_bad_socket(void **state)
{
    char longpath[200];
    memset(longpath, 'x', sizeof(longpath) - 1);
    longpath[0] = '/';
    longpath[sizeof(longpath) - 1] = '\0';
    struct {
        const char *value, *why;
    } cases[] = {{longpath, "longer than an AF_UNIX address holds"},
                 {"notify.sock", "neither an absolute path nor an @abstract name"}};
    for (int i = 0; i < 2; i++) {
        h_proc *p = &notified;
        char name[16];
        snprintf(name, sizeof(name), "badsock%d", i);
        spawn_notified(p, name, cases[i].value, "400000", NULL);
        if (!h_log_wait(p, "started from", 15000))
            fail_msg("gateway did not start with NOTIFY_SOCKET '%s'", cases[i].value);
        if (!h_log_contains(p, "is not usable") || !h_log_contains(p, cases[i].why))
            fail_msg("no clear warning for NOTIFY_SOCKET '%s' (want '%s')", cases[i].value,
                     cases[i].why);
        assert_true(h_log_contains(p, "no usable NOTIFY_SOCKET to ping"));
        assert_int_equal(h_stop(p), 0);
    }
}

/* make deb (scripts/deb.sh on the built binaries), dpkg-deb -I / -c, dpkg -x into a
 * scratch root, the installed binary checks the installed default config, and
 * systemd-analyze verify finds nothing to say about the unit. */
static void test_deb_package(void **state)
{
    const char *b = getenv("BUILD") ? getenv("BUILD") : "build";
    char cmd[8192], deb[600];
    static char out[1 << 16];
    snprintf(cmd, sizeof(cmd), "BUILD=%s OUT=%s/deb scripts/deb.sh", b, h_tmpdir());
    if (h_run(cmd, out, sizeof(out)) != 0)
        fail_msg("deb.sh failed: %s", out);
    out[strcspn(out, "\n")] = '\0';
    assert_true(strlen(out) < sizeof(deb));
    memcpy(deb, out, strlen(out) + 1);
    assert_non_null(strstr(deb, "citygw_"));

    snprintf(cmd, sizeof(cmd), "dpkg-deb -I %s", deb);
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    for (const char *const *w =
             (const char *const[]){"Package: citygw", "Depends: ", "libmicrohttpd", "adduser",
                                   "postinst", "conffiles", NULL};
         *w; w++)
        if (!strstr(out, *w))
            fail_msg("dpkg-deb -I lacks '%s':\n%s", *w, out);
    /* sd_notify is spoken directly (gateway/notify.c): libsystemd and its
     * compression and crypto libraries are no longer pulled in. */
    for (const char *const *w = (const char *const[]){"libsystemd", "libgcrypt", "liblzma", NULL};
         *w; w++)
        if (strstr(out, *w))
            fail_msg("dpkg-deb -I still depends on '%s':\n%s", *w, out);
    snprintf(cmd, sizeof(cmd), "dpkg-deb -c %s", deb);
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    for (const char *const *w =
             (const char *const[]){"./usr/bin/citygw\n", "./usr/bin/citygw-sim",
                                   "./etc/citygw/citygw.yaml",
                                   "./lib/systemd/system/citygw.service",
                                   "./usr/share/citygw/profiles/waterlogging-wl100.yaml",
                                   "./usr/share/doc/citygw/rules/waterlogging.yaml",
                                   "./usr/share/doc/citygw/operations.md", NULL};
         *w; w++)
        if (!strstr(out, *w))
            fail_msg("dpkg-deb -c lacks '%s'", *w);
    snprintf(cmd, sizeof(cmd), "dpkg-deb -e %s %s/control && cat %s/control/postinst", deb,
             h_tmpdir(), h_tmpdir());
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "adduser --system --group"));

    char root[600];
    snprintf(root, sizeof(root), "%s/root", h_tmpdir());
    snprintf(cmd, sizeof(cmd),
             "dpkg -x %s %s && %s/usr/bin/citygw --check-config %s/etc/citygw/citygw.yaml 2>&1",
             deb, root, root, root);
    if (h_run(cmd, out, sizeof(out)) != 0 || !strstr(out, "OK"))
        fail_msg("installed binary refused the installed config: %s", out);

    /* The unit as installed, with its binary paths pointing into the scratch root. */
    if (access("/usr/bin/systemd-analyze", X_OK) != 0) {
        printf("systemd-analyze not installed: unit not verified\n");
        return;
    }
    snprintf(cmd, sizeof(cmd),
             "mkdir -p %s/unit && sed 's|/usr/bin/citygw|%s/usr/bin/citygw|g' "
             "%s/lib/systemd/system/citygw.service > %s/unit/citygw.service && "
             "systemd-analyze verify %s/unit/citygw.service 2>&1",
             h_tmpdir(), root, root, h_tmpdir(), h_tmpdir());
    int rc = h_run(cmd, out, sizeof(out));
    if (rc != 0 || out[0])
        fail_msg("systemd-analyze verify (exit %d): %s", rc, out);
    snprintf(cmd, sizeof(cmd),
             "grep -c '^Type=notify$\\|^WatchdogSec=\\|^ProtectSystem=strict$\\|"
             "^NoNewPrivileges=yes$\\|^StateDirectory=citygw$\\|"
             "^CapabilityBoundingSet=\\|^Restart=on-failure$\\|^User=citygw$' "
             "%s/lib/systemd/system/citygw.service",
             root);
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    assert_int_equal(atoi(out), 8);
}

/* make install keeps an existing config and puts the new default beside it. */
static void test_install_keeps_config(void **state)
{
    const char *b = getenv("BUILD") ? getenv("BUILD") : "build";
    char cmd[2048], out[8192], path[600];
    snprintf(cmd, sizeof(cmd), "BUILD=%s DESTDIR=%s/inst PREFIX=/opt/gw scripts/install.sh", b,
             h_tmpdir());
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    snprintf(path, sizeof(path), "%s/inst/etc/citygw/citygw.yaml", h_tmpdir());
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs("# edited by the operator\n", f);
    fclose(f);
    assert_int_equal(h_run(cmd, out, sizeof(out)), 0);
    assert_non_null(strstr(out, "kept"));
    char *text = h_slurp(path);
    assert_non_null(strstr(text, "# edited by the operator"));
    free(text);
    snprintf(path, sizeof(path), "%s/inst/opt/gw/lib/systemd/system/citygw.service", h_tmpdir());
    text = h_slurp(path);
    assert_non_null(text);
    assert_non_null(strstr(text, "ExecStart=/opt/gw/bin/citygw -c /etc/citygw/citygw.yaml"));
    free(text);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_no_config_refused, teardown),
        cmocka_unit_test_teardown(test_machine_id_and_journal, teardown),
        cmocka_unit_test_teardown(test_sd_notify, teardown_notified),
        cmocka_unit_test_teardown(test_sd_notify_abstract, teardown_notified),
        cmocka_unit_test_teardown(test_sd_notify_other_pid, teardown_notified),
        cmocka_unit_test_teardown(test_sd_notify_bad_socket, teardown_notified),
        cmocka_unit_test_teardown(test_deb_package, teardown),
        cmocka_unit_test_teardown(test_install_keeps_config, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
