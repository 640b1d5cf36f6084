package ui

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"fyne.io/fyne/v2/test"

	"studioworker/app"
	"studioworker/protocol"
)

func (c *recordingController) Saved() []app.Settings {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.saved)
}

func (c *recordingController) Tested() []app.BackendForm {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.tested)
}

func (c *recordingController) Registrations() []app.RegisterRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.regs)
}

func (c *recordingController) count(call string) int {
	n := 0
	for _, c := range c.Calls() {
		if c == call {
			n++
		}
	}
	return n
}

func TestSettingsLoadEditSave(t *testing.T) {
	h := newHarness(t, idleState())
	v := h.w.settings
	h.ui.do(func() {
		if v.serverURL.Text != "https://studio.example.com" || v.name.Text != "studio-pc" || v.maxJobs.Text != "1" {
			t.Errorf("loaded %q %q %q", v.serverURL.Text, v.name.Text, v.maxJobs.Text)
		}
		if v.vramCap.Value != 20 || v.vramCapText.Text != "20.0 of 24 GB" {
			t.Errorf("cap slider %v %q", v.vramCap.Value, v.vramCapText.Text)
		}
		llm := v.kinds[protocol.KindLLM]
		if llm.backend.Selected != "OpenAI-compatible server" || !llm.urlRow.Visible() || llm.cmdRow.Visible() {
			t.Errorf("llm form: %q url=%v cmd=%v", llm.backend.Selected, llm.urlRow.Visible(), llm.cmdRow.Visible())
		}
		if llm.apiKey.Text != "" || !strings.Contains(llm.apiKey.PlaceHolder, "set") {
			t.Errorf("the API key field shows %q / %q", llm.apiKey.Text, llm.apiKey.PlaceHolder)
		}
		if v.kinds[protocol.KindSTT].backend.Selected != backendOff || !v.kinds[protocol.KindSTT].test.Disabled() {
			t.Error("a kind absent from the config is not shown as off")
		}

		tts := v.kinds[protocol.KindTTS]
		tts.backend.SetSelected("Command line")
		if !tts.cmdRow.Visible() || tts.urlRow.Visible() {
			t.Error("the command line backend does not show its command")
		}
		tts.command.SetText(`piper --model "en US.onnx" --output_file {output}`)
		tts.models.SetText("amy, ryan")
		v.kinds[protocol.KindImage].backend.SetSelected(backendOff)
		v.maxJobs.SetText("2")
		v.yieldIgn.SetText("obs, resolve")
		test.Tap(v.save)
	})
	waitFor(t, "SaveSettings", func() bool { return len(h.ctl.Saved()) == 1 })
	h.waitUI("Saved.", func() bool { return subtleText(v.status) == "Saved." })
	got := h.ctl.Saved()[0]
	if got.MaxConcurrentJobs != 2 || got.VRAMThresholdGB != 20 || got.ServerURL != "https://studio.example.com" {
		t.Errorf("saved %+v", got)
	}
	tts := got.Engines[protocol.KindTTS]
	if tts.Backend != app.BackendExec || !slices.Equal(tts.Command, []string{"piper", "--model", "en US.onnx", "--output_file", "{output}"}) ||
		!slices.Equal(tts.Models, []string{"amy", "ryan"}) {
		t.Errorf("tts saved as %+v", tts)
	}
	if _, on := got.Engines[protocol.KindImage]; on {
		t.Error("image was turned off but saved")
	}
	llm := got.Engines[protocol.KindLLM]
	if js, _ := json.Marshal(llm); llm.APIKey != "(set)" || !strings.Contains(string(js), `"timeout_s":120`) {
		t.Errorf("fields the form does not show were lost: %+v", llm)
	}
	if !slices.Equal(got.Yield.Ignore, []string{"obs", "resolve"}) || !got.Yield.Enabled || got.Yield.ThresholdMB != 512 {
		t.Errorf("yield %+v", got.Yield)
	}
}

