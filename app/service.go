package app

import (
	"bytes"
	"context"
	_ "embed" // the unit and plist templates
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kardianos/service"
)

// The service runs "studio-worker run --config <file>" in the user's own session: a systemd user
// unit on Linux, a LaunchAgent on macOS (both started at login, restarted only after a failure,
// never needing sudo), and a Windows service elsewhere. kardianos/service does the installing;
// the templates are ours because its own start the worker at boot (multi-user.target, which a
// user manager never reaches) and relaunch it after the user quits (Restart=always, KeepAlive).

const (
	svcName        = "studio-worker"
	svcDisplayName = "Studio Worker"
	svcDescription = "Studio Worker: lends this computer's GPU to a Studio"
	// svcSystemdName is how kardianos names its systemd system (service_linux.go).
	svcSystemdName = "linux-systemd"
	// svcWindowsFlag tells `run` that the Windows service manager started it.
	svcWindowsFlag = "windows-service"
	// svcCommandTimeout bounds the systemctl probe we run ourselves.
	svcCommandTimeout = 10 * time.Second
)

//go:embed templates/studio-worker.service
var svcSystemdTemplate string

//go:embed templates/studio-worker.plist
var svcLaunchdTemplate string

var (
	// ErrServiceUnderSudo: a user service belongs to the user's own session, which sudo leaves.
	ErrServiceUnderSudo = errors.New("a user service cannot be installed or controlled as root through sudo")
	// ErrNoUserSession: systemctl --user cannot reach the user's service manager.
	ErrNoUserSession = errors.New("systemctl --user is not available: no user session bus (are you in a container or over sudo?)")
)

// ServiceOptions say what the service runs.
type ServiceOptions struct {
	ConfigPath string // the config file the service passes to "run --config"; made absolute
	Executable string // the studio-worker binary; "" means this one (os.Executable)
}

// svcProgram is the service.Interface kardianos asks for. Installing and controlling a service
// never calls it: the service manager starts "studio-worker run", and that command runs the worker.
type svcProgram struct{}

func (svcProgram) Start(service.Service) error { return nil }
func (svcProgram) Stop(service.Service) error  { return nil }

// NewService returns the kardianos service for opts. On Linux it is always kardianos' systemd
// system, whatever it detects: a user service needs systemd, and a container or a machine booted
// without it gets a clear error from ServiceControl instead of a SysV script in /etc/init.d.
func NewService(opts ServiceOptions) (service.Service, error) {
	exe, args, err := svcCommand(opts, runtime.GOOS)
	if err != nil {
		return nil, err
	}
	return svcNewService(svcConfig(exe, args))
}

// svcNewService picks the system: on Linux kardianos' systemd, whatever it detects.
func svcNewService(c *service.Config) (service.Service, error) {
	if runtime.GOOS != "linux" {
		s, err := service.New(svcProgram{}, c)
		if err != nil {
			return nil, fmt.Errorf("service: %w", err)
		}
		return s, nil
	}
	for _, sys := range service.AvailableSystems() {
		if sys.String() == svcSystemdName {
			s, err := sys.New(svcProgram{}, c)
			if err != nil {
				return nil, fmt.Errorf("service: %w", err)
			}
			return s, nil
		}
	}
	return nil, fmt.Errorf("service: kardianos/service offers no %s system", svcSystemdName)
}

func svcConfig(exe string, args []string) *service.Config {
	return &service.Config{
		Name:        svcName,
		DisplayName: svcDisplayName,
		Description: svcDescription,
		Executable:  exe,
		Arguments:   args,
		Option: service.KeyValue{
			"UserService":   true, // ignored on Windows
			"SystemdScript": svcSystemdTemplate,
			"LaunchdConfig": svcLaunchdTemplate,
			"RunAtLoad":     true,
			// Our plist writes its own KeepAlive dict; false keeps kardianos' {{KeepAlive}} from
			// ever meaning "always".
			"KeepAlive": false,
			// Windows: start with the computer, restart 10 s after a failure. No delayed start: the
			// worker reconnects with backoff until the network is up anyway, and Wine 8's service
			// manager refuses SERVICE_CONFIG_DELAYED_AUTO_START_INFO ("Invalid level"), which made
			// the whole install fail there.
			"StartType":              "automatic",
			"OnFailure":              "restart",
			"OnFailureDelayDuration": "10s",
			"OnFailureResetPeriod":   24 * 60 * 60,
		},
	}
}

