package cri

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/monitor/api"
	"github.com/berth-cri/berth/internal/store"
)

// eventsOf reads n events from a GetContainerEvents stream.
func eventsOf(t *testing.T, stream runtime.RuntimeService_GetContainerEventsClient, n int) []*runtime.ContainerEventResponse {
	t.Helper()
	var out []*runtime.ContainerEventResponse
	for range n {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %d events: %v", len(out), err)
		}
		out = append(out, ev)
	}
	return out
}

func subscribe(t *testing.T, f *seamFixture) runtime.RuntimeService_GetContainerEventsClient {
	t.Helper()
	stream, err := f.runtime.GetContainerEvents(t.Context(), &runtime.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil { // registered
		t.Fatal(err)
	}
	return stream
}

// TestEventsFollowTheRecord: every recorded change of a pod or container
// is an event, in order, with the pod's status (metadata with its UID) and
// its containers' statuses as they are after the change.
func TestEventsFollowTheRecord(t *testing.T) {
	f := newSeamFixture(t)
	stream := subscribe(t, f)
	sb := f.addPod(t, true)
	c := f.addContainer(t, sb.ID, store.ContainerCreated)
	if _, err := f.store.Containers.Update(c.ID, func(c store.Container) (store.Container, error) {
		c.StartedAt, c.Pid = time.Now().UTC(), 42
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	f.svc.recordExit(c.ID, exitAt(time.Now()), "", "")
	f.svc.recordExit(c.ID, exitAt(time.Now()), "", "") // recorded once: no second event
	if err := f.store.Containers.Delete(c.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.markNotReady(sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Sandboxes.Delete(sb.ID); err != nil {
		t.Fatal(err)
	}
	type want struct {
		id    string
		typ   runtime.ContainerEventType
		state runtime.ContainerState // of c in the event's statuses; -1: c not listed
	}
	wants := []want{
		{sb.ID, runtime.ContainerEventType_CONTAINER_CREATED_EVENT, -1},
		{sb.ID, runtime.ContainerEventType_CONTAINER_STARTED_EVENT, -1},
		{c.ID, runtime.ContainerEventType_CONTAINER_CREATED_EVENT, runtime.ContainerState_CONTAINER_CREATED},
		{c.ID, runtime.ContainerEventType_CONTAINER_STARTED_EVENT, runtime.ContainerState_CONTAINER_RUNNING},
		{c.ID, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, runtime.ContainerState_CONTAINER_EXITED},
		{c.ID, runtime.ContainerEventType_CONTAINER_DELETED_EVENT, -1},
		{sb.ID, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT, -1},
		{sb.ID, runtime.ContainerEventType_CONTAINER_DELETED_EVENT, -1},
	}
	got := eventsOf(t, stream, len(wants))
	for i, w := range wants {
		ev := got[i]
		if ev.ContainerId != w.id || ev.ContainerEventType != w.typ {
			t.Fatalf("event %d: %s %v, want %s %v", i, ev.ContainerId[:8], ev.ContainerEventType, w.id[:8], w.typ)
		}
		if ev.PodSandboxStatus.GetMetadata().GetUid() != "u" || ev.CreatedAt == 0 {
			t.Errorf("event %d: pod status %v, created_at %d", i, ev.PodSandboxStatus, ev.CreatedAt)
		}
		i := slices.IndexFunc(ev.ContainersStatuses, func(st *runtime.ContainerStatus) bool { return st.Id == c.ID })
		switch {
		case w.state == -1 && i >= 0 && w.typ == runtime.ContainerEventType_CONTAINER_DELETED_EVENT:
			t.Errorf("event %d: deleted container still listed", i)
		case w.state >= 0 && (i < 0 || ev.ContainersStatuses[i].State != w.state):
			t.Errorf("event %d: container statuses %v, want it %v", i, ev.ContainersStatuses, w.state)
		}
	}
}

func exitAt(t time.Time) api.Exit { return api.Exit{Code: 0, FinishedAt: t.UTC()} }

// TestSlowEventSubscriberIsCutOff: a subscriber that falls eventBuffer
// events behind gets ResourceExhausted, is counted, and others go on.
func TestSlowEventSubscriberIsCutOff(t *testing.T) {
	var b eventBroker
	slow, fast := b.subscribe(), b.subscribe()
	for i := range eventBuffer + 10 {
		b.publish(&runtime.ContainerEventResponse{CreatedAt: int64(i)})
		// The fast one reads each event as it comes.
		if ev := <-fast.ch; ev.CreatedAt != int64(i) {
			t.Fatalf("fast subscriber got event %d, want %d", ev.CreatedAt, i)
		}
	}
	select {
	case <-slow.cut:
	default:
		t.Fatal("slow subscriber not cut off")
	}
	select {
	case <-fast.cut:
		t.Fatal("fast subscriber cut off")
	default:
	}
	if subs, cut := b.stats(); subs != 1 || cut != 1 {
		t.Fatalf("%d subscribers, %d cut off; want 1, 1", subs, cut)
	}
}

// TestEventStreamsEnd: the stream of a cut-off subscriber ends with
// ResourceExhausted and is counted in verbose Status; closing the broker
// ends streams with Unavailable.
func TestEventStreamsEnd(t *testing.T) {
	f := newSeamFixture(t)
	stream := subscribe(t, f)
	// Cut the subscriber off as publish does when it falls behind.
	f.svc.events.mu.Lock()
	for sub := range f.svc.events.subs {
		delete(f.svc.events.subs, sub)
		close(sub.cut)
		f.svc.events.cutOff++
	}
	f.svc.events.mu.Unlock()
	_, err := stream.Recv()
	wantCode(t, err, codes.ResourceExhausted)
	st, err := f.runtime.Status(t.Context(), &runtime.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Info["containerEvents"]; got != `{"cut_off":1,"subscribers":0}` {
		t.Errorf("verbose Status containerEvents = %s, want the cut-off subscriber counted", got)
	}

	stream = subscribe(t, f)
	f.svc.EndEventStreams()
	_, err = stream.Recv()
	wantCode(t, err, codes.Unavailable)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	late, err := f.runtime.GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err == nil {
		_, err = late.Recv()
	}
	wantCode(t, err, codes.Unavailable)
}

// TestRecoveryEventsReachTheFirstSubscriber: what recovery records (exits
// while the daemon was down) is kept for the first subscriber.
func TestRecoveryEventsReachTheFirstSubscriber(t *testing.T) {
	f := newSeamFixture(t)
	sb := f.addPod(t, true)
	c := f.addContainer(t, sb.ID, store.ContainerRunning)
	f.svc.events.keepBacklog(true)
	f.svc.recordExit(c.ID, exitAt(time.Now()), "", "")
	f.svc.events.keepBacklog(false)
	stream := subscribe(t, f)
	ev := eventsOf(t, stream, 1)[0]
	if ev.ContainerId != c.ID || ev.ContainerEventType != runtime.ContainerEventType_CONTAINER_STOPPED_EVENT {
		t.Fatalf("first event %s %v, want the recovered exit", ev.ContainerId, ev.ContainerEventType)
	}
}
