package image

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/containerd/v2/core/unpack"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	"golang.org/x/sync/semaphore"
)

// Auth is the registry credential a pull carries (CRI AuthConfig).
type Auth struct {
	Username, Password string
	// Auth is base64("username:password").
	Auth          string
	IdentityToken string
	RegistryToken string
	// ServerAddress, when set, limits the credential to that registry host.
	ServerAddress string
}

func (a *Auth) empty() bool { return a == nil || *a == (Auth{}) }

// credentials returns the username and secret for host, containerd's
// convention: an empty username with a secret is an identity token.
func (a *Auth) credentials(host string) (string, string, error) {
	if a.empty() || a.RegistryToken != "" {
		return "", "", nil
	}
	if a.ServerAddress != "" && hostOf(a.ServerAddress) != host {
		return "", "", nil
	}
	if a.IdentityToken != "" {
		return "", a.IdentityToken, nil
	}
	if a.Auth != "" {
		raw, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", "", fmt.Errorf("auth: not base64: %w", errdefs.ErrInvalidArgument)
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", "", fmt.Errorf("auth: want base64 of username:password: %w", errdefs.ErrInvalidArgument)
		}
		return user, pass, nil
	}
	return a.Username, a.Password, nil
}

func hostOf(addr string) string {
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "https://"), "http://")
	host, _, _ := strings.Cut(addr, "/")
	return host
}

// key identifies a pull for deduplication: same reference, same credential.
func (a *Auth) key() string {
	if a.empty() {
		return ""
	}
	sum := sha256.Sum256([]byte(a.Username + "\x00" + a.Password + "\x00" + a.Auth + "\x00" + a.IdentityToken + "\x00" + a.RegistryToken + "\x00" + a.ServerAddress))
	return fmt.Sprintf("%x", sum[:8])
}

// Pull fetches ref for the host platform, unpacks its layers into
// snapshots, stores the reference and returns the image. Concurrent pulls of
// the same reference share one fetch.
func (s *Service) Pull(ctx context.Context, ref string, auth *Auth) (Image, error) {
	named, err := Normalize(ref)
	if err != nil {
		return Image{}, err
	}
	id, err := s.pulls.do(ctx, named.String()+"\x00"+auth.key(), func(ctx context.Context) (string, error) {
		return s.pull(ctx, named, auth)
	})
	if err != nil {
		return Image{}, err
	}
	return s.index.lookup(id)
}

