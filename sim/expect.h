#ifndef SIM_EXPECT_H
#define SIM_EXPECT_H
/* Rehearsals (sim run): the scenario's run block (parsed by scn_run.c) and the
 * expectations judged over a timeline of what reached the platform
 * (expect.c; pure). */
#include "sim/base.h"

#define SIM_NAME_MAX 64

typedef enum {
    SIM_X_ALARM = 0,
    SIM_X_NO_ALARM,
    SIM_X_NO_READING_LOST,
    SIM_X_ONLINE,
    SIM_X_EVENT,
    SIM_X_NO_EVENT,
    SIM_X_LEAD_TIME,   /* a forecast >= level arrived at_least before `after` crosses */
    SIM_X_NO_FORECAST, /* no forecast >= level at all */
} sim_expect_kind;

/* One expectation of the scenario's `expect:` list. Times are scenario
 * seconds. Device lists are resolved at load time (site -> its devices). */
typedef struct sim_expect {
    sim_expect_kind kind;
    int line;
    char label[192];         /* the expectation in one line, for the verdict */
    char site[SIM_NAME_MAX]; /* as written ("" = none) */
    int ndevs;               /* the devices it is about; 0 = every device */
    char (*devs)[SIM_NAME_MAX];
    char rule[32]; /* alarm, no_alarm: "" = any rule */
    int level;     /* alarm, no_alarm: the lowest level that counts, 1..4 */
    double within; /* alarm, event: < 0 = unbounded */
    double of;     /* alarm, event: the moment `within` counts from; < 0 = none */
    int has_after; /* alarm: within counts from the sent value crossing `crosses` */
    char after_metric[48];
    double crosses;
    int after_table;           /* SIM_TAB_*: the register whose curve is after_metric */
    int after_addr;            /* -1 = from `metrics:`, else the group's first register */
    uint32_t count;            /* online: devices wanted */
    char type[32];             /* online: device type as the uplink says ("" = any) */
    char prefix[SIM_NAME_MAX]; /* online: device id prefix ("" = any) */
    char event[48];            /* event, no_event: the condition (fire_alarm, ...) */
    int ended;                 /* event: `active: false`, i.e. wait for the condition's end */
    double at_least;           /* lead_time: scenario seconds of lead wanted */
} sim_expect;

/* `metrics:` names the gateway gives the sim's registers (water_depth: holding:0). */
typedef struct sim_metric_map {
    char name[48];
    int table;
    int addr;
} sim_metric_map;

typedef struct sim_run_conf {
    char broker[160];      /* platform.broker: where the gateway publishes */
    char topic_prefix[64]; /* platform.topic_prefix (default iot) */
    char gateway_id[64];   /* platform.gateway_id ("" = any gateway) */
    char gw_binary[256];   /* gateway.binary ("" = do not start one) */
    char gw_config[512];   /* gateway.config, resolved against the scenario's folder */
    int broker_start;      /* broker.start: run a private mosquitto */
    uint32_t broker_port;  /* broker.port (default: the port of platform.broker) */
    double duration;       /* scenario seconds (default 5m) */
    double speed;          /* 0 = unset (1) */
    int nmetrics;
    sim_metric_map *metrics;
    int nexpects;
    sim_expect *expects;
} sim_run_conf;

/* Levels: 1 blue, 2 yellow, 3 orange, 4 red; 0 for an unknown name. */
int sim_level_parse(const char *s);
const char *sim_level_name(int level);

/* The timeline of a rehearsal (expect.c): what reached the platform, with the
 * scenario time it arrived, and samples of what the sim sent. Readings are
 * kept compactly (up to max_readings; counters go on past it). Item ids are
 * "<gw>-<seq>" with seq unique per gateway, so duplicates are found by seq. */
enum { SIM_Q_GOOD = 0, SIM_Q_UNCERTAIN, SIM_Q_BAD, SIM_Q_UNKNOWN };

typedef struct sim_rx_reading {
    double t;
    double value;
    uint64_t seq;
    uint32_t dev, metric; /* interned names */
    uint8_t quality;
    uint8_t has_value;
} sim_rx_reading;

typedef struct sim_rx_event {
    double t;
    uint64_t seq;
    uint32_t dev;
    int active;
    char event[48];
} sim_rx_event;

typedef struct sim_rx_alarm {
    double t;
    double value;
    uint64_t seq;
    uint32_t dev;
    int level;
    int has_value;
    char alarm[96];
    char rule[32];
    char metric[48];
    char state[16];
} sim_rx_alarm;

/* A forecast transition (topic .../forecasts). lead_s is the item's own
 * crossing - at, lead_l[] each level's, in gateway (wall) seconds. */
