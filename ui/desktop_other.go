//go:build !linux

// desktop_other.go: the desktop notifications on Windows and macOS, Fyne's, which carry no
// actions. It must not know which notices deserve one.

package ui

import (
	"log/slog"

	"fyne.io/fyne/v2"
)

func platformNotifier(a fyne.App, _ *slog.Logger, _ func(jobID, action string)) desktopNotifier {
	return fyneNotifier{app: a}
}