func TestSettingsInvalidFieldsAreNotSaved(t *testing.T) {
	h := newHarness(t, idleState())
	v := h.w.settings
	h.ui.do(func() {
		v.maxJobs.SetText("many")
		v.yieldMB.SetText("-5")
		v.kinds[protocol.KindTTS].backend.SetSelected("Command line")
		v.kinds[protocol.KindTTS].command.SetText(`piper "unclosed`)
		test.Tap(v.save)
		for key, want := range map[string]string{
			"max_concurrent_jobs": "whole number from 0",
			"yield.threshold_mb":  "0 or more",
		} {
			if l := v.errs[key]; !l.Visible() || !strings.Contains(l.Text, want) {
				t.Errorf("%s: visible=%v %q", key, l.Visible(), l.Text)
			}
		}
		if l := v.kinds[protocol.KindTTS].err; !l.Visible() || !strings.Contains(l.Text, "command: a quote is not closed") {
			t.Errorf("tts error: visible=%v %q", l.Visible(), l.Text)
		}
		if l := v.errs["server_url"]; l.Visible() {
			t.Errorf("a valid field shows an error: %q", l.Text)
		}
		if !strings.HasPrefix(subtleText(v.status), "Not saved") {
			t.Errorf("status %q", subtleText(v.status))
		}
	})
	// Fixing the fields clears their messages and saves.
	h.ui.do(func() {
		v.maxJobs.SetText("0")
		v.yieldMB.SetText("256")
		v.kinds[protocol.KindTTS].command.SetText(`piper "closed"`)
		test.Tap(v.save)
		if v.errs["max_concurrent_jobs"].Visible() {
			t.Error("a fixed field still shows its error")
		}
	})
	waitFor(t, "SaveSettings", func() bool { return len(h.ctl.Saved()) == 1 })
	if n := h.ctl.count("SaveSettings"); n != 1 {
		t.Errorf("SaveSettings called %d times: an invalid form reached the worker", n)
	}
}

func TestSettingsWorkerValidationShowsNextToFields(t *testing.T) {
	h := newHarness(t, idleState())
	v := h.w.settings
	h.ctl.failWith("SaveSettings", &app.ValidationError{Fields: map[string]string{
		"server_url": "must start with https:// (or allow insecure)",
		"engines":    "engines.image.models[1]: \"x\" is listed twice\nengines.llm.url: required",
		"settings":   "the disk is full",
	}})
	h.ui.do(func() { test.Tap(v.save) })
	h.waitUI("the messages", func() bool { return v.errs["server_url"].Visible() })
	h.ui.do(func() {
		if got := v.errs["server_url"].Text; got != "must start with https:// (or allow insecure)" {
			t.Errorf("server_url: %q", got)
		}
		if got := v.kinds[protocol.KindImage].err.Text; got != `models[1]: "x" is listed twice` {
			t.Errorf("image: %q", got)
		}
		if got := v.kinds[protocol.KindLLM].err.Text; got != "url: required" {
			t.Errorf("llm: %q", got)
		}
		if got := v.general.Text; got != "settings: the disk is full" {
			t.Errorf("general: %q", got)
		}
		if !v.acc.Items[0].Open || !v.acc.Items[1].Open {
			t.Error("the backends with errors were not opened")
		}
	})
}

func TestBackendTestButton(t *testing.T) {
	h := newHarness(t, idleState())
	v := h.w.settings
	h.ctl.models = []string{"llama3.1:8b", "qwen2.5:7b"}
	h.ui.do(func() {
		v.kinds[protocol.KindLLM].url.SetText("http://127.0.0.1:11434/v1")
		test.Tap(v.kinds[protocol.KindLLM].test)
	})
	waitFor(t, "TestBackend llm", func() bool { return h.ctl.called("TestBackend llm") })
	h.waitUI("the models found", func() bool {
		return subtleText(v.kinds[protocol.KindLLM].result) == "It answered. Models: llama3.1:8b, qwen2.5:7b"
	})
	if got := h.ctl.Tested()[0]; got.URL != "http://127.0.0.1:11434/v1" || got.Backend != app.BackendOpenAI {
		t.Errorf("tested %+v", got)
	}

	h.ctl.failWith("TestBackend", errors.New("connection refused"))
	h.ui.do(func() { test.Tap(v.kinds[protocol.KindLLM].test) })
	h.waitUI("the failure", func() bool { return v.kinds[protocol.KindLLM].err.Visible() })
	h.ui.do(func() {
		if got := v.kinds[protocol.KindLLM].err.Text; got != "Test failed: connection refused" {
			t.Errorf("error %q", got)
		}
	})
}

