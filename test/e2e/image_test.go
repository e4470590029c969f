package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// testImage is a small random image (two layers) for the host platform,
// running as user.
func testImage(t *testing.T, user string) v1.Image {
	t.Helper()
	img, err := random.Image(4096, 2)
	if err != nil {
		t.Fatal(err)
	}
	return withPlatform(t, img, "amd64", user)
}

func withPlatform(t *testing.T, img v1.Image, arch, user string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.User = user
	cf.Config.Cmd = []string{"sh"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func push(t *testing.T, reg *e2eenv.Registry, path string, img v1.Image, opts ...remote.Option) {
	t.Helper()
	ref, err := name.ParseReference(reg.Host+"/"+path, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// imageEnv is a daemon whose hosts.toml directory sends the given registry
// hosts to a loopback registry.
type imageEnv struct {
	reg    *e2eenv.Registry
	daemon *e2eenv.Daemon
	images runtime.ImageServiceClient
}

func newImageEnv(t *testing.T, hosts []string, extraConfig string, mw ...e2eenv.Middleware) *imageEnv {
	t.Helper()
	return newImageEnvWith(t, hosts, e2eenv.DaemonOptions{ExtraConfig: extraConfig}, mw...)
}

// newImageEnvWith is newImageEnv with more daemon options (Dir and the
// registry config are filled in).
func newImageEnvWith(t *testing.T, hosts []string, opts e2eenv.DaemonOptions, mw ...e2eenv.Middleware) *imageEnv {
	t.Helper()
	reg, err := e2eenv.StartRegistry(mw...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	dir := t.TempDir()
	hostsDir := filepath.Join(dir, "hosts")
	if err := e2eenv.WriteHostsDir(hostsDir, reg.Host, hosts); err != nil {
		t.Fatal(err)
	}
	opts.Dir, opts.RegistryConfigPath = dir, hostsDir
	d := startDaemon(t, opts)
	conn, err := e2eenv.Dial(d.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &imageEnv{reg: reg, daemon: d, images: runtime.NewImageServiceClient(conn)}
}

func (e *imageEnv) pull(ctx context.Context, ref string, auth *runtime.AuthConfig) (string, error) {
	resp, err := e.images.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}, Auth: auth})
	return resp.GetImageRef(), err
}

func (e *imageEnv) status(t *testing.T, ref string) *runtime.Image {
	t.Helper()
	resp, err := e.images.ImageStatus(t.Context(), &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("ImageStatus(%q): %v", ref, err)
	}
	return resp.Image
}

func (e *imageEnv) list(t *testing.T) []*runtime.Image {
	t.Helper()
	resp, err := e.images.ListImages(t.Context(), &runtime.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Images
}

// countFiles counts regular files under dir (blobs, snapshot contents).
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

func countDirs(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(entries)
}

func TestPullInspectListRemove(t *testing.T) {
	e := newImageEnv(t, []string{"e2e.test"}, "")
	img := testImage(t, "1234:55")
	push(t, e.reg, "team/app:1", img)
	push(t, e.reg, "team/app:2", img)
	wantID, _ := img.ConfigName()
	manifest, _ := img.Digest()

	t.Log("pulling one image under two tags through the hosts.toml mirror")
	id1, err := e.pull(t.Context(), "e2e.test/team/app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	id2, err := e.pull(t.Context(), "e2e.test/team/app:2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if id1 != wantID.String() || id2 != id1 {
		t.Fatalf("image refs %s, %s; want the config digest %s", id1, id2, wantID)
	}

	s := e.status(t, "e2e.test/team/app:1")
	wantDigest := "e2e.test/team/app@" + manifest.String()
	if strings.Join(s.RepoTags, ",") != "e2e.test/team/app:1,e2e.test/team/app:2" ||
		strings.Join(s.RepoDigests, ",") != wantDigest || s.Uid.GetValue() != 1234 || s.Username != "" || s.Size == 0 {
		t.Fatalf("ImageStatus = %+v", s)
	}
	for _, ref := range []string{id1, id1[:19], strings.TrimPrefix(id1, "sha256:")[:12], "e2e.test/team/app:2", wantDigest} {
		if got := e.status(t, ref); got.GetId() != id1 {
			t.Errorf("ImageStatus(%q) = %v, want %s", ref, got, id1)
		}
	}
	if got := e.status(t, "e2e.test/team/app:3"); got != nil {
		t.Errorf("ImageStatus of an unknown tag = %+v, want no image", got)
	}

	verbose, err := e.images.ImageStatus(t.Context(), &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: id1}, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		ChainID   string `json:"chainID"`
		ImageSpec struct {
			Config struct{ User string }
		} `json:"imageSpec"`
	}
	if err := json.Unmarshal([]byte(verbose.Info["info"]), &info); err != nil || !strings.HasPrefix(info.ChainID, "sha256:") || info.ImageSpec.Config.User != "1234:55" {
		t.Fatalf("verbose info = %q (%v)", verbose.Info["info"], err)
	}

	if imgs := e.list(t); len(imgs) != 1 || imgs[0].Id != id1 {
		t.Fatalf("ListImages = %v", imgs)
	}
	filtered, err := e.images.ListImages(t.Context(), &runtime.ListImagesRequest{Filter: &runtime.ImageFilter{Image: &runtime.ImageSpec{Image: "e2e.test/team/app:2"}}})
	if err != nil || len(filtered.Images) != 1 {
		t.Fatalf("ListImages(filter) = %v, %v", filtered, err)
	}

	blobs := filepath.Join(e.daemon.Root, "content", "blobs", "sha256")
	snaps := filepath.Join(e.daemon.Root, "snapshots", "overlayfs", "snapshots")
	if countFiles(t, blobs) == 0 || countDirs(t, snaps) != 2 {
		t.Fatalf("after pull: %d blobs, %d snapshots; want blobs and 2 layer snapshots", countFiles(t, blobs), countDirs(t, snaps))
	}

	t.Log("removing by one tag removes the image, every tag, and (through GC) its blobs and snapshots")
	if _, err := e.images.RemoveImage(t.Context(), &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: "e2e.test/team/app:1"}}); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{id1, "e2e.test/team/app:2"} {
		if got := e.status(t, ref); got != nil {
			t.Errorf("after remove, ImageStatus(%q) = %v", ref, got)
		}
	}
	if n, m := countFiles(t, blobs), countDirs(t, snaps); n != 0 || m != 0 {
		t.Errorf("after remove: %d blobs and %d snapshots left", n, m)
	}
	if _, err := e.images.RemoveImage(t.Context(), &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: id1}}); err != nil {
		t.Errorf("second remove of the same image: %v", err)
	}
}

