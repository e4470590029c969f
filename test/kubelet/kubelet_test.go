// Package kubelet runs a real kubelet (standalone: static pods, no API
// server) on berth and checks what a node does through kubelet's own API and
// through berth: pods start, probes act, containers restart per policy, logs
// read back, berth restarts under running pods, pods go away with their
// manifests. `make e2e-kubelet` runs it; it builds kubelet once into the e2e
// cache.
package kubelet

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

const (
	busybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	httpd   = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
)

// Static pods. terminationGracePeriodSeconds is short so that kills of a
// PID 1 that ignores SIGTERM end in a second.
var manifests = map[string]string{
	// Two containers with HTTP and exec probes.
	"app": `apiVersion: v1
kind: Pod
metadata: {name: app, namespace: default}
spec:
  dnsPolicy: Default
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: ` + httpd + `
    imagePullPolicy: IfNotPresent
    readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 1}
    livenessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 1}
  - name: helper
    image: ` + busybox + `
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo helper started; touch /tmp/ready; exec sleep 100000']
    readinessProbe: {exec: {command: [cat, /tmp/ready]}, periodSeconds: 1, failureThreshold: 1}
    livenessProbe: {exec: {command: ['true']}, periodSeconds: 1}
`,
	// Exits 3 every time: restarted (restartPolicy Always).
	"crashy": `apiVersion: v1
kind: Pod
metadata: {name: crashy, namespace: default}
spec:
  dnsPolicy: Default
  terminationGracePeriodSeconds: 1
  restartPolicy: Always
  containers:
  - name: c
    image: ` + busybox + `
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo attempt; exit 3']
`,
	// Healthy for 3 s, then its liveness probe fails: killed and restarted.
	"unhealthy": `apiVersion: v1
kind: Pod
metadata: {name: unhealthy, namespace: default}
spec:
  dnsPolicy: Default
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: ` + busybox + `
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'touch /tmp/ok; sleep 3; rm /tmp/ok; exec sleep 100000']
    livenessProbe: {exec: {command: [cat, /tmp/ok]}, initialDelaySeconds: 1, periodSeconds: 1, failureThreshold: 1}
`,
	// Succeeds once: not restarted (restartPolicy OnFailure).
	"oneshot": `apiVersion: v1
kind: Pod
metadata: {name: oneshot, namespace: default}
spec:
  dnsPolicy: Default
  terminationGracePeriodSeconds: 1
  restartPolicy: OnFailure
  containers:
  - name: c
    image: ` + busybox + `
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo done']
`,
}

