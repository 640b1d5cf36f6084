// cli_gpu.go: `studio-worker gpu`, what this machine's GPU sampler sees, read directly rather
// than through a running worker so that it works before registering. How GPUs are read is gpu's.

package app

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"time"
)

func (c *CLI) cmdGPU(args []string) int {
	var asJSON *bool
	path, ok := c.parse("gpu", args, func(fs *flag.FlagSet) {
		asJSON = fs.Bool("json", false, "print JSON")
	})
	if !ok {
		return ExitUsage
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		cfg = DefaultConfig() // no config yet: the machine's own GPU is still worth showing
	}
	sampler := openGPU(cfg)
	defer sampler.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	snap, err := sampler.Sample(ctx)
	if err != nil && len(snap.Devices) == 0 && snap.Problem == "" {
		c.errorf("gpu: %v", err)
		return ExitError
	}
	if *asJSON {
		enc := json.NewEncoder(c.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(snap)
		return ExitOK
	}
	fmt.Fprint(c.Stdout, snap.Text())
	return ExitOK
}
