package testimages

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/sys/unix"
)

// ExtractBusybox returns a directory holding Debian's busybox package
// unpacked. The .deb is fetched with `apt-get download` into cacheDir once;
// later runs reuse it. Debian's dynamic busybox, not busybox-static, is what
// the tests need: the static one runs applets inside its own shell, so masking
// /bin/ls would not hide ls. Test processes run it at once (go test runs
// packages in parallel): an exclusive lock on the cache serializes the
// first download and extraction.
func ExtractBusybox(ctx context.Context, cacheDir string) (string, error) {
	debDir := filepath.Join(cacheDir, "busybox-deb")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(debDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close() // releases the lock
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", debDir, err)
	}
	debs, _ := filepath.Glob(filepath.Join(debDir, "busybox_*.deb"))
	if len(debs) == 0 {
		if err := aptDownload(ctx, debDir, "busybox"); err != nil {
			return "", err
		}
		debs, _ = filepath.Glob(filepath.Join(debDir, "busybox_*.deb"))
		if len(debs) == 0 {
			return "", fmt.Errorf("apt-get download busybox left no .deb in %s", debDir)
		}
	}
	out := filepath.Join(debDir, "root")
	if _, err := os.Stat(filepath.Join(out, "bin", "busybox")); err == nil {
		return out, nil
	}
	tmp := out + ".tmp"
	os.RemoveAll(tmp)
	if b, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("dpkg-deb -x %s: %v: %s", debs[0], err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		return "", err
	}
	return out, nil
}

// aptDownload fetches a package's .deb into dir, refreshing apt's lists
// once if the package is unknown (a fresh machine has none).
func aptDownload(ctx context.Context, dir, pkg string) error {
	download := func() ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", "download", pkg)
		cmd.Dir = dir
		return cmd.CombinedOutput()
	}
	if _, err := download(); err == nil {
		return nil
	}
	if out, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get update: %v: %s", err, out)
	}
	if out, err := download(); err != nil {
		return fmt.Errorf("apt-get download %s: %v: %s", pkg, err, out)
	}
	return nil
}

var lddLine = regexp.MustCompile(`(?:=>\s*)?(/\S+)\s+\(0x`)

// sharedLibraries lists the host paths of the libraries binary links
// against, loader included, as ldd prints them.
func sharedLibraries(ctx context.Context, binary string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", binary).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", binary, err)
	}
	var libs []string
	for _, line := range strings.Split(string(out), "\n") {
		if m := lddLine.FindStringSubmatch(line); m != nil {
			libs = append(libs, m[1])
		}
	}
	if len(libs) == 0 {
		return nil, fmt.Errorf("ldd %s: no libraries found in %q", binary, out)
	}
	return libs, nil
}

// applets lists the applet names the busybox binary provides.
func applets(ctx context.Context, binary string) ([]string, error) {
	out, err := exec.CommandContext(ctx, binary, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", binary, err)
	}
	return strings.Fields(string(out)), nil
}
