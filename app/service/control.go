// control.go: installing, removing, starting, stopping and asking after the service (Control),
// each answer a sentence for the user; refusing sudo, which would put a user service in root's
// session, and telling a missing systemd user manager from a missing unit. What the service runs
// is service.go's; the file texts it compares are render.go's.

package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	kardianos "github.com/kardianos/service"
)

// UnitFile is where kardianos writes the user service file on goos ("" on Windows, where the
// service lives in the service manager's database), and what to call it in a sentence.
func UnitFile(goos string) (path, what string, err error) {
	switch goos {
	case "linux":
		home, err := os.UserHomeDir()
		if err != nil {
			return "", "", fmt.Errorf("service: %w", err)
		}
		return filepath.Join(home, ".config", "systemd", "user", Name+".service"), "systemd user unit", nil
	case "darwin":
		return launchdHome() + "/Library/LaunchAgents/" + Name + ".plist", "LaunchAgent", nil
	}
	return "", "Windows service", nil
}

// refuseSudo is nil unless this process runs as root through sudo on Linux or macOS, where a
// user service would land in root's session instead of the user's.
func refuseSudo() error {
	return refuseSudoFor(runtime.GOOS, os.Geteuid(), os.Getenv("SUDO_USER"))
}

func refuseSudoFor(goos string, euid int, sudoUser string) error {
	if (goos != "linux" && goos != "darwin") || euid != 0 || sudoUser == "" {
		return nil
	}
	return fmt.Errorf("%w: it would belong to root, not to %s, and it needs no sudo: run the command again as %s, without sudo",
		ErrUnderSudo, sudoUser, sudoUser)
}

// checkUserBus asks systemctl --user for something harmless: kardianos cannot tell a missing
// user manager from a missing unit (it reports "not installed"), and it drops systemctl's stderr.
func checkUserBus() error {
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "systemctl", "--user", "show-environment")
	cmd.Stderr = &stderr
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, exec.ErrNotFound):
		return fmt.Errorf("%w: systemctl is not installed (a user service needs systemd)", ErrNoUserSession)
	}
	why := strings.TrimSpace(stderr.String())
	if why == "" {
		why = err.Error()
	}
	return fmt.Errorf("%w: %s", ErrNoUserSession, why)
}

// Control runs one of install, uninstall, start, stop and status, and says what it did or
// found in a sentence for the user. install writes the service file and enables it; the worker
// starts at the next login (start starts it now).
func Control(opts Options, action string) (string, error) {
	switch action {
	case "install", "uninstall", "start", "stop", "status":
	default:
		return "", fmt.Errorf("service: unknown action %q (want install, uninstall, start, stop or status)", action)
	}
	if err := refuseSudo(); err != nil {
		return "", err
	}
	s, err := serviceFor(opts)
	if err != nil {
		return "", err
	}
	file, what, err := UnitFile(runtime.GOOS)
	if err != nil {
		return "", err
	}
	installed := true
	if file != "" {
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			installed = false
		} else if err != nil {
			return "", fmt.Errorf("service: %w", err)
		}
	} else if _, err := s.Status(); errors.Is(err, kardianos.ErrNotInstalled) {
		installed = false
	}
	where := what + " " + Name
	if file != "" {
		where = what + " " + Tilde(file)
	}
	when := "when you log in"
	if file == "" {
		when = "with the computer"
	}
	notInstalled := fmt.Errorf("service: %w: run \"studio-worker service install\" first", kardianos.ErrNotInstalled)

	// Without a unit file there is nothing to ask systemd about, so "status" and "uninstall" say
	// "Not installed" even where systemctl --user does not work.
	if !installed && file != "" {
		switch action {
		case "status":
			return "Not installed", nil
		case "uninstall":
			return "Not installed: nothing to remove", nil
		case "start", "stop":
			return "", notInstalled
		}
	}
	if runtime.GOOS == "linux" {
		if err := checkUserBus(); err != nil {
			return "", fmt.Errorf("service: %w", err)
		}
	}

	switch action {
	case "install":
		return install(s, opts, file, where, when, installed)
	case "uninstall":
		if !installed {
			return "Not installed: nothing to remove", nil
		}
		// kardianos' systemd Uninstall disables and deletes the unit but leaves it running.
		if runtime.GOOS == "linux" {
			if err := s.Stop(); err != nil {
				return "", fmt.Errorf("service: stop the %s before removing it: %w", where, err)
			}
		}
		if err := s.Uninstall(); err != nil {
			return "", fmt.Errorf("service: uninstall the %s: %w", where, err)
		}
		if file != "" {
			return "Uninstalled: removed " + Tilde(file), nil
		}
		return "Uninstalled", nil
	case "start":
		if !installed {
			return "", notInstalled
		}
		if err := s.Start(); err != nil {
			return "", fmt.Errorf("service: start the %s: %w", where, err)
		}
		return "Started", nil
	case "stop":
		if !installed {
			return "", notInstalled
		}
		if err := s.Stop(); err != nil {
			return "", fmt.Errorf("service: stop the %s: %w", where, err)
		}
		return "Stopped", nil
	}
	st, err := s.Status()
	switch {
	case errors.Is(err, kardianos.ErrNotInstalled):
		return "Not installed", nil
	// kardianos has no error value for this one; systemd says "failed" and will not restart it.
	case err != nil && strings.Contains(err.Error(), "failed state"):
		return "Failed: it stopped with an error and is not restarting; see journalctl --user -u " + Name, nil
	case err != nil:
		return "", fmt.Errorf("service: status of the %s: %w", where, err)
	case st == kardianos.StatusRunning:
		return "Running", nil
	case st == kardianos.StatusStopped:
		return "Stopped: installed, starts " + when, nil
	}
	return "Unknown", nil
}

func install(s kardianos.Service, opts Options, file, where, when string, installed bool) (string, error) {
	if _, err := os.Stat(opts.ConfigPath); err != nil {
		return "", fmt.Errorf("service: the service would run with %s: %w", opts.ConfigPath, err)
	}
	done := "Installed: starts " + when + " (" + where + ")"
	if installed {
		if file == "" {
			return "Already installed: starts " + when + " (" + where + ")", nil
		}
		render := renderUnit
		if runtime.GOOS == "darwin" {
			render = renderLaunchAgent
		}
		want, err := render(opts)
		if err != nil {
			return "", err
		}
		have, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("service: %w", err)
		}
		if string(have) != want {
			return "", fmt.Errorf("service: a different %s is installed (another program or config file): run \"studio-worker service uninstall\" first", where)
		}
		return "Already installed: starts " + when + " (" + where + ")", nil
	}
	if err := s.Install(); err != nil {
		// kardianos writes the file before it enables it: take a half-done install back, or the
		// next attempt would find it and refuse.
		if file != "" {
			if rmErr := os.Remove(file); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
				err = errors.Join(err, rmErr)
			}
		}
		return "", fmt.Errorf("service: install the %s: %w", where, err)
	}
	return done, nil
}

// Tilde shortens a path under the home directory to ~/….
func Tilde(p string) string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return p
	}
	if rel, err := filepath.Rel(home, p); err == nil && !strings.HasPrefix(rel, "..") && rel != "." {
		return "~" + string(filepath.Separator) + rel
	}
	return p
}
