// Package version is berth's version, a semantic version: a release is built
// from its git tag (v0.2.0); anything else reports the release it heads for
// as a pre-release, v0.2.0-dev, with the commit as build metadata when known
// (v0.2.0-dev+643a284cdef0). kubelet parses it (the node's runtime version),
// so it must always be valid semver.
package version

import (
	"runtime/debug"
	"strings"
)

// Next is the release this source heads for. Bump it right after tagging a
// release, so that builds between tags sort after the release they follow.
const Next = "0.2.0"

// Version is set at link time by the Makefile (hack/version.sh):
//
//	go build -ldflags "-X github.com/berth-cri/berth/internal/version.Version=v0.2.0"
var Version = ""

// String returns the version to report in CRI Version and `berth version`.
func String() string {
	if Version != "" {
		return Version
	}
	info, _ := debug.ReadBuildInfo()
	return fromBuildInfo(info)
}

// fromBuildInfo is the version of a build without -ldflags: the module's
// version when built as a tagged module (go install …@v0.2.0), else a
// development version of Next with the VCS revision Go recorded, if any.
func fromBuildInfo(info *debug.BuildInfo) string {
	dev := "v" + Next + "-dev"
	if info == nil {
		return dev
	}
	if v := info.Main.Version; strings.HasPrefix(v, "v") && !strings.Contains(v, "devel") {
		return v
	}
	var rev string
	var modified bool
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return dev
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified {
		rev += ".dirty"
	}
	return dev + "+" + rev
}
