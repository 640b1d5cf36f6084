// logging.go: where the worker's log records go — stderr, the rotating log file, and the worker
// itself (the hub's log stream and the window's log view), fanned out by slog.NewMultiHandler.
// It must not know who reads the entries the worker is handed, nor how the file rotates.

package app

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"studioworker/protocol"
)

// setupLogging logs to stderr and to the rotating log file; the returned sink, once set, also
// hands entries to the worker (the hub's log stream and the window's log view).
func (c *CLI) setupLogging(level slog.Level) (*slog.Logger, *logSink, func()) {
	sink := &logSink{}
	handlers := []slog.Handler{slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: level})}
	closeFn := func() {}
	var logPath string
	if dir, err := LogDir(); err == nil {
		if lf, err := OpenLogFile(filepath.Join(dir, "worker.log"), 0, 0); err == nil {
			handlers = append(handlers, slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			closeFn = func() { lf.Close() }
			logPath = lf.Path()
		} else {
			fmt.Fprintf(c.Stderr, "studio-worker: no log file: %v\n", err)
		}
	}
	handlers = append(handlers, sink)
	sink.path = logPath
	return slog.New(slog.NewMultiHandler(handlers...)), sink, closeFn
}

// logSink is the slog handler that feeds the worker: log entries for the hub and the window.
type logSink struct {
	mu    sync.Mutex
	w     *Worker
	path  string
	attrs []slog.Attr
}

func (s *logSink) set(w *Worker) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

func (s *logSink) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (s *logSink) Handle(_ context.Context, r slog.Record) error {
	s.mu.Lock()
	w := s.w
	s.mu.Unlock()
	if w == nil {
		return nil
	}
	e := protocol.LogEntry{TS: r.Time.UTC(), Level: levelOf(r.Level), Source: "worker", Message: r.Message}
	var extra []string
	visit := func(a slog.Attr) bool {
		switch a.Key {
		case "source":
			e.Source = a.Value.String()
		case "job_id":
			e.JobID = a.Value.String()
		default:
			extra = append(extra, a.Key+"="+a.Value.String())
		}
		return true
	}
	for _, a := range s.attrs {
		visit(a)
	}
	r.Attrs(visit)
	if len(extra) > 0 {
		e.Message += " (" + strings.Join(extra, " ") + ")"
	}
	w.Log(e)
	return nil
}

func (s *logSink) WithAttrs(as []slog.Attr) slog.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &logSinkView{parent: s, attrs: append(append([]slog.Attr{}, s.attrs...), as...)}
}

func (s *logSink) WithGroup(string) slog.Handler { return s }

// logSinkView is a logSink with attributes bound (logger.With), sharing the parent's worker.
type logSinkView struct {
	parent *logSink
	attrs  []slog.Attr
}

func (v *logSinkView) Enabled(ctx context.Context, l slog.Level) bool {
	return v.parent.Enabled(ctx, l)
}

func (v *logSinkView) Handle(ctx context.Context, r slog.Record) error {
	r2 := r.Clone()
	r2.AddAttrs(v.attrs...)
	return v.parent.Handle(ctx, r2)
}

func (v *logSinkView) WithAttrs(as []slog.Attr) slog.Handler {
	return &logSinkView{parent: v.parent, attrs: append(append([]slog.Attr{}, v.attrs...), as...)}
}

func (v *logSinkView) WithGroup(string) slog.Handler { return v }

func levelOf(l slog.Level) protocol.LogLevel {
	switch {
	case l >= slog.LevelError:
		return protocol.LevelError
	case l >= slog.LevelWarn:
		return protocol.LevelWarn
	case l >= slog.LevelInfo:
		return protocol.LevelInfo
	}
	return protocol.LevelDebug
}
