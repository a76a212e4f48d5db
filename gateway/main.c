/* build/gateway: the sensing gateway and its vendor tools. */
#include "gateway/admin.h"
#include "gateway/cli.h"
#include "gateway/config.h"
#include "gateway/core_internal.h"
#include "base/log.h"
#include "gateway/protect.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define GW_VERSION "0.1.0"
#define GW_DEMO_ID "gw-demo" /* gateway/default.yaml */

static void usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  gateway -c FILE                run with a config file\n"
               "  gateway --demo                 run the embedded demo config (make demo)\n"
               "  gateway --check-config FILE    validate a config file and exit\n"
               "  gateway --print-default-config print the embedded default config\n"
               "  gateway --config-reference     print every config key as Markdown\n"
               "  gateway decode --protocol sl651|hj212 --hex BYTES | --text TEXT\n"
               "  gateway decode --adapter NAME --hex BYTES | --json TEXT\n"
               "  gateway read --profile P --connect tcp://HOST:PORT --unit N [--raw]\n"
               "  gateway check-profile FILE [--against SCENARIO]\n"
               "  gateway admin [--socket PATH | -c FILE] [--json] VERB (gateway admin --help)\n"
               "  gateway keygen sm2|sm4 FILE    write a new key (mode 0600; sm2 also FILE.pub)\n"
               "  gateway --version\n");
}

/* The demo's identity is for the demo alone: two boxes both publishing as
 * gw-demo would collide on item ids at the platform. */
static int demo_id_refused(const gw_config *cfg, int demo)
{
    if (demo || strcmp(cfg->gateway_id, GW_DEMO_ID) != 0)
        return 0;
    fprintf(stderr,
            "%s: gateway.id '%s' is the demo's: give this gateway its own id (or leave "
            "it out to derive one from /etc/machine-id)\n",
            cfg->source, GW_DEMO_ID);
    return 1;
}

static int check_config(const char *path)
{
    gw_config cfg;
    char err[1024];
    if (gw_config_load(&cfg, path, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        if (strstr(err, "unknown key 'name'") || strstr(err, "unknown key 'points'"))
            fprintf(stderr, "(a Modbus device profile? check it with: gateway check-profile %s)\n",
                    path);
        return 1;
    }
    if (demo_id_refused(&cfg, 0)) {
        gw_config_free(&cfg);
        return 1;
    }
    /* Profiles and protocol checks are part of a device's config too. */
    int bad = gw_core_check(&cfg, err, sizeof(err)) != 0;
    if (bad)
        fprintf(stderr, "%s\n", err);
    if (!bad)
        printf("%s: OK (%d devices)\n", path, cfg.ndevices);
    gw_config_free(&cfg);
    return bad;
}

static void log_open_handle(uv_handle_t *h, void *arg)
{
    GW_ERROR("core", "handle left open at exit: %s%s%s", uv_handle_type_name(uv_handle_get_type(h)),
             uv_is_active(h) ? ", active" : "", uv_has_ref(h) ? "" : ", unref'd");
    (*(int *)arg)++;
}

/* Closes the loop after the last uv_run and returns the number of handles still open. A
 * clean shutdown has closed every one, so a handle left here is a leak and the exit code
 * says so (libuv's own tests assert the same: MAKE_VALGRIND_HAPPY). */
static int close_loop(uv_loop_t *loop)
{
    int open = 0;
    uv_walk(loop, log_open_handle, &open);
    int rc = uv_loop_close(loop);
    if (rc && !open)
        open = 1;
    if (rc)
        GW_ERROR("core", "loop closed with %d handle(s) still open (%s)", open, uv_strerror(rc));
    return open;
}

/* glibc's allocator (docs/design.md "Measured", Memory): two arenas instead
 * of one per thread (loop, store, Paho's two), so a thread does not keep free
 * memory of its own that the others cannot use; the threads' small blocks go
 * through glibc's per-thread cache first and rarely contend. The mmap
 * threshold stays dynamic: fixed at 128 KiB it returned every fetched batch
 * and every uplink message to the kernel, and faulted them in again (about
 * one page fault per poll, a few % of the CPU per poll). */
static void malloc_setup(void)
{
#ifdef __GLIBC__
    mallopt(M_ARENA_MAX, 2);
#endif
}

static int run(const char *path, int demo)
{
    malloc_setup();
    gw_config cfg;
    char err[1024];
    if (gw_config_load(&cfg, path, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (demo_id_refused(&cfg, demo)) {
        gw_config_free(&cfg);
        return 1;
    }
    /* A peer closing a socket must be an error return, not process death. */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    uv_loop_init(&loop);
    gw_core *core = calloc(1, sizeof(*core));
    if (!core) {
        gw_config_free(&cfg);
        return 1;
    }
    int rc = gw_core_start(core, &loop, &cfg, path, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "gateway: %s\n", err);
        uv_run(&loop, UV_RUN_DEFAULT);
        close_loop(&loop);
        free(core);
        return 1;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    int leaked = close_loop(&loop);
    rc = core->exit_code;
    free(core);
    /* A leak fails the run even after a clean stop; 3 tells it apart from a failed start. */
    return rc ? rc : leaked ? 3 : 0;
}

int main(int argc, char **argv)
{
    const char *config = NULL;
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("gateway %s\n", GW_VERSION);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--config-reference") == 0) {
        gw_config_reference(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--print-default-config") == 0) {
        fputs(gw_config_default_text(), stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "decode") == 0)
        return gw_cli_decode(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "admin") == 0)
        return gw_admin_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "keygen") == 0) {
        char err[400];
        if (argc != 4) {
            usage(stderr);
            return 2;
        }
        if (gw_protect_keygen(argv[2], argv[3], err, sizeof(err))) {
            fprintf(stderr, "gateway keygen: %s\n", err);
            return 1;
        }
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "read") == 0)
        return gw_cli_read(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "check-profile") == 0)
        return gw_cli_check_profile(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "--check-config") == 0) {
        if (argc != 3) {
            usage(stderr);
            return 2;
        }
        return check_config(argv[2]);
    }
    int demo = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--demo") == 0) {
            demo = 1;
        } else {
            fprintf(stderr, "gateway: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    /* A unit file that forgot -c must not quietly run the demo in production. */
    if (!config && !demo) {
        fprintf(stderr, "gateway: no configuration: give -c FILE (or --demo for the embedded "
                        "demo)\n");
        usage(stderr);
        return 2;
    }
    if (config && demo) {
        fprintf(stderr, "gateway: -c and --demo exclude each other\n");
        return 2;
    }
    return run(config, demo);
}
