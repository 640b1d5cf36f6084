// The "start with this computer" step of the lane: `autostart on` writes the per-user logon entry
// that brings the window and the tray back at logon (the Settings checkbox does the same), status
// reads it back, and off removes it.
package winlane

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

const runKey = `HKCU\Software\Microsoft\Windows\CurrentVersion\Run`

func (w *wine) autostart(t *testing.T) {
	if code, out := w.run(time.Minute, "autostart", "on"); code != 0 || !strings.Contains(out, "logon entry") {
		t.Fatalf("autostart on: exit %d\n%s", code, out)
	}
	entry, err := w.reg("query", runKey, "/v", "Studio Worker")
	if err != nil {
		t.Fatalf("reg query %s: %v\n%s", runKey, err, entry)
	}
	// The exe's own path, quoted, and --tray (start hidden): the config is the default one.
	want := regexp.MustCompile(`Studio Worker\s+REG_SZ\s+"Z:\\[^"]*\\studio-worker\.exe" --tray\s*$`)
	if !want.MatchString(strings.TrimSpace(entry)) {
		t.Fatalf("the logon entry does not match %s:\n%s", want, entry)
	}
	if code, out := w.run(time.Minute, "autostart", "status"); code != 0 || !strings.Contains(out, "logon entry") {
		t.Fatalf("autostart status: exit %d\n%s", code, out)
	}
	if code, out := w.run(time.Minute, "autostart", "off"); code != 0 {
		t.Fatalf("autostart off: exit %d\n%s", code, out)
	}
	if out, err := w.reg("query", runKey, "/v", "Studio Worker"); err == nil {
		t.Fatalf("the logon entry is still there after autostart off:\n%s", out)
	}
}
