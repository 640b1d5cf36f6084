// Package demo is the Studio the demo runs against: the reference hub started in this process on
// a free loopback port, on a temporary database, with open registration, and the jobs the demo
// submits to it. It implements app.DemoHub, and main wires it in, so that this is the only part
// of the worker that imports the hub.
//
// hub.go starts and stops the hub and speaks its admin API for the worker (register, cancel). It
// must not know how the worker runs (app does), nor the hub's insides: it uses hub.Open and
// hub.Client as any program embedding the hub would.
package demo

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"studioworker/app"
	"studioworker/hub"
)

// adminToken is the demo hub's admin token; nothing outside this process can reach the hub.
const adminToken = "demo-admin"

// localHub is the reference hub run in-process for a demo; Close stops it and removes its files.
type localHub struct {
	url    string
	client *hub.Client // with the admin token: register, submit, follow jobs
	dir    string
	h      *hub.Hub
	srv    *http.Server
	done   chan struct{}
}

var _ app.DemoHub = (*localHub)(nil)

// Start starts a demo hub on a free loopback port; logger gets the hub's messages. Its type is
// app.DemoHubStarter.
func Start(ctx context.Context, logger *slog.Logger) (app.DemoHub, error) {
	d, err := start(ctx, logger)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return d, nil
}

func start(ctx context.Context, logger *slog.Logger) (*localHub, error) {
	dir, err := os.MkdirTemp("", "studio-worker-demo-hub-")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	base := "http://" + ln.Addr().String()
	h, err := hub.Open(ctx, hub.Config{
		DBPath: filepath.Join(dir, "hub.db"), OpenRegistration: true, AdminToken: adminToken,
		Logger: logger, ServerVersion: "studio-hub (demo)", PublicURL: base,
	})
	if err != nil {
		ln.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start the hub: %w", err)
	}
	d := &localHub{url: base, client: &hub.Client{BaseURL: base, AdminToken: adminToken}, dir: dir, h: h,
		srv: &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second}, done: make(chan struct{})}
	go func() { defer close(d.done); _ = d.srv.Serve(ln) }()
	return d, nil
}

// URL is the hub's base URL.
func (d *localHub) URL() string { return d.url }

// Dir is the hub's own temporary folder, which Close removes.
func (d *localHub) Dir() string { return d.dir }

// Register registers a worker; registration is open, so any pairing code does.
func (d *localHub) Register(ctx context.Context, name string) (workerID, authToken string, err error) {
	reg, err := d.client.Register(ctx, name, "demo")
	if err != nil {
		return "", "", err
	}
	return reg.WorkerID, reg.AuthToken, nil
}

// CancelJobs cancels every job that has not ended; a job the hub cannot list or cancel is left.
func (d *localHub) CancelJobs(ctx context.Context) {
	jobs, err := d.client.Jobs(ctx)
	if err != nil {
		return
	}
	for _, j := range jobs {
		if !j.Status.Done() {
			_ = d.client.Cancel(ctx, j.JobID)
		}
	}
}

// Close stops the hub, waits for it and removes its files.
func (d *localHub) Close() {
	cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ccancel()
	_ = d.h.Close(cctx)
	_ = d.srv.Shutdown(cctx)
	<-d.done
	os.RemoveAll(d.dir)
}
