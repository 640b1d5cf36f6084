// xvfb.go: a virtual X display of the run's own (Xvfb), for the figure that measures the real
// window. It must not know what is drawn on the display or who draws it.

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// xvfb is a running Xvfb; its owner calls stop.
type xvfb struct {
	display string // ":N", what DISPLAY is set to for a client of it
	cmd     *exec.Cmd
	exited  chan struct{}
}

// startXvfb runs bin (Xvfb) on a free display, which it picks itself and names on fd 3
// (-displayfd): no guessed number can collide with another display on the machine.
func startXvfb(ctx context.Context, bin string) (*xvfb, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command(bin, "-displayfd", "3", "-screen", "0", "1280x800x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	var stderr strings.Builder // read only once Xvfb exited: Wait has copied all of it by then
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start Xvfb: %w", err)
	}
	w.Close() // Xvfb holds its own copy; ours open would keep the read below from seeing its exit
	x := &xvfb{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(x.exited) }()

	got := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	select {
	case n := <-got:
		if n == "" {
			x.stop()
			return nil, fmt.Errorf("Xvfb did not say which display it took: %s", oneLine(stderr.String()))
		}
		x.display = ":" + n
		return x, nil
	case <-ctx.Done():
		x.stop()
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		x.stop()
		return nil, errors.New("Xvfb did not start within 30 s: " + oneLine(stderr.String()))
	}
}

// stop ends Xvfb with SIGTERM, so it removes its lock file and socket (/tmp/.X11-unix), and kills
// it if it has not ended after 5 s.
func (x *xvfb) stop() {
	_ = x.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-x.exited:
	case <-time.After(5 * time.Second):
		_ = x.cmd.Process.Kill()
		<-x.exited
	}
}
