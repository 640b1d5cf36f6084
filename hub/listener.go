// listener.go caps the hub's open connections: past the cap a new connection is closed at once,
// with a log line a minute that says so, instead of the process running out of file descriptors
// (issue 17: 20,400 idle keep-alive connections stopped /healthz and the job API, token or not).
// It must not know HTTP: it counts TCP connections.

package hub

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxConns leaves room for 10,000 connected workers and their uploads; the process's
// open-file limit must be above it (ulimit -n).
const DefaultMaxConns = 16384

// LimitListener returns ln with at most max connections open at once.
func LimitListener(ln net.Listener, max int, log *slog.Logger) net.Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &limitListener{Listener: ln, max: int64(max), log: log}
}

type limitListener struct {
	net.Listener
	max    int64
	open   atomic.Int64
	log    *slog.Logger
	mu     sync.Mutex
	logged time.Time
	turned int // connections turned away since the last log line
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		c.Close()
		l.turnedAway()
	}
}

func (l *limitListener) turnedAway() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.turned++
	if now := time.Now(); now.Sub(l.logged) >= time.Minute {
		l.log.Warn("connection cap reached: new connections are closed until some end (raise --max-conns and ulimit -n if this is real load)",
			"max_conns", l.max, "turned_away", l.turned)
		l.logged, l.turned = now, 0
	}
}

// countedConn gives its slot back once, however often it is closed.
type countedConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *countedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}
