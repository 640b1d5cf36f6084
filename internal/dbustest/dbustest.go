//go:build linux

// Package dbustest runs a D-Bus session bus of a test's own, so tests of the tray and of the
// desktop notifications talk to real D-Bus without touching the desktop's. It is for tests only
// and must not know what is said on the bus.
package dbustest

import (
	"bufio"
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

// StartPrivateBus runs a dbus-daemon of the test's own and returns its address; the daemon is
// killed when the test ends. A short directory of its own keeps the socket path under the
// 108 bytes a unix socket address allows.
func StartPrivateBus(t testing.TB, daemon string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sw-bus-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "session.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil, privateBusConfig, filepath.Join(dir, "bus")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--nofork", "--nopidfile", "--print-address=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }() // Wait closes stdout, which ends the reader below
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

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
			<-exited
			t.Fatalf("dbus-daemon printed no address: %s", stderr.String())
		}
		return addr
	case <-time.After(20 * time.Second):
		t.Fatalf("dbus-daemon did not start: %s", stderr.String())
	}
	return ""
}
