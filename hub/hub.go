// hub.go: building and stopping a Hub: Config and its defaults, Open, Close, the admin token, and
// the small helpers for secrets, ids, tokens and timestamps that the other files share. Open is the
// one place that wires the parts together, so their order (store, admin token, recovery, then the
// scheduler loop) lives in one function. It must not know how jobs are scheduled or what a
// session says.

package hub

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Config configures a Hub. Zero values take the documented defaults.
type Config struct {
	DBPath            string        // SQLite file; this or PostgresURL is required
	PostgresURL       string        // postgres://… : the database is PostgreSQL instead, shared by any number of replicas (cluster.go)
	ReplicaDeadAfter  time.Duration // on PostgreSQL, a replica silent this long is dead to the others, who take its jobs back; default 10s
	DataDir           string        // result and input files; default: "<dir of DBPath>/data"; required with PostgresURL
	OpenRegistration  bool          // accept any pairing code (demo and tests only)
	AdminToken        string        // "" = create one on first start, readable via Hub.AdminToken()
	OfferTTL          time.Duration // default 10s
	ManualOfferTTL    time.Duration // the least an offer to a worker that waits for its user (auto_accept:false) lasts; default 120s (spec §6)
	LeaseGrace        time.Duration // default 60s
	RetryCoolOff      time.Duration // a run that ended without a result keeps the job from its worker this long; default 30s
	MaxAttempts       int           // default 3
	MaxUpload         int64         // default 2 GiB
	HeartbeatInterval time.Duration // announced in welcome; default 5s
	ServerVersion     string
	PublicURL         string // base URL used to build absolute input_url; "" = derive from the request's Host
	Logger            *slog.Logger
	Now               func() time.Time // optional clock for tests; default time.Now

	// POST /v1/worker/register is limited per client address (the IP of the connection; an IPv6
	// one by its /64) and in total, so that pairing codes cannot be guessed at speed and a flood
	// of registrations cannot fill the database or the log. An attempt over a limit gets 429.
	RegisterAddrBurst  int           // attempts one address may make in a row; default 5
	RegisterAddrRefill time.Duration // one more attempt per address after each of these; default 2s
	RegisterRate       int           // attempts per second from all addresses together (also their burst); default 50
	RegisterMaxAddrs   int           // addresses tracked at once; a new one past it gets 429; default 10,000
	PairingTTL         time.Duration // a pairing code older than this is refused like a wrong one; default 24h

	// Every request body must bring MinBodyRate × BodyWindow bytes in each BodyWindow (a small one
	// arrives whole within one), and every write of an answer complete within WriteTimeout, so
	// that no client holds a connection by trickling (deadlines.go).
	BodyWindow   time.Duration // default 20s
	MinBodyRate  int64         // bytes a second; default 16 KiB
	WriteTimeout time.Duration // default 30s

	// clientAddr keys the registration limit; default: the IP of r.RemoteAddr. Tests set it,
	// since every test request comes from 127.0.0.1.
	clientAddr func(r *http.Request) string
}

// Defaults of Config. RetryCoolOff has no "off" (0 takes the default): without a cool-off a dead
// backend uses up a job's attempts in milliseconds (contract §6).
const (
	DefaultOfferTTL     = 10 * time.Second
	DefaultManualTTL    = 120 * time.Second
	DefaultLeaseGrace   = 60 * time.Second
	DefaultRetryCoolOff = 30 * time.Second
	DefaultMaxAttempts  = 3
	DefaultMaxUpload    = int64(2) << 30
	DefaultHeartbeat    = 5 * time.Second
	// DefaultReplicaDeadAfter is long enough for a busy database's pauses, short against the
	// lease grace that follows it.
	DefaultReplicaDeadAfter = 10 * time.Second

	DefaultRegisterAddrBurst  = 5
	DefaultRegisterAddrRefill = 2 * time.Second
	DefaultRegisterRate       = 50
	DefaultRegisterMaxAddrs   = 10000
	DefaultPairingTTL         = 24 * time.Hour
)