func TestRegister(t *testing.T) {
	h := newHarness(t, authFailedState())
	v := h.w.settings
	h.ui.do(func() {
		test.Tap(v.register)
		if l := v.errs["pairing_code"]; !l.Visible() {
			t.Error("no message for the missing pairing code")
		}
	})
	if h.ctl.called("Register https://studio.example.com") {
		t.Fatal("Register was called without a pairing code")
	}
	h.ui.do(func() {
		v.pairing.SetText(" 123-456 ")
		test.Tap(v.register)
	})
	waitFor(t, "Register", func() bool { return len(h.ctl.Registrations()) == 1 })
	h.waitUI("registered", func() bool { return subtleText(v.regStatus) == "Registered. Connecting…" })
	want := app.RegisterRequest{ServerURL: "https://studio.example.com", PairingCode: "123-456", Name: "studio-pc"}
	got := h.ctl.Registrations()[0]
	if got.AllowInsecure == nil || *got.AllowInsecure {
		t.Errorf("registered with AllowInsecure %v, want the form's box (off)", got.AllowInsecure)
	}
	got.AllowInsecure = nil
	if got != want {
		t.Errorf("registered %+v, want %+v", got, want)
	}
	waitFor(t, "the settings to reload", func() bool { return h.ctl.count("Settings") == 2 })
	h.ui.do(func() {
		if v.pairing.Text != "" {
			t.Error("the pairing code stays in the field after use")
		}
	})
}

func TestServiceCheckbox(t *testing.T) {
	h := newHarness(t, idleState())
	v := h.w.settings
	shows := func(a app.AutoStart) func() bool {
		return func() bool {
			return v.service.Checked == a.On && !v.service.Disabled() && subtleText(v.serviceStatus) == a.Text+"\n"+a.Where
		}
	}
	h.ui.do(func() { test.Tap(v.service) })
	waitFor(t, "SetService true", func() bool { return h.ctl.called("SetService true") })
	h.waitUI("the logon entry in use", shows(logonEntryState(true)))

	h.ctl.failWith("SetService", errors.New("registry: access is denied"))
	h.ui.do(func() { test.Tap(v.service) })
	waitFor(t, "SetService false", func() bool { return h.ctl.called("SetService false") })
	h.waitUI("the failure", func() bool { return v.errs["auto_start"].Visible() })
	// What the OS still holds after the failure, not the click, is what the window shows.
	h.waitUI("the logon entry still in use", shows(logonEntryState(true)))
	h.ui.do(func() {
		if !strings.Contains(v.errs["auto_start"].Text, "access is denied") {
			t.Errorf("error %q", v.errs["auto_start"].Text)
		}
	})

	h.ctl.failWith("SetService", nil)
	h.ui.do(func() { test.Tap(v.service) })
	h.waitUI("the entry removed", func() bool {
		return !v.service.Checked && !v.service.Disabled() && !v.errs["auto_start"].Visible() &&
			subtleText(v.serviceStatus) == "Off: the worker starts only when you open it"
	})
}

