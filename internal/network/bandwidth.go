package network

import (
	"fmt"
	"math"
	"math/big"
	"strings"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
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
		q, err := parseQuantity(v)
		if err != nil {
			return nil, fmt.Errorf("annotation %s %q: %v: %w", a.key, v, err, errdefs.ErrInvalidArgument)
		}
		// The bounds Kubernetes has always put on these.
		if !q.IsInt64() || q.Int64() < 1000 || q.Int64() > 1e15 {
			return nil, fmt.Errorf("annotation %s %q: want between 1k and 1P bits per second: %w", a.key, v, errdefs.ErrInvalidArgument)
		}
		*a.rate, *a.burst = uint64(q.Int64()), math.MaxUint32
	}
	if bw == (gocni.BandWidth{}) {
		return nil, nil
	}
	return &bw, nil
}

// maxQuantityLen bounds a bandwidth quantity before it is parsed: the time
// and memory exact arithmetic takes grow with a quantity's digits and
// exponent (apimachinery's resource.ParseQuantity takes half a minute over
// "1e-99999999"), and a pod's annotations are anyone's to write. Within
// this length, no rate between 1k and 1P needs an exponent of more than two
// digits.
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

// quantitySuffixes are the multipliers of Kubernetes quantities' suffixes
// (binary SI, decimal SI); an "e" or "E" followed by digits is a decimal
// exponent instead.
var quantitySuffixes = map[string]*big.Rat{
	"": big.NewRat(1, 1), "n": big.NewRat(1, 1e9), "u": big.NewRat(1, 1e6), "m": big.NewRat(1, 1e3),
	"k": big.NewRat(1e3, 1), "M": big.NewRat(1e6, 1), "G": big.NewRat(1e9, 1), "T": big.NewRat(1e12, 1),
	"P": big.NewRat(1e15, 1), "E": big.NewRat(1e18, 1),
	"Ki": big.NewRat(1<<10, 1), "Mi": big.NewRat(1<<20, 1), "Gi": big.NewRat(1<<30, 1),
	"Ti": big.NewRat(1<<40, 1), "Pi": big.NewRat(1<<50, 1), "Ei": big.NewRat(1<<60, 1),
}

// parseQuantity reads a Kubernetes quantity ("10M", "1.5Gi", "5e3") with
// the grammar of apimachinery's resource.ParseQuantity, rounded up to a
// whole number as its Value() is. The bandwidth annotations are the only
// quantities berth reads, and apimachinery would bring in half a megabyte
// of serializers for them. The caller bounds the input's size.
func parseQuantity(s string) (*big.Int, error) {
	number := s
	if len(number) > 0 && (number[0] == '+' || number[0] == '-') {
		number = number[1:]
	}
	end, digits, dot := 0, 0, false
	for ; end < len(number); end++ {
		c := number[end]
		if c == '.' && !dot {
			dot = true
		} else if c >= '0' && c <= '9' {
			digits++
		} else {
			break
		}
	}
	if digits == 0 {
		return nil, fmt.Errorf("not a quantity: no digits")
	}
	suffix := number[end:]
	value, ok := new(big.Rat).SetString(s[:len(s)-len(suffix)])
	if !ok {
		return nil, fmt.Errorf("not a quantity: bad number")
	}
	if m, known := quantitySuffixes[suffix]; known {
		value.Mul(value, m)
	} else if len(suffix) > 1 && (suffix[0] == 'e' || suffix[0] == 'E') {
		exp, err := parseExponent(suffix[1:])
		if err != nil {
			return nil, fmt.Errorf("not a quantity: %w", err)
		}
		scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil))
		if exp < 0 {
			scale.Inv(scale)
		}
		value.Mul(value, scale)
	} else {
		return nil, fmt.Errorf("not a quantity: unknown suffix %q", suffix)
	}
	// Round up (towards +∞), as Quantity.Value does.
	q, r := new(big.Int).QuoRem(value.Num(), value.Denom(), new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	return q, nil
}

// parseExponent reads a quantity's signed decimal exponent.
func parseExponent(s string) (int, error) {
	sign := 1
	if s != "" && (s[0] == '+' || s[0] == '-') {
		if s[0] == '-' {
			sign = -1
		}
		s = s[1:]
	}
	if s == "" || len(s) > 3 {
		return 0, fmt.Errorf("bad exponent")
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad exponent")
		}
		n = n*10 + int(c-'0')
	}
	return sign * n, nil
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
