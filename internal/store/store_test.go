package store

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "berth.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func sandbox(id, name string) Sandbox {
	return Sandbox{
		ID:        id,
		Metadata:  PodMetadata{Name: name, Namespace: "default", UID: "uid-" + name},
		Labels:    map[string]string{"app": name},
		CreatedAt: time.Unix(1700000000, 42).UTC(),
		Ready:     true,
	}
}

func TestAddGetPersist(t *testing.T) {
	s, path := openTemp(t)
	id := NewID()
	if len(id) != 64 {
		t.Fatalf("NewID() = %q, want 64 hex characters", id)
	}
	if err := s.Sandboxes.Add(sandbox(id, "web")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Sandboxes.Get(id)
	if err != nil {
		t.Fatalf("Get after reopen: %v", err)
	}
	if got.Labels["app"] != "web" || !got.CreatedAt.Equal(sandbox(id, "web").CreatedAt) || !got.Ready {
		t.Errorf("record changed across reopen: %+v", got)
	}
	// The name index is rebuilt too.
	if err := s2.Sandboxes.Add(sandbox(NewID(), "web")); !errdefs.IsAlreadyExists(err) {
		t.Errorf("duplicate name after reopen: err = %v, want AlreadyExists", err)
	}
}

func TestGetByPrefix(t *testing.T) {
	s, _ := openTemp(t)
	a := "abc1" + strings.Repeat("0", 60)
	b := "abc2" + strings.Repeat("0", 60)
	for i, id := range []string{a, b} {
		if err := s.Sandboxes.Add(sandbox(id, string(rune('a'+i)))); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		ref    string
		want   string
		isErr  func(error) bool
		errSub string
	}{
		{ref: a, want: a},
		{ref: "abc1", want: a},
		{ref: "abc2", want: b},
		{ref: "abc", isErr: errdefs.IsInvalidArgument, errSub: "ambiguous"},
		{ref: "", isErr: errdefs.IsInvalidArgument, errSub: "must not be empty"},
		{ref: "ffff", isErr: errdefs.IsNotFound},
		{ref: a + "0", isErr: errdefs.IsNotFound},
	} {
		got, err := s.Sandboxes.Get(tc.ref)
		if tc.isErr != nil {
			if !tc.isErr(err) || !strings.Contains(err.Error(), tc.errSub) {
				t.Errorf("Get(%q) err = %v, want class match containing %q", tc.ref, err, tc.errSub)
			}
			continue
		}
		if err != nil || got.ID != tc.want {
			t.Errorf("Get(%q) = %q, %v; want %q", tc.ref, got.ID, err, tc.want)
		}
	}
}

func TestConcurrentNameReservation(t *testing.T) {
	s, _ := openTemp(t)
	const racers = 16
	var wg sync.WaitGroup
	errs := make([]error, racers)
	for i := range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Sandboxes.Add(sandbox(NewID(), "same"))
		}()
	}
	wg.Wait()
	var won, lost int
	for _, err := range errs {
		switch {
		case err == nil:
			won++
		case errdefs.IsAlreadyExists(err):
			lost++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if won != 1 || lost != racers-1 {
		t.Fatalf("won = %d, lost = %d; want exactly one winner", won, lost)
	}
	if n := s.Sandboxes.Len(); n != 1 {
		t.Fatalf("%d records stored, want 1", n)
	}
}

func TestReserveReleaseName(t *testing.T) {
	s, _ := openTemp(t)
	id1, id2 := NewID(), NewID()
	name := sandbox(id1, "p").UniqueName()
	if err := s.Sandboxes.ReserveName(name, id1); err != nil {
		t.Fatal(err)
	}
	if err := s.Sandboxes.ReserveName(name, id2); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second reservation: err = %v, want AlreadyExists", err)
	}
	// A failed create releases; the name is free again.
	s.Sandboxes.ReleaseName(name, id1)
	if err := s.Sandboxes.Add(sandbox(id2, "p")); err != nil {
		t.Fatalf("Add after release: %v", err)
	}
	// Releasing a name held by a stored record is a no-op.
	s.Sandboxes.ReleaseName(name, id2)
	if err := s.Sandboxes.ReserveName(name, id1); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("name of stored record was released: err = %v", err)
	}
}

func TestUpdateAndDelete(t *testing.T) {
	s, path := openTemp(t)
	c := Container{ID: NewID(), SandboxID: NewID(), Metadata: ContainerMetadata{Name: "c"}, CreatedAt: time.Now()}
	if err := s.Containers.Add(c); err != nil {
		t.Fatal(err)
	}
	if st := c.State(); st != ContainerCreated {
		t.Fatalf("state = %v, want created", st)
	}
	started := time.Now()
	if _, err := s.Containers.Update(c.ID, func(c Container) (Container, error) {
		c.StartedAt = started
		return c, nil
	}); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if _, err := s.Containers.Update(c.ID, func(c Container) (Container, error) { return c, boom }); !errors.Is(err, boom) {
		t.Fatalf("Update error not returned: %v", err)
	}
	if _, err := s.Containers.Update(c.ID, func(c Container) (Container, error) {
		c.Metadata.Name = "renamed"
		return c, nil
	}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("rename through Update: err = %v, want InvalidArgument", err)
	}
	s.Close()

	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.Containers.Get(c.ID)
	if err != nil || got.State() != ContainerRunning {
		t.Fatalf("after reopen: state = %v, err = %v; want running", got.State(), err)
	}
	if err := s2.Containers.Delete(c.ID); err != nil {
		t.Fatal(err)
	}
	if err := s2.Containers.Delete(c.ID); !errdefs.IsNotFound(err) {
		t.Fatalf("second delete: err = %v, want NotFound", err)
	}
	if err := s2.Containers.Add(Container{ID: NewID(), SandboxID: c.SandboxID, Metadata: c.Metadata}); err != nil {
		t.Fatalf("name not freed by delete: %v", err)
	}
}

