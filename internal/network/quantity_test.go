package network

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

// berth reads bandwidth quantities itself; they must mean what they mean
// to Kubernetes (apimachinery, here only in the test).
func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"10M", "1Mi", "1.5Gi", "0.5e04", "1e+15", "5e-1", "+3k", "-2", ".5k", "1.", "2E", "1Ei",
		"999m", "1000001u", "12n", "7P", "1.0000001k", "3e", "e3", "1..2", "k", "", "1 k", "0x10", "1/2", "1e1e1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if checkQuantitySize(s) != nil {
			return
		}
		// What matters is the rate a pod gets: accepted within
		// Kubernetes' bounds with the same value, or refused by both.
		got, err := parseQuantity(s)
		gotOK := err == nil && got.IsInt64() && got.Int64() >= 1000 && got.Int64() <= 1e15
		want, wantErr := resource.ParseQuantity(s)
		wantOK := wantErr == nil && want.Value() >= 1000 && want.Value() <= 1e15
		if gotOK != wantOK || gotOK && got.Int64() != want.Value() {
			t.Fatalf("%q: berth %v (%v), apimachinery %v (%v)", s, got, err, want.Value(), wantErr)
		}
	})
}
