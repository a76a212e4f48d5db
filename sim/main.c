/* build/sim: plays field devices (`modbus`) and the city platform
 * (`platform`). The device side runs on one libuv loop; every device kind is
 * a module listed in kinds.c. Only the "sim: ready" line goes to stdout. */
#include "sim/sim.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <uv.h>

double sim_now(const sim_ctx *ctx)
{
    return (double)(uv_hrtime() - ctx->t0_ns) / 1e9 * ctx->speed;
}

static void usage(FILE *f)
{
    fprintf(
        f, "usage:\n"
           "  sim modbus --scenario FILE [--speed X] [--stats FILE] [--bind ADDR] [--base-port M]\n"
           "             [--quiet]\n"
           "  sim check SCENARIO [--bind ADDR] [--base-port M]\n"
           "  sim run SCENARIO [--speed X] [--duration D] [--broker-port N] [--base-port M]\n"
           "          [--gateway BIN] [--report FILE.json] [--csv FILE] [--csv-step S]\n"
           "          [--html FILE.html] [--progress S] [--quiet] [--keep]\n"
           "  sim platform --broker URI [--topic T] [--count N] [--timeout S] [--pretty]\n"
           "               [--qos Q] [--client-id ID] [--ca FILE] [--user U --password-file F]\n"
           "see docs/sim.md\n");
}

/* Raises the open-file soft limit to the hard limit, and past it when this
 * process may (root) and the scenario needs more: two descriptors a device
 * (listener and one connection) plus some slack. */
static int raise_nofile(uint32_t ndevices, int quiet)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    rlim_t need = (rlim_t)ndevices * 2 + 256;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_max != RLIM_INFINITY && need > rl.rlim_max) {
        struct rlimit up = {need, need};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up;
    }
    getrlimit(RLIMIT_NOFILE, &rl);
    if (!quiet)
        fprintf(stderr, "sim: open-file limit %llu (want %llu)%s\n",
                (unsigned long long)rl.rlim_cur, (unsigned long long)need,
                rl.rlim_cur < need ? ": a device stops listening while it has a connection" : "");
    return rl.rlim_cur < need;
}

typedef struct run_state {
    sim_ctx ctx;
    uv_signal_t sig_term, sig_int, sig_usr1;
    int stopping;
} run_state;

static void stop_all(run_state *rs)
{
    if (rs->stopping)
        return;
    rs->stopping = 1;
    if (rs->ctx.stats_path)
        sim_stats_write(&rs->ctx, rs->ctx.stats_path);
    uv_close((uv_handle_t *)&rs->sig_term, NULL);
    uv_close((uv_handle_t *)&rs->sig_int, NULL);
    uv_close((uv_handle_t *)&rs->sig_usr1, NULL);
    for (int i = 0; i < rs->ctx.scn->ngroups; i++) {
        sim_group *g = &rs->ctx.scn->groups[i];
        if (g->kind && g->kstate)
            g->kind->stop(&rs->ctx, g);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    run_state *rs = h->data;
    if (signum == SIGUSR1) {
        if (rs->ctx.stats_path)
            sim_stats_write(&rs->ctx, rs->ctx.stats_path);
        return;
    }
    stop_all(rs);
}

static const char *arg_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "sim: %s needs a value\n", argv[*i]);
        exit(2);
    }
    return argv[++*i];
}

/* The plan of a scenario as sim run would carry it out: every group with the
 * ports it binds or sends to, the rehearsal's processes and each expectation,
 * without starting anything (sim check). */
static void print_plan(const sim_scenario *scn, const char *path, const char *bind)
{
    printf("scenario: %s (%s), %u devices in %d groups\n", scn->name, path, scn->ndevices,
           scn->ngroups);
    for (int i = 0; i < scn->ngroups; i++) {
        const sim_group *g = &scn->groups[i];
        char first[64], last[64];
        const char *host = g->rtu && g->rtu->host[0] ? g->rtu->host : g->host[0] ? g->host : bind;
        sim_format_id(g->id_tmpl, g->first, first, sizeof first);
        sim_format_id(g->id_tmpl, g->first + g->count - 1, last, sizeof last);
        printf("  %s..%s %s x%u (line %d): ", first, last, g->protocol, g->count, g->line);
        if (g->rtu)
            printf("dial the gateway at %s:%u", host, g->rtu->port);
        else if (g->peer && !strcmp(g->protocol, "mqtt-gauge"))
            printf("publish to the broker %s:%u", host, g->port);
        else if (g->peer)
            printf("post to the gateway %s://%s:%u%s", g->peer->dtls ? "coaps" : "coap", host,
                   g->port, g->peer->path);
        else
            printf("listen on %s:%u..%u, unit %d", host, g->port, g->port + g->count - 1, g->unit);
        printf(", %d registers, %d faults, %d events\n", g->nregs, g->nfaults,
               g->peer ? g->peer->nevents : 0);
    }
    const sim_run_conf *rc = scn->run;
    if (!rc || !rc->broker[0]) {
        printf("rehearsal: none (no platform: block; sim modbus plays the devices)\n");
        return;
    }
    printf("rehearsal: platform %s topic %s/%s/#; broker %s; gateway %s%s%s\n", rc->broker,
           rc->topic_prefix[0] ? rc->topic_prefix : "iot", rc->gateway_id[0] ? rc->gateway_id : "+",
           rc->broker_start ? "started by sim run" : "yours",
           rc->gw_config[0] ? rc->gw_binary : "yours (not started)", rc->gw_config[0] ? " -c " : "",
           rc->gw_config);
    double speed = rc->speed > 0 ? rc->speed : 1;
    printf("  duration %gs scenario time at speed %g (%.1fs wall)\n", rc->duration, speed,
           rc->duration / speed);
    printf("expectations: %d\n", rc->nexpects);
    for (int i = 0; i < rc->nexpects; i++)
        printf("  [%d] %s (line %d)\n", i + 1, rc->expects[i].label, rc->expects[i].line);
}

