// Package e2eenv starts the real parts berth's end-to-end tests and the
// conformance harness run against: a berth daemon (the built binary, with a
// private root, state and socket), an OCI registry on loopback, and CNI
// configs.
package e2eenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Registry is an in-process OCI registry on 127.0.0.1.
type Registry struct {
	Host   string // "127.0.0.1:PORT"
	server *http.Server
}

// Middleware wraps the registry's handler: to require auth, count, stall or
// corrupt requests in tests.
type Middleware func(http.Handler) http.Handler

// StartRegistry serves go-containerregistry's registry on a free loopback
// port until Close, behind the given middleware (outermost first).
func StartRegistry(mw ...Middleware) (*Registry, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for registry: %w", err)
	}
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(lis)
	return &Registry{Host: lis.Addr().String(), server: srv}, nil
}

// Close stops the registry.
func (r *Registry) Close() error { return r.server.Close() }

// BasicAuth requires HTTP basic authentication with user and password.
func BasicAuth(user, password string) Middleware {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="berth-e2e"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// WriteHostsDir writes <dir>/<host>/hosts.toml for each host, in
// containerd's layout, sending pulls to the registry at server over plain
// HTTP with no fallback to the upstream host.
func WriteHostsDir(dir, server string, hosts []string) error {
	body := fmt.Sprintf("# Written by berth's e2e tests: %[1]s only, never upstream.\nserver = \"http://%[1]s\"\n\n[host.\"http://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", server)
	for _, h := range hosts {
		p := filepath.Join(dir, h, "hosts.toml")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// DefaultCNIConfig is the pod network the tests give berth: a bridge with
// host-local IPAM, portmap for host ports, and loopback, all from Debian's
// containernetworking-plugins.
const DefaultCNIConfig = `{
  "cniVersion": "1.0.0",
  "name": "berth-e2e",
  "plugins": [
    {"type": "bridge", "bridge": "berth-e2e0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.201.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
`

// WriteCNIConfig writes DefaultCNIConfig into dir.
func WriteCNIConfig(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "10-berth-e2e.conflist"), []byte(DefaultCNIConfig), 0o644)
}

// DaemonOptions say how to start berth.
type DaemonOptions struct {
	Binary string // the berth binary
	Dir    string // holds root/, state/, berth.sock, config.toml and berth.log
	// RegistryConfigPath is the hosts.toml directory ("" for none).
	RegistryConfigPath string
	// CNIConfDir and CNIBinDirs configure the pod network.
	CNIConfDir string
	CNIBinDirs []string
	// DefaultNetwork lets berth write its default CNI network into an
	// empty CNIConfDir (off in tests, which bring their own).
	DefaultNetwork bool
	// Handler is the default RuntimeClass handler; "" means
	// $BERTH_E2E_HANDLER, else runc. RuntimeConfig is added to the
	// [runtime] table (e.g. "pause_container = true").
	Handler, RuntimeConfig string
	// NRIConfig is added to the [nri] table, whose socket_path is the
	// daemon's own (<Dir>/nri.sock), never the host's. NoNRITable leaves
	// the table out, for a berth that predates it (v0.1.0).
	NRIConfig  string
	NoNRITable bool
	// ExtraConfig is appended to the generated config.toml (other tables).
	ExtraConfig string
	// LogLevel is the daemon's [log] level; "" means debug, which tests
	// read when they fail (benchmarks run berth at its default, info).
	LogLevel string
}

// Daemon is a running berth process.
type Daemon struct {
	Socket     string
	Root       string
	State      string
	Config     string
	LogPath    string
	NRISocket  string // where NRI plugins connect
	cmd        *exec.Cmd
	exited     chan struct{}
	waitErr    error
	nextBinary string // for the next Restart, when set
}

// DefaultHandler is the RuntimeClass handler tests run berth's pods on by
// default: $BERTH_E2E_HANDLER (e.g. crun), else runc.
func DefaultHandler() string {
	if h := os.Getenv("BERTH_E2E_HANDLER"); h != "" {
		return h
	}
	return "runc"
}

// StartDaemon writes a config, starts berth and waits until it serves CRI
// calls (recovery finished). The process is stopped by Stop.
func StartDaemon(ctx context.Context, o DaemonOptions) (*Daemon, error) {
	d := &Daemon{
		Socket:    filepath.Join(o.Dir, "berth.sock"),
		Root:      filepath.Join(o.Dir, "root"),
		State:     filepath.Join(o.Dir, "state"),
		Config:    filepath.Join(o.Dir, "config.toml"),
		LogPath:   filepath.Join(o.Dir, "berth.log"),
		NRISocket: filepath.Join(o.Dir, "nri.sock"),
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	if err := traversable(o.Dir); err != nil {
		return nil, err
	}
	bins := make([]string, len(o.CNIBinDirs))
	for i, b := range o.CNIBinDirs {
		bins[i] = fmt.Sprintf("%q", b)
	}
	handler := o.Handler
	if handler == "" {
		handler = DefaultHandler()
	}
	nriTable := fmt.Sprintf("[nri]\nsocket_path = %q\n%s\n", d.NRISocket, o.NRIConfig)
	if o.NoNRITable {
		nriTable = ""
	}
	logLevel := o.LogLevel
	if logLevel == "" {
		logLevel = "debug"
	}
	cfg := fmt.Sprintf("address = %q\nroot = %q\nstate = %q\nshutdown_timeout = \"10s\"\n\n[log]\nlevel = %q\n\n[registry]\nconfig_path = %q\n\n[cni]\nconf_dir = %q\nbin_dirs = [%s]\ndefault_network = %v\n\n[runtime]\ndefault_handler = %q\n%s\n\n%s%s",
		d.Socket, d.Root, d.State, logLevel, o.RegistryConfigPath, o.CNIConfDir, strings.Join(bins, ", "), o.DefaultNetwork, handler, o.RuntimeConfig, nriTable, o.ExtraConfig)
	if err := os.WriteFile(d.Config, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	if err := d.start(ctx, o.Binary); err != nil {
		return nil, err
	}
	return d, nil
}

// traversable lets every user search dir and its ancestors below the
// temporary directory (o+x), as the path to berth's state directory must
// be for pods in user namespaces: their root is an unprivileged host user
// when the runtime reaches the rootfs. Temporary directories are made
// 0700; nothing outside the temporary directory is changed.
func traversable(dir string) error {
	tmp := filepath.Clean(os.TempDir())
	for p := filepath.Clean(dir); strings.HasPrefix(p, tmp+string(filepath.Separator)); p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode().Perm()&0o001 != 0 {
			continue
		}
		if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
			return err
		}
	}
	return nil
}

func (d *Daemon) start(ctx context.Context, binary string) error {
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	d.cmd = exec.Command(binary, "--config", d.Config)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start berth: %w", err)
	}
	d.exited = make(chan struct{})
	go func() {
		d.waitErr = d.cmd.Wait()
		logf.Close()
		close(d.exited)
	}()
	if err := d.waitReady(ctx); err != nil {
		d.Kill()
		return fmt.Errorf("%w\n--- berth log ---\n%s", err, d.Log())
	}
	return nil
}

