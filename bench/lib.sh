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
