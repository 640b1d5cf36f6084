// configrev_test.go tests State.ConfigRev and the saves that change nothing: a Settings form
// saved as it was loaded after the first-run page registered writes nothing and restarts nothing.

package app

import (
	"bytes"
	"context"
	"os"
	"testing"

	"studioworker/engine"
	"studioworker/protocol"
)

// TestSaveUnchangedSettingsAfterRegisterChangesNothing: register as the first-run page does
// (with a ticked espeak-ng engine), then load Settings and save them as they are: the config file
// is the same file with the same bytes, and ConfigRev moved once, at Register.
func TestSaveUnchangedSettingsAfterRegisterChangesNothing(t *testing.T) {
	e := newFirstRunEnv(t)
	ctx := context.Background()
	fakePrograms(t, "espeak-ng")
	if rev := e.worker.Observers().Snapshot().ConfigRev; rev != 0 {
		t.Fatalf("ConfigRev before anything was saved = %d, want 0", rev)
	}
	code, err := e.hub.NewPairingCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tts := engine.BackendConfig{Backend: engine.BackendExec, Command: []string{"espeak-ng", "-w", "{output}", "--", "{text}"}}
	forms := BackendForms{protocol.KindTTS: backendFormOf(tts)}
	if err := e.client.Register(ctx, RegisterRequest{ServerURL: e.url, PairingCode: code, Name: "studio pc", Engines: &forms}); err != nil {
		t.Fatal(err)
	}
	st := e.waitState("registered and connected", func(s State) bool { return s.Registered && s.Conn.State == "connected" })
	if st.ConfigRev != 1 {
		t.Fatalf("ConfigRev after Register = %d, want 1", st.ConfigRev)
	}
	before, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	infoBefore, err := os.Stat(e.path)
	if err != nil {
		t.Fatal(err)
	}

	s, err := e.client.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.ServerURL != e.url || s.Name != "studio pc" || s.Engines[protocol.KindTTS].Backend != BackendExec {
		t.Fatalf("Settings after Register = %+v", s)
	}
	if err := e.client.SaveSettings(ctx, s); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	infoAfter, err := os.Stat(e.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("saving unchanged settings changed the file:\n%s\nbecame\n%s", before, after)
	}
	if !os.SameFile(infoBefore, infoAfter) {
		t.Fatal("saving unchanged settings wrote the config file again (a new file was renamed over it)")
	}
	if rev := e.worker.Observers().Snapshot().ConfigRev; rev != 1 {
		t.Fatalf("ConfigRev after an unchanged save = %d, want 1", rev)
	}
	if len(e.worker.restart) != 0 {
		t.Fatal("saving unchanged settings asked the session to restart")
	}

	// A change moves it once; the same change again does not.
	if err := e.client.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitState("ConfigRev 2 after Pause", func(s State) bool { return s.ConfigRev == 2 })
	if err := e.client.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	s.VRAMThresholdGB = 7
	if err := e.client.SaveSettings(ctx, s); err != nil {
		t.Fatal(err)
	}
	st = e.waitState("ConfigRev after a real edit", func(s State) bool { return s.GPU.CapGB == 7 })
	if st.ConfigRev != 3 {
		t.Fatalf("ConfigRev after Pause, Pause again and one edit = %d, want 3", st.ConfigRev)
	}
	saved, err := LoadConfig(e.path)
	if err != nil || saved.VRAMThresholdGB != 7 || !saved.Paused || saved.Name != "studio pc" {
		t.Fatalf("saved %v %+v", err, saved.Redacted())
	}
}
