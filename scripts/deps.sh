#!/bin/sh
# Installs the Debian packages the build, the demo and the tests need, only when
# something is missing. As root it runs apt-get; otherwise it prints the exact
# line to run and fails.
set -eu
PKGS="build-essential pkg-config libuv1-dev libpaho-mqtt-dev libmodbus-dev libcoap3-dev libcoap3-bin \
libsqlite3-dev libyaml-dev libcjson-dev libcbor-dev libcmocka-dev libssl-dev openssl mosquitto mosquitto-clients nats-server socat \
sqlite3 clang-14 libclang-rt-14-dev libmicrohttpd-dev prometheus chromium dpkg-dev \
systemd adduser clang-format python3-jsonschema libmosquitto-dev"
missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages:$missing" >&2
    echo "run: sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
