//go:build unix

// exec_unix.go: an exec backend child and everything it starts, held in one process group.
package engine

import (
	"os"
	"os/exec"
	"syscall"
)

// procTree is the child's process group: the child leads a group of its own, and what it starts
// stays in it unless it moves itself out.
type procTree struct {
	pid int
}

func newProcTree() (*procTree, error) { return &procTree{}, nil }

// prepare starts the child as the leader of a new process group.
func (t *procTree) prepare(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
}

// started notes the group's id, which is the leader's pid.
func (t *procTree) started(p *os.Process) error {
	t.pid = p.Pid
	return nil
}

// terminate asks the whole group to stop.
func (t *procTree) terminate() { _ = syscall.Kill(-t.pid, syscall.SIGTERM) }

// kill kills the whole group.
func (t *procTree) kill() { _ = syscall.Kill(-t.pid, syscall.SIGKILL) }

// close has nothing to release: a group ends with its last member.
func (t *procTree) close() {}

// newCommand returns the command for argv, run in dir; argv reaches the program as it is.
func newCommand(dir string, argv []string) (*exec.Cmd, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	return cmd, nil
}
