//go:build linux

// desktop_linux.go: the desktop notifications on Linux, sent over D-Bus to
// org.freedesktop.Notifications itself rather than through Fyne, for two things Fyne's do not
// do: actions (an offer's "Accept", a click that opens the window), and the app's name as the
// sender rather than its id. Where no notification server answers, Fyne's are used. It must not
// know which notices deserve a notification.

package ui

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"fyne.io/fyne/v2"
	"github.com/godbus/dbus/v5"

	"studioworker/app"
)

const (
	notifyName  = "org.freedesktop.Notifications"
	notifyPath  = dbus.ObjectPath("/org/freedesktop/Notifications")
	notifyIface = "org.freedesktop.Notifications"
	// notifyCallTimeout bounds one call to the notification server: a stuck one delays the next
	// notifications, never the window.
	notifyCallTimeout = 5 * time.Second
	// maxTrackedNotes bounds the notifications whose actions are remembered.
	maxTrackedNotes = 64
	// notifyQueue bounds the notifications waiting to be sent; past it they are dropped (and
	// logged): a notification server that does not keep up is not worth a backlog.
	notifyQueue = 16
)

// dbusNotifier owns a private session-bus connection and the goroutine that talks over it.
type dbusNotifier struct {
	conn     *dbus.Conn
	fallback fyneNotifier // where no notification server answers
	log      *slog.Logger
	onAction func(jobID, action string) // from the goroutine; the window hops to its UI thread
	reqs     chan notifyReq
	signals  chan *dbus.Signal
	quit     chan struct{}
	done     chan struct{}
}

// notifyReq is one thing for the goroutine to do: notify, or close an offer's notification.
type notifyReq struct {
	title, body string
	jobID       string // the offer it is about; "" = none
	expire      time.Duration
	retract     bool
}

func platformNotifier(a fyne.App, log *slog.Logger, onAction func(jobID, action string)) desktopNotifier {
	d, err := newDBusNotifier(a, log, onAction)
	if err != nil {
		log.Info("desktop notifications through Fyne, without actions", "err", err)
		return fyneNotifier{app: a}
	}
	return d
}

// newDBusNotifier connects on its own connection, so that closing it leaves the tray's alone.
func newDBusNotifier(a fyne.App, log *slog.Logger, onAction func(jobID, action string)) (*dbusNotifier, error) {
	conn, err := dbus.SessionBusPrivate()
	if err != nil {
		return nil, fmt.Errorf("session bus: %w", err)
	}
	if err := conn.Auth(nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("session bus: %w", err)
	}
	if err := conn.Hello(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("session bus: %w", err)
	}
	if err := conn.AddMatchSignal(dbus.WithMatchInterface(notifyIface), dbus.WithMatchObjectPath(notifyPath)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("watch the notification server: %w", err)
	}
	d := &dbusNotifier{conn: conn, fallback: fyneNotifier{app: a}, log: log, onAction: onAction,
		reqs: make(chan notifyReq, notifyQueue), signals: make(chan *dbus.Signal, 16),
		quit: make(chan struct{}), done: make(chan struct{})}
	conn.Signal(d.signals)
	go d.run()
	return d, nil
}

func (d *dbusNotifier) send(n *fyne.Notification) {
	d.queue(notifyReq{title: n.Title, body: n.Content})
}

func (d *dbusNotifier) offer(o app.PendingOffer, now time.Time) {
	title, body := offerWords(o, now)
	d.queue(notifyReq{title: title, body: body, jobID: o.JobID, expire: o.ExpiresAt.Sub(now)})
}

func (d *dbusNotifier) retract(jobID string) { d.queue(notifyReq{jobID: jobID, retract: true}) }

func (d *dbusNotifier) queue(r notifyReq) {
	select {
	case d.reqs <- r:
	default:
		d.log.Warn("desktop notification dropped: the notification server is not keeping up", "title", r.title)
	}
}

// close stops the goroutine and closes the connection; it waits at most one call's timeout.
func (d *dbusNotifier) close() {
	close(d.quit)
	<-d.done
	d.conn.RemoveSignal(d.signals)
	d.conn.Close()
}

// run is the one goroutine that talks to the notification server.
func (d *dbusNotifier) run() {
	defer close(d.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	obj := d.conn.Object(notifyName, notifyPath)
	call := func(method string, out any, args ...any) error {
		cctx, ccancel := context.WithTimeout(ctx, notifyCallTimeout)
		defer ccancel()
		c := obj.CallWithContext(cctx, notifyIface+"."+method, 0, args...)
		if out == nil || c.Err != nil {
			return c.Err
		}
		return c.Store(out)
	}
	var caps []string
	server := true
	if err := call("GetCapabilities", &caps); err != nil {
		server = false
		d.log.Info("no desktop notification server answers on the session bus: Fyne's notifications instead", "err", err)
	}
	actions := slices.Contains(caps, "actions")

	offerOf := map[uint32]string{} // notification id → the offer it is about ("" = none)
	noteOf := map[string]uint32{}  // offer → its notification
	forget := func(id uint32) {
		if job, ok := offerOf[id]; ok {
			delete(offerOf, id)
			if noteOf[job] == id {
				delete(noteOf, job)
			}
		}
	}
	for {
		select {
		case <-d.quit:
			return
		case r := <-d.reqs:
			if !server {
				if !r.retract {
					body := r.body
					if r.jobID != "" {
						body += answerElsewhere
					}
					d.fallback.send(fyne.NewNotification(r.title, body))
				}
				continue
			}
			if r.retract {
				if id, ok := noteOf[r.jobID]; ok {
					if err := call("CloseNotification", nil, id); err != nil {
						d.log.Debug("close a notification", "err", err)
					}
					forget(id)
				}
				continue
			}
			acts, body := []string{}, r.body
			if actions {
				acts = []string{actionOpen, "Open Studio Worker"}
			}
			expire := int32(-1) // the server's default
			if r.jobID != "" {
				if actions {
					acts = []string{actionAccept, "Accept", actionOpen, "Open Studio Worker"}
					body += acceptHere
				} else {
					body += answerElsewhere
				}
				if r.expire > 0 {
					expire = int32(min(r.expire, time.Hour).Milliseconds()) // gone when the offer is
				}
			}
			var id uint32
			hints := map[string]dbus.Variant{"urgency": dbus.MakeVariant(byte(1))}
			if err := call("Notify", &id, appName, uint32(0), "", r.title, body, acts, hints, expire); err != nil {
				d.log.Warn("desktop notification not shown", "title", r.title, "err", err)
				continue
			}
			if len(offerOf) >= maxTrackedNotes {
				for old := range offerOf { // any one: the oldest are long closed by the desktop
					forget(old)
					break
				}
			}
			offerOf[id] = r.jobID
			if r.jobID != "" {
				noteOf[r.jobID] = id
			}
		case s, ok := <-d.signals:
			if !ok {
				return
			}
			switch s.Name {
			case notifyIface + ".ActionInvoked":
				var id uint32
				var key string
				if dbus.Store(s.Body, &id, &key) != nil {
					continue
				}
				job, ours := offerOf[id]
				if ours {
					d.onAction(job, key)
				}
			case notifyIface + ".NotificationClosed":
				if len(s.Body) > 0 {
					if id, ok := s.Body[0].(uint32); ok {
						forget(id)
					}
				}
			}
		}
	}
}
