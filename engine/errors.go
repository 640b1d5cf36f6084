// errors.go: an engine's errors — the kinds (backend down, backend failed, unsupported, invalid
// input), whether each is retryable, and the field it is about. They must not know the wire.

package engine

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors for errors.Is. Every error a Router returns wraps at most one of them.
var (
	// ErrUnsupported: the kind is not configured or the model is not served here. Not retryable.
	ErrUnsupported = errors.New("unsupported")
	// ErrInvalidInput: the job's input misses a field or holds a bad value. Not retryable.
	ErrInvalidInput = errors.New("invalid input")
	// ErrBackendDown: the backend could not be reached. Retryable.
	ErrBackendDown = errors.New("backend not reachable")
	// ErrBackendFailed: the backend answered with a failure of its own (an HTTP 5xx, a non-zero
	// exit, an execution error). Retryable unless the configuration says otherwise.
	ErrBackendFailed = errors.New("backend failed")
	// ErrTimeout: the backend did not finish within the configured timeout. Retryable.
	ErrTimeout = errors.New("backend timed out")
	// ErrCancelled: the job's context ended (cancelled by the hub, the user or a shutdown).
	// Retryable, so that a job cut short by a shutdown runs again elsewhere.
	ErrCancelled = errors.New("cancelled")
)

// Error is a classified engine failure.
type Error struct {
	// Retry says whether the hub may run the job again (on this or another worker). It cannot be
	// called Retryable because that is the method session/ reads.
	Retry bool
	// Field is the input field at fault ("width", "messages[2].content"), "" when none.
	Field string
	// Err is the cause; it wraps one of the sentinels above.
	Err error
}

func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Retryable reports whether the hub may run the job again; session/ reads it through this method.
func (e *Error) Retryable() bool { return e.Retry }

// Retryable reports whether err allows the job to run again. An error without a classification
// is retryable: the job may well succeed on another worker.
func Retryable(err error) bool {
	if err == nil {
		return false
	}
	var r interface{ Retryable() bool }
	if errors.As(err, &r) {
		return r.Retryable()
	}
	return true
}

// invalidInput returns a non-retryable error naming the input field at fault.
func invalidInput(field, format string, args ...any) *Error {
	return &Error{Field: field, Err: fmt.Errorf("%w: input.%s: %s", ErrInvalidInput, field, fmt.Sprintf(format, args...))}
}

// unsupported returns a non-retryable error for a kind or model this worker does not serve.
func unsupported(field, format string, args ...any) *Error {
	return &Error{Field: field, Err: fmt.Errorf("%w: %s", ErrUnsupported, fmt.Sprintf(format, args...))}
}

// backendDown returns a retryable error for a backend that could not be reached.
func backendDown(name string, err error) *Error {
	return &Error{Retry: true, Err: fmt.Errorf("%w: %s: %w", ErrBackendDown, name, err)}
}

// backendFailed returns an error for a backend that answered with a failure.
func backendFailed(retry bool, format string, args ...any) *Error {
	return &Error{Retry: retry, Err: fmt.Errorf("%w: %s", ErrBackendFailed, fmt.Sprintf(format, args...))}
}

// ctxError classifies the end of a context: ErrCancelled when parent (the job's context) ended,
// ErrTimeout when only the backend's own deadline passed. It returns nil while both are live.
func ctxError(parent, ctx context.Context, name string) *Error {
	if err := parent.Err(); err != nil {
		return &Error{Retry: true, Err: fmt.Errorf("%w: %s: %w", ErrCancelled, name, context.Cause(parent))}
	}
	if err := ctx.Err(); err != nil {
		return &Error{Retry: true, Err: fmt.Errorf("%w: %s: %w", ErrTimeout, name, err)}
	}
	return nil
}
