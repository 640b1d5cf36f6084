// The Wine side of the lane: a fresh prefix per run (under the test's own folder, with a user name
// that has a space and non-ASCII letters), the test-only ProcessPrng stand-in built from
// packaging/wine, and helpers to run the exe and read back where its files land.
package winlane

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	windowsExe = "dist/windows/studio-worker.exe"
	// laneEnv is set by ./build.sh test: there the lane must run, and a missing Wine or exe fails
	// it. A plain `go test` skips it with a sentence saying how to run it.
	laneEnv = "STUDIO_WINDOWS_LANE"
	// winUser is the Windows user name inside the prefix: a space and non-ASCII letters, as in
	// C:\Users\José Müller, so every path the exe makes is tested with both.
	winUser = "José Müller"
)

// wine is one Wine prefix with the exe ready to run in it.
type wine struct {
	t      *testing.T
	root   string // repository root
	dir    string // the test's folder (Linux path)
	prefix string
	exe    string // Linux path of the exe
	// extraEnv is added to every Wine process's environment (the fake nvml.dll's scenario).
	extraEnv []string
}

func repoRoot(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newWine makes a fresh prefix. Outside ./build.sh test it skips; inside it, anything missing is a
// failure that says what to install.
func newWine(t *testing.T) *wine {
	t.Helper()
	required := os.Getenv(laneEnv) != ""
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		if required {
			t.Fatalf("the Windows lane cannot run: %s", msg)
		}
		t.Skipf("Windows lane not run: %s (./build.sh test runs it; set %s=1 to make a missing part a failure)", msg, laneEnv)
	}
	root := repoRoot(t)
	exe := filepath.Join(root, windowsExe)
	if _, err := os.Stat(exe); err != nil {
		missing("%s is not built: run ./build.sh package", windowsExe)
	}
	for _, tool := range []string{"wine", "wineboot", "wineserver", "x86_64-w64-mingw32-gcc"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing("%s is not installed (./build.sh deps installs Debian's wine, wine64 and gcc-mingw-w64-x86-64)", tool)
		}
	}
	dir := t.TempDir()
	w := &wine{t: t, root: root, dir: dir, prefix: filepath.Join(dir, "prefix"), exe: exe}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	t.Cleanup(func() {
		_ = w.command(context.Background(), "wineserver", "-k").Run()
		_ = w.command(context.Background(), "wineserver", "-w").Run()
	})
	w.startServer()
	boot := w.command(ctx, "wineboot", "-i")
	out := w.outputFile(boot)
	if err := boot.Run(); err != nil {
		t.Fatalf("wineboot -i: %v\n%s", err, out())
	}
	dll := filepath.Join(w.prefix, "drive_c", "windows", "system32", "bcryptprimitives.dll")
	src := filepath.Join(root, "packaging", "wine", "bcryptprimitives.c")
	cc := exec.CommandContext(ctx, "x86_64-w64-mingw32-gcc", "-shared", "-O2", "-o", dll, src, "-ladvapi32", "-Wl,--kill-at")
	if out, err := cc.CombinedOutput(); err != nil {
		t.Fatalf("building the ProcessPrng stand-in: %v\n%s", err, out)
	}
	t.Logf("Wine prefix ready in %.1f s: %s", time.Since(start).Seconds(), w.prefix)
	return w
}

// startServer starts the prefix's wineserver with no standard output of ours. Otherwise the
// first wine process would start it and hand it that command's pipes, and waiting for the command
// would wait for the server too.
func (w *wine) startServer() {
	w.t.Helper()
	if err := os.MkdirAll(w.prefix, 0o755); err != nil {
		w.t.Fatal(err)
	}
	cmd := w.command(context.Background(), "wineserver", "-p")
	if err := cmd.Run(); err != nil {
		w.t.Fatalf("wineserver -p: %v", err)
	}
}

// env is the environment of every Wine process of this prefix.
func (w *wine) env() []string {
	env := append(os.Environ(), w.extraEnv...)
	return append(env,
		"WINEPREFIX="+w.prefix,
		"WINEDEBUG=-all",
		"WINEDLLOVERRIDES=bcryptprimitives=n;winemenubuilder.exe=d;mscoree=d;mshtml=d",
		"USER="+winUser, "LOGNAME="+winUser,
	)
}

func (w *wine) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = w.env()
	cmd.Dir = w.dir
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// worker is the exe with args, run by wine.
func (w *wine) worker(ctx context.Context, args ...string) *exec.Cmd {
	return w.command(ctx, "wine", append([]string{w.exe}, args...)...)
}

// outputFile sends cmd's output to a file of its own and returns a reader of it. A pipe would not
// do: Windows processes that wine starts on the side (services, explorer) inherit it, and waiting
// for the command would wait for them.
func (w *wine) outputFile(cmd *exec.Cmd) func() string {
	w.t.Helper()
	f, err := os.CreateTemp(w.dir, "output-*.txt")
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { f.Close() })
	cmd.Stdout, cmd.Stderr = f, f
	return func() string {
		b, _ := os.ReadFile(f.Name())
		return string(b)
	}
}

// run runs the exe to its end and returns its exit code and output.
func (w *wine) run(timeout time.Duration, args ...string) (int, string) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := w.worker(ctx, args...)
	out := w.outputFile(cmd)
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out()
	case ctx.Err() != nil:
		w.t.Fatalf("studio-worker.exe %s: still running after %s\n%s", strings.Join(args, " "), timeout, out())
	case errors.As(err, &exit):
		return exit.ExitCode(), out()
	}
	w.t.Fatalf("studio-worker.exe %s: %v\n%s", strings.Join(args, " "), err, out())
	return 0, ""
}

// userDir is the Linux path of the Windows user's profile (C:\users\<winUser>).
func (w *wine) userDir() string { return filepath.Join(w.prefix, "drive_c", "users", winUser) }

// appData is %AppData% (os.UserConfigDir on Windows), localAppData %LocalAppData%
// (os.UserCacheDir).
func (w *wine) appData() string      { return filepath.Join(w.userDir(), "AppData", "Roaming") }
func (w *wine) localAppData() string { return filepath.Join(w.userDir(), "AppData", "Local") }

// winPath is how the exe names a Linux path (Wine maps Z:\ to /).
func winPath(p string) string { return `Z:` + strings.ReplaceAll(p, "/", `\`) }

// killAll ends every process of the prefix at once, as a power cut or TerminateProcess would.
func (w *wine) killAll() {
	w.t.Helper()
	if out, err := w.command(context.Background(), "wineserver", "-k").CombinedOutput(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) { // exit 1 = nothing was running
			w.t.Fatalf("wineserver -k: %v\n%s", err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = w.command(ctx, "wineserver", "-w").Run()
	w.startServer()
}
