#!/bin/sh
# make demo: a private mosquitto (the stand-in city platform) on 127.0.0.1:18830,
# the simulator playing three Modbus TCP waterlogging sensors in a rainstorm
# (127.0.0.1:15020..15022), the gateway on its embedded default config, and the
# platform's view printed here until Ctrl-C. Everything started here is stopped
# on exit.
#
# Ports: DEMO_BROKER_PORT (18830) and DEMO_MODBUS_PORT (15020, the first of
# three) from the environment, or --broker-port N / --modbus-port N. When one
# is taken the script says which and how to move it, and starts nothing.
# With moved ports the gateway runs on a copy of the embedded config with the
# ports rewritten (and the id gw-demo-<broker port>, since gw-demo is reserved
# for --demo, and its data in $DIR/data). DEMO_SECONDS=N stops the demo after N
# seconds and DEMO_DIR puts its files elsewhere than $BUILD/demo (for tests).
set -u
B=${BUILD:-build}
DIR=${DEMO_DIR:-$B/demo}
BROKER_PORT=${DEMO_BROKER_PORT:-18830}
MODBUS_PORT=${DEMO_MODBUS_PORT:-15020}
SECONDS_LEFT=${DEMO_SECONDS:-0}
while [ $# -gt 0 ]; do
    case $1 in
    --broker-port) BROKER_PORT=${2:-}; shift 2 || exit 2 ;;
    --modbus-port) MODBUS_PORT=${2:-}; shift 2 || exit 2 ;;
    *) echo "usage: scripts/demo.sh [--broker-port N] [--modbus-port N]" >&2; exit 2 ;;
    esac
done
for p in "$BROKER_PORT" "$MODBUS_PORT"; do
    case $p in
    '' | *[!0-9]*) echo "demo: '$p' is not a port number" >&2; exit 2 ;;
    esac
    if [ "$p" -lt 1 ] || [ "$p" -gt 65533 ]; then
        echo "demo: port $p out of range 1..65533" >&2; exit 2
    fi
done

# A TCP port something already listens on, with who (when ss can say).
taken() {
    command -v ss >/dev/null 2>&1 || return 1
    ss -Hltnp "sport = :$1" 2>/dev/null | grep -q . || return 1
    WHO=$(ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\("[^"]*"\),pid=\([0-9]*\).*/\1 pid \2/p' | head -n 1)
    return 0
}
# Says which port is taken and how to move it; exits.
refuse() { # port, what, variable, flag, suggestion
    echo "demo: port $1 ($2) is already in use${WHO:+ by $WHO}." >&2
    echo "demo: free it, or move the demo's $2: $3=$5 make demo" >&2
    echo "demo:   (or BUILD=$B scripts/demo.sh $4 $5)" >&2
    exit 1
}
WHO=""
taken "$BROKER_PORT" && refuse "$BROKER_PORT" "broker" DEMO_BROKER_PORT --broker-port $((BROKER_PORT + 10))
for k in 0 1 2; do
    WHO=""
    taken $((MODBUS_PORT + k)) &&
        refuse $((MODBUS_PORT + k)) "Modbus sensors, ports $MODBUS_PORT..$((MODBUS_PORT + 2))" \
            DEMO_MODBUS_PORT --modbus-port $((MODBUS_PORT + 1000))
done

mkdir -p "$DIR"
PIDS=""
cleanup() {
    trap - INT TERM EXIT
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    echo "demo stopped; logs in $DIR/"
}
trap cleanup INT TERM EXIT

cat >"$DIR/mosquitto.conf" <<CONF
listener $BROKER_PORT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
CONF
if [ "$(id -u)" -eq 0 ]; then echo "user root" >>"$DIR/mosquitto.conf"; fi
mosquitto -c "$DIR/mosquitto.conf" >"$DIR/mosquitto.log" 2>&1 &
MOSQ=$!
PIDS="$PIDS $MOSQ"

"$B/sim" modbus --scenario sim/scenarios/demo-rainstorm.yaml --speed "${SPEED:-1}" \
    --base-port "$MODBUS_PORT" >"$DIR/sim.out" 2>"$DIR/sim.log" &
SIM=$!
PIDS="$PIDS $SIM"

# Wait (bounded) for the broker and the simulator before starting the gateway;
# either one exiting (a port taken since the check) is said at once.
i=0
until grep -q "sim: ready" "$DIR/sim.out" 2>/dev/null && grep -q "running" "$DIR/mosquitto.log"; do
    if ! kill -0 "$MOSQ" 2>/dev/null; then
        WHO=""
        echo "demo: mosquitto exited: $(tail -n 1 "$DIR/mosquitto.log")" >&2
        refuse "$BROKER_PORT" "broker" DEMO_BROKER_PORT --broker-port $((BROKER_PORT + 10))
    fi
    if ! kill -0 "$SIM" 2>/dev/null; then
        WHO=""
        sed 's/^/demo: /' "$DIR/sim.log" >&2
        refuse "$MODBUS_PORT" "Modbus sensors, ports $MODBUS_PORT..$((MODBUS_PORT + 2))" \
            DEMO_MODBUS_PORT --modbus-port $((MODBUS_PORT + 1000))
    fi
    i=$((i + 1))
    [ $i -gt 100 ] && { echo "demo: the broker or the simulator did not start in 10 s; see $DIR/"; exit 1; }
    sleep 0.1
done

"$B/sim" platform --broker "tcp://127.0.0.1:$BROKER_PORT" --topic 'iot/#' --pretty &
PIDS="$PIDS $!"
if [ "$BROKER_PORT" = 18830 ] && [ "$MODBUS_PORT" = 15020 ]; then
    rm -rf "$B/demo-data"
    "$B/gateway" --demo 2>"$DIR/gateway.log" &
else
    rm -rf "$DIR/data"
    "$B/gateway" --print-default-config |
        sed -e "s/127\.0\.0\.1:18830/127.0.0.1:$BROKER_PORT/" \
            -e "s/127\.0\.0\.1:15020/127.0.0.1:$MODBUS_PORT/" \
            -e "s/127\.0\.0\.1:15021/127.0.0.1:$((MODBUS_PORT + 1))/" \
            -e "s/127\.0\.0\.1:15022/127.0.0.1:$((MODBUS_PORT + 2))/" \
            -e "s/^  id: gw-demo$/  id: gw-demo-$BROKER_PORT/" \
            -e "s|^  data_dir: .*|  data_dir: $DIR/data|" >"$DIR/gateway.yaml"
    echo "demo: broker on $BROKER_PORT, sensors on $MODBUS_PORT..$((MODBUS_PORT + 2)); gateway config $DIR/gateway.yaml"
    "$B/gateway" -c "$DIR/gateway.yaml" 2>"$DIR/gateway.log" &
fi
PIDS="$PIDS $!"
if [ "$SECONDS_LEFT" -gt 0 ]; then
    echo "demo running for $SECONDS_LEFT s: platform view below, gateway log in $DIR/gateway.log."
    sleep "$SECONDS_LEFT"
    exit 0
fi
echo "demo running: platform view below, gateway log in $DIR/gateway.log. Ctrl-C stops it."
wait
