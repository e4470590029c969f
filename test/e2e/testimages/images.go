// Package testimages builds, from Debian's busybox, every Linux image that
// berth's tests and critest v1.37.0 pull, and pushes them to a registry on
// loopback under their upstream paths. No docker, no network beyond
// loopback; the same inputs give the same digests.
package testimages

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// MirroredHosts are the upstream registries the conformance run's
// hosts.toml directory redirects to the loopback registry ("_default"
// catches any other).
var MirroredHosts = []string{
	"registry.k8s.io", "k8s.gcr.io", "gcr.io", "docker.io", "registry-1.docker.io", "public.ecr.aws", "quay.io", "_default",
}

// Sources are the host files the images are made of.
type Sources struct {
	// BusyboxRoot is Debian's busybox package unpacked (ExtractBusybox).
	BusyboxRoot string
	// Testbin is the static test/e2e/testbin binary.
	Testbin string
}

// Image is one built image and every reference it is pushed under.
type Image struct {
	Refs  []string
	Image v1.Image
}

// spec describes one test image on top of the busybox base.
type spec struct {
	refs   []string
	config func(*v1.Config)
	files  func(t tree, testbin []byte)
}

const (
	k8sE2E   = "registry.k8s.io/e2e-test-images/"
	criTools = "gcr.io/k8s-staging-cri-tools/"
)