func (s *Service) pull(ctx context.Context, named reference.Named, auth *Auth) (id string, retErr error) {
	s.pullsRunning.Add(1)
	defer func() {
		if s.pullsRunning.Add(-1) == 0 {
			select {
			case s.pullsDone <- struct{}{}:
			default:
			}
		}
	}()
	if s.opts.Tracer != nil {
		var span trace.Span
		ctx, span = s.opts.Tracer.Start(ctx, "image_pull", trace.WithAttributes(attribute.String("image.ref", named.String())))
		defer func() {
			if retErr != nil {
				span.SetStatus(otelcodes.Error, retErr.Error())
			}
			span.End()
		}()
	}
	ctx = namespaces.WithNamespace(ctx, namespace)
	start := time.Now()
	lease, err := s.leases.Create(ctx, leases.WithRandomID(), leases.WithExpiration(24*time.Hour),
		leases.WithLabels(map[string]string{labelPull: named.String()}))
	if err != nil {
		return "", fmt.Errorf("create lease: %w", err)
	}
	defer func() {
		// The image record, once stored, holds everything the lease did.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := s.leases.Delete(cctx, lease); err != nil {
			s.opts.Logger.Warn("delete pull lease", "lease", lease.ID, "error", err)
		}
	}()
	ctx = leases.WithLease(ctx, lease.ID)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	progress := &progressIngester{Ingester: s.content}
	progress.touch()
	pulled := s.opts.Metrics.PullStarted()
	defer func() { pulled(progress.fetched.Load(), progress.present.Load(), failureReason(retErr)) }()
	settings := s.pullSettings.Load()
	if settings.ProgressTimeout > 0 {
		go progress.watch(ctx, settings.ProgressTimeout, cancel)
	}

	hostOpts := config.HostOptions{Credentials: auth.credentials}
	if settings.HostsDir != "" {
		hostOpts.HostDir = config.HostDirFromRoot(settings.HostsDir)
	}
	if !auth.empty() && auth.RegistryToken != "" {
		hostOpts.AuthorizerOpts = []docker.AuthorizerOpt{docker.WithAuthHeader(http.Header{
			"Authorization": []string{"Bearer " + auth.RegistryToken},
		})}
	}
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: config.ConfigureHosts(ctx, hostOpts)})
	name, desc, err := resolver.Resolve(ctx, named.String())
	if err != nil {
		return "", s.pullError(ctx, named, err)
	}
	fetcher, err := resolver.Fetcher(ctx, name)
	if err != nil {
		return "", s.pullError(ctx, named, err)
	}
	unpacker, err := unpack.NewUnpacker(ctx, s.content, unpack.WithUnpackPlatform(unpack.Platform{
		Platform:       platforms.Only(platforms.DefaultSpec()),
		SnapshotterKey: s.opts.Snapshotter,
		Snapshotter:    s.snapshot,
		Applier:        s.applier,
	}))
	if err != nil {
		return "", fmt.Errorf("unpacker: %w", err)
	}
	// SetChildrenLabels is what keeps layers alive through GC once the
	// image record replaces the lease.
	children := images.SetChildrenLabels(s.content, images.ChildrenHandler(s.content))
	children = images.FilterPlatforms(children, platforms.Only(platforms.DefaultSpec()))
	children = images.LimitManifests(children, s.platform, 1)
	source, err := docker.AppendDistributionSourceLabel(s.content, named.String())
	if err != nil {
		return "", fmt.Errorf("distribution source label: %w", err)
	}
	handler := images.Handlers(remotes.FetchHandler(progress, fetcher), children, source)
	limiter := semaphore.NewWeighted(int64(settings.MaxConcurrentDownloads))
	dispatchErr := images.Dispatch(ctx, unpacker.Unpack(handler), limiter, desc)
	_, unpackErr := unpacker.Wait()
	if err := errors.Join(dispatchErr, unpackErr); err != nil {
		return "", s.pullError(ctx, named, err)
	}

	r, err := s.describe(ctx, named, desc)
	if err != nil {
		return "", err
	}
	if err := s.register(ctx, r, desc); err != nil {
		return "", err
	}
	s.opts.Logger.InfoContext(ctx, "image pulled", "ref", named.String(), "id", r.id,
		"size", r.size, "duration", time.Since(start).Round(time.Millisecond))
	return r.id, nil
}

// failureReason names the class of a failed pull for the failures metric
// ("" for success), from the classification pullError gave it.
func failureReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "deadline"
	case errdefs.IsAborted(err):
		return "stalled"
	case errdefs.IsUnauthorized(err):
		return "unauthenticated"
	case errdefs.IsNotFound(err):
		return "not_found"
	case errdefs.IsUnavailable(err):
		return "unreachable"
	case errdefs.IsDataLoss(err):
		return "corrupt"
	default:
		return "other"
	}
}

// stalledError is the cause of a pull cancelled for lack of progress; it
// carries the timeout that pull ran with (a reload may change the setting
// meanwhile).
type stalledError struct{ after time.Duration }

func (e stalledError) Error() string { return fmt.Sprintf("no bytes received for %s", e.after) }

