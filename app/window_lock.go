// window_lock.go: one window per user and config folder. The first window claims a small endpoint
// beside the control endpoint; a second launch finds it, asks the first to show its window
// ("raise") and leaves. How the endpoint is taken on each OS is window_lock_unix.go's and
// window_lock_windows.go's; this file must not know what the window draws or what the worker does.

package app

import (
	"bufio"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// ErrWindowOpen: another Studio Worker window is already open for this configuration; it was
// asked to show itself.
var ErrWindowOpen = errors.New("the Studio Worker window is already open")

// errWindowTaken (from listenWindow): something holds the window endpoint; whether it lives is
// for the caller to find out.
var errWindowTaken = errors.New("the window endpoint is taken")

// windowExchangeTimeout bounds one raise, both ways: a window that does not answer in it is not
// there any more (or is stuck, and a second one will not help).
const windowExchangeTimeout = 2 * time.Second

// WindowLock is the claim of the one window of a config folder, held by that window until Close.
// Its owner is the window command: Close stops the goroutine that answers raises.
type WindowLock struct {
	ln      net.Listener
	token   string
	release func() // the OS's cleanup after the listener is closed (the endpoint file on Windows)
	raise   chan struct{}
	done    chan struct{}
}

// ClaimWindow claims the window of the config file at configPath. When another window holds it,
// that window is asked to show itself and ClaimWindow returns ErrWindowOpen. An endpoint left by
// a window that crashed answers nothing and is taken over.
func ClaimWindow(configPath string) (*WindowLock, error) {
	for attempt := 0; ; attempt++ {
		ln, token, release, err := listenWindow(configPath)
		if err == nil {
			l := &WindowLock{ln: ln, token: token, release: release, raise: make(chan struct{}, 1), done: make(chan struct{})}
			go l.serve()
			return l, nil
		}
		if !errors.Is(err, errWindowTaken) || attempt > 0 {
			return nil, fmt.Errorf("window lock: %w", err)
		}
		addr, err := locateWindow(configPath)
		if err == nil {
			conn, derr := dialTimeout(addr, windowExchangeTimeout)
			if derr == nil {
				// Something lives there. Whether or not it answers as it should, a second
				// window would be one too many; one that does not show itself is said.
				if err := askRaise(conn, addr.token); err != nil {
					return nil, fmt.Errorf("%w, but it did not show itself: %w", ErrWindowOpen, err)
				}
				return nil, ErrWindowOpen
			}
		}
		if err := clearWindow(configPath); err != nil {
			return nil, fmt.Errorf("window lock: remove what a closed window left: %w", err)
		}
	}
}

func dialTimeout(a controlAddr, d time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return a.dial(ctx)
}

// askRaise sends "raise" on conn and waits for "ok"; it closes conn.
func askRaise(conn net.Conn, token string) error {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(windowExchangeTimeout))
	line := "raise"
	if token != "" {
		line += " " + token
	}
	if _, err := io.WriteString(conn, line+"\n"); err != nil {
		return fmt.Errorf("ask the open window to show itself: %w", err)
	}
	answer, err := bufio.NewReader(io.LimitReader(conn, 64)).ReadString('\n')
	if err != nil {
		return fmt.Errorf("the open window did not answer: %w", err)
	}
	if strings.TrimSpace(answer) != "ok" {
		return fmt.Errorf("the open window answered %q", strings.TrimSpace(answer))
	}
	return nil
}

// Raise delivers one value each time another launch asks this window to show itself; a raise
// asked while one is still unread is merged into it. It is never closed: stop reading it when the
// window closes.
func (l *WindowLock) Raise() <-chan struct{} { return l.raise }

// Close gives the claim back and stops answering; it waits for the answering goroutine.
func (l *WindowLock) Close() error {
	err := l.ln.Close()
	<-l.done
	if l.release != nil {
		l.release()
	}
	return err
}

// serve answers raises, one connection at a time, until the listener is closed.
func (l *WindowLock) serve() {
	defer close(l.done)
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		l.answer(conn)
	}
}

// answer reads one request; "raise" (with this lock's token where it has one) is passed on to
// the window and answered "ok".
func (l *WindowLock) answer(conn net.Conn) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(windowExchangeTimeout))
	line, err := bufio.NewReader(io.LimitReader(conn, 256)).ReadString('\n')
	if err != nil {
		return
	}
	verb, token, _ := strings.Cut(strings.TrimSpace(line), " ")
	if verb != "raise" || subtle.ConstantTimeCompare([]byte(token), []byte(l.token)) != 1 {
		_, _ = io.WriteString(conn, "refused\n")
		return
	}
	select {
	case l.raise <- struct{}{}:
	default: // one is waiting to be read already
	}
	_, _ = io.WriteString(conn, "ok\n")
}
