package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

func TestSummarize(t *testing.T) {
	seq := func(n int) []float64 {
		out := make([]float64, n)
		for i := range out {
			out[n-1-i] = float64(i + 1) // descending: summarize must sort
		}
		return out
	}
	tests := []struct {
		name               string
		in                 []float64
		p50, p99, max, min float64
	}{
		{"1..100", seq(100), 50, 99, 100, 1},
		{"1..1000", seq(1000), 500, 990, 1000, 1},
		{"three rounds: p99 is the worst", []float64{3, 1, 2}, 2, 3, 3, 1},
		{"one value", []float64{7}, 7, 7, 7, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			s := summarize(tc.in)
			if s.P50 != tc.p50 || s.P99 != tc.p99 || s.Max != tc.max || s.Min != tc.min || s.N != len(tc.in) {
				t.Errorf("summarize = %+v, want p50 %v p99 %v max %v min %v", s, tc.p50, tc.p99, tc.max, tc.min)
			}
			if !slicesEqual(in, tc.in) {
				t.Errorf("summarize changed its input")
			}
		})
	}
	if s := summarize(nil); s.N != 0 {
		t.Errorf("summarize(nil) = %+v", s)
	}
	if !math.IsNaN(percentile(nil, 50)) {
		t.Errorf("percentile of nothing should be NaN")
	}
}

func slicesEqual(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestParseVmRSS(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"normal", "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n", 12345 << 10, false},
		{"no VmRSS (kernel thread)", "Name:\tkthreadd\nThreads:\t1\n", 0, true},
		{"unexpected unit", "VmRSS:\t 12 MB\n", 0, true},
		{"not a number", "VmRSS:\t lots kB\n", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseVmRSS([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseVmRSS = %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	fields := func(comm string, utime, stime string) string {
		// pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
		return "4242 (" + comm + ") S 1 4242 4242 0 -1 4194560 100 0 0 0 " + utime + " " + stime + " 0 0 20 0 1 0"
	}
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"plain", fields("studio-hub", "150", "50"), 2 * time.Second, false},
		{"name with spaces and parentheses", fields("a (b) c) d", "1", "2"), 30 * time.Millisecond, false},
		{"cut short", "4242 (x) S 1 2 3", 0, true},
		{"no name", "4242 x S", 0, true},
		{"garbage in utime", fields("x", "lots", "2"), 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tc.in))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseStatCPU = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestReadOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		t.Skip("no /proc here")
	}
	rss, err := readRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("readRSS(self) = %d, %v; want at least 1 MiB", rss, err)
	}
	if _, err := readCPU(os.Getpid()); err != nil {
		t.Errorf("readCPU(self): %v", err)
	}
	before, err := readSchedCPU(os.Getpid())
	if err != nil {
		t.Fatalf("readSchedCPU(self): %v", err)
	}
	for i := 0; i < 1e6; i++ { // burn some CPU: the exact count must see it
		_ = strings.Repeat("x", i%7)
	}
	after, err := readSchedCPU(os.Getpid())
	if err != nil || after <= before {
		t.Errorf("readSchedCPU after work = %v (before %v), %v", after, before, err)
	}
	if n, err := readWakeups(os.Getpid()); err != nil || n <= 0 {
		t.Errorf("readWakeups(self) = %d, %v", n, err)
	}
	if _, err := readRSS(1 << 30); err == nil {
		t.Errorf("readRSS of a pid that does not exist: no error")
	}
}

func TestParseSchedstat(t *testing.T) {
	if d, err := parseSchedstat([]byte("123456789 5000 42\n")); err != nil || d != 123456789 {
		t.Errorf("parseSchedstat = %v, %v", d, err)
	}
	for _, bad := range []string{"", "x 1 2"} {
		if _, err := parseSchedstat([]byte(bad)); err == nil {
			t.Errorf("parseSchedstat(%q) accepted", bad)
		}
	}
}

func TestMaxRSSBetween(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	s := []rssSample{{at(0), 10}, {at(50), 40}, {at(100), 20}, {at(150), 90}}
	if got, ok := maxRSSBetween(s, at(10), at(120)); !ok || got != 40 {
		t.Errorf("max in [10,120] = %d, %v; want 40", got, ok)
	}
	if _, ok := maxRSSBetween(s, at(160), at(200)); ok {
		t.Errorf("a window with no sample reported one")
	}
}

