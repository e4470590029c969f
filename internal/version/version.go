// Package version carries the build's version, set at link time:
//
//	go build -ldflags "-X github.com/berth-cri/berth/internal/version.Version=v0.1.0"
package version

import "runtime/debug"

// Version is the release version. Builds without -ldflags report the module
// version, or "devel" with the VCS revision when one is known.
var Version = ""

// String returns the version to report in CRI Version and --version.
func String() string {
	if Version != "" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "devel-" + s.Value[:12]
		}
	}
	return "devel"
}
