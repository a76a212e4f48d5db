/* build/gateway: the sensing gateway and its vendor tools. */
#include "gateway/admin.h"
#include "gateway/cli.h"
#include "gateway/config.h"
#include "gateway/core_internal.h"
#include "base/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define GW_VERSION "0.1.0"

static void usage(FILE *f)
{
    fprintf(f, "usage:\n"
               "  gateway [-c FILE]              run (no -c: the embedded demo config)\n"
               "  gateway --check-config FILE    validate a config file and exit\n"
               "  gateway --print-default-config print the embedded default config\n"
               "  gateway --config-reference     print every config key as Markdown\n"
               "  gateway decode --protocol sl651|hj212 --hex BYTES | --text TEXT\n"
               "  gateway decode --adapter NAME --hex BYTES | --json TEXT\n"
               "  gateway read --profile P --connect tcp://HOST:PORT --unit N\n"
               "  gateway admin [--socket PATH] status | ack ALARM-ID [BY]\n"
               "  gateway --version\n");
}

static int check_config(const char *path)
{
    gw_config cfg;
    char err[1024];
    if (gw_config_load(&cfg, path, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
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

static int run(const char *path)
{
    gw_config cfg;
    char err[1024];
    if (gw_config_load(&cfg, path, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
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
    if (argc >= 2 && strcmp(argv[1], "admin") == 0) {
        const char *sock = "/var/lib/gw/admin.sock";
        int i = 2;
        if (argc > 3 && strcmp(argv[2], "--socket") == 0) {
            sock = argv[3];
            i = 4;
        }
        return gw_admin_client(sock, argc - i, argv + i);
    }
    if (argc >= 2 && strcmp(argv[1], "read") == 0)
        return gw_cli_read(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "--check-config") == 0) {
        if (argc != 3) {
            usage(stderr);
            return 2;
        }
        return check_config(argv[2]);
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else {
            fprintf(stderr, "gateway: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    return run(config);
}
