#!/bin/bash
# Cost per poll (issue 17): the gateway beside two floors, in one run, on the
# same simulated devices. Per N, each row is the median of RUNS runs:
#   libmodbus floor  bench/libmodbus_floor.c: libmodbus, one connection per
#                    device, raw answer published with libmosquitto at QoS 0
#   epoll floor      bench/floor_poller.c: non-blocking, hand-built frames,
#                    no publishing (the physical limit on this box)
#   gateway          full durable pipeline, 4 metrics per poll, QoS 1
#   gateway RBE      the same with report-by-exception (deadband 0.5)
# Workload: N Modbus TCP devices (build/sim), each its own connection, 16
# holding registers read once per INTERVAL with one FC 03.
#
#   bench/cost_bench.sh [N ...]     (default: 1000 2000 10000 20000)
#
# Env: BUILD=build, RUNS=3, MEASURE=10 (s measured per run), WARMUP=6,
# STRACE_N=2000 (the N whose rows also get syscalls per poll from
# strace -c -f attached for STRACE_S=4 s; empty: none), BROKER_PORT=28999,
# BASE_PORT=28000, OUT=bench/results/cost.txt.
#
# Columns: CPU ms per 1,000 polls (utime+stime over the window), the ratio of
# the gateway's to each floor's, peak RSS (VmHWM), poll lateness p99 and, for
# the gateway, answered % (polls answered / scheduled) and delivered %
# (telemetry rows the platform acknowledged / rows stored in the window, the
# rows the destination still owes at the end in brackets). The open-file limit is raised as the
# package's unit does (LimitNOFILE=65536), as far as the hard limit allows.
set -u
BUILD=${BUILD:-build}
RUNS=${RUNS:-3}
MEASURE=${MEASURE:-10}
WARMUP=${WARMUP:-6}
STRACE_N=${STRACE_N-2000}
STRACE_S=${STRACE_S:-4}
BROKER_PORT=${BROKER_PORT:-28999}
export BASE_PORT=${BASE_PORT:-28000}
OUT=${OUT:-bench/results/cost.txt}
HERE=$(cd "$(dirname "$0")" && pwd)
CLK=$(getconf CLK_TCK)
[ $# -gt 0 ] || set -- 1000 2000 10000 20000

UNIT_NOFILE=$(sed -n 's/^LimitNOFILE=//p' "$HERE/../packaging/citygw.service.in")
HARD=$(ulimit -Hn)
if [ "$HARD" = unlimited ] || [ "$HARD" -ge "${UNIT_NOFILE:-65536}" ]; then
    ulimit -n "${UNIT_NOFILE:-65536}"
else
    ulimit -n "$HARD"
fi
NOFILE=$(ulimit -n)

cc -O2 -o "$BUILD/floor_poller" "$HERE/floor_poller.c" -lm || exit 1
cc -O2 -o "$BUILD/libmodbus_floor" "$HERE/libmodbus_floor.c" $(pkg-config --cflags --libs libmodbus) \
    -lmosquitto || { echo "libmosquitto-dev missing: scripts/deps.sh" >&2; exit 1; }
[ -x "$BUILD/gateway" ] && [ -x "$BUILD/sim" ] || { echo "build gateway and sim first" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"

. "$HERE/lib.sh"
trap cleanup EXIT INT TERM

hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
wait_line() { # file text timeout_s
    for _ in $(seq 1 $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
median() { sort -g | awk '{a[NR] = $1} END {print NR ? a[int((NR + 1) / 2)] : "n/a"}'; }
# Syscalls per poll: strace -c -f attached to PID for STRACE_S s; prints
# "CALLS TOP" (TOP: the three most frequent syscalls).
strace_calls() { # pid file
    timeout -s INT "$STRACE_S" strace -c -S calls -f -p "$1" -o "$2" >/dev/null 2>&1
    awk '$NF == "total" {t = $4} END {print t + 0}' "$2"
}
strace_top() {
    awk '/^-/ {n++; next} n == 1 && NF >= 5 {printf "%s%s:%s", (k++ ? "," : ""), $NF, $4} k == 3 {exit}' "$1"
}

# One gateway run on config $1 (dir $2): prints "cpu_per_1k hwm_kib p99 answered% delivered% backlog"
# and, when $3 = strace, "syscalls_per_poll top" in $2/strace.row.
gw_run() {
    local yaml=$1 d=$2 mode=${3:-}
    rm -rf "$d/data" "$d/mbstats.json"
    "$BUILD/gateway" -c "$yaml" >"$d/gateway.log" 2>&1 &
    local gw=$!
    PIDS+=($gw)
    wait_line "$d/gateway.log" "started from" 60 || { echo "gateway did not start" >&2; tail "$d/gateway.log" >&2; return 1; }
    sleep "$WARMUP"
    wait_line "$d/mbstats.json" cycles 60 || { echo "no $d/mbstats.json" >&2; return 1; }
    local adm="$d/data/admin.sock"
    "$BUILD/gateway" admin --json --socket "$adm" status >"$d/a0.json" 2>/dev/null
    cp "$d/mbstats.json" "$d/s0.json"
    local c0 t0 c1 t1
    c0=$(cpu_ticks $gw)
    t0=$(date +%s.%N)
    if [ "$mode" = strace ]; then
        strace_calls $gw "$d/strace.txt" >"$d/strace.calls"
    else
        sleep "$MEASURE"
    fi
    c1=$(cpu_ticks $gw)
    t1=$(date +%s.%N)
    cp "$d/mbstats.json" "$d/s1.json"
    "$BUILD/gateway" admin --json --socket "$adm" status >"$d/a1.json" 2>/dev/null
    local hwm
    hwm=$(hwm_kib $gw)
    kill -TERM $gw
    wait $gw 2>/dev/null
    python3 - "$d" "$c0" "$c1" "$CLK" "$hwm" "$t0" "$t1" "$N" "$mode" <<'PY'
import json, sys
d, c0, c1, clk, hwm, t0, t1, n, mode = sys.argv[1:]
a = json.load(open(d + "/s0.json")); b = json.load(open(d + "/s1.json"))
cycles = b["cycles"] - a["cycles"]; failed = b["cycles_failed"] - a["cycles_failed"]
h = [y - x for x, y in zip(a["late"], b["late"])]
tot = sum(h); acc = 0; p99 = 0
for i, v in enumerate(h):
    acc += v
    if tot and acc * 100 >= tot * 99:
        p99 = b["late_bucket_ms"][i]; break
secs = float(t1) - float(t0)
if mode == "strace":
    calls = int(open(d + "/strace.calls").read().split()[0] or 0)
    print("%.1f" % (calls / cycles if cycles else 0))
    sys.exit(0)
cpu_ms = (int(c1) - int(c0)) * 1000.0 / int(clk)
x = json.load(open(d + "/a0.json")); y = json.load(open(d + "/a1.json"))
# Rows that left (acknowledged) over rows that came (left + backlog growth);
# rows, not readings: a poll's readings share one row.
# The backlog is what the destination still owes (rows above its cursor), not
# the outbox's rows: acknowledged rows are deleted up to a second later.
acked = y["uplink"]["rows_acked"] - x["uplink"]["rows_acked"]
owed = lambda j: sum(d["backlog_telemetry"] + d["backlog_priority"] for d in j["destinations"])
grew = owed(y) - owed(x)
came = acked + grew
print("%.1f %d %d %.2f %.2f %d" % (cpu_ms * 1000 / cycles if cycles else 0, int(hwm), p99,
      100.0 * (cycles - failed) / (int(n) * secs), 100.0 * acked / came if came > 0 else 100.0,
      owed(y)))
PY
}

# One floor run: $1 = libmodbus|epoll; prints "cpu_per_1k maxrss_kib p99".
floor_run() {
    local out
    if [ "$1" = libmodbus ]; then
        out=$("$BUILD/libmodbus_floor" "$(cat "$D/ranges")" "$BROKER_PORT" 16 "$MEASURE" 1000 3 2>>"$D/floors.log")
        echo "$out" | sed -n 's/.*cpu_ms_per_1000_polls=\([0-9.]*\).*maxrss_kib=\([0-9]*\).*/\1 \2/p' |
            tr '\n' ' '
    else
        out=$("$BUILD/floor_poller" "$(cat "$D/ranges")" 16 "$MEASURE" 1000 3 2>>"$D/floors.log")
        # floor_poller counts per 1,000 readings of 16 registers.
        echo "$out" | sed -n 's/.*cpu_ms_per_1000=\([0-9.]*\).*maxrss_kib=\([0-9]*\).*/\1 \2/p' |
            awk '{printf "%.2f %s ", $1 * 16, $2}'
    fi
    echo "$out" | sed -n 's/.*late_p99_ms=\([0-9]*\).*/\1/p'
    echo "$out" >>"$D/floors.log"
}
floor_strace() { # libmodbus|epoll: syscalls per scheduled poll over STRACE_S s
    local pid
    if [ "$1" = libmodbus ]; then
        "$BUILD/libmodbus_floor" "$(cat "$D/ranges")" "$BROKER_PORT" 16 $((STRACE_S + 4)) 1000 2 >/dev/null &
    else
        "$BUILD/floor_poller" "$(cat "$D/ranges")" 16 $((STRACE_S + 4)) 1000 2 >/dev/null &
    fi
    pid=$!
    sleep 3
    local calls
    calls=$(strace_calls $pid "$D/strace-$1.txt")
    wait $pid 2>/dev/null
    awk -v c="$calls" -v n="$N" -v s="$STRACE_S" 'BEGIN {printf "%.1f\n", c / (n * s)}'
}

{
    echo "cost per poll ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg))"
    echo "median of $RUNS runs of ${MEASURE} s; CPU ms per 1,000 polls (16 registers, one FC 03 each);"
    echo "open files: $NOFILE (the unit sets ${UNIT_NOFILE:-?}; hard limit here $HARD)"
} | tee "$OUT"
printf "%-7s %-18s %-9s %-9s %-8s %-9s %-9s %-9s %s\n" N row cpu/1kpoll x_libmb x_epoll rss_MiB late_p99 sys/poll \
    "answered% delivered% (backlog)" | tee -a "$OUT"
for N in "$@"; do
    if [ $((N + 64)) -gt "$NOFILE" ]; then
        # Every poller here holds one socket per device: past the limit the
        # last devices could not connect and the row would measure that.
        echo "N=$N does not fit $NOFILE open files (the unit's $UNIT_NOFILE would): measured at $((NOFILE - 64))" |
            tee -a "$OUT"
        N=$((NOFILE - 64))
    fi
    D=/tmp/gw-cost.$N
    rm -rf "$D"
    POINTS=4 "$HERE/gen_devices.sh" "$N" "$D" "$BROKER_PORT" 1s none >/dev/null
    POINTS=4 "$HERE/gen_devices.sh" "$N" "$D/rbe" "$BROKER_PORT" 1s 0.5 >/dev/null
    sed -i "s|$D/rbe/mbstats.json|$D/mbstats.json|; s|data_dir: $D/rbe/data|data_dir: $D/data|" "$D/rbe/gateway.yaml"
    bench_broker "$BROKER_PORT" "$D"
    bench_sims "$D" || exit 1
    declare -A R=()
    for run in $(seq 1 "$RUNS"); do
        for kind in libmodbus epoll; do
            read -r cpu rss p99 <<<"$(floor_run $kind)"
            R[$kind.cpu]+="$cpu "; R[$kind.rss]+="$rss "; R[$kind.p99]+="$p99 "
        done
        for kind in gateway rbe; do
            y=$D/gateway.yaml
            [ $kind = rbe ] && y=$D/rbe/gateway.yaml
            read -r cpu rss p99 ans del backlog <<<"$(gw_run "$y" "$D")"
            R[$kind.cpu]+="$cpu "; R[$kind.rss]+="$rss "; R[$kind.p99]+="$p99 "
            R[$kind.ans]+="$ans "; R[$kind.del]+="$del "; R[$kind.bl]+="$backlog "
        done
    done
    declare -A S=()
    if [ "$N" = "$STRACE_N" ]; then
        S[libmodbus]=$(floor_strace libmodbus)
        S[epoll]=$(floor_strace epoll)
        S[gateway]=$(gw_run "$D/gateway.yaml" "$D" strace)
        cp "$D/strace.txt" "$D/strace-gateway.txt"
        S[rbe]=$(gw_run "$D/rbe/gateway.yaml" "$D" strace)
        cp "$D/strace.txt" "$D/strace-rbe.txt"
    fi
    m() { tr ' ' '\n' <<<"${R[$1]}" | grep . | median; }
    lm=$(m libmodbus.cpu); ep=$(m epoll.cpu)
    for kind in libmodbus epoll gateway rbe; do
        cpu=$(m $kind.cpu)
        rl=$(awk -v a="$cpu" -v b="$lm" 'BEGIN {printf (b > 0 ? "%.2f" : "n/a"), a / b}')
        re=$(awk -v a="$cpu" -v b="$ep" 'BEGIN {printf (b > 0 ? "%.2f" : "n/a"), a / b}')
        rss=$(awk -v k="$(m $kind.rss)" 'BEGIN {printf "%.1f", k / 1024}')
        extra=""
        case $kind in
        gateway | rbe) extra="$(m $kind.ans) $(m $kind.del) ($(m $kind.bl))" ;;
        esac
        name=$kind
        case $kind in
        libmodbus) name="libmodbus floor" ;; epoll) name="epoll floor" ;;
        gateway) name="gateway" ;; rbe) name="gateway RBE" ;;
        esac
        sys=${S[$kind]:-}
        [ -n "$sys" ] && [ -f "$D/strace-$kind.txt" ] && sys="$sys [$(strace_top "$D/strace-$kind.txt")]"
        printf "%-7s %-18s %-9s %-9s %-8s %-9s %-9s %-9s %s\n" "$N" "$name" "$cpu" "$rl" "$re" "$rss" \
            "$(m $kind.p99)ms" "${sys:--}" "$extra" | tee -a "$OUT"
    done
    unset R S
    cleanup
    [ "${KEEP:-0}" = 1 ] || rm -rf "$D"
done
