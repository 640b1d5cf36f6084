// locale_test.go: the real binary under Debian's default LANG=C.UTF-8 prints what it was asked
// and nothing of Fyne's (issue 18 finding 8: "Fyne error: Error parsing user locale C" on every
// command, --help too); third_party/go-locale holds the fix.

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestNoFyneLocaleErrorUnderCUTF8(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the real binary; skipped with -short")
	}
	bin := filepath.Join(t.TempDir(), "studio-worker")
	if out, err := exec.Command("go", "build", "-tags", "migrated_fynedo", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, lang := range []string{"C.UTF-8", "C.utf8", "C", "POSIX", "en_US.UTF-8"} {
		for _, args := range [][]string{{"version"}, {"--help"}} {
			cmd := exec.Command(bin, args...)
			cmd.Env = append(os.Environ(), "LANG="+lang, "LC_ALL=", "LC_MESSAGES=", "LANGUAGE=")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("LANG=%s %v: %v\n%s", lang, args, err, out)
			}
			if strings.Contains(string(out), "Fyne error") || strings.Contains(string(out), "locale") {
				t.Errorf("LANG=%s %v printed Fyne's locale error:\n%s", lang, args, out)
			}
		}
	}
}
