#!/bin/sh
# make install: the built binaries, the shipped profiles and rule examples,
# the documented default config, the systemd unit and the docs, under
# DESTDIR + PREFIX. An existing config is never overwritten (the new one goes
# beside it as citygw.yaml.new). The system user is created by the .deb's
# postinst; from source, create it as docs/operations.md shows.
set -eu
B=${BUILD:-build}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
BINDIR=${BINDIR:-$PREFIX/bin}
DATADIR=${DATADIR:-$PREFIX/share/citygw}
DOCDIR=${DOCDIR:-$PREFIX/share/doc/citygw}
UNITDIR=${UNITDIR:-$PREFIX/lib/systemd/system}
[ -x "$B/gateway" ] && [ -x "$B/sim" ] || { echo "install: build first (make all)" >&2; exit 1; }
D=$DESTDIR
install -d "$D$BINDIR" "$D$DATADIR/profiles" "$D$DOCDIR/rules" "$D$UNITDIR" "$D$SYSCONFDIR/citygw"
install -m 0755 "$B/gateway" "$D$BINDIR/citygw"
install -m 0755 "$B/sim" "$D$BINDIR/citygw-sim"
install -m 0644 adapters/profiles/*.yaml "$D$DATADIR/profiles/"
install -m 0644 rules/examples/*.yaml rules/examples/README.md "$D$DOCDIR/rules/"
install -m 0644 README.md docs/*.md docs/uplink.schema.json "$D$DOCDIR/"
sed -e "s|@BINDIR@|$BINDIR|g" -e "s|@SYSCONFDIR@|$SYSCONFDIR|g" -e "s|@DOCDIR@|$DOCDIR|g" \
    packaging/citygw.service.in > "$D$UNITDIR/citygw.service"
chmod 0644 "$D$UNITDIR/citygw.service"
conf="$D$SYSCONFDIR/citygw/citygw.yaml"
if [ -e "$conf" ]; then
    install -m 0644 packaging/citygw.yaml "$conf.new"
    echo "install: kept $conf; the shipped default is $conf.new"
else
    install -m 0644 packaging/citygw.yaml "$conf"
fi
echo "installed under ${D:-/}: $BINDIR/citygw, $UNITDIR/citygw.service, $SYSCONFDIR/citygw/citygw.yaml"
