// deadlines.go: gives every HTTP request's body and answer a deadline that moves with progress
// (issue 17: 1,000 registrations trickling their bodies were all still open after 40 s). A body
// must bring MinBodyRate × BodyWindow bytes in every BodyWindow, so a small body has one window
// to arrive whole and a big upload may take hours at a fair rate but not stall; every write of the
// answer must complete within WriteTimeout; a body that missed its deadline is answered 408. It
// must not know routes: a WebSocket upgrade is passed through as it is, since its session keeps
// its own time.

package hub

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// Defaults of Config's body and write deadlines.
const (
	DefaultBodyWindow   = 20 * time.Second
	DefaultMinBodyRate  = int64(16 << 10) // bytes a second: 320 KiB per default window
	DefaultWriteTimeout = 30 * time.Second
)

// errBodyTooSlow is what a handler reads from a body that fell below the rate.
var errBodyTooSlow = errors.New("the request body arrived too slowly")

// withDeadlines wraps next so that every request's body and answer have their deadlines.
func (h *Hub) withDeadlines(next http.Handler) http.Handler {
	window, rate, wt := h.cfg.BodyWindow, h.cfg.MinBodyRate, h.cfg.WriteTimeout
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			next.ServeHTTP(w, r) // the hijack clears deadlines; the session times its own reads
			return
		}
		rc := http.NewResponseController(w)
		dw := &deadlineWriter{ResponseWriter: w, rc: rc, timeout: wt, cut: func() { h.logCut(r, "answer", wt) }}
		if r.Body != nil && r.Body != http.NoBody {
			b := &rateBody{ReadCloser: r.Body, rc: rc, window: window, quota: max(1, int64(float64(rate)*window.Seconds())), rate: rate,
				cut: func() { h.logCut(r, "body", window) }}
			b.extend(time.Now())
			r.Body = b
			dw.body = b
		}
		next.ServeHTTP(dw, r)
	})
}

// logCut says that a deadline ended a request, at most one line per refusalLogEvery with how
// many it held back: a crowd of slow clients costs the log no more than one.
func (h *Hub) logCut(r *http.Request, what string, d time.Duration) {
	if ok, suppressed := h.slowLog.take(h.now()); ok {
		h.log.Warn("request cut off: the client stopped keeping up", "part", what, "deadline", d,
			"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "suppressed", suppressed)
	}
}

// rateBody moves the connection's read deadline a window ahead each time a window's quota of bytes
// has arrived, and clears it at the end of the body, when nothing is being waited for any more.
type rateBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	window time.Duration
	quota  int64 // bytes each window must bring
	rate   int64
	got    int64 // bytes since the deadline last moved
	cut    func()
	slow   bool // the body missed its deadline
}

func (b *rateBody) extend(now time.Time) {
	_ = b.rc.SetReadDeadline(now.Add(b.window)) // unsupported (a test recorder): no deadline
	b.got = 0
}

func (b *rateBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.got += int64(n)
	switch {
	case errors.Is(err, io.EOF):
		_ = b.rc.SetReadDeadline(time.Time{})
	case errors.Is(err, os.ErrDeadlineExceeded):
		if !b.slow {
			b.cut()
			b.slow = true
		}
		return n, fmt.Errorf("%w (less than %d bytes in %s, the least is %d B/s): %w", errBodyTooSlow, b.quota, b.window, b.rate, err)
	case b.got >= b.quota:
		b.extend(time.Now())
	}
	return n, err
}

// deadlineWriter gives each write of the answer its own deadline, so an answer of any size may
// stream to a client that reads it, and one that stops reading is cut off.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	cut     func() // called once, when a write missed its deadline
	body    *rateBody
}

// WriteHeader answers 408 for a request whose body missed its deadline, whatever the handler made
// of the part it got: the client may send it again, and a worker's upload answered 400 would
// otherwise become a failed job (PROTOCOL.md §10 (j)). Its own 413 and 5xx stand.
func (d *deadlineWriter) WriteHeader(code int) {
	if d.body != nil && d.body.slow && code < 500 && code != http.StatusRequestEntityTooLarge {
		code = http.StatusRequestTimeout
	}
	d.ResponseWriter.WriteHeader(code)
}

func (d *deadlineWriter) arm() { _ = d.rc.SetWriteDeadline(time.Now().Add(d.timeout)) }

func (d *deadlineWriter) missed(err error) error {
	if d.cut != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		d.cut()
		d.cut = nil
	}
	return err
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.arm()
	n, err := d.ResponseWriter.Write(p)
	return n, d.missed(err)
}

// writeChunk is how much of a file answer one deadline covers; the file still goes by sendfile.
const writeChunk = 1 << 20

// ReadFrom keeps the inner writer's sendfile path (http.ServeContent, io.Copy), a chunk per deadline.
func (d *deadlineWriter) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		d.arm()
		n, err := io.CopyN(d.ResponseWriter, r, writeChunk)
		total += n
		if errors.Is(err, io.EOF) {
			return total, nil
		}
		if err != nil {
			return total, d.missed(err)
		}
	}
}

func (d *deadlineWriter) Flush() {
	d.arm()
	_ = http.NewResponseController(d.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the connection's own writer.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }
