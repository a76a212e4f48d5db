#!/bin/bash
# A fleet of gateways into a 3-node nats-server cluster (JetStream + MQTT,
# streams and consumers replicated 3 ways), measured from a platform
# subscriber on node C. For each K in FLEET (default "10 30 50"): K gateway
# processes, each with DEVICES synthetic devices at RATE readings/s in total
# plus one alarm source (a level flipping every 2 s: one alarm transition per
# 2 s per gateway), spread over the nodes by the order of uplink.servers;
# node A is SIGKILLed at KILL_AT seconds and not restarted. Prints one table
# and writes it to bench/results/fleet.txt (OUT=... to write elsewhere).
#   bench/fleet.sh                      # K = 10 30 50, 40 s runs
#   FLEET="10" DURATION=20 bench/fleet.sh
set -u
B=${BUILD:-build}
FLEET=${FLEET:-"10 30 50"}
DURATION=${DURATION:-40}   # seconds the devices produce
KILL_AT=${KILL_AT:-20}     # seconds after the gateways started
DEVICES=${DEVICES:-4}
RATE=${RATE:-200}          # readings/s per gateway (DEVICES share it)
OUT=${OUT:-bench/results/fleet.txt}
command -v nats-server >/dev/null || { echo "nats-server missing (scripts/deps.sh)" >&2; exit 1; }
[ -x "$B/gateway" ] || { echo "build first: make all" >&2; exit 1; }
cc -O2 -std=c11 -D_GNU_SOURCE $(pkg-config --cflags libcjson) bench/fleet_probe.c \
    -o "$B/fleet_probe" -lpaho-mqtt3as $(pkg-config --libs libcjson) -lpthread || exit 1

