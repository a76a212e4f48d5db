#ifndef GW_MODBUS_COMMON_H
#define GW_MODBUS_COMMON_H
/* What the three Modbus transports share (docs/modbus.md):
 *
 * 1. Pure framing: the Modbus CRC-16, request PDUs, MBAP and RTU frames, the
 *    length of an RTU answer, and the check of an answer against its request.
 *    No I/O, no logging: tests/unit/test_modbus_common.c covers them.
 * 2. Result collection (gw_mb_poll): one device's poll cycle over the
 *    profile's planned reads, then decoding with report-by-exception; answered
 *    and failed cycles go to the core's liveness (gw_core_seen/failed), which
 *    emits online/offline. Runs on the loop thread, hands readings to the core.
 * 3. Lateness statistics: how late each cycle's first request left after its
 *    scheduled time, as a histogram shared by every Modbus device; logged
 *    every 30 s and, when gateway.modbus_stats names a file, written there as
 *    JSON every second (the benchmark reads it).
 * 4. The link (modbus_tcp.c): one non-blocking libuv TCP connection that
 *    carries the transactions of one device (modbus-tcp, dial-out modbus-dtu)
 *    or of every device behind an inbound DTU, one at a time, with MBAP or
 *    RTU framing. modbus_dtu.c uses it through the gw_mbl__ functions below. */
#include "adapters/adapter.h"
#include "adapters/modbus_profile.h"
#include "gateway/core.h"
#include "base/timerwheel.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define GW_MB_PDU_MAX 253
#define GW_MB_ADU_MAX 260

/* ---- 1. Framing (pure) ---- */

/* Modbus CRC-16 (reflected 0xA001, init 0xFFFF). On the wire low byte first. */
uint16_t gw_mb_crc16(const uint8_t *p, size_t n);

/* Writes the request PDU (function code first) of a read into pdu (at least
 * 5 bytes); returns its length (5). */
size_t gw_mb_pdu_read(uint8_t *pdu, uint8_t fc, uint16_t addr, uint16_t count);
/* Writes the PDU of a write (fc 5, 6, 15, 16) with the payload as
 * gw_profile_encode_write produced it; returns its length, or 0 when the
 * payload does not fit the function. pdu holds GW_MB_PDU_MAX bytes. */
size_t gw_mb_pdu_write(uint8_t *pdu, uint8_t fc, uint16_t addr, uint16_t count, const uint8_t *data,
                       size_t len);
/* Wraps a PDU: MBAP (tid, protocol 0, length, unit) or RTU (unit, PDU, CRC
 * low byte first). out holds GW_MB_ADU_MAX bytes; returns the frame length. */
size_t gw_mb_adu_tcp(uint8_t *out, uint16_t tid, uint8_t unit, const uint8_t *pdu, size_t n);
size_t gw_mb_adu_rtu(uint8_t *out, uint8_t unit, const uint8_t *pdu, size_t n);

/* Length of the RTU answer starting at buf to a request of function fc:
 * >0 the whole frame's length, 0 more bytes are needed, GW_EMALFORMED when
 * the function byte is neither fc nor fc|0x80 or a byte count is impossible. */
int gw_mb_rtu_answer_len(const uint8_t *buf, size_t len, uint8_t fc);
/* Checks a complete RTU frame of len bytes: GW_OK, GW_ECRC (bad CRC) or
 * GW_EMALFORMED (shorter than 4 bytes). */
int gw_mb_rtu_check(const uint8_t *f, size_t len);

/* Interprets the answer PDU (function code first) to the planned read r:
 * 0 with *data and *dlen pointing into pdu (exactly what r asked for), a Modbus
 * exception code (> 0), or GW_EMALFORMED. */
int gw_mb_read_answer(const gw_mb_request *r, const uint8_t *pdu, size_t len, const uint8_t **data,
                      size_t *dlen);
/* The same for the answer to a write PDU req (as built by gw_mb_pdu_write):
 * 0 echoed correctly, > 0 exception code, GW_EMALFORMED. */
