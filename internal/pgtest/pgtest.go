// Package pgtest starts a real PostgreSQL server for a test: Debian's server binaries, a data
// folder made by initdb under the test's own temporary folder, a loopback port and a socket folder
// of its own, no Docker. The server refuses to run as root, so a test run by root starts it as the
// `postgres` system user (pgtest_linux.go). It must not know what the databases hold.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// RequireEnv, set to 1, makes a missing PostgreSQL a test failure instead of a skip: ./build.sh
// test sets it, since ./build.sh deps installs the server.
const RequireEnv = "STUDIO_REQUIRE_POSTGRES"

// Server is one running (or stopped) PostgreSQL server owned by a test or a package's TestMain.
type Server struct {
	bin     string // folder of initdb and postgres
	dir     string // the server's own folder: data/, server.log
	port    int
	runAsPG bool

	mu   sync.Mutex
	proc *exec.Cmd
	exit chan struct{} // closed when proc has been waited for
	dbs  int
}

// Start initdb's a fresh cluster under the test's temporary folder and starts it; the test's
// cleanup stops it. Without the server binaries the test is skipped, saying what to install, or
// fails when RequireEnv is set.
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := findBin(); err != nil {
		msg := fmt.Sprintf("no PostgreSQL server here (%v): install Debian's postgresql package (./build.sh deps does)", err)
		if os.Getenv(RequireEnv) == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; " + RequireEnv + "=1 makes this a failure")
	}
	s, err := Launch(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	return s
}

// Launch is Start for a TestMain, in base (a folder of the caller's, removed by the caller after
// Kill): it returns an error where Start would fail or skip.
func Launch(base string) (*Server, error) {
	bin, err := findBin()
	if err != nil {
		return nil, fmt.Errorf("no PostgreSQL server here (%v): install Debian's postgresql package (./build.sh deps does)", err)
	}
	s := &Server{bin: bin}
	if s.dir, s.runAsPG, err = prepareDir(base); err != nil {
		return nil, err
	}
	if err := s.initdb(); err != nil {
		return nil, err
	}
	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return s, nil
}

// findBin finds the folder holding initdb and postgres: on PATH, or the newest under
// /usr/lib/postgresql (Debian keeps them off PATH).
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "postgres")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(found) == 0 {
		return "", fmt.Errorf("neither initdb on PATH nor /usr/lib/postgresql/*/bin/postgres")
	}
	sort.Slice(found, func(a, b int) bool { return versionOf(found[a]) < versionOf(found[b]) })
	return filepath.Dir(found[len(found)-1]), nil
}

func versionOf(p string) int {
	var v int
	fmt.Sscanf(filepath.Base(filepath.Dir(filepath.Dir(p))), "%d", &v)
	return v
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) initdb() error {
	cmd := exec.Command(filepath.Join(s.bin, "initdb"), "-D", filepath.Join(s.dir, "data"), "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
	s.asServerUser(cmd)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, out)
	}
	return nil
}

// Start starts the server (again, after Stop or Kill) on its port and waits until it answers.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return nil
	}
	logf, err := os.OpenFile(filepath.Join(s.dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", filepath.Join(s.dir, "data"),
		"-p", fmt.Sprint(s.port), "-k", "", "-c", "listen_addresses=127.0.0.1",
		"-c", "max_connections=200", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = logf, logf
	s.asServerUser(cmd)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start postgres: %w", err)
	}
	exit := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exit)
	}()
	s.proc, s.exit = cmd, exit
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, err := sql.Open("pgx", s.url("postgres"))
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err = db.PingContext(ctx)
			cancel()
			db.Close()
		}
		if err == nil {
			return nil
		}
		select {
		case <-exit:
			s.proc = nil
			return fmt.Errorf("postgres exited at start: %s", s.logTail())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres did not answer within 30 s: %v\n%s", err, s.logTail())
		}
	}
}

// Stop shuts the server down cleanly (SIGINT: fast shutdown, sessions cut) and waits.
func (s *Server) Stop() { s.signal(os.Interrupt) }

// Kill ends the server the way a crash or a pulled cable would look to its clients (SIGQUIT:
// immediate shutdown, no checkpoint) and waits.
func (s *Server) Kill() { s.signal(quitSignal) }

func (s *Server) signal(sig os.Signal) {
	s.mu.Lock()
	cmd, exit := s.proc, s.exit
	s.proc = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exit:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exit
	}
}

func (s *Server) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// NewDatabase creates an empty database and returns its URL.
func (s *Server) NewDatabase(t testing.TB) string {
	t.Helper()
	url, err := s.CreateDatabase()
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// CreateDatabase is NewDatabase for a caller without a testing.TB (the bench).
func (s *Server) CreateDatabase() (string, error) {
	s.mu.Lock()
	s.dbs++
	name := fmt.Sprintf("hub_%d", s.dbs)
	s.mu.Unlock()
	db, err := sql.Open("pgx", s.url("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.Exec(`CREATE DATABASE ` + name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return s.url(name), nil
}

// Port is the loopback port the server listens on.
func (s *Server) Port() int { return s.port }

// Log is what the server wrote to its log, for a failing test's message.
func (s *Server) Log() string { return s.logTail() }

func (s *Server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}
