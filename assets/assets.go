// Package assets embeds the application's icons: the app icon and one tray icon per worker state.
// It holds bytes only; it must not know about Fyne, the tray or the worker's state machine
// (ui/ maps states to icons).
package assets

import (
	"embed"
	"fmt"
)

//go:embed icon.png icons/*.png
var files embed.FS

// Tray icon names, one per state the tray shows.
const (
	IconIdle     = "idle"
	IconBusy     = "busy"
	IconPaused   = "paused"
	IconYielding = "yielding"
	IconOffline  = "offline"
	IconError    = "error"
)

// StateIcons lists every tray icon name.
func StateIcons() []string {
	return []string{IconIdle, IconBusy, IconPaused, IconYielding, IconOffline, IconError}
}

// AppIcon returns the 512 px application icon (PNG).
func AppIcon() []byte {
	b, err := files.ReadFile("icon.png")
	if err != nil {
		panic(fmt.Sprintf("assets: embedded icon.png missing: %v", err)) // a build without it is broken
	}
	return b
}

// StateIcon returns the 64 px PNG tray icon for a state name from StateIcons.
func StateIcon(name string) ([]byte, error) {
	b, err := files.ReadFile("icons/" + name + ".png")
	if err != nil {
		return nil, fmt.Errorf("assets: no tray icon %q: %w", name, err)
	}
	return b, nil
}
