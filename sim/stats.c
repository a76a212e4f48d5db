/* The stats file: what every device saw (requests by function code, bytes,
 * faults injected, writes) and the simulator's own CPU use, as one JSON
 * document written atomically so a reader never sees half of it. */
#include "sim/stats.h"

#include "sim/scenario.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <uv.h>

static double tv(struct timeval t)
{
    return (double)t.tv_sec + (double)t.tv_usec / 1e6;
}

void sim_stats_print_cpu(FILE *f)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return;
    fprintf(f, "sim: cpu user=%.3fs sys=%.3fs maxrss=%ldKiB\n", tv(ru.ru_utime), tv(ru.ru_stime),
            ru.ru_maxrss);
    fflush(f);
}

int sim_stats_write(sim_ctx *ctx, const char *path)
{
    struct rusage ru;
    char tmp[4096];
    int rc = SIM_ERR;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return SIM_ENOMEM;
    cJSON_AddStringToObject(root, "scenario", ctx->scn ? ctx->scn->name : "");
    cJSON_AddNumberToObject(root, "speed", ctx->speed);
    cJSON_AddNumberToObject(root, "uptime_s", (double)(uv_hrtime() - ctx->t0_ns) / 1e9);
    cJSON_AddNumberToObject(root, "scenario_time_s", sim_now(ctx));
    cJSON *cpu = cJSON_AddObjectToObject(root, "cpu");
    if (cpu && getrusage(RUSAGE_SELF, &ru) == 0) {
        cJSON_AddNumberToObject(cpu, "user_s", tv(ru.ru_utime));
        cJSON_AddNumberToObject(cpu, "sys_s", tv(ru.ru_stime));
        cJSON_AddNumberToObject(cpu, "max_rss_kib", (double)ru.ru_maxrss);
    }
    cJSON *devs = cJSON_AddArrayToObject(root, "devices");
    double total = 0;
    if (devs && ctx->scn) {
        for (int i = 0; i < ctx->scn->ngroups; i++) {
            sim_group *g = &ctx->scn->groups[i];
            if (g->kind && g->kind->stats)
                g->kind->stats(ctx, g, devs);
        }
        cJSON *d;
        cJSON_ArrayForEach(d, devs)
        {
            cJSON *r = cJSON_GetObjectItemCaseSensitive(d, "requests");
            if (cJSON_IsNumber(r))
                total += r->valuedouble;
        }
    }
    cJSON_AddNumberToObject(root, "requests", total);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return SIM_ENOMEM;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "sim: stats: %s: %s\n", tmp, strerror(errno));
        free(text);
        return SIM_ERR;
    }
    size_t len = strlen(text);
    if (fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF && fflush(f) == 0 &&
        fsync(fileno(f)) == 0)
        rc = SIM_OK;
    if (fclose(f) != 0)
        rc = SIM_ERR;
    if (rc == SIM_OK && rename(tmp, path) != 0)
        rc = SIM_ERR;
    if (rc != SIM_OK) {
        fprintf(stderr, "sim: stats: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    free(text);
    return rc;
}
