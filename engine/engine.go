// engine.go: what an engine is to the rest of the worker — a Job in, a Result (JSON or a spool
// file) or an error saying whether to retry, with progress along the way. It must not know the
// session or the hub.

package engine

import (
	"context"
	"math"
	"sync"

	"studioworker/protocol"
)

// Job is one accepted job handed to an Engine.
type Job struct {
	ID    string
	Kind  protocol.Kind
	Model string
	// Input is the claim's input object.
	Input protocol.Object
	// InputFile is the local path of the downloaded input (stt), "" when none.
	InputFile string
	// SpoolDir is where a binary result file must be written; files are created only inside it.
	SpoolDir string
}

// Result is a finished job: JSON for llm and stt, a file for image, tts and video.
type Result struct {
	JSON   protocol.Object // llm, stt
	File   string          // path inside Job.SpoolDir for image, tts and video
	Ext    string          // "png", "wav", "gif", ... without the dot
	Prompt string          // optional, echoed to the hub
	// SHA256 is the lower-case hex sha256 of File, computed as the engine wrote it; "" when the
	// engine did not write the file itself (an exec tool's own output), and it is hashed later.
	SHA256 string
}

// Progress receives how far a job is (0..1) and what it is doing, in words. Calls are not
// throttled here; the session throttles what goes on the wire.
type Progress func(fraction float64, message string)

// Engine runs jobs.
type Engine interface {
	Run(ctx context.Context, job Job, progress Progress) (Result, error)
}

// backend is one configured backend serving one kind.
type backend interface {
	Engine
	// name is the backend's name as shown in the capabilities ("synthetic", "openai", ...).
	name() string
	// models asks the backend which models it serves for its kind; an error means it is down.
	models(ctx context.Context) ([]string, error)
}

// monotonic wraps p so that fractions are clamped to 0..1, never go backwards, and NaN is dropped;
// a nil p becomes a no-op.
func monotonic(p Progress) Progress {
	if p == nil {
		return func(float64, string) {}
	}
	var mu sync.Mutex
	last := 0.0
	return func(f float64, msg string) {
		mu.Lock()
		defer mu.Unlock()
		if math.IsNaN(f) {
			f = last
		}
		f = math.Max(last, math.Min(1, math.Max(0, f)))
		last = f
		p(f, msg)
	}
}