// waitReady calls Version until it succeeds: the socket exists and the
// recovery gate is open.
func (d *Daemon) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Retry connecting quickly: the socket appears within milliseconds, and
	// gRPC's default one-second backoff would dominate every start.
	conn, err := grpc.NewClient("unix://"+d.Socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.5, MaxDelay: 100 * time.Millisecond},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := runtime.NewRuntimeServiceClient(conn)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		// Bound each attempt, so that a process exit is noticed even when
		// something that is not berth holds the socket.
		attempt, cancel := context.WithTimeout(ctx, time.Second)
		_, err := client.Version(attempt, &runtime.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("berth exited before serving: %v", d.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("berth did not become ready: last error %v", err)
		case <-tick.C:
		}
	}
}

// Restart stops the daemon with SIGTERM, unless it has already exited (a
// SIGKILL), and starts it again on the same root, state and socket.
func (d *Daemon) Restart(ctx context.Context) error {
	select {
	case <-d.exited:
	default:
		if err := d.Stop(); err != nil {
			return err
		}
	}
	bin := d.cmd.Path
	if d.nextBinary != "" {
		bin, d.nextBinary = d.nextBinary, ""
	}
	return d.start(ctx, bin)
}

// AddConfig appends TOML tables to the daemon's config file, for its next
// (re)start.
func (d *Daemon) AddConfig(tables string) error {
	f, err := os.OpenFile(d.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("\n" + tables)
	return errors.Join(err, f.Close())
}

// AddNRITable gives a daemon started with NoNRITable its own NRI socket:
// an upgrade's step for a binary that has NRI.
func (d *Daemon) AddNRITable() error {
	return d.AddConfig(fmt.Sprintf("[nri]\nsocket_path = %q\n", d.NRISocket))
}

// SetBinary makes the next Restart run binary: an upgrade in place.
func (d *Daemon) SetBinary(binary string) { d.nextBinary = binary }

// Stop sends SIGTERM and waits for the daemon to exit; a non-zero exit is an
// error.
func (d *Daemon) Stop() error {
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-d.exited:
	case <-time.After(30 * time.Second):
		d.Kill()
		return errors.New("berth did not exit within 30s of SIGTERM")
	}
	if d.waitErr != nil {
		return fmt.Errorf("berth exited: %v\n--- berth log ---\n%s", d.waitErr, d.Log())
	}
	return nil
}

// Kill sends SIGKILL and waits for the process to go.
func (d *Daemon) Kill() {
	_ = d.cmd.Process.Kill()
	<-d.exited
}

// Pid is the daemon's process ID.
func (d *Daemon) Pid() int { return d.cmd.Process.Pid }

// Exited is closed when the process has exited.
func (d *Daemon) Exited() <-chan struct{} { return d.exited }

// servedURL matches the line the daemon logs for each HTTP endpoint it
// serves ("serving metrics", "serving profiles"), with the URL.
var servedURL = regexp.MustCompile(`msg="serving (\w+)" address=(http://\S+)`)

// ServedURL is the URL the daemon last logged for what ("metrics" or
// "profiles"), and whether it logged one.
func (d *Daemon) ServedURL(what string) (string, bool) {
	url, ok := "", false
	for _, m := range servedURL.FindAllStringSubmatch(d.Log(), -1) {
		if m[1] == what {
			url, ok = m[2], true
		}
	}
	return url, ok
}

// Log returns what the daemon has logged so far.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.LogPath)
	return string(b)
}

// Dial connects to a CRI socket.
func Dial(socket string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// RemoveAllPods removes every pod the runtime at socket lists (removal
// stops a pod still running) and returns how many it listed. It dials
// afresh: test cleanups run last to first, so a connection made later may
// be closed already. Every pod is tried; the errors are joined.
func RemoveAllPods(ctx context.Context, socket string) (int, error) {
	conn, err := Dial(socket)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	list, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		return 0, fmt.Errorf("list pods: %w", err)
	}
	var errs []error
	for _, sb := range list.Items {
		if _, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			errs = append(errs, fmt.Errorf("remove pod %s: %w", sb.Id, err))
		}
	}
	return len(list.Items), errors.Join(errs...)
}
