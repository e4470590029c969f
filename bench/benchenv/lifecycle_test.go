package benchenv

import (
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	samples := func(n int) []time.Duration {
		ds := make([]time.Duration, n)
		for i := range ds {
			ds[i] = time.Duration(n - i) // descending: Percentile must sort
		}
		return ds
	}
	for _, tc := range []struct {
		n, p int
		want time.Duration
	}{
		{0, 50, 0},
		{1, 99, 1},
		{40, 50, 20},
		{40, 99, 40},   // below 100 samples the 99th is the largest
		{100, 99, 99},  // the second largest of 100
		{200, 99, 198}, // the third largest of 200
		{200, 100, 200},
		{200, 0, 1},
	} {
		if got := Percentile(samples(tc.n), tc.p); got != tc.want {
			t.Errorf("Percentile(%d samples, %d) = %d, want %d", tc.n, tc.p, got, tc.want)
		}
	}
}
