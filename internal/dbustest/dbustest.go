// Package dbustest runs a D-Bus session bus of its own, so the tests of the tray and of the
// desktop notifications, and the bench's GUI figure, talk to real D-Bus without touching the
// desktop's. This file runs the bus; it must not know what is said on it (the one peer that does,
// the fake tray host, is in watcher.go).
package dbustest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// privateBusConfig is a session bus that knows no services to activate, so nothing outside the
// test can appear on it, and that lets every peer talk to every other, as a session bus does.
const privateBusConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=%s</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`

// Bus is a running dbus-daemon of the caller's own. Its owner calls Close.
type Bus struct {
	Addr   string // what DBUS_SESSION_BUS_ADDRESS is set to for a peer of this bus
	cmd    *exec.Cmd
	exited chan struct{}
	dir    string
}

// StartBus runs a private dbus-daemon (daemon is its path) and returns once it listens. A short
// directory of its own keeps the socket path under the 108 bytes a unix socket address allows.
func StartBus(daemon string) (*Bus, error) {
	dir, err := os.MkdirTemp("", "sw-bus-")
	if err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "session.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, privateBusConfig, filepath.Join(dir, "bus")), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--nofork", "--nopidfile", "--print-address=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	var stderr strings.Builder // read only once the daemon exited: Wait has copied all of it by then
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start dbus-daemon: %w", err)
	}
	b := &Bus{cmd: cmd, exited: make(chan struct{}), dir: dir}
	go func() { _ = cmd.Wait(); close(b.exited) }() // Wait closes stdout, which ends the reader below

	// The daemon prints its address once it listens: that line is the "ready" signal.
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		line := ""
		if sc.Scan() {
			line = strings.TrimSpace(sc.Text())
		}
		addrc <- line
		for sc.Scan() { // keep the pipe drained until the daemon exits
		}
	}()
	select {
	case addr := <-addrc:
		if addr == "" {
			<-b.exited
			os.RemoveAll(dir)
			return nil, fmt.Errorf("dbus-daemon printed no address: %s", stderr.String())
		}
		b.Addr = addr
		return b, nil
	case <-time.After(20 * time.Second):
		b.Close()
		return nil, errors.New("dbus-daemon did not start within 20 s: " + stderr.String())
	}
}

// Close kills the daemon, waits for it, and removes its folder.
func (b *Bus) Close() {
	_ = b.cmd.Process.Kill()
	<-b.exited
	os.RemoveAll(b.dir)
}

// StartPrivateBus is StartBus for a test: it fails the test when the bus does not start, and
// the bus ends with the test.
func StartPrivateBus(t testing.TB, daemon string) string {
	t.Helper()
	b, err := StartBus(daemon)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b.Addr
}
