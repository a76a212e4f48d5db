#ifndef SIM_H
#define SIM_H
/* The simulator: plays field devices and the city platform. It is a peer of the
 * gateway and shares no code with it (its unit tests link no gateway code, so
 * the linker keeps it that way). One header per module; this one includes them
 * all for main.c only (a module that included it would close an include loop
 * through every header listed here). Map of sim/:
 *   base.h        error codes
 *   encode.[ch]   value -> register words (types, scales, byte orders); pure
 *   curve.[ch]    scenario-time curves (constant, ramp, sine, storm, ...); pure
 *   mbtcp.[ch]    Modbus TCP framing and the request -> response logic; pure
 *   scenario.[ch] scenario YAML (libyaml) -> the model; the key tables
 *   scn.h, scn_*.c the key tables, and each kind's scenario half: its keys
 *                 and its parse_key/finish hooks
 *   kind.h        the device kind descriptor and the running context (it and
 *                 scn.h see the scenario's types only as pointers, so the
 *                 parser can include both);
 *   kinds.c       the table of device kinds
 *   dev_modbus.[ch] the modbus-tcp kind: libuv listeners, connections, faults;
 *                 also the served-device model (registers, writes, counters,
 *                 fault decisions) that the serial kinds share
 *   rtu.[ch]      Modbus RTU framing: CRC, request detection, fault bytes; pure
 *   dev_rtu.c     the modbus-rtu (pty bus) and modbus-dtu (dials out) kinds
 *   clock.h, enc_sl651.[ch], enc_hj212.[ch], station.h, dial.[ch],
 *   dev_sl651.c, dev_hj212.c   SL651 RTUs and HJ212 stations dialing the centre
 *   enc_nb100.[ch], enc_gauge.[ch], peer.h, dev_coap.c, dev_mqtt.c
 *                 peer kinds: CoAP smoke detectors and MQTT gauges
 *   stats.[ch]    JSON stats file and CPU figures
 *   platform.[ch] the stand-in city platform (MQTT subscriber)
 *   run.[ch]      `sim run`: a rehearsal (broker, gateway, devices, platform)
 *   expect.[ch]   expectations over a timeline of sent and received values; pure
 *   report.[ch]   the verdict, the JSON report and the CSV
 *   main.c        command line, signals, the loop
 * Errors are negative return codes; pure files do no I/O except the scenario
 * parser, which reads the files it is given. */
#include "sim/base.h"
#include "sim/clock.h"
#include "sim/curve.h"
#include "sim/dev_modbus.h"
#include "sim/dial.h"
#include "sim/enc_cover.h"
#include "sim/enc_gauge.h"
#include "sim/enc_hj212.h"
#include "sim/enc_nb100.h"
#include "sim/enc_sl651.h"
#include "sim/encode.h"
#include "sim/expect.h"
#include "sim/kind.h"
#include "sim/mbtcp.h"
#include "sim/peer.h"
#include "sim/platform.h"
#include "sim/report.h"
#include "sim/rtu.h"
#include "sim/run.h"
#include "sim/scenario.h"
#include "sim/station.h"
#include "sim/stats.h"

#endif
