package cri

import (
	"context"
	"time"

	"github.com/berth-cri/berth/internal/store"
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

// holdContainer resolves ref and takes the container's lock (its pod's
// shared), waiting on ctx. It returns the record as it is under the lock,
// a context detached from the caller bounded by timeout, and release,
// which ends both. A container missing, or removed while the call waited,
// is NotFound.
func (s *Service) holdContainer(ctx context.Context, ref string, timeout time.Duration) (store.Container, context.Context, func(), error) {
	c, err := s.store.Containers.Get(ref)
	if err != nil {
		return store.Container{}, nil, nil, err
	}
	unlock, err := s.lockContainer(ctx, c.SandboxID, c.ID)
	if err != nil {
		return store.Container{}, nil, nil, err
	}
	work, cancel := detach(ctx, timeout)
	release := func() { cancel(); unlock() }
	if c, err = s.store.Containers.Get(c.ID); err != nil {
		release()
		return store.Container{}, nil, nil, err
	}
	return c, work, release, nil
}

// holdPodToStop is holdPod for StopPodSandbox and RemovePodSandbox: it
// also marks the pod not ready, so that whatever fails later no container
// is made or started in it. A pod missing, or removed while the call
// waited, is NotFound.
func (s *Service) holdPodToStop(ctx context.Context, ref string, timeout time.Duration) (store.Sandbox, context.Context, func(), error) {
	sb, work, release, err := s.holdPod(ctx, ref, timeout)
	if err != nil {
		return store.Sandbox{}, nil, nil, err
	}
	if sb, err = s.markNotReady(sb.ID); err != nil {
		release()
		return store.Sandbox{}, nil, nil, err
	}
	return sb, work, release, nil
}

// holdPod resolves ref and takes the pod exclusively, waiting on ctx. It
// returns the record as it is under the lock, a context detached from the
// caller bounded by timeout, and release.
func (s *Service) holdPod(ctx context.Context, ref string, timeout time.Duration) (store.Sandbox, context.Context, func(), error) {
	sb, err := s.store.Sandboxes.Get(ref)
	if err != nil {
		return store.Sandbox{}, nil, nil, err
	}
	unlock, err := s.lockPod(ctx, sb.ID)
	if err != nil {
		return store.Sandbox{}, nil, nil, err
	}
	work, cancel := detach(ctx, timeout)
	release := func() { cancel(); unlock() }
	if sb, err = s.store.Sandboxes.Get(sb.ID); err != nil {
		release()
		return store.Sandbox{}, nil, nil, err
	}
	return sb, work, release, nil
}

// markNotReady records the pod not ready (unless it is already: no write
// then) and returns its record.
func (s *Service) markNotReady(id string) (store.Sandbox, error) {
	sb, err := s.store.Sandboxes.Get(id)
	if err != nil || !sb.Ready {
		return sb, err
	}
	return s.store.Sandboxes.Update(id, func(sb store.Sandbox) (store.Sandbox, error) {
		sb.Ready = false
		return sb, nil
	})
}
