//go:build linux

// desktop_linux_test.go: the D-Bus notifications on a session bus of the test's own, where a
// fake notification server stands in for the desktop's (which cannot run here): an offer's
// notification carries Accept and Open, says it comes from "Studio Worker", is withdrawn once
// answered, and a click on Accept comes back as the offer's accept (issue 18 finding 2).

package ui

import (
	"io"
	"log/slog"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
	"github.com/godbus/dbus/v5"

	"studioworker/app"
	"studioworker/internal/dbustest"
	"studioworker/protocol"
)

// fakeNotificationServer owns org.freedesktop.Notifications on the test's bus and records what
// it is asked, as a desktop's notification daemon would before it draws the bubble.
type fakeNotificationServer struct {
	conn    *dbus.Conn
	caps    []string
	mu      sync.Mutex
	next    uint32
	notes   []fakeNote
	closed  []uint32
	changed chan struct{}
}

type fakeNote struct {
	ID                 uint32
	App, Summary, Body string
	Actions            []string
	ExpireMS           int32
}

func (f *fakeNotificationServer) GetCapabilities() ([]string, *dbus.Error) { return f.caps, nil }

func (f *fakeNotificationServer) Notify(appName string, replaces uint32, icon, summary, body string,
	actions []string, hints map[string]dbus.Variant, expire int32) (uint32, *dbus.Error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next++
	f.notes = append(f.notes, fakeNote{ID: f.next, App: appName, Summary: summary, Body: body, Actions: actions, ExpireMS: expire})
	f.poke()
	return f.next, nil
}

func (f *fakeNotificationServer) CloseNotification(id uint32) *dbus.Error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = append(f.closed, id)
	f.poke()
	return nil
}

func (f *fakeNotificationServer) GetServerInformation() (string, string, string, string, *dbus.Error) {
	return "fake", "studio-worker tests", "1", "1.2", nil
}

func (f *fakeNotificationServer) poke() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

func (f *fakeNotificationServer) snapshot() ([]fakeNote, []uint32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.notes), slices.Clone(f.closed)
}

func startFakeNotificationServer(t *testing.T, busAddr string, caps []string) *fakeNotificationServer {
	t.Helper()
	conn, err := dbus.Connect(busAddr)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &fakeNotificationServer{conn: conn, caps: caps, changed: make(chan struct{}, 1)}
	if err := conn.Export(f, notifyPath, notifyIface); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName(notifyName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v %v", notifyName, reply, err)
	}
	return f
}

func waitNotes(t *testing.T, f *fakeNotificationServer, what string, cond func([]fakeNote, []uint32) bool) []fakeNote {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		notes, closed := f.snapshot()
		if cond(notes, closed) {
			return notes
		}
		select {
		case <-f.changed:
		case <-deadline:
			t.Fatalf("timed out waiting for %s: notes %+v, closed %v", what, notes, closed)
		}
	}
}

func TestOfferNotificationOverDBus(t *testing.T) {
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon is not installed (the dbus-daemon package; ./build.sh deps installs it with dbus-x11)")
	}
	tests := []struct {
		name    string
		caps    []string
		actions []string
	}{
		{"a desktop with actions", []string{"actions", "body"}, []string{actionAccept, "Accept", actionOpen, "Open Studio Worker"}},
		{"a desktop without actions", []string{"body"}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := dbustest.StartPrivateBus(t, daemon)
			t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus)
			f := startFakeNotificationServer(t, bus, tt.caps)
			type act struct{ job, action string }
			acts := make(chan act, 4)
			d, err := newDBusNotifier(test.NewTempApp(t), slog.New(slog.NewTextHandler(io.Discard, nil)),
				func(job, action string) { acts <- act{job, action} })
			if err != nil {
				t.Fatal(err)
			}
			defer d.close()

			o := app.PendingOffer{JobID: "job-9", Kind: protocol.KindImage, Model: "sdxl", VRAMGBEstimate: 6,
				ExpiresAt: t0.Add(95 * time.Second), WaitingForUser: true}
			d.offer(o, t0)
			notes := waitNotes(t, f, "the offer's notification", func(n []fakeNote, _ []uint32) bool { return len(n) == 1 })
			n := notes[0]
			if n.App != "Studio Worker" || n.Summary != "An offer waits for you" || !slices.Equal(n.Actions, tt.actions) {
				t.Errorf("notification %+v: want from Studio Worker with actions %q", n, tt.actions)
			}
			if n.ExpireMS != 95000 {
				t.Errorf("expires after %d ms, want the offer's 95000", n.ExpireMS)
			}
			if len(tt.actions) > 0 {
				// The creator clicks Accept: the server says so, as a desktop does.
				if err := f.conn.Emit(notifyPath, notifyIface+".ActionInvoked", n.ID, actionAccept); err != nil {
					t.Fatal(err)
				}
				select {
				case a := <-acts:
					if a != (act{"job-9", actionAccept}) {
						t.Errorf("action %+v, want accept of job-9", a)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("the Accept click did not come back")
				}
			}
			// Answered (in the tray, say): the notification is withdrawn.
			d.retract("job-9")
			waitNotes(t, f, "the notification to be withdrawn", func(_ []fakeNote, c []uint32) bool { return slices.Equal(c, []uint32{n.ID}) })

			// A plain notification comes from Studio Worker too, not studio.worker.app.
			d.send(fyne.NewNotification("A job failed", "llm: backend down"))
			notes = waitNotes(t, f, "the plain notification", func(n []fakeNote, _ []uint32) bool { return len(n) == 2 })
			if notes[1].App != "Studio Worker" || notes[1].Summary != "A job failed" {
				t.Errorf("plain notification %+v", notes[1])
			}
		})
	}
}
