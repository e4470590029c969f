package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// criToolsVersion is the cri-tools release whose crictl and critest berth is
// measured against.
const criToolsVersion = "v1.37.0"

// ensureTools builds crictl and critest from the Go module proxy into
// <cache>/bin, once per version, and returns their paths.
func ensureTools(ctx context.Context, cache string) (crictl, critest string, err error) {
	bin := filepath.Join(cache, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", "", err
	}
	crictl = filepath.Join(bin, "crictl-"+criToolsVersion)
	if _, err := os.Stat(crictl); err != nil {
		logf("building crictl %s", criToolsVersion)
		gobin, err := os.MkdirTemp(cache, "gobin-")
		if err != nil {
			return "", "", err
		}
		defer os.RemoveAll(gobin)
		cmd := exec.CommandContext(ctx, "go", "install", "sigs.k8s.io/cri-tools/cmd/crictl@"+criToolsVersion)
		cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-buildvcs=false")
		cmd.Dir = cache
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go install crictl: %v\n%s", err, out)
		}
		if err := os.Rename(filepath.Join(gobin, "crictl"), crictl); err != nil {
			return "", "", err
		}
	}
	critest = filepath.Join(bin, "critest-"+criToolsVersion)
	if _, err := os.Stat(critest); err != nil {
		logf("building critest %s (a test binary of the cri-tools module)", criToolsVersion)
		if err := buildCritest(ctx, cache, critest); err != nil {
			return "", "", err
		}
	}
	return crictl, critest, nil
}

// buildCritest compiles cmd/critest from a writable copy of the cri-tools
// module: the module cache is read-only and `go test -c` needs a main module.
func buildCritest(ctx context.Context, cache, out string) error {
	dl := exec.CommandContext(ctx, "go", "mod", "download", "-json", "sigs.k8s.io/cri-tools@"+criToolsVersion)
	dl.Dir = cache
	raw, err := dl.Output()
	if err != nil {
		return fmt.Errorf("go mod download cri-tools: %w", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(raw, &mod); err != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download cri-tools: no module dir in %s", raw)
	}
	src, err := os.MkdirTemp(cache, "cri-tools-src-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	if out, err := exec.CommandContext(ctx, "cp", "-r", mod.Dir+"/.", src).CombinedOutput(); err != nil {
		return fmt.Errorf("copy cri-tools: %v: %s", err, out)
	}
	if out, err := exec.CommandContext(ctx, "chmod", "-R", "u+w", src).CombinedOutput(); err != nil {
		return fmt.Errorf("chmod cri-tools copy: %v: %s", err, out)
	}
	tmp := out + ".tmp"
	build := exec.CommandContext(ctx, "go", "test", "-c", "-o", tmp, "./cmd/critest")
	build.Dir = src
	build.Env = append(os.Environ(), "GOFLAGS=-mod=mod -buildvcs=false")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go test -c ./cmd/critest: %v\n%s", err, b)
	}
	return os.Rename(tmp, out)
}
