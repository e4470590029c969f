package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/layout"
)

// eventReader is one GetContainerEvents stream, read by one goroutine.
type eventReader struct {
	events chan *runtime.ContainerEventResponse
	err    chan error // the error that ended the stream
}

// eventStream subscribes to GetContainerEvents and waits until berth has
// registered the subscription (its headers), so nothing after is missed.
// cancel ends the subscription.
func (p *podEnv) eventStream(t *testing.T) (*eventReader, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := p.runtime.GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil {
		t.Fatal(err)
	}
	r := &eventReader{events: make(chan *runtime.ContainerEventResponse, 4096), err: make(chan error, 1)}
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				r.err <- err
				close(r.events)
				return
			}
			r.events <- ev
		}
	}()
	return r, cancel
}

// next is the next event about one of ids (others skipped), within a
// minute.
func (r *eventReader) next(t *testing.T, ids map[string]string) *runtime.ContainerEventResponse {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-r.events:
			if !ok {
				t.Fatalf("event stream ended: %v", <-r.err)
			}
			if _, mine := ids[ev.ContainerId]; mine {
				return ev
			}
		case <-timeout:
			t.Fatal("no event within a minute")
		}
	}
}

// eventName is "<name of the object> <CREATED|STARTED|STOPPED|DELETED>".
func eventName(ids map[string]string, ev *runtime.ContainerEventResponse) string {
	return ids[ev.ContainerId] + " " + strings.TrimPrefix(strings.TrimSuffix(ev.ContainerEventType.String(), "_EVENT"), "CONTAINER_")
}

// expect reads the events of want, in that order.
func (r *eventReader) expect(t *testing.T, ids map[string]string, want ...string) []*runtime.ContainerEventResponse {
	t.Helper()
	var out []*runtime.ContainerEventResponse
	for _, w := range want {
		ev := r.next(t, ids)
		if got := eventName(ids, ev); got != w {
			t.Fatalf("event %d: %s, want %s (of %v)", len(out), got, w, want)
		}
		out = append(out, ev)
	}
	return out
}

// TestContainerEvents: GetContainerEvents, as kubelet's Evented PLEG
// reads it, tells every change of a pod and its containers in order —
// the pod created and started, a container created, started and stopped
// by itself, one stopped by StopContainer, their removal, the pod's stop
// and removal — each with the pod's status (its UID) and its containers'
// statuses after the change. An exit while the daemon is down reaches the
// first subscriber after the restart.
func TestContainerEvents(t *testing.T) {
	p := newPodEnv(t)
	stream, cancel := p.eventStream(t)
	defer cancel()
	podID, podCfg := p.runPod(t, "events")
	quick := p.createContainer(t, podID, podCfg, "quick", "sh", "-c", "exit 3")
	long := p.createContainer(t, podID, podCfg, "long", "sleep", "1000")
	p.start(t, quick)
	p.start(t, long)
	ids := map[string]string{podID: "pod", quick: "quick", long: "long"}
	evs := stream.expect(t, ids, "pod CREATED", "pod STARTED", "quick CREATED", "long CREATED", "quick STARTED")
	for i, ev := range evs {
		if ev.PodSandboxStatus.GetMetadata().GetUid() != podCfg.Metadata.Uid || ev.CreatedAt == 0 {
			t.Errorf("event %d has pod status %v, created_at %d", i, ev.PodSandboxStatus, ev.CreatedAt)
		}
	}
	if n := len(evs[4].ContainersStatuses); n != 2 {
		t.Errorf("quick STARTED lists %d container statuses, want both", n)
	}
	// The order of the quick one's exit and the long one's start is the
	// host's; read them as they come.
	rest := map[string]*runtime.ContainerEventResponse{}
	for len(rest) < 2 {
		ev := stream.next(t, ids)
		rest[eventName(ids, ev)] = ev
	}
	stopped := rest["quick STOPPED"]
	if stopped == nil || rest["long STARTED"] == nil {
		t.Fatalf("after the starts: %v, want quick's stop and long's start", rest)
	}
	for _, st := range stopped.ContainersStatuses {
		if st.Id == quick && (st.State != runtime.ContainerState_CONTAINER_EXITED || st.ExitCode != 3) {
			t.Errorf("quick in its STOPPED event: %v exit %d", st.State, st.ExitCode)
		}
	}

	if _, err := p.runtime.StopContainer(t.Context(), &runtime.StopContainerRequest{ContainerId: long}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{quick, long} {
		if _, err := p.runtime.RemoveContainer(t.Context(), &runtime.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	}
	p.stopAndRemovePod(t, podID)
	stream.expect(t, ids, "long STOPPED", "quick DELETED", "long DELETED", "pod STOPPED", "pod DELETED")

	t.Log("an exit while the daemon is down reaches the first subscriber after the restart")
	podID, podCfg = p.runPod(t, "events-restart")
	sleeper := p.createContainer(t, podID, podCfg, "sleeper", "sleep", "1000")
	p.start(t, sleeper)
	cancel()
	p.daemon.Kill()
	pid := mainPidOf(t, p.daemon.State, sleeper)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The exit happens while the daemon is down: wait until the monitor
	// has recorded it (its exit record in the bundle) before the restart.
	exitRecord := layout.State(p.daemon.State).Container(sleeper).Exit()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(exitRecord); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the monitor recorded no exit within 30s")
		}
	}
	p.restart(t)
	stream, cancel = p.eventStream(t)
	defer cancel()
	ev := stream.expect(t, map[string]string{sleeper: "sleeper"}, "sleeper STOPPED")[0]
	for _, st := range ev.ContainersStatuses {
		if st.Id == sleeper && st.State != runtime.ContainerState_CONTAINER_EXITED {
			t.Errorf("sleeper in its STOPPED event: %v", st.State)
		}
	}
	p.stopAndRemovePod(t, podID)
}

// mainPidOf reads a running container's PID from its bundle's init.pid,
// for when the daemon is down.
func mainPidOf(t *testing.T, state, id string) int {
	t.Helper()
	var pid int
	b, err := os.ReadFile(layout.State(state).Container(id).InitPid())
	if err == nil {
		_, err = fmt.Sscan(string(b), &pid)
	}
	if err != nil || pid <= 0 {
		t.Fatalf("pid of %s: %v", id, err)
	}
	return pid
}
