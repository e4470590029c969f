package metrics

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
)

func TestNilRecordsNothing(t *testing.T) {
	var m *Metrics
	m.Call("Version", codes.OK, time.Millisecond)
	m.Phase(PhaseSpec)()
	m.CNI("add", time.Millisecond, nil)
	m.PullStarted()(1, 2, "")
	m.OOMKill()
	m.EventsSubscriberCutOff()
	m.Recovered(time.Second)
	if err := m.Register(); err != nil {
		t.Fatal(err)
	}
}

func TestSeries(t *testing.T) {
	m := New()
	m.Call("RunPodSandbox", codes.OK, time.Millisecond)
	m.Call("RunPodSandbox", codes.Internal, time.Millisecond)
	if got := testutil.ToFloat64(m.requests.WithLabelValues("RunPodSandbox", "Internal")); got != 1 {
		t.Errorf("requests{Internal} = %v", got)
	}
	done := m.PullStarted()
	if got := testutil.ToFloat64(m.pullsInProgress); got != 1 {
		t.Errorf("pulls in progress during a pull = %v", got)
	}
	done(100, 50, "not_found")
	if got := testutil.ToFloat64(m.pullsInProgress); got != 0 {
		t.Errorf("pulls in progress after = %v", got)
	}
	if got := testutil.ToFloat64(m.pullFailures.WithLabelValues("not_found")); got != 1 {
		t.Errorf("failures{not_found} = %v", got)
	}
	if got := testutil.ToFloat64(m.pullBytes.WithLabelValues("present")); got != 50 {
		t.Errorf("bytes{present} = %v", got)
	}
	m.CNI("del", time.Millisecond, errTest{})
	if got := testutil.ToFloat64(m.cniErrs.WithLabelValues("del")); got != 1 {
		t.Errorf("cni errors{del} = %v", got)
	}

	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`berth_cri_requests_total{code="OK",method="RunPodSandbox"} 1`, "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

type errTest struct{}

func (errTest) Error() string { return "test" }