func TestOpenRefusesSecondHandle(t *testing.T) {
	_, path := openTemp(t)
	_, err := Open(path)
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("second Open: err = %v, want locked", err)
	}
}

// A write in progress — here one whose update function is held up, as a
// disk flush would hold it — never holds up reads, which see the record as
// it was until the write is durable.
func TestReadsDoNotWaitForWrites(t *testing.T) {
	s, _ := openTemp(t)
	id := NewID()
	if err := s.Sandboxes.Add(sandbox(id, "web")); err != nil {
		t.Fatal(err)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := s.Sandboxes.Update(id, func(sb Sandbox) (Sandbox, error) {
			close(inside)
			<-release
			sb.Ready = false
			return sb, nil
		})
		done <- err
	}()
	<-inside
	if got, err := s.Sandboxes.Get(id); err != nil || !got.Ready {
		t.Fatalf("Get during a write = %+v, %v; want the record as it was", got, err)
	}
	if n := len(s.Sandboxes.List()); n != 1 {
		t.Fatalf("List during a write: %d records", n)
	}
	other := NewID()
	if err := s.Sandboxes.Add(sandbox(other, "db")); err != nil {
		t.Fatalf("a write of another record waited: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Sandboxes.Get(id); got.Ready {
		t.Fatal("the update is not visible after it returned")
	}
}

// Concurrent updates of one record are serialized: none is lost.
func TestConcurrentUpdatesOfOneRecord(t *testing.T) {
	s, path := openTemp(t)
	id := NewID()
	if err := s.Sandboxes.Add(sandbox(id, "web")); err != nil {
		t.Fatal(err)
	}
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := s.Sandboxes.Update(id, func(sb Sandbox) (Sandbox, error) {
				sb.Metadata.Attempt++ // not part of the name's uniqueness check below
				return sb, nil
			}); err == nil || !errdefs.IsInvalidArgument(err) {
				// Attempt is part of the unique name: the update is refused.
				t.Errorf("name-changing update: %v", err)
			}
			if _, err := s.Sandboxes.Update(id, func(sb Sandbox) (Sandbox, error) {
				sb.PausePid++
				return sb, nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, _ := s2.Sandboxes.Get(id); got.PausePid != n {
		t.Fatalf("after %d concurrent increments the durable record has %d", n, got.PausePid)
	}
}

// BenchmarkGetUnderWrites measures Get while 8 writers add, update and
// delete other records (each write an fsync): before per-record write locks
// every Get waited for a flush.
func BenchmarkGetUnderWrites(b *testing.B) {
	path := filepath.Join(b.TempDir(), "berth.db")
	s, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	id := NewID()
	if err := s.Containers.Add(Container{ID: id, SandboxID: "p", Metadata: ContainerMetadata{Name: "read"}}); err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c := Container{ID: NewID(), SandboxID: "p", Metadata: ContainerMetadata{Name: "w", Attempt: uint32(w<<20 | i)}}
				if err := s.Containers.Add(c); err != nil {
					b.Error(err)
					return
				}
				if _, err := s.Containers.Update(c.ID, func(c Container) (Container, error) { c.Pid = 1; return c, nil }); err != nil {
					b.Error(err)
					return
				}
				if err := s.Containers.Delete(c.ID); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		if _, err := s.Containers.Get(id); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
}

// A watcher sees every change of a record, durable and visible, in order.
func TestWatchSeesEveryChangeInOrder(t *testing.T) {
	s, _ := openTemp(t)
	var mu sync.Mutex
	var seen []string
	s.Sandboxes.Watch(func(c Change[Sandbox]) {
		if got, err := s.Sandboxes.Get(c.New.ID); !c.Deleted && (err != nil || got.PausePid != c.New.PausePid) {
			t.Errorf("change not visible to readers when watched: %+v, %v", got, err)
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case c.Created:
			seen = append(seen, "created")
		case c.Deleted:
			seen = append(seen, "deleted")
		default:
			seen = append(seen, fmt.Sprintf("%d->%d", c.Old.PausePid, c.New.PausePid))
		}
	})
	id := NewID()
	if err := s.Sandboxes.Add(sandbox(id, "web")); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Sandboxes.Update(id, func(sb Sandbox) (Sandbox, error) { sb.PausePid++; return sb, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Sandboxes.Delete(id); err != nil {
		t.Fatal(err)
	}
	want := []string{"created", "0->1", "1->2", "2->3", "deleted"}
	if !slices.Equal(seen, want) {
		t.Fatalf("watched %v, want %v", seen, want)
	}
}
