#!/bin/sh
# make demo: a private mosquitto (the stand-in city platform) on 127.0.0.1:18830,
# the simulator playing three Modbus TCP waterlogging sensors in a rainstorm,
# the gateway on its embedded default config, and the platform's view printed
# here until Ctrl-C. Everything started here is stopped on exit.
set -u
B=${BUILD:-build}
DIR=$B/demo
mkdir -p "$DIR"
rm -rf "$B/demo-data"
PIDS=""
cleanup() {
    trap - INT TERM EXIT
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    echo "demo stopped; logs in $DIR/"
}
trap cleanup INT TERM EXIT

cat >"$DIR/mosquitto.conf" <<CONF
listener 18830 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
CONF
if [ "$(id -u)" -eq 0 ]; then echo "user root" >>"$DIR/mosquitto.conf"; fi
mosquitto -c "$DIR/mosquitto.conf" >"$DIR/mosquitto.log" 2>&1 &
PIDS="$PIDS $!"

"$B/sim" modbus --scenario sim/scenarios/demo-rainstorm.yaml --speed "${SPEED:-1}" \
    >"$DIR/sim.out" 2>"$DIR/sim.log" &
PIDS="$PIDS $!"

# Wait (bounded) for the broker and the simulator before starting the gateway.
i=0
until grep -q "sim: ready" "$DIR/sim.out" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "simulator did not start; see $DIR/sim.log"; exit 1; }
    sleep 0.1
done

"$B/sim" platform --broker tcp://127.0.0.1:18830 --topic 'iot/#' --pretty &
PIDS="$PIDS $!"
"$B/gateway" --demo 2>"$DIR/gateway.log" &
PIDS="$PIDS $!"
echo "demo running: platform view below, gateway log in $DIR/gateway.log. Ctrl-C stops it."
wait
