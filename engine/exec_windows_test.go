//go:build windows

// Tests of the exec backend that only Windows can run: the Job Object that ends a command's whole
// process tree, and batch files found through PATHEXT whose arguments cmd.exe must not parse.
package engine

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows"

	"studioworker/internal/wintest"
	"studioworker/protocol"
)

// winJob is newTestJob with a spool folder from winTempDir.
func winJob(t *testing.T, kind protocol.Kind, input string) Job {
	t.Helper()
	return Job{ID: "job-" + string(kind), Kind: kind, Input: protocol.Object(input), SpoolDir: wintest.TempDir(t)}
}

// TestExecHelperProcess is not a test: it is the program the tests below run, the test binary
// started again with "-- role pidfile" after its flags. As "child" it starts itself as
// "grandchild", writes both pids to pidfile and waits; with "exit" after that it prints a
// result and exits instead, leaving the grandchild behind.
func TestExecHelperProcess(t *testing.T) {
	args := flag.Args()
	if len(args) < 3 || args[0] != "engine-helper" {
		return // run as a test of its own: nothing to do
	}
	role, pidFile := args[1], args[2]
	if role == "grandchild" {
		time.Sleep(time.Hour) // a long-running program; its parent's job must end it
		os.Exit(0)
	}
	gc := exec.Command(os.Args[0], "-test.run=^TestExecHelperProcess$", "--", "engine-helper", "grandchild", pidFile)
	if err := gc.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "start grandchild:", err)
		os.Exit(2)
	}
	if err := os.WriteFile(pidFile, fmt.Appendf(nil, "%d %d\n", os.Getpid(), gc.Process.Pid), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "pid file:", err)
		os.Exit(2)
	}
	if len(args) > 3 && args[3] == "exit" {
		fmt.Println("done")
		os.Exit(0)
	}
	time.Sleep(time.Hour) // until the job is cancelled
	os.Exit(0)
}

// helperCommand is the exec backend command that runs TestExecHelperProcess.
func helperCommand(t *testing.T, pidFile string, extra ...string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{exe, "-test.run=^TestExecHelperProcess$", "--", "engine-helper", "child", pidFile}, extra...)
}

// openPids reads the helper's pid file and opens both processes, so that a pid cannot be reused
// while the test watches it.
func openPids(t *testing.T, pidFile string) []windows.Handle {
	t.Helper()
	var hs []windows.Handle
	for _, f := range strings.Fields(waitForFile(t, pidFile)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			t.Fatalf("pid file: %v", err)
		}
		h, err := windows.OpenProcess(windows.SYNCHRONIZE|windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
		if err != nil {
			t.Fatalf("open process %d: %v", pid, err)
		}
		t.Cleanup(func() { windows.CloseHandle(h) })
		hs = append(hs, h)
	}
	if len(hs) != 2 {
		t.Fatalf("pid file names %d processes, want 2", len(hs))
	}
	return hs
}

// assertExited waits, with a deadline, for each process to end.
func assertExited(t *testing.T, hs []windows.Handle, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for i, h := range hs {
		wait := max(time.Until(deadline), 0)
		ev, err := windows.WaitForSingleObject(h, uint32(wait.Milliseconds()))
		if err != nil {
			t.Fatalf("wait for process %d: %v", i, err)
		}
		if ev != windows.WAIT_OBJECT_0 {
			t.Errorf("process %d (0 = child, 1 = grandchild) still runs %v later", i, within)
		}
	}
}

