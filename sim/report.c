/* The verdict of a rehearsal: one PASS/FAIL line per expectation with its
 * evidence and a summary on stdout, the same as a JSON report, and a
 * plot-ready CSV of what the sim sent and what reached the platform. Writes
 * only the files it is given. */
#include "sim/report.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

double sim_reg_sent_value(const sim_regdef *r, double t, uint32_t k, sim_curve_state *st)
{
    double v = sim_curve_eval(&r->curve, t, k, st);
    double scale = r->scale != 0 ? r->scale : 1;
    switch (r->type) {
    case SIM_T_FLOAT32:
        return ((double)(float)(v * scale + r->offset) - r->offset) / scale;
    case SIM_T_FLOAT64:
        return v;
    case SIM_T_BOOL:
        return v != 0;
    default: {
        /* What the encoder puts on the wire: rounded to an integer raw value. */
        double raw = nearbyint(v * scale + r->offset);
        return (raw - r->offset) / scale;
    }
    }
}

const sim_regdef *sim_run_metric_reg(const sim_run_conf *rc, const sim_group *g, const char *metric,
                                     int table, int addr)
{
    if (addr < 0 && rc && metric) {
        for (int i = 0; i < rc->nmetrics; i++)
            if (!strcmp(rc->metrics[i].name, metric)) {
                table = rc->metrics[i].table;
                addr = rc->metrics[i].addr;
                break;
            }
    }
    if (addr < 0)
        return g->nregs > 0 ? &g->regs[0] : NULL;
    for (int i = 0; i < g->nregs; i++)
        if (g->regs[i].table == table && g->regs[i].addr == addr)
            return &g->regs[i];
    return NULL;
}

void sim_report_alarm_counts(char *out, size_t cap, const sim_timeline *tl)
{
    snprintf(out, cap,
             "alarm transitions %llu (raised/updated: red %llu, orange %llu, yellow %llu, "
             "blue %llu)",
             (unsigned long long)tl->alarms, (unsigned long long)tl->alarms_by_level[4],
             (unsigned long long)tl->alarms_by_level[3], (unsigned long long)tl->alarms_by_level[2],
             (unsigned long long)tl->alarms_by_level[1]);
}

static const char *status_word(int st)
{
    return st == SIM_V_PASS ? "PASS" : st == SIM_V_FAIL ? "FAIL" : "PENDING";
}

static void print_cpu(FILE *f, const char *who, const sim_cpu *c, double wall)
{
    if (!c->have) {
        fprintf(f, "  %-8s cpu: not measured\n", who);
        return;
    }
    double tot = c->user_s + c->sys_s;
    fprintf(f, "  %-8s cpu: user %.2fs sys %.2fs (%.0f%% of one core over %.1fs wall)", who,
            c->user_s, c->sys_s, wall > 0 ? 100 * tot / wall : 0, wall);
    if (c->max_rss_kib > 0)
        fprintf(f, ", max rss %ld KiB", c->max_rss_kib);
    fputc('\n', f);
}

