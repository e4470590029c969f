package network

import (
	"errors"
	"testing"
)

func TestRacedOnSharedChain(t *testing.T) {
	for msg, want := range map[string]bool{
		// nf_tables iptables, as the chaos test hit it on a fresh host.
		`plugin type="portmap" failed (add): failed to create top-level DNAT chain: running [/usr/sbin/iptables -t nat -N CNI-HOSTPORT-DNAT --wait]: exit status 4: iptables v1.8.9 (nf_tables):  CHAIN_USER_ADD failed (File exists): chain CNI-HOSTPORT-DNAT`: true,
		// legacy iptables.
		`running [/usr/sbin/iptables -t nat -N CNI-HOSTPORT-SETMARK --wait]: exit status 1: iptables: Chain already exists.`:             true,
		`plugin type="bridge" failed (add): failed to allocate for range 0: no IP addresses available in range set`:                      false,
		`plugin type="portmap" failed (add): exit status 4: iptables v1.8.9 (nf_tables): RULE_APPEND failed (No such file or directory)`: false,
	} {
		if got := racedOnSharedChain(errors.New(msg)); got != want {
			t.Errorf("racedOnSharedChain(%q) = %v, want %v", msg, got, want)
		}
	}
}
