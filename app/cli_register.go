// cli_register.go: `studio-worker register`, pairing this worker with a Studio and saving the
// credentials into the config file. How the hub is asked is session's; this file only reads the
// flags, keeps a config that does not parse untouched, and says what it saved.

package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"studioworker/session"
)

func (c *CLI) cmdRegister(args []string) int {
	var server, code, name *string
	var insecure *bool
	path, ok := c.parse("register", args, func(fs *flag.FlagSet) {
		server = fs.String("server", "", "the Studio hub's URL, e.g. https://studio.example.com")
		code = fs.String("pairing-code", "", "the pairing code from the Studio")
		name = fs.String("name", "", "a name for this worker (default: the computer's name)")
		insecure = fs.Bool("allow-insecure", false, "allow plain http:// to a host that is not this machine")
	})
	if !ok {
		return ExitUsage
	}
	if *server == "" || *code == "" {
		c.errorf("register needs --server URL and --pairing-code CODE")
		return ExitUsage
	}
	cfg, err := LoadConfig(path)
	if errors.Is(err, ErrNoConfig) {
		cfg = DefaultConfig()
	} else if err != nil {
		c.errorf("%v (fix or remove it; it was not changed)", err)
		return ExitUsage
	}
	if *insecure {
		cfg.AllowInsecure = true
	}
	if *name == "" {
		*name = cfg.Name
	}
	if *name == "" {
		*name, _ = os.Hostname()
	}
	if err := session.CheckServerURL(*server, cfg.AllowInsecure); err != nil {
		c.errorf("%v", err)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := session.Register(ctx, nil, *server, cfg.AllowInsecure, *name, *code)
	if err != nil {
		c.errorf("register: %v", err)
		return ExitError
	}
	cfg.ServerURL, cfg.Name, cfg.WorkerID, cfg.AuthToken = *server, *name, resp.WorkerID, resp.AuthToken
	if err := SaveConfig(path, cfg); err != nil {
		c.errorf("%v", err)
		return ExitError
	}
	fmt.Fprintf(c.Stdout, "Registered %q as worker %s with %s.\nSaved to %s. Start it with `studio-worker` (window) or `studio-worker run`.\n", *name, resp.WorkerID, hostOf(*server), path)
	return ExitOK
}
