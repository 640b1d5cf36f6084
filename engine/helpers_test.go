package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"studioworker/protocol"
)

// newTestJob returns a job of kind with input, spooling into a fresh temporary folder.
func newTestJob(t *testing.T, kind protocol.Kind, model, input string) Job {
	t.Helper()
	return Job{ID: "job-" + string(kind), Kind: kind, Model: model, Input: protocol.Object(input), SpoolDir: t.TempDir()}
}

// progressLog records progress calls; safe for concurrent use.
type progressLog struct {
	mu    sync.Mutex
	fracs []float64
	msgs  []string
}

func (p *progressLog) fn(f float64, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fracs = append(p.fracs, f)
	p.msgs = append(p.msgs, msg)
}

func (p *progressLog) snapshot() ([]float64, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]float64(nil), p.fracs...), append([]string(nil), p.msgs...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runAsync runs fn on a goroutine and returns a channel with its error.
func runAsync(fn func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	return ch
}

// awaitErr waits for an error from ch, failing the test after d.
func awaitErr(t *testing.T, ch <-chan error, d time.Duration) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		t.Fatalf("no answer within %v", d)
		return nil
	}
}

// assertClass checks an error's class, retryability and field.
func assertClass(t *testing.T, err error, class error, retry bool, field string) {
	t.Helper()
	if err == nil {
		t.Fatalf("want an error wrapping %v, got nil", class)
	}
	if class != nil && !errors.Is(err, class) {
		t.Errorf("error %q does not wrap %v", err, class)
	}
	if Retryable(err) != retry {
		t.Errorf("Retryable(%q) = %v, want %v", err, Retryable(err), retry)
	}
	var e *Error
	if field != "" && (!errors.As(err, &e) || e.Field != field) {
		t.Errorf("error %q: field %q, want %q", err, e.Field, field)
	}
}

func mustRouter(t *testing.T, cfg Config, opts Options) *Router {
	t.Helper()
	r, err := New(cfg, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

func background(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}
