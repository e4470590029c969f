// Package ociruntime is berth's set of RuntimeClass handlers: which OCI
// runtime binary each name runs, where that runtime keeps its state, and
// what it can do (from the runtime's own `features` report).
package ociruntime

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	runc "github.com/containerd/go-runc"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/layout"
)

// Handler is one RuntimeClass handler.
type Handler struct {
	Name string
	Path string // the runtime binary
	Root string // the runtime's --root: its container state
	// Replaced is the configured path when the handler runs its
	// userns_path instead (see Choose); "" otherwise.
	Replaced string
}

// Runc is a go-runc client for the handler's runtime.
func (h Handler) Runc() *runc.Runc { return &runc.Runc{Command: h.Path, Root: h.Root} }

// Features are what a handler's runtime supports, as CRI reports them.
type Features struct {
	RecursiveReadOnlyMounts bool
	UserNamespaces          bool
}

// Set is the configured handlers. It is safe for concurrent use.
type Set struct {
	defaultName string
	stateDir    string
	handlers    map[string]Handler

	mu       sync.Mutex
	features map[string]Features // probed once per handler whose binary answered; guarded by mu
}

// NewSet builds the handlers of cfg, their state under stateDir, choosing
// each one's runtime binary (Choose): it asks the runtimes what they can do.
func NewSet(ctx context.Context, cfg config.Runtime, stateDir string) *Set {
	s := &Set{defaultName: cfg.DefaultHandler, stateDir: stateDir, handlers: map[string]Handler{}, features: map[string]Features{}}
	for name, h := range cfg.Handlers {
		c := Choose(ctx, h)
		s.handlers[name] = Handler{Name: name, Path: c.Path, Root: s.root(name), Replaced: c.Replaced}
		if c.Probed {
			s.features[name] = c.Features
		}
	}
	return s
}

// Choice is the runtime binary a handler runs.
type Choice struct {
	Path     string
	Features Features
	Probed   bool   // Features came from the runtime (else it did not answer)
	Replaced string // the configured path, when UsernsPath was chosen instead
}

// Choose picks a handler's runtime: its path, unless that runtime cannot
// run pods in user namespaces (or does not run at all) and the one at
// userns_path can. A host with Debian's runc 1.1.5 and a current runc
// thus runs the current one on the default handler, and user namespaces
// work there.
func Choose(ctx context.Context, h config.Handler) Choice {
	f, err := probe(ctx, h.Path)
	c := Choice{Path: h.Path, Features: f, Probed: err == nil}
	if h.UsernsPath == "" || (c.Probed && f.UserNamespaces) {
		return c
	}
	uf, err := probe(ctx, h.UsernsPath)
	if err != nil || !uf.UserNamespaces {
		return c
	}
	return Choice{Path: h.UsernsPath, Features: uf, Probed: true, Replaced: h.Path}
}

func (s *Set) root(name string) string { return layout.State(s.stateDir).RuntimeRoot(name) }

// Recorded is the handler of a pod that was started on name ("" is the
// default): the configured one, or for a handler removed from the config
// since, the default's binary on that handler's state directory, where the
// pod's containers are.
func (s *Set) Recorded(name string) Handler {
	h, err := s.Get(name)
	if err != nil {
		h = s.Default()
		h.Name, h.Root = name, s.root(name)
	}
	return h
}

// Default is the handler of pods that name none.
func (s *Set) Default() Handler { return s.handlers[s.defaultName] }

// Get returns the handler called name ("" is the default). An unknown name
// is an InvalidArgument error that lists the configured ones.
func (s *Set) Get(name string) (Handler, error) {
	if name == "" {
		return s.Default(), nil
	}
	h, ok := s.handlers[name]
	if !ok {
		return Handler{}, fmt.Errorf("runtime_handler %q is not configured (handlers: %v): %w", name, s.Names(), errdefs.ErrInvalidArgument)
	}
	return h, nil
}

// Names lists the handler names, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.handlers))
	for n := range s.handlers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// All lists the handlers, sorted by name.
func (s *Set) All() []Handler {
	out := make([]Handler, 0, len(s.handlers))
	for _, n := range s.Names() {
		out = append(out, s.handlers[n])
	}
	return out
}

// Features reports what h's runtime supports. A runtime that cannot say
// (missing, or too old for `features`) supports nothing optional; it is
// asked again next time, in case it was installed meanwhile.
func (s *Set) Features(ctx context.Context, h Handler) Features {
	s.mu.Lock()
	f, ok := s.features[h.Name]
	s.mu.Unlock()
	if ok {
		return f
	}
	f, err := probe(ctx, h.Path)
	if err != nil {
		return Features{}
	}
	s.mu.Lock()
	s.features[h.Name] = f
	s.mu.Unlock()
	return f
}

// report is the part of the OCI runtime features document
// (runtime-spec features.md) berth reads.
type report struct {
	MountOptions []string `json:"mountOptions"`
	Linux        struct {
		Namespaces      []string `json:"namespaces"`
		MountExtensions struct {
			IDMap struct {
				Enabled *bool `json:"enabled"`
			} `json:"idmap"`
		} `json:"mountExtensions"`
	} `json:"linux"`
}

func probe(ctx context.Context, path string) (Features, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "features").Output()
	if err == nil {
		return parseReport(out)
	}
	// crun before 1.9 has no features command; what it supports is known
	// by version.
	ver, verr := exec.CommandContext(ctx, path, "--version").Output()
	if verr == nil {
		if f, ok := knownFeatures(string(ver)); ok {
			return f, nil
		}
	}
	return Features{}, fmt.Errorf("%s features: %w", path, err)
}

// knownFeatures are the features of runtimes too old to report them, from
// their `--version` output: crun 1.8 (Debian 12 ships 1.8.1) makes "rro"
// mounts with mount_setattr and idmapped bind mounts from a mount's
// uidMappings/gidMappings, so it can run pods in user namespaces (the
// e2e suite's TestUserNamespaces passes on it).
func knownFeatures(version string) (Features, bool) {
	var major, minor int
	if _, err := fmt.Sscanf(version, "crun version %d.%d", &major, &minor); err != nil {
		return Features{}, false
	}
	since18 := major > 1 || (major == 1 && minor >= 8)
	return Features{RecursiveReadOnlyMounts: since18, UserNamespaces: since18}, true
}

func parseReport(b []byte) (Features, error) {
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return Features{}, fmt.Errorf("decode features: %w", err)
	}
	idmap := r.Linux.MountExtensions.IDMap.Enabled
	return Features{
		RecursiveReadOnlyMounts: slices.Contains(r.MountOptions, "rro"),
		// User namespaces for pods need idmapped mounts of the volumes.
		UserNamespaces: slices.Contains(r.Linux.Namespaces, "user") && idmap != nil && *idmap,
	}, nil
}
