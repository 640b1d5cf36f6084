// settings_sync_test.go: the Settings form follows State.ConfigRev — it reloads when the config
// changed elsewhere and it holds no edits, and keeps Save off rather than save a stale form over a
// newer config when it does (issue 18 finding 1).

package ui

import (
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"

	"studioworker/app"
)

func TestSettingsFormFollowsConfigRev(t *testing.T) {
	tests := []struct {
		name   string
		edit   bool // the creator typed in the form before the config changed elsewhere
		reload bool // the form shows the new config without a click
	}{
		{"untouched form reloads", false, true},
		{"edited form keeps the edits and refuses to save", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, idleState())
			v := h.w.settings
			if tt.edit {
				h.ui.do(func() { v.maxJobs.SetText("3") })
			}
			// Registered elsewhere (the first-run page, the CLI): new address and name.
			h.ctl.mu.Lock()
			h.ctl.settings.ServerURL, h.ctl.settings.Name = "https://other.example.com", "renamed-pc"
			h.ctl.mu.Unlock()
			h.publish(func(s *app.State) { s.ConfigRev++ })
			if tt.reload {
				h.waitUI("the form to reload", func() bool { return v.serverURL.Text == "https://other.example.com" })
				h.ui.do(func() {
					if v.name.Text != "renamed-pc" || v.save.Disabled() {
						t.Errorf("after reload: name %q, save disabled %v", v.name.Text, v.save.Disabled())
					}
				})
				return
			}
			h.waitUI("the stale warning", func() bool { return v.stale })
			h.ui.do(func() {
				if !v.save.Disabled() || !strings.Contains(subtleText(v.status), "changed elsewhere") {
					t.Errorf("stale form: save disabled %v, status %q", v.save.Disabled(), subtleText(v.status))
				}
				if v.maxJobs.Text != "3" || v.serverURL.Text == "https://other.example.com" {
					t.Errorf("the edits were replaced without a click: %q %q", v.maxJobs.Text, v.serverURL.Text)
				}
				test.Tap(v.save) // disabled: nothing happens
			})
			h.sync()
			if n := len(h.ctl.Saved()); n != 0 {
				t.Fatalf("a stale form was saved %d times", n)
			}
			h.ui.do(func() { test.Tap(v.reload) })
			h.waitUI("the reload", func() bool { return !v.stale && v.serverURL.Text == "https://other.example.com" })
			h.ui.do(func() {
				if v.save.Disabled() {
					t.Error("Save is still off after Reload")
				}
			})
		})
	}
}
