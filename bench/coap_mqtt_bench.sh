#!/bin/sh
# CoAP and MQTT device throughput and fire-alarm latency, end to end on loopback:
# two mosquitto brokers (field, uplink), build/gateway with N CoAP JSON devices,
# one NB-100 smoke detector and M MQTT devices, and build/coap_mqtt_bench as
# the devices and the platform. Ports from BENCH_PORT (default 26500).
#   make build/gateway && bench/coap_mqtt_bench.sh
set -eu
BUILD=${BUILD:-build}
P=${BENCH_PORT:-26500}
UP=$P FIELD=$((P + 1)) COAP=$((P + 2))
SECS=${SECS:-5}
CLIENTS=${CLIENTS:-"8 64 256"}
WINDOW=${WINDOW:-2ms}
T=$(mktemp -d /tmp/coapbench.XXXXXX)
cc -O2 -std=c11 -D_GNU_SOURCE bench/coap_mqtt_bench.c -o "$BUILD/coap_mqtt_bench" \
    $(pkg-config --cflags --libs libcoap-3-openssl) -lpaho-mqtt3as -lpthread
for port in $UP $FIELD; do
    printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' "$port" \
        > "$T/m$port.conf"
    mosquitto -c "$T/m$port.conf" > "$T/m$port.log" 2>&1 &
    echo $! >> "$T/pids"
done
{
    printf 'gateway:\n  id: gw-bench\n  data_dir: %s/data\n  log_level: warn\n' "$T"
    printf 'store:\n  commit_window: %s\n  queue_max: 2000000\n  max_bytes: 2GiB\n' "$WINDOW"
    printf 'uplink:\n  uri: tcp://127.0.0.1:%s\n  topic_prefix: b\n  batch: 500\n  max_inflight: 64\n' "$UP"
    printf 'devices:\n'
    printf '  - {id: smoke-b, protocol: coap, address: "861234567890123", adapter: smoke-nb100}\n'
    i=0; while [ $i -lt 256 ]; do
        printf '  - {id: cb-%d, protocol: coap, address: bench-%d, adapter: json-map}\n' $i $i
        i=$((i + 1)); done
    printf '  - {id: mq-marker, protocol: mqtt-devices, address: mq-marker}\n'
    i=0; while [ $i -lt 100 ]; do
        printf '  - {id: mq-%d, protocol: mqtt-devices, address: mq-%d}\n' $i $i
        i=$((i + 1)); done
    printf 'listeners:\n  - {protocol: coap, listen: 127.0.0.1, port: %s}\n' "$COAP"
    printf '  - protocol: mqtt-devices\n    uri: tcp://127.0.0.1:%s\n    topic: field/+/{device}/data\n' "$FIELD"
    printf '    qos: 0\n    json_map:\n      points:\n        - {path: water.depth, metric: water_depth, unit: cm}\n'
    printf '      events:\n        - {path: flood, kind: flood_alarm}\n'
} > "$T/gw.yaml"
sleep 0.3
"$BUILD/gateway" -c "$T/gw.yaml" > "$T/gw.log" 2>&1 &
GW=$!
sleep 1
# Fire latency first, on a quiet gateway; then the throughput runs.
"$BUILD/coap_mqtt_bench" fire "$COAP" "$UP" 500 861234567890123
for c in $CLIENTS; do "$BUILD/coap_mqtt_bench" coap "$COAP" "$c" "$SECS"; done
"$BUILD/coap_mqtt_bench" mqtt "$FIELD" "$UP" 100 ${BATCH:-50} ${MESSAGES:-20000}
kill $GW; wait $GW 2>/dev/null || true
grep -E "coap\] stopping|mqtt-devices\] stopping|refused|dropped" "$T/gw.log" | tail -5 || true
for p in $(cat "$T/pids"); do kill "$p"; done
rm -rf "$T"
