package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/metadata"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// reload runs `berth config reload` against d and returns its output and
// whether it succeeded.
func reload(t *testing.T, d *e2eenv.Daemon) (string, bool) {
	t.Helper()
	out, err := exec.Command(berthBinary, "config", "reload", "--state", d.State).CombinedOutput()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("berth config reload: %v", err)
		}
	}
	return string(out), err == nil
}

// editConfig rewrites d's config file with edit.
func editConfig(t *testing.T, d *e2eenv.Daemon, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(d.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(d.Config, []byte(edit(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
}

// versionLogged reports whether a Version call shows up in the daemon's log
// (reads log at Debug).
func versionLogged(t *testing.T, p *podEnv) bool {
	t.Helper()
	before := strings.Count(p.daemon.Log(), "method=Version ")
	if _, err := p.runtime.Version(t.Context(), &runtime.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
	return strings.Count(p.daemon.Log(), "method=Version ") > before
}

// TestConfigReload: `berth config reload` (SIGHUP) applies a changed log
// level, a new RuntimeClass handler and a metrics address to the running
// daemon, reports a restart-only key as such without applying it, refuses
// an invalid file as a whole (nothing changes, exit 1, the error said), and
// loses no call when reloads happen while pods churn.
func TestConfigReload(t *testing.T) {
	p := newPodEnv(t)
	d := p.daemon
	if !versionLogged(t, p) {
		t.Fatal("the e2e config logs at debug: a Version call should show")
	}

	editConfig(t, d, func(s string) string {
		s = strings.Replace(s, `level = "debug"`, `level = "info"`, 1)
		s = strings.Replace(s, fmt.Sprintf("root = %q", d.Root), fmt.Sprintf("root = %q", d.Root+"-elsewhere"), 1)
		return s + "\n[runtime.handlers.extra]\npath = \"crun\"\n\n[metrics]\naddress = \"127.0.0.1:0\"\n"
	})
	out, ok := reload(t, d)
	if !ok {
		t.Fatalf("reload refused: %s", out)
	}
	for _, want := range []string{"changed: log.level", "changed: runtime.handlers.extra.path", "changed: metrics.address", "needs a restart: root"} {
		if !strings.Contains(out, want) {
			t.Errorf("reload output lacks %q:\n%s", want, out)
		}
	}
	if versionLogged(t, p) {
		t.Error("log.level info after the reload, yet a Version call (Debug) was logged")
	}
	st, err := p.runtime.Status(t.Context(), &runtime.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range st.RuntimeHandlers {
		names = append(names, h.Name)
	}
	if !strings.Contains(strings.Join(names, " "), "extra") {
		t.Errorf("handlers after the reload: %v, want extra among them", names)
	}
	cfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "on-extra", Namespace: "e2e", Uid: "on-extra"}, LogDirectory: t.TempDir()}
	pod, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "extra"})
	if err != nil {
		t.Fatalf("a pod on the handler the reload added: %v", err)
	}
	p.start(t, p.createContainer(t, pod.PodSandboxId, cfg, "c", "sleep", "1000"))
	if s := scrapeMetrics(t, d); s["berth_cri_requests_total"] == nil {
		t.Error("metrics not served at the address the reload set")
	}
	fs, err := p.images.ImageFsInfo(t.Context(), &runtime.ImageFsInfoRequest{})
	if err != nil || !strings.HasPrefix(fs.ImageFilesystems[0].FsId.Mountpoint, d.Root+"/") {
		t.Errorf("root is restart-only, yet the image filesystem moved: %v %v", fs, err)
	}

	t.Log("an invalid file changes nothing")
	editConfig(t, d, func(s string) string {
		return strings.Replace(s, `level = "info"`, "level = \"debug\"\nformat = \"xml\"", 1)
	})
	out, ok = reload(t, d)
	if ok || !strings.Contains(out, "log.format") || !strings.Contains(out, "nothing changed") {
		t.Errorf("reload of an invalid file: ok=%v\n%s", ok, out)
	}
	if versionLogged(t, p) {
		t.Error("an invalid reload changed the log level")
	}

	t.Log("reloads while pods churn lose no call")
	editConfig(t, d, func(s string) string { return strings.Replace(s, "\nformat = \"xml\"", "", 1) })
	var calls, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("churn-%d-%d", w, i)
				cfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: name},
					Linux: &runtime.LinuxPodSandboxConfig{SecurityContext: &runtime.LinuxSandboxSecurityContext{
						NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}}}
				for _, call := range []func() error{
					func() error { _, err := p.runtime.Status(t.Context(), &runtime.StatusRequest{}); return err },
					func() error {
						resp, err := p.runtime.RunPodSandbox(t.Context(), &runtime.RunPodSandboxRequest{Config: cfg})
						if err == nil {
							_, err = p.runtime.RemovePodSandbox(t.Context(), &runtime.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId})
						}
						return err
					},
				} {
					calls.Add(1)
					if err := call(); err != nil {
						failed.Add(1)
						t.Errorf("call during reloads: %v", err)
					}
				}
			}
		})
	}
	for i := range 10 {
		level := []string{"info", "debug"}[i%2]
		editConfig(t, d, func(s string) string {
			s = strings.Replace(s, `level = "info"`, `level = "`+level+`"`, 1)
			return strings.Replace(s, `level = "debug"`, `level = "`+level+`"`, 1)
		})
		if out, ok := reload(t, d); !ok {
			t.Errorf("reload %d: %s", i, out)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d calls during 10 reloads, %d failed", calls.Load(), failed.Load())
	if calls.Load() == 0 {
		t.Error("no call ran during the reloads")
	}
}

// TestTracingTurnedOnByReload: tracing.endpoint set by a reload traces the
// calls that start afterwards, continuing the caller's trace.
func TestTracingTurnedOnByReload(t *testing.T) {
	recv, err := e2eenv.StartOTLPReceiver()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Close)
	p := newPodEnv(t)
	editConfig(t, p.daemon, func(s string) string {
		return s + fmt.Sprintf("\n[tracing]\nendpoint = %q\ninsecure = true\n", recv.Addr)
	})
	if out, ok := reload(t, p.daemon); !ok || !strings.Contains(out, "changed: tracing.endpoint") {
		t.Fatalf("reload: %s", out)
	}
	traceID := "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := metadata.AppendToOutgoingContext(t.Context(), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if _, err := p.runtime.Version(ctx, &runtime.VersionRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := p.daemon.Stop(); err != nil { // flushes the spans
		t.Fatal(err)
	}
	p.restart(t)
	found := false
	for _, s := range recv.Spans() {
		found = found || (fmt.Sprintf("%x", s.TraceId) == traceID && s.Name == "runtime.v1.RuntimeService/Version")
	}
	if !found {
		t.Errorf("no Version span in the caller's trace after tracing was turned on by a reload (%d spans)", len(recv.Spans()))
	}
}
