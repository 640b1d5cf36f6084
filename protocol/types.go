// types.go: the contract's names — frame types, kinds, states, reasons, paths, close codes — and
// the frames' shapes. It must not know the hub or the worker.

package protocol

import (
	"encoding/json"
	"time"
)

// Version is the protocol version a worker announces in hello.
const Version = 1

// Subprotocol is the WebSocket subprotocol both sides negotiate.
const Subprotocol = "studio-worker.v1"

// MaxFrameBytes caps one WebSocket frame on both sides; a larger one is closed with 1009.
const MaxFrameBytes = 1 << 20

// HTTP paths of the contract, relative to server_url.
const (
	PathWorkerWS     = "/v1/worker/ws"
	PathRegister     = "/v1/worker/register"
	PathJobs         = "/v1/jobs"
	PathWorkers      = "/v1/workers"
	PathPairingCodes = "/v1/pairing-codes"
	PathHealthz      = "/healthz"
	PathMetrics      = "/metrics"
	HeaderWorkerID   = "X-Worker-Id"
)

// ResultPath is where a worker uploads a binary result.
func ResultPath(jobID string) string { return "/v1/worker/jobs/" + jobID + "/result" }

// InputPath is where a worker downloads a job's input file.
func InputPath(jobID string) string { return "/v1/worker/jobs/" + jobID + "/input" }

// Defaults the hub announces in welcome; a receiver applies them when the field is absent or 0.
const (
	DefaultHeartbeatMS = 5000
	DefaultOfferTTLMS  = 10000
)

// WebSocket close codes used by the contract. 4001 and 4002 are private codes (4000–4999).
const (
	CloseNormal         = 1000
	CloseProtocolError  = 1002
	CloseMessageTooBig  = 1009
	CloseServiceRestart = 1012
	CloseAuthFailed     = 4001
	CloseSuperseded     = 4002
)

// Type is the value of a frame's "type" field.
type Type string

// Frame types, worker → hub.
const (
	TypeHello        Type = "hello"
	TypeHeartbeat    Type = "heartbeat"
	TypeAccept       Type = "accept"
	TypeDecline      Type = "decline"
	TypeProgress     Type = "progress"
	TypeCompleteJSON Type = "complete_json"
	TypeFail         Type = "fail"
	TypeLogBatch     Type = "log_batch"
	TypeReadyForMore Type = "ready_for_more"
)

// Frame types, hub → worker.
const (
	TypeWelcome      Type = "welcome"
	TypeOffer        Type = "offer"
	TypeCancel       Type = "cancel"
	TypeHeartbeatAck Type = "heartbeat_ack"
	TypeCompleteAck  Type = "complete_ack"
	TypeFailAck      Type = "fail_ack"
	TypeLogAck       Type = "log_ack"
	TypeError        Type = "error"
)

// Kind is a job kind.
type Kind string

// The job kinds of the contract.
const (
	KindLLM   Kind = "llm"
	KindImage Kind = "image"
	KindTTS   Kind = "tts"
	KindSTT   Kind = "stt"
	KindVideo Kind = "video"
)

// Kinds lists every kind in a stable order.
func Kinds() []Kind { return []Kind{KindLLM, KindImage, KindTTS, KindSTT, KindVideo} }

// Valid reports whether k is a kind of the contract.
func (k Kind) Valid() bool {
	switch k {
	case KindLLM, KindImage, KindTTS, KindSTT, KindVideo:
		return true
	}
	return false
}

// BinaryResult reports whether results of this kind are files uploaded over HTTP
// rather than JSON sent in complete_json.
func (k Kind) BinaryResult() bool {
	return k == KindImage || k == KindTTS || k == KindVideo
}

// ResultExts lists the file extensions allowed for a kind's binary result, the preferred first.
// JSON kinds have none.
func (k Kind) ResultExts() []string {
	switch k {
	case KindImage:
		return []string{"png", "jpg", "webp"}
	case KindTTS:
		return []string{"wav", "mp3", "ogg", "flac"}
	case KindVideo:
		return []string{"mp4", "webm", "gif"}
	}
	return nil
}

// AllowedExt reports whether ext (without dot, lower case) is allowed for a result of kind k.
func (k Kind) AllowedExt(ext string) bool {
	for _, e := range k.ResultExts() {
		if e == ext {
			return true
		}
	}
	return false
}

// WorkerState is the state a worker reports in heartbeats.
type WorkerState string

// Worker states.
const (
	StateIdle     WorkerState = "idle"
	StateBusy     WorkerState = "busy"
	StatePaused   WorkerState = "paused"
	StateDraining WorkerState = "draining"
	StateYielding WorkerState = "yielding"
)

// DeclineReason says why a worker declined an offer.
type DeclineReason string

// Decline reasons.
const (
	DeclineBusy        DeclineReason = "busy"
	DeclinePaused      DeclineReason = "paused"
	DeclineVRAM        DeclineReason = "vram"
	DeclineUnsupported DeclineReason = "unsupported"
	DeclineUser        DeclineReason = "user"
	DeclineExpired     DeclineReason = "expired"
)

// CancelReason says why the hub cancelled a job.
type CancelReason string

