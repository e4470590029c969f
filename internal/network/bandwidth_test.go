package network

import (
	"math"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
)

func TestBandwidth(t *testing.T) {
	bw, err := Bandwidth(map[string]string{IngressBandwidthAnnotation: "10M", EgressBandwidthAnnotation: "1Mi", "other": "x"})
	if err != nil {
		t.Fatal(err)
	}
	want := gocni.BandWidth{IngressRate: 10_000_000, IngressBurst: math.MaxUint32, EgressRate: 1 << 20, EgressBurst: math.MaxUint32}
	if bw == nil || *bw != want {
		t.Errorf("Bandwidth = %+v, want %+v", bw, want)
	}
	if bw, err := Bandwidth(map[string]string{"other": "x"}); bw != nil || err != nil {
		t.Errorf("no annotations: %+v, %v", bw, err)
	}
	if bw, err := Bandwidth(map[string]string{IngressBandwidthAnnotation: "1e+15", EgressBandwidthAnnotation: "0.5e04"}); err != nil ||
		bw.IngressRate != 1e15 || bw.EgressRate != 5000 {
		t.Errorf("exponents: %+v, %v", bw, err)
	}
	// Refused before resource.ParseQuantity, which would take half a minute
	// over "1e-99999999"; a valid rate, padded past 32 characters, too.
	for _, bad := range []string{"fast", "10", "2E", "1e-99999999", "1e005", strings.Repeat("0", 31) + "1G"} {
		if _, err := Bandwidth(map[string]string{EgressBandwidthAnnotation: bad}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: %v, want InvalidArgument", bad, err)
		}
	}
}