func TestKubeletRunsPodsOnBerth(t *testing.T) {
	n := startNode(t)
	written := time.Now()
	for _, name := range []string{"app", "crashy", "unhealthy", "oneshot"} {
		if err := n.kubelet.WriteManifest(name, manifests[name]); err != nil {
			t.Fatal(err)
		}
	}

	n.waitFor(t, "app Running", 2*time.Minute, func() (bool, string) {
		p, s := n.pod("app")
		return p.Status.Phase == "Running", s
	})
	t.Logf("app: manifest to Running in %s", time.Since(written).Round(time.Millisecond))
	n.waitFor(t, "app's containers ready (HTTP and exec readiness probes)", time.Minute, func() (bool, string) {
		p, s := n.pod("app")
		web, ok1 := p.Container("web")
		helper, ok2 := p.Container("helper")
		return ok1 && ok2 && web.Ready && helper.Ready, s
	})
	app, _ := n.pod("app")
	n.checkPodOnBerth(app, 2)

	t.Run("readiness follows its probe", func(t *testing.T) {
		n.run(t, "app", "helper", "rm", "/tmp/ready")
		n.waitFor(t, "helper not ready once /tmp/ready is gone", time.Minute, func() (bool, string) {
			p, s := n.pod("app")
			c, _ := p.Container("helper")
			return !c.Ready, s
		})
		n.run(t, "app", "helper", "touch", "/tmp/ready")
		n.waitFor(t, "helper ready again", time.Minute, func() (bool, string) {
			p, s := n.pod("app")
			c, _ := p.Container("helper")
			return c.Ready, s
		})
	})

	t.Run("container logs through kubelet", func(t *testing.T) {
		code, body, err := n.kubelet.Get(http.MethodGet, "/containerLogs/default/app-"+nodeName+"/helper")
		if err != nil || code != http.StatusOK || !strings.Contains(string(body), "helper started") {
			t.Errorf("/containerLogs: %d %q %v, want the container's output", code, body, err)
		}
	})

	t.Run("restartPolicy Always restarts an exiting container", func(t *testing.T) {
		n.waitFor(t, "crashy restarted", 2*time.Minute, func() (bool, string) {
			p, s := n.pod("crashy")
			c, _ := p.Container("c")
			return c.RestartCount >= 1 && c.LastState.Terminated != nil, s
		})
		p, _ := n.pod("crashy")
		c, _ := p.Container("c")
		if c.LastState.Terminated.ExitCode != 3 || c.LastState.Terminated.Reason != "Error" {
			t.Errorf("crashy's last termination %+v, want exit code 3, reason Error", *c.LastState.Terminated)
		}
		// berth has the attempts kubelet made, each with its own CRI log.
		attempts := n.containersOf(t, "crashy-"+nodeName)
		var seen []uint32
		for _, ctr := range attempts {
			seen = append(seen, ctr.GetMetadata().GetAttempt())
		}
		if !slices.Contains(seen, 1) {
			t.Errorf("crashy's containers on berth have attempts %v, want attempt 1 among them", seen)
		}
		logFile := filepath.Join(n.kubelet.PodLogs, "default_crashy-"+nodeName+"_"+p.Metadata.UID, "c", "1.log")
		if b, err := os.ReadFile(logFile); err != nil || !strings.Contains(string(b), "stdout F attempt") {
			t.Errorf("attempt 1's CRI log %s: %q, %v", logFile, b, err)
		}
	})

	t.Run("a failing liveness probe restarts its container", func(t *testing.T) {
		n.waitFor(t, "unhealthy restarted", 2*time.Minute, func() (bool, string) {
			p, s := n.pod("unhealthy")
			c, _ := p.Container("c")
			return c.RestartCount >= 1 && c.LastState.Terminated != nil, s
		})
		p, _ := n.pod("unhealthy")
		c, _ := p.Container("c")
		// sleep as PID 1 ignores SIGTERM: killed after the grace period.
		if c.LastState.Terminated.ExitCode != 137 {
			t.Errorf("unhealthy's last termination %+v, want exit code 137 (killed)", *c.LastState.Terminated)
		}
	})

	t.Run("restartPolicy OnFailure leaves a success alone", func(t *testing.T) {
		n.waitFor(t, "oneshot Succeeded", 2*time.Minute, func() (bool, string) {
			p, s := n.pod("oneshot")
			return p.Status.Phase == "Succeeded", s
		})
		p, _ := n.pod("oneshot")
		c, _ := p.Container("c")
		if c.RestartCount != 0 || c.State.Terminated == nil || c.State.Terminated.ExitCode != 0 || c.State.Terminated.Reason != "Completed" {
			b, _ := json.Marshal(c)
			t.Errorf("oneshot's container %s, want terminated Completed with exit code 0 and no restart", b)
		}
	})

	t.Run("kubelet uses the evented PLEG and streaming lists", func(t *testing.T) {
		st, err := n.cri.Status(t.Context(), &runtime.StatusRequest{Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		var events struct{ Subscribers int }
		if err := json.Unmarshal([]byte(st.Info["containerEvents"]), &events); err != nil || events.Subscribers < 1 {
			t.Errorf("GetContainerEvents subscribers %d (%v), want kubelet's", events.Subscribers, err)
		}
		log := n.berth.Log()
		for _, m := range []string{"StreamPodSandboxes", "StreamContainers"} {
			if !strings.Contains(log, "method="+m+" ") {
				t.Errorf("kubelet (CRIListStreaming) never called %s", m)
			}
		}
	})

	t.Run("berth restarted under running pods changes nothing", func(t *testing.T) {
		before := n.containersOf(t, "app-"+nodeName)
		if err := n.berth.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := n.berth.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		n.dial()
		// kubelet is back when it has relisted twice since the restart.
		// (Its Evented PLEG does not come back: kubelet retries the event
		// stream five times without a pause, gives up while berth is
		// down and relists from then on — the same with any runtime.)
		lists := func() int { return strings.Count(n.berth.Log(), "method=StreamPodSandboxes ") }
		start := lists()
		n.waitFor(t, "kubelet back on the restarted berth", 2*time.Minute, func() (bool, string) {
			return lists() >= start+2, fmt.Sprintf("%d relists", lists()-start)
		})
		n.waitFor(t, "app ready again", time.Minute, func() (bool, string) {
			p, s := n.pod("app")
			web, _ := p.Container("web")
			helper, _ := p.Container("helper")
			return web.Ready && helper.Ready, s
		})
		after := n.containersOf(t, "app-"+nodeName)
		if !sameContainers(before, after) {
			t.Errorf("app's containers changed across the berth restart:\nbefore %v\nafter  %v", ids(before), ids(after))
		}
		p, s := n.pod("app")
		for _, name := range []string{"web", "helper"} {
			if c, _ := p.Container(name); c.RestartCount != 0 || !c.Ready {
				t.Errorf("after the berth restart: %s", s)
			}
		}
	})

	t.Run("removing the manifests removes the pods", func(t *testing.T) {
		for name := range manifests {
			if err := n.kubelet.RemoveManifest(name); err != nil {
				t.Fatal(err)
			}
		}
		n.waitFor(t, "kubelet drops the pods", time.Minute, func() (bool, string) {
			pods, err := n.kubelet.Pods()
			if err != nil {
				return false, err.Error()
			}
			return len(pods) == 0, fmt.Sprintf("%d pods", len(pods))
		})
		// kubelet stops them at once and its container GC (every minute)
		// removes them.
		n.waitFor(t, "berth has no pods left", 3*time.Minute, func() (bool, string) {
			list, err := n.cri.ListPodSandbox(t.Context(), &runtime.ListPodSandboxRequest{})
			if err != nil {
				return false, err.Error()
			}
			ready := 0
			for _, sb := range list.Items {
				if sb.State == runtime.PodSandboxState_SANDBOX_READY {
					ready++
				}
			}
			return len(list.Items) == 0, fmt.Sprintf("%d pods (%d ready)", len(list.Items), ready)
		})
		// startNode's cleanup checks no mount, monitor or directory is left.
	})

	t.Run("a kubelet-driven lifecycle logs no warning on berth", func(t *testing.T) {
		for _, line := range strings.Split(n.berth.Log(), "\n") {
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				t.Errorf("berth: %s", line)
			}
		}
	})
}

// checkPodOnBerth: berth runs the pod kubelet reports, with want running
// containers carrying kubelet's labels.
func (n *node) checkPodOnBerth(p e2eenv.KubeletPod, want int) {
	n.t.Helper()
	ctrs := n.containersOf(n.t, p.Metadata.Name)
	running := 0
	for _, c := range ctrs {
		if c.State == runtime.ContainerState_CONTAINER_RUNNING {
			running++
		}
		if c.Labels["io.kubernetes.pod.uid"] != p.Metadata.UID {
			n.t.Errorf("container %s labels %v, want the pod's uid %s", c.Id, c.Labels, p.Metadata.UID)
		}
	}
	if running != want {
		n.t.Errorf("pod %s: %d containers running on berth, want %d", p.Metadata.Name, running, want)
	}
}

// containersOf lists berth's containers of the pod kubelet calls podName.
func (n *node) containersOf(t *testing.T, podName string) []*runtime.Container {
	t.Helper()
	resp, err := n.cri.ListContainers(t.Context(), &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{
		LabelSelector: map[string]string{"io.kubernetes.pod.name": podName},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Containers
}

// run execs cmd in a container through kubelet's /run (ExecSync on berth).
func (n *node) run(t *testing.T, pod, ctr string, cmd ...string) {
	t.Helper()
	q := url.Values{}
	q.Set("cmd", strings.Join(cmd, " "))
	code, body, err := n.kubelet.Get(http.MethodPost, "/run/default/"+pod+"-"+nodeName+"/"+ctr+"?"+q.Encode())
	if err != nil || code != http.StatusOK {
		t.Fatalf("kubelet /run %v: %d %s %v", cmd, code, body, err)
	}
}

func ids(cs []*runtime.Container) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Id[:12]+"="+c.State.String())
	}
	slices.Sort(out)
	return out
}

func sameContainers(a, b []*runtime.Container) bool { return slices.Equal(ids(a), ids(b)) }
