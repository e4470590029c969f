package keylock

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestLockExcludesPerKey(t *testing.T) {
	var l Locks
	var mu sync.Mutex
	inside := map[string]int{}
	var wg sync.WaitGroup
	for i := range 64 {
		key := []string{"a", "b"}[i%2]
		wg.Go(func() {
			unlock, err := l.Lock(t.Context(), key)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			inside[key]++
			if inside[key] != 1 {
				t.Errorf("%d holders of %s", inside[key], key)
			}
			mu.Unlock()
			mu.Lock()
			inside[key]--
			mu.Unlock()
			unlock()
		})
	}
	wg.Wait()
	if n := l.Len(); n != 0 {
		t.Fatalf("%d keys left after every holder released", n)
	}
}

func TestReadersShareWritersExclude(t *testing.T) {
	var l Locks
	r1, err := l.RLock(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.RLock(t.Context(), "k")
	if err != nil {
		t.Fatal("a second reader waited for the first")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Lock(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("writer got the lock while readers held it: %v", err)
	}
	got := make(chan func())
	go func() {
		w, err := l.Lock(t.Context(), "k")
		if err != nil {
			t.Error(err)
		}
		got <- w
	}()
	r1()
	r2()
	r2() // releasing twice is harmless
	w := <-got
	if _, err := l.RLock(ctx, "k"); err == nil {
		t.Fatal("reader got the lock while a writer held it")
	}
	w()
	if n := l.Len(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

func TestCancelledWaitLeavesNothing(t *testing.T) {
	var l Locks
	w, err := l.Lock(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := l.RLock(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	w()
	if n := l.Len(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}