func TestPullShortNameThroughDockerHubMirror(t *testing.T) {
	e := newImageEnv(t, []string{"docker.io"}, "")
	img := testImage(t, "www-data")
	push(t, e.reg, "library/busybox:latest", img)
	if _, err := e.pull(t.Context(), "busybox", nil); err != nil {
		t.Fatal(err)
	}
	s := e.status(t, "busybox")
	if strings.Join(s.RepoTags, ",") != "docker.io/library/busybox:latest" || s.Username != "www-data" || s.Uid != nil {
		t.Fatalf("ImageStatus(busybox) = %+v", s)
	}
	t.Log("images survive a restart")
	if err := e.daemon.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn, err := e2eenv.Dial(e.daemon.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	e.images = runtime.NewImageServiceClient(conn)
	if got := e.status(t, "docker.io/library/busybox:latest"); got.GetId() != s.Id {
		t.Fatalf("after restart: %v", got)
	}
}

func TestPullWithBasicAuth(t *testing.T) {
	e := newImageEnv(t, []string{"private.test"}, "", e2eenv.BasicAuth("alice", "s3cret"))
	push(t, e.reg, "secret/app:1", testImage(t, ""), remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"}))

	_, err := e.pull(t.Context(), "private.test/secret/app:1", nil)
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("pull without credentials: err = %v, want Unauthenticated saying authentication failed", err)
	}
	_, err = e.pull(t.Context(), "private.test/secret/app:1", &runtime.AuthConfig{Username: "alice", Password: "wrong"})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("pull with a wrong password: err = %v", err)
	}
	if _, err := e.pull(t.Context(), "private.test/secret/app:1", &runtime.AuthConfig{Username: "alice", Password: "s3cret"}); err != nil {
		t.Fatalf("pull with username/password: %v", err)
	}
	if _, err := e.images.RemoveImage(t.Context(), &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: "private.test/secret/app:1"}}); err != nil {
		t.Fatal(err)
	}
	auth := base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	if _, err := e.pull(t.Context(), "private.test/secret/app:1", &runtime.AuthConfig{Auth: auth}); err != nil {
		t.Fatalf("pull with the auth field: %v", err)
	}
}

