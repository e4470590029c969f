package e2e

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// scrape is one parse of berth's /metrics.
type scrape map[string]*dto.MetricFamily

// value is the value of the series name{labels} (counter, gauge, or a
// histogram's count), and whether it is there.
func (s scrape) value(name string, labels map[string]string) (float64, bool) {
	mf, ok := s[name]
	if !ok {
		return 0, false
	}
	for _, m := range mf.Metric {
		match := true
		for k, v := range labels {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && lp.GetValue() == v {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func scrapeMetrics(t *testing.T, d *e2eenv.Daemon) scrape {
	t.Helper()
	url, ok := d.ServedURL("metrics")
	if !ok || !strings.HasSuffix(url, "/metrics") {
		t.Fatalf("the daemon did not log where it serves metrics: %q", url)
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return families
}

// TestMetrics: /metrics (metrics.address set) counts exactly what the test
// did — calls by method and code, each pod start phase once per pod or
// container, CNI ADD and DEL, pulls by outcome with the bytes fetched —
// and reports objects by state, monitors, and Go and process series.
func TestMetrics(t *testing.T) {
	p := newPodEnvOpts(t, e2eenv.DaemonOptions{ExtraConfig: "[metrics]\naddress = \"127.0.0.1:0\"\n"})
	// newPodEnvOpts pulled busybox once.
	if _, err := p.pull(t.Context(), "registry.k8s.io/no-such-image:1", nil); status.Code(err) != codes.NotFound {
		t.Fatalf("pull of a missing image: %v", err)
	}
	pod, podCfg, _ := p.runNetPod(t, "metrics", nil)
	ctr := p.createContainer(t, pod, podCfg, "c", "sleep", "1000")
	p.start(t, ctr)

	s := scrapeMetrics(t, p.daemon)
	for _, want := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"berth_cri_requests_total", map[string]string{"method": "RunPodSandbox", "code": "OK"}, 1},
		{"berth_cri_requests_total", map[string]string{"method": "PullImage", "code": "OK"}, 1},
		{"berth_cri_requests_total", map[string]string{"method": "PullImage", "code": "NotFound"}, 1},
		{"berth_cri_requests_total", map[string]string{"method": "StartContainer", "code": "OK"}, 1},
		{"berth_cri_request_duration_seconds", map[string]string{"method": "CreateContainer"}, 1},
		{"berth_pod_start_phase_duration_seconds", map[string]string{"phase": "namespaces"}, 1},
		{"berth_pod_start_phase_duration_seconds", map[string]string{"phase": "cni_add"}, 1},
		{"berth_pod_start_phase_duration_seconds", map[string]string{"phase": "monitor_launch"}, 1},
		{"berth_pod_start_phase_duration_seconds", map[string]string{"phase": "image"}, 1},
		{"berth_pod_start_phase_duration_seconds", map[string]string{"phase": "snapshot"}, 1},
		{"berth_pod_start_phase_duration_seconds", map[string]string{"phase": "spec"}, 1},
		{"berth_pod_start_phase_duration_seconds", map[string]string{"phase": "store"}, 2}, // the pod's and the container's record
		{"berth_pod_start_phase_duration_seconds", map[string]string{"phase": "runtime_start"}, 1},
		{"berth_cni_operation_duration_seconds", map[string]string{"operation": "add"}, 1},
		{"berth_image_pull_failures_total", map[string]string{"reason": "not_found"}, 1},
		{"berth_image_pull_duration_seconds", map[string]string{"result": "success"}, 1},
		{"berth_image_pull_duration_seconds", map[string]string{"result": "failure"}, 1},
		{"berth_image_pulls_in_progress", nil, 0},
		{"berth_containers", map[string]string{"state": "running"}, 1},
		{"berth_containers", map[string]string{"state": "exited"}, 0},
		{"berth_pod_sandboxes", map[string]string{"state": "ready"}, 1},
		{"berth_pod_monitors_running", nil, 1},
	} {
		if got, ok := s.value(want.name, want.labels); !ok || got != want.value {
			t.Errorf("%s%v = %v (present %v), want %v", want.name, want.labels, got, ok, want.value)
		}
	}
	if fetched, _ := s.value("berth_image_pull_bytes_total", map[string]string{"source": "fetched"}); fetched < 1<<20 {
		t.Errorf("pull bytes fetched %v, want busybox's image (over 1 MiB)", fetched)
	}
	// The stores: busybox's content and layers, the container's writable
	// layer, the databases; none of it unreferenced (an image, a container
	// hold it all).
	for _, store := range []string{"content", "snapshots", "database"} {
		if v, ok := s.value("berth_storage_bytes", map[string]string{"store": store}); !ok || v <= 0 {
			t.Errorf("berth_storage_bytes{store=%s} = %v (present %v), want > 0", store, v, ok)
		}
	}
	for _, store := range []string{"content", "snapshots"} {
		if v, ok := s.value("berth_storage_unreferenced_bytes", map[string]string{"store": store}); !ok || v != 0 {
			t.Errorf("berth_storage_unreferenced_bytes{store=%s} = %v (present %v), want 0: everything is held", store, v, ok)
		}
	}
	for _, name := range []string{"berth_recovery_duration_seconds", "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := s[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	// Bounded labels: no series names a container or pod.
	for name, mf := range s {
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if strings.Contains(lp.GetValue(), ctr) || strings.Contains(lp.GetValue(), pod) {
					t.Errorf("%s has a label naming an object: %s=%s", name, lp.GetName(), lp.GetValue())
				}
			}
		}
	}

	p.stopAndRemovePod(t, pod)
	s = scrapeMetrics(t, p.daemon)
	for _, want := range []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"berth_cni_operation_duration_seconds", map[string]string{"operation": "del"}, 1},
		{"berth_cni_operation_errors_total", map[string]string{"operation": "del"}, 0},
		{"berth_containers", map[string]string{"state": "running"}, 0},
		{"berth_pod_sandboxes", map[string]string{"state": "ready"}, 0},
		{"berth_pod_monitors_running", nil, 0},
		{"berth_cri_requests_total", map[string]string{"method": "RemovePodSandbox", "code": "OK"}, 1},
	} {
		if got, ok := s.value(want.name, want.labels); (!ok && want.value != 0) || got != want.value {
			t.Errorf("after removal: %s%v = %v (present %v), want %v", want.name, want.labels, got, ok, want.value)
		}
	}
}