// svcCommand resolves the executable and the arguments of "run --config <file>" as the service
// file for goos will carry them. On Linux they are escaped for systemd, which expands % and $ and
// unescapes backslashes in a unit; kardianos only quotes.
func svcCommand(opts ServiceOptions, goos string) (exe string, args []string, err error) {
	if opts.ConfigPath == "" {
		return "", nil, errors.New("service: the config file path is empty")
	}
	cfg, err := filepath.Abs(opts.ConfigPath)
	if err != nil {
		return "", nil, fmt.Errorf("service: config path: %w", err)
	}
	exe = opts.Executable
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return "", nil, fmt.Errorf("service: find this program: %w", err)
		}
	}
	if exe, err = filepath.Abs(exe); err != nil {
		return "", nil, fmt.Errorf("service: executable path: %w", err)
	}
	switch goos {
	case "windows":
		// Said outright: the service manager's session-0 check (service.Interactive) does not
		// hold under Wine, whose services run in the user's session.
		return exe, []string{"run", "--config", cfg, "--" + svcWindowsFlag}, nil
	case "linux":
	default:
		return exe, []string{"run", "--config", cfg}, nil
	}
	if exe, err = svcSystemdExe(exe); err != nil {
		return "", nil, err
	}
	if cfg, err = svcSystemdArg(cfg); err != nil {
		return "", nil, err
	}
	return exe, []string{"run", "--config", cfg}, nil
}

// svcSystemdExe escapes the executable path, which kardianos writes unquoted (spaces as \x20).
// Characters that systemd would read as quoting, escaping or a variable are refused.
func svcSystemdExe(p string) (string, error) {
	if i := strings.IndexFunc(p, func(r rune) bool {
		return r < 0x20 || r == 0x7f || strings.ContainsRune(`\"'$`, r)
	}); i >= 0 {
		return "", fmt.Errorf("service: the program path %q has %q, which a systemd unit cannot carry unquoted: move the program", p, p[i])
	}
	return strings.ReplaceAll(p, "%", "%%"), nil
}

// svcSystemdArg escapes an argument that kardianos writes between double quotes (escaping only
// the double quotes).
func svcSystemdArg(a string) (string, error) {
	if strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("service: %q has a control character, which a systemd unit cannot carry", a)
	}
	return strings.NewReplacer(`\`, `\\`, "%", "%%", "$", "$$").Replace(a), nil
}

// RenderServiceUnit returns the systemd user unit exactly as kardianos' Install writes it: our
// template, the data map it builds from our Config (service_systemd_linux.go), the same engine and
// functions.
func RenderServiceUnit(opts ServiceOptions) (string, error) {
	exe, args, err := svcCommand(opts, "linux")
	if err != nil {
		return "", err
	}
	c := svcConfig(exe, args)
	data, err := svcSystemdData(c)
	if err != nil {
		return "", err
	}
	out, err := svcRenderTemplate(svcSystemdTemplate, data, svcSystemdFuncs())
	if err != nil {
		return "", fmt.Errorf("service: render the systemd unit: %w", err)
	}
	return out, nil
}

// svcSystemdData is the data map kardianos' systemd Install renders c's template with.
func svcSystemdData(c *service.Config) (map[string]any, error) {
	exe, err := filepath.Abs(c.Executable) // kardianos' execPath
	if err != nil {
		return nil, fmt.Errorf("service: executable path: %w", err)
	}
	return map[string]any{
		"Description":       c.Description,
		"Path":              exe,
		"Name":              c.Name,
		"Dependencies":      c.Dependencies,
		"Arguments":         c.Arguments,
		"ChRoot":            c.ChRoot,
		"WorkingDirectory":  c.WorkingDirectory,
		"UserName":          c.UserName,
		"ReloadSignal":      "",
		"PIDFile":           "",
		"LogDirectory":      "/var/log",
		"OutputFileSupport": "", // LogOutput is off
		"LimitNOFILE":       "",
		"Restart":           "always",
		"SuccessExitStatus": "",
		"EnvVars":           []string(nil),
	}, nil
}

// svcSystemdFuncs are kardianos' pipeline functions for systemd units (service_linux.go).
func svcSystemdFuncs() map[string]func(string) string {
	return map[string]func(string) string{
		"cmd":       func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` },
		"cmdEscape": func(s string) string { return strings.ReplaceAll(s, " ", `\x20`) },
	}
}

// RenderLaunchAgent returns the LaunchAgent plist exactly as kardianos' Install writes it
// (service_darwin.go).
func RenderLaunchAgent(opts ServiceOptions) (string, error) {
	exe, args, err := svcCommand(opts, "darwin")
	if err != nil {
		return "", err
	}
	c := svcConfig(exe, args)
	home := svcLaunchdHome()
	tf := func(v bool) string {
		if v {
			return "true"
		}
		return "false"
	}
	data := map[string]any{
		"Name":              c.Name,
		"Path":              exe,
		"Arguments":         c.Arguments,
		"ChRoot":            c.ChRoot,
		"UserName":          c.UserName,
		"WorkingDirectory":  c.WorkingDirectory,
		"KeepAlive":         tf(c.Option["KeepAlive"] == true),
		"RunAtLoad":         tf(c.Option["RunAtLoad"] == true),
		"SessionCreate":     "false",
		"StandardOutPath":   home + "/" + c.Name + ".out.log",
		"StandardErrorPath": home + "/" + c.Name + ".err.log",
		"EnvVars":           []string(nil),
	}
	escaper := strings.NewReplacer(`&`, "&amp;", `'`, "&#39;", `<`, "&lt;", `>`, "&gt;", `"`, "&#34;")
	out, err := svcRenderTemplate(svcLaunchdTemplate, data, map[string]func(string) string{
		"html": escaper.Replace,
	})
	if err != nil {
		return "", fmt.Errorf("service: render the LaunchAgent: %w", err)
	}
	return out, nil
}

