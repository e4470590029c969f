package runclog

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLastError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log.json")
	os.WriteFile(p, []byte(`{"level":"error","msg":"first"}
{"level":"info","msg":"noise"}
not json
{"level":"error","msg":"exec: \"top\": executable file not found in $PATH"}
{"level":"warning","msg":"later warning"}
`), 0o644)
	if got := LastError(p); got != `exec: "top": executable file not found in $PATH` {
		t.Errorf("LastError = %q", got)
	}
	if got := LastError(filepath.Join(t.TempDir(), "missing")); got != "" {
		t.Errorf("missing log: %q", got)
	}
}
