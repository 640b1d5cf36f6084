// Command studio-hub is the reference Studio hub: `serve` runs it, and `pair`, `submit` and
// `jobs` talk to a running one through its HTTP API. All the logic lives in package hub; this
// file only parses flags and wires signals.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"studioworker/hub"
	"studioworker/protocol"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `studio-hub: the reference Studio hub

  studio-hub serve  --addr 127.0.0.1:7860 --db PATH|postgres://… [--data DIR] [--open-registration]
                    [--admin-token TOKEN] [--offer-ttl 10s] [--lease-grace 60s] [--retry-cooloff 30s]
                    [--max-attempts 3] [--max-upload 2GiB] [--public-url URL] [--max-conns 16384]
                    [--replica-dead-after 10s]
                    [--idle-timeout 60s] [--register-addr-burst 5] [--register-addr-refill 2s]
                    [--register-rate 50] [--register-max-addrs 10000] [--pairing-ttl 24h]
                    [--log-format text|json]
  studio-hub pair   [--hub URL] [--admin-token TOKEN | --admin-token-file FILE | --db PATH]
  studio-hub submit --kind K --model M --input JSON [--file PATH] [--vram GB] [--wait] [hub flags]
  studio-hub jobs   [--json] [hub flags]
  studio-hub revoke WORKER_ID [hub flags]

--db is a SQLite file (created if missing), or a PostgreSQL URL (postgres://user:pass@host/db),
which needs --data for the hub's result and input files (docs/studio-hub.md).

The admin token of pair, submit, jobs and revoke comes from --admin-token, $STUDIO_HUB_ADMIN_TOKEN,
--admin-token-file, or the file the hub wrote next to --db (on PostgreSQL: DIR/admin-token) on its
first start.
`

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "pair":
		err = pair(ctx, args[1:], stdout)
	case "submit":
		err = submit(ctx, args[1:], stdout)
	case "jobs":
		err = jobs(ctx, args[1:], stdout)
	case "revoke":
		err = revoke(ctx, args[1:], stdout)
	case "version":
		fmt.Fprintln(stdout, version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "studio-hub: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "studio-hub %s: %v\n", args[0], err)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "studio-hub %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

type usageError struct{ error }

// parseSize reads 2GiB, 500MiB, 10KB, 1024.
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("bad size %q: want a positive number with an optional unit (KiB, MiB, GiB)", s)
	}
	return n * mult, nil
}

type sizeFlag struct{ v *int64 }

func (f sizeFlag) String() string {
	if f.v == nil {
		return ""
	}
	return strconv.FormatInt(*f.v, 10)
}
func (f sizeFlag) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*f.v = n
	return nil
}

