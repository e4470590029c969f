#!/usr/bin/env bash
# Puts the host back as a fresh machine is, as far as berth's tests are
# concerned, so that `make test` can be shown to pass on a first run: the
# CNI plugins' shared iptables chains (made on first use, never removed),
# the test bridges, host-local IP reservations, and the e2e cache (busybox
# package, crictl, critest). Nothing runs while it does: stop every berth
# daemon first. Needs root.
set -euo pipefail
# Zombies (state Z) are gone but for their exit status.
if pgrep -r R,S,D,T -x berth >/dev/null || pgrep -r R,S,D,T -f berth-monitor >/dev/null; then
	echo "fresh-host: berth or a berth monitor is running; stop them first" >&2
	exit 1
fi
for table in nat filter mangle; do
	# Rules that jump to a CNI chain, then the chains themselves.
	{ iptables-save -t "$table" | grep -E '^-A .* -j CNI-' || true; } | sed 's/^-A/-D/' | while read -r rule; do
		eval "iptables -t $table $rule" || true
	done
	iptables-save -t "$table" | sed -n 's/^:\(CNI-[^ ]*\) .*/\1/p' | while read -r chain; do
		iptables -t "$table" -F "$chain" || true
	done
	iptables-save -t "$table" | sed -n 's/^:\(CNI-[^ ]*\) .*/\1/p' | while read -r chain; do
		iptables -t "$table" -X "$chain" || true
	done
done
for link in berth-e2e0 berth0 cni0; do
	ip link del "$link" 2>/dev/null || true
done
rm -rf /var/lib/cni/networks/berth* /var/cache/berth-e2e
echo "fresh-host: CNI chains, bridges, IP reservations and the e2e cache removed"
