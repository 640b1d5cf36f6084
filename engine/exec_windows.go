//go:build windows

// exec_windows.go: an exec backend child and everything it starts, held in one Job Object, and a
// command line that reaches batch files (.cmd, .bat) without cmd.exe reading a job's text as
// commands.
package engine

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

// procTree is a Job Object holding the child and every process it starts. Windows has no process
// group signal: Process.Kill ends only the direct child, and what it started would outlive it.
// A process created by a member of a job is a member too, so terminating the job ends the tree.
type procTree struct {
	job windows.Handle
	// child is a handle to the direct child, and exited is closed once the goroutine that
	// watches it has ended the job after it; both are unset until started succeeds.
	child  windows.Handle
	exited chan struct{}
}

// newProcTree creates the job. KILL_ON_JOB_CLOSE makes closing the last handle end the tree, so
// if this worker dies (a crash, Task Manager) Windows closes the handle and nothing is left.
func newProcTree() (*procTree, error) {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return nil, fmt.Errorf("engine: job object: %w", err)
	}
	var info windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION
	info.BasicLimitInformation.LimitFlags = windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(job)
		return nil, fmt.Errorf("engine: job object limits: %w", err)
	}
	return &procTree{job: job}, nil
}

// prepare makes the child start suspended, so that it cannot start anything before it is in the
// job (os/exec offers no way to name the job at creation), and without a console window: the
// worker is a GUI program, and Windows would open a window for every console tool it runs.
func (t *procTree) prepare(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.CreationFlags |= windows.CREATE_SUSPENDED | windows.CREATE_NO_WINDOW
}

// started puts the suspended child into the job, then lets it run. On an error the child is
// still suspended and the caller kills it.
//
// Once the child has ended, a goroutine owned by the tree (close waits for it) ends the rest of
// the job: a program the child left running would otherwise hold the child's output pipes open,
// and Wait would wait for them until WaitDelay and fail a job that had succeeded.
func (t *procTree) started(p *os.Process) error {
	// os.Process keeps its own handle to the child open until Wait, so the pid cannot be reused
	// by another process in between.
	h, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE|windows.SYNCHRONIZE, false, uint32(p.Pid))
	if err != nil {
		return fmt.Errorf("engine: open process %d: %w", p.Pid, err)
	}
	if err := windows.AssignProcessToJobObject(t.job, h); err != nil {
		windows.CloseHandle(h)
		return fmt.Errorf("engine: put process %d in its job object: %w", p.Pid, err)
	}
	if err := resumeProcess(uint32(p.Pid)); err != nil {
		windows.CloseHandle(h)
		return err
	}
	t.child, t.exited = h, make(chan struct{})
	go func() {
		defer close(t.exited)
		if ev, _ := windows.WaitForSingleObject(h, windows.INFINITE); ev == windows.WAIT_OBJECT_0 {
			_ = windows.TerminateJobObject(t.job, 1)
		}
	}()
	return nil
}

// resumeProcess resumes the threads of a process created suspended. os/exec closes the main
// thread's handle, so the thread is found again by a snapshot of the threads.
func resumeProcess(pid uint32) error {
	snap, err := windows.CreateToolhelp32Snapshot(windows.TH32CS_SNAPTHREAD, 0)
	if err != nil {
		return fmt.Errorf("engine: resume process %d: %w", pid, err)
	}
	defer windows.CloseHandle(snap)
	te := windows.ThreadEntry32{Size: uint32(unsafe.Sizeof(windows.ThreadEntry32{}))}
	resumed := 0
	for err = windows.Thread32First(snap, &te); err == nil; err = windows.Thread32Next(snap, &te) {
		if te.OwnerProcessID != pid {
			continue
		}
		th, err := windows.OpenThread(windows.THREAD_SUSPEND_RESUME, false, te.ThreadID)
		if err != nil {
			return fmt.Errorf("engine: resume process %d: thread %d: %w", pid, te.ThreadID, err)
		}
		_, err = windows.ResumeThread(th)
		windows.CloseHandle(th)
		if err != nil {
			return fmt.Errorf("engine: resume process %d: thread %d: %w", pid, te.ThreadID, err)
		}
		resumed++
	}
	if !errors.Is(err, windows.ERROR_NO_MORE_FILES) {
		return fmt.Errorf("engine: resume process %d: %w", pid, err)
	}
	if resumed == 0 {
		return fmt.Errorf("engine: resume process %d: no thread found", pid)
	}
	return nil
}

// terminate ends the whole tree at once. There is no SIGTERM to ask with: Ctrl+Break reaches only
// processes that share the sender's console, which a worker started from the desktop or as a
// service does not have, so the grace period does not apply on Windows.
func (t *procTree) terminate() { _ = windows.TerminateJobObject(t.job, 1) }

// kill ends whatever is still in the job.
func (t *procTree) kill() { _ = windows.TerminateJobObject(t.job, 1) }

