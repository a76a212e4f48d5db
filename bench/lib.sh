# Sourced by the benchmarks.
#
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
