// profile.go: the hub run as a profiled process (--pprof), for the figures that ask for it: a CPU
// profile written when it stops, and heap profiles written when a figure asks. It must not know
// what a figure measures.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"studioworker/hub"
)

// hubModeArg makes the bench binary serve the hub package the way `studio-hub serve` does, with a
// CPU profile written when it stops. It is used only with --pprof: the figures otherwise run the
// studio-hub binary itself.
const hubModeArg = "__hub"

func runHubMode(args []string) int {
	fs := flag.NewFlagSet(hubModeArg, flag.ContinueOnError)
	addr := fs.String("addr", "", "address to listen on")
	db := fs.String("db", "", "SQLite database file, or a postgres:// URL")
	data := fs.String("data", "", "the hub's data folder (with a postgres:// --db)")
	token := fs.String("admin-token", "", "admin token")
	profile := fs.String("cpuprofile", "", "CPU profile written at exit")
	heap := fs.String("heapprofile", "", "heap profile written on each POST "+heapProfilePath)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := hub.Config{DBPath: *db}
	if hub.IsPostgresURL(*db) {
		cfg = hub.Config{PostgresURL: *db, DataDir: *data}
	}
	if err := serveProfiledHub(*addr, cfg, *token, *profile, *heap); err != nil {
		fmt.Fprintln(os.Stderr, "bench hub:", err)
		return 1
	}
	return 0
}

// heapProfilePath is the route of the profiled hub that writes its heap profile (after a GC) to
// the file named on its command line: a figure asks for it at the moment it measures memory.
const heapProfilePath = "/debug/bench-heap-profile"

func serveProfiledHub(addr string, cfg hub.Config, token, profile, heap string) error {
	f, err := os.Create(profile)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg.OpenRegistration, cfg.AdminToken, cfg.Logger, cfg.ServerVersion = true, token, log, "studio-hub/bench-profile"
	cfg.RegisterAddrBurst, cfg.RegisterRate = 1000000, 1000000 // as hubproc.go: thousands of workers from one address
	h, err := hub.Open(ctx, cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = h.Close(context.Background())
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", h.Handler())
	mux.HandleFunc("POST "+heapProfilePath, func(w http.ResponseWriter, r *http.Request) {
		if heap == "" {
			http.Error(w, "no --heapprofile", http.StatusNotFound)
			return
		}
		if err := writeHeapProfile(heap); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err = <-served:
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cerr := h.Close(sctx)
	_ = srv.Shutdown(sctx)
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return cerr
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC() // the profile then shows what is live, as the RSS figure means
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeHeapProfile asks a profiled hub (--pprof) for its heap profile; it returns the file, or ""
// when the hub is not profiled.
func (h *hubProc) writeHeapProfile(ctx context.Context) (string, error) {
	if h.heapProf == "" {
		return "", nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL()+heapProfilePath, nil)
	if err != nil {
		return "", err
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return "", fmt.Errorf("heap profile: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return "", fmt.Errorf("heap profile: %s", resp.Status)
	}
	return h.heapProf, nil
}
