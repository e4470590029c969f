package benchenv

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// ScrapeEverySecond scrapes the daemon's /metrics once a second, as a
// Prometheus would, until stop is called; stop returns how many scrapes
// were made.
func ScrapeEverySecond(d *e2eenv.Daemon) (url string, stop func() int, err error) {
	url, ok := d.ServedURL("metrics")
	if !ok {
		return "", nil, fmt.Errorf("berth does not say where it serves metrics (metrics.address unset?)")
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	n := 0
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				resp, err := http.Get(url)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n++
			}
		}
	})
	return url, func() int { close(done); wg.Wait(); return n }, nil
}
