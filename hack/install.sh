#!/bin/sh
# Installs berth from bin/ (make build; $BERTH_BIN_DIR when set) under DESTDIR:
#   hack/install.sh DESTDIR BINDIR SYSCONFDIR UNITDIR
# the daemon, its monitor and the monitor's PID namespace init side by side
# in BINDIR (each finds the next beside itself), SYSCONFDIR/berth/config.toml with every default
# (`berth config default`) unless one is there, and UNITDIR/berth.service.
# `make install` and `make deb` both use it.
set -eu
cd "$(dirname "$0")/.."
destdir=$1 bindir=$2 sysconfdir=$3 unitdir=$4
bin=${BERTH_BIN_DIR:-bin}
install -D -m 0755 "$bin/berth" "$destdir$bindir/berth"
install -D -m 0755 "$bin/berth-monitor" "$destdir$bindir/berth-monitor"
install -D -m 0755 "$bin/berth-pause" "$destdir$bindir/berth-pause"
config="$destdir$sysconfdir/berth/config.toml"
if [ ! -e "$config" ]; then
	install -d -m 0755 "$(dirname "$config")"
	"$bin/berth" config default > "$config.tmp"
	chmod 0644 "$config.tmp"
	mv "$config.tmp" "$config"
else
	echo "install: keeping $config"
fi
install -d -m 0755 "$destdir$unitdir"
sed "s|@BINDIR@|$bindir|g" packaging/berth.service.in > "$destdir$unitdir/berth.service"
chmod 0644 "$destdir$unitdir/berth.service"
if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
fi
