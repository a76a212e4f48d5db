#!/bin/bash
# Memory and idle cost (issue 17): the gateway polling N simulated Modbus TCP
# devices (16 holding registers each, 1 s, every reading published through
# the durable outbox to a local mosquitto), and a small gateway left idle.
#
#   bench/mem_bench.sh [N ...]        (default: 10000 20000; "idle": the idle cost only)
#
# Per N: peak RSS (VmHWM), RSS once every device has been polled for WARMUP
# seconds (steady, VmRSS at the end of MEASURE), the peak as KiB per device,
# and polls/s as a check that the devices were really polled. Then the idle
# cost: IDLE_N devices (15) polled every 10 s, CPU % of one core over IDLE_S
# seconds (60) from utime+stime in /proc/PID/stat, and the gateway's
# wake-ups per second (voluntary context switches of all its threads).
# The devices decode POINTS (4) metrics from their 16 registers, the workload
# issue 17 defines ("4 metrics per poll", as bench/cost_bench.sh); POINTS=16
# is four times the readings (160,000/s at 10,000 devices: more than one
# local broker takes at QoS 1, so the outbox backlog grows during the run).
# Writes bench/results/mem.txt. Env: BUILD=build, WARMUP=10, MEASURE=10, POINTS=4,
# DIR=/tmp/gw-membench (runs in DIR.N),
# IDLE_N=15, IDLE_S=60 (0: no idle run), BROKER_PORT=29999, BASE_PORT=30000, KEEP=0,
# STORE_EXTRA (a store key for the polled runs, e.g. "queue_max_bytes: 2MiB").
set -u
BUILD=${BUILD:-build}
WARMUP=${WARMUP:-10}
MEASURE=${MEASURE:-10}
IDLE_N=${IDLE_N:-15}
IDLE_S=${IDLE_S:-60}
BROKER_PORT=${BROKER_PORT:-29999}
export POINTS=${POINTS:-4}
DIR=${DIR:-/tmp/gw-membench}
export BASE_PORT=${BASE_PORT:-30000}
HERE=$(cd "$(dirname "$0")" && pwd)
CLK=$(getconf CLK_TCK)
OUTF=${OUTF:-bench/results/mem.txt}
[ $# -gt 0 ] || set -- 10000 20000
[ "$1" = idle ] && shift # only the idle cost
[ -x "$BUILD/gateway" ] && [ -x "$BUILD/sim" ] || { echo "build gateway and sim first" >&2; exit 1; }

PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    PIDS=()
}
trap cleanup EXIT INT TERM

