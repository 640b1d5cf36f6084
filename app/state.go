// state.go: the worker's State as a window or the CLI sees it — connection, mode, GPU, running
// jobs, offers, recent jobs, counters, history — and the notices beside it. It holds types and their
// copies only; who writes them is the Worker's business.

package app

import (
	"maps"
	"slices"
	"time"

	"studioworker/protocol"
)

// Limits that keep the state bounded however long the worker runs.
const (
	maxRecent      = 100 // recent jobs kept
	maxGPUHistory  = 150 // samples per GPU: 5 minutes at the default 2 s interval
	maxOffersShown = 50  // pending offers kept (the hub never sends more than max_concurrent_jobs at once)
)

// ConnInfo is the connection to the hub as the UI shows it.
type ConnInfo struct {
	// connecting, connected, reconnecting, auth_failed, superseded, gave_up, stopped, offline,
	// unregistered; and reattaching, set by a window's Client while the worker it watches is out
	// of its reach (control_follow.go), when the rest of the State is what the worker last said.
	State     string    `json:"state"`
	Server    string    `json:"server"`
	Attempt   int       `json:"attempt,omitempty"`
	NextRetry time.Time `json:"next_retry,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	Since     time.Time `json:"since,omitzero"`
}

// GPUSample is one point of a GPU's history, for the sparklines.
type GPUSample struct {
	Time           time.Time `json:"time"`
	UsedMB         int64     `json:"used_mb"`
	UtilizationPct int       `json:"utilization_pct"`
}

// GPUCard is one GPU as the dashboard shows it.
type GPUCard struct {
	Index          int     `json:"index"`
	Name           string  `json:"name"`
	UUID           string  `json:"uuid,omitempty"`
	TotalMB        int64   `json:"total_mb"`
	UsedMB         int64   `json:"used_mb"`
	FreeMB         int64   `json:"free_mb"`
	UtilizationPct int     `json:"utilization_pct"`
	HasUtilization bool    `json:"has_utilization"`
	TemperatureC   int     `json:"temperature_c"`
	HasTemperature bool    `json:"has_temperature"`
	PowerW         float64 `json:"power_w,omitempty"`
	UnifiedMemory  bool    `json:"unified_memory,omitempty"` // Apple silicon: the figures are the share of the computer's memory jobs may use, not VRAM
	// ProcessMemoryUnknown: the driver lists programs on this GPU but not the VRAM each holds
	// (WDDM), so yielding goes by which graphics programs are there.
	ProcessMemoryUnknown bool        `json:"process_memory_unknown,omitempty"`
	History              []GPUSample `json:"history"`
}

// GPUState is what the worker knows of the GPUs.
type GPUState struct {
	Source    string    `json:"source"` // nvml, simulated, none
	Simulated bool      `json:"simulated"`
	Problem   string    `json:"problem,omitempty"` // e.g. "No NVIDIA driver found: VRAM checks are off"
	CapGB     float64   `json:"cap_gb"`            // the user's VRAM cap, 0 = none
	Cards     []GPUCard `json:"cards"`
	// Backends is what the backends themselves say of VRAM, which admission weighs beside
	// NVML's figures (backendvram.go); refreshed at a GPU sample at most every 5 s while a window
	// or status follows the state; at most 16.
	Backends []BackendVRAM `json:"backends,omitempty"`
}

// BackendVRAM is one backend's own word on VRAM, for the window to show beside the cards: a model
// Ollama has loaded and the VRAM it holds (a job for it needs only its estimate less that), or
// the VRAM free as ComfyUI counts it (its unused cache, which the card's figure counts as used,
// is free to it).
type BackendVRAM struct {
	Kind    protocol.Kind `json:"kind"`
	Backend string        `json:"backend"`         // "Ollama", "ComfyUI"
	Model   string        `json:"model,omitempty"` // the loaded model as the backend names it; "" for a free figure
	HeldMB  int64         `json:"held_mb,omitempty"`
	// FreeMB is free as the backend counts it on GPU, CacheFreeMB the part of it that is the
	// backend's own unused cache.
	FreeMB      int64 `json:"free_mb,omitempty"`
	CacheFreeMB int64 `json:"cache_free_mb,omitempty"`
	// GPU is the card's index (GPUCard.Index) the figure is on; -1 when the backend does not say
	// (Ollama) or its device matches no card.
	GPU int `json:"gpu"`
}

// RunningJob is a job running now.
type RunningJob struct {
	JobID    string        `json:"job_id"`
	Kind     protocol.Kind `json:"kind"`
	Model    string        `json:"model"`
	Started  time.Time     `json:"started"`
	Fraction float64       `json:"fraction"`
	Message  string        `json:"message,omitempty"`
	GPU      int           `json:"gpu"`
}

// PendingOffer is an offer the worker holds: being decided, or waiting for the user.
type PendingOffer struct {
	JobID          string        `json:"job_id"`
	Kind           protocol.Kind `json:"kind"`
	Model          string        `json:"model"`
	VRAMGBEstimate float64       `json:"vram_gb_estimate"`
	ExpiresAt      time.Time     `json:"expires_at"`
	WaitingForUser bool          `json:"waiting_for_user"`
}

// RecentJob is a job that ended on this worker.
type RecentJob struct {
	JobID    string        `json:"job_id"`
	Kind     protocol.Kind `json:"kind"`
	Model    string        `json:"model"`
	Status   string        `json:"status"`          // done, failed, cancelled, declined (an offer this worker said no to)
	Error    string        `json:"error,omitempty"` // why it failed, or why it was declined
	Duration time.Duration `json:"duration_ns"`
	Ended    time.Time     `json:"ended"`
	File     string        `json:"file,omitempty"`    // a small PNG thumbnail of an image result
	Preview  string        `json:"preview,omitempty"` // a larger PNG of it, for the job's details
	Media    string        `json:"media,omitempty"`   // a copy of a speech result, to be played
	Bytes    int64         `json:"bytes,omitempty"`   // the result file's size, binary kinds
	Demo     bool          `json:"demo,omitempty"`    // run for the window's demo: shown, never kept or counted
}

// Counters count what the worker did since it started.
type Counters struct {
	Done          int            `json:"done"`
	Failed        int            `json:"failed"`
	Cancelled     int            `json:"cancelled"`
	Declined      map[string]int `json:"declined"` // by reason
	BytesUploaded int64          `json:"bytes_uploaded"`
}

// State is everything a window, the tray or `status` shows. A State received from Observers is a
// copy owned by the receiver.
//
// ConfigRev moves with every change to the config that is saved (persist, commands.go): a window
// reloads its Settings form when it moves, so no path that changes the config (Register on the
// first-run page, the CLI, another window) leaves a stale form to be saved. A change that leaves
// the file as it was (Pause when paused, Save with nothing edited) does not move it; Pause and
// auto-accept live in the config too, so they do.
type State struct {
	Seq        uint64               `json:"seq"`        // increases with every change
	ConfigRev  uint64               `json:"config_rev"` // increases with every config change saved (see State's doc)
	Registered bool                 `json:"registered"`
	Demo       bool                 `json:"demo,omitempty"` // registered with the window's demo hub, in memory only
	ServerURL  string               `json:"server_url"`
	WorkerID   string               `json:"worker_id,omitempty"`
	Name       string               `json:"name,omitempty"`
	Conn       ConnInfo             `json:"conn"`
	Mode       protocol.WorkerState `json:"mode"`        // idle, busy, paused, draining, yielding
	ModeReason string               `json:"mode_reason"` // the mode in words
	YieldedTo  string               `json:"yielded_to"`  // process that caused yielding
	Paused     bool                 `json:"paused"`      // by the user (persisted)
	Draining   bool                 `json:"draining"`    // finishing, then pausing
	AutoAccept bool                 `json:"auto_accept"` // persisted
	Engine     string               `json:"engine"`      // e.g. synthetic
	Models     map[string][]string  `json:"models"`      // kind -> models served
	EngineDown map[string]string    `json:"engine_down"` // kind -> why its backend is not answering
	// EngineDownSince is when each kind in EngineDown stopped answering (absent before the first
	// check, which is not a failure).
	EngineDownSince map[string]time.Time `json:"engine_down_since,omitempty"`
	MaxJobs         int                  `json:"max_jobs"`    // concurrent slots
	GPU             GPUState             `json:"gpu"`         //
	VRAM            VRAMReach            `json:"vram"`        // which jobs a hub can offer as far as VRAM goes (reach.go)
	Running         []RunningJob         `json:"running"`     //
	Offers          []PendingOffer       `json:"offers"`      //
	Recent          []RecentJob          `json:"recent"`      // newest first, at most 100, kept across restarts
	Days            []DayTally           `json:"days"`        // the last seven days' work, oldest first, kept across restarts (history.go)
	Counters        Counters             `json:"counters"`    //
	LogFile         string               `json:"log_file"`    // where the log file is
	ConfigPath      string               `json:"config_path"` //
	AutoStart       AutoStart            `json:"auto_start"`  // what starts the worker with this computer, read from the OS
	Started         time.Time            `json:"started"`     //
}

// Clone returns a deep copy, so a subscriber can keep it while the worker goes on.
func (s State) Clone() State {
	c := s
	c.Models = make(map[string][]string, len(s.Models))
	for k, v := range s.Models {
		c.Models[k] = slices.Clone(v)
	}
	c.EngineDown = maps.Clone(s.EngineDown)
	c.EngineDownSince = maps.Clone(s.EngineDownSince)
	c.GPU.Cards = make([]GPUCard, len(s.GPU.Cards))
	for i, card := range s.GPU.Cards {
		card.History = slices.Clone(card.History)
		c.GPU.Cards[i] = card
	}
	c.GPU.Backends = slices.Clone(s.GPU.Backends)
	c.Running = slices.Clone(s.Running)
	c.Offers = slices.Clone(s.Offers)
	c.Recent = slices.Clone(s.Recent)
	c.Days = make([]DayTally, len(s.Days))
	for i, d := range s.Days {
		c.Days[i] = d.clone()
	}
	c.Counters.Declined = maps.Clone(s.Counters.Declined)
	if c.Counters.Declined == nil {
		c.Counters.Declined = map[string]int{}
	}
	if c.Running == nil {
		c.Running = []RunningJob{}
	}
	if c.Offers == nil {
		c.Offers = []PendingOffer{}
	}
	if c.Recent == nil {
		c.Recent = []RecentJob{}
	}
	return c
}

// RunningJob returns the running job with that id.
func (s *State) RunningJob(id string) (RunningJob, bool) {
	for _, j := range s.Running {
		if j.JobID == id {
			return j, true
		}
	}
	return RunningJob{}, false
}

// addRecent puts a finished job first and keeps the list bounded.
func (s *State) addRecent(r RecentJob) {
	s.Recent = append([]RecentJob{r}, s.Recent...)
	if len(s.Recent) > maxRecent {
		s.Recent = s.Recent[:maxRecent]
	}
}

// NoticeKind says what a notice is about.
type NoticeKind string

// Notice kinds.
const (
	NoticeLog           NoticeKind = "log"
	NoticeOffer         NoticeKind = "offer"          // an offer arrived
	NoticeOfferResolved NoticeKind = "offer_resolved" // accepted or declined
	NoticeJobFinished   NoticeKind = "job_finished"   // done, failed or cancelled
	NoticeAuthFailed    NoticeKind = "auth_failed"    // the credentials were rejected
	NoticeYield         NoticeKind = "yield"          // started or stopped yielding
	NoticeBackend       NoticeKind = "backend"        // a backend stopped answering, or answers again
)

// Notice is a one-off event for subscribers (the log view, notifications). Notices may be lost by
// a slow subscriber, which is told how many; the State never is.
type Notice struct {
	Kind    NoticeKind           `json:"kind"`
	Time    time.Time            `json:"time"`
	Level   protocol.LogLevel    `json:"level,omitempty"`
	Source  string               `json:"source,omitempty"`
	Text    string               `json:"text"`
	JobID   string               `json:"job_id,omitempty"`
	Job     *RecentJob           `json:"job,omitempty"`
	Attrs   map[string]string    `json:"attrs,omitempty"`
	Offer   *PendingOffer        `json:"offer,omitempty"`
	Outcome string               `json:"outcome,omitempty"` // offer_resolved: "accepted" or the decline reason
	State   protocol.WorkerState `json:"state,omitempty"`
}
