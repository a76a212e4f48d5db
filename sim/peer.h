#ifndef SIM_PEER_H
#define SIM_PEER_H
/* Peer kinds: CoAP smoke detectors and MQTT gauges, the devices that connect
 * out to the gateway. The scenario keys of a group, g->peer, and its events.
 *   dev_coap.c   the coap-smoke kind (libcoap client sessions on the loop)
 *   dev_mqtt.c   the mqtt-gauge kind (Paho async, callbacks handed to the loop) */
#include "sim/curve.h"

/* Scenario events of peer kinds (the `events:` list of a group). */
typedef enum {
    /* coap-smoke */
    SIM_EV_FIRE_ALARM = 0,
    SIM_EV_ALARM_CLEARED,
    SIM_EV_SELF_TEST,
    SIM_EV_SELF_TEST_FAIL,
    SIM_EV_MUTE,
    SIM_EV_UNMUTE,
    SIM_EV_BATTERY_LOW,
    SIM_EV_BATTERY_CRITICAL,
    SIM_EV_BATTERY_OK,
    SIM_EV_TAMPER,
    SIM_EV_TAMPER_RESTORED,
    SIM_EV_HW_FAULT,
    SIM_EV_DIRTY,
    SIM_EV_END_OF_LIFE,
    SIM_EV_FAULT_CLEARED,
    SIM_EV_HEARTBEAT, /* one heartbeat now */
    SIM_EV_BAD_CRC,   /* the next frame carries a wrong CRC */
    SIM_EV_TRUNCATED, /* the next frame is cut short */
    SIM_EV_WRONG_PSK, /* new DTLS session with a wrong key from now on */
    SIM_EV_RIGHT_PSK,
    /* both kinds */
    SIM_EV_SILENT, /* stops sending */
    SIM_EV_RESUME,
    /* mqtt-gauge */
    SIM_EV_MALFORMED,  /* the next payload is not JSON */
    SIM_EV_DISCONNECT, /* drops the connection so that the broker sends the will */
    SIM_EV_RECONNECT,
    SIM_EV_OFFLINE, /* publishes "offline" and disconnects cleanly */
    SIM_EV__COUNT
} sim_event_kind;

/* Event names as written in scenarios ("fire_alarm", ...). */
const char *sim_event_name(sim_event_kind k);

typedef struct sim_event {
    double at;       /* scenario time, s */
    uint32_t device; /* the device's n (as in its id); 0 = every device */
    sim_event_kind kind;
    int line;
} sim_event;

typedef struct sim_field {
    char name[32];
    sim_curve curve;
    int decimals;
} sim_field;

/* Keys of peer groups; defaults are filled by the parser. */
typedef struct sim_peer {
    /* coap-smoke */
    char imei[64];         /* template: 15 digits once expanded */
    char path[64];         /* Uri-Path, default /19/0/0 */
    char query[64];        /* Uri-Query template, default ep={imei} */
    int dtls;              /* coaps:// with PSK */
    char psk[128];         /* key template (ASCII) ... */
    int psk_hex;           /* ... or hex digits after expansion */
    double heartbeat;      /* s of scenario time between heartbeats */
    double report;         /* s between reports; 0 = none */
    double ack_timeout;    /* CoAP ACK_TIMEOUT, wall-clock s */
    int max_retransmit;    /* CoAP MAX_RETRANSMIT */
    int tlv;               /* heartbeats carry the firmware-version extension bytes */
    double battery_v;      /* nominal battery voltage */
    sim_curve smoke;       /* dB/m; none = 0.012 */
    sim_curve temperature; /* degC; none = 22 */
    /* coap-cover (with the coap-smoke keys above but smoke, temperature, tlv) */
    sim_curve tilt;    /* degrees from level; none = 0.5 */
    sim_curve open;    /* >= 0.5: the cover is open or displaced; none = closed */
    sim_curve water;   /* water level in the well, m; none = 0.3 */
    sim_curve rsrp;    /* dBm; none = -95 - (k % 20) */
    sim_curve snr;     /* dB; none = 10 */
    double tilt_alarm; /* degrees: tilted at or beyond */
    double overflow;   /* m: overflow warning at or above */
    double sample;     /* s of scenario time between samplings of the curves */
    /* mqtt-gauge */
    char topic[128];
    char status_topic[128]; /* default: topic with its last level replaced by status */
    char client_id[64];     /* template, default {id} */
    double interval;        /* s of scenario time between readings */
    double spread;          /* first sends spread over this many s; < 0 = default */
    double keepalive;       /* s */
    int qos;
    char ts_field[32];
    int ts_format;
    char id_field[32];
    int nfields;
    sim_field *fields; /* owned */
    /* both */
    int nevents;
    sim_event *events; /* owned, sorted by time */
} sim_peer;

void sim_peer_free(struct sim_peer *p);

#endif
