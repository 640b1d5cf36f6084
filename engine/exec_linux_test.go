//go:build linux

package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses: "pid (comm) S ...".
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// pidsScript starts a grandchild and writes "leader grandchild" pids to pidFile, then waits.
func pidsScript(pidFile, trap string) []string {
	script := trap + `sleep 300 & echo "$$ $!" > ` + pidFile + `.tmp; mv ` + pidFile + `.tmp ` + pidFile + `; wait`
	return []string{"sh", "-c", script}
}

func readPids(t *testing.T, pidFile string) []int {
	t.Helper()
	var data []byte
	waitFor(t, "the child's pids", 20*time.Second, func() bool {
		var err error
		data, err = os.ReadFile(pidFile)
		return err == nil
	})
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		p, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid file %q", data)
		}
		pids = append(pids, p)
	}
	return pids
}

func assertAllGone(t *testing.T, pids []int) {
	t.Helper()
	waitFor(t, "the process group to be gone", 20*time.Second, func() bool {
		for _, p := range pids {
			if alive(p) {
				return false
			}
		}
		return true
	})
}

func TestExecTimeoutKillsAGroupThatIgnoresSIGTERM(t *testing.T) {
	needProgram(t, "sh")
	pidFile := filepath.Join(t.TempDir(), "pids")
	bc := BackendConfig{Backend: BackendExec, Command: pidsScript(pidFile, `trap "" TERM; `), TimeoutS: 2, KillGraceS: 0.2} // long enough for sh to write its pids under load
	r := mustRouter(t, Config{protocol.KindTTS: bc}, Options{})
	job := newTestJob(t, protocol.KindTTS, "", `{"text":"hi"}`)
	done := runAsync(func() error { _, err := r.Run(context.Background(), job, nil); return err })
	pids := readPids(t, pidFile)
	err := awaitErr(t, done, 30*time.Second)
	assertClass(t, err, ErrTimeout, true, "")
	assertAllGone(t, pids)
}

func TestExecCancelStopsTheProcessGroup(t *testing.T) {
	needProgram(t, "sh")
	pidFile := filepath.Join(t.TempDir(), "pids")
	r := mustRouter(t, Config{protocol.KindImage: {Backend: BackendExec, Command: pidsScript(pidFile, "")}}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	job := newTestJob(t, protocol.KindImage, "", `{"prompt":"x","width":8,"height":8}`)
	done := runAsync(func() error { _, err := r.Run(ctx, job, nil); return err })
	pids := readPids(t, pidFile)
	for _, p := range pids {
		if !alive(p) {
			t.Fatalf("pid %d not running before the cancel", p)
		}
	}
	cancel()
	err := awaitErr(t, done, 30*time.Second)
	assertClass(t, err, ErrCancelled, true, "")
	assertAllGone(t, pids)
}
