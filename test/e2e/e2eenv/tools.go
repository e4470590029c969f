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

// CriToolsVersion is the cri-tools release whose crictl and critest berth is
// measured against.
const CriToolsVersion = "v1.37.0"

// EnsureCrictl builds crictl from the Go module proxy into <cache>/bin, once
// per version, and returns its path.
func EnsureCrictl(ctx context.Context, cache string) (string, error) {
	return ensureBuilt(cache, "crictl", CriToolsVersion, "", func(out string) error {
		gobin, err := os.MkdirTemp(cache, "gobin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(gobin)
		cmd := exec.CommandContext(ctx, "go", "install", "sigs.k8s.io/cri-tools/cmd/crictl@"+CriToolsVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-buildvcs=false")
		cmd.Dir = cache
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go install crictl: %v\n%s", err, b)
		}
		return os.Rename(filepath.Join(gobin, "crictl"), out)
	})
}

// EnsureCritest builds critest into <cache>/bin, once per version, and
// returns its path.
func EnsureCritest(ctx context.Context, cache string) (string, error) {
	return ensureBuilt(cache, "critest", CriToolsVersion, " (a test binary of the cri-tools module)", func(out string) error {
		return buildCritest(ctx, cache, out)
	})
}

// ensureBuilt returns <cache>/bin/<name>-<version>, calling build to make it
// at that path first when it is not there yet (said on stderr, with note).
func ensureBuilt(cache, name, version, note string, build func(out string) error) (string, error) {
	bin := filepath.Join(cache, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(bin, name+"-"+version)
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	fmt.Fprintf(os.Stderr, "e2eenv: building %s %s%s\n", name, version, note)
	return path, build(path)
}

// buildCritest compiles cmd/critest from a writable copy of the cri-tools
// module: the module cache is read-only and `go test -c` needs a main module.
func buildCritest(ctx context.Context, cache, out string) error {
	src, err := writableModule(ctx, cache, "sigs.k8s.io/cri-tools@"+CriToolsVersion)
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	tmp := out + ".tmp"
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", tmp, "./cmd/critest")
	build.Dir = src
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go test -c ./cmd/critest: %v\n%s", err, b)
	}
	return os.Rename(tmp, out)
}

// writableModule downloads module@version from the module proxy and copies
// it into a new directory under cache that the caller owns (and removes):
// the module cache is read-only, and building a module's own commands needs
// it as the main module.
func writableModule(ctx context.Context, cache, moduleAtVersion string) (string, error) {
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", moduleAtVersion)
	dl.Dir = cache
	raw, err := dl.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w", moduleAtVersion, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(raw, &mod); err != nil || mod.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no module dir in %s", moduleAtVersion, raw)
	}
	src, err := os.MkdirTemp(cache, "module-src-")
	if err != nil {
		return "", err
	}
	for _, args := range [][]string{{"cp", "-r", mod.Dir + "/.", src}, {"chmod", "-R", "u+w", src}} {
		if out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput(); err != nil {
			os.RemoveAll(src)
			return "", fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	return src, nil
}
