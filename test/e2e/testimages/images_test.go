package testimages

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// sources builds the inputs once per test: the busybox package (cached
// like the harness caches it) and the testbin binary.
func sources(t *testing.T) Sources {
	t.Helper()
	cache := os.Getenv("BERTH_E2E_CACHE")
	if cache == "" {
		cache = "/var/cache/berth-e2e"
	}
	bb, err := ExtractBusybox(t.Context(), cache)
	if err != nil {
		t.Fatal(err)
	}
	testbin := filepath.Join(t.TempDir(), "testbin")
	build := exec.Command("go", "build", "-o", testbin, "../testbin")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build testbin: %v\n%s", err, out)
	}
	return Sources{BusyboxRoot: bb, Testbin: testbin}
}

func TestBuildIsReproducibleAndDistinct(t *testing.T) {
	src := sources(t)
	first, err := Build(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Build(t.Context(), src)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[v1.Hash]string{}
	for i := range first {
		d1, err := first[i].Image.Digest()
		if err != nil {
			t.Fatal(err)
		}
		d2, _ := second[i].Image.Digest()
		if d1 != d2 {
			t.Errorf("%s: digest %s then %s; builds are not reproducible", first[i].Refs[0], d1, d2)
		}
		id, _ := first[i].Image.ConfigName()
		if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share image ID %s; each catalog entry must be a distinct image", other, first[i].Refs[0], id)
		}
		ids[id] = first[i].Refs[0]
	}
}

func TestRepoPath(t *testing.T) {
	for ref, want := range map[string]string{
		"docker.io/library/busybox:latest":             "library/busybox:latest",
		"registry.k8s.io/pause:3.9":                    "pause:3.9",
		"public.ecr.aws/docker/library/busybox:1-musl": "docker/library/busybox:1-musl",
		"localhost/x:1":                                "x:1",
		"library/busybox":                              "library/busybox",
	} {
		if got := RepoPath(ref); got != want {
			t.Errorf("RepoPath(%q) = %q, want %q", ref, got, want)
		}
	}
}

// TestBaseRunsInChroot unpacks the busybox test image and runs its shell and
// the testbin programs in a chroot: the libraries, hard links and users are
// all there.
func TestBaseRunsInChroot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("chroot needs root; run the tests as root")
	}
	images, err := Build(t.Context(), sources(t))
	if err != nil {
		t.Fatal(err)
	}
	var busybox v1.Image
	for _, img := range images {
		if img.Refs[0] == k8sE2E+"busybox:1.29-2" {
			busybox = img.Image
		}
	}
	root := t.TempDir()
	if err := Unpack(busybox, root); err != nil {
		t.Fatal(err)
	}
	run := func(script string) string {
		out, err := exec.Command("chroot", root, "/bin/sh", "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("chroot sh -c %q: %v\n%s", script, err, out)
		}
		return string(out)
	}
	if got := run("echo hello from busybox"); got != "hello from busybox\n" {
		t.Errorf("echo: %q", got)
	}
	if got := run("stat -c %h /bin/ls"); strings.TrimSpace(got) == "1" {
		t.Errorf("/bin/ls is not a hard link to busybox (link count %s)", got)
	}
	if got := run("stat -c %a /bin/busybox"); got != "755\n" {
		t.Errorf("/bin/busybox mode %q, want 755: hard link headers must carry it", got)
	}
	if got := run("grep ^www-data: /etc/passwd | cut -d: -f3"); got != "33\n" {
		t.Errorf("www-data uid: %q", got)
	}
	if got := run("pgrep '^sh$' || echo none"); got == "" {
		t.Error("pgrep printed nothing")
	}
}
