package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	clog "github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// Logger is the daemon's logger, whose level and format a config reload
// can change while every logger derived from it (With, WithGroup) follows.
type Logger struct {
	*slog.Logger
	root *switchRoot
}

// NewLogger builds the daemon's slog logger: format "text" or "json", level
// "debug", "info", "warn" or "error".
func NewLogger(w io.Writer, level, format string) (*Logger, error) {
	root := &switchRoot{w: w}
	if err := root.set(level, format); err != nil {
		return nil, err
	}
	return &Logger{Logger: slog.New(&switchHandler{root: root}), root: root}, nil
}

// Set changes the level and format of every logger derived from l.
func (l *Logger) Set(level, format string) error { return l.root.set(level, format) }

// switchRoot holds the current level and base handler; gen counts changes
// so derived handlers know when to rebuild.
type switchRoot struct {
	w     io.Writer
	level slog.LevelVar
	mu    sync.Mutex
	base  atomic.Pointer[baseHandler]
}

type baseHandler struct {
	h   slog.Handler
	gen uint64
}

func (r *switchRoot) set(level, format string) error {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("log level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: &r.level}
	var h slog.Handler
	switch format {
	case "text":
		h = slog.NewTextHandler(r.w, opts)
	case "json":
		h = slog.NewJSONHandler(r.w, opts)
	default:
		return fmt.Errorf("log format %q: want text or json", format)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.level.Set(lv)
	var gen uint64
	if old := r.base.Load(); old != nil {
		gen = old.gen + 1
	}
	r.base.Store(&baseHandler{h: h, gen: gen})
	return nil
}

// switchHandler is the current base handler with this logger's attributes
// and groups applied; it rebuilds that derivation once per change.
type switchHandler struct {
	root  *switchRoot
	ops   []func(slog.Handler) slog.Handler
	cache atomic.Pointer[baseHandler]
}

func (h *switchHandler) current() slog.Handler {
	base := h.root.base.Load()
	if c := h.cache.Load(); c != nil && c.gen == base.gen {
		return c.h
	}
	d := base.h
	for _, op := range h.ops {
		d = op(d)
	}
	h.cache.Store(&baseHandler{h: d, gen: base.gen})
	return d
}

func (h *switchHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.root.level.Level()
}

func (h *switchHandler) Handle(ctx context.Context, r slog.Record) error {
	return h.current().Handle(ctx, r)
}

func (h *switchHandler) derive(op func(slog.Handler) slog.Handler) *switchHandler {
	return &switchHandler{root: h.root, ops: append(slices.Clone(h.ops), op)}
}

func (h *switchHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.derive(func(b slog.Handler) slog.Handler { return b.WithAttrs(as) })
}

func (h *switchHandler) WithGroup(name string) slog.Handler {
	return h.derive(func(b slog.Handler) slog.Handler { return b.WithGroup(name) })
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
