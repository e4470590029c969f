package stats

import (
	"errors"
	"testing"
	"time"
)

func TestWorkingSet(t *testing.T) {
	for _, tc := range []struct{ usage, inactive, want uint64 }{
		{100, 30, 70}, {100, 100, 0}, {100, 150, 0}, {0, 0, 0},
	} {
		if got := workingSet(tc.usage, tc.inactive); got != tc.want {
			t.Errorf("workingSet(%d, %d) = %d, want %d", tc.usage, tc.inactive, got, tc.want)
		}
	}
}

func TestReadMissingCgroup(t *testing.T) {
	r := NewReader()
	if _, err := r.Read("/berth-stats-test-no-such-cgroup-" + time.Now().Format("150405.000000")); !errors.Is(err, ErrNoCgroup) {
		t.Fatalf("err = %v, want ErrNoCgroup", err)
	}
}

func TestReadOwnCgroupRate(t *testing.T) {
	// The root cgroup always exists and always has usage.
	r := NewReader()
	first, err := r.Read("/")
	if err != nil {
		t.Fatal(err)
	}
	if first.CPUNanos == 0 || first.NanoCores != 0 {
		t.Fatalf("first sample = %+v, want CPU time and no rate yet", first)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		for i := 0; i < 1e6; i++ { // burn a little CPU so the counter moves
		}
		second, err := r.Read("/")
		if err != nil {
			t.Fatal(err)
		}
		if second.NanoCores > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CPU rate after 2s: %+v", second)
		}
	}
}

func TestParseNetDev(t *testing.T) {
	const dev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     140       2    0    0    0     0          0         0      140       2    0    0    0     0       0          0
  eth0:    1296      16    1    2    0     0          0         0      866       11    3    4    0     0       0          0
`
	got := parseNetDev([]byte(dev))
	want := []Interface{{Name: "eth0", RxBytes: 1296, RxPackets: 16, RxErrors: 1, RxDropped: 2, TxBytes: 866, TxPackets: 11, TxErrors: 3, TxDropped: 4}}
	if len(got) != 1 || got[0] != want[0] {
		t.Fatalf("parseNetDev = %+v, want %+v", got, want)
	}
}
