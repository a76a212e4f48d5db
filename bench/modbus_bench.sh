#!/bin/bash
# Modbus TCP polling benchmark: the gateway against the simulator on this
# box, then the floor poller (bench/floor_poller.c) against the same devices.
#
#   bench/modbus_bench.sh [N ...]          (default: 1000 10000)
#
# Env: BUILD=build, MEASURE=20 (seconds measured), WARMUP=8, INTERVAL=1s,
# DEADBAND=none (e.g. 0.5 to measure with report-by-exception), SILENT=0
# (extra devices that never answer), BROKER_PORT=28999, BASE_PORT=28000,
# KEEP=0 (keep /tmp/gw-mbbench.N), SCRAPE=PORT (serve HTTP on 127.0.0.1:PORT and
# fetch /metrics every second through the measured window: the scraper's cost). Ports: devices on 127.0.0.2.. port
# BASE_PORT+i%1000, mosquitto on 127.0.0.1:BROKER_PORT.
#
# Per N prints one table row: polls/s achieved vs scheduled, lateness p99 (from
# the gateway's gateway.modbus_stats histogram over the measured window), gateway CPU
# ms per 1,000 readings (utime+stime from /proc/PID/stat; a reading = one
# decoded register value), peak RSS (VmHWM), the floor poller's CPU per 1,000
# readings and the ratio gateway/floor.
set -u
BUILD=${BUILD:-build}
MEASURE=${MEASURE:-20}
WARMUP=${WARMUP:-8}
INTERVAL=${INTERVAL:-1s}
DEADBAND=${DEADBAND:-none}
SILENT=${SILENT:-0}
BROKER_PORT=${BROKER_PORT:-28999}
export BASE_PORT=${BASE_PORT:-28000}
HERE=$(cd "$(dirname "$0")" && pwd)
CLK=$(getconf CLK_TCK)
[ $# -gt 0 ] || set -- 1000 10000

cc -O2 -o "$BUILD/floor_poller" "$HERE/floor_poller.c" -lm || exit 1
[ -x "$BUILD/gateway" ] && [ -x "$BUILD/sim" ] || { echo "build gateway and sim first" >&2; exit 1; }

. "$HERE/lib.sh"
trap cleanup EXIT INT TERM

printf "%-8s %-7s %-16s %-10s %-12s %-10s %-12s %-7s %s\n" devices silent "polls/s(sched)" \
    "late_p99" "gw_cpu/1k" "peak_rss" "floor_cpu/1k" "ratio" "notes"
for N in "$@"; do
    D=/tmp/gw-mbbench.$N
    rm -rf "$D"
    SILENT=$SILENT "$HERE/gen_devices.sh" "$N" "$D" "$BROKER_PORT" "$INTERVAL" "$DEADBAND" >/dev/null
    [ -n "${SCRAPE:-}" ] && printf 'http:\n  listen: 127.0.0.1:%s\n' "$SCRAPE" >> "$D/gateway.yaml"
    bench_broker "$BROKER_PORT" "$D"
    bench_sims "$D" || exit 1
    "$BUILD/gateway" -c "$D/gateway.yaml" > "$D/gateway.log" 2>&1 &
    GW=$!
    PIDS+=($GW)
    wait_line "$D/gateway.log" "started from" 60 || { echo "gateway did not start" >&2; tail "$D/gateway.log" >&2; exit 1; }
    sleep "$WARMUP"
    c0=$(cpu_ticks $GW)
    cp "$D/mbstats.json" "$D/s0.json"
    SCRAPER=
    if [ -n "${SCRAPE:-}" ]; then
        ( while :; do curl -s -o "$D/metrics.txt" "http://127.0.0.1:$SCRAPE/metrics"; sleep 1; done ) &
        SCRAPER=$!
    fi
    sleep "$MEASURE"
    c1=$(cpu_ticks $GW)
    [ -n "$SCRAPER" ] && { kill $SCRAPER; wait $SCRAPER 2>/dev/null; }
    cp "$D/mbstats.json" "$D/s1.json"
    hwm=$(awk '/VmHWM/ {print $2}' /proc/$GW/status)
    kill -TERM $GW
    wait $GW 2>/dev/null
    ROW=$(python3 - "$D/s0.json" "$D/s1.json" "$c0" "$c1" "$CLK" "$N" "$SILENT" "$INTERVAL" <<'PY'
import json, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
c0, c1, clk, n, silent = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
iv = sys.argv[8]
ivs = float(iv[:-2]) / 1000 if iv.endswith("ms") else float(iv.rstrip("s"))
dt = None
cycles = b["cycles"] - a["cycles"]
failed = b["cycles_failed"] - a["cycles_failed"]
h = [y - x for x, y in zip(a["late"], b["late"])]
tot = sum(h); acc = 0; p99 = 0
for i, v in enumerate(h):
    acc += v
    if tot and acc * 100 >= tot * 99:
        p99 = b["late_bucket_ms"][i]; break
cpu_ms = (c1 - c0) * 1000.0 / clk
readings = (cycles - failed) * 16
emitted = b["readings"] - a["readings"]
print(cycles, failed, p99, cpu_ms, readings, emitted, (n + silent) / ivs)
PY
)
    read -r cycles failed p99 cpu_ms readings emitted sched <<< "$ROW"
    pps=$(python3 -c "print(round($cycles / $MEASURE))")
    gwk=$(python3 -c "print('%.1f' % ($cpu_ms * 1000 / $readings) if $readings else 'n/a')")
    # The floor poller on the same devices (the silent ones left out).
    FL=$("$BUILD/floor_poller" "$(cat "$D/ranges")" 16 "$MEASURE" 1000 3)
    flk=$(echo "$FL" | sed -n 's/.*cpu_ms_per_1000=\([0-9.]*\).*/\1/p')
    flp99=$(echo "$FL" | sed -n 's/.*late_p99_ms=\([0-9]*\).*/\1/p')
    ratio=$(python3 -c "print('%.2f' % ($gwk / $flk) if '$gwk' != 'n/a' and float('$flk') > 0 else 'n/a')")
    printf "%-8s %-7s %-16s %-10s %-12s %-10s %-12s %-7s %s\n" "$N" "$SILENT" "$pps($(printf %.0f "$sched"))" \
        "${p99}ms" "${gwk}ms" "$((hwm / 1024))MiB" "${flk}ms" "$ratio" \
        "failed=$failed emitted=$emitted/$readings floor_p99=${flp99}ms"
    cleanup
    [ "${KEEP:-0}" = 1 ] || rm -rf "$D"
done