// TestProfiles: debug.address serves Go's profiles on loopback, with the
// heap sampled while they are (berth does not sample otherwise).
func TestProfiles(t *testing.T) {
	p := newPodEnvOpts(t, e2eenv.DaemonOptions{ExtraConfig: "[debug]\naddress = \"127.0.0.1:0\"\n"})
	url, ok := p.daemon.ServedURL("profiles")
	if !ok || !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/debug/pprof/") {
		t.Fatalf("the daemon did not log a loopback profiles address: %q", url)
	}
	resp, err := http.Get(url + "heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("GET heap: %s %q %v", resp.Status, line, err)
	}
	// "heap profile: <in use>: <bytes> [<allocated>: <bytes>] @ heap/<rate>";
	// the pull made before allocated megabytes, one sample per 512 kB.
	var inUse, inUseBytes, allocs, allocBytes, rate int
	if _, err := fmt.Sscanf(line, "heap profile: %d: %d [%d: %d] @ heap/%d", &inUse, &inUseBytes, &allocs, &allocBytes, &rate); err != nil {
		t.Fatalf("heap profile header %q: %v", line, err)
	}
	if allocs == 0 || rate != 2*512*1024 {
		t.Errorf("heap profile %q: want samples of allocations since the start, at Go's default rate", line)
	}
}
