// history.go: what this worker did, kept across restarts — the recent jobs the window lists, and
// the jobs and GPU time per day and kind that its "today" and "this week" sum — in history.json
// beside the config. It is written at most every historyFlushEvery and when the worker stops, so
// a burst of jobs costs one small write, not one per job. It must not know how the window shows
// it.

package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"studioworker/internal/durable"
	"studioworker/protocol"
)

const (
	historyFile       = "history.json"
	historyVersion    = 1
	historyDays       = 35 // days of tallies kept: this week, and a month for who looks back
	historyFlushEvery = 5 * time.Second
	historyMaxBytes   = 4 << 20 // a history.json larger than this is not ours to read
	dayFormat         = "2006-01-02"
)

// DayTally is one day's work (local time): jobs ended by kind, failures, and the time jobs ran.
type DayTally struct {
	Date   string                  `json:"date"` // 2006-01-02
	Jobs   map[protocol.Kind]int   `json:"jobs"` // done or failed, by kind
	Failed int                     `json:"failed"`
	GPUMS  map[protocol.Kind]int64 `json:"gpu_ms"` // milliseconds the jobs of each kind ran
}

// Total is the day's jobs of every kind.
func (d DayTally) Total() int {
	n := 0
	for _, c := range d.Jobs {
		n += c
	}
	return n
}

// GPUTime is the time the day's jobs ran, all kinds.
func (d DayTally) GPUTime() time.Duration {
	var ms int64
	for _, v := range d.GPUMS {
		ms += v
	}
	return time.Duration(ms) * time.Millisecond
}

func (d DayTally) clone() DayTally {
	d.Jobs, d.GPUMS = maps.Clone(d.Jobs), maps.Clone(d.GPUMS)
	return d
}

type historyDoc struct {
	Version int         `json:"version"`
	Days    []DayTally  `json:"days"`   // oldest first
	Recent  []RecentJob `json:"recent"` // newest first, as State.Recent
}

// history owns the day tallies and writes them, with the State's recent jobs, to its file.
type history struct {
	path string // "" keeps it in memory (no config folder)
	log  *slog.Logger

	mu      sync.Mutex
	days    []DayTally
	dirty   bool
	lastErr string // the last failed write's error, logged once until a write succeeds
}

// loadHistory reads path; a file that cannot be read as ours is set aside (history.json.bad)
// rather than lost or overwritten, and the worker starts with an empty history.
func loadHistory(path string, log *slog.Logger) (*history, []RecentJob) {
	h := &history{path: path, log: log}
	if path == "" {
		return h, nil
	}
	doc, err := readHistory(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return h, nil
	case err != nil:
		bad := path + ".bad"
		if rerr := os.Rename(path, bad); rerr == nil {
			log.Warn("the job history could not be read and was set aside; a new one is started", "source", "worker", "file", bad, "err", err)
		} else {
			log.Warn("the job history could not be read", "source", "worker", "file", path, "err", err)
		}
		return h, nil
	}
	h.days = doc.Days
	if len(h.days) > historyDays {
		h.days = h.days[len(h.days)-historyDays:]
	}
	recent := doc.Recent
	if len(recent) > maxRecent {
		recent = recent[:maxRecent]
	}
	return h, recent
}

func readHistory(path string) (historyDoc, error) {
	var doc historyDoc
	fi, err := os.Stat(path)
	if err != nil {
		return doc, err
	}
	if fi.Size() > historyMaxBytes {
		return doc, fmt.Errorf("%s is %d bytes, more than a history ever is", path, fi.Size())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return doc, err
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return doc, fmt.Errorf("%s: %w", path, err)
	}
	if doc.Version != historyVersion {
		return doc, fmt.Errorf("%s: version %d, this worker writes %d", path, doc.Version, historyVersion)
	}
	return doc, nil
}

// count adds an ended job (done or failed) to its day. It returns the tallies of the last
// seven days for the State.
func (h *history) count(rj RecentJob) []DayTally {
	h.mu.Lock()
	defer h.mu.Unlock()
	date := rj.Ended.Local().Format(dayFormat)
	i := len(h.days) - 1
	if i < 0 || h.days[i].Date != date {
		h.days = append(h.days, DayTally{Date: date, Jobs: map[protocol.Kind]int{}, GPUMS: map[protocol.Kind]int64{}})
		slices.SortFunc(h.days, func(a, b DayTally) int { return strings.Compare(a.Date, b.Date) }) // a clock set back
		if len(h.days) > historyDays {
			h.days = h.days[len(h.days)-historyDays:]
		}
		i = slices.IndexFunc(h.days, func(d DayTally) bool { return d.Date == date })
	}
	d := &h.days[i]
	if d.Jobs == nil { // a day read from a file written without it
		d.Jobs = map[protocol.Kind]int{}
	}
	if d.GPUMS == nil {
		d.GPUMS = map[protocol.Kind]int64{}
	}
	d.Jobs[rj.Kind]++
	d.GPUMS[rj.Kind] += rj.Duration.Milliseconds()
	if rj.Status == "failed" {
		d.Failed++
	}
	h.dirty = true
	return h.weekLocked()
}

// week is the tallies of the last seven days kept, oldest first, for the State.
func (h *history) week() []DayTally {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.weekLocked()
}

func (h *history) weekLocked() []DayTally {
	from := max(0, len(h.days)-7)
	out := make([]DayTally, 0, len(h.days)-from)
	for _, d := range h.days[from:] {
		out = append(out, d.clone())
	}
	return out
}

// touch marks the file stale: the recent jobs changed (a decline) without a tally.
func (h *history) touch() {
	h.mu.Lock()
	h.dirty = true
	h.mu.Unlock()
}

// run writes the history every historyFlushEvery while something changed, and once more when
// ctx ends. recent reads the State's recent jobs at the time of the write.
func (h *history) run(ctx context.Context, recent func() []RecentJob) {
	if h.path == "" {
		return
	}
	t := time.NewTicker(historyFlushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			h.flush(recent)
			return
		case <-t.C:
			h.flush(recent)
		}
	}
}

func (h *history) flush(recent func() []RecentJob) {
	h.mu.Lock()
	if !h.dirty {
		h.mu.Unlock()
		return
	}
	doc := historyDoc{Version: historyVersion, Days: make([]DayTally, len(h.days))}
	for i, d := range h.days {
		doc.Days[i] = d.clone()
	}
	h.dirty = false
	h.mu.Unlock()
	for _, r := range recent() {
		if !r.Demo {
			doc.Recent = append(doc.Recent, r)
		}
	}
	data, err := json.MarshalIndent(doc, "", " ")
	if err == nil {
		err = durable.WriteFile(h.path, data, 0o600)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		h.lastErr = ""
		return
	}
	h.dirty = true                // the next tick tries again
	if err.Error() != h.lastErr { // a full disk says so once, not every few seconds
		h.lastErr = err.Error()
		h.log.Warn("the job history was not saved; it is tried again every few seconds", "source", "worker", "file", h.path, "err", err)
	}
}

// declineWords says why an offer was declined, for the recent list.
func declineWords(r protocol.DeclineReason) string {
	switch r {
	case protocol.DeclineBusy:
		return "declined: no free slot"
	case protocol.DeclinePaused:
		return "declined: paused"
	case protocol.DeclineVRAM:
		return "declined: not enough free VRAM"
	case protocol.DeclineUnsupported:
		return "declined: this kind or model is not served here"
	case protocol.DeclineUser:
		return "declined by you"
	case protocol.DeclineExpired:
		return "the offer expired before an answer"
	}
	return "declined: " + string(r)
}
