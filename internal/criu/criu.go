// Package criu finds out whether CRIU, which checkpointing needs, can run
// on this host.
package criu

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"
)

// checkTimeout bounds `criu check`: it probes the kernel and returns fast.
const checkTimeout = 10 * time.Second

// ErrUnusable means CRIU is missing or cannot checkpoint on this host.
var ErrUnusable = errors.New("CRIU is not usable")

// Check runs `<path> check`. It returns the CRIU binary it ran, or an error
// wrapping ErrUnusable that names the binary and says why: not found, or
// what `criu check` reported (Debian 12's CRIU 3.17 fails there on some
// kernels, in its vDSO detection).
func Check(ctx context.Context, path string) (string, error) {
	bin, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found (install criu, or set checkpoint.criu_path)", ErrUnusable, path)
	}
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "check").CombinedOutput()
	if err != nil {
		return bin, fmt.Errorf("%w: %s check: %v: %s", ErrUnusable, bin, err, lastLine(out))
	}
	return bin, nil
}

// lastLine is the last non-empty line of CRIU's output: its verdict.
func lastLine(out []byte) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
