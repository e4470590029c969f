package ociruntime

import (
	"errors"
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
	s := NewSet(config.Runtime{DefaultHandler: "runc", Handlers: map[string]config.Handler{"runc": {Path: "runc"}, "crun": {Path: "/usr/bin/crun"}}}, "/run/berth")
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
