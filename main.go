// Command studio-worker lends this computer's GPU to a Studio: with no arguments it opens the
// window and the tray; its subcommands run the headless worker and control a running one.
// It only hands its arguments to app.CLI, whose command table is the one list of subcommands
// and their usage, with the parts app must not import wired in: the window (ui, gui.go) and the
// demo's hub (demo). It holds no logic of its own.
package main

import (
	"io"
	"os"

	"studioworker/app"
	"studioworker/demo"
)

// Set by build.sh with -ldflags from FyneApp.toml and git.
var (
	version = "dev"
	commit  = "unknown"
)

// dispatch runs one command line (without the program name) and returns its exit code.
func dispatch(args []string, stdout, stderr io.Writer) int {
	cli := &app.CLI{Stdout: stdout, Stderr: stderr, Build: app.BuildInfo{Version: version, Commit: commit}, GUI: gui, DemoHub: demo.Start}
	return cli.Run(args)
}

func main() {
	if len(os.Args) > 1 {
		app.AttachConsole() // a subcommand typed in cmd.exe prints there; a double-click opens no console
	}
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}
