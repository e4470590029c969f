#!/bin/sh
# Builds the Debian package from bin/ (make build; $BERTH_BIN_DIR when set)
# into OUTDIR:
#   hack/build-deb.sh OUTDIR
# berth_<version>_<arch>.deb: /usr/bin/berth, berth-monitor and berth-pause, the
# systemd unit, /etc/berth/config.toml as a conffile; it depends on an OCI
# runtime, the CNI plugins and iptables, and enables and starts berth where
# systemd runs. Prints the package's path.
set -eu
cd "$(dirname "$0")/.."
out=$1
ver=$("${BERTH_BIN_DIR:-bin}/berth" version | sed 's/^berth v//')
# Debian orders "~" before anything: 0.2.0~dev+abc sorts before 0.2.0.
debver=$(echo "$ver" | sed 's/-/~/')
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
hack/install.sh "$stage" /usr/bin /etc /lib/systemd/system >/dev/null
install -d -m 0755 "$stage/DEBIAN" "$stage/usr/share/doc/berth"
install -m 0644 README.md "$stage/usr/share/doc/berth/README.md"
install -m 0644 docs/operations.md "$stage/usr/share/doc/berth/operations.md"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: berth
Version: $debver
Architecture: $arch
Maintainer: berth developers <berth@berth-cri.invalid>
Depends: libc6 (>= 2.34), runc (>= 1.1) | crun, containernetworking-plugins, iptables
Suggests: criu
Section: admin
Priority: optional
Homepage: https://github.com/berth-cri/berth
Description: Kubernetes container runtime (CRI)
 berth serves the Kubernetes CRI on /run/berth/berth.sock for kubelet and
 crictl: images, pod sandboxes, containers under a per-pod monitor that keeps
 them running across daemon restarts, streaming, stats, metrics and traces.
CONTROL
echo /etc/berth/config.toml > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = configure ] && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable berth.service >/dev/null
	# A restart leaves running containers alone (KillMode=process).
	systemctl restart berth.service
fi
SCRIPT
cat > "$stage/DEBIAN/prerm" <<'SCRIPT'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
	systemctl stop berth.service || true
	systemctl disable berth.service >/dev/null || true
fi
SCRIPT
cat > "$stage/DEBIAN/postrm" <<'SCRIPT'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
SCRIPT
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
mkdir -p "$out"
deb="$out/berth_${debver}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
