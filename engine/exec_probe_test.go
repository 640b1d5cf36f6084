//go:build !windows

// exec_probe_test.go: an exec backend's configured probe decides whether its kind is offered — run
// at each check with the probe timeout, its failure in its own last words cut to 1 KiB — and a
// probe that succeeds again brings the kind back within seconds. It must not know what the
// probed command does.

package engine

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

// TestExecProbeDecidesWhetherTheKindIsOffered: the probes are small shell commands standing in
// for a health check (a curl of a local server, a test of a mounted folder).
func TestExecProbeDecidesWhetherTheKindIsOffered(t *testing.T) {
	needProgram(t, "sh")
	for _, tc := range []struct {
		name     string
		probe    []string
		wantUp   bool
		wantWhy  []string // words the down reason must hold
		maxWhy   int      // longest reason, 0: no bound
		maxTaken time.Duration
	}{
		{name: "no probe: the program is installed", wantUp: true},
		{name: "a probe that exits 0", probe: []string{"sh", "-c", "echo ok"}, wantUp: true},
		{name: "a probe that fails says why", probe: []string{"sh", "-c", "echo checking >&2; echo 'model folder /models not mounted' >&2; exit 3"},
			wantWhy: []string{"probe sh", "exit status 3", "model folder /models not mounted"}},
		{name: "a probe that hangs is given up at the probe timeout", probe: []string{"sleep", "30"},
			wantWhy: []string{"still running when the check gave up"}, maxTaken: 3 * time.Second},
		{name: "a probe's 10 KiB of output is cut to its last KiB", probe: []string{"sh", "-c", "head -c 10240 /dev/zero | tr '\\000' x; echo ' the end'; exit 1"},
			wantWhy: []string{"KiB cut)…", "x the end"}, maxWhy: 1200},
		{name: "a probe program that is not installed", probe: []string{"no-such-probe-program"},
			wantWhy: []string{"no-such-probe-program"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{protocol.KindLLM: {Backend: BackendExec, Command: []string{"sh", "-c", "echo hi"}, Probe: tc.probe}}
			r := mustRouter(t, cfg, Options{ProbeTimeout: 300 * time.Millisecond, RefreshEvery: time.Hour})
			start := time.Now()
			caps := r.Refresh(background(t))
			if tc.maxTaken > 0 && time.Since(start) > tc.maxTaken {
				t.Errorf("the check took %s, want at most %s", time.Since(start).Round(time.Millisecond), tc.maxTaken)
			}
			_, up := caps.Models[protocol.KindLLM]
			if up != tc.wantUp {
				t.Fatalf("offered: %v, want %v (down: %q)", up, tc.wantUp, caps.Down[protocol.KindLLM])
			}
			why := caps.Down[protocol.KindLLM]
			for _, w := range tc.wantWhy {
				if !strings.Contains(why, w) {
					t.Errorf("down reason %q lacks %q", why, w)
				}
			}
			if tc.maxWhy > 0 && len(why) > tc.maxWhy {
				t.Errorf("down reason is %d bytes, want at most %d", len(why), tc.maxWhy)
			}
			// The Test button runs the same probe.
			pctx, cancel := context.WithTimeout(background(t), 300*time.Millisecond)
			defer cancel()
			_, err := ProbeBackend(pctx, protocol.KindLLM, cfg[protocol.KindLLM], nil)
			if (err == nil) != tc.wantUp {
				t.Errorf("ProbeBackend: %v, want up %v", err, tc.wantUp)
			}
		})
	}
}

// TestExecProbeThatPassesAgainBringsTheKindBack: a kind down because its probe failed is probed
// again within seconds, not at the next full check an hour away, and is offered once it passes.
func TestExecProbeThatPassesAgainBringsTheKindBack(t *testing.T) {
	needProgram(t, "sh")
	flag := filepath.Join(t.TempDir(), "ready")
	cfg := Config{protocol.KindTTS: {Backend: BackendExec, Command: []string{"sh", "-c", "true"}, Probe: []string{"test", "-e", flag}}}
	r := mustRouter(t, cfg, Options{RefreshEvery: time.Hour})
	changes := make(chan Capabilities, 16)
	r.OnChange(func(c Capabilities) {
		select {
		case changes <- c:
		default:
		}
	})
	if down := r.Capabilities().Down[protocol.KindTTS]; down != NotCheckedYet {
		t.Fatalf("before the first check the kind is %q, want %q: New must not run the probe", down, NotCheckedYet)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); r.Wait() })
	r.Start(ctx)
	wait := func(what string, up bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			if _, ok := r.Capabilities().Models[protocol.KindTTS]; ok == up && r.Capabilities().Down[protocol.KindTTS] != NotCheckedYet {
				return
			}
			select {
			case <-changes:
			case <-deadline:
				t.Fatalf("%s: capabilities %+v", what, r.Capabilities())
			}
		}
	}
	wait("the failing probe drops the kind", false)
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	wait("the passing probe brings it back", true)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("back after %s, want within 5 s", took.Round(time.Millisecond))
	}
}
