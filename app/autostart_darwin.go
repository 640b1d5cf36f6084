// autostart_darwin.go: "Start with this computer" on macOS is the LaunchAgent of app/service,
// which runs in the user's session at login (autostart_unix.go).

package app

import "studioworker/app/service"

func newAutostarter(configPath string) autostarter {
	return userService{opts: service.Options{ConfigPath: configPath}}
}