// close releases the job. It is called once the child has been waited for, so the watching
// goroutine has ended the job or is about to; KILL_ON_JOB_CLOSE ends anything still in it.
func (t *procTree) close() {
	if t.exited != nil {
		<-t.exited
		_ = windows.CloseHandle(t.child)
	}
	_ = windows.CloseHandle(t.job)
}

// newCommand returns the command for argv, run in dir. Programs are found as Windows finds them
// (exec.LookPath applies PATHEXT, so "tool" finds tool.exe or tool.cmd). CreateProcess runs a
// batch file through cmd.exe, which parses the command line with its own rules (& | %VAR% and
// quotes) rather than as argv: the line is built here so that each argument stays one literal
// argument (batchCommandLine).
func newCommand(dir string, argv []string) (*exec.Cmd, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	if cmd.Err != nil {
		return cmd, nil // Start reports it, as a backend that is down
	}
	program := cmd.Path
	if !filepath.IsAbs(program) {
		// A relative path with a folder in it is resolved by Start, against Dir and with PATHEXT;
		// resolve it the same way here to see whether it is a batch file.
		p, err := exec.LookPath(filepath.Join(dir, program))
		if err != nil {
			return cmd, nil // Start fails on it too
		}
		if program, err = filepath.Abs(p); err != nil {
			return nil, fmt.Errorf("engine: %s: %w", p, err)
		}
	}
	switch strings.ToLower(filepath.Ext(program)) {
	case ".bat", ".cmd":
	default:
		return cmd, nil
	}
	line, err := batchCommandLine(program, argv[1:])
	if err != nil {
		return nil, err
	}
	sys, err := windows.GetSystemDirectory()
	if err != nil {
		return nil, fmt.Errorf("engine: system folder: %w", err)
	}
	// cmd.exe from the system folder, never one found on PATH or in the job's folder.
	cmd.Path = filepath.Join(sys, "cmd.exe")
	cmd.SysProcAttr = &syscall.SysProcAttr{CmdLine: line}
	return cmd, nil
}

// batchCommandLine is the cmd.exe command line that runs script with args, each arriving in %1..
// as the literal text (quoted where it holds anything but a safe character). These are the rules
// Rust's standard library adopted for CVE-2024-24576 ("BatBadBut"): /d skips AutoRun commands,
// /v:OFF turns off !VAR! expansion, /e:ON enables the %cd:~,% substring that defuses %VAR%, a
// quote is doubled, and a line break, which would end the command, is refused.
func batchCommandLine(script string, args []string) (string, error) {
	if strings.ContainsRune(script, '"') || strings.HasSuffix(script, `\`) {
		return "", fmt.Errorf("engine: %q cannot be a batch file's path", script)
	}
	var b strings.Builder
	b.WriteString(`cmd.exe /e:ON /v:OFF /d /c ""`)
	b.WriteString(script)
	b.WriteByte('"')
	for _, a := range args {
		if strings.ContainsAny(a, "\r\n") {
			return "", unsupported("", "a batch file (.cmd, .bat) cannot take a line break in an argument; pass the text on stdin (\"stdin\": \"{prompt}\") or run an .exe")
		}
		if strings.ContainsRune(a, 0) {
			return "", unsupported("", "an argument holds a NUL character")
		}
		b.WriteByte(' ')
		appendBatchArg(&b, a)
	}
	b.WriteByte('"')
	return b.String(), nil
}

// appendBatchArg writes one argument for cmd.exe.
func appendBatchArg(b *strings.Builder, a string) {
	// An empty argument would vanish unquoted, and a trailing backslash would escape the closing
	// quote of a script that quotes "%~1" itself.
	quote := a == "" || strings.HasSuffix(a, `\`)
	for _, r := range a {
		if r < 0x80 && !isBatchSafe(byte(r)) || isControl(r) {
			quote = true
			break
		}
	}
	if quote {
		b.WriteByte('"')
	}
	backslashes := 0
	for _, r := range a {
		switch r {
		case '\\':
			backslashes++
			b.WriteRune(r)
			continue
		case '"':
			// Backslashes before a quote are doubled, and the quote itself is doubled.
			b.WriteString(strings.Repeat(`\`, backslashes))
			b.WriteByte('"')
		case '%':
			// %cd:~,% is an empty substring of the current folder: it splits "%NAME%" so that
			// cmd.exe expands no variable, and leaves the text as it was.
			b.WriteString("%%cd:~,")
		}
		backslashes = 0
		b.WriteRune(r)
	}
	if quote {
		b.WriteString(strings.Repeat(`\`, backslashes))
		b.WriteByte('"')
	}
}

// isBatchSafe reports whether an ASCII character needs no quotes on a cmd.exe line. The list is of
// characters known to be harmless; everything else is quoted.
func isBatchSafe(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(`#$*+-./:?@\_`, c) >= 0
}

// isControl reports a non-ASCII control character (C1), quoted for good measure.
func isControl(r rune) bool { return 0x80 <= r && r <= 0x9f }