// svcLaunchdHome is the home directory as kardianos finds it on macOS: the account's, then $HOME.
func svcLaunchdHome() string {
	if u, err := user.Current(); err == nil {
		return u.HomeDir
	}
	return os.Getenv("HOME")
}

// svcUnitFile is where kardianos writes the user service file on goos ("" on Windows, where the
// service lives in the service manager's database), and what to call it in a sentence.
func svcUnitFile(goos string) (path, what string, err error) {
	switch goos {
	case "linux":
		home, err := os.UserHomeDir()
		if err != nil {
			return "", "", fmt.Errorf("service: %w", err)
		}
		return filepath.Join(home, ".config", "systemd", "user", svcName+".service"), "systemd user unit", nil
	case "darwin":
		return svcLaunchdHome() + "/Library/LaunchAgents/" + svcName + ".plist", "LaunchAgent", nil
	}
	return "", "Windows service", nil
}

// svcRefuseSudo is nil unless this process runs as root through sudo on Linux or macOS, where a
// user service would land in root's session instead of the user's.
func svcRefuseSudo() error {
	return svcRefuseSudoFor(runtime.GOOS, os.Geteuid(), os.Getenv("SUDO_USER"))
}

func svcRefuseSudoFor(goos string, euid int, sudoUser string) error {
	if (goos != "linux" && goos != "darwin") || euid != 0 || sudoUser == "" {
		return nil
	}
	return fmt.Errorf("%w: it would belong to root, not to %s, and it needs no sudo: run the command again as %s, without sudo",
		ErrServiceUnderSudo, sudoUser, sudoUser)
}

// svcCheckUserBus asks systemctl --user for something harmless: kardianos cannot tell a missing
// user manager from a missing unit (it reports "not installed"), and it drops systemctl's stderr.
func svcCheckUserBus() error {
	ctx, cancel := context.WithTimeout(context.Background(), svcCommandTimeout)
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

// ServiceControl runs one of install, uninstall, start, stop and status, and says what it did or
// found in a sentence for the user. install writes the service file and enables it; the worker
// starts at the next login (start starts it now).
func ServiceControl(opts ServiceOptions, action string) (string, error) {
	switch action {
	case "install", "uninstall", "start", "stop", "status":
	default:
		return "", fmt.Errorf("service: unknown action %q (want install, uninstall, start, stop or status)", action)
	}
	if err := svcRefuseSudo(); err != nil {
		return "", err
	}
	s, err := NewService(opts)
	if err != nil {
		return "", err
	}
	file, what, err := svcUnitFile(runtime.GOOS)
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
	} else if _, err := s.Status(); errors.Is(err, service.ErrNotInstalled) {
		installed = false
	}
	where := what + " " + svcName
	if file != "" {
		where = what + " " + svcTilde(file)
	}
	when := "when you log in"
	if file == "" {
		when = "with the computer"
	}
	notInstalled := fmt.Errorf("service: %w: run \"studio-worker service install\" first", service.ErrNotInstalled)

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
		if err := svcCheckUserBus(); err != nil {
			return "", fmt.Errorf("service: %w", err)
		}
	}

	switch action {
	case "install":
		return svcInstall(s, opts, file, where, when, installed)
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
			return "Uninstalled: removed " + svcTilde(file), nil
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
	case errors.Is(err, service.ErrNotInstalled):
		return "Not installed", nil
	// kardianos has no error value for this one; systemd says "failed" and will not restart it.
	case err != nil && strings.Contains(err.Error(), "failed state"):
		return "Failed: it stopped with an error and is not restarting; see journalctl --user -u " + svcName, nil
	case err != nil:
		return "", fmt.Errorf("service: status of the %s: %w", where, err)
	case st == service.StatusRunning:
		return "Running", nil
	case st == service.StatusStopped:
		return "Stopped: installed, starts " + when, nil
	}
	return "Unknown", nil
}

func svcInstall(s service.Service, opts ServiceOptions, file, where, when string, installed bool) (string, error) {
	if _, err := os.Stat(opts.ConfigPath); err != nil {
		return "", fmt.Errorf("service: the service would run with %s: %w", opts.ConfigPath, err)
	}
	done := "Installed: starts " + when + " (" + where + ")"
	if installed {
		if file == "" {
			return "Already installed: starts " + when + " (" + where + ")", nil
		}
		render := RenderServiceUnit
		if runtime.GOOS == "darwin" {
			render = RenderLaunchAgent
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

// svcTilde shortens a path under the home directory to ~/….
func svcTilde(p string) string {
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return p
	}
	if rel, err := filepath.Rel(home, p); err == nil && !strings.HasPrefix(rel, "..") && rel != "." {
		return "~" + string(filepath.Separator) + rel
	}
	return p
}
