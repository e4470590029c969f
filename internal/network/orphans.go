package network

import (
	"context"
	"syscall"
	"time"

	"github.com/berth-cri/berth/internal/sysinfo"
)

// SettleOrphanPlugins waits for CNI plugin processes still working on pod
// id — run by a daemon that died mid-ADD or mid-DEL, they outlive it — and
// kills those still there when ctx ends. A DEL run while an ADD goes on
// would be undone by it: the ADD would reserve an IP after the DEL freed
// it. Plugins are found by the CNI_CONTAINERID their runtime gave them,
// which their own children (IPAM plugins, iptables) inherit.
func SettleOrphanPlugins(ctx context.Context, id string) {
	marker := "CNI_CONTAINERID=" + id
	for {
		pids := sysinfo.Processes("environ", marker)
		if len(pids) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			killAll(marker)
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// killAll kills the processes with marker in their environment until none
// is left: one may start a child between a scan and the kill.
func killAll(marker string) {
	for range 50 {
		pids := sysinfo.Processes("environ", marker)
		if len(pids) == 0 {
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond) // let the killed exit before the next scan
	}
}
