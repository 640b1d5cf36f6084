// stall.go: a backend that stops sending in the middle of an answer ends the job when its
// stall_timeout_s has passed, rather than at timeout_s: ErrStalled, the watchdog on an answer's
// body, and the classification of a request that ended early.
package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// ErrStalled: the backend sent nothing (an OpenAI-compatible server's answer) or reported no
// progress (ComfyUI) for its stall_timeout_s. Retryable. It does not wrap ErrBackendDown: a
// stalled backend may still be up (a ComfyUI node that runs long without a step), and one that
// went away (llama-server stopped with SIGTERM keeps its open connection but closes its listener)
// is found down by the next probe.
var ErrStalled = errors.New("backend stalled")

// DefaultStallTimeout is the stall timeout when stall_timeout_s is left at zero.
const DefaultStallTimeout = 60 * time.Second

func (bc BackendConfig) stallTimeout() time.Duration {
	if bc.StallTimeoutS <= 0 {
		return DefaultStallTimeout
	}
	return time.Duration(bc.StallTimeoutS * float64(time.Second))
}

// stalledError is the error of a backend silent for d: what says what it failed to do, e.g.
// "openai /chat/completions sent nothing".
func stalledError(what string, d time.Duration) *Error {
	return &Error{Retry: true, Err: fmt.Errorf("%w: %s for %s (stall_timeout_s): the backend stopped answering", ErrStalled, what, seconds(d))}
}

// seconds writes d as "60 s", "0.25 s".
func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + " s"
}

// withStall returns a context for a job's requests that the watchdogs of stall cancel, with the
// stall's error as its cause; stop releases it. ctx is the job's context with timeout_s.
func withStall(ctx context.Context, d time.Duration) (context.Context, *stall) {
	sctx, cancel := context.WithCancelCause(ctx)
	return sctx, &stall{d: d, cancel: cancel}
}

// stall holds what the watchdogs of one job need: the timeout and the cancel of the job's
// requests.
type stall struct {
	d      time.Duration
	cancel context.CancelCauseFunc
}

func (s *stall) stop() { s.cancel(nil) }

// watch returns body under a watchdog: once its first byte has arrived, a wait of the stall
// timeout for the next ones cancels the request, and the reader's error is then
// stalledError(name + " sent nothing"). The time before the first byte is the backend's to take
// (loading a model, processing the prompt, waiting in its queue, a whole transcription): only
// timeout_s bounds it. One timer per answer, reset on each read that brings bytes: no
// allocation and no goroutine per read.
func (s *stall) watch(body io.ReadCloser, name string) io.ReadCloser {
	return &stallWatch{body: body, s: s, name: name}
}

type stallWatch struct {
	body  io.ReadCloser
	s     *stall
	name  string
	timer *time.Timer // nil until the first byte; used by the reading goroutine only
}

func (w *stallWatch) Read(p []byte) (int, error) {
	n, err := w.body.Read(p)
	if n > 0 {
		if w.timer == nil {
			w.timer = time.AfterFunc(w.s.d, w.fire)
		} else {
			w.timer.Reset(w.s.d)
		}
	}
	return n, err
}

func (w *stallWatch) fire() { w.s.cancel(stalledError(w.name+" sent nothing", w.s.d)) }

func (w *stallWatch) Close() error {
	if w.timer != nil {
		w.timer.Stop()
	}
	return w.body.Close()
}

// endOf classifies the end of ctx, a job's request context from withStall: ErrCancelled when
// parent (the job's context) ended, ErrStalled when a watchdog ended it, ErrTimeout when
// timeout_s passed. It returns nil while all are live.
func endOf(parent, ctx context.Context, name string) *Error {
	var e *Error
	if parent.Err() == nil && errors.As(context.Cause(ctx), &e) && errors.Is(e, ErrStalled) {
		return e
	}
	return ctxError(parent, ctx, name)
}
