package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// phaseHistogram is the sum and count of berth's
// berth_pod_start_phase_duration_seconds histogram, per phase.
type phaseHistogram map[string]struct {
	sum   float64
	count int
}

// scrapePhases reads berth's start-phase histogram from its /metrics;
// an empty url means a runtime without it (nil, nil).
func scrapePhases(ctx context.Context, url string) (phaseHistogram, error) {
	if url == "" {
		return nil, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	const name = "berth_pod_start_phase_duration_seconds"
	h := make(phaseHistogram)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"_sum{") && !strings.HasPrefix(line, name+"_count{") {
			continue
		}
		_, rest, _ := strings.Cut(line, `phase="`)
		phase, rest, _ := strings.Cut(rest, `"`)
		v, err := strconv.ParseFloat(strings.TrimSpace(rest[strings.LastIndex(rest, " ")+1:]), 64)
		if err != nil {
			return nil, fmt.Errorf("scrape %s: %q: %w", url, line, err)
		}
		e := h[phase]
		if strings.HasPrefix(line, name+"_sum{") {
			e.sum = v
		} else {
			e.count = int(v)
		}
		h[phase] = e
	}
	return h, sc.Err()
}

// meanSince is each phase's mean duration over the observations made
// since earlier.
func (h phaseHistogram) meanSince(earlier phaseHistogram) map[string]time.Duration {
	means := make(map[string]time.Duration)
	for phase, now := range h {
		then := earlier[phase]
		if n := now.count - then.count; n > 0 {
			means[phase] = time.Duration((now.sum - then.sum) / float64(n) * float64(time.Second))
		}
	}
	return means
}

// freeLoopbackAddr is a loopback host:port nothing listens on now.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
