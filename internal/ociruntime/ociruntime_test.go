package ociruntime

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-cri/berth/internal/config"
)

func TestParseReport(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want Features
	}{
		{"runc 1.1: rro, no idmap", `{"mountOptions":["ro","rro"],"linux":{"namespaces":["mount","user"]}}`, Features{RecursiveReadOnlyMounts: true}},
		{"runc 1.2: rro and idmap", `{"mountOptions":["rro"],"linux":{"namespaces":["user"],"mountExtensions":{"idmap":{"enabled":true}}}}`, Features{true, true}},
		{"idmap without user namespaces", `{"linux":{"namespaces":["mount"],"mountExtensions":{"idmap":{"enabled":true}}}}`, Features{}},
	} {
		got, err := parseReport([]byte(tc.doc))
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := parseReport([]byte("unknown command features")); err == nil {
		t.Error("a runtime without features parsed")
	}
}

func TestKnownFeatures(t *testing.T) {
	if f, ok := knownFeatures("crun version 1.8.1\ncommit: f8a096be\n"); !ok || !f.RecursiveReadOnlyMounts || !f.UserNamespaces {
		t.Errorf("crun 1.8.1: %+v, %v", f, ok)
	}
	if f, ok := knownFeatures("crun version 1.4.5\n"); !ok || f.RecursiveReadOnlyMounts || f.UserNamespaces {
		t.Errorf("crun 1.4.5: %+v, %v", f, ok)
	}
	if _, ok := knownFeatures("runc version 1.1.5\n"); ok {
		t.Error("runc's version taken for crun's")
	}
}

func TestGet(t *testing.T) {
	s := NewSet(t.Context(), config.Runtime{DefaultHandler: "runc", Handlers: map[string]config.Handler{"runc": {Path: "runc"}, "crun": {Path: "/usr/bin/crun"}}}, "/run/berth")
	if h, err := s.Get(""); err != nil || h.Name != "runc" || h.Root != "/run/berth/runtimes/runc" {
		t.Errorf(`Get("") = %+v, %v`, h, err)
	}
	if h, err := s.Get("crun"); err != nil || h.Path != "/usr/bin/crun" {
		t.Errorf(`Get("crun") = %+v, %v`, h, err)
	}
	if _, err := s.Get("kata"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf(`Get("kata") = %v, want InvalidArgument`, err)
	}
	// A pod started on a handler since removed from the config keeps its
	// state directory and runs the default's binary.
	if h := s.Recorded("gone"); h.Name != "gone" || h.Path != "runc" || h.Root != "/run/berth/runtimes/gone" {
		t.Errorf(`Recorded("gone") = %+v`, h)
	}
	if h := s.Recorded("crun"); h.Path != "/usr/bin/crun" || h.Root != "/run/berth/runtimes/crun" {
		t.Errorf(`Recorded("crun") = %+v`, h)
	}
}

// fakeRuntime writes an executable that answers `features` with doc.
func fakeRuntime(t *testing.T, name, doc string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	script := "#!/bin/sh\n[ \"$1\" = features ] && { echo '" + doc + "'; exit 0; }\necho \"" + name + " version 9.9\"\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestChooseTakesUsernsPathOnlyWhenItHelps(t *testing.T) {
	old := fakeRuntime(t, "old", `{"mountOptions":["rro"],"linux":{"namespaces":["user"]}}`)
	current := fakeRuntime(t, "current", `{"mountOptions":["rro"],"linux":{"namespaces":["user"],"mountExtensions":{"idmap":{"enabled":true}}}}`)
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		name         string
		h            config.Handler
		want, repl   string
		wantFeatures Features
	}{
		{"old runtime, current one configured", config.Handler{Path: old, UsernsPath: current}, current, old, Features{true, true}},
		{"old runtime, none configured", config.Handler{Path: old}, old, "", Features{RecursiveReadOnlyMounts: true}},
		{"old runtime, the other missing", config.Handler{Path: old, UsernsPath: missing}, old, "", Features{RecursiveReadOnlyMounts: true}},
		{"old runtime, the other no better", config.Handler{Path: old, UsernsPath: old}, old, "", Features{RecursiveReadOnlyMounts: true}},
		{"current runtime already", config.Handler{Path: current, UsernsPath: old}, current, "", Features{true, true}},
		{"runtime missing, current one there", config.Handler{Path: missing, UsernsPath: current}, current, missing, Features{true, true}},
	} {
		c := Choose(t.Context(), tc.h)
		if c.Path != tc.want || c.Replaced != tc.repl || c.Features != tc.wantFeatures {
			t.Errorf("%s: %+v, want path %s replacing %q with %+v", tc.name, c, tc.want, tc.repl, tc.wantFeatures)
		}
	}
	// The set runs what Choose chose, and knows its features.
	s := NewSet(t.Context(), config.Runtime{DefaultHandler: "runc", Handlers: map[string]config.Handler{"runc": {Path: old, UsernsPath: current}}}, "/run/berth")
	if h := s.Default(); h.Path != current || h.Replaced != old || !s.Features(t.Context(), h).UserNamespaces {
		t.Errorf("default handler %+v, features %+v", h, s.Features(t.Context(), h))
	}
}
