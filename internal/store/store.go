// Package store is berth's persistent record of pod sandboxes and
// containers: a bbolt database written before a call returns success, with
// in-memory indexes (by ID, ID prefix and unique name) for every read.
// Images are recorded by the image service in containerd's metadata
// database (internal/image), which also roots their garbage collection.
//
// The database file lives under --root; the daemon's lock file guarantees a
// single writer, so bolt's own flock is only a second line of defence.
package store

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// schemaVersion is written into the meta bucket. Bump it, and add a
// migration, whenever a record's encoding changes incompatibly.
const schemaVersion = 1

var (
	bucketMeta       = []byte("meta")
	keySchemaVersion = []byte("schema_version")
)

// Store owns the database and one Table per record kind.
type Store struct {
	db         *bolt.DB
	Sandboxes  *Table[Sandbox]
	Containers *Table[Container]
}

// Open opens (creating if needed) the database at path and loads every record
// into memory.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open %s: database is locked by another process", path)
		}
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// Group commit (commit.go): concurrent writers share an fsync, and a
	// lone writer waits for none.
	commit := &committer{db: db}
	s := &Store{
		db:         db,
		Sandboxes:  newTable[Sandbox](db, commit, "sandboxes", "pod sandbox"),
		Containers: newTable[Container](db, commit, "containers", "container"),
	}
	if err := s.init(); err != nil {
		db.Close()
		return nil, err
	}
	for _, load := range []func() error{s.Sandboxes.load, s.Containers.load} {
		if err := load(); err != nil {
			db.Close()
			return nil, fmt.Errorf("load %s: %w", path, err)
		}
	}
	return s, nil
}

// init creates the buckets and checks the schema version.
func (s *Store) init() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, t := range [][]byte{bucketMeta, s.Sandboxes.bucket, s.Containers.bucket} {
			if _, err := tx.CreateBucketIfNotExists(t); err != nil {
				return fmt.Errorf("create bucket %s: %w", t, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keySchemaVersion); v != nil {
			if got := binary.BigEndian.Uint32(v); got != schemaVersion {
				return fmt.Errorf("database schema version %d, this berth reads version %d", got, schemaVersion)
			}
			return nil
		}
		return meta.Put(keySchemaVersion, binary.BigEndian.AppendUint32(nil, schemaVersion))
	})
}

// Close closes the database. Tables must not be used afterwards.
func (s *Store) Close() error { return s.db.Close() }

// NewID returns a random 64-hex-character ID, the form pod and container IDs
// take.
func NewID() string {
	var b [32]byte
	// crypto/rand.Read never returns an error on Linux (Go ≥ 1.24).
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
