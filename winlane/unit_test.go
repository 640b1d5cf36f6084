// TestWindowsUnitTests runs the Go tests written for Windows (every test defined in a file named
// *_windows_test.go, and the whole of the packages listed in wholePackages) as Windows test
// binaries under Wine, so the code behind each OS split is tested on the OS it was written for.
package winlane

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// wholePackages are run entirely under Wine: every one of their tests is written to run there
// (their temporary folders are removed with durable.RemoveAll, which Wine 8 needs).
var wholePackages = map[string]bool{"internal/durable": true, "internal/diskspace": true}

func TestWindowsUnitTests(t *testing.T) {
	if testing.Short() {
		t.Skip("the Windows unit tests run under Wine; skipped with -short")
	}
	w := newWine(t)
	pkgs := windowsTests(t, w.root)
	if len(pkgs) == 0 {
		t.Fatal("found no *_windows_test.go file: the lane would test nothing")
	}
	names := make([]string, 0, len(pkgs))
	for p := range pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, pkg := range names {
		t.Run(pkg, func(t *testing.T) {
			bin := filepath.Join(w.dir, strings.ReplaceAll(pkg, "/", "_")+".test.exe")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			build := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, "./"+pkg)
			build.Dir = w.root
			build.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("cross-compile the tests of %s: %v\n%s", pkg, err, out)
			}
			args := []string{bin, "-test.v", "-test.timeout", "4m"}
			if run := pkgs[pkg]; run != "" {
				args = append(args, "-test.run", run)
			}
			cmd := w.command(ctx, "wine", args...)
			// The prefix is the test's own and thrown away: the tests that install a real
			// Windows service may do so here.
			cmd.Env = append(cmd.Env, "STUDIO_WORKER_TEST_SERVICE=1")
			out := w.outputFile(cmd)
			start := time.Now()
			err := cmd.Run()
			t.Logf("%s under Wine: %.1f s", pkg, time.Since(start).Seconds())
			if err != nil || !strings.Contains(out(), "\nPASS") {
				t.Fatalf("the Windows tests of %s failed under Wine: %v\n%s", pkg, err, out())
			}
			if strings.Contains(out(), "testing: warning: no tests to run") {
				t.Fatalf("no test of %s ran under Wine (-test.run %s)\n%s", pkg, pkgs[pkg], out())
			}
		})
	}
}

var testFunc = regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\)`)

// windowsTests maps each package folder with Windows tests to the -test.run pattern that selects
// them ("" = all of them).
func windowsTests(t *testing.T, root string) map[string]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "*", "*_windows_test.go"))
	if err != nil {
		t.Fatal(err)
	}
	deeper, _ := filepath.Glob(filepath.Join(root, "*", "*", "*_windows_test.go"))
	files = append(files, deeper...)
	tests := map[string][]string{}
	for _, f := range files {
		if strings.Contains(f, string(filepath.Separator)+"dist"+string(filepath.Separator)) {
			continue
		}
		rel, _ := filepath.Rel(root, filepath.Dir(f))
		rel = filepath.ToSlash(rel)
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range testFunc.FindAllStringSubmatch(string(src), -1) {
			tests[rel] = append(tests[rel], m[1])
		}
	}
	out := map[string]string{}
	for pkg, names := range tests {
		if wholePackages[pkg] {
			out[pkg] = ""
			continue
		}
		out[pkg] = "^(" + strings.Join(names, "|") + ")$"
	}
	for pkg := range wholePackages { // whole packages run even without a *_windows_test.go file
		out[pkg] = ""
	}
	return out
}