int gw_mb_write_answer(const uint8_t *req, size_t reqlen, const uint8_t *pdu, size_t len);

/* The name of a Modbus exception code (V1.1b3, section 7), e.g. "ILLEGAL DATA
 * ADDRESS" for 2; "UNKNOWN EXCEPTION" for codes it does not define. */
const char *gw_mb_exception_name(int code);

/* The `write` command's argument "POINT=VALUE" (value in the point's unit):
 * the point's name into point (pointcap bytes) and *value. Returns 0, or
 * GW_EINVAL with the reason in why (not POINT=VALUE, no such point in the
 * profile, a read-only point). */
int gw_mb_write_arg(const gw_profile *p, const char *arg, char *point, size_t pointcap,
                    double *value, char *why, size_t whylen);
/* The result of a completed write as a JSON object into out: the point, the
 * value, the function and address, and what was written on the wire: the
 * 16-bit words (FC 5, 6, 16) or the coil states (FC 15). pdu is the request as
 * gw_mb_pdu_write built it. Returns 0 or GW_EFULL. */
int gw_mb_write_result(char *out, size_t cap, const char *point, double value, const uint8_t *pdu,
                       size_t len);

/* ---- 2. Result collection ---- */

/* Last reported value of one point, for report-by-exception. */
typedef struct gw_mb_rbe {
    double value;
    int64_t at_ms; /* 0: never reported */
    uint8_t quality, reason;
} gw_mb_rbe;

/* One device's poll state. It is kept small (10,000 devices, issue 17): what
 * the device or its profile already says (the core, the requests, the log
 * prefix: dev->conf.protocol) is not copied, and the rest lives in one block
 * (modbus_common.c): the report-by-exception state (one per profile point,
 * when a point has a deadband), the site values, the status of each request
 * of the cycle, the data bytes the answers carried and the events' state. */
typedef struct gw_mb_poll {
    gw_device *dev;
    const gw_profile *profile; /* shared through the core (gw_mb_profile) */
    uint8_t *block;
    int64_t due_ms; /* loop time the cycle was due */
    uint16_t nreq;
    uint16_t cur;        /* request being read */
    uint16_t answered;   /* requests of this cycle the device answered (data or exception) */
    uint16_t nparams;    /* the device's site values, for derived points */
    uint16_t rbe_hint;   /* point index of the last reading, to skip lookups */
    uint16_t data_bytes; /* of all the answers' data */
    uint8_t attempt;     /* retries spent on it */
    unsigned in_cycle : 1;
    unsigned sent : 1;     /* the cycle's first request has left */
    unsigned ev_dirty : 1; /* an edge passed this cycle: persist the events' state after decoding */
    unsigned has_rbe : 1;  /* report-by-exception state is kept (a point has a deadband) */
} gw_mb_poll;

/* The profile named name, loaded from profile_dirs or the embedded set on
 * first use and shared through the core (gw_core_shared) until it stops.
 * NULL with err set when there is no such profile or it does not load. */
const gw_profile *gw_mb_profile(gw_core *core, const char *name, char *err, size_t errlen);
/* The check_device part every Modbus protocol shares: the device names a
 * profile that loads. */
int gw_mb_check_profile(const gw_device *dev, char *err, size_t errlen);
/* A Modbus device's type when the config names none: its profile's. */
const char *gw_mb_device_type(const gw_device *dev);

/* Prepares p for dev (which must have a profile). Returns 0, GW_EINVAL (too
 * many planned reads) or GW_ENOMEM, with err set. */
int gw_mb_poll_init(gw_mb_poll *p, gw_device *dev, char *err, size_t errlen);
void gw_mb_poll_free(gw_mb_poll *p);
/* Starts a cycle that was due at loop time due_ms. Returns 0, or GW_EAGAIN
 * when the previous cycle still runs (counted as skipped). */
