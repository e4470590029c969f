package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is the checkout the e2e tests run in (test/e2e is two below).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// runScript runs one of hack/'s scripts with the binaries under test.
func runScript(t *testing.T, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(t), "hack", script), args...)
	cmd.Env = append(os.Environ(), "BERTH_BIN_DIR="+filepath.Dir(berthBinary))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hack/%s %v: %v\n%s", script, args, err, out)
	}
	return string(out)
}

// verifyUnit runs systemd-analyze verify on a unit whose ExecStart names
// bindir, pointed at the staged binaries under root: any complaint fails.
func verifyUnit(t *testing.T, unit, root, bindir string) {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "ExecStart="+bindir+"/berth\n") {
		t.Errorf("%s: ExecStart does not run %s/berth:\n%s", unit, bindir, b)
	}
	for _, want := range []string{"KillMode=process", "Delegate=yes", "OOMScoreAdjust=-999", "LimitNOFILE=", "Restart=always", "Type=notify"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", unit, want)
		}
	}
	staged := filepath.Join(t.TempDir(), "berth.service")
	if err := os.WriteFile(staged, bytes.ReplaceAll(b, []byte("ExecStart="+bindir), []byte("ExecStart="+root+bindir)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", staged).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err1 := os.ReadFile(a)
	y, err2 := os.ReadFile(b)
	if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
		t.Errorf("%s differs from %s (%v, %v)", a, b, err1, err2)
	}
}

// TestInstall: make install's script puts the daemon and its monitor side
// by side, a config with every default, and a unit systemd accepts; a
// second install keeps an edited config; uninstall removes all but the
// config.
func TestInstall(t *testing.T) {
	dest := t.TempDir()
	bin := filepath.Dir(berthBinary)
	runScript(t, "install.sh", dest, "/usr/local/bin", "/etc", "/etc/systemd/system")
	for _, name := range []string{"berth", "berth-monitor", "berth-pause"} {
		p := filepath.Join(dest, "usr/local/bin", name)
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", p, fi.Mode(), err)
		}
		sameFile(t, p, filepath.Join(bin, name))
	}
	config := filepath.Join(dest, "etc/berth/config.toml")
	want, err := exec.Command(berthBinary, "config", "default").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(config); err != nil || !bytes.Equal(got, want) {
		t.Errorf("installed config is not `berth config default` (%v)", err)
	}
	verifyUnit(t, filepath.Join(dest, "etc/systemd/system/berth.service"), dest, "/usr/local/bin")

	edited := append(want, []byte("\n# edited by the operator\n")...)
	if err := os.WriteFile(config, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	runScript(t, "install.sh", dest, "/usr/local/bin", "/etc", "/etc/systemd/system")
	if got, _ := os.ReadFile(config); !bytes.Equal(got, edited) {
		t.Error("a second install replaced the operator's config")
	}
	runScript(t, "uninstall.sh", dest, "/usr/local/bin", "/etc/systemd/system")
	for _, p := range []string{"usr/local/bin/berth", "usr/local/bin/berth-monitor", "usr/local/bin/berth-pause", "etc/systemd/system/berth.service"} {
		if _, err := os.Stat(filepath.Join(dest, p)); !os.IsNotExist(err) {
			t.Errorf("%s still there after uninstall: %v", p, err)
		}
	}
	if _, err := os.Stat(config); err != nil {
		t.Errorf("uninstall removed the config: %v", err)
	}
}

// TestDebianPackage: make deb's package holds the binaries under test, the
// unit (accepted by systemd-analyze) and the config as a conffile; its
// version is berth's; its dependencies resolve on this host (apt-get
// install --simulate).
func TestDebianPackage(t *testing.T) {
	deb := strings.TrimSpace(runScript(t, "build-deb.sh", t.TempDir()))
	info, err := exec.Command("dpkg-deb", "--field", deb, "Package", "Version", "Depends").Output()
	if err != nil {
		t.Fatal(err)
	}
	ver, err := exec.Command(berthBinary, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	debVer := strings.Replace(strings.TrimPrefix(strings.TrimSpace(string(ver)), "berth v"), "-", "~", 1)
	for _, want := range []string{"Package: berth", "Version: " + debVer, "runc (>= 1.1) | crun", "containernetworking-plugins", "iptables"} {
		if !strings.Contains(string(info), want) {
			t.Errorf("control lacks %q:\n%s", want, info)
		}
	}
	root := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v %s", err, out)
	}
	for _, name := range []string{"berth", "berth-monitor", "berth-pause"} {
		sameFile(t, filepath.Join(root, "usr/bin", name), filepath.Join(filepath.Dir(berthBinary), name))
	}
	verifyUnit(t, filepath.Join(root, "lib/systemd/system/berth.service"), root, "/usr/bin")
	control := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "--control", deb, control).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --control: %v %s", err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(control, "conffiles")); strings.TrimSpace(string(b)) != "/etc/berth/config.toml" {
		t.Errorf("conffiles = %q", b)
	}
	if out, err := exec.Command("apt-get", "install", "--simulate", "-q", deb).CombinedOutput(); err != nil || !strings.Contains(string(out), "Inst berth") {
		t.Errorf("apt-get install --simulate %s: %v\n%s", deb, err, out)
	}
}