// TestAutoStartFollowsTheOS: the check and the line come from State.AutoStart, which the worker
// reads from the OS; a Windows service is named as such, with or without the logon entry.
func TestAutoStartFollowsTheOS(t *testing.T) {
	h := newHarness(t, idleState())
	v := h.w.settings
	svc := "Installed as a Windows service: runs without the tray or this window (running now)"
	h.publish(func(s *app.State) { s.AutoStart = app.AutoStart{Service: true, Text: svc} })
	h.ui.do(func() {
		if v.service.Checked || subtleText(v.serviceStatus) != svc {
			t.Errorf("service only: checked=%v, line %q", v.service.Checked, subtleText(v.serviceStatus))
		}
	})
	both := logonEntryState(true)
	both.Service, both.Text = true, both.Text+"\n"+svc
	h.publish(func(s *app.State) { s.AutoStart = both })
	h.ui.do(func() {
		want := "Starts at logon (Windows logon entry)\n" + svc + "\n" + testLogonEntry
		if !v.service.Checked || subtleText(v.serviceStatus) != want {
			t.Errorf("both: checked=%v, line %q, want %q", v.service.Checked, subtleText(v.serviceStatus), want)
		}
	})
	// A change made elsewhere (studio-worker autostart off) shows when the worker reports it.
	h.publish(func(s *app.State) { s.AutoStart = logonEntryState(false) })
	h.ui.do(func() {
		if v.service.Checked {
			t.Error("the check stays on after the OS says off")
		}
	})
	if h.ctl.count("SetService true")+h.ctl.count("SetService false") != 0 {
		t.Errorf("showing the State called the controller: %q", h.ctl.Calls())
	}
}

// TestAutoStartClickNotUndoneByAnOlderState: a State sent before the worker made the change (a
// GPU sample, say) must not flip the check back while the click is carried out.
func TestAutoStartClickNotUndoneByAnOlderState(t *testing.T) {
	h := newHarness(t, idleState())
	v := h.w.settings
	gate := h.ctl.hold("SetService")
	h.ui.do(func() { test.Tap(v.service) })
	waitFor(t, "SetService true", func() bool { return h.ctl.called("SetService true") })
	h.publish(func(s *app.State) { s.AutoStart = logonEntryState(false) })
	h.ui.do(func() {
		if !v.service.Checked || !v.service.Disabled() || subtleText(v.serviceStatus) != "Setting up the start at login…" {
			t.Errorf("during the click: checked=%v disabled=%v line %q", v.service.Checked, v.service.Disabled(), subtleText(v.serviceStatus))
		}
	})
	close(gate)
	h.waitUI("the logon entry in use", func() bool {
		return v.service.Checked && !v.service.Disabled() && strings.HasPrefix(subtleText(v.serviceStatus), "Starts at logon (Windows logon entry)")
	})
}

// TestRefusedSaveSaysItOnceNextToTheField: the worker's ValidationError shows by its field, not a
// second time in a red banner above the tabs (seen under Xvfb: "Save the settings failed: invalid
// settings: server_url: …").
func TestRefusedSaveSaysItOnceNextToTheField(t *testing.T) {
	h := newHarness(t, idleState())
	why := "This address uses plain http:// to another computer."
	h.ctl.failWith("SaveSettings", &app.ValidationError{Fields: map[string]string{"server_url": why}})
	v := h.w.settings
	h.ui.do(func() { test.Tap(v.save) })
	h.waitUI("the field's error", func() bool { return v.errs["server_url"].Visible() })
	h.ui.do(func() {
		if v.errs["server_url"].Text != why {
			t.Errorf("field error %q", v.errs["server_url"].Text)
		}
		if h.w.header.bannerBox.Visible() {
			t.Errorf("a banner says it again: %q", h.w.header.banner.Text)
		}
	})
}

// TestBackendTestFailureIsASentenceByTheBackend: the worker's sentence shows by the backend it is
// about, and no banner says it again.
func TestBackendTestFailureIsASentenceByTheBackend(t *testing.T) {
	h := newHarness(t, idleState())
	why := "Nothing answers at 127.0.0.1:8080. Start the backend, or check its address and port."
	h.ctl.failWith("TestBackend", &app.ValidationError{Fields: map[string]string{"engines.llm": why}})
	f := h.w.settings.kinds[protocol.KindLLM]
	h.ui.do(func() { test.Tap(f.test) })
	h.waitUI("the backend's error", func() bool { return f.err.Visible() })
	h.ui.do(func() {
		if f.err.Text != why || h.w.header.bannerBox.Visible() {
			t.Errorf("error %q, banner shown %v", f.err.Text, h.w.header.bannerBox.Visible())
		}
	})
}
