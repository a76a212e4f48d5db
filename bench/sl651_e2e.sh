#!/bin/sh
# End-to-end SL651 load: RTUS simulated RTU connections (bench/sl651_rtu_load.c)
# each report once a second (4 readings per report) for SECS seconds, through
# build/gateway to a private mosquitto; a subscriber counts what reaches the
# platform. Prints sent vs delivered readings/s, confirm latency, and the
# gateway's CPU time and RSS. Loopback only; nothing here is a test.
#
#   RTUS=1000 SECS=20 PORT_BASE=24100 bench/sl651_e2e.sh
set -eu
RTUS=${RTUS:-1000}
SECS=${SECS:-20}
BASE=${PORT_BASE:-24100}
BUILD=${BUILD:-build}
MQTT=$BASE
SL=$((BASE + 1))
W=$(mktemp -d "${TMPDIR:-/tmp}/sl651e2e.XXXXXX")
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT INT TERM

[ -x "$BUILD/gateway" ] || make -s "$BUILD/gateway"
cc -O2 -o "$W/load" bench/sl651_rtu_load.c

cat >"$W/mosquitto.conf" <<EOC
listener $MQTT 127.0.0.1
allow_anonymous true
max_queued_messages 1000000
persistence false
EOC
mosquitto -c "$W/mosquitto.conf" >"$W/mosquitto.log" 2>&1 &
pids="$pids $!"

{
    printf 'gateway:\n  id: gw-bench\n  data_dir: %s/data\n  log_level: info\n  shutdown_drain: 5s\n' "$W"
    printf 'uplink:\n  uri: tcp://127.0.0.1:%s\n  topic_prefix: b\n  batch: 500\n' "$MQTT"
    printf 'listeners:\n  - protocol: sl651\n    listen: 127.0.0.1:%s\n' "$SL"
    printf 'devices:\n'
    i=0
    while [ "$i" -lt "$RTUS" ]; do
        printf '  - {id: rtu-%d, protocol: sl651, address: "0099%06d", password: "1234", interval: 1m}\n' "$i" "$i"
        i=$((i + 1))
    done
} >"$W/gateway.yaml"

sleep 0.3 # mosquitto has no ready signal; the subscriber below retries anyway
mosquitto_sub -h 127.0.0.1 -p "$MQTT" -t 'b/+/readings' -q 1 >"$W/readings.out" 2>/dev/null &
pids="$pids $!"
"$BUILD/gateway" -c "$W/gateway.yaml" >"$W/gateway.log" 2>&1 &
GW=$!
pids="$pids $GW"
n=0
until grep -q "started from" "$W/gateway.log" 2>/dev/null; do
    n=$((n + 1))
    [ "$n" -lt 100 ] || { echo "gateway did not start"; cat "$W/gateway.log"; exit 1; }
    sleep 0.1
done

t0=$(date +%s.%N)
"$W/load" "$SL" "$RTUS" "$SECS" | tee "$W/load.out" || true
sent=$(sed -n 's/.*readings_sent \([0-9]*\).*/\1/p' "$W/load.out")

# Wait (bounded) until the platform count stops growing.
last=-1
for _ in $(seq 1 60); do
    got=$(grep -o '"metric"' "$W/readings.out" | wc -l)
    [ "$got" -ge "${sent:-0}" ] && break
    [ "$got" -eq "$last" ] && break
    last=$got
    sleep 1
done
t1=$(date +%s.%N)
got=$(grep -o '"metric"' "$W/readings.out" | wc -l)
ticks=$(getconf CLK_TCK)
cpu=$(awk -v t="$ticks" '{printf "%.2f", ($14 + $15) / t}' "/proc/$GW/stat")
rss=$(awk '/VmRSS/ {print $2 " " $3}' "/proc/$GW/status")
echo "readings sent $sent, at the platform $got (over $(echo "$t1 - $t0" | bc) s wall)"
echo "offered $(echo "${sent:-0} / $SECS" | bc) readings/s; gateway CPU ${cpu} s total, RSS $rss"
grep -E "warn|error" "$W/gateway.log" | grep -v "uplink" | tail -5 || true