func TestParseMetrics(t *testing.T) {
	in := `# HELP studio_hub_jobs Jobs by status.
# TYPE studio_hub_jobs gauge
studio_hub_jobs{status="completed"} 1999
studio_hub_jobs{status="failed"} 1
studio_hub_jobs{status="cancelled"} 0
studio_hub_workers_connected 8
`
	m, err := parseMetrics(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	completed, ended := jobsDone(m)
	if completed != 1999 || ended != 2000 || m["studio_hub_workers_connected"] != 8 {
		t.Errorf("parsed %v: completed %d ended %d", m, completed, ended)
	}
	if _, err := parseMetrics(strings.NewReader("studio_hub_jobs notanumber\n")); err == nil {
		t.Errorf("a sample without a number parsed")
	}
}

// TestParseLogLine reads back what slog's text handler writes, the way a worker process logs.
func TestParseLogLine(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil)).With("source", "session")
	log.Info("result uploaded", "job_id", "j42", "bytes", int64(1<<30), "note", `a "quoted" value with spaces`)
	log.Info("job done", "source", "worker", "job_id", "j43", "seconds", 1.25)
	log.Info("job done", "source", "worker", "job_id", "j44", "took", 40010*time.Millisecond)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	r, source, ok := parseLogLine(lines[0])
	if !ok || r.Message != "result uploaded" || source != "session" || r.Time.IsZero() {
		t.Fatalf("line 1 = %v %q %v", r, source, ok)
	}
	p := newProbe()
	p.record(r, source)
	r2, source2, ok := parseLogLine(lines[1])
	if !ok {
		t.Fatalf("line 2 not parsed: %q", lines[1])
	}
	p.record(r2, source2)
	up, err := p.waitUploaded(context.Background(), "j42", time.Second)
	if err != nil || up.bytes != 1<<30 {
		t.Errorf("uploaded = %+v, %v; want 1 GiB", up, err)
	}
	if p.seconds["j43"] != 1.25 {
		t.Errorf("seconds of j43 = %v, want 1.25", p.seconds["j43"])
	}
	r3, source3, ok := parseLogLine(lines[2])
	if !ok {
		t.Fatalf("line 3 not parsed: %q", lines[2])
	}
	p.record(r3, source3)
	if p.seconds["j44"] != 40.01 {
		t.Errorf("seconds of j44 (took=40.01s) = %v, want 40.01", p.seconds["j44"])
	}
	for _, bad := range []string{"", "not a log line", `time=yesterday level=INFO msg=x`, `time=2026-01-01T00:00:00Z level=LOUD msg=x`, `msg="unterminated`} {
		if _, _, ok := parseLogLine(bad); ok {
			t.Errorf("parseLogLine(%q) accepted", bad)
		}
	}
}

// TestProbe drives the probe through a logger the way app.Worker and session log.
func TestProbe(t *testing.T) {
	p := newProbe()
	log := p.Logger()
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, err := p.waitStarted(ctx, "j1", 5*time.Second)
		done <- err
	}()
	log.With("source", "session").Info(msgConnected)
	log.Info(msgJobStarted, "source", "worker", "job_id", "j1")
	if err := <-done; err != nil {
		t.Fatalf("waitStarted: %v", err)
	}
	if err := p.waitConnected(ctx, 1, time.Second); err != nil {
		t.Errorf("waitConnected: %v", err)
	}
	log.Info(msgConnected, "source", "worker") // not the session's: not a connection
	if _, connected := p.counts(); connected != 1 {
		t.Errorf("connected = %d, want 1", connected)
	}
	log.Warn("something odd", "source", "session", "job_id", "j9")
	err := p.waitEnded(ctx, "j1", 20*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), msgJobDone) || !strings.Contains(err.Error(), "something odd") {
		t.Errorf("waitEnded without the line = %v; want a timeout naming %q and the recent warning", err, msgJobDone)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.waitStarted(cctx, "j2", time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("waitStarted with a cancelled context = %v", err)
	}
}

func TestAckCounter(t *testing.T) {
	a := newAckCounter(2)
	a.onFrame(protocol.CompleteAck{JobID: "a", Status: protocol.AckStored})
	a.onFrame(protocol.HeartbeatAck{})
	select {
	case <-a.reached:
		t.Fatal("threshold reached after one stored ack")
	default:
	}
	a.onFrame(protocol.CompleteAck{JobID: "b", Status: protocol.AckStored})
	a.onFrame(protocol.CompleteAck{JobID: "a", Status: protocol.AckDuplicate})
	a.onFrame(protocol.CompleteAck{JobID: "b", Status: protocol.AckStored})
	select {
	case <-a.reached:
	default:
		t.Fatal("threshold not reached after two stored acks")
	}
	by, twice := a.snapshot()
	if by[protocol.AckStored] != 3 || by[protocol.AckDuplicate] != 1 || twice != 1 {
		t.Errorf("snapshot = %v, stored twice %d; want 3 stored, 1 duplicate, 1 job stored twice", by, twice)
	}
}

func TestSelectFigures(t *testing.T) {
	all, err := selectFigures("")
	if err != nil || len(all) != len(figures()) {
		t.Fatalf("no --only: %d figures, %v", len(all), err)
	}
	some, err := selectFigures("upload, dispatch")
	if err != nil || len(some) != 2 || some[0].name != "dispatch" || some[1].name != "upload" {
		t.Errorf("--only upload,dispatch = %v, %v; want dispatch then upload (table order)", names(some), err)
	}
	if _, err := selectFigures("dispatch,speed"); err == nil || !strings.Contains(err.Error(), "speed") {
		t.Errorf("an unknown figure: %v", err)
	}
}

func names(fs []figure) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.name)
	}
	return out
}

func TestNum(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{0, "0"}, {2000, "2000"}, {45, "45"}, {1459.4, "1459"}, {260.04, "260.0"}, {1.913, "1.91"},
		{0.0081, "0.0081"}, {0.228, "0.228"}, {math.NaN(), "-"},
	}
	for _, tc := range tests {
		if got := num(tc.in); got != tc.want {
			t.Errorf("num(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRowRatioAndGoal(t *testing.T) {
	r := row{Figure: "x", Value: 3, Unit: "ms"}.withBaseline("echo", 0.5).withGoal("≤ 20× baseline", false)
	if r.Ratio == nil || *r.Ratio != 6 || r.Pass == nil || *r.Pass {
		t.Fatalf("row = %+v", r)
	}
	c := r.cells()
	if c[2] != "0.500 ms (echo)" || c[3] != "6.00×" || c[5] != "MISS" {
		t.Errorf("cells = %q", c)
	}
	if z := (row{Value: 1}).withBaseline("zero", 0); z.Ratio != nil {
		t.Errorf("a zero baseline gave a ratio")
	}
}
