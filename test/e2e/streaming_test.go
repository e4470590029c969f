package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/test/e2e/e2eenv"
)

// crictlCommand is crictl against d, not yet started, for tests that wire
// its stdio themselves.
func crictlCommand(t *testing.T, d *e2eenv.Daemon, args ...string) *exec.Cmd {
	t.Helper()
	bin, err := e2eenv.EnsureCrictl(t.Context(), e2eCache())
	if err != nil {
		t.Fatal(err)
	}
	endpoint := "unix://" + d.Socket
	return exec.CommandContext(t.Context(), bin, append([]string{"--runtime-endpoint", endpoint, "--image-endpoint", endpoint}, args...)...)
}

// ptySession runs cmd on a fresh pseudo-terminal, as an operator's shell
// would, and lets the test type into it and read what it prints.
type ptySession struct {
	t      *testing.T
	master console.Console
	cmd    *exec.Cmd

	mu  sync.Mutex
	out bytes.Buffer // everything the terminal printed; guarded by mu
	eof chan struct{}
}

func startPTY(t *testing.T, cmd *exec.Cmd) *ptySession {
	t.Helper()
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	if err := cmd.Start(); err != nil {
		slave.Close()
		master.Close()
		t.Fatal(err)
	}
	slave.Close()
	s := &ptySession{t: t, master: master, cmd: cmd, eof: make(chan struct{})}
	go func() {
		defer close(s.eof)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		master.Close()
	})
	return s
}

func (s *ptySession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

func (s *ptySession) typeLine(line string) {
	s.t.Helper()
	if _, err := s.master.Write([]byte(line + "\r")); err != nil {
		s.t.Fatalf("type %q: %v", line, err)
	}
}

// waitFor waits until the terminal has printed want.
func (s *ptySession) waitFor(want string) {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.output(), want) {
		if time.Now().After(deadline) {
			s.t.Fatalf("terminal never printed %q; it printed:\n%s", want, s.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait waits for the command to exit and for the terminal to have read
// everything it printed (its last words may still be in the pty when it
// exits), and returns the command's error.
func (s *ptySession) wait() error {
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	timeout := time.After(30 * time.Second)
	var err error
	select {
	case err = <-done:
	case <-timeout:
		s.t.Fatalf("%s still running after 30s; terminal:\n%s", s.cmd.Path, s.output())
	}
	select {
	case <-s.eof:
	case <-timeout:
		s.t.Fatalf("%s exited but its terminal never closed; terminal:\n%s", s.cmd.Path, s.output())
	}
	return err
}

// TestCrictlExecInteractive: `crictl exec -it <ctr> sh` is an interactive
// shell on a terminal: it has a tty, sees the typed lines, reports the
// terminal size crictl sent, and ends with the shell's status.
func TestCrictlExecInteractive(t *testing.T) {
	p := newPodEnv(t)
	pod, podCfg := p.runPod(t, "exec-it")
	ctr := p.createContainer(t, pod, podCfg, "shell-host", "sleep", "1000")
	p.start(t, ctr)

	s := startPTY(t, crictlCommand(t, p.daemon, "exec", "-it", ctr, "sh"))
	if err := s.master.Resize(console.WinSize{Width: 97, Height: 31}); err != nil {
		t.Fatal(err)
	}
	// $((…)) makes the shell, not the terminal's echo, print the marker.
	s.typeLine(`tty >/dev/null && echo "tty-$((40+2))"`)
	s.waitFor("tty-42")
	s.typeLine(`stty size | tr ' ' x; echo "term-$TERM"`)
	s.waitFor("31x97")
	s.waitFor("term-xterm")
	s.typeLine("exit 3")
	// crictl reports a command's non-zero status in words and exits 1.
	err := s.wait()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(s.output(), "command terminated with exit code 3") {
		t.Fatalf("crictl exec -it ended with %v, want the shell's exit code 3 reported; terminal:\n%s", err, s.output())
	}
	// The exec left nothing behind in the container.
	resp, err := p.runtime.ExecSync(t.Context(), &runtime.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"ps", "-o", "comm"}})
	if err != nil || slices.Contains(strings.Fields(string(resp.Stdout)), "sh") {
		t.Fatalf("a shell is left in the container (%v):\n%s", err, resp.GetStdout())
	}
}

// TestAttach: a container created with stdin and stdin_once takes the
// attached client's input; when the client's stdin ends the container's
// does too, the shell exits, and attach ends with it.
func TestAttach(t *testing.T) {
	p := newPodEnv(t)
	pod, podCfg := p.runPod(t, "attach")
	resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
		PodSandboxId: pod,
		Config: &runtime.ContainerConfig{
			Metadata:  &runtime.ContainerMetadata{Name: "reader"},
			Image:     &runtime.ImageSpec{Image: busyboxImage},
			Command:   []string{"sh"},
			LogPath:   "reader.log",
			Stdin:     true,
			StdinOnce: true,
		},
		SandboxConfig: podCfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctr := resp.ContainerId
	p.start(t, ctr)

	cmd := crictlCommand(t, p.daemon, "attach", "--stdin", ctr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	// Typed until it shows: the attach may not be joined yet when the
	// first line is written, and crictl forwards nothing before it is.
	ticker := time.NewTicker(200 * time.Millisecond)
	defer ticker.Stop()
	deadline := time.After(20 * time.Second)
	io.WriteString(stdin, "echo attached-$((6*7))\n")
wait:
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("crictl attach ended early: %s", stderr.String())
			}
			if line == "attached-42" {
				break wait
			}
		case <-ticker.C:
			io.WriteString(stdin, "echo attached-$((6*7))\n")
		case <-deadline:
			t.Fatalf("attach never echoed; stderr: %s", stderr.String())
		}
	}
	io.WriteString(stdin, "exit 0\n")
	stdin.Close()
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("crictl attach: %v: %s", err, stderr.String())
	}
	st := p.waitExited(t, ctr)
	if st.ExitCode != 0 || st.Reason != "Completed" {
		t.Fatalf("after attach: exit %d reason %q", st.ExitCode, st.Reason)
	}
}

