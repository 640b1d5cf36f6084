//go:build !windows && !linux && !darwin

// autostart_other.go: "Start with this computer" on the BSDs is the user service of app/service,
// as on macOS, for want of a desktop standard every one of them follows.

package app

import "studioworker/app/service"

func newAutostarter(configPath string) autostarter {
	return userService{opts: service.Options{ConfigPath: configPath}}
}
