package store

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"

	"github.com/berth-cri/berth/internal/keylock"
)

// Record is what a Table holds. Key is the record's unique ID (64 hex
// characters); UniqueName is a second unique key ("" when the kind has none).
type Record interface {
	Key() string
	UniqueName() string
}

// Table is one kind of record: a bbolt bucket plus the in-memory indexes
// that serve every read. Writes reach the database before they return, so a
// record a caller has been told about survives a crash.
//
// Reads never wait for the disk: a write holds only its record's key lock
// while the database flushes, and takes the index lock just to swap the
// record in afterwards. Until then readers see the record as it was, so no
// reader ever sees a change that a crash could still lose.
//
// Values handed out are copies of the struct; maps and slices inside them are
// shared and MUST be treated as read-only. Change a record with Update.
type Table[T Record] struct {
	db     *bolt.DB
	commit *committer // the store's, shared by its tables
	bucket []byte
	kind   string // "pod sandbox", "container": for error messages

	writes keylock.Locks   // one writer per key at a time, across its flush
	watch  func(Change[T]) // set by Watch before serving; nil for none

	mu    sync.RWMutex
	items map[string]T      // key -> record; guarded by mu
	names map[string]string // reserved name -> key; guarded by mu
}

func newTable[T Record](db *bolt.DB, commit *committer, bucket, kind string) *Table[T] {
	return &Table[T]{
		db:     db,
		commit: commit,
		bucket: []byte(bucket),
		kind:   kind,
		items:  make(map[string]T),
		names:  make(map[string]string),
	}
}

// Change is one durable change of a record: Old is the record before
// (zero when Created), New after (zero when Deleted).
type Change[T Record] struct {
	Old, New         T
	Created, Deleted bool
}

// Watch has fn called with every change of a record once it is durable and
// visible to readers, before the call that made it returns, and in the
// order the record's changes were made: fn runs under the record's write
// lock. It must be set before the table is written, and fn must not write
// the same record. One watcher per table.
func (t *Table[T]) Watch(fn func(Change[T])) { t.watch = fn }

func (t *Table[T]) changed(c Change[T]) {
	if t.watch != nil {
		t.watch(c)
	}
}

// load fills the indexes from the bucket. Called once, before serving.
func (t *Table[T]) load() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(t.bucket).ForEach(func(k, v []byte) error {
			var r T
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("decode %s %s: %w", t.kind, k, err)
			}
			t.items[r.Key()] = r
			if n := r.UniqueName(); n != "" {
				t.names[n] = r.Key()
			}
			return nil
		})
	})
}

// ReserveName claims name for key before the record exists, so that a long
// create can fail fast on a duplicate and two concurrent creates of one name
// cannot both proceed. It returns an AlreadyExists error naming the holder.
// Release the reservation with ReleaseName if the create fails; Add of a
// record with this name and key takes it over.
func (t *Table[T]) ReserveName(name, key string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reserveName(name, key)
}

func (t *Table[T]) reserveName(name, key string) error {
	if holder, ok := t.names[name]; ok && holder != key {
		return fmt.Errorf("%s name %q is reserved for %s: %w", t.kind, name, holder, errdefs.ErrAlreadyExists)
	}
	t.names[name] = key
	return nil
}

// ReleaseName drops a reservation made by ReserveName for key. It does nothing
// when name is held by another key or by a stored record.
func (t *Table[T]) ReleaseName(name, key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.names[name] != key {
		return
	}
	if _, stored := t.items[key]; stored {
		return
	}
	delete(t.names, name)
}

// Add stores a new record. It returns AlreadyExists when the key is taken or
// the name is held by another key.
func (t *Table[T]) Add(r T) error {
	key, name := r.Key(), r.UniqueName()
	if key == "" {
		return fmt.Errorf("%s has no id: %w", t.kind, errdefs.ErrInvalidArgument)
	}
	unlock := t.lockKey(key)
	defer unlock()
	t.mu.Lock()
	_, exists := t.items[key]
	var err error
	if !exists && name != "" {
		err = t.reserveName(name, key)
	}
	t.mu.Unlock()
	if exists {
		return fmt.Errorf("%s %s: %w", t.kind, key, errdefs.ErrAlreadyExists)
	}
	if err != nil {
		return err
	}
	if err := t.put(r); err != nil {
		t.ReleaseName(name, key)
		return err
	}
	t.mu.Lock()
	t.items[key] = r
	t.mu.Unlock()
	t.changed(Change[T]{New: r, Created: true})
	return nil
}

