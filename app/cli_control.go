// cli_control.go: the commands that talk to a running worker over its control socket — status,
// pause, resume, drain and auto-accept — and, with none running, remember pause, resume and
// auto-accept in the config for the next start. The socket itself is control_*.go's; the status in words is status_text.go's.

package app

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"time"
)

func (c *CLI) cmdStatus(args []string) int {
	var asJSON *bool
	path, ok := c.parse("status", args, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print the state as JSON")
	})
	if !ok {
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cl, err := DialControl(ctx, path)
	if err != nil {
		c.errorf("%v", err)
		if dir, derr := LogDir(); derr == nil {
			fmt.Fprintf(c.Stderr, "The log file is %s\n", filepath.Join(dir, "worker.log"))
		}
		return ExitError
	}
	defer cl.Close()
	st, err := cl.State(ctx)
	if err != nil {
		c.errorf("%v", err)
		return ExitError
	}
	if *asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(st)
		return ExitOK
	}
	fmt.Fprint(c.Stdout, StatusText(st))
	return ExitOK
}

func (c *CLI) cmdControl(action string, args []string) int {
	path, ok := c.parse(action, args, nil)
	if !ok {
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := DialControl(ctx, path)
	if err != nil {
		if action == "drain" {
			c.errorf("%v", err)
			return ExitError
		}
		paused := action == "pause"
		return c.rememberForNextStart(path, err, func(cfg *Config) { cfg.Paused = paused },
			"it will start "+map[bool]string{true: "paused", false: "taking jobs"}[paused])
	}
	defer cl.Close()
	switch action {
	case "pause":
		err = cl.Pause(ctx)
	case "resume":
		err = cl.Resume(ctx)
	case "drain":
		err = cl.Drain(ctx)
	}
	if err != nil {
		c.errorf("%s: %v", action, err)
		return ExitError
	}
	st, err := cl.State(ctx)
	if err == nil {
		fmt.Fprintf(c.Stdout, "%s — %s\n", st.Mode, st.ModeReason)
	}
	return ExitOK
}

// cmdAutoAccept is `studio-worker auto-accept on|off`: the tray's toggle from a terminal; with
// no worker running, it is remembered for the next start.
func (c *CLI) cmdAutoAccept(args []string) int {
	if len(args) == 0 || (args[0] != "on" && args[0] != "off") {
		c.errorf("auto-accept needs on or off: `studio-worker auto-accept on` takes offers as they fit, `off` makes each wait for you")
		return ExitUsage
	}
	on := args[0] == "on"
	path, ok := c.parse("auto-accept", args[1:], nil)
	if !ok {
		return ExitUsage
	}
	words := map[bool]string{true: "offers are taken as they fit", false: "each offer waits for you to accept it"}[on]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := DialControl(ctx, path)
	if err != nil {
		return c.rememberForNextStart(path, err, func(cfg *Config) { cfg.AutoAccept = on }, "when it starts, "+words)
	}
	defer cl.Close()
	if err := cl.SetAutoAccept(ctx, on); err != nil {
		c.errorf("auto-accept %s: %v", args[0], err)
		return ExitError
	}
	fmt.Fprintf(c.Stdout, "Auto-accept %s: %s.\n", args[0], words)
	return ExitOK
}

// rememberForNextStart saves a choice made while no worker runs (dialErr says why none was
// reached) into the config, for the next start, and says so: "No worker is running; <then>."
func (c *CLI) rememberForNextStart(path string, dialErr error, change func(*Config), then string) int {
	cfg, err := LoadConfig(path)
	if err != nil {
		c.errorf("%v", dialErr)
		return ExitError
	}
	change(&cfg)
	if err := SaveConfig(path, cfg); err != nil {
		c.errorf("%v", err)
		return ExitError
	}
	fmt.Fprintf(c.Stdout, "No worker is running; %s.\n", then)
	return ExitOK
}