wait_line() { # file text timeout_s
    for _ in $(seq 1 $((${3} * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_ns() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s += $1} END {printf "%d", s}'; }
wakeups() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ {s += $2} END {print s + 0}'; }

# Starts mosquitto, the sims and the gateway for N devices at INTERVAL in $D;
# sets GW. Returns non-zero when something did not come up.
start_set() { # N INTERVAL
    rm -rf "$D"
    "$HERE/gen_devices.sh" "$1" "$D" "$BROKER_PORT" "$2" >/dev/null || return 1
    # Idle: no statistics file (written every second by design when configured).
    [ "$1" -le "$IDLE_N" ] && sed -i '/modbus_stats:/d' "$D/gateway.yaml"
    [ -n "${STORE_EXTRA:-}" ] && sed -i "s/^  commit_window: 5ms/  commit_window: 5ms\n  $STORE_EXTRA/" "$D/gateway.yaml"
    printf "listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\npersistence false\n" \
        "$BROKER_PORT" >"$D/mosquitto.conf"
    mosquitto -c "$D/mosquitto.conf" >"$D/mosquitto.log" 2>&1 &
    PIDS+=($!)
    for s in "$D"/sim-*.yaml; do
        "$BUILD/sim" modbus --scenario "$s" --quiet >"$s.out" 2>"$s.err" &
        PIDS+=($!)
    done
    for s in "$D"/sim-*.yaml; do
        wait_line "$s.out" "sim: ready" 90 || { echo "sim $s did not start" >&2; cat "$s.err" >&2; return 1; }
    done
    "$BUILD/gateway" -c "$D/gateway.yaml" >"$D/gateway.log" 2>&1 &
    GW=$!
    PIDS+=($GW)
    wait_line "$D/gateway.log" "started from" 90 || { echo "gateway did not start" >&2; tail "$D/gateway.log" >&2; return 1; }
}

mkdir -p "$(dirname "$OUTF")"
{
    echo "memory and idle cost ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(git -C "$HERE/.." rev-parse --short HEAD 2>/dev/null), $POINTS metrics per poll)"
    printf "%-8s %-14s %-12s %-12s %-14s %-12s %s\n" devices "polls/s(sched)" peak_KiB steady_KiB \
        "KiB/device" "peak_MiB" notes
} | tee "$OUTF"
for N in "$@"; do
    D=$DIR.$N
    start_set "$N" 1s || { cleanup; continue; }
    sleep "$WARMUP"
    # The statistics file needs a descriptor: at the open-file limit it is missing (n/a).
    cycles() { python3 -c "import json; print(json.load(open('$D/mbstats.json'))['cycles'])" 2>/dev/null || echo 0; }
    p0=$(cycles)
    sleep "$MEASURE"
    p1=$(cycles)
    hwm=$(kib $GW VmHWM)
    rss=$(kib $GW VmRSS)
    fd=$(ls /proc/$GW/fd | wc -l)
    kill -TERM $GW
    wait $GW 2>/dev/null
    pps=$(((p1 - p0) / MEASURE))
    [ "$p1" = 0 ] && pps=n/a
    printf "%-8s %-14s %-12s %-12s %-14s %-12s %s\n" "$N" "$pps($N)" "$hwm" "$rss" \
        "$(python3 -c "print('%.2f' % ($hwm / $N))")" "$(python3 -c "print('%.1f' % ($hwm / 1024))")" \
        "fds=$fd" | tee -a "$OUTF"
    cleanup
    [ "${KEEP:-0}" = 1 ] || rm -rf "$D"
done

# Idle cost: a small gateway, every device polled every 10 s.
D=$DIR.idle
if [ "$IDLE_S" -gt 0 ] && start_set "$IDLE_N" 10s; then
    sleep 5
    c0=$(cpu_ticks $GW); w0=$(wakeups $GW); n0=$(cpu_ns $GW); t0=$(date +%s.%N)
    sleep "$IDLE_S"
    c1=$(cpu_ticks $GW); w1=$(wakeups $GW); n1=$(cpu_ns $GW); t1=$(date +%s.%N)
    thr=$(ls /proc/$GW/task | wc -l)
    kill -TERM $GW
    wait $GW 2>/dev/null
    python3 - "$c0" "$c1" "$w0" "$w1" "$t0" "$t1" "$CLK" "$IDLE_N" "$thr" "$n0" "$n1" <<'PY' | tee -a "$OUTF"
import sys
c0, c1, w0, w1 = (int(x) for x in sys.argv[1:5])
t0, t1 = float(sys.argv[5]), float(sys.argv[6])
clk, n, thr = int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
n0, n1 = int(sys.argv[10]), int(sys.argv[11])
dt = t1 - t0
cpu_ms = (c1 - c0) * 1000.0 / clk
print("idle: %d devices polled every 10 s, %.0f s: CPU %.0f ms = %.3f %% of a core (target < 0.1 %%; "
      "schedstat %.1f ms = %.3f %%), %.1f wake-ups/s over %d threads"
      % (n, dt, cpu_ms, cpu_ms / dt / 10.0, (n1 - n0) / 1e6, (n1 - n0) / 1e6 / dt / 10.0,
         (w1 - w0) / dt, thr))
PY
fi
cleanup
[ "${KEEP:-0}" = 1 ] || rm -rf "$D"
