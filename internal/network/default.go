package network

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// DefaultFile is the name berth gives the network it writes.
const DefaultFile = "10-berth.conflist"

// DefaultBridge is the default network's bridge interface.
const DefaultBridge = "berth0"

// DefaultSubnet is the default network's pod subnet when kubelet gives no
// pod CIDR.
const DefaultSubnet = "10.88.0.0/16"

// WriteDefault writes berth's default network into confDir — a bridge with
// host-local IPAM over podCIDRs (comma-separated, IPv4 and/or IPv6; empty
// for DefaultSubnet), portmap for host ports, and loopback — unless the
// directory already holds a network config. It reports whether it wrote.
func WriteDefault(confDir, podCIDRs string) (bool, error) {
	existing, _ := filepath.Glob(filepath.Join(confDir, "*.conf*"))
	jsons, _ := filepath.Glob(filepath.Join(confDir, "*.json"))
	for _, f := range append(existing, jsons...) {
		if filepath.Base(f) != DefaultFile {
			return false, nil
		}
	}
	b, err := defaultConflist(podCIDRs)
	if err != nil {
		return false, err
	}
	path := filepath.Join(confDir, DefaultFile)
	if old, err := os.ReadFile(path); err == nil && string(old) == string(b) {
		return false, nil
	}
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		return false, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

func defaultConflist(podCIDRs string) ([]byte, error) {
	if strings.TrimSpace(podCIDRs) == "" {
		podCIDRs = DefaultSubnet
	}
	var ranges [][]map[string]string
	var routes []map[string]string
	for _, c := range strings.Split(podCIDRs, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("pod CIDR %q: %w", c, err)
		}
		ranges = append(ranges, []map[string]string{{"subnet": p.Masked().String()}})
		dst := "0.0.0.0/0"
		if p.Addr().Is6() {
			dst = "::/0"
		}
		routes = append(routes, map[string]string{"dst": dst})
	}
	list := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "berth",
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": DefaultBridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
				"ipam": map[string]any{"type": "host-local", "ranges": ranges, "routes": routes},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
			map[string]any{"type": "loopback"},
		},
	}
	return json.MarshalIndent(list, "", "  ")
}
