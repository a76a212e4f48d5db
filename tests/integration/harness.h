#ifndef GW_HARNESS_H
#define GW_HARNESS_H
/* Integration test harness: real processes on loopback, started and stopped
 * by the tests, every wait bounded. A private mosquitto, build/gateway,
 * build/sim, and an in-process platform subscriber (Paho) that records what
 * arrives. Nothing here shares code with the gateway. */
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct h_proc {
    pid_t pid;
    pid_t started; /* the pid h_spawn gave it, kept after it exits */
    char log[512]; /* stdout+stderr of the process */
} h_proc;

/* A temporary folder for one test, removed by h_cleanup. */
const char *h_tmpdir(void);
void h_cleanup(void);
const char *h_bin(const char *name); /* $BUILD/<name>, BUILD defaults to "build" */
int h_free_port(void);
/* The first of n consecutive ports free for TCP and UDP on 127.0.0.1, taken
 * below the ephemeral range (20000..32000) so outgoing connections of the
 * test's own processes cannot land on them; -1 after bounded tries. */
int h_free_port_range(int n);
int64_t h_now_ms(void);
/* Writes text to <tmpdir>/<name> and returns the path (static buffer per call slot). */
const char *h_write_file(const char *name, const char *text);

int h_spawn(h_proc *p, const char *logname, char *const argv[]);
int h_signal(h_proc *p, int sig);
/* Waits for exit up to timeout_ms; returns the exit status (or 128+signal),
 * or -1 on timeout (the process is then killed). */
int h_wait(h_proc *p, int timeout_ms);
/* SIGTERM, wait 10 s, SIGKILL. Returns the exit status (0 when it was not
 * running): a gateway must exit 0, which under ASan also means no leak. */
int h_stop(h_proc *p);
/* Waits until the process log contains text (bounded). Returns 1 if seen. */
int h_log_wait(h_proc *p, const char *text, int timeout_ms);
int h_log_contains(h_proc *p, const char *text);
/* Waits until something accepts TCP connections on 127.0.0.1:port. */
int h_port_wait(int port, int timeout_ms);

/* Rows in an outbox table of a gateway's SQLite file (read-only, WAL-safe),
 * -1 if it cannot be read; and a bounded wait for at least `want` rows. */
long h_outbox_rows(const char *db, const char *table);
/* The first column of the first row of sql on the SQLite file db (read-only), -1 if none. */
long long h_sql_int(const char *db, const char *sql);
int h_outbox_wait(const char *db, const char *table, long want, int timeout_ms);

/* mosquitto on 127.0.0.1:port with persistence in the tmpdir (sessions and
 * queued QoS 1 messages survive a broker restart). */
int h_broker_start(h_proc *p, int port);

/* The same with more mosquitto.conf lines (extra, or NULL; e.g. a password_file) and, when
 * tag is not NULL, its own files: mosquitto-<tag>.conf, mosquitto-<tag>.log and the
 * persistence folder <tmpdir>/<tag> (a second broker in one test). Its log is
 * line-buffered, so it can be read while the broker runs. */
int h_broker_start_ex(h_proc *p, int port, const char *tag, const char *extra);
/* The platform as a process: mosquitto_sub -q 1 -d on 127.0.0.1:port, line-buffered into
 * logname, with args (its topics and output options, e.g. "-v" for "topic payload"
 * lines; NULL-terminated). Waits (bounded) until the broker acknowledged its
 * subscription; 0, or -1 with its log printed. Stopped with h_stop or as h_peers_stop's
 * `other`. */
int h_recorder_start(h_proc *p, int port, const char *logname, const char *const *args);
/* Publishes len bytes (any bytes) on topic at QoS 1 with mosquitto_pub; opts are more of
 * its options (e.g. "-V mqttv5 -D publish response-topic r") or NULL. Its exit status. */
int h_publish(int port, const char *topic, const void *payload, size_t len, const char *opts);
/* The first lines of a gateway config every platform test shares: gateway id with its
 * data in <tmpdir>/data, a 2 s shutdown drain, a 2 ms commit window, and the uplink to
 * mosquitto on 127.0.0.1:port reconnecting within 100..300 ms. It ends inside the
 * uplink: section: the caller appends more uplink keys, then devices:, rules: etc.
 * Returns what snprintf returns. */
int h_config_head(char *out, size_t cap, const char *id, int port);
/* h_gateway_start on config_text (written as gateway.yaml), then bounded waits until it
 * subscribed to the platform's commands and (port > 0) accepts connections on
 * 127.0.0.1:port. 0, or -1 with its log printed. */
int h_gateway_listening(h_proc *gw, const char *config_text, int port);
/* The gateway of most platform tests in one call: h_config_head(id, broker_port), the rest
 * of the config from fmt, and h_gateway_listening with port. */