func TestWindowsExecCancelEndsTheGrandchild(t *testing.T) {
	pidFile := filepath.Join(wintest.TempDir(t), "pids")
	r := mustRouter(t, Config{protocol.KindImage: {Backend: BackendExec, Command: helperCommand(t, pidFile), TimeoutS: 120}}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	job := winJob(t, protocol.KindImage, `{"prompt":"x","width":8,"height":8}`)
	done := runAsync(func() error { _, err := r.Run(ctx, job, nil); return err })
	hs := openPids(t, pidFile)
	for i, h := range hs {
		if ev, _ := windows.WaitForSingleObject(h, 0); ev != uint32(windows.WAIT_TIMEOUT) {
			t.Fatalf("process %d is not running before the cancel", i)
		}
	}
	start := time.Now()
	cancel()
	err := awaitErr(t, done, 30*time.Second)
	assertClass(t, err, ErrCancelled, true, "")
	assertExited(t, hs, 20*time.Second)
	t.Logf("cancel to all gone: %v", time.Since(start))
}

func TestWindowsExecTimeoutEndsTheGrandchild(t *testing.T) {
	pidFile := filepath.Join(wintest.TempDir(t), "pids")
	// Long enough for two processes to start under Wine on a loaded machine.
	r := mustRouter(t, Config{protocol.KindImage: {Backend: BackendExec, Command: helperCommand(t, pidFile), TimeoutS: 6}}, Options{})
	job := winJob(t, protocol.KindImage, `{"prompt":"x","width":8,"height":8}`)
	done := runAsync(func() error { _, err := r.Run(context.Background(), job, nil); return err })
	hs := openPids(t, pidFile)
	err := awaitErr(t, done, 60*time.Second)
	assertClass(t, err, ErrTimeout, true, "")
	assertExited(t, hs, 20*time.Second)
}

func TestWindowsExecEndsWhatAFinishedCommandLeftRunning(t *testing.T) {
	pidFile := filepath.Join(wintest.TempDir(t), "pids")
	r := mustRouter(t, Config{protocol.KindImage: {Backend: BackendExec, Command: helperCommand(t, pidFile, "exit"), TimeoutS: 120}}, Options{})
	job := winJob(t, protocol.KindImage, `{"prompt":"x","width":8,"height":8}`)
	res, err := r.Run(context.Background(), job, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if data, err := os.ReadFile(res.File); err != nil || strings.TrimSpace(string(data)) != "done" {
		t.Fatalf("output %q, %v", data, err)
	}
	assertExited(t, openPids(t, pidFile), 20*time.Second)
}

// writeBatch writes a batch file that prints its arguments as cmd.exe hands them over.
func writeBatch(t *testing.T, dir, name string) {
	t.Helper()
	script := "@echo off\r\necho %*\r\n"
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestWindowsExecFindsACmdByItsBareNameAndCmdParsesNoArgument(t *testing.T) {
	dir := wintest.TempDir(t)
	writeBatch(t, dir, "studio-tool.cmd")
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	canary := filepath.Join(dir, "canary")
	t.Setenv("STUDIO_SECRET_FOR_TEST", "leaked")

	r := mustRouter(t, execConfig(protocol.KindLLM, "studio-tool", "{prompt}"), Options{})
	if caps := r.Refresh(context.Background()); len(caps.Models[protocol.KindLLM]) != 1 {
		t.Fatalf("studio-tool is not found through PATHEXT: %+v", caps)
	}
	for _, prompt := range []string{
		"plain",
		`a & echo pwned > ` + canary,
		`x" & echo pwned > ` + canary + ` & "`,
		`"" | echo pwned > ` + canary,
		`100% %STUDIO_SECRET_FOR_TEST% !STUDIO_SECRET_FOR_TEST! ^& (x) <y>`,
		`trailing\`,
	} {
		job := winJob(t, protocol.KindLLM, `{"prompt":`+quote(prompt)+`}`)
		res, err := r.Run(context.Background(), job, nil)
		if err != nil {
			t.Fatalf("Run(%q): %v", prompt, err)
		}
		var out protocol.LLMResult
		if err := json.Unmarshal(res.JSON, &out); err != nil {
			t.Fatal(err)
		}
		// echo prints the argument as the script received it: quoted where needed, with quotes
		// doubled, and every %%cd:~,% back to the % it stood for, nothing expanded.
		var enc strings.Builder
		appendBatchArg(&enc, prompt)
		want := strings.ReplaceAll(enc.String(), "%%cd:~,%", "%")
		if strings.Contains(out.Text, "leaked") {
			t.Errorf("cmd.exe expanded a variable in %q", prompt)
		}
		if wintest.UnderWine() && strings.Contains(prompt, "%") {
			// Wine's cmd.exe removes the % signs (and what stands between two of them when it
			// is no variable) where Windows keeps them; it expands nothing either way.
			t.Logf("under Wine the script printed %q for %q", out.Text, prompt)
			continue
		}
		if !isASCII(want) {
			// cmd.exe's echo writes in the console's code page, not UTF-8: the canary check
			// below still catches a command that ran. (The lane's Windows user is José Müller,
			// so the canary's path is not ASCII there.)
			continue
		}
		if out.Text != want {
			t.Errorf("the script printed %q for the prompt %q", out.Text, prompt)
		}
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("a prompt ran a command through cmd.exe")
	}

	// cmd.exe would end the command at a line break: such an argument is refused.
	job := winJob(t, protocol.KindLLM, `{"prompt":"two\nlines"}`)
	_, err := r.Run(context.Background(), job, nil)
	assertClass(t, err, ErrUnsupported, false, "")
	if !strings.Contains(err.Error(), "stdin") {
		t.Errorf("error %q does not say to use stdin", err)
	}
}

func TestWindowsBatchCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"a", "b-c.d"}, `cmd.exe /e:ON /v:OFF /d /c ""C:\t\x.cmd" a b-c.d"`},
		{[]string{""}, `cmd.exe /e:ON /v:OFF /d /c ""C:\t\x.cmd" """`},
		{[]string{"a b"}, `cmd.exe /e:ON /v:OFF /d /c ""C:\t\x.cmd" "a b""`},
		{[]string{`say "hi"`}, `cmd.exe /e:ON /v:OFF /d /c ""C:\t\x.cmd" "say ""hi""""`},
		{[]string{`%PATH%`}, `cmd.exe /e:ON /v:OFF /d /c ""C:\t\x.cmd" "%%cd:~,%PATH%%cd:~,%""`},
		{[]string{`C:\dir\`}, `cmd.exe /e:ON /v:OFF /d /c ""C:\t\x.cmd" "C:\dir\\""`},
		{[]string{`a\"b`}, `cmd.exe /e:ON /v:OFF /d /c ""C:\t\x.cmd" "a\\""b""`},
	} {
		got, err := batchCommandLine(`C:\t\x.cmd`, tc.args)
		if err != nil || got != tc.want {
			t.Errorf("batchCommandLine(%q) = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
	for _, bad := range []string{"a\nb", "a\rb"} {
		if _, err := batchCommandLine(`C:\t\x.cmd`, []string{bad}); err == nil {
			t.Errorf("batchCommandLine(%q) accepted a line break", bad)
		}
	}
	if _, err := batchCommandLine(`C:\t\"x.cmd`, nil); err == nil {
		t.Error("a script path with a quote was accepted")
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
