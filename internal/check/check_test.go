package check

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCNIPluginsNamesWhatIsMissing(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"bridge", "loopback"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r := checkCNIPlugins([]string{dir})
	if r.OK || !strings.Contains(r.Detail, "host-local, portmap") || !strings.Contains(r.Fix, "containernetworking-plugins") {
		t.Fatalf("result = %+v", r)
	}
}

func TestMissingBinary(t *testing.T) {
	r := checkBinary(t.Context(), "berth-no-such-binary", nil, "apt-get install it")
	if r.OK || r.Fix != "apt-get install it" {
		t.Fatalf("result = %+v", r)
	}
}

func TestPrint(t *testing.T) {
	var buf bytes.Buffer
	ok := Print(&buf, []Result{
		{Name: "runc", OK: true, Detail: "/usr/sbin/runc"},
		{Name: "iptables", Detail: "not found in PATH", Fix: "apt-get install iptables"},
	})
	if ok {
		t.Error("Print reported success with a failed check")
	}
	out := buf.String()
	if !strings.Contains(out, "MISSING  iptables") || !strings.Contains(out, "fix: apt-get install iptables") {
		t.Errorf("report:\n%s", out)
	}
}

func TestPrintOptionalAbsent(t *testing.T) {
	var buf bytes.Buffer
	ok := Print(&buf, []Result{
		{Name: "handler runc", OK: true, Detail: "/usr/sbin/runc"},
		{Name: "handler runc-upstream", Detail: "/usr/local/libexec/berth/runc not found", Fix: "make deps", Optional: true},
	})
	if !ok {
		t.Error("an absent optional handler failed the report")
	}
	if out := buf.String(); !strings.Contains(out, "absent   handler runc-upstream") || !strings.Contains(out, "fix: make deps") {
		t.Errorf("report:\n%s", buf.String())
	}
}