int gw_mb_poll_begin(gw_mb_poll *p, int64_t due_ms);
/* The profile's planned reads (p->nreq of them). */
const gw_mb_request *gw_mb_poll_reqs(const gw_mb_poll *p);
/* The request to send now, or NULL when the cycle is complete. */
const gw_mb_request *gw_mb_poll_current(const gw_mb_poll *p);
/* Called when the current request leaves: records the cycle's lateness once. */
void gw_mb_poll_sent(gw_mb_poll *p);
/* The same for requests sent elsewhere (a bus worker): nreq requests, the
 * first at hrtime_us (uv_hrtime() / 1000). */
void gw_mb_poll_sent_at(gw_mb_poll *p, int64_t hrtime_us, size_t nreq);
/* Stores the answer PDU to the current request and moves on. Returns 1 when
 * that was the last request (call gw_mb_poll_finish), 0 otherwise. */
int gw_mb_poll_answer(gw_mb_poll *p, const uint8_t *pdu, size_t len);
/* Stores a result for the current request (status as gw_mb_result; data of
 * len bytes copied) and moves on; returns as gw_mb_poll_answer. */
int gw_mb_poll_result(gw_mb_poll *p, int status, const uint8_t *data, size_t len);
/* The current request timed out. Returns 1 to retry it (retries left), 0 when
 * it was given up: if the device answered something earlier in this cycle only
 * that request is bad and the cycle goes on, otherwise the rest of the cycle
 * fails (a device that answers nothing is not asked n times). */
int gw_mb_poll_timeout(gw_mb_poll *p);
/* Fails every request from the current one on with code (connection lost). */
void gw_mb_poll_fail_rest(gw_mb_poll *p, int code);
/* Ends the cycle: online/offline events, decoding, report-by-exception. */
void gw_mb_poll_finish(gw_mb_poll *p);

/* Absolute schedule with a stable per-device phase: the first due time, and
 * the next one after `due` that is not in the past (missed slots counted in
 * *skipped). */
int64_t gw_mb_first_due(const char *id, int64_t now, int64_t interval);
/* The first due time on a grid shared by every device with this interval:
 * the interval is cut into `slots` equal slots (1 .. interval) of the loop
 * clock and the device's id picks one, so devices in a slot are polled
 * together: one loop wake-up, one commit and one message for the group
 * instead of one each (docs/modbus.md "Poll schedule"). */
int64_t gw_mb_slot_due(const char *id, int64_t now, int64_t interval, int64_t slots);
/* Slots per interval for n devices: about GW_MB_SLOT_POLLS polls to a slot. */
#define GW_MB_SLOT_POLLS 32
int64_t gw_mb_slots(size_t n, int64_t interval);
int64_t gw_mb_next_due(int64_t due, int64_t now, int64_t interval, uint64_t *skipped);

/* Polls and response timeouts run on the core's timer wheel
 * (base/timerwheel.h, gw_core_wheel). */

/* ---- 3. Statistics ---- */

#define GW_MB_LATE_BUCKETS 112 /* 0..99 ms by 1 ms, 100..999 ms by 100 ms, then >= 1 s */

typedef struct gw_mb_stats {
    uint64_t cycles, cycles_failed, requests, timeouts, exceptions, malformed;
    uint64_t readings, rbe_suppressed, events;
    uint64_t late[GW_MB_LATE_BUCKETS];
    int64_t late_max_us;
} gw_mb_stats;

/* The shared counters (loop thread only). */
gw_mb_stats *gw_mb_stats_get(void);
/* Bucket of a lateness and the upper bound of a bucket, in ms. */
int gw_mb_late_bucket(int64_t us);
int64_t gw_mb_late_bucket_ms(int b);
/* The q-quantile (0..1) of the histogram h as a bucket upper bound in ms; 0
 * when empty. */
int64_t gw_mb_late_quantile(const uint64_t *h, double q);
/* Every device of every Modbus transport holds a reference while attached:
 * the first arms the statistics timer on the core's wheel, the last stops it
 * and writes the file a last time. Nothing is closed, so a reload that drops
 * the last device and attaches the next one in the same turn is safe. */
void gw_mb_stats_ref(gw_core *core);
void gw_mb_stats_unref(void);

