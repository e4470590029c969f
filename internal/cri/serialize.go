package cri

import (
	"context"
	"time"
)

// Every mutating call follows one order (docs/architecture.md, "Calls
// that change state"):
//
//  1. resolve the object and take its lock, waiting on the caller's
//     context: a caller that gives up before it holds the lock changed
//     nothing;
//  2. re-read the record under the lock, and do the work on a context
//     detached from the caller, bounded by the call's own timeout, so that
//     the work ends in a state the record says — the caller's deadline
//     never decides it;
//  3. record what really happened (or roll back) before unlocking.
//
// Locks: a pod's lock is taken shared by the calls on its containers
// (create, start, stop, remove, update) and exclusively by StopPodSandbox
// and RemovePodSandbox, which thereby act on a pod no container call is
// changing. A container's lock is exclusive and always taken after its
// pod's.
const (
	// opTimeout bounds a call's work once it holds its lock. It is longer
	// than the monitor's own bound on a runtime call (4 minutes), so that
	// the monitor's answer, not our impatience, says how a start ended.
	opTimeout = 5 * time.Minute
	// cleanupTimeout bounds a rollback (a hung CNI DEL or runtime must not
	// hold a failed call forever).
	cleanupTimeout = time.Minute
	// backgroundTimeout bounds work a call leaves running (awaiting a start
	// still in progress).
	backgroundTimeout = 5 * time.Minute
)

// detach returns a context the caller's cancellation does not reach,
// bounded by d. It keeps the caller's values (request attributes).
func detach(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// cleanupContext is detach for a rollback.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return detach(ctx, cleanupTimeout)
}

// lockPod takes a pod exclusively, for stopping or removing it.
func (s *Service) lockPod(ctx context.Context, podID string) (func(), error) {
	return s.podLocks.Lock(ctx, podID)
}

// lockPodShared takes a pod shared, for creating a container in it.
func (s *Service) lockPodShared(ctx context.Context, podID string) (func(), error) {
	return s.podLocks.RLock(ctx, podID)
}

// lockContainer takes a container of podID exclusively, and its pod shared.
func (s *Service) lockContainer(ctx context.Context, podID, id string) (func(), error) {
	unlockPod, err := s.podLocks.RLock(ctx, podID)
	if err != nil {
		return nil, err
	}
	unlock, err := s.containerLocks.Lock(ctx, id)
	if err != nil {
		unlockPod()
		return nil, err
	}
	return func() { unlock(); unlockPod() }, nil
}

// background runs fn on a goroutine of its own, with ctx (Run's, or
// recovery's) bounded by backgroundTimeout; Run waits for it before it
// returns.
func (s *Service) background(ctx context.Context, fn func(ctx context.Context)) {
	s.bg.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, backgroundTimeout)
		defer cancel()
		fn(ctx)
	})
}