T=$(mktemp -d /tmp/fleet.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
HZ=$(getconf CLK_TCK)
now_ms() { date +%s%3N; }
# utime+stime ticks of a process (0 when gone)
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kib() { awk '/^VmHWM/{print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
port_base=$((21000 + RANDOM % 8000))

run_one() {
    local K=$1 base=$2 d="$T/k$1"
    mkdir -p "$d"
    local routes="" i
    for i in 0 1 2; do routes="$routes${routes:+, }nats-route://127.0.0.1:$((base + 3 + i))"; done
    local NPIDS=()
    for i in 0 1 2; do
        cat >"$d/n$i.conf" <<EOF
server_name: n$i
listen: 127.0.0.1:$((base + i))
http: 127.0.0.1:$((base + 9 + i))
jetstream { store_dir: "$d/js$i", max_memory_store: 256MB, max_file_store: 2GB }
cluster { name: fleet, listen: 127.0.0.1:$((base + 3 + i)), routes: [$routes] }
mqtt { listen: 127.0.0.1:$((base + 6 + i)), stream_replicas: 3, consumer_replicas: 3 }
EOF
        nats-server -c "$d/n$i.conf" >"$d/n$i.log" 2>&1 &
        NPIDS+=($!)
        PIDS+=($!)
    done
    local ok=0 k
    for k in $(seq 1 300); do
        ok=1
        for i in 0 1 2; do
            curl -s "http://127.0.0.1:$((base + 9 + i))/healthz" | grep -q '"ok"' || ok=0
        done
        [ $ok = 1 ] && break
        sleep 0.1
    done
    [ $ok = 1 ] || { echo "K=$K: cluster did not form" >&2; return 1; }
    local mA=$((base + 6)) mB=$((base + 7)) mC=$((base + 8))
    local per_dev=$((RATE / DEVICES)) total=$((RATE / DEVICES * DURATION))
    local expected=$((K * (DEVICES * total + 10 * DURATION)))
    "$B/fleet_probe" "tcp://127.0.0.1:$mC,tcp://127.0.0.1:$mB" "$K" "$expected" \
        $((DURATION + 90)) "$d/window" >"$d/probe.out" 2>"$d/probe.err" &
    local probe=$!
    PIDS+=($probe)
    for k in $(seq 1 300); do grep -qs subscribed "$d/probe.err" && break; sleep 0.1; done
    local GPIDS=()
    for g in $(seq 0 $((K - 1))); do
        local order
        case $((g % 3)) in
            0) order="tcp://127.0.0.1:$mA, tcp://127.0.0.1:$mB, tcp://127.0.0.1:$mC" ;;
            1) order="tcp://127.0.0.1:$mB, tcp://127.0.0.1:$mC, tcp://127.0.0.1:$mA" ;;
            2) order="tcp://127.0.0.1:$mC, tcp://127.0.0.1:$mA, tcp://127.0.0.1:$mB" ;;
        esac
        {
            printf 'gateway:\n  id: fg-%d\n  data_dir: %s/gw%d\n  admin_socket: ""\n  log_level: warn\n' "$g" "$d" "$g"
            printf 'uplink:\n  servers: [%s]\n  topic_prefix: fleet\n  backoff_min: 200ms\n  backoff_max: 5s\n' "$order"
            printf 'devices:\n'
            for v in $(seq 1 "$DEVICES"); do
                printf '  - {id: s%d, protocol: synthetic, rate: %d, total: %d}\n' "$v" "$per_dev" "$total"
            done
            printf '  - {id: alarm, protocol: synthetic, rate: 10, total: %d, square: 20}\n' $((10 * DURATION))
            printf 'rules:\n  - id: lvl\n    kind: threshold\n    metric: level\n    levels: {red: {raise: 50, clear: 10}}\n'
        } >"$d/gw$g.yaml"
        "$B/gateway" -c "$d/gw$g.yaml" >"$d/gw$g.log" 2>&1 &
        GPIDS+=($!)
        PIDS+=($!)
    done
    local started=$(now_ms)
    # CPU over the steady window, then the kill.
    sleep 5
    local g0=() n0=() w0=$(now_ms)
    for p in "${GPIDS[@]}"; do g0+=($(ticks "$p")); done
    for p in "${NPIDS[@]}"; do n0+=($(ticks "$p")); done
    sleep $((KILL_AT - 5))
    local w1=$(now_ms) gcpu=0 ncpu=0 rss_sum=0 rss_max=0 j=0
    for p in "${GPIDS[@]}"; do
        gcpu=$((gcpu + $(ticks "$p") - g0[j])); j=$((j + 1))
        local r=$(rss_kib "$p"); rss_sum=$((rss_sum + r)); [ "$r" -gt "$rss_max" ] && rss_max=$r
    done
    j=0
    for p in "${NPIDS[@]}"; do ncpu=$((ncpu + $(ticks "$p") - n0[j])); j=$((j + 1)); done
    echo "$w0 $w1" >"$d/window"
    kill -9 "${NPIDS[0]}"
    wait "$probe"
    local res=$(cat "$d/probe.out")
    local wall=$(( w1 - w0 ))
    local conflicts=$(grep -l "another client is probably using" "$d"/gw*.log 2>/dev/null | wc -l)
    local onA=$(( (K + 2) / 3 ))
    # per-gateway CPU %, broker CPU % (3 nodes together), mean/max peak RSS
    awk -v K="$K" -v res="$res" -v gc="$gcpu" -v nc="$ncpu" -v hz="$HZ" -v wall="$wall" \
        -v rs="$rss_sum" -v rm="$rss_max" -v onA="$onA" -v conf="$conflicts" 'BEGIN {
        n = split(res, kv, " "); for (i = 1; i <= n; i++) { split(kv[i], p, "="); v[p[1]] = p[2] }
        printf "%4d %10s %9s/%-6s %8.1f %9.1f/%-6.1f %10.1f %9s %6s %8s %6d\n", K, v["window_rate"],
            v["alarm_p50"], v["alarm_p99"], gc / hz / (wall / 1000) * 100 / K,
            rs / K / 1024, rm / 1024, nc / hz / (wall / 1000) * 100, v["max_gap_ms"], v["dups"],
            v["expected"] - v["readings"], conf }' >>"$T/rows"
    echo "K=$K: $res (gateways on node A: $onA)" >&2
    for p in "${GPIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${GPIDS[@]}"; do wait "$p" 2>/dev/null; done
    for p in "${NPIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${NPIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf "$d"
}

: >"$T/rows"
for K in $FLEET; do
    run_one "$K" "$port_base"
    port_base=$((port_base + 20))
done
{
    echo "fleet benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs shared with other engineers, load average at the end: $(cut -d' ' -f1-3 /proc/loadavg), $(uname -r), nats-server $(nats-server --version | awk '{print $2}'))"
    echo "command: FLEET=\"$FLEET\" DURATION=$DURATION KILL_AT=$KILL_AT DEVICES=$DEVICES RATE=$RATE bench/fleet.sh"
    echo "each gateway: $DEVICES synthetic devices, $RATE readings/s in all, 1 alarm transition / 2 s; uplink.servers rotated so a third start on each node; QoS 1, durable outbox"
    echo "platform: persistent-session subscriber on node C; node A SIGKILLed at ${KILL_AT} s and left down"
    echo
    echo "   K  readings/s  alarm ms     gw CPU%   gw RSS MiB   broker CPU%    max gap  dups  missing  id-conflict"
    echo "      delivered  p50/p99     (each)   mean/max     (3 nodes)     ms (kill)"
    cat "$T/rows"
    echo
    echo "readings/s: distinct synthetic readings arriving at the platform in the steady window (5 s after the last gateway started .. the kill); CPU over that window"
    echo "alarm ms: platform arrival minus the alarm's transition time, whole run incl. the failover; max gap: longest silence of one gateway at the platform"
    echo "missing: readings made but not at the platform when the probe stopped ($((DURATION + 90)) s bound); dups: copies dropped by item id"
} | tee "$OUT"