int sim_report_print(FILE *f, const sim_run_conf *rc, const sim_verdict *v, const sim_timeline *tl,
                     const sim_run_summary *sum)
{
    int failed = 0, passed = 0;
    fprintf(f, "verdict: %s (speed %g, scenario t=0..%.1fs, %.1fs wall)%s\n",
            sum->scenario ? sum->scenario : "", sum->speed, sum->scenario_s, sum->wall_s,
            sum->interrupted ? " INTERRUPTED" : "");
    for (int i = 0; rc && i < rc->nexpects; i++) {
        const sim_expect *x = &rc->expects[i];
        fprintf(f, "%s [%d] %s (line %d): %s\n", status_word(v[i].status), i + 1, x->label, x->line,
                v[i].evidence);
        if (v[i].status == SIM_V_PASS)
            passed++;
        else
            failed++;
    }
    fprintf(f, "summary: %d passed, %d failed of %d expectations\n", passed, failed,
            rc ? rc->nexpects : 0);
    fprintf(f, "  messages: readings %llu, events %llu, alarms %llu, status %llu, other %llu",
            (unsigned long long)sum->msgs_readings, (unsigned long long)sum->msgs_events,
            (unsigned long long)sum->msgs_alarms, (unsigned long long)sum->msgs_status,
            (unsigned long long)sum->msgs_other);
    if (sum->msgs_dropped)
        fprintf(f, "; %llu DROPPED by the sim (its queue was full): results are incomplete",
                (unsigned long long)sum->msgs_dropped);
    fputc('\n', f);
    char alarms[160];
    sim_report_alarm_counts(alarms, sizeof alarms, tl);
    fprintf(f, "  items: readings %llu, events %llu, %s, duplicates %llu, malformed %llu\n",
            (unsigned long long)tl->readings, (unsigned long long)tl->events, alarms,
            (unsigned long long)tl->duplicates, (unsigned long long)tl->malformed);
    for (uint32_t i = 0; i < tl->ngws; i++) {
        const sim_gw_tally *g = &tl->gws[i];
        fprintf(f,
                "  gateway %s: %llu items delivered (seq %llu..%llu), %llu missing, %llu "
                "duplicates",
                g->gw, (unsigned long long)g->items, (unsigned long long)g->lo,
                (unsigned long long)g->hi, (unsigned long long)sim_gw_missing(g),
                (unsigned long long)g->duplicates);
        if (g->outside)
            fprintf(f, ", %llu not de-duplicated (seq far from the first)",
                    (unsigned long long)g->outside);
        fputc('\n', f);
    }
    if (tl->forecasts)
        fprintf(f, "  forecasts: %llu transitions\n", (unsigned long long)tl->forecasts);
    fprintf(f, "  devices: %u in the scenario, %u asked by the gateway, %llu requests served\n",
            sum->devices, sum->devices_served, (unsigned long long)sum->requests);
    print_cpu(f, "sim", &sum->sim, sum->wall_s);
    print_cpu(f, "gateway", &sum->gateway, sum->wall_s);
    print_cpu(f, "broker", &sum->broker, sum->wall_s);
    if (sum->setup_note[0])
        fprintf(f, "  note: %s\n", sum->setup_note);
    fflush(f);
    return failed;
}

static void add_cpu(cJSON *o, const char *key, const sim_cpu *c)
{
    if (!c->have)
        return;
    cJSON *x = cJSON_AddObjectToObject(o, key);
    if (!x)
        return;
    cJSON_AddNumberToObject(x, "user_s", c->user_s);
    cJSON_AddNumberToObject(x, "sys_s", c->sys_s);
    cJSON_AddNumberToObject(x, "max_rss_kib", (double)c->max_rss_kib);
}

