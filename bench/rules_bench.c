/* Rules engine throughput: 10,000 devices, each reading matched by 5 rules;
 * then one forecast rule alone on a steadily rising, noisy depth (every
 * reading refits the trend). Prints ns per reading per matching rule.
 *
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. bench/rules_bench.c rules/rules.c base/model.c \
 *      -lm -o build/rules_bench && ./build/rules_bench
 */
#include "rules/rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEVICES 10000
#define ROUNDS 100

static long transitions;

static void on_tx(void *ctx, const gw_rules_transition *t)
{
    (void)ctx;
    (void)t;
    transitions++;
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static gw_rule base(const char *id, int kind, const char *metric)
{
    gw_rule r;
    memset(&r, 0, sizeof(r));
    snprintf(r.id, sizeof(r.id), "%s", id);
    r.kind = kind;
    snprintf(r.metric, sizeof(r.metric), "%s", metric);
    r.n_targets = 1;
    r.targets[0].kind = GW_TG_TYPE;
    snprintf(r.targets[0].name, sizeof(r.targets[0].name), "waterlog");
    r.level = 1;
    return r;
}

/* Runs ROUNDS readings per device of `metric`; returns ns per reading. */
static double run(const gw_rule *rules, size_t n, const char *metric, double (*value)(int, int))
{
    static char ids[DEVICES][16];
    char err[128];
    gw_rules_engine *e = gw_rules_new(rules, n, on_tx, NULL, err, sizeof(err));
    if (!e) {
        fprintf(stderr, "engine: %s\n", err);
        exit(1);
    }
    const char *groups[] = {"district-1"};
    int64_t t0 = 1700000000000LL;
    double start = 0;
    for (int round = 0; round < ROUNDS + 5; round++) {
        if (round == 5)
            start = now_ns(); /* the first rounds create the state */
        int64_t now = t0 + (int64_t)round * 60000;
        gw_rules_tick(e, now);
        for (int d = 0; d < DEVICES; d++) {
            gw_reading r;
            memset(&r, 0, sizeof(r));
            if (!ids[d][0])
                snprintf(ids[d], sizeof(ids[d]), "wl-%05d", d);
            snprintf(r.metric, sizeof(r.metric), "%s", metric);
            r.value = value(round, d);
            r.obs_ms = now;
            gw_rules_device dev = {ids[d], "waterlog", "site-1", groups, 1};
            gw_rules_reading(e, &dev, &r, now + d % 1000);
        }
    }
    double ns = (now_ns() - start) / ((double)ROUNDS * DEVICES);
    gw_rules_free(e);
    return ns;
}

static double depth_value(int round, int d)
{
    return (double)((round * 7 + d * 13) % 40) * 0.5; /* 0..19.5 cm, crosses levels */
}

static double rising_value(int round, int d)
{
    return 0.3 * round + (double)((round * 7 + d * 13) % 5) * 0.2; /* forecasts on */
}

static double rain_value(int round, int d)
{
    return (double)((round + d) % 5) * 0.5; /* 0..2 mm per minute */
}

int main(void)
{
    gw_rule r[5];
    r[0] = base("depth", GW_RK_THRESHOLD, "water_depth");
    r[0].levels[0] = (gw_rule_level){1, 3, 2, 0};
    r[0].levels[1] = (gw_rule_level){1, 10, 8, 0};
    r[0].levels[2] = (gw_rule_level){1, 25, 22, 0};
    r[0].raise_for_ms = 120000;
    r[0].clear_for_ms = 600000;
    r[1] = base("rising", GW_RK_WINDOW, "water_depth");
    r[1].fn = GW_WF_RISE;
    r[1].window_ms = 600000;
    r[1].buckets = 10;
    r[1].levels[1] = (gw_rule_level){1, 5, 2, 0};
    r[2] = base("stuck", GW_RK_FLATLINE, "water_depth");
    r[2].flat_for_ms = 6 * 3600000LL;
    r[2].flat_epsilon = 0.01;
    r[3] = base("silent", GW_RK_STALE, "");
    r[3].stale_after_ms = 15 * 60000;
    r[4] = base("range", GW_RK_RANGE, "water_depth");
    r[4].range_min = 0;
    r[4].range_max = 300;
    double a = run(r, 5, "water_depth", depth_value);
    printf("mix (threshold+rise+flatline+stale+range), %d devices: %.0f ns/reading, "
           "%.0f ns per reading per matching rule (5), %ld transitions\n",
           DEVICES, a, a / 5, transitions);

    gw_rule w[5];
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "rain%d", i);
        w[i] = base(id, GW_RK_WINDOW, "rain");
        w[i].fn = GW_WF_SUM;
        w[i].window_ms = 12 * 3600000LL;
        w[i].buckets = 48;
        w[i].levels[0] = (gw_rule_level){1, 50.0 + i, 40, 12 * 3600000LL};
        w[i].levels[1] = (gw_rule_level){1, 50.0 + i, 40, 6 * 3600000LL};
        w[i].levels[2] = (gw_rule_level){1, 50.0 + i, 40, 3 * 3600000LL};
        w[i].levels[3] = (gw_rule_level){1, 100.0 + i, 80, 3 * 3600000LL};
    }
    transitions = 0;
    double b = run(w, 5, "rain", rain_value);
    printf("rainstorm windows (12h/6h/3h sums, 48 buckets) x 5, %d devices: %.0f ns/reading, "
           "%.0f ns per reading per matching rule, %ld transitions\n",
           DEVICES, b, b / 5, transitions);

    gw_rule f = base("depth_fc", GW_RK_FORECAST, "water_depth");
    f.levels[1] = (gw_rule_level){1, 10, 10, 0};
    f.levels[2] = (gw_rule_level){1, 25, 25, 0};
    f.levels[3] = (gw_rule_level){1, 60, 60, 0};
    f.window_ms = 15 * 60000;
    f.horizon_ms = 60 * 60000;
    f.move_ms = 2 * 60000;
    f.min_points = 6;
    f.min_rate = 0.05;
    f.min_confidence = 0.99;
    transitions = 0;
    double c = run(&f, 1, "water_depth", rising_value);
    printf("forecast (Theil-Sen over %d points, 15 min window), %d devices: %.0f ns per reading "
           "per forecast rule, %ld transitions\n",
           GW_FC_POINTS, DEVICES, c, transitions);
    return 0;
}