// lockKey serializes the writes of one record.
func (t *Table[T]) lockKey(key string) func() {
	// Background: a store write is never given up half-way.
	unlock, _ := t.writes.Lock(context.Background(), key)
	return unlock
}

// Get resolves ref, a full key or a unique prefix of one, to its record.
// An empty ref or an ambiguous prefix is InvalidArgument; no match is NotFound.
func (t *Table[T]) Get(ref string) (T, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	key, err := t.resolve(ref)
	if err != nil {
		var zero T
		return zero, err
	}
	return t.items[key], nil
}

// Resolve returns the full key for ref (see Get).
func (t *Table[T]) Resolve(ref string) (string, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.resolve(ref)
}

func (t *Table[T]) resolve(ref string) (string, error) {
	if ref == "" {
		return "", fmt.Errorf("%s id must not be empty: %w", t.kind, errdefs.ErrInvalidArgument)
	}
	if _, ok := t.items[ref]; ok {
		return ref, nil
	}
	var matches []string
	for key := range t.items {
		if strings.HasPrefix(key, ref) {
			matches = append(matches, key)
			if len(matches) > 1 {
				return "", fmt.Errorf("%s id prefix %q is ambiguous: it matches %s and %s: %w",
					t.kind, ref, matches[0], matches[1], errdefs.ErrInvalidArgument)
			}
		}
	}
	if len(matches) == 0 {
		return "", fmt.Errorf("%s %q: %w", t.kind, ref, errdefs.ErrNotFound)
	}
	return matches[0], nil
}

// Update applies fn to the record with the given full key and stores the
// result. Updates of one record are serialized: fn sees the result of the
// one before. fn runs under the record's write lock, not the table's: keep
// it short anyway. A name change is not allowed.
func (t *Table[T]) Update(key string, fn func(T) (T, error)) (T, error) {
	unlock := t.lockKey(key)
	defer unlock()
	var zero T
	t.mu.RLock()
	old, ok := t.items[key]
	t.mu.RUnlock()
	if !ok {
		return zero, fmt.Errorf("%s %q: %w", t.kind, key, errdefs.ErrNotFound)
	}
	r, err := fn(old)
	if err != nil {
		return zero, err
	}
	if r.Key() != key || r.UniqueName() != old.UniqueName() {
		return zero, fmt.Errorf("update of %s %s changes its id or name: %w", t.kind, key, errdefs.ErrInvalidArgument)
	}
	if err := t.put(r); err != nil {
		return zero, err
	}
	t.mu.Lock()
	t.items[key] = r
	t.mu.Unlock()
	t.changed(Change[T]{Old: old, New: r})
	return r, nil
}

// Delete removes the record with the given full key and frees its name.
// A missing record is NotFound.
func (t *Table[T]) Delete(key string) error {
	unlock := t.lockKey(key)
	defer unlock()
	t.mu.RLock()
	r, ok := t.items[key]
	t.mu.RUnlock()
	if !ok {
		return fmt.Errorf("%s %q: %w", t.kind, key, errdefs.ErrNotFound)
	}
	err := t.commit.do(func(tx *bolt.Tx) error {
		return tx.Bucket(t.bucket).Delete([]byte(key))
	})
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", t.kind, key, err)
	}
	t.mu.Lock()
	delete(t.items, key)
	if n := r.UniqueName(); n != "" && t.names[n] == key {
		delete(t.names, n)
	}
	t.mu.Unlock()
	t.changed(Change[T]{Old: r, Deleted: true})
	return nil
}

// List returns every record, ordered by key so that output is stable.
func (t *Table[T]) List() []T {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]T, 0, len(t.items))
	for _, r := range t.items {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Len returns the number of stored records.
func (t *Table[T]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.items)
}

// put writes r to the bucket. Concurrent writers share one commit and its
// fsync (commit.go); the function may run twice, which a Put tolerates.
func (t *Table[T]) put(r T) error {
	v, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", t.kind, r.Key(), err)
	}
	err = t.commit.do(func(tx *bolt.Tx) error {
		return tx.Bucket(t.bucket).Put([]byte(r.Key()), v)
	})
	if err != nil {
		return fmt.Errorf("write %s %s: %w", t.kind, r.Key(), err)
	}
	return nil
}
