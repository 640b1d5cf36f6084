// pgtest_linux.go: running the server as the `postgres` system user when the test runs as root
// (the server refuses root), in a folder that user can reach, and ending it with the test process.
// It must not know how the server is configured.

package pgtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// quitSignal is PostgreSQL's immediate shutdown.
const quitSignal = syscall.SIGQUIT

// prepareDir makes the server's folder under the test's temporary folder and, as root, hands it to
// the postgres user: the temporary folders above it (mode 0700, root's) get the search bit so that
// user can reach it, and nothing more.
func prepareDir(base string) (dir string, runAsPG bool, err error) {
	dir = filepath.Join(base, "postgres")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", false, err
	}
	if os.Geteuid() != 0 {
		return dir, false, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return "", false, fmt.Errorf("running as root, the server must run as the postgres user, and there is none (%w): install Debian's postgresql package", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	for _, d := range []string{base, filepath.Dir(base)} {
		if d == "/" || d == os.TempDir() {
			continue // already open to everyone (1777); never narrow it
		}
		if err := os.Chmod(d, 0o711); err != nil {
			return "", false, err
		}
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return "", false, err
	}
	return dir, true, nil
}

// asServerUser runs cmd as the postgres user when the test is root, and has the kernel kill it if
// the test process dies first, so that no server outlives its test.
func (s *Server) asServerUser(cmd *exec.Cmd) {
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if s.runAsPG {
		u, err := user.Lookup("postgres")
		if err == nil {
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
			cmd.Env = append(os.Environ(), "HOME="+s.dir, "USER=postgres", "LOGNAME=postgres")
		}
	}
	cmd.SysProcAttr = attr
}