int h_gateway_with(h_proc *gw, const char *id, int broker_port, int port, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* build/sim modbus with a scenario; waits for its ready line. */
int h_sim_start(h_proc *p, const char *scenario_path, const char *extra_arg);

/* build/gateway -c config; waits for its "started" log line. */
int h_gateway_start(h_proc *p, const char *config_path);

/* The platform: a persistent-session QoS 1 subscriber to "#". */
typedef struct h_msg {
    char *topic;
    char *payload;
    int64_t at_ms;
} h_msg;
int h_platform_start(int port);
void h_platform_stop(void);

/* The platform side most tests start first: a free port (stored in *port), mosquitto on
 * it and the platform subscriber. Returns 0, or -1 with whatever started left for
 * h_peers_stop. */
int h_peers_start(h_proc *broker, int *port);
/* The same with the platform as a recorder process (h_recorder_start with args, its log
 * sub.log) in sub instead of the in-process subscriber; h_peers_stop with sub as other. */
int h_peers_record(h_proc *broker, int *port, h_proc *sub, const char *const *args);
/* The processes of a platform test, kept in cmocka's state: mosquitto on port, the
 * platform as a recorder process (sub) and the gateway. */
typedef struct h_bed {
    int port;
    h_proc broker, sub, gw;
} h_bed;
/* A zeroed h_bed with a free port; with start, mosquitto on it and the recorder
 * (h_peers_record with args) started. NULL on failure, with what started stopped. */
h_bed *h_bed_new(int start, const char *const *args);
/* h_peers_stop on the bed's processes, then frees it; the gateway's exit status. */
int h_bed_free(h_bed *b);
/* A cmocka teardown for an h_bed in *state: -1 (the test fails) unless the gateway
 * stopped cleanly. */
int h_bed_teardown(void **state);
/* Stops the gateway, then the other process (a device, the simulator or a recorder; NULL
 * or never started is fine), the platform and the broker, and removes the temporary
 * directory. Returns the gateway's exit status: 0 is a clean stop with every libuv handle
 * closed (it exits 3 when one is left open), so tests assert it; any other is printed
 * with the gateway's log. */
int h_peers_stop(h_proc *gw, h_proc *other, h_proc *broker);
size_t h_platform_count(void);
/* Copies message i (0-based, arrival order); returns 0 if it exists. Caller frees. */
int h_platform_get(size_t i, h_msg *out);
void h_msg_free(h_msg *m);
/* Waits until pred(ctx) returns nonzero, re-checking on each arrival. */
int h_platform_wait(int (*pred)(void *ctx), void *ctx, int timeout_ms);

/* Every item of every message so far on topics ending in suffix, in arrival
 * order, as a cJSON array of item objects (with "_topic" and "_at" added).
 * Caller deletes. */
cJSON *h_platform_items(const char *suffix);
/* The same, each item once (by its "id": QoS 1 may deliver a message twice);
 * items without an id are left out. */
cJSON *h_platform_items_once(const char *suffix);

/* ---- raw sockets for tests that play a device (loopback, bounded) ---- */
/* A TCP connection to 127.0.0.1:port, or -1. */
int h_tcp_connect(int port);
/* Connects to the MQTT broker on port as client_id with CleanSession=0 (MQTT
 * 3.1.1, raw bytes) and disconnects: 1 when the CONNACK said session present
 * (the broker kept a session for that id), 0 when not, -1 on no CONNACK or a
 * refusal. The probe leaves a session of its own behind. */
int h_mqtt_session_present(int port, const char *client_id);
/* Sends all n bytes (no SIGPIPE); 0 or -1. */
int h_send_all(int fd, const void *p, size_t n);
/* Up to n bytes within timeout_ms; returns how many arrived. */
size_t h_recv_n(int fd, uint8_t *p, size_t n, int timeout_ms);
/* 1 when the peer closed the connection within timeout_ms (data read and dropped). */
int h_closed_by_peer(int fd, int timeout_ms);
/* The same connection made from source address src (any 127.x.y.z works on
 * Linux loopback), to play many hosts; -1 on failure. */
int h_tcp_connect_from(int port, const char *src);
/* n idle connections to port from 127.1.x.y sources, at most per_source from
 * each; fds[] gets them. Returns how many connected. */
int h_tcp_flood(int port, int n, int per_source, int *fds);
/* Raises this process's open-file soft limit to at least want (bounded by the
 * hard limit); returns the soft limit now. */
long h_raise_nofile(long want);
/* Runs build/gateway admin --socket sock <args...> (NULL-terminated); returns
 * its exit status with its output in out. */
int h_admin(const char *sock, const char *const *args, char *out, size_t cap);

/* The number at path ("uplink.replies_dropped": members by name) in the gateway's
 * `admin --json status` on socket sock; -1 when it cannot be read. */
double h_status_number(const char *sock, const char *path);
/* The value of the first /metrics line (http://127.0.0.1:port/metrics) that starts with
 * series (a name, or a name and the start of its labels: `gw_x{destination="`); -1 when
 * there is none. */
double h_metric(int port, const char *series);

/* Runs a shell command; its stdout (up to cap-1 bytes) in out; its exit status or -1. */
int h_run(const char *cmd, char *out, size_t cap);

/* ---- playing an SL651 station, a small disk ---- */
/* Modbus CRC-16 (poly 0xA001 reflected, init 0xFFFF), as SL651 uses it. */
uint16_t h_crc16(const uint8_t *p, size_t n);
/* A HEX SL651 uplink report into f (128 bytes suffice): station (10 hex
 * digits), password, function fn, serial, send and observation time t =
 * {yy, mm, dd, hh, mi} in the station's clock (Beijing time), one water level
 * element 39 23 of level_mm / 1000 m; CRC by h_crc16. Returns its length. */
size_t h_sl651_report(uint8_t *f, const char *station, uint16_t pw, uint8_t fn, uint16_t serial,
                      const int t[5], unsigned level_mm);
/* Mounts a tmpfs of size (e.g. "8m") on dir: as root, else in a user and mount
 * namespace of this process (call it before any thread starts: the platform).
 * Says which in how. 0, or -1 when neither is possible. */
int h_small_disk(const char *dir, const char *size, char *how, size_t cap);

/* ---- `sim run` rehearsals ---- */
/* A file's contents, NUL-terminated (caller frees), or NULL. */
char *h_slurp(const char *path);
/* Prints a process log to stderr (for failing tests). */
void h_dump_log(h_proc *p);
/* Runs build/sim run SCENARIO with --broker-port (not when broker_port is 0:
 * a scenario listing several broker nodes), --base-port, the gateway and the
 * extra args (NULL-terminated); returns its exit status (h_wait). */
int h_sim_run(h_proc *p, const char *logname, const char *scenario, int broker_port, int base_port,
              const char *const *extra, int timeout_ms);
/* The folder `sim run --keep` named in its log, or "". */
void h_kept_dir(h_proc *p, char *dir, size_t cap);
/* Removes a /tmp/sim-run.* folder. */
void h_remove_dir(const char *dir);
/* 1 if nothing is bound to 127.0.0.1:port of type SOCK_STREAM (a TIME_WAIT
 * left behind does not count) or SOCK_DGRAM: whoever had it has stopped. */
int h_port_free(int type, int port);
/* A copy of scenario written to the tmpdir as name, its expect: list replaced
 * by expect (YAML list lines). Its relative `config:` and `file:` paths are
 * made absolute, so the copy still uses the files beside the original.
 * Returns the path (h_write_file's), NULL if the scenario cannot be read or
 * has no expect: list. */
const char *h_scenario_expecting(const char *scenario, const char *name, const char *expect);

/* One `sim run` rehearsal: the caller fills the inputs, h_rehearse the rest. */
typedef struct h_rehearsal {
    const char *scenario;
    int broker, base;         /* --broker-port and --base-port */
    const char *const *extra; /* more arguments, NULL-terminated; or NULL */
    int report;               /* 1: --report into the tmpdir, parsed into json */
    int keep;                 /* 1: --keep; the folder in kept, its gateway.log in gwlog */
    int timeout_ms;
    h_proc p; /* sim run's own log is p.log */
    int rc;   /* its exit status (h_wait), -1 if it did not start */
    int64_t wall_ms;
    cJSON *json;    /* the report, NULL without one */
    char kept[256]; /* "" without one; h_cleanup removes it */
    char *gwlog;    /* the gateway's log from kept, NULL without one */
} h_rehearsal;
/* Runs the rehearsal; sim run's log is logname in the tmpdir and is printed
 * when the exit status is not want_rc (the evidence of a failing test).
 * Returns the exit status. h_rehearsal_free frees json and gwlog. */
int h_rehearse(h_rehearsal *r, const char *logname, int want_rc);
void h_rehearsal_free(h_rehearsal *r);
/* The number after `key` in the last line of text containing `tag`; -1 if none. */
long long h_last_count(const char *text, const char *tag, const char *key);

/* ---- CoAP peers ---- */
/* Runs `coap-client-notls -B wait_s -v 7 ARGS` (libcoap3-bin; -B bounds it) and
 * returns the code of the answer it got ("2.04", "4.00", ...) or "none". The
 * buffer is static: copy it before the next call. */
const char *h_coap_client(int wait_s, const char *args);

#endif
