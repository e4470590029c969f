package version

import (
	"runtime/debug"
	"testing"

	utilversion "k8s.io/apimachinery/pkg/util/version"
)

// kubelet reads the runtime version with ParseSemantic (falling back to
// ParseGeneric) and shows "Unknown" when neither accepts it.
func TestEveryVersionIsSemver(t *testing.T) {
	for _, tc := range []struct {
		name string
		info *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "v" + Next + "-dev"},
		{"no vcs", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "v" + Next + "-dev"},
		{"vcs", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "643a284cdef0123456789abcdef0123456789abc"}}}, "v" + Next + "-dev+643a284cdef0"},
		{"vcs dirty", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "643a284cdef0123456789abcdef0123456789abc"}, {Key: "vcs.modified", Value: "true"}}},
			"v" + Next + "-dev+643a284cdef0.dirty"},
		{"tagged module", &debug.BuildInfo{Main: debug.Module{Version: "v0.2.0"}}, "v0.2.0"},
		{"pseudo-version", &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261130174842-643a284cdef0"}}, "v0.0.0-20261130174842-643a284cdef0"},
	} {
		got := fromBuildInfo(tc.info)
		if got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
		if _, err := utilversion.ParseSemantic(got); err != nil {
			t.Errorf("%s: kubelet's parser refuses %q: %v", tc.name, got, err)
		}
	}
	if _, err := utilversion.ParseSemantic(String()); err != nil {
		t.Errorf("this build's version %q: %v", String(), err)
	}
}
