#!/bin/sh
# Generates a Modbus benchmark set: N simulated devices with 16 holding
# registers each, the sim scenarios serving them and a gateway config polling
# them every INTERVAL.
#
#   bench/gen_devices.sh N OUTDIR [BROKER_PORT=28999] [INTERVAL=1s] [DEADBAND=none]
#
# Devices are spread over loopback addresses so they fit a small port range:
# device i listens on 127.0.0.(2 + i / PER_HOST) port BASE_PORT + i % PER_HOST
# (env BASE_PORT=28000, PER_HOST=1000). Scenarios hold at most SIM_MAX devices
# each (env, default 5000: a listener and a connection per device must fit the
# sim's open-file limit). Writes OUTDIR/profiles/bench16.yaml,
# OUTDIR/sim-K.yaml, OUTDIR/gateway.yaml and OUTDIR/ranges (for floor_poller).
# DEADBAND (e.g. 0.5) gives every point a deadband and max_silence 10m, so an
# unchanged value is not reported again (report-by-exception). POINTS=4 (env,
# default 16) decodes 4 metrics at registers 0, 5, 10, 15: still one 16-register
# read per poll (the profile's max_gap bridges the holes).
set -eu
N=${1:?usage: gen_devices.sh N OUTDIR [BROKER_PORT] [INTERVAL] [DEADBAND]}
OUT=${2:?usage: gen_devices.sh N OUTDIR [BROKER_PORT] [INTERVAL] [DEADBAND]}
BROKER_PORT=${3:-28999}
INTERVAL=${4:-1s}
DEADBAND=${5:-none}
BASE_PORT=${BASE_PORT:-28000}
PER_HOST=${PER_HOST:-1000}
SIM_MAX=${SIM_MAX:-5000}
TIMEOUT=${TIMEOUT:-500ms}
POINTS=${POINTS:-16}
SILENT=${SILENT:-0} # extra devices that never answer (127.0.0.250, sim fault "silent")

mkdir -p "$OUT/profiles" "$OUT/data"
rm -f "$OUT"/sim-*.yaml

awk -v db="$DEADBAND" -v np="$POINTS" 'BEGIN {
    print "name: bench16"
    print "device_type: bench"
    print "description: \"16 holding registers read with one FC 03\""
    print "points:"
    step = np >= 16 ? 1 : int(15 / (np - 1))
    for (i = 0; i < np; i++) {
        printf "  - {name: r%d, kind: holding, address: %d, type: uint16, scale: 0.1, unit: m", i, i * step
        if (db != "none")
            printf ", deadband: %s, max_silence: 10m", db
        print "}"
    }
}' > "$OUT/profiles/bench16.yaml"

# Scenarios: one group per loopback address, SIM_MAX devices per file.
awk -v n="$N" -v per="$PER_HOST" -v base="$BASE_PORT" -v simmax="$SIM_MAX" -v out="$OUT" 'BEGIN {
    file = ""; k = 0; ranges = ""
    for (start = 0; start < n; start += per) {
        cnt = (n - start < per) ? n - start : per
        if (file == "" || infile + cnt > simmax) {
            if (file != "") close(file)
            k++; infile = 0
            file = out "/sim-" k ".yaml"
            print "name: bench part " k > file
            print "devices:" > file
        }
        host = "127.0.0." (2 + int(start / per))
        print "  - id: b" start "-{n}" > file
        print "    first: 0" > file
        print "    count: " cnt > file
        print "    host: " host > file
        print "    port: " base > file
        print "    registers:" > file
        for (r = 0; r < 16; r++)
            print "      - {kind: holding, addr: " r ", type: uint16, curve: {type: random_walk, start: 500, step: 3, min: 0, max: 1000, every: 5s, seed: " r + 1 "}}" > file
        infile += cnt
        ranges = ranges (ranges == "" ? "" : ",") host ":" base ":" cnt
    }
    print ranges > (out "/ranges")
}'
if [ "$SILENT" -gt 0 ]; then
    cat > "$OUT/sim-silent.yaml" <<EOF
name: bench silent devices
devices:
  - id: silent-{n}
    first: 0
    count: $SILENT
    host: 127.0.0.250
    port: $BASE_PORT
    registers:
      - {kind: holding, addr: 0, type: uint16, value: 1}
    faults:
      - {type: silent}
EOF
fi

{
    cat <<EOF
gateway:
  id: gw-bench
  data_dir: $OUT/data
  log_level: info
  shutdown_drain: 1s
  modbus_stats: $OUT/mbstats.json
store:
  commit_window: 5ms
uplink:
  uri: tcp://127.0.0.1:$BROKER_PORT
  topic_prefix: bench
  batch: 500
  max_inflight: 64
  max_message_bytes: 1MiB
profile_dirs: [$OUT/profiles]
devices:
EOF
    awk -v n="$N" -v per="$PER_HOST" -v base="$BASE_PORT" -v iv="$INTERVAL" -v to="$TIMEOUT" 'BEGIN {
        for (i = 0; i < n; i++) {
            start = int(i / per) * per
            printf "  - {id: b%d-%d, profile: bench16, connect: \"tcp://127.0.0.%d:%d\", interval: %s, timeout: %s, retries: 0}\n", start, i - start, 2 + int(i / per), base + i % per, iv, to
        }
    }'
    awk -v n="$SILENT" -v base="$BASE_PORT" -v iv="$INTERVAL" -v to="$TIMEOUT" 'BEGIN {
        for (i = 0; i < n; i++)
            printf "  - {id: silent-%d, profile: bench16, connect: \"tcp://127.0.0.250:%d\", interval: %s, timeout: %s, retries: 1}\n", i, base + i, iv, to
    }'
} > "$OUT/gateway.yaml"
echo "generated $N devices in $OUT ($(ls "$OUT"/sim-*.yaml | wc -l) sim scenario files)"
