// service.go: the service's names and what it runs — Options, the kardianos config, and the
// command line, escaped for systemd. Installing and controlling it is control.go's, the unit and
// plist texts render.go's, answering the Windows service manager body*.go's.

package service

import (
	_ "embed" // the unit and plist templates
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	kardianos "github.com/kardianos/service"
)

// The service runs "studio-worker run --config <file>" in the user's own session: a systemd user
// unit on Linux, a LaunchAgent on macOS (both started at login, restarted only after a failure,
// never needing sudo), and a Windows service elsewhere. kardianos/service does the installing;
// the templates are ours because its own start the worker at boot (multi-user.target, which a
// user manager never reaches) and relaunch it after the user quits (Restart=always, KeepAlive).

const (
	// Name is the service's name everywhere: the unit and plist file names, the Windows service.
	Name = "studio-worker"
	// DisplayName is what the Windows service manager shows.
	DisplayName = "Studio Worker"
	description = "Studio Worker: lends this computer's GPU to a Studio"
	// systemdName is how kardianos names its systemd system (service_linux.go).
	systemdName = "linux-systemd"
	// WindowsFlag tells `run` that the Windows service manager started it: the service we install
	// passes --windows-service, and `run` defines the flag by this name.
	WindowsFlag = "windows-service"
	// commandTimeout bounds the systemctl probe we run ourselves.
	commandTimeout = 10 * time.Second
)

//go:embed templates/studio-worker.service
var systemdTemplate string

//go:embed templates/studio-worker.plist
var launchdTemplate string

var (
	// ErrUnderSudo: a user service belongs to the user's own session, which sudo leaves.
	ErrUnderSudo = errors.New("a user service cannot be installed or controlled as root through sudo")
	// ErrNoUserSession: systemctl --user cannot reach the user's service manager.
	ErrNoUserSession = errors.New("systemctl --user is not available: no user session bus (are you in a container or over sudo?)")
)

// Options say what the service runs.
type Options struct {
	ConfigPath string // the config file the service passes to "run --config"; made absolute
	Executable string // the studio-worker binary; "" means this one (os.Executable)
}

// program is the kardianos.Interface kardianos asks for. Installing and controlling a service
// never calls it: the service manager starts "studio-worker run", and that command runs the worker.
type program struct{}

func (program) Start(kardianos.Service) error { return nil }
func (program) Stop(kardianos.Service) error  { return nil }

// serviceFor returns the kardianos service for opts. On Linux it is always kardianos' systemd
// system, whatever it detects: a user service needs systemd, and a container or a machine booted
// without it gets a clear error from Control instead of a SysV script in /etc/init.d.
func serviceFor(opts Options) (kardianos.Service, error) {
	exe, args, err := commandLine(opts, runtime.GOOS)
	if err != nil {
		return nil, err
	}
	return newService(kardianosConfig(exe, args))
}

// newService picks the system: on Linux kardianos' systemd, whatever it detects.
func newService(c *kardianos.Config) (kardianos.Service, error) {
	if runtime.GOOS != "linux" {
		s, err := kardianos.New(program{}, c)
		if err != nil {
			return nil, fmt.Errorf("service: %w", err)
		}
		return s, nil
	}
	for _, sys := range kardianos.AvailableSystems() {
		if sys.String() == systemdName {
			s, err := sys.New(program{}, c)
			if err != nil {
				return nil, fmt.Errorf("service: %w", err)
			}
			return s, nil
		}
	}
	return nil, fmt.Errorf("service: kardianos/service offers no %s system", systemdName)
}

func kardianosConfig(exe string, args []string) *kardianos.Config {
	return &kardianos.Config{
		Name:        Name,
		DisplayName: DisplayName,
		Description: description,
		Executable:  exe,
		Arguments:   args,
		Option: kardianos.KeyValue{
			"UserService":   true, // ignored on Windows
			"SystemdScript": systemdTemplate,
			"LaunchdConfig": launchdTemplate,
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

// commandLine resolves the executable and the arguments of "run --config <file>" as the service
// file for goos will carry them. On Linux they are escaped for systemd, which expands % and $ and
// unescapes backslashes in a unit; kardianos only quotes.
func commandLine(opts Options, goos string) (exe string, args []string, err error) {
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
		// Said outright: the service manager's session-0 check (kardianos.Interactive) does not
		// hold under Wine, whose services run in the user's session.
		return exe, []string{"run", "--config", cfg, "--" + WindowsFlag}, nil
	case "linux":
	default:
		return exe, []string{"run", "--config", cfg}, nil
	}
	if exe, err = systemdExe(exe); err != nil {
		return "", nil, err
	}
	if cfg, err = systemdArg(cfg); err != nil {
		return "", nil, err
	}
	return exe, []string{"run", "--config", cfg}, nil
}

// systemdExe escapes the executable path, which kardianos writes unquoted (spaces as \x20).
// Characters that systemd would read as quoting, escaping or a variable are refused.
func systemdExe(p string) (string, error) {
	if i := strings.IndexFunc(p, func(r rune) bool {
		return r < 0x20 || r == 0x7f || strings.ContainsRune(`\"'$`, r)
	}); i >= 0 {
		return "", fmt.Errorf("service: the program path %q has %q, which a systemd unit cannot carry unquoted: move the program", p, p[i])
	}
	return strings.ReplaceAll(p, "%", "%%"), nil
}

// systemdArg escapes an argument that kardianos writes between double quotes (escaping only
// the double quotes).
func systemdArg(a string) (string, error) {
	if strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("service: %q has a control character, which a systemd unit cannot carry", a)
	}
	return strings.NewReplacer(`\`, `\\`, "%", "%%", "$", "$$").Replace(a), nil
}