// Cancel reasons.
const (
	CancelExpired    CancelReason = "expired"
	CancelCancelled  CancelReason = "cancelled"
	CancelReassigned CancelReason = "reassigned"
)

// AckStatus is the hub's answer to a result.
type AckStatus string

// Completion acknowledgement statuses.
const (
	AckStored    AckStatus = "stored"
	AckDuplicate AckStatus = "duplicate"
	AckRejected  AckStatus = "rejected"
)

// ErrorCode is the code of an error frame.
type ErrorCode string

// Error codes.
const (
	ErrCodeAuthFailed    ErrorCode = "auth_failed"
	ErrCodeProtocolError ErrorCode = "protocol_error"
	ErrCodeSuperseded    ErrorCode = "superseded"
	ErrCodeShuttingDown  ErrorCode = "shutting_down"
	ErrCodeInternal      ErrorCode = "internal"
)

// LogLevel is the level of a shipped log entry.
type LogLevel string

// Log levels.
const (
	LevelDebug LogLevel = "debug"
	LevelInfo  LogLevel = "info"
	LevelWarn  LogLevel = "warn"
	LevelError LogLevel = "error"
)

// List is a JSON array that encodes as [] when nil: the contract never allows null for a list.
type List[T any] []T

// MarshalJSON encodes a nil list as [].
func (l List[T]) MarshalJSON() ([]byte, error) {
	if l == nil {
		return []byte("[]"), nil
	}
	return json.Marshal([]T(l))
}

// Object is a JSON object carried as raw bytes (job inputs and JSON results).
type Object = json.RawMessage

// ModelsPerKind maps a kind to the models the worker serves for it; it encodes as {} when nil.
type ModelsPerKind map[Kind]List[string]

// MarshalJSON encodes a nil map as {}.
func (m ModelsPerKind) MarshalJSON() ([]byte, error) {
	if m == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(map[Kind]List[string](m))
}

// Capabilities describe what a worker can do; sent in hello and, when changed, in heartbeats.
type Capabilities struct {
	MachineName            string        `json:"machine_name"`
	Username               string        `json:"username"`
	AgentVersion           string        `json:"agent_version"`
	Engine                 string        `json:"engine"`
	VRAMTotalGB            float64       `json:"vram_total_gb"`
	VRAMThresholdGB        float64       `json:"vram_threshold_gb"`
	AutoAccept             bool          `json:"auto_accept"`
	AutoStart              bool          `json:"auto_start"`
	MaxConcurrentJobs      int           `json:"max_concurrent_jobs"`
	TaskKinds              List[Kind]    `json:"task_kinds"`
	SupportedModels        List[string]  `json:"supported_models"`
	SupportedModelsPerKind ModelsPerKind `json:"supported_models_per_kind"`
	GPUs                   List[GPUInfo] `json:"gpus"`
}

// Supports reports whether the capabilities list model for kind.
func (c *Capabilities) Supports(kind Kind, model string) bool {
	for _, m := range c.SupportedModelsPerKind[kind] {
		if m == model {
			return true
		}
	}
	return false
}

// GPUInfo is a GPU as listed in the capabilities.
type GPUInfo struct {
	Index       int    `json:"index"`
	Name        string `json:"name"`
	UUID        string `json:"uuid"`
	VRAMTotalMB int64  `json:"vram_total_mb"`
}

// GPUStat is a GPU's live figures as sent in heartbeats.
type GPUStat struct {
	Index          int   `json:"index"`
	VRAMTotalMB    int64 `json:"vram_total_mb"`
	VRAMUsedMB     int64 `json:"vram_used_mb"`
	UtilizationPct int   `json:"utilization_pct"`
	TemperatureC   int   `json:"temperature_c"`
}

// Status is the worker status carried by a heartbeat.
type Status struct {
	State     WorkerState  `json:"state"`
	Running   List[string] `json:"running"`
	Accepting bool         `json:"accepting"`
}

// LogEntry is one shipped log line.
type LogEntry struct {
	TS      time.Time `json:"ts"`
	Level   LogLevel  `json:"level"`
	Source  string    `json:"source"`
	Message string    `json:"message"`
	JobID   string    `json:"job_id,omitempty"`
}

