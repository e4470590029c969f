package image

import (
	"context"
	"encoding/base64"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPullGroupSharesOneCall(t *testing.T) {
	var g = pullGroup{calls: map[string]*pullCall{}}
	var calls atomic.Int32
	release := make(chan struct{})
	fn := func(ctx context.Context) (string, error) {
		calls.Add(1)
		<-release
		return "sha256:x", nil
	}
	var wg sync.WaitGroup
	results := make([]string, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := g.do(context.Background(), "k", fn)
			if err != nil {
				t.Error(err)
			}
			results[i] = id
		}()
	}
	// Wait until all four are waiting on the one call.
	for {
		g.mu.Lock()
		c := g.calls["k"]
		n := 0
		if c != nil {
			n = c.waiters
		}
		g.mu.Unlock()
		if n == 4 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if calls.Load() != 1 {
		t.Fatalf("fn ran %d times, want 1", calls.Load())
	}
	for _, r := range results {
		if r != "sha256:x" {
			t.Fatalf("results = %v", results)
		}
	}
}

func TestPullGroupCallerDeadlineCancelsAbandonedPull(t *testing.T) {
	var g = pullGroup{calls: map[string]*pullCall{}}
	cancelled := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := g.do(ctx, "k", func(ctx context.Context) (string, error) {
		<-ctx.Done()
		close(cancelled)
		return "", ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	<-cancelled // the abandoned pull's context was cancelled
}

func TestAuthCredentials(t *testing.T) {
	basic := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	for _, tc := range []struct {
		name       string
		auth       *Auth
		host       string
		user, pass string
	}{
		{"none", nil, "r", "", ""},
		{"user/password", &Auth{Username: "u", Password: "p"}, "r", "u", "p"},
		{"auth field", &Auth{Auth: basic}, "r", "alice", "s3cret"},
		{"identity token", &Auth{IdentityToken: "tok"}, "r", "", "tok"},
		{"other server", &Auth{Username: "u", Password: "p", ServerAddress: "https://other.io"}, "r", "", ""},
		{"matching server", &Auth{Username: "u", Password: "p", ServerAddress: "https://r/v2/"}, "r", "u", "p"},
	} {
		u, p, err := tc.auth.credentials(tc.host)
		if err != nil || u != tc.user || p != tc.pass {
			t.Errorf("%s: credentials = %q, %q, %v; want %q, %q", tc.name, u, p, err, tc.user, tc.pass)
		}
	}
	if _, _, err := (&Auth{Auth: "!!"}).credentials("r"); err == nil {
		t.Error("malformed auth accepted")
	}
}
