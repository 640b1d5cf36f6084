// recovery.go: the recovery figure — a hub killed mid-run and restarted: nothing lost, nothing
// stored twice, and what was answered rejected.

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"studioworker/hub"
	"studioworker/protocol"
)

// ackCounter counts the hub's complete_ack frames per job, as seen on the wire by the tap.
type ackCounter struct {
	mu        sync.Mutex
	byStatus  map[protocol.AckStatus]int
	storedFor map[string]int // stored acks per job: more than one would be a result stored twice
	threshold int
	reached   chan struct{} // closed when the stored acks reach threshold
}

func newAckCounter(threshold int) *ackCounter {
	return &ackCounter{byStatus: map[protocol.AckStatus]int{}, storedFor: map[string]int{}, threshold: threshold, reached: make(chan struct{})}
}

func (a *ackCounter) onFrame(f protocol.Frame) {
	ack, ok := f.(protocol.CompleteAck)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.byStatus[ack.Status]++
	if ack.Status == protocol.AckStored {
		a.storedFor[ack.JobID]++
		if a.byStatus[protocol.AckStored] == a.threshold {
			close(a.reached)
		}
	}
}

func (a *ackCounter) snapshot() (byStatus map[protocol.AckStatus]int, storedTwice int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[protocol.AckStatus]int{}
	for k, v := range a.byStatus {
		out[k] = v
	}
	for _, n := range a.storedFor {
		if n > 1 {
			storedTwice++
		}
	}
	return out, storedTwice
}

// runRecovery: N zero-work jobs are queued, 8 in-process workers (8 slots each) start on them
// through a tap that reads the hub's complete_ack frames, and once a third of the results are
// acknowledged the studio-hub process is killed with SIGKILL and started again on the same
// database and address. Then every job must end completed with its result, and a result the
// hub got twice must have been answered `duplicate`, never stored twice nor rejected.
func runRecovery(ctx context.Context, e *env) (figureResult, error) {
	var res figureResult
	dir, err := e.dir("recovery")
	if err != nil {
		return res, err
	}
	addr, err := freeAddr()
	if err != nil {
		return res, err
	}
	hubDir := filepath.Join(dir, "hub")
	h, err := startHub(ctx, e, hubDir, addr)
	if err != nil {
		return res, err
	}
	defer func() { h.stop() }()
	hc := h.client()
	n := e.size.recoveryJobs
	acks := newAckCounter(n / 3)
	tp, err := newTap(addr, acks.onFrame)
	if err != nil {
		return res, err
	}
	defer tp.Close()
	ids, err := submitMany(ctx, hc, n, 16, zeroWorkJob())
	if err != nil {
		return res, err
	}
	fl, err := startFleet(ctx, filepath.Join(dir, "workers"), hc, tp.URL(), e.size.recoveryWorkers, 8)
	if err != nil {
		return res, err
	}
	defer fl.stop()

	select {
	case <-acks.reached:
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(2 * time.Minute):
		return res, fmt.Errorf("%d results not acknowledged after 2 minutes", n/3)
	}
	storedAtKill, _ := acks.snapshot()
	tKill := time.Now()
	h.kill()
	h2, err := startHub(ctx, e, hubDir, addr)
	if err != nil {
		return res, fmt.Errorf("restart: %w", err)
	}
	h = h2
	tUp := time.Now()
	if err := fl.probe.waitConnected(ctx, 2*e.size.recoveryWorkers, time.Minute); err != nil {
		return res, fmt.Errorf("after the restart: %w", err)
	}
	tBack := time.Now()
	// Every worker is back within seconds; a lease whose worker did not come back returns to the
	// queue after the hub's 60 s grace. Past that, a job still open is a finding, not a wait.
	tDone, err := h.waitEnded(ctx, n, 20*time.Millisecond, 90*time.Second)
	allEnded := err == nil
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if !allEnded {
		res.detail("unfinished", unfinished(ctx, hc, ids))
		res.detail("worker_warnings", fl.probe.recentWarnings())
	}

	var completed, lost, failed, retried int
	for _, id := range ids {
		info, err := hc.Job(ctx, id)
		if err != nil {
			return res, err
		}
		switch {
		case info.Status == protocol.JobCompleted && len(info.Result) > 0:
			completed++
		case info.Status == protocol.JobCompleted:
			lost++ // completed without its result
		case info.Status == protocol.JobFailed:
			failed++
		}
		if info.Attempts > 0 {
			retried++
		}
	}
	lost += n - completed - lost - failed // anything neither completed nor failed
	byStatus, storedTwice := acks.snapshot()
	runs, _ := fl.probe.counts()
	res.detail("jobs", n)
	res.detail("workers", e.size.recoveryWorkers)
	res.detail("stored_acks_at_kill", storedAtKill[protocol.AckStored])
	res.detail("acks", byStatus)
	res.detail("jobs_stored_twice", storedTwice)
	res.detail("engine_runs", runs)
	res.detail("jobs_with_attempts", retried)
	res.detail("failed", failed)
	res.detail("restart_s", tUp.Sub(tKill).Seconds())
	res.detail("workers_back_s", tBack.Sub(tKill).Seconds())
	if allEnded {
		res.detail("all_ended_s", tDone.Sub(tKill).Seconds())
	}

	res.add(row{Figure: "recovery (SIGKILL + restart): jobs completed", Value: float64(completed), Unit: fmt.Sprintf("of %d", n)}.
		withGoal("all jobs end", completed+failed == n && failed == 0))
	res.add(row{Figure: "recovery: results lost", Value: float64(lost), Unit: "jobs"}.withGoal("0", lost == 0))
	res.add(row{Figure: "recovery: results answered `duplicate`", Value: float64(byStatus[protocol.AckDuplicate]), Unit: "acks"})
	res.add(row{Figure: "recovery: results answered `rejected` or stored twice", Value: float64(byStatus[protocol.AckRejected] + storedTwice), Unit: "results"}.
		withGoal("0: duplicates only as `duplicate`", byStatus[protocol.AckRejected] == 0 && storedTwice == 0))
	res.add(row{Figure: "recovery: engine runs beyond one per job", Value: float64(runs - n), Unit: "runs"})
	res.add(row{Figure: fmt.Sprintf("recovery: SIGKILL → all %d workers reconnected", e.size.recoveryWorkers), Key: "SIGKILL → all workers reconnected", Value: tBack.Sub(tKill).Seconds(), Unit: "s"})
	if allEnded {
		res.add(row{Figure: "recovery: SIGKILL → all jobs ended", Value: tDone.Sub(tKill).Seconds(), Unit: "s"})
	} else {
		res.add(row{Figure: "recovery: jobs still open 90 s after the SIGKILL (see details.unfinished)", Value: float64(n - completed - failed), Unit: "jobs"})
	}
	return res, nil
}

// unfinished describes the first jobs that have not ended, for a failure message.
func unfinished(ctx context.Context, hc *hub.Client, ids []string) string {
	var out []string
	for _, id := range ids {
		info, err := hc.Job(ctx, id)
		if err != nil {
			return err.Error()
		}
		if !info.Status.Done() && len(out) < 10 {
			out = append(out, fmt.Sprintf("%s %s worker=%s attempts=%d error=%q", id, info.Status, info.WorkerID, info.Attempts, info.Error))
		}
	}
	return strings.Join(out, "; ")
}
