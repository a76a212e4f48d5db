#ifndef SIM_REPORT_H
#define SIM_REPORT_H
/* The verdict of a rehearsal, its JSON report and CSV (report.c). */
#include "sim/expect.h"
#include "sim/scenario.h"

/* What a rehearsal measured besides the expectations (report.c prints it). */
typedef struct sim_cpu {
    int have;
    double user_s, sys_s;
    long max_rss_kib;
} sim_cpu;

typedef struct sim_run_summary {
    const char *scenario;
    double speed, scenario_s, wall_s;
    uint64_t msgs_readings, msgs_events, msgs_alarms, msgs_status, msgs_other, msgs_dropped;
    uint32_t devices, devices_served;
    uint64_t requests; /* what the devices were asked (from the kinds' stats) */
    sim_cpu sim, gateway, broker;
    int interrupted;
    char setup_note[256];
} sim_run_summary;

/* Prints the verdict: one PASS/FAIL line per expectation with its evidence,
 * then the summary. Returns the number of failed expectations. */
int sim_report_print(FILE *f, const sim_run_conf *rc, const sim_verdict *v, const sim_timeline *tl,
                     const sim_run_summary *sum);
/* The same as JSON, written to path (temp file + rename). */
int sim_report_json(const char *path, const sim_run_conf *rc, const sim_verdict *v,
                    const sim_timeline *tl, const sim_run_summary *sum);
/* A plot-ready CSV: t,dir,device,metric,value,quality. Rows "sent" sample the
 * scenario's register curves every `step` scenario seconds up to tl->end_t (as
 * encoded: integer registers rounded), rows "recv" are what reached the
 * platform (quality for readings, the level for alarms, active for events). */
int sim_report_csv(const char *path, const sim_scenario *scn, const sim_timeline *tl, double step);
/* The value a register definition puts on the wire at time t for device k,
 * read back in engineering units (integer types rounded as encoded). */
double sim_reg_sent_value(const sim_regdef *r, double t, uint32_t k, sim_curve_state *st);
/* The register of group g that carries metric (from `metrics:`, the given
 * table/addr, or the group's first register); NULL if none. */
const sim_regdef *sim_run_metric_reg(const sim_run_conf *rc, const sim_group *g, const char *metric,
                                     int table, int addr);

#endif
