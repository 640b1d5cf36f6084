// desktop.go: how the window's notifications reach the desktop. An offer that waits for the
// creator gets a notification that can accept it or open the window where the desktop supports
// actions (desktop_linux.go, over D-Bus); elsewhere, and where that is not there, Fyne's plain
// notification says how to answer. It must not know which notices deserve a notification:
// notify.go decides.

package ui

import (
	"fmt"
	"time"

	"fyne.io/fyne/v2"

	"studioworker/app"
)

// Actions a notification can carry, as the desktop reports them back.
const (
	actionAccept = "accept"  // accept the offer
	actionOpen   = "default" // the notification itself was clicked: open the window
)

// desktopNotifier sends notifications. Its methods are called on the UI thread and must not
// block it.
type desktopNotifier interface {
	send(n *fyne.Notification)
	// offer notifies of an offer that waits for the creator.
	offer(o app.PendingOffer, now time.Time)
	// retract withdraws an offer's notification once the offer is answered or gone.
	retract(jobID string)
	close()
}

// answerElsewhere ends an offer's notification that has no buttons; acceptHere one that has.
const (
	answerElsewhere = " Accept or decline it in the tray menu or the window."
	acceptHere      = " Accept it here, or open Studio Worker to decide."
)

// offerWords is an offer notification's title and body.
func offerWords(o app.PendingOffer, now time.Time) (string, string) {
	return "An offer waits for you", fmt.Sprintf("%s · %s — %s.", jobLabel(o.Kind, o.Model),
		vramNeed(o.VRAMGBEstimate), trayCountdown(o.ExpiresAt, now))
}

// fyneNotifier is Fyne's notification: no actions, so an offer's says where to answer.
type fyneNotifier struct{ app fyne.App }

func (f fyneNotifier) send(n *fyne.Notification) { f.app.SendNotification(n) }

func (f fyneNotifier) offer(o app.PendingOffer, now time.Time) {
	title, body := offerWords(o, now)
	f.app.SendNotification(fyne.NewNotification(title, body+answerElsewhere))
}

func (fyneNotifier) retract(string) {}
func (fyneNotifier) close()         {}
