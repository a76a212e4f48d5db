#ifndef SIM_STATION_H
#define SIM_STATION_H
/* Dialing stations (sl651, hj212): the scenario keys of a group, g->rtu
 * (parsed by scn_station.c, scn_sl651.c, scn_hj212.c). */
#include "sim/curve.h"

typedef enum {
    SIM_RF_SILENT = 0, /* nothing is sent (reports due are counted, not sent) */
    SIM_RF_GARBAGE,    /* random bytes before a frame (never a frame start) */
    SIM_RF_BAD_CRC,    /* the frame's CRC, and only it, is wrong */
    SIM_RF_TRUNCATED,  /* the first half of the frame only */
    SIM_RF_DROP,       /* the connection is closed (every: Nth frame; else the window) */
    SIM_RF_CLOCK_SKEW, /* the station clock is off by `offset` */
    SIM_RF_DUPLICATE,  /* the frame is sent twice, byte for byte */
    SIM_RF_MALFORMED,  /* HJ212: a malformed CP with a valid CRC */
    SIM_RF__COUNT
} sim_rfault_kind;

#define SIM_RF_ONLY_MAX 32

typedef struct sim_rfault {
    sim_rfault_kind kind;
    double from, to; /* scenario time window; to < 0 = forever */
    uint32_t every;  /* every Nth frame of the device; 0 = each frame in the window */
    double offset_s; /* clock_skew */
    uint32_t bytes;  /* garbage: how many bytes (default 16) */
    int nonly;       /* only devices with these n (0 = every device of the group) */
    uint32_t only[SIM_RF_ONLY_MAX];
} sim_rfault;

typedef struct sim_rflag { /* HJ212 factor flag schedule */
    double from, to;
    char flag;
} sim_rflag;

typedef struct sim_factor {
    char code[24];
    sim_curve curve;
    char flag; /* default 'N' */
    int decimals;
    int nflags;
    sim_rflag *flags; /* owned */
} sim_factor;

typedef struct sim_revent {
    double at;
    int bit;   /* status bit (SL651 element 45) */
    int alarm; /* 1 sets the alarm condition, 0 clears it */
} sim_revent;

typedef struct sim_rtu_conf {
    char host[64]; /* connect: host:port */
    uint32_t port;
    int udp;
    char address[64]; /* SL651 station address template/base; HJ212 MN template */
    char password[32];
    int centre;
    int station_type;
    int m2;      /* SL651: wait for confirms (M2); 0 = M1 */
    int resends; /* at most this many resends of an unconfirmed report */
    int reply;   /* HJ212: Flag A bit */
    char st[8];  /* HJ212 ST */
    double interval, hourly_every, keepalive, extra_threshold, extra_interval;
    double minute_every, hour_every;   /* HJ212 2051 / 2061 */
    double confirm_timeout, reconnect; /* wall-clock seconds */
    int extra_on_rain;                 /* extra report threshold on 1-hour rainfall, else level */
    double clock0;                     /* station clock at t=0 (s since 1970, local); NaN = now */
    int spread;                        /* spread devices' timed reports over the interval */
    int status;                        /* SL651: send element 45 */
    int has_rain, has_level, has_voltage;
    sim_curve rain, level, voltage; /* rain: intensity in mm/h; level: m; voltage: V */
    double rain_base;               /* cumulative rainfall at t=0, mm */
    int ntest;
    double *test_at; /* owned: SL651 test reports (30) at these scenario times */
    int nevents;
    sim_revent *events; /* owned, sorted by time */
    int nfaults;
    sim_rfault *faults; /* owned */
    int nfactors;
    sim_factor *factors; /* owned */
    /* Field behaviours (docs/sim.md): one 36H picture in picture_packets M3 packets and
     * one 38H history of history_hours hours (< 0: never); water-quality elements in
     * timed reports; a 35H F2 manual text at manual_at; HJ212 2061 split into
     * hour_packets parts; quirks: id28 (SL651), crc_lsb (HJ212). */
    double picture_at, history_at, manual_at;
    int picture_packets, history_hours, water_quality, hour_packets;
    char manual[64], quirks[64];
} sim_rtu_conf;

void sim_rtu_conf_free(sim_rtu_conf *c);

#endif
