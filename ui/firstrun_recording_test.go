package ui

import (
	"context"

	"studioworker/app"
	"studioworker/protocol"
)

// The first-run part of the recordingController: detection returns testDetected(), and the demo
// publishes the states the real worker goes through.

func (c *recordingController) DetectBackends(ctx context.Context) ([]app.Detected, error) {
	if err := c.record("DetectBackends", ""); err != nil {
		return nil, err
	}
	return testDetected(), nil
}

func (c *recordingController) StartDemo(ctx context.Context) error {
	if err := c.record("StartDemo", ""); err != nil {
		return err
	}
	c.obs.Update(func(s *app.State) {
		s.Demo, s.Registered, s.ServerURL = true, true, "http://127.0.0.1:40123"
		s.Conn = app.ConnInfo{State: connConnected, Server: "127.0.0.1:40123", Since: t0}
	})
	return nil
}

func (c *recordingController) StopDemo(ctx context.Context) error {
	if err := c.record("StopDemo", ""); err != nil {
		return err
	}
	c.obs.Update(func(s *app.State) {
		s.Demo, s.Registered, s.ServerURL = false, false, ""
		s.Conn = app.ConnInfo{State: "unregistered", Since: t0}
	})
	return nil
}

// testDetected is what the detector finds on the test's imaginary machine: two servers for llm,
// one program for tts, and a whisper.cpp without a model.
func testDetected() []app.Detected {
	return []app.Detected{
		{Name: "Ollama", Kind: protocol.KindLLM, Where: "http://127.0.0.1:11434", Models: []string{"llama3.2:latest", "qwen2.5:7b"}, Ready: true,
			Backend: app.BackendForm{Backend: app.BackendOpenAI, URL: "http://127.0.0.1:11434/v1"}},
		{Name: "llama.cpp server", Kind: protocol.KindLLM, Where: "http://127.0.0.1:8080", Models: []string{"qwen2.5-7b-instruct"}, Ready: true,
			Backend: app.BackendForm{Backend: app.BackendOpenAI, URL: "http://127.0.0.1:8080/v1"}},
		{Name: "espeak-ng", Kind: protocol.KindTTS, Where: "/usr/bin/espeak-ng", Ready: true,
			Backend: app.BackendForm{Backend: app.BackendExec, Command: []string{"/usr/bin/espeak-ng", "-w", "{output}", "--", "{text}"}}},
		{Name: "whisper.cpp", Kind: protocol.KindSTT, Where: "/usr/local/bin/whisper-cli",
			Note:    "No ggml model file found next to it: set the model (-m) in Settings > Backends > stt.",
			Backend: app.BackendForm{Backend: app.BackendExec, Command: []string{"/usr/local/bin/whisper-cli", "-m", "MODEL.bin"}}},
	}
}
