// throughput.go: the throughput figure — jobs per second through 8 workers × 8 slots, and the CPU
// each side spends per job.

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"studioworker/hub"
	"studioworker/protocol"
)

// runThroughput: zero-work jobs completed per second through one studio-hub process, with one
// worker of 8 slots and with 8 such workers. Each round queues N jobs while the workers are
// paused, resumes them, and times until the hub counts all N completed (results committed).
func runThroughput(ctx context.Context, e *env) (figureResult, error) {
	var res figureResult
	for _, c := range []struct{ workers, slots int }{{1, 8}, {8, 8}} {
		rates, cpu, err := throughputRounds(ctx, e, c.workers, c.slots)
		if err != nil {
			return res, fmt.Errorf("%d workers: %w", c.workers, err)
		}
		s := summarize(rates)
		res.detail(fmt.Sprintf("cpu_ms_per_job_%d_workers", c.workers), cpu)
		label := fmt.Sprintf("throughput, %d workers × %d slots", c.workers, c.slots)
		if c.workers == 1 {
			label = fmt.Sprintf("throughput, 1 worker × %d slots", c.slots)
		}
		res.detail(fmt.Sprintf("jobs_per_s_%d_workers", c.workers), s)
		r := row{Figure: label + ", median round", Value: s.P50, Unit: "jobs/s"}
		if c.workers == 8 {
			r = r.withGoal("≥ 2,500 jobs/s", s.P50 >= 2500) // issue 19
		}
		res.add(r)
		res.add(row{Figure: label + ", slowest round", Value: s.Min, Unit: "jobs/s"})
		if c.workers == 8 {
			res.add(row{Figure: "↳ CPU per job: studio-hub process", Value: cpu.Hub, Unit: "ms"})
			res.add(row{Figure: "↳ CPU per job: the 8 workers (bench process)", Value: cpu.Workers, Unit: "ms"})
		}
	}
	res.detail("jobs_per_round", e.size.throughputJobs)
	res.detail("rounds", e.size.throughputRounds)
	return res, nil
}

// cpuPerJob is the CPU time the hub process and this process (the workers, plus the submitters'
// idle wait and the metrics polls) spent per job in the timed windows, medians over rounds.
type cpuPerJob struct {
	Hub     float64 `json:"hub_ms"`
	Workers float64 `json:"workers_ms"`
}

func throughputRounds(ctx context.Context, e *env, workers, slots int) ([]float64, cpuPerJob, error) {
	var cpu cpuPerJob
	var hubCPU, selfCPU []float64
	dir, err := e.dir(fmt.Sprintf("throughput-%d", workers))
	if err != nil {
		return nil, cpu, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, cpu, err
	}
	h, err := startHub(ctx, e, filepath.Join(dir, "hub"), addr)
	if err != nil {
		return nil, cpu, err
	}
	defer h.stop()
	hc := h.client()
	fl, err := startFleet(ctx, filepath.Join(dir, "workers"), hc, h.URL(), workers, slots)
	if err != nil {
		return nil, cpu, err
	}
	defer fl.stop()

	n := e.size.throughputJobs
	var rates []float64
	ended := 0
	for range e.size.throughputRounds {
		if err := fl.pause(ctx, true); err != nil {
			return nil, cpu, err
		}
		if err := waitAllPaused(ctx, hc, workers, 10*time.Second); err != nil {
			return nil, cpu, err
		}
		if _, err := submitMany(ctx, hc, n, 16, zeroWorkJob()); err != nil {
			return nil, cpu, err
		}
		h0, err := readCPU(h.pid())
		if err != nil {
			return nil, cpu, err
		}
		s0, err := readCPU(os.Getpid())
		if err != nil {
			return nil, cpu, err
		}
		t0 := time.Now()
		if err := fl.pause(ctx, false); err != nil {
			return nil, cpu, err
		}
		t1, err := h.waitEnded(ctx, ended+n, 5*time.Millisecond, 2*time.Minute)
		if err != nil {
			return nil, cpu, err
		}
		h1, err := readCPU(h.pid())
		if err != nil {
			return nil, cpu, err
		}
		s1, err := readCPU(os.Getpid())
		if err != nil {
			return nil, cpu, err
		}
		ended += n
		// The hub counts failed jobs as ended too: a worker that fails every job fast must not
		// read as a fast worker.
		m, err := h.metrics(ctx)
		if err != nil {
			return nil, cpu, err
		}
		if completed, _ := jobsDone(m); completed < ended {
			return nil, cpu, fmt.Errorf("%d of %d jobs ended without a result", ended-completed, ended)
		}
		rates = append(rates, float64(n)/t1.Sub(t0).Seconds())
		hubCPU = append(hubCPU, float64(h1-h0)/float64(time.Millisecond)/float64(n))
		selfCPU = append(selfCPU, float64(s1-s0)/float64(time.Millisecond)/float64(n))
		fl.probe.forget()
	}
	cpu.Hub, cpu.Workers = summarize(hubCPU).P50, summarize(selfCPU).P50
	return rates, cpu, nil
}

var errNotAllPaused = errors.New("the hub does not see every worker paused")

// waitAllPaused polls the hub until it reports n connected workers, all paused, so that nothing
// queued next is offered before the round starts.
func waitAllPaused(ctx context.Context, hc *hub.Client, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ws, err := hc.Workers(ctx)
		if err != nil {
			return err
		}
		paused := 0
		for _, w := range ws {
			if w.Connected && w.State == protocol.StatePaused {
				paused++
			}
		}
		if paused >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d of %d after %v", errNotAllPaused, paused, n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// submitMany queues n copies of req from `parallel` submitters and returns the job ids.
func submitMany(ctx context.Context, hc *hub.Client, n, parallel int, req protocol.JobRequest) ([]string, error) {
	ids := make([]string, n)
	err := parallelDo(ctx, n, parallel, func(i int) error {
		id, err := hc.Submit(ctx, req)
		if err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		ids[i] = id
		return nil
	})
	return ids, err
}