/* ---- 4. The link (modbus_tcp.c), for modbus_dtu.c ---- */

typedef struct gw_mbl gw_mbl;
typedef struct gw_mbs gw_mbs;

/* A device session on a link: its schedule, cycle and pending writes. The
 * device is poll.dev, the core poll.dev->core. */
struct gw_mbs {
    gw_mb_poll poll;
    /* The next poll and, with its own (dial-out) link, that link's response,
     * connect or guard timeout, whichever is first: one timer per device. */
    gw_tw_timer tmr;
    int64_t next_due;
    gw_mbl *link;          /* the connection it is polled over; NULL: none now */
    gw_mbs *qnext;         /* in the link's wait queue */
    struct gw_mbw *writes; /* pending writes, at most GW_MB_WRITES_MAX */
    uint8_t nwrites;
    uint8_t closing; /* handles still closing before the block is freed */
    unsigned queued : 1;
    unsigned owns_link : 1; /* dial-out: the link lives in this block, dies with it */
    unsigned detached : 1;
};

#define GW_MB_WRITES_MAX 16

/* A zeroed block of size bytes (a transport's struct, which must start with
 * its gw_mbs) for one device, with room for a dial-out link after it when
 * dial is set: one allocation per device. NULL when out of memory. Freed with
 * free() before gw_mbs__init succeeded, by gw_mbs__close after. */
gw_mbs *gw_mbs__new(size_t size, int dial);
/* Bytes gw_mbs__new(sizeof(gw_mbs), 1) takes: a modbus-tcp device's session
 * and link (tests bound it). */
size_t gw_mbs__dial_bytes(void);
/* Starts the schedule of a session from gw_mbs__new: on the shared slot grid
 * when grouped (gw_mb_slot_due; each device its own link), else at a
 * per-device phase (devices behind one DTU take turns on its link: grouping
 * them would only queue them). A session without a link (an inbound DTU
 * device until its DTU registers) fails its cycles. */
int gw_mbs__init(gw_mbs *s, gw_device *dev, int grouped, char *err, size_t errlen);
/* Readies the session's dial-out link (gw_mbs__new with dial) to
 * dev->conf.connect (tcp://IP:PORT) with MBAP (rtu 0) or RTU framing (rtu 1,
 * guard_ms of quiet after a timeout before the next request). Call right
 * after gw_mbs__init. */
int gw_mbs__dial(gw_mbs *s, int rtu, int64_t guard_ms, char *err, size_t errlen);
/* Stops it; the block is freed once its handles are closed. */
void gw_mbs__close(gw_mbs *s);
/* Queues a write of a named point. */
int gw_mbs__write(gw_mbs *s, const char *point, double value);
/* The protocol command "write" with arg "POINT=VALUE": the write is queued
 * like gw_mbs__write and its outcome reported with gw_core_command_result
 * (verb "write"): done with the point, value and words written, or failed
 * with the exception, the timeout or the lost connection. Returns 0 with a
 * line in reply, GW_EINVAL for a bad argument (unknown or read-only point,
 * value out of range), GW_EAGAIN when the device cannot be reached or its
 * queue is full, GW_EUNSUPPORTED for another verb. */
int gw_mbs__command(gw_mbs *s, const char *verb, const char *arg, char *reply, size_t replylen);

/* A link over a connection accepted from a DTU (RTU framing). The listener
 * owns the stream and keeps reading it; the link only writes to it. Returns
 * NULL when out of memory. */
gw_mbl *gw_mbl__accepted(gw_core *core, uv_stream_t *stream, int64_t guard_ms);
/* Feeds bytes the DTU listener received (after registration and heartbeats). */
void gw_mbl__feed(gw_mbl *l, const uint8_t *p, size_t n);
/* Binds a session to a link (NULL unbinds); an unbound session's cycles fail. */
void gw_mbl__bind(gw_mbl *l, gw_mbs *s);
/* The connection is gone: fails running cycles, unbinds every session and
 * frees the link once its timer is closed. */
void gw_mbl__release(gw_mbl *l);

#endif
