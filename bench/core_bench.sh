#!/bin/bash
# Issue-2 benchmarks: end-to-end readings/s (synthetic load -> outbox -> QoS 1
# -> local mosquitto -> a subscriber), alarm latency p50/p99 with an empty
# outbox and while a 100,000-row backlog drains, and peak RSS with 10,000
# configured devices. Prints a table; figures vary with the shared machine:
# compare ratios within one run.
set -u
B=${BUILD:-build}
T=$(mktemp -d /tmp/gwbench.XXXXXX)
PORT=$((31000 + $$ % 900))
. bench/lib.sh
bench_start "$B" || exit 1
broker() {
    mosq "$PORT" "$T"
    PIDS="$PIDS $MOSQ"
}
config() { # $1 name, $2 devices yaml, $3 rules yaml
    cat >"$T/$1.yaml" <<C
gateway: {id: gw-bench, data_dir: $T/data-$1, log_level: warn, shutdown_drain: 1s}
store: {commit_window: 5ms, max_bytes: 1GiB, queue_max: 400000, queue_max_bytes: 512MiB}
uplink: {uri: "tcp://127.0.0.1:$PORT", batch: 200, max_inflight: 64, backoff_min: 100ms, backoff_max: 200ms}
devices:
$2
rules:
$3
C
}
cpu_ms() { awk '{print ($14+$15)*10}' /proc/$1/stat; }
rss_kib() { awk '/VmHWM/ {print $2}' /proc/$1/status; }

FLIP='  - {id: flip, kind: threshold, metric: level, levels: {red: {raise: 50, clear: 50}}}'
broker

# 1. Throughput: 1,000,000 readings offered at 250,000/s.
config tput '  - {id: syn-1, protocol: synthetic, rate: 250000, total: 1000000}' '  []'
"$B/platform_probe" "tcp://127.0.0.1:$PORT" 'iot/#' 1000000 120 >"$T/p1.out" &
PP=$!; sleep 0.5
"$B/gateway" -c "$T/tput.yaml" 2>"$T/g1.log" &
G=$!; PIDS="$PIDS $G"
wait $PP
C1=$(cpu_ms $G); kill $G; wait $G 2>/dev/null
TP=$(sed -n 's/.*"readings_per_s":\([0-9]*\).*/\1/p' "$T/p1.out")
NR=$(sed -n 's/.*"readings":\([0-9]*\).*/\1/p' "$T/p1.out")

# 2. Alarm latency with an empty outbox: a red alarm raised and cleared 100 times a second.
config empty '  - {id: syn-a, protocol: synthetic, rate: 2000, square: 20}' "$FLIP"
"$B/platform_probe" "tcp://127.0.0.1:$PORT" 'iot/#' 0 20 >"$T/p2.out" &
PP=$!; sleep 0.5
"$B/gateway" -c "$T/empty.yaml" 2>"$T/g2.log" &
G=$!; PIDS="$PIDS $G"
wait $PP
IN2=$("$B/gateway" admin --json --socket "$T/data-empty/admin.sock" status | sed -n 's/.*"alarm_publish_ms":{"n":\([0-9]*\),"p50":\([0-9-]*\),"p99":\([0-9-]*\)}.*/\2 \/ \3 (\1 alarms)/p')
kill $G; wait $G 2>/dev/null

# 3. Alarm latency while 100,000 queued rows drain: build the backlog with the
#    broker down, then start it and keep raising alarms during the drain.
kill $MOSQ; wait $MOSQ 2>/dev/null
config backlog '  - {id: syn-bulk, protocol: synthetic, rate: 100000, total: 100000}
  - {id: syn-a, protocol: synthetic, rate: 2000, square: 20}' "$FLIP"
"$B/gateway" -c "$T/backlog.yaml" 2>"$T/g3.log" &
G=$!; PIDS="$PIDS $G"
tele_wait "$T/data-backlog/outbox.db" 100000
broker
START=$(($(date +%s%3N) + 0))
"$B/platform_probe" "tcp://127.0.0.1:$PORT" 'iot/#' 0 10 "$START" >"$T/p3.out"
IN3=$("$B/gateway" admin --json --socket "$T/data-backlog/admin.sock" status | sed -n 's/.*"alarm_publish_ms":{"n":\([0-9]*\),"p50":\([0-9-]*\),"p99":\([0-9-]*\)}.*/\2 \/ \3 (\1 alarms)/p')
BACKLOG_LEFT=$(sqlite3 "file:$T/data-backlog/outbox.db?mode=ro" 'select count(*) from outbox_tele' 2>/dev/null)
kill $G; wait $G 2>/dev/null

# 4. Peak RSS with 10,000 configured Modbus TCP devices (polled once a second;
#    nothing listens on their port, so every poll fails fast and they go offline).
{
    i=0
    while [ $i -lt 10000 ]; do
        echo "  - {id: d$i, profile: waterlogging-wl100, connect: 'tcp://127.0.0.1:9', interval: 1s, timeout: 500ms}"
        i=$((i+1))
    done
} >"$T/devs.yaml"
config rss "$(cat "$T/devs.yaml")" '  []'
"$B/gateway" -c "$T/rss.yaml" 2>"$T/g4.log" &
G=$!; PIDS="$PIDS $G"
sleep 10
RSS=$(rss_kib $G); C4=$(cpu_ms $G)
kill $G; wait $G 2>/dev/null

l2() { sed -n "s/.*\"$2\":\([0-9.-]*\).*/\1/p" "$T/$1"; }
{
echo "core benchmarks ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r))"
printf '%-58s %s\n' "end-to-end readings/s (QoS 1, durable outbox, 1M offered)" "$TP ($NR delivered; gateway CPU ${C1} ms)"
printf '%-58s %s\n' "alarm latency, empty outbox: p50 / p99 / max (ms)" "$(l2 p2.out alarm_p50_ms) / $(l2 p2.out alarm_p99_ms) / $(l2 p2.out alarm_max_ms) ($(l2 p2.out alarms) alarms)"
printf '%-58s %s\n' "alarm latency, 100k backlog draining: p50 / p99 / max (ms)" "$(l2 p3.out alarm_p50_ms) / $(l2 p3.out alarm_p99_ms) / $(l2 p3.out alarm_max_ms) ($(l2 p3.out alarms) alarms; $(l2 p3.out readings) backlog readings received in 10 s, ${BACKLOG_LEFT:-?} rows left)"
printf '%-58s %s\n' "inside the gateway, transition -> PUBLISH p50 / p99 (ms)" "empty: ${IN2:-?}; backlog: ${IN3:-?} (includes alarms queued while the broker was down)"
printf '%-58s %s\n' "peak RSS, 10,000 configured devices (KiB)" "$RSS (CPU ${C4} ms in 10 s)"
} | tee bench/results/core.txt
