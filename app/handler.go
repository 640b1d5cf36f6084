// handler.go is the worker's side of session.Handler: the capabilities and status the session
// reports, the decision on each offer (admission, or the creator's answer), and the session's
// events turned into State. It must not know the wire: the session owns frames and reconnects.

package app

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/user"
	"reflect"
	"slices"
	"time"

	"studioworker/engine"
	"studioworker/gpu"
	"studioworker/internal/diskspace"
	"studioworker/protocol"
	"studioworker/session"
)

// Capabilities implements session.Handler.
func (w *Worker) Capabilities() protocol.Capabilities {
	w.caps.mu.Lock()
	defer w.caps.mu.Unlock()
	return w.caps.caps
}

// rebuildCaps recomputes the capabilities from the config, the engines and the GPUs; called when
// any of them changes, never per heartbeat.
func (w *Worker) rebuildCaps() {
	ec := w.engines().Capabilities()
	snap := w.mon.Latest()
	w.mu.Lock()
	cfg := w.cfg
	autoStarts := w.autoStarts
	maxJobs := w.maxJobsLocked(snap)
	w.mu.Unlock()

	c := protocol.Capabilities{
		AgentVersion:           w.opts.AgentVersion,
		Engine:                 ec.Engine,
		AutoAccept:             cfg.AutoAccept,
		AutoStart:              autoStarts,
		MaxConcurrentJobs:      maxJobs,
		TaskKinds:              protocol.List[protocol.Kind]{},
		SupportedModels:        protocol.List[string]{},
		SupportedModelsPerKind: protocol.ModelsPerKind{},
		GPUs:                   protocol.List[protocol.GPUInfo]{},
	}
	c.MachineName, _ = os.Hostname()
	if u, err := user.Current(); err == nil {
		c.Username = u.Username
	}
	seen := map[string]bool{}
	for _, k := range protocol.Kinds() {
		models := ec.Models[k]
		if len(models) == 0 {
			continue
		}
		c.TaskKinds = append(c.TaskKinds, k)
		c.SupportedModelsPerKind[k] = slices.Clone(models)
		for _, m := range models {
			if !seen[m] {
				seen[m] = true
				c.SupportedModels = append(c.SupportedModels, m)
			}
		}
	}
	for _, d := range snap.Devices {
		c.GPUs = append(c.GPUs, protocol.GPUInfo{Index: d.Index, Name: d.Name, UUID: d.UUID, VRAMTotalMB: d.TotalMB})
	}
	reach := vramReach(cfg.VRAMThresholdGB, snap)
	c.VRAMTotalGB, c.VRAMThresholdGB = reach.TotalGB, reach.LimitGB
	w.caps.mu.Lock()
	changed := !reflect.DeepEqual(w.caps.caps, c)
	w.caps.caps = c
	w.caps.mu.Unlock()

	models := map[string][]string{}
	for k, v := range c.SupportedModelsPerKind {
		models[string(k)] = slices.Clone(v)
	}
	down := map[string]string{}
	for k, v := range ec.Down {
		down[string(k)] = v
	}
	// Through update: the idle mode's words follow the reach.
	now := w.now()
	var notices []Notice
	w.update(func(s *State) {
		s.EngineDownSince, notices = downSince(s.EngineDown, s.EngineDownSince, down, now)
		s.Engine, s.Models, s.EngineDown, s.MaxJobs, s.VRAM = c.Engine, models, down, maxJobs, reach
	})
	for _, n := range notices {
		w.log.Info(n.Text, "source", "engine")
		w.obs.Notify(n)
	}
	if sess := w.session(); changed && sess != nil {
		sess.StatusChanged() // a kind whose backend died leaves the capabilities in this heartbeat (spec §6)
	}
}

// downSince carries each down kind's start time over and notices the kinds that went down or
// came back; the first check after start is not news either way.
func downSince(before map[string]string, since map[string]time.Time, after map[string]string, now time.Time) (map[string]time.Time, []Notice) {
	next := map[string]time.Time{}
	var notices []Notice
	for _, k := range slices.Sorted(maps.Keys(after)) {
		switch t, ok := since[k]; {
		case ok:
			next[k] = t
		case after[k] != engine.NotCheckedYet:
			next[k] = now
			notices = append(notices, Notice{Kind: NoticeBackend, Time: now, Level: protocol.LevelWarn, Source: "engine",
				Text: fmt.Sprintf("The %s backend stopped answering: %s", k, after[k])})
		}
	}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		if _, still := after[k]; !still && !since[k].IsZero() {
			notices = append(notices, Notice{Kind: NoticeBackend, Time: now, Level: protocol.LevelInfo, Source: "engine",
				Text: fmt.Sprintf("The %s backend answers again: %s jobs are taken again", k, k)})
		}
	}
	return next, notices
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }

