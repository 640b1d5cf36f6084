package gpu

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestParseStatPPID(t *testing.T) {
	tests := []struct {
		stat string
		want uint32
		ok   bool
	}{
		{"123 (bash) S 45 123 123 0 -1", 45, true},
		{"123 (evil) S 7 (name)) R 99 1 1", 99, true}, // comm with ") S 7 (" in it
		{"123 (x y) S 1 1", 1, true},
		{"garbage", 0, false},
		{"1 (init) S", 0, false},
		{"1 (init) S notanumber", 0, false},
	}
	for _, tc := range tests {
		got, ok := parseStatPPID(tc.stat)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseStatPPID(%q) = %d, %v; want %d, %v", tc.stat, got, ok, tc.want, tc.ok)
		}
	}
}

// A real grandchild: sh starts sleep in the background and prints its pid.
func TestOwnPIDsFindsRealDescendants(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sh: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("read grandchild pid: %v", err)
	}
	gc, err := strconv.ParseUint(strings.TrimSpace(line), 10, 32)
	if err != nil {
		t.Fatalf("grandchild pid %q: %v", line, err)
	}
	t.Cleanup(func() {
		if p, err := os.FindProcess(int(gc)); err == nil {
			_ = p.Kill()
		}
	})

	own := OwnPIDs(uint32(os.Getpid()))
	if !own(uint32(os.Getpid())) || !own(uint32(cmd.Process.Pid)) || !own(uint32(gc)) {
		t.Errorf("own(self, child %d, grandchild %d) should all be true", cmd.Process.Pid, gc)
	}
	if own(uint32(os.Getppid())) || own(1) {
		t.Error("the parent and init are not the worker's")
	}
	// A backend configured by pid counts with its children, even though
	// it is not under the worker.
	backend := OwnPIDs(uint32(os.Getppid()), uint32(cmd.Process.Pid))
	if !backend(uint32(gc)) {
		t.Error("a configured backend's child should be own")
	}
}