func newLogger(format string, w io.Writer) (*slog.Logger, error) {
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format must be text or json, not %q", format)}
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:7860", "address to listen on")
	cfg := hub.Config{MaxUpload: hub.DefaultMaxUpload, ServerVersion: "studio-hub/" + version}
	fs.StringVar(&cfg.DBPath, "db", "", "SQLite database file, or a postgres:// URL (required)")
	fs.StringVar(&cfg.DataDir, "data", "", "folder for result and input files (default: data/ beside a SQLite database; required with PostgreSQL)")
	fs.BoolVar(&cfg.OpenRegistration, "open-registration", false, "accept any pairing code (demo and tests only)")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "admin token of the job API (default: created on first start)")
	fs.DurationVar(&cfg.OfferTTL, "offer-ttl", hub.DefaultOfferTTL, "time a worker has to answer an offer")
	fs.DurationVar(&cfg.ManualOfferTTL, "manual-offer-ttl", hub.DefaultManualTTL, "the least time a worker that waits for its user (auto-accept off) has to answer an offer")
	fs.DurationVar(&cfg.LeaseGrace, "lease-grace", hub.DefaultLeaseGrace, "time a disconnected worker keeps its jobs")
	fs.DurationVar(&cfg.ReplicaDeadAfter, "replica-dead-after", hub.DefaultReplicaDeadAfter, "with PostgreSQL: a replica that has not written that it lives for this long is dead to the others, who take its jobs back")
	fs.DurationVar(&cfg.RetryCoolOff, "retry-cooloff", hub.DefaultRetryCoolOff, "time a worker whose run of a job failed (retryable) or lost its lease is not offered that job again")
	fs.IntVar(&cfg.MaxAttempts, "max-attempts", hub.DefaultMaxAttempts, "runs of a job before it fails")
	fs.Var(sizeFlag{&cfg.MaxUpload}, "max-upload", "largest result or input file (e.g. 2GiB)")
	fs.StringVar(&cfg.PublicURL, "public-url", "", "base URL workers reach the hub at, for input_url (default: from each request)")
	fs.IntVar(&cfg.RegisterAddrBurst, "register-addr-burst", hub.DefaultRegisterAddrBurst, "registration attempts one client address (an IPv6 /64) may make in a row; past them it gets 429")
	fs.DurationVar(&cfg.RegisterAddrRefill, "register-addr-refill", hub.DefaultRegisterAddrRefill, "an address may make one more registration attempt after each of these")
	fs.IntVar(&cfg.RegisterRate, "register-rate", hub.DefaultRegisterRate, "registration attempts per second from all addresses together")
	fs.IntVar(&cfg.RegisterMaxAddrs, "register-max-addrs", hub.DefaultRegisterMaxAddrs, "client addresses the registration limit tracks at once; past it a new address gets 429")
	fs.DurationVar(&cfg.PairingTTL, "pairing-ttl", hub.DefaultPairingTTL, "a pairing code older than this is refused like a wrong one")
	fs.DurationVar(&cfg.BodyWindow, "body-window", hub.DefaultBodyWindow, "a request body must bring --min-body-rate × this in every such window (a small one arrives whole within one)")
	cfg.MinBodyRate = hub.DefaultMinBodyRate
	fs.Var(sizeFlag{&cfg.MinBodyRate}, "min-body-rate", "the least rate of a request body, in bytes a second (e.g. 16KiB)")
	fs.DurationVar(&cfg.WriteTimeout, "write-timeout", hub.DefaultWriteTimeout, "each write of an answer must complete within this, or the connection is closed")
	maxConns := fs.Int("max-conns", hub.DefaultMaxConns, "most connections open at once; past it new ones are closed (keep ulimit -n above it)")
	idleTimeout := fs.Duration("idle-timeout", 60*time.Second, "how long an idle keep-alive HTTP connection stays open")
	logFormat := fs.String("log-format", "text", "log format: text or json")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if cfg.DBPath == "" {
		return usageError{errors.New("--db is required: a SQLite file, or a postgres:// URL")}
	}
	if hub.IsPostgresURL(cfg.DBPath) {
		cfg.PostgresURL, cfg.DBPath = cfg.DBPath, ""
		if cfg.DataDir == "" {
			return usageError{errors.New("--data is required with a PostgreSQL --db: the folder for the hub's result and input files")}
		}
	}
	if *maxConns < 16 || *idleTimeout <= 0 {
		return usageError{errors.New("--max-conns must be at least 16 and --idle-timeout positive")}
	}
	// hub.Config would take a default for 0; on the command line a 0 is more likely a mistake for
	// "no limit", which there is not (raise them instead, e.g. behind a proxy).
	if cfg.RegisterAddrBurst <= 0 || cfg.RegisterAddrRefill <= 0 || cfg.RegisterRate <= 0 || cfg.RegisterMaxAddrs <= 0 {
		return usageError{errors.New("--register-addr-burst, --register-addr-refill, --register-rate and --register-max-addrs must be positive")}
	}
	if cfg.BodyWindow <= 0 || cfg.MinBodyRate <= 0 || cfg.WriteTimeout <= 0 {
		return usageError{errors.New("--body-window, --min-body-rate and --write-timeout must be positive")}
	}
	if cfg.PairingTTL <= 0 {
		return usageError{fmt.Errorf("--pairing-ttl must be positive, not %s", cfg.PairingTTL)}
	}
	// No "off": a hub without a cool-off lets a dead backend use up a job's attempts in
	// milliseconds (contract §6). A short one (1s) retries soon enough on a single worker.
	if cfg.RetryCoolOff <= 0 {
		return usageError{fmt.Errorf("--retry-cooloff must be positive (e.g. 1s for a quick retry), not %s", cfg.RetryCoolOff)}
	}
	if cfg.AdminToken == "" {
		cfg.AdminToken = os.Getenv("STUDIO_HUB_ADMIN_TOKEN")
	}
	log, err := newLogger(*logFormat, stderr)
	if err != nil {
		return err
	}
	cfg.Logger = log
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	h, err := hub.Open(ctx, cfg)
	if err != nil {
		return err
	}
	if f := h.AdminTokenFile(); f != "" {
		fmt.Fprintf(stdout, "admin token created and written to %s (mode 0600)\n", f)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		_ = h.Close(context.Background())
		return fmt.Errorf("listen: %w", err)
	}
	// Every phase without a deadline of its own is one an idle or trickling client can hold
	// forever: the header has one, idle keep-alive connections have one, and the cap bounds
	// what is open at once. Bodies and answers get theirs from the hub's handler, which moves
	// them with progress (--body-window, --min-body-rate, --write-timeout), since a large upload
	// or result takes as long as it takes; WebSocket sessions exist only after auth.
	srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: *idleTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	ln = hub.LimitListener(ln, *maxConns, log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("studio-hub listening", "addr", ln.Addr().String(), "db", dbName(cfg), "version", version)
	fmt.Fprintf(stdout, "listening on http://%s\n", ln.Addr())

	select {
	case err = <-served:
	case <-ctx.Done():
		log.Info("shutting down")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// Workers first (error shutting_down, close 1012), then the HTTP server and its uploads.
	cerr := h.Close(sctx)
	if serr := srv.Shutdown(sctx); serr != nil && cerr == nil {
		cerr = serr
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return cerr
}

// dbName is the database as a log line may name it: a PostgreSQL URL's password stays out.
func dbName(cfg hub.Config) string {
	if cfg.PostgresURL == "" {
		return cfg.DBPath
	}
	u, err := url.Parse(cfg.PostgresURL)
	if err != nil {
		return "postgres (an unreadable URL)"
	}
	return u.Redacted()
}

// clientFlags are the flags of the commands that talk to a running hub.
type clientFlags struct {
	hubURL, token, tokenFile, db string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.hubURL, "hub", "http://127.0.0.1:7860", "base URL of the hub")
	fs.StringVar(&c.token, "admin-token", "", "admin token")
	fs.StringVar(&c.tokenFile, "admin-token-file", "", "file holding the admin token")
	fs.StringVar(&c.db, "db", "", "the hub's database: read the token from the file beside it")
}

func (c *clientFlags) client() (*hub.Client, error) {
	token := c.token
	if token == "" {
		token = os.Getenv("STUDIO_HUB_ADMIN_TOKEN")
	}
	file := c.tokenFile
	if token == "" && file == "" && c.db != "" {
		if hub.IsPostgresURL(c.db) {
			return nil, usageError{errors.New("a hub on PostgreSQL keeps its admin token in its --data folder: pass --admin-token-file DIR/admin-token")}
		}
		file = hub.AdminTokenFilePath(c.db)
	}
	if token == "" && file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("read the admin token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, usageError{errors.New("no admin token: pass --admin-token, --admin-token-file or --db, or set STUDIO_HUB_ADMIN_TOKEN")}
	}
	return &hub.Client{BaseURL: c.hubURL, AdminToken: token, HTTP: &http.Client{Timeout: 10 * time.Minute}}, nil
}

func pair(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("pair", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	code, err := c.PairingCode(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, code)
	return nil
}

// revoke ends a worker's access: its session closes with 4001 and its run exits 3.
func revoke(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("revoke takes one worker id (studio-hub revoke WORKER_ID)")}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if err := c.Revoke(ctx, fs.Arg(0)); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked %s\n", fs.Arg(0))
	return nil
}

func submit(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	kind := fs.String("kind", "", "job kind: llm, image, tts, stt or video")
	model := fs.String("model", "", "model name")
	input := fs.String("input", "{}", "job input as a JSON object")
	file := fs.String("file", "", "input file (stt audio)")
	vram := fs.Float64("vram", -1, "VRAM estimate in GB (default: none)")
	wait := fs.Bool("wait", false, "wait until the job is finished and print it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *kind == "" || *model == "" {
		return usageError{errors.New("--kind and --model are required")}
	}
	if !json.Valid([]byte(*input)) {
		return usageError{fmt.Errorf("--input is not valid JSON: %s", *input)}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	req := protocol.JobRequest{Kind: protocol.Kind(*kind), Model: *model, Input: protocol.Object(*input)}
	if *vram >= 0 {
		req.VRAMGBEstimate = vram
	}
	var id string
	if *file != "" {
		f, ferr := os.Open(*file)
		if ferr != nil {
			return ferr
		}
		defer f.Close()
		id, err = c.SubmitWithFile(ctx, req, *file, f)
	} else {
		id, err = c.Submit(ctx, req)
	}
	if err != nil {
		return err
	}
	if !*wait {
		fmt.Fprintln(stdout, id)
		return nil
	}
	info, err := c.WaitJob(ctx, id)
	if err != nil {
		return err
	}
	return printJSON(stdout, info)
}

func jobs(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	list, err := c.Jobs(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, list)
	}
	fmt.Fprintf(stdout, "%-28s %-6s %-20s %-10s %-28s %s\n", "JOB", "KIND", "MODEL", "STATUS", "WORKER", "ATTEMPTS")
	for _, j := range list {
		fmt.Fprintf(stdout, "%-28s %-6s %-20s %-10s %-28s %d\n", j.JobID, j.Kind, j.Model, j.Status, j.WorkerID, j.Attempts)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
