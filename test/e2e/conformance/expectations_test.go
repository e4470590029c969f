package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadExpectationsScopesReasonsToHandlers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exp.txt")
	const file = "# comment\nreason: everywhere\nspec A\nreason(runc crun): old runtimes\nspec B\nreason: everywhere again\nspec C\n"
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	for handler, want := range map[string][]string{
		"runc":          {"spec A", "spec B", "spec C"},
		"crun":          {"spec A", "spec B", "spec C"},
		"runc-upstream": {"spec A", "spec C"},
	} {
		exp, err := readExpectations(path, handler)
		if err != nil {
			t.Fatal(err)
		}
		if len(exp) != len(want) {
			t.Errorf("%s: got %v, want %v", handler, exp, want)
		}
		for _, s := range want {
			if _, ok := exp[s]; !ok {
				t.Errorf("%s: %q missing from %v", handler, s, exp)
			}
		}
	}
	for _, bad := range []string{"reason(runc: x\nspec\n", "reasons: x\nspec\n", "reason:\nspec\n", "spec\n", "reason: a\nspec\nreason(crun): b\nspec\n"} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readExpectations(path, "runc"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
