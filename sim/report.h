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
/* "alarm transitions N (raised/updated: red a, orange b, yellow c, blue d)":
 * every level, as the summary and the progress line say it. */
void sim_report_alarm_counts(char *out, size_t cap, const sim_timeline *tl);
/* Writes text (and a line feed) to path through a temporary file and a
 * rename, so a reader never sees half a report. 0 or SIM_ERR (said on stderr). */
int sim_report_write(const char *path, const char *text);

/* `sim run --html`: what the page needs besides the timeline, noted by run.c
 * as messages arrive (report_html.c). Latency is the platform's arrival (wall
 * clock of this host) minus the item's `recv` (readings, events) or `at`
 * (alarm transitions): the gateway's receive-to-platform delivery time, both
 * clocks being this machine's when `sim run` started the gateway. */
#define SIM_LAT_BINS 16
#define SIM_HTML_THRESHOLDS 128
typedef struct sim_threshold {
    char dev[SIM_NAME_MAX];
    char metric[48];
    int level;
    double value;
} sim_threshold;

typedef struct sim_html_extra {
    uint64_t lat_n, lat_bins[SIM_LAT_BINS];
    double lat_min, lat_max, lat_sum;
    int nthr; /* thresholds the gateway's alarm transitions named, distinct */
    sim_threshold thr[SIM_HTML_THRESHOLDS];
} sim_html_extra;

/* Upper edges of the latency bins, seconds (the last is infinite). */
extern const double sim_lat_edges[SIM_LAT_BINS];
/* Notes one uplink message of kind "readings", "events" or "alarms" that
 * arrived at Unix time wall_s. Malformed payloads are skipped. */
void sim_html_note(sim_html_extra *x, const char *kind, const char *payload, double wall_s);
/* The self-contained page (no external assets: inline CSS, SVG, a few lines of
 * JS): the verdict with each expectation's evidence, per device the values
 * received over scenario time with the thresholds and the alarm transitions
 * and events marked, and the latency distribution. 0 or SIM_ERR. */
int sim_report_html(const char *path, const sim_run_conf *rc, const sim_verdict *v,
                    const sim_timeline *tl, const sim_run_summary *sum, const sim_html_extra *x);

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
