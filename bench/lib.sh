# Helpers the Modbus benchmarks share (bash; sourced). PIDS holds the
# processes a script started: cleanup ends exactly those.
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    PIDS=()
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
wait_line() { # file text timeout_s
    for _ in $(seq 1 $(($3 * 10))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}
# Starts mosquitto on 127.0.0.1:$1 with its config and log in dir $2.
bench_broker() {
    printf "listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\npersistence false\n" \
        "$1" >"$2/mosquitto.conf"
    [ "$(id -u)" -eq 0 ] && echo "user root" >>"$2/mosquitto.conf"
    mosquitto -c "$2/mosquitto.conf" >"$2/mosquitto.log" 2>&1 &
    PIDS+=($!)
}
# Starts one sim per $1/sim-*.yaml and waits until each is ready.
bench_sims() {
    local s
    for s in "$1"/sim-*.yaml; do
        "$BUILD/sim" modbus --scenario "$s" --quiet >"$s.out" 2>"$s.err" &
        PIDS+=($!)
    done
    for s in "$1"/sim-*.yaml; do
        wait_line "$s.out" "sim: ready" 60 || { echo "sim $s did not start" >&2; cat "$s.err" >&2; return 1; }
    done
}

# ---- The MQTT-side benchmarks (core, dest, protect): a throw-away broker per port,
# the platform probe, and waits on the outbox. ----
# bench_start BUILD: kills the processes in PIDS and removes $T at exit, and
# builds the platform probe into BUILD.
bench_start() {
    PIDS=""
    trap 'for p in $PIDS; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$T"' EXIT
    trap 'exit 1' INT TERM
    cc -O2 -std=c11 -D_GNU_SOURCE $(pkg-config --cflags libcjson) bench/platform_probe.c \
        -o "$1/platform_probe" -lpaho-mqtt3as $(pkg-config --libs libcjson) -lpthread
}
#
# mosq PORT DIR: a throw-away mosquitto on 127.0.0.1:PORT (no persistence, no
# queue limits: a slow subscriber must not lose messages), its config and log
# in DIR; waits until it accepts and sets MOSQ to its pid.
mosq() {
    cat >"$2/m$1.conf" <<C
listener $1 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 0
max_inflight_messages 0
C
    [ "$(id -u)" -eq 0 ] && echo "user root" >>"$2/m$1.conf"
    mosquitto -c "$2/m$1.conf" >"$2/mosquitto-$1.log" 2>&1 &
    MOSQ=$!
    i=0; until (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.05; done
    [ $i -gt 100 ] && echo "mosquitto on port $1 did not start (see $2/mosquitto-$1.log)" >&2
}

# free_ports N: sets PORT to the first of N consecutive ports below the
# ephemeral range (32768) where nothing accepts connections.
free_ports() {
    try=0
    while [ $try -lt 50 ]; do
        PORT=$((30000 + ($$ * 7 + try * 131) % 2500))
        ok=1; k=0
        while [ $k -lt "$1" ]; do
            (exec 3<>/dev/tcp/127.0.0.1/$((PORT + k))) 2>/dev/null && ok=0
            k=$((k+1))
        done
        [ $ok -eq 1 ] && return 0
        try=$((try+1))
    done
    return 1
}

# tele_wait DB N: waits (at most 20 s) until the outbox DB holds N telemetry rows.
tele_wait() {
    i=0
    while [ $i -lt 200 ]; do
        n=$(sqlite3 "file:$1?mode=ro" 'select count(*) from outbox_tele' 2>/dev/null || echo 0)
        [ "${n:-0}" -ge "$2" ] && break
        i=$((i+1)); sleep 0.1
    done
}
