package network

import (
	"fmt"
	"math"
	"strings"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The pod annotations kubelet uses for traffic shaping; a CNI config with
// the bandwidth plugin applies them.
const (
	IngressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	EgressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// Bandwidth reads a pod's bandwidth annotations (bits per second, as
// Kubernetes quantities such as "10M") into the bandwidth capability; nil
// when the pod has neither. The burst is left unlimited, as kubelet's
// kubenet and containerd do.
func Bandwidth(annotations map[string]string) (*gocni.BandWidth, error) {
	var bw gocni.BandWidth
	for _, a := range []struct {
		key         string
		rate, burst *uint64
	}{
		{IngressBandwidthAnnotation, &bw.IngressRate, &bw.IngressBurst},
		{EgressBandwidthAnnotation, &bw.EgressRate, &bw.EgressBurst},
	} {
		v, ok := annotations[a.key]
		if !ok {
			continue
		}
		if err := checkQuantitySize(v); err != nil {
			return nil, fmt.Errorf("annotation %s %q: %w", a.key, v, err)
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("annotation %s %q: %v: %w", a.key, v, err, errdefs.ErrInvalidArgument)
		}
		// The bounds Kubernetes has always put on these.
		if q.Value() < 1000 || q.Value() > 1e15 {
			return nil, fmt.Errorf("annotation %s %q: want between 1k and 1P bits per second: %w", a.key, v, errdefs.ErrInvalidArgument)
		}
		*a.rate, *a.burst = uint64(q.Value()), math.MaxUint32
	}
	if bw == (gocni.BandWidth{}) {
		return nil, nil
	}
	return &bw, nil
}

// maxQuantityLen bounds a bandwidth quantity before it is parsed: the time
// and memory resource.ParseQuantity takes grow steeply with a quantity's
// digits and exponent ("1e-99999999" takes it half a minute, "1e-999999999"
// tens of minutes and gigabytes), and a pod's annotations are anyone's to
// write. Within this length, no rate between 1k and 1P needs an exponent of
// more than two digits.
const maxQuantityLen = 32

func checkQuantitySize(v string) error {
	if len(v) > maxQuantityLen {
		return fmt.Errorf("longer than %d characters: %w", maxQuantityLen, errdefs.ErrInvalidArgument)
	}
	if i := strings.LastIndexAny(v, "eE"); i >= 0 && len(strings.TrimLeft(v[i+1:], "+-")) > 2 {
		return fmt.Errorf("an exponent of more than two digits: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}
