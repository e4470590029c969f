package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

func openCommitter(t *testing.T) (*committer, *bolt.DB) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	return &committer{db: db}, db
}

func putKey(key string) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error { return tx.Bucket([]byte("b")).Put([]byte(key), []byte("v")) }
}

// TestGroupCommitKeepsEveryWrite: concurrent writers all return once their
// write is in the database.
func TestGroupCommitKeepsEveryWrite(t *testing.T) {
	c, db := openCommitter(t)
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			if err := c.do(putKey(fmt.Sprint(i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	_ = db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket([]byte("b")).Stats().KeyN; n != 64 {
			t.Errorf("%d keys, want 64", n)
		}
		return nil
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy || len(c.pending) != 0 {
		t.Errorf("committer left busy=%v with %d pending", c.busy, len(c.pending))
	}
}

// TestGroupCommitIsolatesAFailure: writes queued behind a commit share the
// next one; one of them failing fails only itself.
func TestGroupCommitIsolatesAFailure(t *testing.T) {
	c, db := openCommitter(t)
	inside, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- c.do(func(tx *bolt.Tx) error {
			close(inside)
			<-release
			return putKey("first")(tx)
		})
	}()
	<-inside
	boom := errors.New("boom")
	results := make([]chan error, 3)
	for i, fn := range []func(*bolt.Tx) error{putKey("a"), func(*bolt.Tx) error { return boom }, putKey("b")} {
		results[i] = make(chan error, 1)
		go func() { results[i] <- c.do(fn) }()
	}
	for { // all three queued behind the first commit
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n == 3 {
			break
		}
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	for i, want := range []error{nil, boom, nil} {
		if err := <-results[i]; !errors.Is(err, want) {
			t.Errorf("write %d: %v, want %v", i, err, want)
		}
	}
	_ = db.View(func(tx *bolt.Tx) error {
		for _, k := range []string{"first", "a", "b"} {
			if tx.Bucket([]byte("b")).Get([]byte(k)) == nil {
				t.Errorf("key %s missing", k)
			}
		}
		return nil
	})
}
