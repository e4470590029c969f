package crilog

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

type buffer struct{ bytes.Buffer }

func (*buffer) Close() error { return nil }

func TestCopy(t *testing.T) {
	var out buffer
	f := NewFile(&out)
	f.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC) }
	long := strings.Repeat("x", MaxLineSize+10)
	in := "hello\n\nworld\n" + long + "\ntail"
	if err := f.Copy(Stdout, strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	ts := "2026-01-02T03:04:05.000000006Z"
	want := ts + " stdout F hello\n" +
		ts + " stdout F \n" +
		ts + " stdout F world\n" +
		ts + " stdout P " + long[:MaxLineSize] + "\n" +
		ts + " stdout F " + long[MaxLineSize:] + "\n" +
		ts + " stdout P tail\n"
	if got := out.String(); got != want {
		t.Fatalf("log =\n%q\nwant\n%q", got, want)
	}
}

func TestSwap(t *testing.T) {
	var a, b buffer
	f := NewFile(&a)
	if err := f.Copy(Stderr, strings.NewReader("one\n")); err != nil {
		t.Fatal(err)
	}
	if err := f.Swap(&b); err != nil {
		t.Fatal(err)
	}
	if err := f.Copy(Stderr, strings.NewReader("two\n")); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(a.String(), " stderr F one\n") || !strings.HasSuffix(b.String(), " stderr F two\n") || strings.Contains(a.String(), "two") {
		t.Fatalf("a = %q, b = %q", a.String(), b.String())
	}
}
