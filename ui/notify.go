// notify.go: which notices become desktop notifications (sign-in needed, yielding, a backend down
// or back, failed jobs at most once a minute). How they reach the desktop is desktop*.go's.

package ui

import (
	"fmt"
	"time"

	"fyne.io/fyne/v2"

	"studioworker/app"
	"studioworker/protocol"
)

// failureNoticeEvery is how often at most a failed job raises a desktop notification: a backend
// that is down fails every job, and one notification a minute says so without flooding the desktop.
const failureNoticeEvery = time.Minute

// rateLimiter lets one event through per interval. It reads no clock: the caller passes the time,
// so it is tested without waiting.
type rateLimiter struct {
	every time.Duration
	last  time.Time
	used  bool
}

// allow reports whether an event at now may pass, and counts it when it does.
func (r *rateLimiter) allow(now time.Time) bool {
	if r.used && now.Sub(r.last) < r.every {
		return false
	}
	r.used, r.last = true, now
	return true
}

// notifier decides which notices become desktop notifications.
type notifier struct {
	failures rateLimiter
	held     int // failures not notified since the last failure notification
}

func newNotifier() *notifier {
	return &notifier{failures: rateLimiter{every: failureNoticeEvery}}
}

// notificationFor returns the desktop notification for a notice, or nil when it raises none.
func (n *notifier) notificationFor(no app.Notice, now time.Time) *fyne.Notification {
	switch no.Kind {
	case app.NoticeAuthFailed:
		return fyne.NewNotification("Studio Worker: sign-in needed",
			orDefault(no.Text, "The Studio rejected this worker's credentials — register again in Settings."))
	case app.NoticeYield:
		if no.State == protocol.StateYielding {
			return fyne.NewNotification("Studio Worker stepped aside", orDefault(no.Text, "Paused while your programs use the GPU — resumes by itself."))
		}
		return fyne.NewNotification("Studio Worker is back", orDefault(no.Text, "The GPU is free again: taking jobs."))
	case app.NoticeBackend:
		title := "A backend answers again"
		if no.Level == protocol.LevelWarn {
			title = "A backend stopped answering"
		}
		return fyne.NewNotification(title, no.Text)
	case app.NoticeJobFinished:
		if no.Job == nil || no.Job.Status != "failed" {
			return nil
		}
		if !n.failures.allow(now) {
			n.held++
			return nil
		}
		body := jobLabel(no.Job.Kind, no.Job.Model)
		if no.Job.Error != "" {
			body += ": " + no.Job.Error
		}
		if n.held > 0 {
			body += fmt.Sprintf(" (and %d more failed since the last notice)", n.held)
			n.held = 0
		}
		return fyne.NewNotification("A job failed", body)
	}
	return nil
}
