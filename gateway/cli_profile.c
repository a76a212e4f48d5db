/* gateway check-profile: validates one Modbus profile on its own and prints what
 * the gateway will do with it: the read plan (function codes, address ranges,
 * the gaps a merged read bridges), the metrics with their units, the status
 * events. With --against SCENARIO it proves the profile against build/sim
 * playing the scenario's register map: the sim is started, the plan is read
 * once with `gateway read --raw --strict` and the sim is stopped. The sim keeps
 * its own register map and encoders, so a profile that decodes its values
 * right agrees with an independent description of the device. */
#include "adapters/modbus_profile.h"
#include "base/yamldoc.h"
#include "gateway/cli.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIM_READY_MS 10000 /* the sim binds its ports at once; this only bounds a hang */
#define SIM_STOP_MS 5000

extern char **environ;

static void usage(void)
{
    fprintf(stderr, "usage: gateway check-profile FILE|NAME [--against SCENARIO [--sim BIN]\n"
                    "                             [--timeout MS] [--param KEY=VALUE]...]\n");
}

static const char *kind_name(int fc)
{
    static const char *const names[] = {"derived", "coil", "discrete", "holding", "input"};
    return fc >= 0 && fc <= 4 ? names[fc] : "?";
}

/* Prints the plan: each request and the runs of its range that no point uses. */
static void print_plan(const gw_profile *p)
{
    const gw_mb_request *reqs;
    size_t n = gw_profile_requests(p, &reqs), np = gw_profile_point_count(p);
    printf("read plan: %zu request%s per poll\n", n, n == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) {
        const gw_mb_request *q = &reqs[i];
        int bits = q->fc <= 2;
        uint8_t used[2000] = {0};
        printf("  FC %02u %-8s 0x%04X..0x%04X  %4u %s:", q->fc, kind_name(q->fc), q->addr,
               q->addr + q->count - 1u, q->count,
               bits ? (q->count == 1 ? "bit" : "bits")
                    : (q->count == 1 ? "register" : "registers"));
        for (size_t k = 0; k < np; k++) {
            gw_profile_point_info pi;
            gw_profile_point_get(p, k, &pi);
            if (pi.fc != q->fc || pi.address < q->addr || pi.address >= q->addr + q->count)
                continue;
            printf(" %s", pi.name);
            for (unsigned w = 0; w < pi.count && pi.address - q->addr + w < q->count; w++)
                used[pi.address - q->addr + w] = 1;
        }
        printf("\n");
        for (unsigned a = 0; a < q->count; a++) {
            if (used[a])
                continue;
            unsigned b = a;
            while (b + 1 < q->count && !used[b + 1])
                b++;
            printf("      gap bridged: 0x%04X..0x%04X (%u %s%s read and ignored)\n", q->addr + a,
                   q->addr + b, b - a + 1, bits ? "bit" : "register", b > a ? "s" : "");
            a = b;
        }
    }
}

static void print_points(const gw_profile *p)
{
    size_t np = gw_profile_point_count(p);
    char desc[512], src[32];
    int header = 0;
    for (int pass = 0; pass < 3; pass++) {
        header = 0;
        for (size_t k = 0; k < np; k++) {
            gw_profile_point_info pi;
            gw_profile_point_get(p, k, &pi);
            int which = pi.status ? 1 : pi.internal ? 2 : 0;
            if (which != pass)
                continue;
            if (!header++)
                printf("%s\n", pass == 0   ? "metrics (published readings):"
                               : pass == 1 ? "events (status points: only changes are published):"
                                           : "internal points (read, not published):");
            gw_profile_point_describe(p, k, desc, sizeof(desc));
            if (pi.derived)
                snprintf(src, sizeof(src), "derived");
            else
                snprintf(src, sizeof(src), "%s 0x%04X", kind_name(pi.fc), pi.address);
            if (pass == 0)
                printf("  %-22s %-8s %-15s %s%s\n", pi.metric, *pi.unit ? pi.unit : "-", src, desc,
                       pi.writable ? " writable" : "");
            else
                printf("  %-22s %-15s %s\n", pi.name, src, desc);
        }
    }
}

/* The first Modbus TCP group of a sim scenario: where its first device listens. */
static int scenario_target(const char *path, char *host, size_t hostcap, long *port, long *unit)
{
    gw_ydoc doc;
    char err[512];
    int rc = 1;
    if (gw_ydoc_load(&doc, path, err, sizeof(err))) {
        fprintf(stderr, "check-profile: %s\n", err);
        gw_ydoc_free(&doc);
        return 1;
    }
    const gw_ynode *devs = gw_ymap_get(doc.root, "devices");
    for (size_t i = 0; devs && devs->type == GW_Y_SEQ && i < devs->n && rc; i++) {
        const gw_ynode *g = devs->kids[i], *pr = gw_ymap_get(g, "protocol"),
                       *po = gw_ymap_get(g, "port"), *h = gw_ymap_get(g, "host"),
                       *u = gw_ymap_get(g, "unit");
        if ((pr && (pr->type != GW_Y_SCALAR || strcmp(pr->str, "modbus-tcp"))) || !po ||
            po->type != GW_Y_SCALAR)
            continue;
        *port = strtol(po->str, NULL, 10);
        *unit = u && u->type == GW_Y_SCALAR && strcmp(u->str, "any") ? strtol(u->str, NULL, 10) : 1;
        snprintf(host, hostcap, "%s", h && h->type == GW_Y_SCALAR ? h->str : "127.0.0.1");
        rc = 0;
    }
    if (rc)
        fprintf(stderr, "check-profile: %s has no modbus-tcp device group with a port\n", path);
    gw_ydoc_free(&doc);
    return rc;
}

