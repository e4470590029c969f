package daemon

import (
	"bytes"
	"strings"
	"testing"
)

// TestLoggerSetReachesDerivedLoggers: a reload's new level and format apply
// to loggers derived before it (With), keeping their attributes.
func TestLoggerSetReachesDerivedLoggers(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, "info", "text")
	if err != nil {
		t.Fatal(err)
	}
	derived := l.With("component", "containerd")
	derived.Debug("hidden")
	derived.Info("as text")
	if err := l.Set("debug", "json"); err != nil {
		t.Fatal(err)
	}
	derived.Debug("now shown")
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("a Debug line at level info:\n%s", out)
	}
	if !strings.Contains(out, `level=INFO msg="as text" component=containerd`) {
		t.Errorf("text line missing:\n%s", out)
	}
	if !strings.Contains(out, `"msg":"now shown","component":"containerd"`) {
		t.Errorf("after Set(debug, json) the derived logger did not follow:\n%s", out)
	}
	if err := l.Set("loud", "json"); err == nil {
		t.Error("an invalid level accepted")
	}
}
