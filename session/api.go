// Package session is the worker's side of the Studio worker protocol (PROTOCOL.md): one WebSocket
// session at a time with a hub, the reconnect policy, keepalive, log shipping and the durable
// outbox of finished results in the spool folder.
//
// It knows nothing of GPUs, engines or the UI. It asks a Handler (implemented by app.Worker) for
// the capabilities and status to report, what to do with each offer, and to run accepted jobs, and
// it reports every event to the Handler.
package session

import (
	"context"
	"errors"
	"time"

	"studioworker/protocol"
)

// Errors that end Session.Run for good; app maps them to exit codes.
var (
	// ErrRegisterFirst: no worker id or token in the configuration.
	ErrRegisterFirst = errors.New("this worker is not registered: register first (studio-worker register --server URL --pairing-code CODE)")
	// ErrInsecureURL: plain http:// to a host that is not loopback without allow_insecure.
	ErrInsecureURL = errors.New("refusing plain http:// to a host that is not loopback: use https:// or set allow_insecure")
	// ErrAuthFailed: the hub rejected the credentials (401/403 at the upgrade, an auth_failed frame,
	// or close code 4001). The worker must be registered again.
	ErrAuthFailed = errors.New("the Studio rejected this worker's credentials: register again")
	// ErrSuperseded: the same worker id connected from somewhere else (error superseded or close 4002).
	ErrSuperseded = errors.New("this worker id is connected elsewhere")
	// ErrGaveUp: the configured number of reconnect attempts was used up.
	ErrGaveUp = errors.New("gave up reconnecting")
	// ErrPairingRejected: registration answered 403 (wrong or used pairing code).
	ErrPairingRejected = errors.New("the pairing code was rejected (wrong or already used)")
)

// Handler is what the session needs from the worker. Its methods are called from session
// goroutines and must be safe for concurrent use.
type Handler interface {
	// Capabilities returns the worker's current capabilities. It is called for hello and before
	// every heartbeat, so it must be cheap (cached); the session sends them again only when they
	// differ from the last ones sent.
	Capabilities() protocol.Capabilities
	// Status returns the state and live GPU figures for the next heartbeat; the session fills in
	// status.running itself from the jobs it runs.
	Status() (state protocol.WorkerState, accepting bool, gpus []protocol.GPUStat)
	// Offer decides on an offer. It runs on its own goroutine and may block (waiting for the user
	// when auto-accept is off) until ctx ends; ctx ends at claim.ExpiresAt or when the session
	// stops. To take the job it returns a Lease, which then owns the job to its end: the session
	// calls exactly one of its methods, once — Run when the accept went out and the job runs,
	// Release when it will not run after all (the accept could not be sent, the hub withdrew the
	// offer, the session is stopping, the input could not be fetched). To refuse it returns a nil
	// Lease and the decline reason.
	Offer(ctx context.Context, claim protocol.Claim) (Lease, protocol.DeclineReason)
	// Event receives every session event. It must not block.
	Event(e Event)
}

// Lease is a job a Handler took at an offer. Whoever holds it owns the job until exactly one of
// its methods has returned: what the Handler reserved for the job (a slot, VRAM) is given back
// there, and nowhere else.
type Lease interface {
	// Run runs the job. ctx is cancelled when the hub cancels the job, the user cancels it
	// (Session.CancelJob) or the session stops. A binary result must be a file inside
	// job.SpoolDir. An error whose chain has a `Retryable() bool` method decides the fail frame's
	// retryable flag; other errors are retryable. progress may be called often: the session
	// throttles what reaches the wire and the Handler's JobProgressEvent alike.
	Run(ctx context.Context, job Job, progress func(fraction float64, message string)) (Result, error)
	// Release gives the job back without running it.
	Release()
}

// Job is an accepted job handed to Lease.Run.
type Job struct {
	Claim protocol.Claim
	// InputFile is the local path of the downloaded input (claim.input_url), "" when none.
	InputFile string
	// SpoolDir is the folder where a binary result file must be written. It exists for the
	// binary kinds and for a job with an input; a JSON job that writes there makes it first
	// (os.MkdirAll). The session removes it, whatever it holds, when the job ends.
	SpoolDir string
}

