package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-cri/berth/internal/atomicfile"
	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/cri"
	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/tracing"
)

// ReloadResult is what the last config reload did, as the daemon writes it
// to <state>/reload.json for `berth config reload` to read.
type ReloadResult struct {
	// Generation counts reloads since the daemon started (1 is the first).
	Generation uint64 `json:"generation"`
	OK         bool   `json:"ok"`
	Error      string `json:"error,omitempty"`
	// Changed are the keys that took effect, "key: old -> new".
	Changed []string `json:"changed,omitempty"`
	// NeedsRestart are changed keys that take effect only at the next start.
	NeedsRestart []string `json:"needs_restart,omitempty"`
}

// ReloadResultFile is where a daemon with state directory state writes its
// last ReloadResult.
func ReloadResultFile(state string) string { return filepath.Join(state, "reload.json") }

// PidFile is where a daemon with state directory state writes its PID.
func PidFile(state string) string { return filepath.Join(state, "berth.pid") }

// restartOnly are the keys (or key prefixes, ending in ".") that only a
// restart applies: what the daemon opened or laid out at start.
var restartOnly = []string{
	"address", "root", "state", "image.snapshotter", "image.sandbox_image",
	"runtime.monitor_path", "runtime.cgroup_driver", "runtime.pause_container",
	"cni.default_network", "streaming.", "cdi.", "nri.", "shutdown_timeout",
}

func needsRestart(key string) bool {
	for _, k := range restartOnly {
		if key == k || (strings.HasSuffix(k, ".") && strings.HasPrefix(key, k)) {
			return true
		}
	}
	return false
}

// reloader applies a new config to the running daemon. One reload at a
// time; calls in flight finish on the view they started with (each part
// swaps its live settings whole).
type reloader struct {
	mu      sync.Mutex
	cfg     config.Config // in force (restart-only keys as at start)
	load    func() (config.Config, error)
	logger  *Logger
	svc     *cri.Service
	images  *image.Service
	tracing *tracing.Switch
	metrics *endpoint
	debug   *endpoint
	state   string
	gen     uint64
}

// watch reloads on every SIGHUP received on hup until stop is closed.
func (r *reloader) watch(hup <-chan os.Signal, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-hup:
			r.reload()
		}
	}
}

// reload reads and validates the whole config first: if anything is wrong
// nothing changes. The fallible steps (listening on new addresses) come
// before every change, so a failure leaves the daemon as it was.
func (r *reloader) reload() ReloadResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.gen++
	res := ReloadResult{Generation: r.gen}
	next, err := r.load()
	if err == nil {
		err = r.apply(next, &res)
	}
	if err != nil {
		res.OK, res.Error = false, err.Error()
		r.logger.Error("config reload refused; nothing changed", "error", err)
	} else {
		res.OK = true
		r.logger.Info("config reloaded", "changed", res.Changed, "needs_restart", res.NeedsRestart)
	}
	if b, err := json.Marshal(res); err == nil {
		if err := atomicfile.Write(ReloadResultFile(r.state), b, 0o644); err != nil {
			r.logger.Error("write reload result", "error", err)
		}
	}
	return res
}

func (r *reloader) apply(next config.Config, res *ReloadResult) error {
	changes, err := configDiff(r.cfg, next)
	if err != nil {
		return err
	}
	applied := r.cfg
	for _, c := range changes {
		if needsRestart(c.key) {
			res.NeedsRestart = append(res.NeedsRestart, c.key)
			continue
		}
		res.Changed = append(res.Changed, fmt.Sprintf("%s: %s -> %s", c.key, c.old, c.new))
	}
	// Keep the restart-only keys as they are in force, take the rest.
	live := next
	live.Address, live.Root, live.State = applied.Address, applied.Root, applied.State
	live.Image.Snapshotter, live.Image.SandboxImage = applied.Image.Snapshotter, applied.Image.SandboxImage
	live.Runtime.MonitorPath, live.Runtime.CgroupDriver, live.Runtime.PauseContainer = applied.Runtime.MonitorPath, applied.Runtime.CgroupDriver, applied.Runtime.PauseContainer
	live.CNI.DefaultNetwork, live.Stream, live.CDI = applied.CNI.DefaultNetwork, applied.Stream, applied.CDI
	live.ShutdownTimeout = applied.ShutdownTimeout

	// Fallible first: new listeners.
	metricsNext, err := r.metrics.prepare(metricsAddress(live.Metrics.Address))
	if err != nil {
		return fmt.Errorf("metrics.address: %w", err)
	}
	debugNext, err := r.debug.prepare(live.Debug.Address)
	if err != nil {
		metricsNext.abandon()
		return fmt.Errorf("debug.address: %w", err)
	}
	var tracesNext *tracing.Tracing
	if live.Tracing != r.cfg.Tracing {
		if tracesNext, err = tracing.Setup(context.Background(), live.Tracing); err != nil {
			metricsNext.abandon()
			debugNext.abandon()
			return fmt.Errorf("tracing: %w", err)
		}
	}
	// Then every change, none of which can fail.
	if err := r.logger.Set(live.Log.Level, live.Log.Format); err != nil {
		return err // validated: cannot happen
	}
	r.images.SetPullSettings(image.PullSettings{
		HostsDir:               live.Registry.ConfigPath,
		MaxConcurrentDownloads: live.Image.MaxConcurrentDownloads,
		ProgressTimeout:        live.Image.PullProgressTimeout.Duration,
	})
	r.svc.Reconfigure(live)
	r.metrics.commit(metricsNext)
	r.debug.commit(debugNext)
	if tracesNext != nil {
		old := r.tracing.Set(tracesNext)
		if tracesNext.On() {
			r.logger.Info("tracing CRI calls", "endpoint", tracesNext.Endpoint())
		}
		// Its buffered spans go out; new calls already use the new one.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = old.Shutdown(ctx)
		}()
	}
	r.cfg = live
	return nil
}

