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
	checked := make(chan bool)
	released := make(chan struct{}, 2)
	var mu sync.Mutex
	busy := true
	running := func() bool {
		mu.Lock()
		defer mu.Unlock()
		checked <- busy
		return busy
	}
	var wg sync.WaitGroup
	wg.Go(func() { releaseWhenQuiet(ctx, done, running, time.Millisecond, func() { released <- struct{}{} }) })

	done <- struct{}{} // a pull ended while another still runs
	if !<-checked {
		t.Fatal("the timer checked a pull running, which it is")
	}
	mu.Lock()
	busy = false
	mu.Unlock()
	done <- struct{}{} // the last one ended
	if <-checked {
		t.Fatal("no pull runs any more")
	}
	<-released
	cancel()
	wg.Wait()
	if n := len(released); n != 0 {
		t.Fatalf("released %d more times", n)
	}
}
