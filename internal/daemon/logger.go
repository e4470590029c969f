package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	clog "github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// NewLogger builds the daemon's slog logger: format "text" or "json", level
// "debug", "info", "warn" or "error".
func NewLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("log format %q: want text or json", format)
	}
}

// RouteContainerdLogs sends what containerd's packages log (through the
// process-global logrus logger of github.com/containerd/log) into logger,
// tagged component=containerd, so berth's log has one format. containerd's
// Info lines (registry fallbacks, retries) are demoted to Debug: they are
// per-request chatter that berth's own lines already summarise.
func RouteContainerdLogs(logger *slog.Logger) {
	l := clog.L.Logger
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.DebugLevel)
	l.ReplaceHooks(logrus.LevelHooks{})
	l.AddHook(slogHook{logger: logger.With("component", "containerd")})
}

type slogHook struct{ logger *slog.Logger }

// containerdNotices are containerd warnings about the host that describe
// a normal machine rather than a fault: they are logged at Info. The content
// store probes fsverity at every start; most file systems lack it, and
// without it the store simply does not use it.
var containerdNotices = map[string]bool{
	"failed check for fsverity support": true,
}

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h slogHook) Fire(e *logrus.Entry) error {
	level := slog.LevelDebug
	switch {
	case e.Level <= logrus.ErrorLevel:
		level = slog.LevelError
	case e.Level == logrus.WarnLevel && containerdNotices[e.Message]:
		level = slog.LevelInfo
	case e.Level == logrus.WarnLevel:
		level = slog.LevelWarn
	}
	ctx := e.Context
	if ctx == nil {
		ctx = context.Background()
	}
	if !h.logger.Enabled(ctx, level) {
		return nil
	}
	attrs := make([]slog.Attr, 0, len(e.Data))
	for k, v := range e.Data {
		attrs = append(attrs, slog.Any(k, v))
	}
	h.logger.LogAttrs(ctx, level, e.Message, attrs...)
	return nil
}
