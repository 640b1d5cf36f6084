// profile.go: the hub run as a profiled process (--pprof), for the figures that ask for it.

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
	db := fs.String("db", "", "SQLite database file")
	token := fs.String("admin-token", "", "admin token")
	profile := fs.String("cpuprofile", "", "CPU profile written at exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := serveProfiledHub(*addr, *db, *token, *profile); err != nil {
		fmt.Fprintln(os.Stderr, "bench hub:", err)
		return 1
	}
	return 0
}

func serveProfiledHub(addr, db, token, profile string) error {
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
	h, err := hub.Open(ctx, hub.Config{DBPath: db, OpenRegistration: true, AdminToken: token, Logger: log, ServerVersion: "studio-hub/bench-profile",
		RegisterAddrBurst: 1000000, RegisterRate: 1000000}) // as hubproc.go: thousands of workers from one address
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = h.Close(context.Background())
		return err
	}
	srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second}
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
