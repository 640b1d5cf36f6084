// demo.go is the `studio-worker demo` command: a worker on the synthetic engine (and a simulated
// GPU where NVML sees none) registered with a demo hub in this process, its control socket, the
// window when there is a display, and the demo's report. The hub and the jobs it sends are the
// DemoHub's (demohub.go), which main wires in; this file must not know what a hub is made of.

package app

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"studioworker/gpu"
)

// demoOtherAppMB is what the simulated GPU shows another program using, so that one demo job is
// declined for VRAM by the worker's live check.
const demoOtherAppMB = 8 * 1024

func (c *CLI) cmdDemo(args []string) int {
	fs := flag.NewFlagSet("studio-worker demo", flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	headless := fs.Bool("headless", false, "no window, even with a display")
	jobs := fs.Int("jobs", 12, "how many jobs to submit")
	verbose := fs.Bool("verbose", false, "log the worker's and the hub's messages")
	if fs.Parse(args) != nil {
		return ExitUsage
	}
	if *jobs < 1 || *jobs > 10000 {
		c.errorf("--jobs must be between 1 and 10000")
		return ExitUsage
	}
	withWindow := !*headless && c.GUI != nil && haveDisplay()
	res, err := c.runDemo(*jobs, *verbose, withWindow)
	if err != nil {
		c.errorf("demo: %v", err)
		return ExitError
	}
	if !res {
		return ExitError
	}
	return ExitOK
}

func haveDisplay() bool {
	if runtime.GOOS == "windows" || runtime.GOOS == "darwin" {
		return true
	}
	return os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != ""
}

func (c *CLI) runDemo(n int, verbose, withWindow bool) (bool, error) {
	if c.DemoHub == nil {
		return false, ErrNoDemoHub
	}
	dir, err := os.MkdirTemp("", "studio-worker-demo-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	level := slog.LevelError // the failure on purpose is expected; --verbose shows everything
	if verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(c.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	dh, err := c.DemoHub(ctx, logger.With("source", "hub"))
	if err != nil {
		return false, err
	}
	defer dh.Close()
	base := dh.URL()
	fmt.Fprintf(c.Stdout, "Studio Worker demo\n  hub:    %s (reference studio-hub, temporary database)\n", base)

	workerID, authToken, err := dh.Register(ctx, demoName())
	if err != nil {
		return false, fmt.Errorf("register: %w", err)
	}

	cfg := DefaultConfig()
	cfg.ServerURL, cfg.WorkerID, cfg.AuthToken, cfg.Name = base, workerID, authToken, demoName()
	cfg.Engines = demoEngines() // the synthetic engine on every kind, with the demo's VRAM figures
	// Where NVML sees no GPU, a simulated 24 GB card (always labelled simulated) with another
	// program holding 8 GB, so the live-VRAM check has something to say.
	var sampler gpu.Sampler
	real := gpu.Open(gpu.Options{})
	snapCtx, snapCancel := context.WithTimeout(ctx, 5*time.Second)
	snap, _ := real.Sample(snapCtx)
	snapCancel()
	if snap.Source == gpu.SourceNVML && len(snap.Devices) > 0 {
		sampler = real
		fmt.Fprintf(c.Stdout, "  gpu:    %s (NVML)\n", snap.Devices[0].Name)
	} else {
		real.Close()
		cfg.GPU.Simulated = &SimulatedGPU{Name: "Simulated GPU (24 GB)", VRAMGB: 24}
		sim := gpu.NewSimulated(cfg.GPU.Simulated.Name, 24*1024)
		sim.SetUsedMB(demoOtherAppMB)
		sim.SetProcesses([]gpu.Process{{PID: 1, Name: "editor (simulated)", UsedMB: demoOtherAppMB}})
		sampler = sim
		why := snap.Problem
		if why == "" {
			why = "no NVIDIA GPU found"
		}
		fmt.Fprintf(c.Stdout, "  gpu:    simulated 24 GB GPU, 8 GB held by another program (%s)\n", why)
	}
	cfg.GPU.SampleIntervalS = 0.5
	configPath := filepath.Join(dir, "worker", "config.json")
	if err := SaveConfig(configPath, cfg); err != nil {
		return false, err
	}
	fmt.Fprintf(c.Stdout, "  worker: %s (synthetic engine), config %s\n\n", workerID, configPath)

	ctlLn, token, err := ListenControl(configPath)
	if err != nil {
		return false, err
	}
	w, err := NewWorker(Options{
		ConfigPath: configPath, Config: cfg, AgentVersion: c.Build.Version,
		Logger: logger, Sampler: sampler, Session: c.Session,
		SimulatedBaseMB: demoOtherAppMB, KeepRunning: withWindow,
	})
	if err != nil {
		ctlLn.Close()
		return false, err
	}
	var wg sync.WaitGroup
	defer wg.Wait() // after wcancel, which the next defer runs first
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	cs := NewControlServer(w, w, token, logger)
	runErr := make(chan error, 1)
	go func() { runErr <- w.Serve(wctx) }()

	report := make(chan bool, 1)
	wg.Add(2)
	go func() { defer wg.Done(); _ = cs.Serve(wctx, ctlLn) }()
	go func() { defer wg.Done(); report <- dh.RunJobs(wctx, w, DemoPlan{Jobs: n}, c.Stdout, c.Stderr) }()

	if withWindow {
		fmt.Fprintf(c.Stdout, "The window is open; close it (or Quit in the tray) to end the demo.\n")
		if err := c.GUI(w, w, GUIOptions{Quit: wcancel}); err != nil {
			c.errorf("window: %v", err)
		}
		wcancel()
		ok := false
		select {
		case ok = <-report:
		default:
		}
		<-runErr
		return ok, nil
	}
	var ok bool
	select {
	case ok = <-report:
	case err := <-runErr:
		return false, fmt.Errorf("the worker stopped: %w", err)
	}
	wcancel()
	if err := <-runErr; err != nil {
		return false, err
	}
	return ok, nil
}

// demoName is the demo worker's name at the demo hub.
func demoName() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "this computer"
	}
	return "demo worker on " + host
}