// pullError classifies a failed pull for the client: the caller's deadline
// or cancellation, a stall, an authentication failure, an unknown image, an
// unreachable registry, or a corrupt blob.
func (s *Service) pullError(ctx context.Context, named reference.Named, err error) error {
	var stalled stalledError
	if errors.As(context.Cause(ctx), &stalled) {
		return fmt.Errorf("pull %s: %s, aborted: %w", named, stalled, errdefs.ErrAborted)
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("pull %s: %w", named, ctxErr)
	}
	var status remoteerrors.ErrUnexpectedStatus
	if (errors.As(err, &status) && (status.StatusCode == http.StatusUnauthorized || status.StatusCode == http.StatusForbidden)) ||
		errors.Is(err, docker.ErrInvalidAuthorization) || strings.Contains(err.Error(), "401 Unauthorized") {
		return fmt.Errorf("pull %s: authentication failed: %v: %w", named, err, errdefs.ErrUnauthenticated)
	}
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("pull %s: %v: %w", named, err, errdefs.ErrNotFound)
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return fmt.Errorf("pull %s: registry unreachable: %v: %w", named, err, errdefs.ErrUnavailable)
	}
	if errdefs.IsFailedPrecondition(err) && strings.Contains(err.Error(), "digest") {
		return fmt.Errorf("pull %s: content does not match its digest: %v: %w", named, err, errdefs.ErrDataLoss)
	}
	return fmt.Errorf("pull %s: %w", named, err)
}

// progressIngester records when bytes last arrived, so a stalled pull can
// be aborted.
type progressIngester struct {
	content.Ingester
	last atomic.Int64 // unix nanoseconds of the last write
	// Bytes written, and bytes of blobs already present (not fetched).
	fetched, present atomic.Int64
}

func (p *progressIngester) touch() { p.last.Store(time.Now().UnixNano()) }

func (p *progressIngester) Writer(ctx context.Context, opts ...content.WriterOpt) (content.Writer, error) {
	w, err := p.Ingester.Writer(ctx, opts...)
	if errdefs.IsAlreadyExists(err) {
		var wo content.WriterOpts
		for _, o := range opts {
			_ = o(&wo)
		}
		p.present.Add(wo.Desc.Size)
	}
	if err != nil {
		return nil, err
	}
	p.touch()
	return &progressWriter{Writer: w, p: p}, nil
}

type progressWriter struct {
	content.Writer
	p *progressIngester
}

func (w *progressWriter) Write(b []byte) (int, error) {
	w.p.touch()
	n, err := w.Writer.Write(b)
	w.p.fetched.Add(int64(n))
	return n, err
}

// watch cancels the pull when no write happens for timeout.
func (p *progressIngester) watch(ctx context.Context, timeout time.Duration, cancel context.CancelCauseFunc) {
	tick := time.NewTicker(timeout / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if now.Sub(time.Unix(0, p.last.Load())) > timeout {
				cancel(stalledError{timeout})
				return
			}
		}
	}
}

// pullGroup runs one pull per key at a time; callers that arrive while it
// runs wait for its result. The pull runs on its own context, cancelled
// only when every waiter has gone, so one caller's deadline does not fail
// the others.
type pullGroup struct {
	mu    sync.Mutex
	calls map[string]*pullCall // guarded by mu
}

type pullCall struct {
	done    chan struct{}
	id      string
	err     error
	waiters int // guarded by pullGroup.mu
	cancel  context.CancelFunc
}

func (g *pullGroup) do(ctx context.Context, key string, fn func(context.Context) (string, error)) (string, error) {
	g.mu.Lock()
	c, ok := g.calls[key]
	if !ok {
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &pullCall{done: make(chan struct{}), cancel: cancel}
		g.calls[key] = c
		go func() {
			c.id, c.err = fn(pctx)
			cancel()
			g.mu.Lock()
			if g.calls[key] == c {
				delete(g.calls, key)
			}
			g.mu.Unlock()
			close(c.done)
		}()
	}
	c.waiters++
	g.mu.Unlock()

	select {
	case <-c.done:
		return c.id, c.err
	case <-ctx.Done():
		g.mu.Lock()
		c.waiters--
		if c.waiters == 0 {
			// Abandoned: stop it, and let the next caller start afresh
			// rather than join a cancelled pull.
			c.cancel()
			if g.calls[key] == c {
				delete(g.calls, key)
			}
		}
		g.mu.Unlock()
		return "", fmt.Errorf("pull: %w", ctx.Err())
	}
}
