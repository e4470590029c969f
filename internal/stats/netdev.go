package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/berth-cri/berth/internal/netns"
)

// Interface is one network interface's counters.
type Interface struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// NetworkInterfaces reads the counters of every interface but lo in the
// network namespace at nsPath, from its /proc/net/dev.
func NetworkInterfaces(nsPath string) ([]Interface, error) {
	var b []byte
	err := netns.Do(nsPath, func() error {
		var err error
		// thread-self: this thread is the one in the namespace.
		b, err = os.ReadFile("/proc/thread-self/net/dev")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("network counters of %s: %w", nsPath, err)
	}
	return parseNetDev(b), nil
}

// parseNetDev parses /proc/net/dev: two header lines, then
// "name: rx bytes packets errs drop fifo frame compressed multicast tx
// bytes packets errs drop …".
func parseNetDev(b []byte) []Interface {
	var out []Interface
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "lo" || len(f) < 12 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
		out = append(out, Interface{
			Name:    name,
			RxBytes: n(0), RxPackets: n(1), RxErrors: n(2), RxDropped: n(3),
			TxBytes: n(8), TxPackets: n(9), TxErrors: n(10), TxDropped: n(11),
		})
	}
	return out
}
