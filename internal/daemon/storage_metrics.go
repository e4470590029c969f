package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/berth-cri/berth/internal/image"
)

var (
	storageDesc = prometheus.NewDesc("berth_storage_bytes",
		"Bytes the stores hold: image content, snapshots (image layers and container writable layers), databases.", []string{"store"}, nil)
	unreferencedDesc = prometheus.NewDesc("berth_storage_unreferenced_bytes",
		"Bytes of content and snapshots that no image, container or pull in progress holds: what garbage collection will free, or what leaked. Measured at most every 30 s.", []string{"store"}, nil)
)

// storageCollector reports the stores' sizes on each scrape.
type storageCollector struct {
	images *image.Service
	root   string
	logger *slog.Logger
}

func (storageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- storageDesc
	ch <- unreferencedDesc
}

func (c storageCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var db int64
	for _, f := range []string{"berth.db", "image-meta.db"} {
		if fi, err := os.Stat(filepath.Join(c.root, f)); err == nil {
			db += fi.Size()
		}
	}
	ch <- prometheus.MustNewConstMetric(storageDesc, prometheus.GaugeValue, float64(db), "database")
	st, err := c.images.Storage(ctx)
	if err != nil {
		c.logger.Warn("measure image stores for metrics", "error", err)
		return
	}
	ch <- prometheus.MustNewConstMetric(storageDesc, prometheus.GaugeValue, float64(st.ContentBytes), "content")
	ch <- prometheus.MustNewConstMetric(storageDesc, prometheus.GaugeValue, float64(st.SnapshotBytes), "snapshots")
	ch <- prometheus.MustNewConstMetric(unreferencedDesc, prometheus.GaugeValue, float64(st.UnreferencedContentBytes), "content")
	ch <- prometheus.MustNewConstMetric(unreferencedDesc, prometheus.GaugeValue, float64(st.UnreferencedSnapshotBytes), "snapshots")
}
