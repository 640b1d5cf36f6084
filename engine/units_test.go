package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"studioworker/protocol"
)

func TestSniffExt(t *testing.T) {
	tests := map[string]string{
		"\x89PNG\r\n\x1a\n....": "png", "\xff\xd8\xff\xe0JFIF": "jpg", "RIFF\x00\x00\x00\x00WEBPVP8 ": "webp",
		"RIFF\x00\x00\x00\x00WAVEfmt ": "wav", "ID3\x04\x00": "mp3", "\xff\xfb\x90\x00": "mp3", "OggS\x00\x02": "ogg",
		"fLaC\x00\x00": "flac", "GIF89a": "gif", "\x00\x00\x00\x20ftypisom": "mp4", "\x1a\x45\xdf\xa3\x01": "webm",
		"<html>": "",
	}
	for in, want := range tests {
		if got := sniffExt([]byte(in)); got != want {
			t.Errorf("sniffExt(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestComboOptionsBothShapes(t *testing.T) {
	for raw, want := range map[string][]string{
		`[["a.safetensors","b.safetensors"],{"tooltip":"x"}]`: {"a.safetensors", "b.safetensors"},
		`["COMBO",{"options":["c.ckpt"]}]`:                    {"c.ckpt"},
		`["INT",{"default":1}]`:                               nil,
	} {
		if got := comboOptions(json.RawMessage(raw)); !slices.Equal(got, want) {
			t.Errorf("comboOptions(%s) = %v, want %v", raw, got, want)
		}
	}
}

func TestParseTranscriptShapes(t *testing.T) {
	// whisper-cli -oj, as whisper.cpp's cli writes it (a name, not a path, leaves this worker).
	cli := `{"systeminfo":"AVX = 1 | ...","model":{"type":"base","multilingual":false,"vocab":51864,"mels":80,"ftype":1},` +
		`"params":{"model":"/home/ana/models/ggml-base.en.bin","language":"en","translate":false},"result":{"language":"en"},` +
		`"transcription":[{"timestamps":{"from":"00:00:00,000","to":"00:00:01,100"},"offsets":{"from":0,"to":1100},"text":" Hello"}]}`
	hello := protocol.List[protocol.Segment]{{Start: 0, End: 1.1, Text: "Hello"}}
	tests := []struct {
		name, in, language, model string
		want                      protocol.STTResult
	}{
		{"plain text", "hello there", "en", "whisper-base", protocol.STTResult{Text: "hello there", Language: "en", Segments: protocol.List[protocol.Segment]{}}},
		{"openai shape", `{"text":" hi ","language":"fr","segments":[{"start":0,"end":1,"text":"hi"}]}`, "en", "whisper-base",
			protocol.STTResult{Text: "hi", Language: "fr", Segments: protocol.List[protocol.Segment]{{Start: 0, End: 1, Text: "hi"}}}},
		{"openai shape, a language name and a model", `{"text":"hi","language":"French","model":"large-v3"}`, "", "whisper-base",
			protocol.STTResult{Text: "hi", Language: "fr", Segments: protocol.List[protocol.Segment]{}, Model: "large-v3"}},
		{"other JSON", `{"foo":1}`, "en", "whisper-base", protocol.STTResult{Text: `{"foo":1}`, Language: "en", Segments: protocol.List[protocol.Segment]{}}},
		{"the job's language as a name", "hallo", "German", "whisper-base", protocol.STTResult{Text: "hallo", Language: "de", Segments: protocol.List[protocol.Segment]{}}},
		{"whisper-cli, another model than the job's", cli, "", "whisper-base", protocol.STTResult{Text: "Hello", Language: "en", Segments: hello, Model: "ggml-base.en"}},
		{"whisper-cli, the job's model", cli, "", "ggml-base.en", protocol.STTResult{Text: "Hello", Language: "en", Segments: hello}},
		{"whisper-cli, the job's file name", cli, "", "ggml-base.en.bin", protocol.STTResult{Text: "Hello", Language: "en", Segments: hello}},
		{"whisper-cli on Windows", strings.Replace(cli, `/home/ana/models/`, `C:\\Users\\ana\\models\\`, 1), "", "whisper-base",
			protocol.STTResult{Text: "Hello", Language: "en", Segments: hello, Model: "ggml-base.en"}},
	}
	for _, tc := range tests {
		got := parseTranscript([]byte(tc.in), tc.language, tc.model)
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(tc.want)
		if string(a) != string(b) {
			t.Errorf("%s: %s, want %s", tc.name, a, b)
		}
	}
}

func TestLineLogIsBounded(t *testing.T) {
	h := &recordHandler{}
	l := &lineLog{log: slog.New(h), stream: "stderr"}
	fmt.Fprintf(l, "%s\n", strings.Repeat("x", 10*maxLineBytes))
	for i := 0; i < maxStderrLines+50; i++ {
		fmt.Fprintf(l, "line %d\n", i)
	}
	l.Write([]byte("no newline at the end"))
	l.flush()
	h.mu.Lock()
	n := len(h.records)
	first := h.records[0].Message
	h.mu.Unlock()
	if n != maxStderrLines+1 {
		t.Errorf("%d records, want %d lines and one count", n, maxStderrLines+1)
	}
	if len(first) > maxBackendText || !strings.HasPrefix(first, "xxx") || !strings.HasSuffix(first, "x…(9.0 KiB cut)") {
		t.Errorf("a 10 KiB line logged as %d bytes ending %q, want it cut to at most %d saying how much", len(first), first[max(0, len(first)-20):], maxBackendText)
	}
	if _, ok := h.find("52 more stderr lines were not logged"); !ok {
		t.Error("the dropped lines are not counted")
	}
	if !strings.HasSuffix(l.lastLines(), "no newline at the end") {
		t.Errorf("last lines %q", l.lastLines())
	}
}

func TestChatStreamErrorChunkAndBadVideoInput(t *testing.T) {
	_, err := readChatStream(strings.NewReader("data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"slot unavailable\"}}\n\n"), func(int) {})
	assertClass(t, err, ErrBackendFailed, true, "")
	if !strings.Contains(err.Error(), "slot unavailable") {
		t.Errorf("error %q", err)
	}

	r, err := NewRouter(DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for input, field := range map[string]string{
		`{"prompt":"x","width":8,"height":8,"fps":5}`:              "frames",
		`{"prompt":"x","width":8,"height":8,"frames":2,"fps":500}`: "fps",
		`{"width":8,"height":8,"frames":2,"fps":5}`:                "prompt",
	} {
		_, err := r.Run(context.Background(), newTestJob(t, protocol.KindVideo, "synthetic", input), nil)
		assertClass(t, err, ErrInvalidInput, false, field)
	}
}

func TestComfyUIExecutionErrorSeenThroughHistoryPolling(t *testing.T) {
	f := newFakeComfyUI(t, true)
	r := mustRouter(t, exampleConfig(t, f.URL), Options{})
	r.Refresh(context.Background())
	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindImage, "sdxl_base.safetensors", `{"prompt":"fail-node","width":64,"height":64}`), nil)
	assertClass(t, err, ErrBackendFailed, true, "")
	if !strings.Contains(err.Error(), "CUDA out of memory") {
		t.Errorf("error %q does not carry the history's exception", err)
	}
}