// Claim is the job carried by an offer.
type Claim struct {
	JobID          string  `json:"job_id"`
	Kind           Kind    `json:"kind"`
	Model          string  `json:"model"`
	VRAMGBEstimate float64 `json:"vram_gb_estimate"`
	Input          Object  `json:"input"`
	InputURL       string  `json:"input_url,omitempty"`
	// InputBytes is the input file's size when the hub knows it (spec §6); 0 = not said.
	InputBytes int64     `json:"input_bytes,omitempty"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// Frame is one protocol message. Every frame type of the contract implements it, plus Unknown.
type Frame interface {
	FrameType() Type
}

// Hello is the worker's first frame.
type Hello struct {
	Protocol     int          `json:"protocol"`
	AgentVersion string       `json:"agent_version"`
	Capabilities Capabilities `json:"capabilities"`
	InFlight     List[string] `json:"in_flight"`
	Outbox       List[string] `json:"outbox"`
}

// Heartbeat renews the worker's leases and reports its state; Capabilities only when they changed.
type Heartbeat struct {
	Status       Status        `json:"status"`
	GPUs         List[GPUStat] `json:"gpus"`
	Capabilities *Capabilities `json:"capabilities,omitempty"`
}

// Accept takes an offer.
type Accept struct {
	JobID string `json:"job_id"`
}

// Decline refuses an offer.
type Decline struct {
	JobID  string        `json:"job_id"`
	Reason DeclineReason `json:"reason"`
}

// Progress reports how far a job is (0..1).
type Progress struct {
	JobID    string  `json:"job_id"`
	Fraction float64 `json:"fraction"`
	Message  string  `json:"message,omitempty"`
}

// CompleteJSON carries the result of an llm or stt job.
type CompleteJSON struct {
	JobID  string `json:"job_id"`
	Result Object `json:"result"`
	Prompt string `json:"prompt,omitempty"`
}

// Fail reports a job that ended without a result.
type Fail struct {
	JobID     string `json:"job_id"`
	Error     string `json:"error"`
	Retryable bool   `json:"retryable"`
}

// LogBatch ships log entries; kept by the worker until a log_ack with the same seq.
type LogBatch struct {
	Seq     uint64         `json:"seq"`
	Entries List[LogEntry] `json:"entries"`
}

// ReadyForMore says a job ended on the worker and its slot is free.
type ReadyForMore struct{}

// Welcome accepts a session.
type Welcome struct {
	WorkerID      string `json:"worker_id"`
	ServerVersion string `json:"server_version"`
	HeartbeatMS   int64  `json:"heartbeat_ms,omitempty"`
	OfferTTLMS    int64  `json:"offer_ttl_ms,omitempty"`
}

// Heartbeat returns the heartbeat interval, applying the default.
func (w Welcome) Heartbeat() time.Duration {
	if w.HeartbeatMS <= 0 {
		return DefaultHeartbeatMS * time.Millisecond
	}
	return time.Duration(w.HeartbeatMS) * time.Millisecond
}

// OfferTTL returns the offer time to live, applying the default.
func (w Welcome) OfferTTL() time.Duration {
	if w.OfferTTLMS <= 0 {
		return DefaultOfferTTLMS * time.Millisecond
	}
	return time.Duration(w.OfferTTLMS) * time.Millisecond
}

// Offer proposes a job to the worker.
type Offer struct {
	Claim Claim `json:"claim"`
	// TTLMS is how long the offer lasts from when the hub sent it (spec §6), so a worker whose
	// clock is skewed can still count down; 0 = not said, go by Claim.ExpiresAt.
	TTLMS int64 `json:"ttl_ms,omitempty"`
}

// LocalDeadline is when the offer lapses by the receiver's own clock: received plus ttl_ms when
// the hub said it, else the hub's expires_at.
func (o Offer) LocalDeadline(received time.Time) time.Time {
	if o.TTLMS > 0 {
		return received.Add(time.Duration(o.TTLMS) * time.Millisecond)
	}
	return o.Claim.ExpiresAt
}

// Cancel tells the worker to stop a job and report nothing more for it.
type Cancel struct {
	JobID  string       `json:"job_id"`
	Reason CancelReason `json:"reason"`
}

// HeartbeatAck answers a heartbeat.
type HeartbeatAck struct{}

// CompleteAck answers a result.
type CompleteAck struct {
	JobID  string    `json:"job_id"`
	Status AckStatus `json:"status"`
}

// FailAck answers a fail.
type FailAck struct {
	JobID string `json:"job_id"`
}

// LogAck answers a log batch.
type LogAck struct {
	Seq uint64 `json:"seq"`
}

// Error reports a problem with the session.
type Error struct {
	Code    ErrorCode `json:"code"`
	Message string    `json:"message"`
}

// Unknown is a frame whose type this version does not know; receivers log and ignore it.
type Unknown struct {
	Type Type
	Raw  json.RawMessage
}

func (Hello) FrameType() Type        { return TypeHello }
func (Heartbeat) FrameType() Type    { return TypeHeartbeat }
func (Accept) FrameType() Type       { return TypeAccept }
func (Decline) FrameType() Type      { return TypeDecline }
func (Progress) FrameType() Type     { return TypeProgress }
func (CompleteJSON) FrameType() Type { return TypeCompleteJSON }
func (Fail) FrameType() Type         { return TypeFail }
func (LogBatch) FrameType() Type     { return TypeLogBatch }
func (ReadyForMore) FrameType() Type { return TypeReadyForMore }
func (Welcome) FrameType() Type      { return TypeWelcome }
func (Offer) FrameType() Type        { return TypeOffer }
func (Cancel) FrameType() Type       { return TypeCancel }
func (HeartbeatAck) FrameType() Type { return TypeHeartbeatAck }
func (CompleteAck) FrameType() Type  { return TypeCompleteAck }
func (FailAck) FrameType() Type      { return TypeFailAck }
func (LogAck) FrameType() Type       { return TypeLogAck }
func (Error) FrameType() Type        { return TypeError }
func (u Unknown) FrameType() Type    { return u.Type }
