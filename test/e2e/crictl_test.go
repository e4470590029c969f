package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// crictl runs the crictl binary (built into the e2e cache) against d.
func crictl(t *testing.T, d *e2eenv.Daemon, args ...string) string {
	t.Helper()
	bin, err := e2eenv.EnsureCrictl(t.Context(), e2eCache())
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "unix://" + d.Socket
	full := append([]string{"--runtime-endpoint", endpoint, "--image-endpoint", endpoint}, args...)
	out, err := exec.CommandContext(t.Context(), bin, full...).Output()
	if err != nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("crictl %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr)
	}
	return string(out)
}

func TestCrictlImageCommands(t *testing.T) {
	e := newImageEnv(t, []string{"docker.io"}, "")
	img := testImage(t, "")
	push(t, e.reg, "library/busybox:1.37", img)
	id, _ := img.ConfigName()
	short := strings.TrimPrefix(id.String(), "sha256:")[:13]

	if out := crictl(t, e.daemon, "version"); !strings.Contains(out, "RuntimeName:  berth") {
		t.Fatalf("crictl version:\n%s", out)
	}
	if out := crictl(t, e.daemon, "pull", "busybox:1.37"); !strings.Contains(out, id.String()) {
		t.Fatalf("crictl pull:\n%s", out)
	}
	out := crictl(t, e.daemon, "images")
	if !strings.Contains(out, "docker.io/library/busybox") || !strings.Contains(out, "1.37") || !strings.Contains(out, short) {
		t.Fatalf("crictl images:\n%s", out)
	}
	if out := crictl(t, e.daemon, "inspecti", short); !strings.Contains(out, `"docker.io/library/busybox:1.37"`) || !strings.Contains(out, "chainID") {
		t.Fatalf("crictl inspecti by short ID:\n%s", out)
	}
	if out := crictl(t, e.daemon, "imagefsinfo"); !strings.Contains(out, "usedBytes") {
		t.Fatalf("crictl imagefsinfo:\n%s", out)
	}
	crictl(t, e.daemon, "rmi", "busybox:1.37")
	if out := crictl(t, e.daemon, "images", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("crictl images after rmi:\n%s", out)
	}
}