// Status implements session.Handler.
func (w *Worker) Status() (protocol.WorkerState, bool, []protocol.GPUStat) {
	snap := w.mon.Latest()
	w.mu.Lock()
	mode, _ := w.modeLocked()
	accepting := w.acceptingLocked(mode, snap)
	w.mu.Unlock()
	gpus := make([]protocol.GPUStat, 0, len(snap.Devices))
	for _, d := range snap.Devices {
		gpus = append(gpus, protocol.GPUStat{Index: d.Index, VRAMTotalMB: d.TotalMB, VRAMUsedMB: d.UsedMB, UtilizationPct: d.UtilizationPct, TemperatureC: d.TemperatureC})
	}
	return mode, accepting, gpus
}

// Offer implements session.Handler: admission, then (auto-accept off) the user's answer. An
// accepted offer holds its slot in a lease, which gives it back when the job ends or is released.
func (w *Worker) Offer(ctx context.Context, claim protocol.Claim) (session.Lease, protocol.DeclineReason) {
	adm := w.admit(claim, false)
	switch adm.Decision {
	case DecisionAccept:
		return w.newLease(claim), ""
	case DecisionWait:
		if ok, reason := w.waitForUser(ctx, claim); !ok {
			return nil, reason
		}
		return w.newLease(claim), ""
	}
	w.log.Info("declined an offer", "source", "worker", "job_id", claim.JobID, "kind", claim.Kind, "model", claim.Model, "reason", string(adm.Decision), "why", adm.Why)
	return nil, protocol.DeclineReason(adm.Decision)
}

// admit runs the admission policy and, on accept, takes a slot at once so that two offers
// decided together cannot both take the last one.
func (w *Worker) admit(claim protocol.Claim, userSaidYes bool) Admission {
	snap := w.liveSnapshot()
	caps := w.Capabilities()
	spoolFree := w.spoolFreeMB()
	fig, haveFig := w.backendFigure(claim, snap) // before w.mu: it may wait on the backend
	w.mu.Lock()
	defer w.mu.Unlock()
	in := AdmissionInput{
		Paused:         w.cfg.Paused,
		Draining:       w.drainReq || w.shuttingDown,
		Yielding:       w.yield.Yielding,
		Running:        len(w.slots),
		MaxConcurrent:  w.maxJobsLocked(snap),
		Kind:           string(claim.Kind),
		Model:          claim.Model,
		Supported:      map[string][]string{},
		EstimateGB:     claim.VRAMGBEstimate,
		CapGB:          w.cfg.VRAMThresholdGB,
		NoVRAM:         vramReach(w.cfg.VRAMThresholdGB, snap).noVRAM(),
		SafetyMarginMB: w.cfg.GPU.SafetyMarginMB,
		SpoolFreeMB:    spoolFree,
		SpoolMarginMB:  w.cfg.spoolMarginMB(),
		ExpiresAt:      claim.ExpiresAt,
		Now:            w.now(),
		AutoAccept:     w.cfg.AutoAccept || userSaidYes,
		ReservedMB:     map[int]int64{},
	}
	_, in.CancelledHere = w.cancelled[claim.JobID]
	for k, ms := range caps.SupportedModelsPerKind {
		in.Supported[string(k)] = ms
	}
	if snap.Source != gpu.SourceNone {
		for _, d := range snap.Devices {
			in.GPUs = append(in.GPUs, GPUFree{Index: d.Index, FreeMB: d.FreeMB})
		}
		// Jobs taken since the last sample do not show in its free memory yet.
		for _, sl := range w.slots {
			if !sl.started.Before(snap.Time) {
				in.ReservedMB[sl.gpu] += sl.vramMB
			}
		}
		if haveFig {
			applyBackendFigure(&in, fig, snap)
		}
	}
	adm := Admit(in)
	if adm.Decision == DecisionAccept {
		w.slots[claim.JobID] = &slot{claim: claim, gpu: max(adm.GPU, 0), vramMB: AdmissionNeedMB(in), started: w.now()}
		if in.BackendHeldMB > 0 || len(in.BackendFree) > 0 {
			// The backend's figure decided it: say so, since the GPU card shows NVML's alone.
			w.log.Info("accepted an offer on the backend's own VRAM figure", "source", "worker", "job_id", claim.JobID,
				"kind", claim.Kind, "model", claim.Model, "backend", in.Backend, "why", adm.Why)
		}
	}
	return adm
}

