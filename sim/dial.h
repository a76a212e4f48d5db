#ifndef SIM_DIAL_H
#define SIM_DIAL_H
/* dial.c: one station's link to the centre (connect, reconnect, faults,
 * confirm tracking), shared by dev_sl651.c and dev_hj212.c. */
#include "sim/kind.h"
#include "sim/station.h"

struct sim_dial;
typedef struct sim_dial_ops {
    /* Sends whatever is due at scenario time t; returns the scenario time of
     * its next deadline. */
    double (*tick)(struct sim_dial *d, double t);
    /* Incoming bytes: consume whole frames from buf; return bytes consumed. */
    size_t (*on_bytes)(struct sim_dial *d, const uint8_t *buf, size_t len);
    /* The link came up (may be NULL): e.g. an SL651 keep-alive names the station. */
    void (*on_up)(struct sim_dial *d, double t);
    /* Makes the frame's CRC wrong (only the CRC). */
    void (*bad_crc)(uint8_t *frame, size_t len);
    /* Rewrites a frame as malformed (may be NULL); returns new length or <0. */
    int (*malform)(const uint8_t *in, size_t len, uint8_t *out, size_t cap);
    uint8_t frame_start; /* garbage never holds this byte */
} sim_dial_ops;

#define SIM_DIAL_PENDING 4
#define SIM_DIAL_FRAME 1100

typedef struct sim_dial_pending {
    uint64_t key;    /* 0 = free slot */
    uint64_t due_ms; /* uv_now deadline */
    int tries;       /* resends done */
    int resends;     /* allowed */
    uint16_t len;
    uint8_t *data; /* owned */
} sim_dial_pending;

typedef struct sim_dial {
    const sim_dial_ops *ops;
    sim_ctx *ctx;
    const sim_rtu_conf *conf;
    char id[64];
    uint32_t k, n; /* index in the group, device number */
    void *timer;   /* uv_timer_t, owned; freed in its close callback */
    void *link;    /* the current connection (dial.c), freed in its close callback */
    int handles;   /* open libuv handles */
    int state;
    int stopping;
    double next_t; /* the kind's next deadline (scenario time) */
    uint64_t reconnect_ms;
    double down_until; /* scenario time a drop window ends */
    size_t out_pending;
    size_t rlen;
    uint8_t rbuf[2048];
    uint64_t rng;
    sim_dial_pending pend[SIM_DIAL_PENDING];
    /* counters */
    uint64_t frames, bytes_out, bytes_in, acks, acks_unmatched, resends, unacked, lost;
    uint64_t connections, connect_failures, disconnects, bad_in, requests_in, nout;
    uint64_t faults[SIM_RF__COUNT];
} sim_dial;

/* Initialises d (ops, conf, ids set by the caller) and starts dialing.
 * d must stay put until sim_dial_closed says so. */
int sim_dial_start(sim_dial *d);
/* Closes the timer and the link; sim_dial_closed(d) is 1 once the loop has
 * let go of every handle. */
void sim_dial_stop(sim_dial *d);
int sim_dial_closed(const sim_dial *d);
void sim_dial_free(sim_dial *d);
/* Sends one frame through the scenario's faults. key != 0 keeps a copy
 * and resends it (same bytes) up to `resends` times, every confirm_timeout,
 * until sim_dial_ack(key). Returns 1 if it went out, 0 if not (silent,
 * disconnected, dropped). */
int sim_dial_send(sim_dial *d, const uint8_t *frame, size_t len, double t, uint64_t key,
                  int resends);
/* A confirm arrived for key: 1 if it matched a waiting frame. */
int sim_dial_ack(sim_dial *d, uint64_t key);
/* Clock skew of the station at scenario time t (seconds). */
double sim_dial_skew(const sim_dial *d, double t);
/* Adds the link counters to a cJSON object. */
void sim_dial_stats(const sim_dial *d, void *obj);
/* Faults named for the stats file and scenarios. */
extern const char *const sim_rfault_names[SIM_RF__COUNT];

#endif