// catalog lists the images. Every image gets a marker file naming it, so
// distinct entries have distinct IDs; one entry with several refs is one image.
func catalog() []spec {
	sh := func(c *v1.Config) { c.Cmd = []string{"sh"} }
	user := func(u string) func(*v1.Config) {
		return func(c *v1.Config) { c.Cmd = []string{"sh"}; c.User = u }
	}
	specs := []spec{
		{refs: []string{k8sE2E + "busybox:1.29-2"}, config: sh},
		{refs: []string{k8sE2E + "nginx:1.14-2"}, config: nginxConfig(""), files: nginxFiles},
		{refs: []string{criTools + "hostnet-nginx-amd64:latest"}, config: nginxConfig("12003"), files: nginxFiles},
		{refs: []string{k8sE2E + "httpd:2.4.39-4"}, config: httpdConfig, files: httpdFiles},
		{refs: []string{k8sE2E + "nonewprivs:1.3"}, config: func(c *v1.Config) {
			c.Entrypoint = []string{"/usr/local/bin/nonewprivs"}
		}, files: func(t tree, testbin []byte) {
			// Its own copy: the setuid bit must not reach the other programs.
			t.file("/usr/local/bin/nonewprivs", 0o755|fs.ModeSetuid, testbin)
		}},
		{refs: []string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"}, config: pauseConfig},
		{refs: []string{criTools + "test-image-user-uid:latest"}, config: user("1002")},
		{refs: []string{criTools + "test-image-user-username:latest"}, config: user("www-data")},
		{refs: []string{criTools + "test-image-user-uid-group:latest"}, config: user("1003:1004")},
		{refs: []string{criTools + "test-image-user-username-group:latest"}, config: user("www-data:1004")},
		{refs: []string{criTools + "test-image-predefined-group:latest"}, config: user("1000"), files: predefinedGroupFiles},
		{refs: []string{criTools + "test-image-1:latest"}, config: sh},
		{refs: []string{criTools + "test-image-2:latest"}, config: sh},
		{refs: []string{criTools + "test-image-3:latest"}, config: sh},
		{refs: []string{criTools + "test-image-latest:latest"}, config: sh},
		{refs: []string{criTools + "test-image-digest:latest"}, config: sh},
		{refs: []string{criTools + "test-image-tags:1", criTools + "test-image-tags:2", criTools + "test-image-tags:3"}, config: sh},
		{refs: []string{criTools + "test-image-tag:test", criTools + "test-image-tag:all"}, config: sh},
		{refs: []string{"docker.io/library/busybox:latest"}, config: sh},
	}
	for _, v := range []string{"3.6", "3.10", "3.10.1"} {
		specs = append(specs, spec{refs: []string{"registry.k8s.io/pause:" + v}, config: pauseConfig})
	}
	for _, tag := range []string{"1.35.0-glibc", "1-uclibc", "1", "1-glibc", "1-musl"} {
		specs = append(specs, spec{refs: []string{"public.ecr.aws/docker/library/busybox:" + tag}, config: sh})
	}
	return specs
}

func pauseConfig(c *v1.Config) {
	c.Entrypoint = []string{"/pause"}
	c.User = "65535:65535"
}

func nginxConfig(port string) func(*v1.Config) {
	return func(c *v1.Config) {
		c.Cmd = []string{"nginx", "-g", "daemon off;"}
		c.ExposedPorts = map[string]struct{}{"80/tcp": {}}
		c.StopSignal = "SIGQUIT"
		if port != "" {
			c.Env = append(c.Env, "NGINX_PORT="+port)
			c.ExposedPorts = map[string]struct{}{port + "/tcp": {}}
		}
	}
}

func nginxFiles(t tree, testbin []byte) {
	// A copy, not a link: a hard link may not reach into a lower layer, and
	// through a symlink the re-exec would be named testbin, not nginx.
	t.file("/usr/sbin/nginx", 0o755, testbin)
	t.file("/usr/share/nginx/html/index.html", 0o644, []byte("<html><body><h1>Welcome to nginx!</h1></body></html>\n"))
	t.dir("/var/run", 0o755)
}

func httpdConfig(c *v1.Config) {
	c.Cmd = []string{"httpd-foreground"}
	c.ExposedPorts = map[string]struct{}{"80/tcp": {}}
}

func httpdFiles(t tree, _ []byte) {
	t.file("/usr/local/bin/httpd-foreground", 0o755, []byte(
		"#!/bin/sh\necho \"httpd: serving /usr/local/apache2/htdocs on port 80\"\nexec httpd -f -v -p 80 -h /usr/local/apache2/htdocs\n"))
	t.file("/usr/local/apache2/htdocs/index.html", 0o644, []byte("<html><body><h1>It works!</h1></body></html>\n"))
}

func predefinedGroupFiles(t tree, _ []byte) {
	t.file("/etc/passwd", 0o644, []byte(basePasswd+"default-user:x:1000:1000:default user:/home/default-user:/bin/sh\n"))
	t.file("/etc/group", 0o644, []byte(baseGroup+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"))
	t.dir("/home/default-user", 0o755)
}

const basePasswd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
`

const baseGroup = `root:x:0:
daemon:x:1:
www-data:x:33:
nogroup:x:65534:
`

// Build builds every image of the catalog.
func Build(ctx context.Context, src Sources) ([]Image, error) {
	testbin, err := os.ReadFile(src.Testbin)
	if err != nil {
		return nil, err
	}
	base, err := baseLayer(ctx, src.BusyboxRoot, testbin)
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, s := range catalog() {
		img, err := s.build(base, testbin)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", s.refs[0], err)
		}
		out = append(out, Image{Refs: s.refs, Image: img})
	}
	return out, nil
}

// baseLayer is busybox with its libraries, every applet as a hard link in
// /bin (with symlinks, masking /bin/ls would mask busybox itself), the testbin
// programs, and the users and directories a minimal image has.
func baseLayer(ctx context.Context, busyboxRoot string, testbin []byte) (v1.Layer, error) {
	t := tree{}
	bbPath := filepath.Join(busyboxRoot, "bin", "busybox")
	bb, err := os.ReadFile(bbPath)
	if err != nil {
		return nil, err
	}
	t.file("/bin/busybox", 0o755, bb)
	names, err := applets(ctx, bbPath)
	if err != nil {
		return nil, err
	}
	for _, a := range names {
		if a != "busybox" && !strings.Contains(a, "/") {
			t.link("/bin/"+a, "/bin/busybox")
		}
	}
	libs, err := sharedLibraries(ctx, bbPath)
	if err != nil {
		return nil, err
	}
	for _, lib := range libs {
		data, err := os.ReadFile(lib)
		if err != nil {
			return nil, fmt.Errorf("library: %w", err)
		}
		t.file(lib, 0o755, data)
	}
	t.file("/usr/local/bin/testbin", 0o755, testbin)
	for _, p := range []string{"/bin/pgrep", "/bin/ipcs", "/pause"} {
		t.link(p, "/usr/local/bin/testbin")
	}
	t.file("/etc/passwd", 0o644, []byte(basePasswd))
	t.file("/etc/group", 0o644, []byte(baseGroup))
	t.dir("/tmp", 0o777|fs.ModeSticky)
	t.dir("/root", 0o700)
	for _, d := range []string{"/dev", "/proc", "/sys", "/etc", "/home", "/var/run", "/var/www", "/usr/bin", "/usr/sbin"} {
		t.dir(d, 0o755)
	}
	return t.layer()
}

func (s spec) build(base v1.Layer, testbin []byte) (v1.Image, error) {
	t := tree{}
	t.file("/etc/berth-test-image", 0o644, []byte(strings.Join(s.refs, "\n")+"\n"))
	if s.files != nil {
		s.files(t, testbin)
	}
	top, err := t.layer()
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, base, top)
	if err != nil {
		return nil, err
	}
	cfg := v1.Config{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}
	s.config(&cfg)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// RepoPath is ref without its registry host: the path the image is pushed
// under on the loopback registry ("docker.io/library/busybox:latest" →
// "library/busybox:latest").
func RepoPath(ref string) string {
	first, rest, ok := strings.Cut(ref, "/")
	if ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		return rest
	}
	return ref
}

// Push writes every image under each of its refs to the registry at host
// ("127.0.0.1:PORT").
func Push(ctx context.Context, host string, images []Image) error {
	for _, img := range images {
		for _, ref := range img.Refs {
			dst, err := name.ParseReference(host+"/"+RepoPath(ref), name.Insecure)
			if err != nil {
				return fmt.Errorf("reference %s: %w", ref, err)
			}
			if err := remote.Write(dst, img.Image, remote.WithContext(ctx)); err != nil {
				return fmt.Errorf("push %s: %w", dst, err)
			}
		}
	}
	return nil
}