// Result is a finished job's result: JSON for llm and stt, a file for image, tts and video.
type Result struct {
	JSON   protocol.Object // set for JSON kinds
	File   string          // path of the result file inside Job.SpoolDir, for binary kinds
	Ext    string          // file extension without dot, e.g. "png"
	Prompt string          // optional prompt echoed to the hub
	// SHA256 is the lower-case hex sha256 of File when the engine computed it as it wrote the
	// file, "" otherwise. With it the session does not read the file back to hash it; the hub
	// still checks it, and a mismatch makes the session hash the file itself and send it again.
	SHA256 string
}

// ConnState is the state of the connection to the hub.
type ConnState string

// Connection states.
const (
	ConnConnecting   ConnState = "connecting"
	ConnConnected    ConnState = "connected"
	ConnReconnecting ConnState = "reconnecting" // waiting for the next attempt
	ConnAuthFailed   ConnState = "auth_failed"
	ConnSuperseded   ConnState = "superseded"
	ConnGaveUp       ConnState = "gave_up"
	ConnStopped      ConnState = "stopped"
)

// Event is one thing that happened in the session; the concrete types below implement it.
type Event interface{ sessionEvent() }

// ConnEvent reports a change of connection state.
type ConnEvent struct {
	State     ConnState
	Server    string    // host of server_url
	Attempt   int       // reconnect attempt number, 0 when connected
	NextRetry time.Time // when the next attempt starts (ConnReconnecting)
	Err       error     // the last error, in words, nil when none
}

// OfferEvent reports an offer received from the hub, before the Handler is asked.
type OfferEvent struct{ Claim protocol.Claim }

// OfferResolvedEvent reports how an offer ended.
type OfferResolvedEvent struct {
	JobID    string
	Accepted bool
	Reason   protocol.DeclineReason // when declined
}

// JobStartedEvent reports a job handed to Lease.Run.
type JobStartedEvent struct{ Claim protocol.Claim }

// JobProgressEvent reports progress of a running job, as it goes to the hub: at most once per
// Config.ProgressInterval, the latest value winning, so the Handler needs no throttle of its own.
type JobProgressEvent struct {
	JobID    string
	Fraction float64
	Message  string
}

// JobEndedEvent reports that a job's Lease.Run returned (or that it was released before it ran
// because its input could not be fetched).
type JobEndedEvent struct {
	JobID     string
	Kind      protocol.Kind
	Model     string
	Duration  time.Duration
	Err       error  // nil on success
	Retryable bool   // when Err != nil
	Cancelled bool   // cancelled by the hub or the user; nothing is reported for it
	File      string // the result file, binary kinds
}

// DeliveredEvent reports the hub's answer to a result or a fail from the outbox.
type DeliveredEvent struct {
	JobID  string
	Status protocol.AckStatus // stored, duplicate or rejected; "" for a fail_ack
	Bytes  int64              // bytes uploaded for a binary result
}

// CancelEvent reports a cancel frame from the hub.
type CancelEvent struct {
	JobID  string
	Reason protocol.CancelReason
}

// LogEvent carries a line the session itself logged and ships to the hub (an upload refused, a
// result rejected, a job not run), so the UI can show it too. Entries given to Session.Log are not
// echoed back.
type LogEvent struct{ Entry protocol.LogEntry }

func (ConnEvent) sessionEvent()          {}
func (LogEvent) sessionEvent()           {}
func (OfferEvent) sessionEvent()         {}
func (OfferResolvedEvent) sessionEvent() {}
func (JobStartedEvent) sessionEvent()    {}
func (JobProgressEvent) sessionEvent()   {}
func (JobEndedEvent) sessionEvent()      {}
func (DeliveredEvent) sessionEvent()     {}
func (CancelEvent) sessionEvent()        {}
