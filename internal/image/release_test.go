package image

import (
	"context"
	"sync"
	"testing"
	"time"
)

// The pulls' memory is released once they have all ended, and not while
// another one runs.
func TestReleaseWhenQuiet(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	checked := make(chan struct{})
	released := make(chan struct{}, 2)
	var mu sync.Mutex
	busy := true
	running := func() bool {
		mu.Lock()
		defer mu.Unlock()
		checked <- struct{}{}
		return busy
	}
	var wg sync.WaitGroup
	wg.Go(func() { releaseWhenQuiet(ctx, done, running, time.Millisecond, func() { released <- struct{}{} }) })

	done <- struct{}{} // a pull ended while another still runs
	<-checked          // the delay passed: not released, as one runs
	mu.Lock()
	busy = false
	mu.Unlock()
	done <- struct{}{} // the last one ended
	<-checked
	<-released
	cancel()
	wg.Wait()
	// Once in all: nothing was released while a pull ran.
	if n := len(released); n != 0 {
		t.Fatalf("released %d times more than once", n)
	}
}