func TestPullSelectsHostPlatformFromIndex(t *testing.T) {
	var blobGets sync.Map // digest → count
	count := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				d := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
				n, _ := blobGets.LoadOrStore(d, new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
	e := newImageEnv(t, []string{"multi.test"}, "", count)
	arm := withPlatform(t, mustRandom(t), "arm64", "")
	amd := withPlatform(t, mustRandom(t), "amd64", "")
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	ref, _ := name.ParseReference(e.reg.Host+"/multi/app:1", name.Insecure)
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	id, err := e.pull(t.Context(), "multi.test/multi/app:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	wantID, _ := amd.ConfigName()
	if id != wantID.String() {
		t.Fatalf("pulled %s, want the amd64 image %s", id, wantID)
	}
	armLayers, _ := arm.Layers()
	for _, l := range armLayers {
		d, _ := l.Digest()
		if _, fetched := blobGets.Load(d.String()); fetched {
			t.Errorf("arm64 layer %s was fetched", d)
		}
	}
	idxDigest, _ := idx.Digest()
	if s := e.status(t, id); strings.Join(s.RepoDigests, ",") != "multi.test/multi/app@"+idxDigest.String() {
		t.Errorf("repo digest = %v, want the index digest %s", s.RepoDigests, idxDigest)
	}
}

func mustRandom(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(2048, 1)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestConcurrentPullsShareOneFetch(t *testing.T) {
	var layerGets atomic.Int32
	count := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				layerGets.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
	e := newImageEnv(t, []string{"e2e.test"}, "", count)
	img := testImage(t, "")
	push(t, e.reg, "team/app:1", img)
	layerGets.Store(0)

	const pullers = 6
	var wg sync.WaitGroup
	ids := make([]string, pullers)
	errs := make([]error, pullers)
	for i := range pullers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = e.pull(context.Background(), "e2e.test/team/app:1", nil)
		}()
	}
	wg.Wait()
	for i := range pullers {
		if errs[i] != nil || ids[i] != ids[0] {
			t.Fatalf("puller %d: %s, %v", i, ids[i], errs[i])
		}
	}
	// The config and two layers: each fetched at most once per pull that
	// actually ran. Callers that overlap share one pull, so fewer than
	// pullers × 3 fetches happened; with full overlap, exactly 3.
	if n := layerGets.Load(); n >= pullers*3 {
		t.Fatalf("%d blob fetches for %d concurrent pulls: no deduplication", n, pullers)
	}
}

func TestPullBadInput(t *testing.T) {
	corrupt := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/corrupt/app/blobs/") {
				rec := &bodyRewriter{ResponseWriter: w}
				next.ServeHTTP(rec, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	e := newImageEnv(t, []string{"e2e.test"}, "", corrupt)
	push(t, e.reg, "corrupt/app:1", testImage(t, ""))

	_, err := e.pull(t.Context(), "Not A Reference", nil)
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("invalid reference: err = %v, want InvalidArgument", err)
	}
	_, err = e.pull(t.Context(), "", nil)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "image.image") {
		t.Errorf("empty reference: err = %v, want InvalidArgument naming the field", err)
	}

	// A registry host nobody listens on: the error names it.
	hostsDir := filepath.Join(e.daemon.Root, "..", "hosts")
	if err := e2eenv.WriteHostsDir(hostsDir, "127.0.0.1:1", []string{"down.test"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.pull(t.Context(), "down.test/x/y:1", nil)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("unreachable registry: err = %v, want Unavailable naming 127.0.0.1:1", err)
	}

	_, err = e.pull(t.Context(), "e2e.test/corrupt/app:1", nil)
	if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "does not match its digest") {
		t.Fatalf("pull of a blob that does not match its digest: err = %v, want DataLoss", err)
	}
	if imgs := e.list(t); len(imgs) != 0 {
		t.Fatalf("a failed pull registered images: %v", imgs)
	}
}

