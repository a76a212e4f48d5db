#!/bin/bash
# Issue-11 benchmarks, several destinations: end-to-end readings/s with one
# destination and with two (each its own mosquitto and subscriber; the figure
# for two is the slower destination's, both measured in the same run), and
# alarm latency at each destination's subscriber while a 100,000-row backlog
# drains to both. Prints a table; compare the ratio, not absolute figures
# (the machine is shared).
set -u
B=${BUILD:-build}
T=$(mktemp -d /tmp/gwdest.XXXXXX)
N=${DEST_BENCH_READINGS:-500000}
. bench/lib.sh
bench_start "$B" || exit 1
free_ports 2 || exit 1
P1=$PORT
P2=$((P1 + 1))
broker() { # $1 port; sets MOSQ
    mosq "$1" "$T"
    PIDS="$PIDS $MOSQ"
}
config() { # $1 name, $2 number of destinations, $3 devices yaml, $4 rules yaml
    {
    echo "gateway: {id: gw-bench, data_dir: $T/data-$1, log_level: warn, shutdown_drain: 1s}"
    echo "store: {commit_window: 5ms, max_bytes: 1GiB, queue_max: 400000}"
    echo "uplink: {name: city, uri: \"tcp://127.0.0.1:$P1\", batch: 200, max_inflight: 64, backoff_min: 100ms, backoff_max: 200ms}"
    [ "$2" -gt 1 ] && echo "destinations:
  - {name: bureau, uri: \"tcp://127.0.0.1:$P2\", batch: 200, max_inflight: 64, backoff_min: 100ms, backoff_max: 200ms}"
    echo "devices:
$3
rules:
$4"
    } >"$T/$1.yaml"
}
l2() { sed -n "s/.*\"$2\":\([0-9.-]*\).*/\1/p" "$T/$1"; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a + 0 < b + 0) ? a : b }'; }

broker "$P1"; M1=$MOSQ
broker "$P2"; M2=$MOSQ

# 1. One destination, then two: N readings offered at 250,000/s.
SYN="  - {id: syn-1, protocol: synthetic, rate: 250000, total: $N}"
config one 1 "$SYN" '  []'
"$B/platform_probe" "tcp://127.0.0.1:$P1" 'iot/#' "$N" 120 >"$T/one.out" &
PP=$!; sleep 0.5
"$B/gateway" -c "$T/one.yaml" 2>"$T/g1.log" &
G=$!; PIDS="$PIDS $G"
wait $PP; kill $G; wait $G 2>/dev/null
ONE=$(l2 one.out readings_per_s)

config two 2 "$SYN" '  []'
"$B/platform_probe" "tcp://127.0.0.1:$P1" 'iot/#' "$N" 120 >"$T/two1.out" &
PA=$!
"$B/platform_probe" "tcp://127.0.0.1:$P2" 'iot/#' "$N" 120 >"$T/two2.out" &
PB=$!; sleep 0.5
"$B/gateway" -c "$T/two.yaml" 2>"$T/g2.log" &
G=$!; PIDS="$PIDS $G"
wait $PA; wait $PB; kill $G; wait $G 2>/dev/null
TWO=$(min "$(l2 two1.out readings_per_s)" "$(l2 two2.out readings_per_s)")
RATIO=$(awk -v a="$TWO" -v b="$ONE" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')

# 2. Alarm latency at the subscribers while 100,000 rows drain, to one
#    destination and then to two: the backlog is built with the brokers down.
FLIP='  - {id: flip, kind: threshold, metric: level, levels: {red: {raise: 50, clear: 50}}}'
backlog() { # $1 name, $2 destinations
    kill $M1 $M2 2>/dev/null; wait $M1 $M2 2>/dev/null
    config "$1" "$2" '  - {id: syn-bulk, protocol: synthetic, rate: 100000, total: 100000}
  - {id: syn-a, protocol: synthetic, rate: 2000, square: 20}' "$FLIP"
    "$B/gateway" -c "$T/$1.yaml" 2>"$T/g-$1.log" &
    G=$!; PIDS="$PIDS $G"
    tele_wait "$T/data-$1/outbox.db" 100000
    broker "$P1"; M1=$MOSQ; broker "$P2"; M2=$MOSQ
    START=$(($(date +%s%3N) + 0))
    "$B/platform_probe" "tcp://127.0.0.1:$P1" 'iot/#' 0 10 "$START" >"$T/$1-1.out" &
    PA=$!
    "$B/platform_probe" "tcp://127.0.0.1:$P2" 'iot/#' 0 10 "$START" >"$T/$1-2.out" &
    PB=$!
    wait $PA; wait $PB
    IN=$("$B/gateway" admin --json --socket "$T/data-$1/admin.sock" status | sed -n 's/.*"alarm_publish_ms":{"n":\([0-9]*\),"p50":\([0-9-]*\),"p99":\([0-9-]*\)}.*/\2 \/ \3/p')
    LEFT=$(sqlite3 "file:$T/data-$1/outbox.db?mode=ro" 'select count(*) from outbox_tele' 2>/dev/null)
    kill $G; wait $G 2>/dev/null
}
backlog b1 1
LEFT1=$LEFT; IN1=$IN
backlog b2 2

lat() { echo "$(l2 "$1" alarm_p50_ms) / $(l2 "$1" alarm_p99_ms) / $(l2 "$1" alarm_max_ms) ($(l2 "$1" alarms) alarms, $(l2 "$1" readings) backlog readings in 10 s)"; }
{
echo "destination benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r))"
printf '%-62s %s\n' "end-to-end readings/s, one destination ($N offered)" "$ONE"
printf '%-62s %s\n' "end-to-end readings/s, two destinations (the slower one)" "$TWO (city $(l2 two1.out readings_per_s), bureau $(l2 two2.out readings_per_s)); ratio $RATIO (target >= 0.6)"
printf '%-62s %s\n' "alarm latency, 100k backlog to one: p50 / p99 / max (ms)" "$(lat b1-1.out); ${LEFT1:-?} rows left"
printf '%-62s %s\n' "alarm latency, 100k backlog to two: city p50 / p99 / max (ms)" "$(lat b2-1.out)"
printf '%-62s %s\n' "alarm latency, 100k backlog to two: bureau p50 / p99 / max (ms)" "$(lat b2-2.out); ${LEFT:-?} rows left"
printf '%-62s %s\n' "inside the gateway, transition -> PUBLISH p50 / p99 (ms)" "one: ${IN1:-?}; two (city): ${IN:-?} (includes alarms queued while the brokers were down)"
} | tee bench/results/dest.txt
