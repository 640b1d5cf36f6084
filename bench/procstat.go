// procstat.go: a process's CPU time, RSS and wake-ups, read from /proc.

package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. Linux fixes it at 100 on
// every architecture Go supports, so it is not read from sysconf.
const clockTicks = 100

// readRSS returns a process's resident set size in bytes (VmRSS of /proc/PID/status).
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read RSS of %d: %w", pid, err)
	}
	return parseVmRSS(b)
}

func parseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q: want <n> kB", strings.TrimSpace(string(line)))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS line %q: %w", strings.TrimSpace(string(line)), err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line (a kernel thread, or a process that ended?)")
}

// readCPU returns the user plus system CPU time a process has used.
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time of %d: %w", pid, err)
	}
	return parseStatCPU(b)
}

// readSchedCPU returns the CPU time of a process's live threads in nanoseconds, from the
// scheduler's own accounting (/proc/PID/task/*/schedstat). Unlike utime and stime, which are
// sampled at 100 Hz, it is exact, which matters for a process that wakes for microseconds.
func readSchedCPU(pid int) (time.Duration, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("read schedstat of %d: no tasks (%v)", pid, err)
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // a thread that just ended
		}
		ns, err := parseSchedstat(b)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", t, err)
		}
		total += ns
	}
	return total, nil
}

// readWakeups returns how many times a process's live threads were switched out, voluntarily
// (they slept: each is a wakeup to come) or not (/proc/PID/task/*/status).
func readWakeups(pid int) (int64, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		return 0, fmt.Errorf("read context switches of %d: no tasks (%v)", pid, err)
	}
	var total int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for line := range bytes.Lines(b) {
			for _, key := range []string{"voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:"} {
				if rest, ok := bytes.CutPrefix(line, []byte(key)); ok {
					n, err := strconv.ParseInt(strings.TrimSpace(string(rest)), 10, 64)
					if err != nil {
						return 0, fmt.Errorf("%s: %w", t, err)
					}
					total += n
				}
			}
		}
	}
	return total, nil
}

// parseSchedstat reads the first field of a schedstat line: nanoseconds spent on a CPU.
func parseSchedstat(b []byte) (time.Duration, error) {
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 0, errors.New("schedstat: empty")
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("schedstat: %w", err)
	}
	return time.Duration(ns), nil
}

// parseStatCPU reads utime and stime (fields 14 and 15) of /proc/PID/stat. The command name
// (field 2) is in parentheses and may hold spaces and parentheses itself, so the fields are
// counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the command name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: utime/stime %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// rssSampler reads a process's RSS every interval until stopped, keeping every sample with its
// time (a figure's window picks its own maximum afterwards).
type rssSampler struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	samples []rssSample
	err     error
}

type rssSample struct {
	at  time.Time
	rss int64
}

// maxSamples bounds a sampler's memory: at 50 ms it is over 13 minutes, longer than any figure.
const maxSamples = 16384

func startRSSSampler(ctx context.Context, pid int, every time.Duration) *rssSampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &rssSampler{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			rss, err := readRSS(pid)
			s.mu.Lock()
			if err != nil {
				s.err = err
			} else if len(s.samples) < maxSamples {
				s.samples = append(s.samples, rssSample{time.Now(), rss})
			}
			s.mu.Unlock()
			if err != nil {
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends sampling and returns the samples.
func (s *rssSampler) stop() ([]rssSample, error) {
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples, s.err
}

// maxRSSBetween is the largest sample taken in [from, to]; ok is false when none was.
func maxRSSBetween(samples []rssSample, from, to time.Time) (rss int64, ok bool) {
	for _, s := range samples {
		if s.at.Before(from) || s.at.After(to) {
			continue
		}
		if !ok || s.rss > rss {
			rss, ok = s.rss, true
		}
	}
	return rss, ok
}

// meanRSSBetween is the mean of the samples taken in [from, to], 0 when none was.
func meanRSSBetween(samples []rssSample, from, to time.Time) float64 {
	var sum float64
	n := 0
	for _, s := range samples {
		if s.at.Before(from) || s.at.After(to) {
			continue
		}
		sum += float64(s.rss)
		n++
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}
