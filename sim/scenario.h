#ifndef SIM_SCENARIO_H
#define SIM_SCENARIO_H
/* The scenario model: device groups, registers, faults, links, and the
 * loader (scenario.c). Kind-specific keys live in the structs the kinds own
 * (station.h, peer.h); the rehearsal block in expect.h. */
#include "sim/curve.h"
#include "sim/encode.h"
#include "sim/mbtcp.h"

typedef struct sim_regdef {
    int table; /* SIM_TAB_* */
    uint16_t addr;
    sim_type type;
    sim_order order;
    double scale; /* raw = value * scale + offset */
    double offset;
    int writable;
    sim_curve curve;
    int line;
} sim_regdef;

typedef enum {
    SIM_F_SILENT = 0,
    SIM_F_LATE,
    SIM_F_EXCEPTION,
    SIM_F_GARBAGE,
    SIM_F_BAD_CRC,
    SIM_F_DROP,
    SIM_F_TRUNCATED,
    SIM_F__COUNT
} sim_fault_kind;

typedef struct sim_fault {
    sim_fault_kind kind;
    double from, to; /* scenario-time window, seconds; to < 0 = forever */
    double delay_s;  /* late: wall-clock delay */
    uint32_t every;  /* garbage, bad_crc, truncated, drop: every Nth answer/request; 0 = all */
    int code;        /* exception code */
    int addr;        /* exception: only requests touching addr; -1 = any */
    int fc;          /* exception: only this function code; 0 = any */
} sim_fault;

struct sim_kind;
struct sim_rtu_conf;
struct sim_peer;
#define SIM_UNIT_ANY (-1)

/* Link settings of the serial kinds (modbus-rtu, modbus-dtu). Groups naming the
 * same `bus` share one link; one of them (have_link) carries these settings. */
#define SIM_LINK_DATA_MAX 256
typedef struct sim_link_conf {
    char bus[64];       /* "" = a bus of its own */
    int have_link;      /* this group set link keys */
    int link_line;      /* where */
    char pty_link[256]; /* rtu: create a pty pair, symlink its slave here ("" = no link) */
    char path[256];     /* rtu: serve this existing tty instead of creating a pty */
    uint32_t baud;      /* rtu, dtu: emulated line speed; 0 = none */
    double silence_s;   /* end-of-frame silence; 0 = 3.5 characters (>= 1.75 ms) */
    char connect[128];  /* dtu: host:port to dial */
    uint32_t number;    /* dtu: {n} in the registration template */
    int register_tmpl;  /* dtu: reg is an id template ("DTU-{n:04}"), not raw bytes */
    uint8_t reg[SIM_LINK_DATA_MAX];
    size_t reg_len;
    double heartbeat_s; /* dtu: 0 = none */
    uint8_t hb[SIM_LINK_DATA_MAX];
    size_t hb_len;
    double reconnect_s, reconnect_max_s; /* dtu: backoff bounds */
} sim_link_conf;

typedef struct sim_group {
    char id_tmpl[64];
    uint32_t count;
    uint32_t first;
    char protocol[32];
    const struct sim_kind *kind;
    char host[64];
    uint32_t port;
    int unit; /* 0..255 or SIM_UNIT_ANY */
    int nregs;
    sim_regdef *regs;
    int nfaults;
    sim_fault *faults;
    sim_link_conf link; /* modbus-rtu, modbus-dtu only */
    int line;
    void *kstate;             /* the kind's per-group state */
    struct sim_rtu_conf *rtu; /* sl651, hj212: dialing stations' keys (owned); else NULL */
    struct sim_peer *peer;    /* peer kinds only (coap-smoke, mqtt-gauge): owned */
} sim_group;

struct sim_run_conf;

typedef struct sim_scenario {
    char name[128];
    int ngroups;
    sim_group *groups;
    uint32_t ndevices;
    struct sim_run_conf *run; /* platform/gateway/broker/expect keys (sim run); NULL if none */
} sim_scenario;

/* Loads a scenario file. On failure returns NULL and writes "file:line: why"
 * into err. The caller frees the result with sim_scenario_free. */
sim_scenario *sim_scenario_load(const char *path, char *err, size_t errlen);
/* Same from a string; base_dir resolves relative csv paths (may be NULL). */
sim_scenario *sim_scenario_parse(const char *text, size_t len, const char *name,
                                 const char *base_dir, char *err, size_t errlen);
void sim_scenario_free(sim_scenario *s);
/* Expands the id template for device n (e.g. "wl-{n:03}", 2 -> "wl-002"). */
int sim_format_id(const char *tmpl, uint32_t n, char *out, size_t outlen);
/* One moved port range: old_lo..old_lo+count-1 became new_lo.. */
typedef struct sim_port_map {
    uint32_t old_lo, new_lo, count;
} sim_port_map;
/* --base-port: moves every group's port so that the lowest becomes base,
 * offsets kept. Listening groups own `count` ports from `port`; dialing groups
 * (sl651, hj212 `connect:`) and peer kinds share one, the gateway's listener.
 * A peer group whose port is one of keep[0..nkeep) (a broker's: the
 * mqtt-gauges are its clients) stays. Records what moved in map (up to cap,
 * *nmap counted). Returns 0, or SIM_EINVAL with the group's line in err when
 * a range would pass 65535. */
int sim_scenario_move_ports(sim_scenario *s, uint32_t base, const uint32_t *keep, int nkeep,
                            sim_port_map *map, int *nmap, int cap, char *err, size_t errlen);
/* Parses "1.5", "500ms", "30s", "10m", "2h" into seconds. */
int sim_parse_duration(const char *s, double *out);

#endif
