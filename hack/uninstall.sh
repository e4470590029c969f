#!/bin/sh
# Removes what hack/install.sh installed, except the config (as apt's
# remove keeps conffiles):
#   hack/uninstall.sh DESTDIR BINDIR UNITDIR
# Stop berth first (its pods' monitors and containers keep running).
set -eu
destdir=$1 bindir=$2 unitdir=$3
rm -f "$destdir$bindir/berth" "$destdir$bindir/berth-monitor" "$destdir$bindir/berth-pause" "$destdir$unitdir/berth.service"
if [ -z "$destdir" ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
fi
echo "uninstall: kept the config in /etc/berth"