// refusalLogEvery is the most often a refused or throttled registration is logged; the line
// after a quiet spell says how many were not.
const refusalLogEvery = 10 * time.Second

// sendQueue bounds the frames waiting for one worker's writer; a worker that lets it fill up is
// disconnected rather than allowed to slow the scheduler down.
const sendQueue = 1024

// Hub is a running Studio hub. Create it with Open, serve Handler, stop it with Close.
type Hub struct {
	cfg        Config
	log        *slog.Logger
	now        func() time.Time
	db         *store
	met        *metrics
	adminHash  [32]byte
	adminToken string
	tokenFile  string
	dirs       dirs

	regLimit    *limiter
	clientAddr  func(r *http.Request) string
	codeLog     logEvery // "registration refused" lines
	throttleLog logEvery // "registration throttled" lines
	slowLog     logEvery // bodies and answers cut off by their deadlines (deadlines.go)

	// cluster is this hub's part in a group of replicas sharing one PostgreSQL database (nil on
	// SQLite): which jobs it owns, the others' notifications, the sweep of dead replicas.
	cluster *cluster

	mu      sync.Mutex
	jobs    map[string]*job     // unfinished jobs, and finished ones until their row is committed
	queues  map[queueKey]*queue // queued jobs by kind and model, oldest first
	workers map[string]*worker  // every registered worker
	timers  timerHeap
	nextSeq uint64
	closing bool

	kick    chan struct{}
	stop    context.CancelFunc
	ctx     context.Context
	loops   sync.WaitGroup // scheduler
	connsWG sync.WaitGroup // one per WebSocket handler
	closeMu sync.Mutex
	closed  bool
}

type dirs struct{ results, inputs, tmp string }