// bodyRewriter flips the first byte of a response body.
type bodyRewriter struct {
	http.ResponseWriter
	done bool
}

func (b *bodyRewriter) Write(p []byte) (int, error) {
	if !b.done && len(p) > 0 {
		q := append([]byte{}, p...)
		q[0] ^= 0xff
		b.done = true
		return b.ResponseWriter.Write(q)
	}
	return b.ResponseWriter.Write(p)
}

// stall blocks GETs of one blob until release is closed, signalling
// reached the first time.
type stall struct {
	digest  string
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *stall) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/blobs/"+s.digest) {
			s.once.Do(func() { close(s.reached) })
			select {
			case <-s.release:
			case <-r.Context().Done():
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func newStall(t *testing.T, img v1.Image) *stall {
	t.Helper()
	layers, _ := img.Layers()
	d, _ := layers[len(layers)-1].Digest()
	s := &stall{digest: d.String(), reached: make(chan struct{}), release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-s.release:
		default:
			close(s.release)
		}
	})
	return s
}

func TestStalledPullAborts(t *testing.T) {
	img := testImage(t, "")
	st := newStall(t, img)
	e := newImageEnv(t, []string{"e2e.test"}, "", st.middleware)
	// A second daemon config knob: abort after one second without bytes.
	push(t, e.reg, "team/app:1", img)
	if err := e.daemon.Stop(); err != nil {
		t.Fatal(err)
	}
	cfg, _ := os.ReadFile(e.daemon.Config)
	if err := os.WriteFile(e.daemon.Config, []byte(string(cfg)+"\n[image]\npull_progress_timeout = \"1s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.daemon.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn, _ := e2eenv.Dial(e.daemon.Socket)
	defer conn.Close()
	e.images = runtime.NewImageServiceClient(conn)

	_, err := e.pull(t.Context(), "e2e.test/team/app:1", nil)
	if status.Code(err) != codes.Aborted || !strings.Contains(err.Error(), "no bytes received") {
		t.Fatalf("stalled pull: err = %v, want Aborted saying no bytes received", err)
	}
	if imgs := e.list(t); len(imgs) != 0 {
		t.Fatalf("aborted pull registered images: %v", imgs)
	}
}

func TestSIGKILLDuringPullLeavesNothing(t *testing.T) {
	img := testImage(t, "")
	st := newStall(t, img)
	e := newImageEnv(t, []string{"e2e.test"}, "", st.middleware)
	push(t, e.reg, "team/app:1", img)

	pullDone := make(chan error, 1)
	go func() {
		_, err := e.pull(context.Background(), "e2e.test/team/app:1", nil)
		pullDone <- err
	}()
	<-st.reached
	t.Log("pull is mid-flight (one layer fetched, one stalled): SIGKILL the daemon")
	e.daemon.Kill()
	if err := <-pullDone; err == nil {
		t.Fatal("pull succeeded although the daemon was killed")
	}
	close(st.release)
	if err := e.daemon.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn, _ := e2eenv.Dial(e.daemon.Socket)
	defer conn.Close()
	e.images = runtime.NewImageServiceClient(conn)
	if imgs := e.list(t); len(imgs) != 0 {
		t.Fatalf("half-pulled image registered after restart: %v", imgs)
	}
	blobs := filepath.Join(e.daemon.Root, "content", "blobs", "sha256")
	snaps := filepath.Join(e.daemon.Root, "snapshots", "overlayfs", "snapshots")
	if n, m := countFiles(t, blobs), countDirs(t, snaps); n != 0 || m != 0 {
		t.Fatalf("after restart and GC: %d blobs and %d snapshots left from the interrupted pull", n, m)
	}
	if !strings.Contains(e.daemon.Log(), "dropped leases of interrupted pulls") {
		t.Errorf("recovery did not report the interrupted pull:\n%s", e.daemon.Log())
	}
	t.Log("the same pull now succeeds")
	if _, err := e.pull(t.Context(), "e2e.test/team/app:1", nil); err != nil {
		t.Fatal(err)
	}
}