/* build/sim beside this binary, like sim run finds the gateway beside itself. */
static void sim_beside_me(char *out, size_t cap)
{
    char self[PATH_MAX - 8];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0) {
        snprintf(out, cap, "sim");
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    *slash = '\0';
    snprintf(out, cap, "%s/sim", self);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Starts `sim modbus --scenario S --quiet` and waits (bounded) for its ready line. */
static pid_t sim_start(const char *sim, const char *scenario)
{
    int fds[2];
    pid_t pid;
    if (pipe(fds)) {
        fprintf(stderr, "check-profile: pipe: %s\n", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addclose(&fa, fds[1]);
    char *argv[] = {(char *)sim, "modbus", "--scenario", (char *)scenario, "--quiet", NULL};
    int rc = posix_spawn(&pid, sim, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc) {
        fprintf(stderr, "check-profile: cannot start the simulator %s: %s (--sim BIN names it)\n",
                sim, strerror(rc));
        close(fds[0]);
        return -1;
    }
    char buf[512];
    size_t len = 0;
    int64_t deadline = mono_ms() + SIM_READY_MS;
    for (;;) {
        int left = (int)(deadline - mono_ms());
        struct pollfd pf = {fds[0], POLLIN, 0};
        if (left <= 0 || poll(&pf, 1, left) <= 0)
            break;
        ssize_t n = read(fds[0], buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break; /* the sim exited: its stderr said why */
        len += (size_t)n;
        buf[len] = '\0';
        if (strstr(buf, "sim: ready")) {
            close(fds[0]); /* it prints nothing more on stdout */
            return pid;
        }
        if (len + 1 >= sizeof(buf))
            len = 0;
    }
    close(fds[0]);
    fprintf(stderr, "check-profile: the simulator did not get ready with %s\n", scenario);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void sim_stop(pid_t pid)
{
    int status;
    kill(pid, SIGTERM);
    for (int64_t deadline = mono_ms() + SIM_STOP_MS; mono_ms() < deadline;) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            return;
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
}

int gw_cli_check_profile(int argc, char **argv)
{
    const char *file = NULL, *against = NULL, *sim = NULL, *timeout = "1000";
    const char *params[8];
    int nparams = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (a[0] != '-' && !file) {
            file = a;
            continue;
        }
        if (!v) {
            usage();
            return 2;
        }
        i++;
        if (!strcmp(a, "--against"))
            against = v;
        else if (!strcmp(a, "--sim"))
            sim = v;
        else if (!strcmp(a, "--timeout"))
            timeout = v;
        else if (!strcmp(a, "--param") && nparams < 8)
            params[nparams++] = v;
        else {
            usage();
            return 2;
        }
    }
    if (!file || (sim && !against)) {
        usage();
        return 2;
    }

    gw_profile *p = NULL;
    char err[512];
    int rc = strchr(file, '/') || strstr(file, ".yaml")
                 ? gw_profile_load_file(&p, file, err, sizeof(err))
                 : gw_profile_load_embedded(&p, file, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("profile %s (device type %s)%s%s\n", gw_profile_name(p), gw_profile_device_type(p),
           *gw_profile_description(p) ? ": " : "", gw_profile_description(p));
    print_plan(p);
    print_points(p);
    gw_profile_free(p);
    printf("%s: OK\n", file);
    if (!against)
        return 0;

    char host[128], simbin[PATH_MAX], target[192], unitbuf[16];
    long port = 0, unit = 1;
    if (scenario_target(against, host, sizeof(host), &port, &unit))
        return 1;
    if (!sim) {
        sim_beside_me(simbin, sizeof(simbin));
        sim = simbin;
    }
    snprintf(target, sizeof(target), "tcp://%s:%ld", host, port);
    snprintf(unitbuf, sizeof(unitbuf), "%ld", unit);
    printf("\nagainst %s: the simulator plays the device on %s, unit %ld\n", against, target, unit);
    fflush(stdout);
    pid_t pid = sim_start(sim, against);
    if (pid < 0)
        return 1;
    char *rargv[16 + 2 * 8];
    int rn = 0;
    rargv[rn++] = "read";
    rargv[rn++] = "--profile";
    rargv[rn++] = (char *)file;
    rargv[rn++] = "--connect";
    rargv[rn++] = target;
    rargv[rn++] = "--unit";
    rargv[rn++] = unitbuf;
    rargv[rn++] = "--timeout";
    rargv[rn++] = (char *)timeout;
    rargv[rn++] = "--raw";
    rargv[rn++] = "--strict";
    for (int i = 0; i < nparams; i++) {
        rargv[rn++] = "--param";
        rargv[rn++] = (char *)params[i];
    }
    rargv[rn] = NULL;
    rc = gw_cli_read(rn, rargv);
    sim_stop(pid);
    if (rc == 0)
        printf("check-profile: PASS (every request answered, every reading good)\n");
    else
        printf("check-profile: FAIL (see the exceptions and readings above)\n");
    return rc ? 1 : 0;
}