/* --base-port for the devices alone: the mqtt-gauges' port is their broker's
 * and stays. */
static int move_ports(sim_scenario *scn, double base)
{
    uint32_t keep[16];
    int nkeep = 0, nmap = 0;
    sim_port_map map[64];
    char err[160];
    for (int i = 0; i < scn->ngroups && nkeep < 16; i++)
        if (!strcmp(scn->groups[i].protocol, "mqtt-gauge"))
            keep[nkeep++] = scn->groups[i].port;
    if (base > 0 && sim_scenario_move_ports(scn, (uint32_t)base, keep, nkeep, map, &nmap, 64, err,
                                            sizeof err)) {
        fprintf(stderr, "sim: %s\n", err);
        return SIM_EINVAL;
    }
    return SIM_OK;
}

static int run_devices(int argc, char **argv, int check_only)
{
    double base_port = 0;
    const char *scenario = NULL;
    char err[512];
    run_state rs;
    memset(&rs, 0, sizeof rs);
    rs.ctx.speed = 1;
    rs.ctx.bind = "127.0.0.1";
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--scenario")) {
            scenario = arg_value(argc, argv, &i);
        } else if (a[0] != '-' && !scenario) {
            scenario = a;
        } else if (!strcmp(a, "--base-port")) {
            const char *v = arg_value(argc, argv, &i);
            char *end;
            errno = 0;
            base_port = strtod(v, &end);
            if (end == v || *end || errno || base_port != floor(base_port) || base_port < 1 ||
                base_port > 65535) {
                fprintf(stderr, "sim: --base-port: expected a port 1..65535\n");
                return 2;
            }
        } else if (!strcmp(a, "--speed")) {
            const char *v = arg_value(argc, argv, &i);
            char *end;
            errno = 0;
            rs.ctx.speed = strtod(v, &end);
            if (end == v || *end || errno || !(rs.ctx.speed > 0) || rs.ctx.speed > 1e6) {
                fprintf(stderr, "sim: --speed: expected a number in (0, 1e6]\n");
                return 2;
            }
        } else if (!strcmp(a, "--stats")) {
            rs.ctx.stats_path = arg_value(argc, argv, &i);
        } else if (!strcmp(a, "--bind")) {
            rs.ctx.bind = arg_value(argc, argv, &i);
        } else if (!strcmp(a, "--quiet")) {
            rs.ctx.quiet = 1;
        } else {
            fprintf(stderr, "sim: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!scenario) {
        fprintf(stderr, "sim: a scenario file is required (--scenario FILE)\n");
        return 2;
    }
    sim_scenario *scn = sim_scenario_load(scenario, err, sizeof err);
    if (!scn) {
        fprintf(stderr, "sim: %s\n", err);
        return 2;
    }
    if (move_ports(scn, base_port) != SIM_OK) {
        sim_scenario_free(scn);
        return 2;
    }
    if (check_only) {
        print_plan(scn, scenario, rs.ctx.bind);
        printf("ok: %s, %u devices\n", scn->name, scn->ndevices);
        sim_scenario_free(scn);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    rs.ctx.park_listeners = raise_nofile(scn->ndevices, rs.ctx.quiet);
    uv_loop_t *loop = uv_default_loop();
    rs.ctx.loop = loop;
    rs.ctx.scn = scn;
    rs.ctx.t0_ns = uv_hrtime();
    uv_signal_init(loop, &rs.sig_term);
    uv_signal_init(loop, &rs.sig_int);
    uv_signal_init(loop, &rs.sig_usr1);
    rs.sig_term.data = rs.sig_int.data = rs.sig_usr1.data = &rs;
    uv_signal_start(&rs.sig_term, on_signal, SIGTERM);
    uv_signal_start(&rs.sig_int, on_signal, SIGINT);
    uv_signal_start(&rs.sig_usr1, on_signal, SIGUSR1);

    int rc = 0;
    for (int i = 0; i < scn->ngroups && rc == 0; i++) {
        sim_group *g = &scn->groups[i];
        if (g->kind->start(&rs.ctx, g) != SIM_OK)
            rc = 1;
    }
    if (rc == 0) {
        printf("sim: ready %u devices\n", scn->ndevices);
        fflush(stdout);
        if (!rs.ctx.quiet)
            fprintf(stderr, "sim: scenario '%s', speed %g\n", scn->name, rs.ctx.speed);
    } else {
        /* The kind named the device and port; say how to move them. */
        fprintf(stderr, "sim: a port is taken or cannot be bound: free it, or move every device "
                        "with --base-port N (the lowest port becomes N, offsets kept)\n");
        rs.ctx.stats_path = NULL;
        stop_all(&rs);
    }
    uv_run(loop, UV_RUN_DEFAULT);
    for (int i = 0; i < scn->ngroups; i++) {
        sim_group *g = &scn->groups[i];
        if (g->kind && g->kstate)
            g->kind->destroy(&rs.ctx, g);
    }
    if (uv_loop_close(loop) != 0 && !rs.ctx.quiet)
        fprintf(stderr, "sim: loop still had handles at exit\n");
    sim_stats_print_cpu(stderr);
    sim_scenario_free(scn);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "modbus"))
        return run_devices(argc, argv, 0);
    if (!strcmp(argv[1], "check"))
        return run_devices(argc, argv, 1);
    if (!strcmp(argv[1], "platform"))
        return sim_platform_main(argc, argv);
    if (!strcmp(argv[1], "run"))
        return sim_run_main(argc, argv);
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "sim: unknown command %s\n", argv[1]);
    usage(stderr);
    return 2;
}