func (w *Worker) waitForUser(ctx context.Context, claim protocol.Claim) (bool, protocol.DeclineReason) {
	p := &pendingOffer{claim: claim, decide: make(chan bool, 1)}
	w.mu.Lock()
	w.pending[claim.JobID] = p
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.pending, claim.JobID)
		w.mu.Unlock()
	}()
	w.update(func(s *State) {
		for i := range s.Offers {
			if s.Offers[i].JobID == claim.JobID {
				s.Offers[i].WaitingForUser = true
			}
		}
	})
	w.log.Info("an offer waits for you (auto-accept is off)", "source", "worker", "job_id", claim.JobID, "kind", claim.Kind, "model", claim.Model)
	select {
	case yes := <-p.decide:
		if !yes {
			return false, protocol.DeclineUser
		}
		// The world may have changed while the user looked: check again, without asking.
		adm := w.admit(claim, true)
		if adm.Decision == DecisionAccept {
			return true, ""
		}
		return false, protocol.DeclineReason(adm.Decision)
	case <-ctx.Done():
		return false, protocol.DeclineExpired
	}
}

// Event implements session.Handler: session events become State changes and notices.
func (w *Worker) Event(e session.Event) {
	now := w.now()
	switch ev := e.(type) {
	case session.ConnEvent:
		ci := ConnInfo{State: string(ev.State), Server: ev.Server, Attempt: ev.Attempt, NextRetry: ev.NextRetry, Since: now}
		if ev.Err != nil {
			ci.LastError = ev.Err.Error()
		}
		w.setConn(ci)
		if ev.State == session.ConnAuthFailed {
			w.obs.Notify(Notice{Kind: NoticeAuthFailed, Time: now, Level: protocol.LevelError, Source: "session",
				Text: "This worker was removed from the Studio — register again"})
		}
	case session.OfferEvent:
		c := ev.Claim
		po := PendingOffer{JobID: c.JobID, Kind: c.Kind, Model: c.Model, VRAMGBEstimate: c.VRAMGBEstimate, ExpiresAt: c.ExpiresAt}
		w.update(func(s *State) {
			s.Offers = append(s.Offers, po)
			if len(s.Offers) > maxOffersShown {
				s.Offers = s.Offers[len(s.Offers)-maxOffersShown:]
			}
		})
		w.obs.Notify(Notice{Kind: NoticeOffer, Time: now, Text: fmt.Sprintf("Offer: %s · %s", c.Kind, c.Model), JobID: c.JobID, Offer: &po})
	case session.OfferResolvedEvent:
		outcome := "accepted"
		if !ev.Accepted {
			outcome = string(ev.Reason) // an accept that was overruled was released by the session already
		}
		w.update(func(s *State) {
			if !ev.Accepted {
				s.Counters.Declined[string(ev.Reason)]++
				rj := RecentJob{JobID: ev.JobID, Status: "declined", Error: declineWords(ev.Reason), Ended: now}
				if i := slices.IndexFunc(s.Offers, func(o PendingOffer) bool { return o.JobID == ev.JobID }); i >= 0 {
					rj.Kind, rj.Model = s.Offers[i].Kind, s.Offers[i].Model
				}
				s.addRecent(rj)
			}
			s.Offers = slices.DeleteFunc(s.Offers, func(o PendingOffer) bool { return o.JobID == ev.JobID })
		})
		if !ev.Accepted {
			w.hist.touch()
		}
		w.obs.Notify(Notice{Kind: NoticeOfferResolved, Time: now, JobID: ev.JobID, Outcome: outcome, Text: "Offer " + shortID(ev.JobID) + ": " + outcome})
	case session.JobStartedEvent:
		c := ev.Claim
		w.mu.Lock()
		g := 0
		if sl, ok := w.slots[c.JobID]; ok { // its lease holds it from admission to the end
			g = sl.gpu
		}
		w.mu.Unlock()
		w.updateSimulatedUse()
		w.update(func(s *State) {
			s.Running = append(s.Running, RunningJob{JobID: c.JobID, Kind: c.Kind, Model: c.Model, Started: now, GPU: g})
		})
		w.log.Info("job started", "source", "worker", "job_id", c.JobID, "kind", c.Kind, "model", c.Model)
	case session.JobProgressEvent:
		w.jobProgress(ev.JobID, ev.Fraction, ev.Message)
	case session.JobEndedEvent:
		w.mu.Lock()
		kept := w.thumbs[ev.JobID]
		delete(w.thumbs, ev.JobID)
		inDemo := w.demo != nil
		w.mu.Unlock()
		rj := RecentJob{JobID: ev.JobID, Kind: ev.Kind, Model: ev.Model, Duration: ev.Duration, Ended: now,
			File: kept.Thumb, Preview: kept.Preview, Media: kept.Media, Demo: inDemo}
		if ev.File != "" {
			if fi, err := os.Stat(ev.File); err == nil {
				rj.Bytes = fi.Size()
			}
		}
		switch {
		case ev.Cancelled:
			rj.Status = "cancelled"
		case ev.Err != nil:
			rj.Status, rj.Error = "failed", ev.Err.Error()
		default:
			rj.Status = "done"
		}
		var days []DayTally
		switch {
		case rj.Demo: // the demo's jobs are not this computer's work
		case rj.Status == "cancelled":
			w.hist.touch()
		default:
			days = w.hist.count(rj)
		}
		w.update(func(s *State) {
			s.Running = slices.DeleteFunc(s.Running, func(r RunningJob) bool { return r.JobID == ev.JobID })
			s.addRecent(rj)
			if days != nil {
				s.Days = days
			}
			switch rj.Status {
			case "done":
				s.Counters.Done++
			case "failed":
				s.Counters.Failed++
			default:
				s.Counters.Cancelled++
			}
		})
		level := protocol.LevelInfo
		if rj.Status == "failed" {
			level = protocol.LevelWarn
		}
		w.obs.Notify(Notice{Kind: NoticeJobFinished, Time: now, Level: level, JobID: ev.JobID, Job: &rj,
			Text: fmt.Sprintf("%s · %s %s in %.1f s", ev.Kind, ev.Model, rj.Status, ev.Duration.Seconds())})
		if rj.Status == "failed" {
			w.log.Warn("job failed", "source", "worker", "job_id", ev.JobID, "retryable", ev.Retryable, "err", ev.Err)
		} else {
			w.log.Info("job "+rj.Status, "source", "worker", "job_id", ev.JobID, "took", ev.Duration.Round(time.Millisecond)) // "40.01s", not seconds=40.009892105
		}
	case session.DeliveredEvent:
		if ev.Bytes > 0 {
			w.update(func(s *State) { s.Counters.BytesUploaded += ev.Bytes })
		}
	case session.CancelEvent:
		w.mu.Lock()
		if p, ok := w.pending[ev.JobID]; ok {
			select {
			case p.decide <- false:
			default:
			}
		}
		w.mu.Unlock()
		w.log.Info("the Studio cancelled a job", "source", "worker", "job_id", ev.JobID, "reason", string(ev.Reason))
	}
}

func (w *Worker) setConn(ci ConnInfo) {
	cfg := w.Config()
	if ci.Server == "" {
		ci.Server = hostOf(cfg.ServerURL)
	}
	if ci.Since.IsZero() {
		ci.Since = w.now()
	}
	w.update(func(s *State) {
		s.Conn = ci
		s.Registered = cfg.Registered()
		s.ServerURL, s.WorkerID, s.Name = cfg.ServerURL, cfg.WorkerID, cfg.Name
	})
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return raw
	}
	return u.Host
}

// spoolFreeMB is the free space on the spool's disk in MB, -1 when it cannot be read (the folder
// is not made yet, or the OS does not say): then the check does not refuse on a guess.
func (w *Worker) spoolFreeMB() int64 {
	cfg := w.Config()
	free, err := diskspace.Free(cfg.SpoolPath(w.opts.ConfigPath))
	if err != nil {
		return -1
	}
	return int64(free >> 20)
}
