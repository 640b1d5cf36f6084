// Command studio-worker lends this computer's GPU to a Studio: with no arguments it opens the
// window and the tray; its subcommands run the headless worker and control a running one.
// It only dispatches to app/ and ui/; it holds no logic of its own.
package main

import (
	"fmt"
	"io"
	"os"

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
		{"", "studio-worker", "open the Studio Worker window and tray", notYet("the window")},
		{"run", "studio-worker run [--config PATH]", "run the worker headless (what the service runs)", notYet("run")},
		{"register", "studio-worker register --server URL --pairing-code CODE [--name NAME]", "pair this worker with a Studio", notYet("register")},
		{"demo", "studio-worker demo [--headless] [--jobs N]", "run a local hub and this worker end to end", notYet("demo")},
		{"service", "studio-worker service install|uninstall|start|stop|status", "start the worker with this computer", notYet("service")},
		{"status", "studio-worker status [--json]", "show what the running worker is doing", notYet("status")},
		{"pause", "studio-worker pause", "stop taking offers", notYet("pause")},
		{"resume", "studio-worker resume", "take offers again", notYet("resume")},
		{"drain", "studio-worker drain", "finish the running job, then pause", notYet("drain")},
		{"gpu", "studio-worker gpu [--json]", "show what the worker sees of the GPUs", notYet("gpu")},
		{"version", "studio-worker version", "print the version and the protocol version", runVersion},
	}
}

func notYet(what string) func([]string, io.Writer, io.Writer) int {
	return func(_ []string, _, stderr io.Writer) int {
		fmt.Fprintf(stderr, "studio-worker: %s is not built yet\n", what)
		return 2
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
		name = args[0]
		args = args[1:]
	}
	switch name {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
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
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}
