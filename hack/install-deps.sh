#!/usr/bin/env bash
# Installs what berth needs to build, run and test on Debian 12, as root.
# Idempotent: it only touches apt when a package is missing.
set -euo pipefail

# runc, crun: the OCI runtimes of the default RuntimeClass handlers.
# containernetworking-plugins: CNI plugins in /usr/lib/cni. iptables: the
# portmap plugin. gcc/libc6-dev: cgo for `go test
# -race`. dpkg-dev is not needed: the e2e images use `apt-get download` and
# dpkg-deb, both part of apt/dpkg.
# libseccomp-dev, pkg-config: building the runc-upstream handler's runc.
# systemd: systemd-analyze, which checks berth's unit (the install tests);
# installing the package does not make it PID 1.
packages=(runc crun containernetworking-plugins iptables iproute2 util-linux gcc libc6-dev make git ca-certificates libseccomp-dev pkg-config systemd)

if [[ $(id -u) -ne 0 ]]; then
	echo "install-deps: run as root (berth manages namespaces, mounts and cgroups)" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} > 0)); then
	echo "install-deps: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# crun refuses a cgroup v1 ("hybrid") host whose unified v2 hierarchy
# holds controllers ("cgroups in hybrid mode not supported"). There it holds
# only controllers with no v1 mount (hugetlb on these machines): give each an
# unused v1 mount, where runc wants it too (hugepage limits). Skipped on
# pure v2 hosts and when a controller is in use on v2.
unified=/sys/fs/cgroup/unified
if [[ -r $unified/cgroup.controllers && -z "$(cat "$unified/cgroup.subtree_control" 2>/dev/null)" ]]; then
	for c in $(cat "$unified/cgroup.controllers"); do
		if ! mountpoint -q "/sys/fs/cgroup/$c"; then
			mkdir -p "/sys/fs/cgroup/$c"
			mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" ||
				echo "install-deps: could not move the $c cgroup controller to v1; crun will refuse to run here" >&2
		fi
	done
fi

# Go: berth's go.mod needs Go >= 1.26.8. Debian 12's golang package is far
# older; the Go toolchain lives in /usr/local/go on these machines.
export PATH="/usr/local/go/bin:$PATH"
need="1.26.8"
if ! command -v go >/dev/null; then
	echo "install-deps: Go $need or newer is required (not found in PATH or /usr/local/go/bin)" >&2
	exit 1
fi
have=$(go env GOVERSION | sed 's/^go//')
if [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]]; then
	echo "install-deps: Go $have is older than $need; install Go $need into /usr/local/go" >&2
	exit 1
fi

# The runc-upstream handler: a current runc from its Go module (Debian's
# runc 1.1.5 cannot make idmapped mounts, which pods in user namespaces
# need). It builds in about 20 s from the module proxy, with seccomp.
upstream_runc_version=v1.5.3
upstream_runc=/usr/local/libexec/berth/runc
if ! "$upstream_runc" --version 2>/dev/null | grep -q "runc version ${upstream_runc_version#v}$"; then
	echo "install-deps: building runc $upstream_runc_version into $upstream_runc"
	mkdir -p "$(dirname "$upstream_runc")"
	CGO_ENABLED=1 GOBIN="$(dirname "$upstream_runc")" GOFLAGS=-buildvcs=false \
		go install -tags seccomp "github.com/opencontainers/runc@$upstream_runc_version"
fi

echo "install-deps: ok (go $have, $(runc --version | head -n1), $(crun --version | head -n1), $upstream_runc $("$upstream_runc" --version | head -n1))"
