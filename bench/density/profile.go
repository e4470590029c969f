package main

import (
	"context"
	"time"

	"github.com/berth-cri/berth/bench/benchenv"
)

// phaseHistogram is berth's berth_pod_start_phase_duration_seconds
// histogram, per phase.
type phaseHistogram map[string]phaseTotal

// phaseTotal is one phase's observations: their sum (seconds) and count.
type phaseTotal struct {
	sum   float64
	count uint64
}

// scrapePhases reads berth's start-phase histogram from its /metrics;
// an empty url means a runtime without it (nil, nil).
func scrapePhases(ctx context.Context, url string) (phaseHistogram, error) {
	if url == "" {
		return nil, nil
	}
	families, err := benchenv.Scrape(ctx, url)
	if err != nil {
		return nil, err
	}
	h := make(phaseHistogram)
	for _, m := range families["berth_pod_start_phase_duration_seconds"].GetMetric() {
		if phase := benchenv.Label(m, "phase"); phase != "" {
			h[phase] = phaseTotal{m.GetHistogram().GetSampleSum(), m.GetHistogram().GetSampleCount()}
		}
	}
	return h, nil
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