// change is one config key that differs.
type change struct{ key, old, new string }

// configDiff lists the keys whose values differ, by their TOML names
// (the JSON tags spell them the same), sorted.
func configDiff(a, b config.Config) ([]change, error) {
	fa, err := flatten(a)
	if err != nil {
		return nil, err
	}
	fb, err := flatten(b)
	if err != nil {
		return nil, err
	}
	var out []change
	for k, v := range fa {
		if w, ok := fb[k]; !ok || !reflect.DeepEqual(v, w) {
			out = append(out, change{k, show(v), show(fb[k])})
		}
	}
	for k, w := range fb {
		if _, ok := fa[k]; !ok {
			out = append(out, change{k, show(nil), show(w)})
		}
	}
	slices.SortFunc(out, func(x, y change) int { return strings.Compare(x.key, y.key) })
	return out, nil
}

func flatten(c config.Config) (map[string]any, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var tree map[string]any
	if err := json.Unmarshal(b, &tree); err != nil {
		return nil, err
	}
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if m, ok := v.(map[string]any); ok && len(m) > 0 {
			for k, x := range m {
				walk(prefix+k+".", x)
			}
			return
		}
		out[strings.TrimSuffix(prefix, ".")] = v
	}
	walk("", tree)
	return out, nil
}

func show(v any) string {
	if v == nil {
		return "(none)"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// endpoint is an HTTP server at a configured address that a reload can
// move: prepare listens on the new address, commit switches to it and
// stops the old server.
type endpoint struct {
	name    string
	path    string // where the handler serves, for the log line
	handler http.Handler
	addr    string // configured ("" when off)
	stop    func()
	logger  *Logger
	// onServe, if set, runs each time the endpoint starts serving an
	// address.
	onServe func()
}

type preparedEndpoint struct {
	configured, listening string
	stop                  func()
	same                  bool
}

func (e *endpoint) prepare(addr string) (*preparedEndpoint, error) {
	if addr == e.addr {
		return &preparedEndpoint{same: true}, nil
	}
	if addr == "" {
		return &preparedEndpoint{}, nil
	}
	listening, stop, err := serveHTTP(addr, e.handler)
	if err != nil {
		return nil, err
	}
	return &preparedEndpoint{configured: addr, listening: listening, stop: stop}, nil
}

func (p *preparedEndpoint) abandon() {
	if p != nil && p.stop != nil {
		p.stop()
	}
}

func (e *endpoint) commit(p *preparedEndpoint) {
	if p.same {
		return
	}
	if e.stop != nil {
		e.stop()
	}
	e.addr, e.stop = p.configured, p.stop
	if p.configured != "" {
		if e.onServe != nil {
			e.onServe()
		}
		e.logger.Info("serving "+e.name, "address", "http://"+p.listening+e.path)
	}
}

// close stops the server, if one runs.
func (e *endpoint) close() {
	if e.stop != nil {
		e.stop()
	}
}

// RequestReload asks the daemon whose state directory is state to reload
// its config (SIGHUP to the PID in its pid file) and waits up to timeout for
// the result it writes.
func RequestReload(state string, timeout time.Duration) (ReloadResult, error) {
	b, err := os.ReadFile(PidFile(state))
	if errors.Is(err, os.ErrNotExist) {
		return ReloadResult{}, fmt.Errorf("no berth daemon serves state directory %s (no %s)", state, PidFile(state))
	}
	if err != nil {
		return ReloadResult{}, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return ReloadResult{}, fmt.Errorf("pid file %s: %w", PidFile(state), err)
	}
	// A daemon killed outright leaves its pid file; the PID may be another
	// program's by now, which must not get the signal.
	if !isBerth(pid) {
		return ReloadResult{}, fmt.Errorf("no berth daemon serves state directory %s (pid %d in %s is not berth: a stale file)", state, pid, PidFile(state))
	}
	before, _ := readReloadResult(state)
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		return ReloadResult{}, fmt.Errorf("signal berth (pid %d): %w", pid, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		if res, err := readReloadResult(state); err == nil && res.Generation > before.Generation {
			return res, nil
		}
		if time.Now().After(deadline) {
			return ReloadResult{}, fmt.Errorf("berth (pid %d) did not answer within %s", pid, timeout)
		}
		time.Sleep(20 * time.Millisecond) // the daemon answers through a file
	}
}

// isBerth reports whether pid runs the berth daemon (its first argument
// names a program called berth).
func isBerth(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(b), "\x00")
	return filepath.Base(argv0) == "berth"
}

func readReloadResult(state string) (ReloadResult, error) {
	var res ReloadResult
	b, err := os.ReadFile(ReloadResultFile(state))
	if err != nil {
		return res, err
	}
	return res, json.Unmarshal(b, &res)
}
