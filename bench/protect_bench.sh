#!/bin/bash
# Issue 14: end-to-end readings/s with uplink.protect none, sm4-sm3, sm2-sign and
# sm4-sm3+sm2-sign, in one run. Each variant offers the same readings (synthetic,
# 250,000/s) through the durable outbox to a local mosquitto at QoS 1; the time
# is from the gateway's start to the moment admin status counts every row acked
# (PUBACK), so the ratios compare like with like. batch 200 readings per message.
set -u
B=${BUILD:-build}
N=${N:-300000}
T=$(mktemp -d /tmp/gwprot.XXXXXX)
PORT=$((32000 + $$ % 900))
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT INT TERM
G=$(cd "$(dirname "$B/gateway")" && pwd)/gateway

. bench/lib.sh
mosq "$PORT" "$T"
PIDS="$PIDS $MOSQ"
mosquitto_sub -h 127.0.0.1 -p $PORT -t 'iot/#' -q 1 >/dev/null 2>&1 &
PIDS="$PIDS $!"

(cd "$T" && "$G" keygen sm4 k.key && "$G" keygen sm2 gw.pem && openssl genpkey -algorithm SM2 -out pf.pem 2>/dev/null &&
    openssl pkey -in pf.pem -pubout -out pf.pub) || exit 1

run() { # $1 scheme; prints readings/s
    name=$(echo "$1" | tr '+' '_')
    cat >"$T/$name.yaml" <<C
gateway: {id: gw-bench, data_dir: $T/data-$name, log_level: warn, shutdown_drain: 1s}
store: {commit_window: 5ms, max_bytes: 1GiB, queue_max: 400000}
uplink:
  uri: "tcp://127.0.0.1:$PORT"
  batch: 200
  max_inflight: 64
  protect:
    scheme: $1
    keys: [{id: k1, key_file: $T/k.key, sign_key_file: $T/gw.pem, peer_key_file: $T/pf.pub}]
devices:
  - {id: syn-1, protocol: synthetic, rate: 250000, total: $N}
C
    start=$(date +%s%N)
    "$G" -c "$T/$name.yaml" 2>"$T/$name.log" &
    gp=$!
    acked=0; i=0
    while [ $i -lt 1200 ]; do
        acked=$("$G" admin --socket "$T/data-$name/admin.sock" --json status 2>/dev/null |
            sed -n 's/.*"rows_acked":\([0-9]*\).*/\1/p')
        [ "${acked:-0}" -ge "$N" ] && break
        i=$((i+1)); sleep 0.05
    done
    end=$(date +%s%N)
    cpu=$(awk '{print ($14+$15)*10}' /proc/$gp/stat)
    kill $gp; wait $gp 2>/dev/null
    echo "$(( ${acked:-0} * 1000000000 / (end - start) )) $cpu ${acked:-0}"
}

R0=$(run none); R1=$(run sm4-sm3); R2=$(run sm2-sign); R3=$(run sm4-sm3+sm2-sign)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'; }
f() { echo "$1" | cut -d' ' -f"$2"; }
{
echo "message protection (issue 14) ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs), $N readings, batch 200, QoS 1"
printf '%-22s %12s %8s %14s %10s\n' scheme readings/s ratio "gateway CPU ms" acked
for v in "none:$R0" "sm4-sm3:$R1" "sm2-sign:$R2" "sm4-sm3+sm2-sign:$R3"; do
    s=${v%%:*}; r=${v#*:}
    printf '%-22s %12s %8s %14s %10s\n' "$s" "$(f "$r" 1)" "$(ratio "$(f "$r" 1)" "$(f "$R0" 1)")" "$(f "$r" 2)" "$(f "$r" 3)"
done
} | tee bench/results/protect.txt
