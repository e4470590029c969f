package store

import (
	"errors"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// committer writes with group commit: a write that finds no transaction
// in progress commits at once, and writes that arrive while one is in
// progress share the next transaction and its fsync. bbolt's Batch instead
// waits a fixed delay for companions, which a lone write — most of
// kubelet's — pays in full.
type committer struct {
	db *bolt.DB

	mu      sync.Mutex
	pending []*write // guarded by mu
	busy    bool     // a goroutine is committing; guarded by mu
}

type write struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// do runs fn in a read-write transaction shared with concurrent writes and
// returns once that transaction is durable (or fn's error). fn may run
// twice: a batch in which one function fails is rolled back and each of
// its functions is run again in a transaction of its own.
func (c *committer) do(fn func(*bolt.Tx) error) error {
	w := &write{fn: fn, done: make(chan error, 1)}
	c.mu.Lock()
	c.pending = append(c.pending, w)
	lead := !c.busy
	c.busy = true
	c.mu.Unlock()
	if lead {
		// This caller commits the batch it is in; whatever arrived
		// meanwhile is committed by a goroutine of its own, so that no
		// caller waits for others' batches.
		if c.commitNext() {
			go c.commitRest()
		}
	}
	return <-w.done
}

// commitNext commits the pending writes as one batch and reports whether
// more arrived meanwhile (busy stays set then); with none pending it
// clears busy. The batch's writers are answered last, so that a writer
// that returns finds the committer settled.
func (c *committer) commitNext() (more bool) {
	c.mu.Lock()
	batch := c.pending
	c.pending = nil
	if len(batch) == 0 {
		c.busy = false
		c.mu.Unlock()
		return false
	}
	c.mu.Unlock()
	errs := c.commit(batch)
	c.mu.Lock()
	more = len(c.pending) > 0
	c.busy = more
	c.mu.Unlock()
	for i, w := range batch {
		w.done <- errs[i]
	}
	return more
}

func (c *committer) commitRest() {
	for c.commitNext() {
	}
}

// errRetryAlone rolls back a batch one of whose functions failed.
var errRetryAlone = errors.New("a write in the batch failed")

// commit runs the batch in one transaction and returns each write's error.
func (c *committer) commit(batch []*write) []error {
	errs := make([]error, len(batch))
	var fnErr error
	err := c.db.Update(func(tx *bolt.Tx) error {
		for _, w := range batch {
			if fnErr = w.fn(tx); fnErr != nil {
				return errRetryAlone
			}
		}
		return nil
	})
	switch {
	case !errors.Is(err, errRetryAlone):
		for i := range batch {
			errs[i] = err
		}
	case len(batch) == 1:
		errs[0] = fnErr
	default:
		for i, w := range batch {
			errs[i] = c.db.Update(w.fn)
		}
	}
	return errs
}
