//go:build !unix && !windows

// exec_other.go: an exec backend child on systems with neither process groups nor job objects
// (plan9, wasm), where only the child itself can be stopped.
package engine

import (
	"os"
	"os/exec"
)

// procTree is the child alone.
type procTree struct {
	p *os.Process
}

func newProcTree() (*procTree, error) { return &procTree{}, nil }

func (t *procTree) prepare(*exec.Cmd) {}

func (t *procTree) started(p *os.Process) error {
	t.p = p
	return nil
}

func (t *procTree) terminate() { _ = t.p.Kill() }

func (t *procTree) kill() { _ = t.p.Kill() }

func (t *procTree) close() {}

// newCommand returns the command for argv, run in dir.
func newCommand(dir string, argv []string) (*exec.Cmd, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	return cmd, nil
}