int sim_report_write(const char *path, const char *text)
{
    char tmp[4096];
    int rc = SIM_ERR;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) {
        fprintf(stderr, "sim: report: %s: %s\n", tmp, strerror(errno));
        return SIM_ERR;
    }
    size_t len = strlen(text);
    if (fwrite(text, 1, len, f) == len && fputc('\n', f) != EOF && fflush(f) == 0)
        rc = SIM_OK;
    if (fclose(f) != 0)
        rc = SIM_ERR;
    if (rc == SIM_OK && rename(tmp, path) != 0)
        rc = SIM_ERR;
    if (rc != SIM_OK) {
        fprintf(stderr, "sim: report: cannot write %s: %s\n", path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

int sim_report_json(const char *path, const sim_run_conf *rc, const sim_verdict *v,
                    const sim_timeline *tl, const sim_run_summary *sum)
{
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return SIM_ENOMEM;
    int failed = 0;
    cJSON_AddStringToObject(root, "scenario", sum->scenario ? sum->scenario : "");
    cJSON_AddNumberToObject(root, "speed", sum->speed);
    cJSON_AddNumberToObject(root, "scenario_s", sum->scenario_s);
    cJSON_AddNumberToObject(root, "wall_s", sum->wall_s);
    cJSON_AddBoolToObject(root, "interrupted", sum->interrupted);
    cJSON *ex = cJSON_AddArrayToObject(root, "expectations");
    for (int i = 0; rc && ex && i < rc->nexpects; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddItemToArray(ex, o);
        cJSON_AddStringToObject(o, "expect", rc->expects[i].label);
        cJSON_AddNumberToObject(o, "line", rc->expects[i].line);
        cJSON_AddStringToObject(o, "result", status_word(v[i].status));
        cJSON_AddStringToObject(o, "evidence", v[i].evidence);
        if (v[i].at >= 0)
            cJSON_AddNumberToObject(o, "at_s", v[i].at);
        if (v[i].base >= 0)
            cJSON_AddNumberToObject(o, "from_s", v[i].base);
        if (v[i].latency > -1e300 && v[i].base >= 0 && v[i].at >= 0)
            cJSON_AddNumberToObject(o, "latency_s", v[i].latency);
        if (v[i].alarm[0])
            cJSON_AddStringToObject(o, v[i].has_lead ? "forecast" : "alarm", v[i].alarm);
        if (v[i].has_lead) {
            cJSON_AddNumberToObject(o, "lead_s", v[i].lead);
            cJSON_AddNumberToObject(o, "error_s", v[i].error);
        }
        failed += v[i].status != SIM_V_PASS;
    }
    cJSON_AddBoolToObject(root, "passed", failed == 0);
    cJSON *m = cJSON_AddObjectToObject(root, "messages");
    if (m) {
        cJSON_AddNumberToObject(m, "readings", (double)sum->msgs_readings);
        cJSON_AddNumberToObject(m, "events", (double)sum->msgs_events);
        cJSON_AddNumberToObject(m, "alarms", (double)sum->msgs_alarms);
        cJSON_AddNumberToObject(m, "status", (double)sum->msgs_status);
        cJSON_AddNumberToObject(m, "other", (double)sum->msgs_other);
        cJSON_AddNumberToObject(m, "dropped", (double)sum->msgs_dropped);
    }
    cJSON *it = cJSON_AddObjectToObject(root, "items");
    if (it) {
        cJSON_AddNumberToObject(it, "readings", (double)tl->readings);
        cJSON_AddNumberToObject(it, "events", (double)tl->events);
        cJSON_AddNumberToObject(it, "alarm_transitions", (double)tl->alarms);
        cJSON_AddNumberToObject(it, "duplicates", (double)tl->duplicates);
        cJSON_AddNumberToObject(it, "malformed", (double)tl->malformed);
        cJSON *lv = cJSON_AddObjectToObject(it, "alarms_by_level");
        for (int l = 1; lv && l <= 4; l++)
            cJSON_AddNumberToObject(lv, sim_level_name(l), (double)tl->alarms_by_level[l]);
    }
    /* Delivery per gateway, as the verdict's "gateway <id>:" lines. */
    cJSON *gws = cJSON_AddArrayToObject(root, "gateways");
    for (uint32_t i = 0; gws && i < tl->ngws; i++) {
        const sim_gw_tally *g = &tl->gws[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddItemToArray(gws, o);
        cJSON_AddStringToObject(o, "gw", g->gw);
        cJSON_AddNumberToObject(o, "items", (double)g->items);
        cJSON_AddNumberToObject(o, "seq_lo", (double)g->lo);
        cJSON_AddNumberToObject(o, "seq_hi", (double)g->hi);
        cJSON_AddNumberToObject(o, "missing", (double)sim_gw_missing(g));
        cJSON_AddNumberToObject(o, "duplicates", (double)g->duplicates);
        cJSON_AddNumberToObject(o, "not_deduplicated", (double)g->outside);
    }
    cJSON *d = cJSON_AddObjectToObject(root, "devices");
    if (d) {
        cJSON_AddNumberToObject(d, "scenario", sum->devices);
        cJSON_AddNumberToObject(d, "asked", sum->devices_served);
        cJSON_AddNumberToObject(d, "requests", (double)sum->requests);
    }
    cJSON *cpu = cJSON_AddObjectToObject(root, "cpu");
    if (cpu) {
        add_cpu(cpu, "sim", &sum->sim);
        add_cpu(cpu, "gateway", &sum->gateway);
        add_cpu(cpu, "broker", &sum->broker);
    }
    if (sum->setup_note[0])
        cJSON_AddStringToObject(root, "note", sum->setup_note);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return SIM_ENOMEM;
    int r = sim_report_write(path, text);
    free(text);
    return r;
}

/* CSV fields here are ids and metric names from our own scenario and the
 * gateway: quote anything with a comma, quote or line break. */
static void csv_field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_row(FILE *f, double t, const char *dir, const char *dev, const char *metric,
                    const double *value, const char *q)
{
    fprintf(f, "%.3f,%s,", t, dir);
    csv_field(f, dev);
    fputc(',', f);
    csv_field(f, metric);
    if (value)
        fprintf(f, ",%.10g,", *value);
    else
        fputs(",,", f);
    csv_field(f, q);
    fputc('\n', f);
}

/* Register label when `metrics:` names none: "holding:0". */
static void reg_label(const sim_regdef *r, char *out, size_t cap)
{
    static const char *const tabs[] = {"coil", "discrete", "holding", "input"};
    snprintf(out, cap, "%s:%u", tabs[r->table & 3], r->addr);
}

int sim_report_csv(const char *path, const sim_scenario *scn, const sim_timeline *tl, double step)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "sim: csv: %s: %s\n", path, strerror(errno));
        return SIM_ERR;
    }
    static const char *const qn[] = {"good", "uncertain", "bad", ""};
    fputs("t,dir,device,metric,value,quality\n", f);
    if (!(step > 0))
        step = 1;
    /* Sent: the curves as encoded, sampled (random walks keep state per series). */
    const sim_run_conf *rc = scn->run;
    char id[SIM_NAME_MAX], label[64];
    int bad = 0;
    for (int gi = 0; gi < scn->ngroups && !bad; gi++) {
        const sim_group *g = &scn->groups[gi];
        if (g->nregs == 0)
            continue;
        for (uint32_t k = 0; k < g->count; k++) {
            if (sim_format_id(g->id_tmpl, g->first + k, id, sizeof id))
                continue;
            for (int ri = 0; ri < g->nregs; ri++) {
                const sim_regdef *r = &g->regs[ri];
                if (r->curve.kind == SIM_C_NONE)
                    continue;
                reg_label(r, label, sizeof label);
                for (int mi = 0; rc && mi < rc->nmetrics; mi++)
                    if (rc->metrics[mi].table == r->table && rc->metrics[mi].addr == r->addr)
                        snprintf(label, sizeof label, "%s", rc->metrics[mi].name);
                sim_curve_state st = {-1, 0};
                uint64_t n = (uint64_t)(tl->end_t / step);
                for (uint64_t i = 0; i <= n; i++) {
                    double t = (double)i * step;
                    double v = sim_reg_sent_value(r, t, k, &st);
                    csv_row(f, t, "sent", id, label, &v, "");
                }
            }
        }
    }
    for (size_t i = 0; i < tl->nrd; i++) {
        const sim_rx_reading *r = &tl->rd[i];
        csv_row(f, r->t, "recv", tl->names[r->dev], tl->names[r->metric],
                r->has_value ? &r->value : NULL, qn[r->quality & 3]);
    }
    for (size_t i = 0; i < tl->nev; i++) {
        const sim_rx_event *e = &tl->ev[i];
        double a = e->active;
        csv_row(f, e->t, "event", tl->names[e->dev], e->event, &a, e->active ? "active" : "ended");
    }
    for (size_t i = 0; i < tl->nal; i++) {
        const sim_rx_alarm *a = &tl->al[i];
        char q[64];
        snprintf(q, sizeof q, "%s %s", a->state, sim_level_name(a->level));
        csv_row(f, a->t, "alarm", tl->names[a->dev], a->metric[0] ? a->metric : a->rule,
                a->has_value ? &a->value : NULL, q);
    }
    if (fflush(f) != 0 || ferror(f))
        bad = 1;
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "sim: csv: cannot write %s\n", path);
        return SIM_ERR;
    }
    return SIM_OK;
}
