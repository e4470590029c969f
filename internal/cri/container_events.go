package cri

import (
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/metadata"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/store"
)

// eventBuffer is how many events a GetContainerEvents subscriber may fall
// behind before it is cut off.
const eventBuffer = 1024

// GetContainerEvents streams CONTAINER_CREATED / STARTED / STOPPED /
// DELETED events of containers and pod sandboxes (the sandbox's ID in
// container_id, as containerd sends them) until the client goes, for
// kubelet's Evented PLEG. Every subscriber gets every event, in the order
// the changes were recorded; one that falls eventBuffer events behind is
// cut off with ResourceExhausted, so that kubelet relists rather than miss
// a change.
func (s *Service) GetContainerEvents(_ *runtime.GetEventsRequest, stream runtime.RuntimeService_GetContainerEventsServer) error {
	sub := s.events.subscribe()
	defer s.events.unsubscribe(sub)
	// Headers say the subscription is registered: a client that waits for
	// them (stream.Header) misses nothing recorded afterwards.
	if err := stream.SendHeader(metadata.MD{}); err != nil {
		return err
	}
	for {
		select {
		case ev := <-sub.ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-sub.cut:
			if s.events.isClosed() {
				return fmt.Errorf("berth is shutting down: %w", errdefs.ErrUnavailable)
			}
			_, cutOff := s.events.stats()
			s.metrics.EventsSubscriberCutOff()
			s.logger.Warn("container events subscriber fell behind and was cut off", "buffer", eventBuffer, "cut_off_so_far", cutOff)
			return fmt.Errorf("events subscriber fell %d events behind and was cut off; relist: %w", eventBuffer, errdefs.ErrResourceExhausted)
		case <-stream.Context().Done():
			return nil
		}
	}
}

// EndEventStreams ends every GetContainerEvents stream (Unavailable) and
// refuses new ones, so that a graceful stop does not wait for them.
func (s *Service) EndEventStreams() { s.events.close() }

// eventBroker fans events out to the GetContainerEvents subscribers.
type eventBroker struct {
	mu     sync.Mutex
	subs   map[*eventSub]bool // guarded by mu
	closed bool               // guarded by mu
	cutOff uint64             // subscribers cut off for falling behind; guarded by mu
	// While recovering, events are kept (up to eventBuffer) for the first
	// subscriber: the exits that happened while the daemon was down reach
	// the kubelet that subscribes once it is up. Guarded by mu.
	keeping bool
	backlog []*runtime.ContainerEventResponse
}

type eventSub struct {
	ch  chan *runtime.ContainerEventResponse
	cut chan struct{} // closed when the subscriber is cut off
}

func (b *eventBroker) subscribe() *eventSub {
	b.mu.Lock()
	defer b.mu.Unlock()
	sub := &eventSub{ch: make(chan *runtime.ContainerEventResponse, eventBuffer), cut: make(chan struct{})}
	if b.closed {
		close(sub.cut)
		return sub
	}
	if b.subs == nil {
		b.subs = map[*eventSub]bool{}
	}
	b.subs[sub] = true
	for _, ev := range b.backlog {
		sub.ch <- ev // the backlog is no longer than the buffer
	}
	b.backlog = nil
	return sub
}

// keepBacklog starts (true) or ends (false) keeping events for the first
// subscriber; recovery keeps them.
func (b *eventBroker) keepBacklog(keep bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.keeping = keep
}

func (b *eventBroker) unsubscribe(sub *eventSub) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, sub)
}

// publish hands ev to every subscriber. Publishing under mu gives every
// subscriber the same order.
func (b *eventBroker) publish(ev *runtime.ContainerEventResponse) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.keeping && len(b.subs) == 0 && len(b.backlog) < eventBuffer {
		b.backlog = append(b.backlog, ev)
	}
	for sub := range b.subs {
		select {
		case sub.ch <- ev:
		default:
			delete(b.subs, sub)
			close(sub.cut)
			b.cutOff++
		}
	}
}

// wanted reports whether an event would reach anyone: events are not
// built otherwise.
func (b *eventBroker) wanted() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs) > 0 || b.keeping
}

// stats reports the subscribers and how many were cut off so far.
func (b *eventBroker) stats() (subscribers int, cutOff uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs), b.cutOff
}

func (b *eventBroker) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for sub := range b.subs {
		delete(b.subs, sub)
		close(sub.cut)
	}
}

func (b *eventBroker) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// containerChanged turns a container record's durable change into events
// (the store calls it: no change is recorded without its event).
func (s *Service) containerChanged(ch store.Change[store.Container]) {
	c := ch.New
	var types []runtime.ContainerEventType
	switch {
	case ch.Created:
		types = append(types, runtime.ContainerEventType_CONTAINER_CREATED_EVENT)
	case ch.Deleted:
		c = ch.Old
		types = append(types, runtime.ContainerEventType_CONTAINER_DELETED_EVENT)
	default:
		// A start that failed is recorded started and finished at once: it
		// never ran, so it only stops. (An exit that the monitor reports
		// before StartContainer records the start is both.)
		if ch.Old.StartedAt.IsZero() && !c.StartedAt.IsZero() && c.Reason != reasonStartError {
			types = append(types, runtime.ContainerEventType_CONTAINER_STARTED_EVENT)
		}
		if ch.Old.FinishedAt.IsZero() && !c.FinishedAt.IsZero() {
			types = append(types, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT)
		}
	}
	if len(types) == 0 {
		return
	}
	sb, err := s.store.Sandboxes.Get(c.SandboxID)
	if err != nil {
		return // its pod is gone: nobody can be told which pod it was in
	}
	s.sendEvents(c.ID, sb, types)
}

// sandboxChanged turns a pod record's durable change into events.
func (s *Service) sandboxChanged(ch store.Change[store.Sandbox]) {
	sb := ch.New
	var types []runtime.ContainerEventType
	switch {
	case ch.Created:
		types = append(types, runtime.ContainerEventType_CONTAINER_CREATED_EVENT, runtime.ContainerEventType_CONTAINER_STARTED_EVENT)
	case ch.Deleted:
		sb = ch.Old
		types = append(types, runtime.ContainerEventType_CONTAINER_DELETED_EVENT)
	case ch.Old.Ready && !sb.Ready:
		types = append(types, runtime.ContainerEventType_CONTAINER_STOPPED_EVENT)
	}
	if len(types) > 0 {
		s.sendEvents(sb.ID, sb, types)
	}
}

// sendEvents publishes events about id (a container, or the pod itself)
// with the pod's status and all its containers' statuses as they are now.
func (s *Service) sendEvents(id string, sb store.Sandbox, types []runtime.ContainerEventType) {
	if !s.events.wanted() {
		return
	}
	podStatus, _, err := s.podSandboxStatus(sb, false)
	if err != nil {
		s.logger.Error("event: pod status", "pod", sb.ID, "error", err)
		return
	}
	var statuses []*runtime.ContainerStatus
	for _, c := range s.podContainers(sb.ID) {
		if st, _, err := s.containerStatus(c, false); err == nil {
			statuses = append(statuses, st)
		}
	}
	for _, t := range types {
		s.events.publish(&runtime.ContainerEventResponse{
			ContainerId:        id,
			ContainerEventType: t,
			CreatedAt:          time.Now().UnixNano(),
			PodSandboxStatus:   podStatus,
			ContainersStatuses: statuses,
		})
	}
}
