#!/bin/sh
# make deb: a Debian package built with dpkg-deb from the built binaries
# (scripts/install.sh into a staging root), dependencies computed by
# dpkg-shlibdeps, the default config as a conffile, and maintainer scripts
# from packaging/. Prints the path of the .deb. OUT defaults to $BUILD/deb.
set -eu
B=${BUILD:-build}
OUT=${OUT:-$B/deb}
V=$("$B/gateway" --version | awk '{print $2}')
ARCH=$(dpkg --print-architecture)
ST="$OUT/stage"
rm -rf "$ST"
mkdir -p "$ST"
BUILD=$B DESTDIR="$ST" PREFIX=/usr SYSCONFDIR=/etc UNITDIR=/lib/systemd/system \
    scripts/install.sh >/dev/null
strip --strip-unneeded "$ST/usr/bin/citygw" "$ST/usr/bin/citygw-sim"
# dpkg-shlibdeps wants a debian/control beside it; a minimal one in a scratch folder.
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
mkdir -p "$T/debian"
printf 'Source: citygw\n\nPackage: citygw\nArchitecture: any\n' > "$T/debian/control"
ABS=$(cd "$ST" && pwd)
DEPS=$(cd "$T" && dpkg-shlibdeps -O "$ABS/usr/bin/citygw" "$ABS/usr/bin/citygw-sim" 2>/dev/null |
       sed -n 's/^shlibs:Depends=//p')
mkdir -p "$ST/DEBIAN"
cat > "$ST/DEBIAN/control" <<CTRL
Package: citygw
Version: $V
Architecture: $ARCH
Maintainer: City sensing gateway maintainers <gateway@localhost>
Installed-Size: $(du -sk "$ST" | cut -f1)
Depends: $DEPS, adduser
Section: net
Priority: optional
Homepage: https://localhost/citygw
Description: city sensing gateway (Modbus, SL651, HJ 212, CoAP, MQTT to an IoT platform)
 Reads waterlogging, rain, level, environment and smoke sensors, normalizes
 them, runs local alarm rules, keeps everything in a durable SQLite outbox
 and forwards it to the city platform over MQTT. Runs as a systemd service
 (citygw.service) with a local metrics, health and status page endpoint.
CTRL
echo /etc/citygw/citygw.yaml > "$ST/DEBIAN/conffiles"
install -m 0755 packaging/postinst packaging/prerm packaging/postrm "$ST/DEBIAN/"
DEB="$OUT/citygw_${V}_${ARCH}.deb"
dpkg-deb --root-owner-group -Zxz --build "$ST" "$DEB" >/dev/null
echo "$DEB"
