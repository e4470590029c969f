package e2eenv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// KubeletVersion is the kubelet the kubelet suite (test/kubelet) runs.
const KubeletVersion = "v1.37.2"

// stagingVersion is the published version of the k8s.io/* staging modules
// that matches KubeletVersion.
const stagingVersion = "v0.37.2"

// EnsureKubelet builds kubelet from the Go module proxy into <cache>/bin,
// once per version (about 9 minutes on 2 cores), and returns its path.
func EnsureKubelet(ctx context.Context, cache string) (string, error) {
	return ensureBuilt(cache, "kubelet", KubeletVersion, " from the module proxy (once; about 9 minutes)", func(out string) error {
		return buildKubelet(ctx, cache, out)
	})
}

// buildKubelet compiles cmd/kubelet from a writable copy of the
// k8s.io/kubernetes module. Its go.mod points its ~33 staging modules at
// ./staging/src/k8s.io/*, which the module zip lacks: those replaces are
// dropped and the published versions required instead.
func buildKubelet(ctx context.Context, cache, out string) error {
	src, err := writableModule(ctx, cache, "k8s.io/kubernetes@"+KubeletVersion)
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	// Neither workspace nor vendor mode: the module graph decides.
	for _, f := range []string{"go.work", "go.work.sum", "vendor"} {
		if err := os.RemoveAll(filepath.Join(src, f)); err != nil {
			return err
		}
	}
	edits, err := stagingEdits(ctx, src)
	if err != nil {
		return err
	}
	edit := exec.CommandContext(ctx, "go", append([]string{"mod", "edit"}, edits...)...)
	edit.Dir = src
	if b, err := edit.CombinedOutput(); err != nil {
		return fmt.Errorf("go mod edit: %v: %s", err, b)
	}
	tmp := out + ".tmp"
	ldflags := "-s -w -X k8s.io/component-base/version.gitVersion=" + KubeletVersion +
		" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
	build := exec.CommandContext(ctx, "go", "build", "-mod=mod", "-trimpath", "-tags=selinux,notest,grpcnotrace",
		"-ldflags", ldflags, "-o", tmp, "./cmd/kubelet")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/kubelet: %v\n%s", err, b)
	}
	return os.Rename(tmp, out)
}

// stagingEdits are the go mod edit flags that swap each staging replace
// for the published module: -dropreplace for every "=> ./staging/…", and
// -require at stagingVersion for those the module requires at v0.0.0.
func stagingEdits(ctx context.Context, dir string) ([]string, error) {
	cmd := exec.CommandContext(ctx, "go", "mod", "edit", "-json")
	cmd.Dir = dir
	raw, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod edit -json: %w", err)
	}
	var gomod struct {
		Require []struct{ Path, Version string }
		Replace []struct {
			Old struct{ Path string }
			New struct{ Path string }
		}
	}
	if err := json.Unmarshal(raw, &gomod); err != nil {
		return nil, fmt.Errorf("go mod edit -json: %w", err)
	}
	staged := map[string]bool{}
	var edits []string
	for _, r := range gomod.Replace {
		if strings.HasPrefix(r.New.Path, "./staging/") {
			staged[r.Old.Path] = true
			edits = append(edits, "-dropreplace="+r.Old.Path)
		}
	}
	for _, r := range gomod.Require {
		if staged[r.Path] && r.Version == "v0.0.0" {
			edits = append(edits, "-require="+r.Path+"@"+stagingVersion)
		}
	}
	if len(edits) == 0 {
		return nil, fmt.Errorf("k8s.io/kubernetes %s: no staging replaces found in its go.mod", KubeletVersion)
	}
	return edits, nil
}