typedef struct sim_rx_forecast {
    double t;
    double lead_s;
    double lead_l[5]; /* per level 1..4 from `crossings` (crossing - at, seconds); NAN = none */
    uint64_t seq;
    uint32_t dev;
    int level;
    char forecast[96];
    char rule[32];
    char state[16];
    char detail[32];
} sim_rx_forecast;

typedef struct sim_sent {
    double t;
    double value;
    uint32_t dev, metric;
} sim_sent;

typedef struct sim_timeline {
    /* interned names (devices, metrics, types): index -> name */
    char (*names)[SIM_NAME_MAX];
    uint32_t nnames, capnames;
    uint32_t *hslots; /* open addressing: index + 1, 0 = empty */
    uint32_t hcap;
    /* per name (used for devices) */
    uint32_t *dev_type; /* interned type + 1, 0 = unknown */
    uint64_t *dev_readings, *dev_last_seq, *dev_out_of_order;
    uint8_t *dev_online; /* an online event or any reading */

    sim_rx_reading *rd;
    size_t nrd, caprd, max_readings;
    sim_rx_event *ev;
    size_t nev, capev;
    sim_rx_alarm *al;
    size_t nal, capal;
    sim_sent *sent;
    size_t nsent, capsent;
    sim_rx_forecast *fc;
    size_t nfc, capfc;
    uint64_t forecasts;
    double speed; /* scenario seconds per gateway second (0 = 1): turns a lead into scenario time */

    /* seen sequence numbers: bit (seq - seq_lo) */
    uint64_t *seqbits;
    uint64_t seq_lo, seq_words, seq_min, seq_max;
    uint64_t seq_base; /* 0 = the first seq received starts the sequence */

    uint64_t readings, events, alarms, duplicates, malformed, no_seq, readings_not_kept;
    uint64_t alarms_by_level[5];
    double end_t;             /* scenario time the run ended */
    struct sim_gw_tally *gws; /* per gateway (the envelope's "gw"): sim/gateways.c */
    uint32_t ngws;
} sim_timeline;

/* Delivery of one gateway's items at the platform, by item seq. */
#define SIM_MAX_GATEWAYS 256
typedef struct sim_gw_tally {
    char gw[64];
    uint64_t items, duplicates, outside; /* outside: beyond the de-duplicated window */
    uint64_t lo, hi, base;
    uint8_t *bits;
} sim_gw_tally;
/* Notes item seq of gateway gw: 1 new, 0 duplicate, SIM_ENOMEM (also past
 * SIM_MAX_GATEWAYS gateways). */
int sim_gw_note(sim_gw_tally **tab, uint32_t *n, const char *gw, uint64_t seq);
/* Seqs missing between the lowest and the highest seen. */
uint64_t sim_gw_missing(const sim_gw_tally *g);
void sim_gw_free(sim_gw_tally *tab, uint32_t n);

sim_timeline *sim_tl_new(size_t max_readings);
void sim_tl_free(sim_timeline *tl);
/* Adds the items of one uplink message (kind "readings", "events" or
 * "alarms": the topic's last level) that reached the platform at scenario
 * time t. Returns the number of new items (duplicates are counted, not
 * added), or SIM_EMALFORMED / SIM_ENOMEM. */
int sim_tl_message(sim_timeline *tl, double t, const char *kind, const char *payload, size_t len);
/* Records that the sim served `value` for device/metric at scenario time t
 * (samples in time order per series). */
int sim_tl_sent(sim_timeline *tl, double t, const char *device, const char *metric, double value);
/* Index of an interned name, or -1. */
int64_t sim_tl_find(const sim_timeline *tl, const char *name);
/* Missing sequence numbers between seq_base (or the lowest seen) and the
 * highest seen; *first gets the lowest missing one (0 if none). */
uint64_t sim_tl_seq_gaps(const sim_timeline *tl, uint64_t from, uint64_t to, uint64_t *first);

enum { SIM_V_PENDING = 0, SIM_V_PASS, SIM_V_FAIL };

typedef struct sim_verdict {
    int status;         /* SIM_V_* */
    char evidence[768]; /* why, with times, values, ids */
    double at;          /* scenario time of the deciding item; < 0 none */
    double base;        /* the crossing / `of` time the latency counts from; < 0 none */
    double latency;     /* scenario seconds; < 0 none */
    char alarm[96];     /* the alarm id (lead_time: the forecast id) that decided it */
    double lead, error; /* lead_time: scenario seconds of lead, and predicted - actual crossing */
    int has_lead;
} sim_verdict;

/* Evaluates x over tl. final = 0 while the run goes on: what cannot be
 * decided yet is PENDING; final = 1 decides everything (end of run, tl->end_t
 * set). Pure. */
int sim_expect_eval(const sim_expect *x, const sim_timeline *tl, int final, sim_verdict *out);

#endif
