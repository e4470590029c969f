package main

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
)

// expectations maps each critest spec that does not pass yet to the reason
// it does not. The file format:
//
//	# comment
//	reason: not built yet: pod sandboxes (issue #4)
//	<full spec name>
//	reason(runc crun): the handler's runtime cannot …
//	<full spec name>
//
// Every spec line belongs to the nearest "reason" line above it. A reason
// naming handlers in parentheses holds only for a run whose default handler
// is one of them; its specs are left out of other runs' expectations.
type expectations map[string]string

func readExpectations(path, handler string) (expectations, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	exp := expectations{}
	reason, applies := "", true
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "reason"):
			head, text, ok := strings.Cut(line, ":")
			scope, scoped := strings.CutPrefix(head, "reason(")
			switch {
			case !ok:
				return nil, fmt.Errorf("%s:%d: want 'reason: …' or 'reason(handler …): …'", path, n)
			case scoped && strings.HasSuffix(scope, ")"):
				applies = slices.Contains(strings.Fields(strings.TrimSuffix(scope, ")")), handler)
			case head == "reason":
				applies = true
			default:
				return nil, fmt.Errorf("%s:%d: want 'reason: …' or 'reason(handler …): …'", path, n)
			}
			if reason = strings.TrimSpace(text); reason == "" {
				return nil, fmt.Errorf("%s:%d: empty reason", path, n)
			}
		default:
			if reason == "" {
				return nil, fmt.Errorf("%s:%d: spec listed before any reason line", path, n)
			}
			if seen[line] {
				return nil, fmt.Errorf("%s:%d: spec listed twice: %s", path, n, line)
			}
			seen[line] = true
			if applies {
				exp[line] = reason
			}
		}
	}
	return exp, sc.Err()
}

// verdict compares a run with the expectations. A spec that did not pass
// and is not listed, a listed spec that passed, and a listed spec that did
// not run at all are each a mismatch: the list only shrinks and never lies.
type verdict struct {
	unexpected []string // did not pass, not listed
	nowPassing []string // listed, but passed
	stale      []string // listed, not in the run
}

func (v verdict) ok() bool { return len(v.unexpected)+len(v.nowPassing)+len(v.stale) == 0 }

func compare(results []specResult, exp expectations) verdict {
	var v verdict
	seen := map[string]bool{}
	for _, r := range results {
		seen[r.name] = true
		_, listed := exp[r.name]
		switch {
		case r.state != "passed" && !listed:
			v.unexpected = append(v.unexpected, fmt.Sprintf("%s [%s]", r.name, r.state))
		case r.state == "passed" && listed:
			v.nowPassing = append(v.nowPassing, r.name)
		}
	}
	for name := range exp {
		if !seen[name] {
			v.stale = append(v.stale, name)
		}
	}
	sort.Strings(v.stale)
	return v
}

func (v verdict) print(w *os.File) {
	section := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		fmt.Fprintf(w, "%s (%d):\n", title, len(items))
		for _, s := range items {
			fmt.Fprintf(w, "  %s\n", s)
		}
	}
	section("specs that did not pass and are not in the expectations file", v.unexpected)
	section("specs listed in the expectations file that now pass: remove them", v.nowPassing)
	section("specs listed in the expectations file that critest did not run", v.stale)
}
