// Package keylock serializes work per object: one reader-writer lock per
// key (a pod or container ID), made on first use and dropped when no one
// holds or waits for it. Waiting honours the caller's context, so a caller
// that gives up before it holds the lock has changed nothing.
package keylock

import (
	"context"
	"sync"

	"golang.org/x/sync/semaphore"
)

// writeWeight is what an exclusive holder takes of a key's semaphore: all
// of it. Readers take 1 each. The semaphore is FIFO, so a waiting writer
// holds back readers that come after it and is never starved.
const writeWeight = 1 << 30

// Locks is a set of keyed reader-writer locks. The zero value is ready.
type Locks struct {
	mu   sync.Mutex
	keys map[string]*entry // guarded by mu
}

type entry struct {
	sem  *semaphore.Weighted
	refs int // holders and waiters; guarded by Locks.mu
}

// Lock takes key exclusively. It returns the function that releases it,
// or ctx's error if ctx ends first.
func (l *Locks) Lock(ctx context.Context, key string) (func(), error) {
	return l.acquire(ctx, key, writeWeight)
}

// RLock takes key shared with other readers.
func (l *Locks) RLock(ctx context.Context, key string) (func(), error) {
	return l.acquire(ctx, key, 1)
}

func (l *Locks) acquire(ctx context.Context, key string, n int64) (func(), error) {
	e := l.ref(key)
	if err := e.sem.Acquire(ctx, n); err != nil {
		l.unref(key, e)
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			e.sem.Release(n)
			l.unref(key, e)
		})
	}, nil
}

func (l *Locks) ref(key string) *entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string]*entry{}
	}
	e, ok := l.keys[key]
	if !ok {
		e = &entry{sem: semaphore.NewWeighted(writeWeight)}
		l.keys[key] = e
	}
	e.refs++
	return e
}

func (l *Locks) unref(key string, e *entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.refs--; e.refs == 0 {
		delete(l.keys, key)
	}
}

// Len is the number of keys held or waited for (for tests: nothing leaks).
func (l *Locks) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}
