// Command studio-worker lends this computer's GPU to a Studio: with no arguments it opens the
// window and the tray; its subcommands run the headless worker and control a running one.
// It only dispatches to app/ and ui/; it holds no logic of its own.
package main

import (
	"fmt"
	"io"
	"os"

	"studioworker/app"
	"studioworker/protocol"
)

// Set by build.sh with -ldflags from FyneApp.toml and git.
var (
	version = "dev"
	commit  = "unknown"
)

type command struct {
	name, usage, help string
	run               func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"", "studio-worker", "open the Studio Worker window and tray", toApp("")},
		{"run", "studio-worker run [--config PATH]", "run the worker headless (what the service runs)", toApp("run")},
		{"register", "studio-worker register --server URL --pairing-code CODE [--name NAME]", "pair this worker with a Studio", toApp("register")},
		{"demo", "studio-worker demo [--headless] [--jobs N]", "run a local hub and this worker end to end", toApp("demo")},
		{"autostart", "studio-worker autostart on|off|status [--config PATH]", "open the window and tray when you log in (the Settings checkbox)", toApp("autostart")},
		{"service", "studio-worker service install|uninstall|start|stop|status", "run the headless worker as a service (Windows: no tray)", toApp("service")},
		{"status", "studio-worker status [--json]", "show what the running worker is doing", toApp("status")},
		{"pause", "studio-worker pause", "stop taking offers", toApp("pause")},
		{"resume", "studio-worker resume", "take offers again", toApp("resume")},
		{"drain", "studio-worker drain", "finish the running job, then pause", toApp("drain")},
		{"gpu", "studio-worker gpu [--json]", "show what the worker sees of the GPUs", toApp("gpu")},
		{"version", "studio-worker version", "print the version and the protocol version", runVersion},
	}
}

// toApp hands a subcommand to app.CLI, which does the work.
func toApp(name string) func([]string, io.Writer, io.Writer) int {
	return func(args []string, stdout, stderr io.Writer) int {
		cli := &app.CLI{Stdout: stdout, Stderr: stderr, Build: app.BuildInfo{Version: version, Commit: commit}, GUI: gui}
		if name == "" {
			return cli.Run(args)
		}
		return cli.Run(append([]string{name}, args...))
	}
}

func runVersion(_ []string, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "studio-worker %s (commit %s), protocol v%d\n", version, commit, protocol.Version)
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-72s %s\n", c.usage, c.help)
	}
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	name := ""
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			usage(stdout)
			return 0
		}
		if args[0] != "" && args[0][0] != '-' { // flags alone belong to the window
			name, args = args[0], args[1:]
		}
	}
	for _, c := range commands() {
		if c.name == name {
			return c.run(args, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "studio-worker: unknown command %q\n", name)
	usage(stderr)
	return 2
}

func main() {
	if len(os.Args) > 1 {
		app.AttachConsole() // a subcommand typed in cmd.exe prints there; a double-click opens no console
	}
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}
