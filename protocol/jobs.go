// jobs.go: each job kind's input and result as the contract gives them. It must not know the
// backends that make them.

package protocol

import "time"

// Message is one chat message of an llm input.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// LLMInput is the input of an llm job: prompt or messages (at least one).
type LLMInput struct {
	Prompt      string        `json:"prompt,omitempty"`
	Messages    List[Message] `json:"messages,omitempty"`
	MaxTokens   *int          `json:"max_tokens,omitempty"`
	Temperature *float64      `json:"temperature,omitempty"`
	Seed        *int64        `json:"seed,omitempty"`
}

// Usage counts the tokens of an llm job.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
}

// LLMResult is the complete_json result of an llm job.
type LLMResult struct {
	Text         string `json:"text"`
	FinishReason string `json:"finish_reason"`
	Usage        Usage  `json:"usage"`
	// Model is the model the backend says answered, when it differs from claim.model (spec §6).
	Model string `json:"model,omitempty"`
}

// ImageInput is the input of an image job.
type ImageInput struct {
	Prompt         string `json:"prompt"`
	NegativePrompt string `json:"negative_prompt,omitempty"`
	Width          int    `json:"width"`
	Height         int    `json:"height"`
	Steps          *int   `json:"steps,omitempty"`
	Seed           *int64 `json:"seed,omitempty"`
}

// TTSInput is the input of a tts job.
type TTSInput struct {
	Text  string   `json:"text"`
	Voice string   `json:"voice,omitempty"`
	Speed *float64 `json:"speed,omitempty"`
}

// STTInput is the input of an stt job; the audio comes from the offer's input_url.
type STTInput struct {
	Language string `json:"language,omitempty"`
}

// Segment is a timed piece of a transcript, in seconds.
type Segment struct {
	Start float64 `json:"start"`
	End   float64 `json:"end"`
	Text  string  `json:"text"`
}

// STTResult is the complete_json result of an stt job.
type STTResult struct {
	Text     string        `json:"text"`
	Language string        `json:"language"`
	Segments List[Segment] `json:"segments"`
	// Model is the model the backend says answered, when it differs from claim.model (spec §6).
	Model string `json:"model,omitempty"`
}

// VideoInput is the input of a video job.
type VideoInput struct {
	Prompt string `json:"prompt"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	Frames int    `json:"frames"`
	FPS    int    `json:"fps"`
	Seed   *int64 `json:"seed,omitempty"`
}

// JobStatus is a job's status in the hub's job API.
type JobStatus string

// Job statuses.
const (
	JobQueued    JobStatus = "queued"
	JobOffered   JobStatus = "offered"
	JobRunning   JobStatus = "running"
	JobCompleted JobStatus = "completed"
	JobFailed    JobStatus = "failed"
	JobCancelled JobStatus = "cancelled"
)

// Done reports whether the status is final.
func (s JobStatus) Done() bool {
	return s == JobCompleted || s == JobFailed || s == JobCancelled
}

// RegisterRequest is the body of POST /v1/worker/register.
type RegisterRequest struct {
	Name        string `json:"name"`
	PairingCode string `json:"pairing_code"`
}

// RegisterResponse is the 201 answer to a registration.
type RegisterResponse struct {
	WorkerID  string `json:"worker_id"`
	AuthToken string `json:"auth_token"`
}

// PairingCodeResponse is the 201 answer of POST /v1/pairing-codes.
type PairingCodeResponse struct {
	PairingCode string `json:"pairing_code"`
}

// JobRequest is the body of POST /v1/jobs (or its "job" form field).
type JobRequest struct {
	Kind           Kind     `json:"kind"`
	Model          string   `json:"model"`
	Input          Object   `json:"input"`
	VRAMGBEstimate *float64 `json:"vram_gb_estimate,omitempty"`
}

// JobCreated is the 201 answer of POST /v1/jobs.
type JobCreated struct {
	JobID string `json:"job_id"`
}

// JobInfo is the answer of GET /v1/jobs/{id}.
type JobInfo struct {
	JobID     string    `json:"job_id"`
	Kind      Kind      `json:"kind"`
	Model     string    `json:"model"`
	Status    JobStatus `json:"status"`
	WorkerID  string    `json:"worker_id"`
	Attempts  int       `json:"attempts"`
	Error     string    `json:"error"`
	Result    Object    `json:"result,omitempty"`
	ResultURL string    `json:"result_url,omitempty"`
	// Waiting says, in one sentence, why a queued job is not offered yet (contract §6, "Why a
	// job waits"); absent when nothing holds it back or the job is not queued.
	Waiting string `json:"waiting,omitempty"`
}

// WorkerInfo is one entry of GET /v1/workers.
type WorkerInfo struct {
	WorkerID  string        `json:"worker_id"`
	Name      string        `json:"name"`
	Connected bool          `json:"connected"`
	State     WorkerState   `json:"state"`
	Running   List[string]  `json:"running"`
	GPUs      List[GPUStat] `json:"gpus"`
	LastSeen  time.Time     `json:"last_seen"`
}

// HTTPError is the JSON body of every 4xx/5xx answer of the hub.
type HTTPError struct {
	Error string `json:"error"`
}