// Open opens (and creates or migrates) the database, loads the unfinished jobs and the workers,
// and starts the scheduler. Jobs that were running when the hub stopped keep their lease for
// LeaseGrace from now, as if their worker had just disconnected.
func Open(ctx context.Context, cfg Config) (*Hub, error) {
	switch {
	case cfg.DBPath == "" && cfg.PostgresURL == "":
		return nil, errors.New("hub: Config.DBPath or Config.PostgresURL is required")
	case cfg.DBPath != "" && cfg.PostgresURL != "":
		return nil, errors.New("hub: Config.DBPath and Config.PostgresURL are both set; a hub has one database")
	case cfg.PostgresURL != "" && cfg.DataDir == "":
		return nil, errors.New("hub: a hub on PostgreSQL needs Config.DataDir for its result and input files")
	}
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(filepath.Dir(cfg.DBPath), "data")
	}
	if cfg.OfferTTL <= 0 {
		cfg.OfferTTL = DefaultOfferTTL
	}
	if cfg.ManualOfferTTL <= 0 {
		cfg.ManualOfferTTL = DefaultManualTTL
	}
	if cfg.LeaseGrace <= 0 {
		cfg.LeaseGrace = DefaultLeaseGrace
	}
	if cfg.RetryCoolOff <= 0 {
		cfg.RetryCoolOff = DefaultRetryCoolOff
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxUpload <= 0 {
		cfg.MaxUpload = DefaultMaxUpload
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultHeartbeat
	}
	if cfg.ReplicaDeadAfter <= 0 {
		cfg.ReplicaDeadAfter = DefaultReplicaDeadAfter
	}
	if cfg.ServerVersion == "" {
		cfg.ServerVersion = "studio-hub"
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.RegisterAddrBurst <= 0 {
		cfg.RegisterAddrBurst = DefaultRegisterAddrBurst
	}
	if cfg.RegisterAddrRefill <= 0 {
		cfg.RegisterAddrRefill = DefaultRegisterAddrRefill
	}
	if cfg.RegisterRate <= 0 {
		cfg.RegisterRate = DefaultRegisterRate
	}
	if cfg.RegisterMaxAddrs <= 0 {
		cfg.RegisterMaxAddrs = DefaultRegisterMaxAddrs
	}
	if cfg.PairingTTL <= 0 {
		cfg.PairingTTL = DefaultPairingTTL
	}
	if cfg.BodyWindow <= 0 {
		cfg.BodyWindow = DefaultBodyWindow
	}
	if cfg.MinBodyRate <= 0 {
		cfg.MinBodyRate = DefaultMinBodyRate
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.clientAddr == nil {
		cfg.clientAddr = remoteIP
	}
	h := &Hub{
		cfg:     cfg,
		log:     cfg.Logger,
		now:     cfg.Now,
		met:     newMetrics(),
		jobs:    map[string]*job{},
		queues:  map[queueKey]*queue{},
		workers: map[string]*worker{},
		kick:    make(chan struct{}, 1),
		regLimit: newLimiter(cfg.RegisterAddrBurst, cfg.RegisterAddrRefill, min(cfg.RegisterRate, 1e9),
			cfg.RegisterMaxAddrs, cfg.Now()),
		clientAddr:  cfg.clientAddr,
		codeLog:     logEvery{every: refusalLogEvery},
		throttleLog: logEvery{every: refusalLogEvery},
		slowLog:     logEvery{every: refusalLogEvery},
		dirs: dirs{
			results: filepath.Join(cfg.DataDir, "results"),
			inputs:  filepath.Join(cfg.DataDir, "inputs"),
			tmp:     filepath.Join(cfg.DataDir, "tmp"),
		},
	}
	if cfg.PostgresURL != "" {
		// Replicas share the data folder; each stages its uploads in a folder of its own, so
		// that one starting up never removes another's partial files.
		h.cluster = newCluster(cfg.PostgresURL)
		h.dirs.tmp = filepath.Join(h.dirs.tmp, h.cluster.id)
	}
	mk := []string{h.dirs.results, h.dirs.inputs, h.dirs.tmp}
	if cfg.DBPath != "" {
		mk = append(mk, filepath.Dir(cfg.DBPath))
	}
	for _, d := range mk {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("hub: create %s: %w", d, err)
		}
	}
	var db *store
	var err error
	if cfg.PostgresURL != "" {
		db, err = openPostgres(ctx, cfg.PostgresURL, h.resync)
	} else {
		db, err = openSQLite(cfg.DBPath)
	}
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	h.db = db
	if err := h.setupAdminToken(ctx); err != nil {
		db.close()
		return nil, err
	}
	if err := h.load(ctx); err != nil {
		db.close()
		return nil, err
	}
	if err := h.cleanFiles(ctx); err != nil {
		db.close()
		return nil, err
	}
	h.ctx, h.stop = context.WithCancel(context.Background())
	if h.cluster != nil {
		if err := h.startCluster(h.ctx); err != nil {
			h.stop()
			db.close()
			return nil, err
		}
	}
	h.loops.Add(1)
	go h.schedulerLoop(h.ctx)
	h.kickScheduler()
	return h, nil
}

// AdminToken returns the admin token in effect: the configured one, or the one created on first
// start. It is "" when the database already held a token's hash and none was configured.
func (h *Hub) AdminToken() string { return h.adminToken }

// AdminTokenFile is the file the admin token was written to on first start ("" when no token was
// created by this Open).
func (h *Hub) AdminTokenFile() string { return h.tokenFile }

// AdminTokenFilePath is where a hub on dbPath writes the admin token it creates.
func AdminTokenFilePath(dbPath string) string { return dbPath + ".admin-token" }

// PostgresAdminTokenFilePath is where a hub on PostgreSQL with its files in dataDir writes the
// admin token it creates.
func PostgresAdminTokenFilePath(dataDir string) string { return filepath.Join(dataDir, "admin-token") }

func (h *Hub) setupAdminToken(ctx context.Context) error {
	if h.cfg.AdminToken != "" {
		h.adminToken = h.cfg.AdminToken
		h.adminHash = sha256.Sum256([]byte(h.cfg.AdminToken))
		return nil
	}
	var stored []byte
	err := h.db.db.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'admin_token_sha256'`).Scan(&stored)
	switch {
	case err == nil:
		b, derr := hex.DecodeString(string(stored))
		if derr != nil || len(b) != 32 {
			return errors.New("hub: the stored admin token hash is corrupt; start with --admin-token")
		}
		copy(h.adminHash[:], b)
		return nil
	case !errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("hub: read admin token: %w", err)
	}
	token := newSecret()
	path := AdminTokenFilePath(h.cfg.DBPath)
	if h.cfg.PostgresURL != "" {
		path = PostgresAdminTokenFilePath(h.cfg.DataDir)
	}
	// The file is written before the hash is committed: a crash in between leaves a file that a
	// second start overwrites, never a hash whose token nobody can read.
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return fmt.Errorf("hub: write admin token file: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("hub: write admin token file: %w", err)
	}
	sum := sha256.Sum256([]byte(token))
	var stored2 string
	err = h.db.do(ctx, func(tx *sql.Tx) error {
		// Two replicas starting at once on a new database: the first token stands.
		if _, err := tx.Exec(`INSERT INTO meta(key, value) VALUES('admin_token_sha256', $1) ON CONFLICT (key) DO NOTHING`,
			hex.EncodeToString(sum[:])); err != nil {
			return err
		}
		return tx.QueryRow(`SELECT value FROM meta WHERE key = 'admin_token_sha256'`).Scan(&stored2)
	})
	if err != nil {
		return fmt.Errorf("hub: store admin token: %w", err)
	}
	if stored2 != hex.EncodeToString(sum[:]) {
		_ = os.Remove(path)
		b, derr := hex.DecodeString(stored2)
		if derr != nil || len(b) != 32 {
			return errors.New("hub: the stored admin token hash is corrupt; start with --admin-token")
		}
		copy(h.adminHash[:], b)
		return nil
	}
	h.adminToken, h.adminHash, h.tokenFile = token, sum, path
	h.log.Info("created the admin token", "file", path)
	return nil
}

// Close tells every worker the hub is shutting down (error shutting_down, close 1012), waits for
// the sessions to end or ctx to expire, stops the scheduler and closes the database after
// writing what is pending.
func (h *Hub) Close(ctx context.Context) error {
	h.closeMu.Lock()
	defer h.closeMu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	h.mu.Lock()
	h.closing = true
	for _, w := range h.workers {
		if w.conn != nil {
			w.conn.closeWith(errFrame("shutting_down", "the hub is shutting down"), 1012, "shutting down")
		}
	}
	h.mu.Unlock()
	done := make(chan struct{})
	go func() { h.connsWG.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("hub: close: sessions still open: %w", ctx.Err())
		h.mu.Lock()
		for _, w := range h.workers {
			if w.conn != nil {
				w.conn.abort()
			}
		}
		h.mu.Unlock()
		<-done
	}
	h.stop()
	h.loops.Wait()
	if h.cluster != nil {
		h.leaveCluster()
	}
	if cerr := h.db.close(); cerr != nil && err == nil {
		err = fmt.Errorf("hub: close database: %w", cerr)
	}
	return err
}

// newSecret returns 32 random bytes as hex: tokens and pairing codes.
func newSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// newID returns a short random id with a prefix, safe in URL paths and file names.
func newID(prefix string) string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func hashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// tokenMatches compares in constant time.
func tokenMatches(token string, want [32]byte) bool {
	got := hashToken(token)
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// bearer extracts the token of an Authorization: Bearer header.
func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	const p = "Bearer "
	if len(a) > len(p) && strings.EqualFold(a[:len(p)], p) {
		return strings.TrimSpace(a[len(p):])
	}
	return ""
}

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t.UTC()
}
