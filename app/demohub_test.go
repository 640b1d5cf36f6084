// Tests of the demo seam in a build that was given no DemoHubStarter: the demo says so and
// nothing else changes. The demo itself, on the real hub, is tested in package demo.

package app

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestNoDemoHub(t *testing.T) {
	e := newFirstRunEnv(t) // a worker started without Options.DemoHub
	ctx := context.Background()
	if err := e.client.StartDemo(ctx); err == nil || !strings.Contains(err.Error(), ErrNoDemoHub.Error()) {
		t.Fatalf("StartDemo without a demo hub: %v", err)
	}
	if err := e.worker.StartDemo(ctx); !errors.Is(err, ErrNoDemoHub) {
		t.Fatalf("StartDemo in-process without a demo hub: %v", err)
	}
	if st := e.worker.Observers().Snapshot(); st.Demo || st.Registered {
		t.Fatalf("after a refused demo: demo %v registered %v", st.Demo, st.Registered)
	}
	if err := e.client.StopDemo(ctx); err == nil || !strings.Contains(err.Error(), ErrNoDemo.Error()) {
		t.Fatalf("StopDemo with none running: %v", err)
	}

	var out, errb syncBuffer
	cli := &CLI{Stdout: &out, Stderr: &errb}
	if code := cli.Run([]string{"demo", "--headless"}); code != ExitError || !strings.Contains(errb.String(), ErrNoDemoHub.Error()) {
		t.Fatalf("demo without a demo hub: exit %d, stderr %q", code, errb.String())
	}
}
