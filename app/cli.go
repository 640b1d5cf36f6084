// cli.go: the studio-worker command line's one command table and its dispatch — which subcommand
// runs for a name, the usage text made from the same table, and what every command shares
// (flags and config path, loading the config, exit codes). Each command group lives in a file of
// its own (cli_*.go, demo.go); this file must not know what any command does.

package app

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"studioworker/protocol"
	"studioworker/session"
)

// Exit codes of studio-worker (PROTOCOL.md).
const (
	ExitOK         = 0
	ExitError      = 1
	ExitUsage      = 2
	ExitAuthFailed = 3
)

// BuildInfo says which build this is.
type BuildInfo struct {
	Version, Commit string
}

// GUIFunc opens the window and the tray on a Source and a Controller and blocks until the user
// quits. main.go passes ui.Run; app cannot import ui.
type GUIFunc func(src Source, ctl Controller, opt GUIOptions) error

// GUIOptions say how the window starts and what steers it from outside.
type GUIOptions struct {
	// Quit stops the worker behind the window; nil when the window is attached to a worker that
	// runs elsewhere (a service), which keeps running.
	Quit func()
	// StartHidden starts in the tray with the window closed (`--tray`, what autostart runs).
	StartHidden bool
	// Raise delivers a value when another launch asks this window to show itself (the second
	// launch then exits); nil when there is no window lock. It is never closed.
	Raise <-chan struct{}
	// QuitAfterJobs stops taking offers, lets the running jobs finish and their results reach
	// the Studio, then stops the worker (what a first SIGTERM does); nil when the worker runs
	// elsewhere.
	QuitAfterJobs func()
	// Stopped is closed when the worker behind the window has stopped (after QuitAfterJobs, or a
	// signal): the window then closes. nil when the worker runs elsewhere.
	Stopped <-chan struct{}
}

// CLI runs the studio-worker subcommands.
type CLI struct {
	Stdout, Stderr io.Writer
	Build          BuildInfo
	GUI            GUIFunc
	// DemoHub starts the hub of `studio-worker demo` and of the window's demo; main passes
	// demo.Start, and nil leaves this build without a demo.
	DemoHub DemoHubStarter
	// Session tunes the worker's session (tests shorten timers).
	Session session.Config
	// Signals delivers shutdown requests; nil = SIGINT and SIGTERM.
	Signals <-chan os.Signal
}

// command is one subcommand: its name ("" is the window), its line in the usage text, and what
// runs it. The table below is the only list of commands, so the usage cannot name one that
// dispatch does not run, nor miss one that it does.
type command struct {
	name, usage, help string
	run               func(c *CLI, args []string) int
}

func commands() []command {
	control := func(action string) func(*CLI, []string) int {
		return func(c *CLI, args []string) int { return c.cmdControl(action, args) }
	}
	return []command{
		{"", "studio-worker [--tray] [--config PATH]", "open the Studio Worker window and tray (--tray: start hidden in the tray)", (*CLI).cmdGUI},
		{"run", "studio-worker run [--config PATH]", "run the worker headless (what the service runs)", (*CLI).cmdRun},
		{"register", "studio-worker register --server URL --pairing-code CODE [--name NAME]", "pair this worker with a Studio", (*CLI).cmdRegister},
		{"demo", "studio-worker demo [--headless] [--jobs N]", "run a local hub and this worker end to end", (*CLI).cmdDemo},
		{"autostart", "studio-worker autostart on|off|status [--config PATH]", "open the window and tray when you log in (the Settings checkbox)", (*CLI).cmdAutostart},
		{"service", "studio-worker service install|uninstall|start|stop|status", "run the headless worker as a service (Windows: no tray)", (*CLI).cmdService},
		{"status", "studio-worker status [--json]", "show what the running worker is doing", (*CLI).cmdStatus},
		{"pause", "studio-worker pause", "stop taking offers", control("pause")},
		{"resume", "studio-worker resume", "take offers again", control("resume")},
		{"drain", "studio-worker drain", "finish the running job, then pause", control("drain")},
		{"auto-accept", "studio-worker auto-accept on|off", "take offers as they fit, or make each wait for you", (*CLI).cmdAutoAccept},
		{"gpu", "studio-worker gpu [--json]", "show what the worker sees of the GPUs", (*CLI).cmdGPU},
		{"version", "studio-worker version", "print the version and the protocol version", (*CLI).cmdVersion},
	}
}

// Run dispatches one subcommand (args without the program name): help prints the usage, flags
// alone belong to the window, and an unknown name is a usage error that lists the commands.
func (c *CLI) Run(args []string) int {
	name := ""
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			usage(c.Stdout)
			return ExitOK
		}
		if !strings.HasPrefix(args[0], "-") {
			name, args = args[0], args[1:]
		}
	}
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd.run(c, args)
		}
	}
	c.errorf("unknown command %q", name)
	usage(c.Stderr)
	return ExitUsage
}

// usage lists every command of the table, one line each.
func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage:")
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-72s %s\n", cmd.usage, cmd.help)
	}
}

func (c *CLI) cmdVersion([]string) int {
	fmt.Fprintf(c.Stdout, "studio-worker %s (commit %s), protocol v%d\n", c.Build.Version, c.Build.Commit, protocol.Version)
	return ExitOK
}

func (c *CLI) errorf(format string, args ...any) {
	fmt.Fprintf(c.Stderr, "studio-worker: "+format+"\n", args...)
}

// parse parses a subcommand's flags (--config and those that extra adds) and resolves the config
// file's path; false means the usage error was already printed.
func (c *CLI) parse(name string, args []string, extra func(*flag.FlagSet)) (string, bool) {
	fs := flag.NewFlagSet("studio-worker "+name, flag.ContinueOnError)
	fs.SetOutput(c.Stderr)
	cfgFlag := fs.String("config", "", "config file (default: $"+EnvConfig+" or the user config folder)")
	if extra != nil {
		extra(fs)
	}
	if fs.Parse(args) != nil {
		return "", false
	}
	path, err := ConfigPath(*cfgFlag)
	if err != nil {
		c.errorf("%v", err)
		return "", false
	}
	return path, true
}

// loadForRun loads the config for a command that needs one, mapping problems to exit codes.
func (c *CLI) loadForRun(path string) (Config, int) {
	cfg, err := LoadConfig(path)
	if errors.Is(err, ErrNoConfig) {
		c.errorf("no configuration at %s: register first (studio-worker register --server URL --pairing-code CODE)", path)
		return Config{}, ExitUsage
	}
	if err != nil {
		c.errorf("%v", err)
		return Config{}, ExitUsage
	}
	return cfg, ExitOK
}
