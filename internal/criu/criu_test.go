package criu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "criu")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheck(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "criu")
	if _, err := Check(t.Context(), missing); !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), missing+" not found") {
		t.Errorf("missing CRIU: %v", err)
	}
	broken := script(t, "echo 'Warn: probing'; echo 'Error (criu/vdso.c:123): Unexpected rt vDSO area bounds' >&2; exit 1\n")
	if _, err := Check(t.Context(), broken); !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), "Unexpected rt vDSO area bounds") {
		t.Errorf("failing criu check: %v", err)
	}
	good := script(t, "[ \"$1\" = check ] && echo 'Looks good.'\n")
	if bin, err := Check(t.Context(), good); err != nil || bin != good {
		t.Errorf("working CRIU: %s, %v", bin, err)
	}
}