// TestAttachTerminal: a container created with a tty and stdin is a
// terminal session that `crictl attach -it` joins.
func TestAttachTerminal(t *testing.T) {
	p := newPodEnv(t)
	pod, podCfg := p.runPod(t, "attach-tty")
	resp, err := p.runtime.CreateContainer(t.Context(), &runtime.CreateContainerRequest{
		PodSandboxId: pod,
		Config: &runtime.ContainerConfig{
			Metadata: &runtime.ContainerMetadata{Name: "console"},
			Image:    &runtime.ImageSpec{Image: busyboxImage},
			Command:  []string{"sh"},
			LogPath:  "console.log",
			Stdin:    true,
			Tty:      true,
		},
		SandboxConfig: podCfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctr := resp.ContainerId
	p.start(t, ctr)

	s := startPTY(t, crictlCommand(t, p.daemon, "attach", "--tty", "--stdin", ctr))
	// Typed until it shows, as in TestAttach.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(s.output(), "tty-attached-42") {
		if time.Now().After(deadline) {
			t.Fatalf("terminal never printed the marker:\n%s", s.output())
		}
		s.typeLine(`tty >/dev/null && echo "tty-attached-$((6*7))"`)
		time.Sleep(200 * time.Millisecond)
	}
	s.typeLine("exit 5")
	s.wait()
	st := p.waitExited(t, ctr)
	if st.ExitCode != 5 || st.Reason != "Error" {
		t.Fatalf("after exit 5: exit %d reason %q", st.ExitCode, st.Reason)
	}
	// A terminal's output is the log's stdout stream.
	log, err := os.ReadFile(st.LogPath)
	if err != nil || !strings.Contains(string(log), " stdout ") || !strings.Contains(string(log), "tty-attached-42") {
		t.Fatalf("log of the terminal container (%v):\n%s", err, log)
	}
}

// TestStreamingTLS: with a certificate configured the streaming server
// speaks HTTPS, its URLs say so, and crictl exec reaches the container
// through it trusting that certificate (crictl also insists on a client
// certificate, which the server does not ask for).
func TestStreamingTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	p := newPodEnvWith(t, "")
	// Restart the daemon with TLS on the streaming server.
	p.daemon.Stop()
	cfg, err := os.ReadFile(p.daemon.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, fmt.Sprintf("\n[streaming]\naddress = \"127.0.0.1:0\"\ntls_cert_file = %q\ntls_key_file = %q\n", cert, key)...)
	if err := os.WriteFile(p.daemon.Config, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	p.restart(t)
	pod, podCfg := p.runPod(t, "tls")
	ctr := p.createContainer(t, pod, podCfg, "c", "sleep", "1000")
	p.start(t, ctr)
	resp, err := p.runtime.Exec(t.Context(), &runtime.ExecRequest{ContainerId: ctr, Cmd: []string{"true"}, Stdout: true})
	if err != nil || !strings.HasPrefix(resp.Url, "https://127.0.0.1:") {
		t.Fatalf("Exec URL = %q, %v; want https on loopback", resp.GetUrl(), err)
	}
	out, err := crictlCommand(t, p.daemon, "exec", "--tls-ca", cert, "--tls-cert", cert, "--tls-key", key, "--tls-sni", "localhost", ctr, "echo", "over-tls").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "over-tls") {
		t.Fatalf("crictl exec over TLS: %v\n%s", err, out)
	}
}

// writeSelfSigned writes a self-signed certificate for localhost and
// 127.0.0.1 (server and client use) and its key, and returns their paths.
func writeSelfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	return certFile, keyFile
}
