package engine

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"studioworker/protocol"
)

// needProgram skips without the program, except in CI where ./build.sh deps installs it.
func needProgram(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; ./build.sh deps installs it", name)
		}
		t.Skipf("%s is not installed (./build.sh deps installs it)", name)
	}
	return p
}

// recordHandler keeps log records for assertions.
type recordHandler struct {
	mu      sync.Mutex
	records []slog.Record
	attrs   []slog.Attr
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}
func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordProxy{h, append(append([]slog.Attr{}, h.attrs...), as...)}
}
func (h *recordHandler) WithGroup(string) slog.Handler { return h }

type recordProxy struct {
	root  *recordHandler
	attrs []slog.Attr
}

func (p *recordProxy) Enabled(context.Context, slog.Level) bool { return true }
func (p *recordProxy) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(p.attrs...)
	p.root.mu.Lock()
	defer p.root.mu.Unlock()
	p.root.records = append(p.root.records, r)
	return nil
}
func (p *recordProxy) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordProxy{p.root, append(append([]slog.Attr{}, p.attrs...), as...)}
}
func (p *recordProxy) WithGroup(string) slog.Handler { return p }

// find returns the first record whose message contains text, with its attributes.
func (h *recordHandler) find(text string) (map[string]string, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if strings.Contains(r.Message, text) {
			attrs := map[string]string{}
			r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
			return attrs, true
		}
	}
	return nil, false
}

func execConfig(kind protocol.Kind, argv ...string) Config {
	return Config{kind: {Backend: BackendExec, Command: argv}}
}

func TestExecEspeakMakesARealWAV(t *testing.T) {
	needProgram(t, "espeak-ng")
	// "--" ends espeak-ng's options, so a text that starts with "-" is spoken, not parsed.
	r := mustRouter(t, execConfig(protocol.KindTTS, "espeak-ng", "-w", "{output}", "--", "{text}"), Options{})
	caps := r.Refresh(context.Background())
	if got := caps.Models[protocol.KindTTS]; len(got) != 1 || got[0] != "espeak-ng" {
		t.Fatalf("models %v, want [espeak-ng]", got)
	}
	job := newTestJob(t, protocol.KindTTS, "espeak-ng", `{"text":"Hello from the studio worker."}`)
	res, err := r.Run(context.Background(), job, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.Ext != "wav" || filepath.Dir(res.File) != job.SpoolDir {
		t.Fatalf("result %+v", res)
	}
	data, err := os.ReadFile(res.File)
	if err != nil {
		t.Fatal(err)
	}
	info, err := readWAVInfo(res.File)
	if err != nil || string(data[8:12]) != "WAVE" {
		t.Fatalf("not a WAV: %v", err)
	}
	if info.seconds < 0.5 || info.seconds > 10 {
		t.Errorf("speech lasts %.2f s", info.seconds)
	}

	// A text made to look like an option stays text.
	evil := filepath.Join(t.TempDir(), "evil.wav")
	job = newTestJob(t, protocol.KindTTS, "espeak-ng", `{"text":`+quote("-w "+evil+" gotcha")+`}`)
	if res, err = r.Run(context.Background(), job, nil); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := os.Stat(evil); err == nil {
		t.Fatal("a text became an espeak-ng option")
	}
	if info, err := readWAVInfo(res.File); err != nil || info.seconds < 0.5 {
		t.Fatalf("the option-like text was not spoken: %v %+v", err, info)
	}
}

func TestExecPassesPlaceholdersAsSingleArgumentsNeverThroughAShell(t *testing.T) {
	needProgram(t, "printf")
	dir := t.TempDir()
	canary := filepath.Join(dir, "canary")
	r := mustRouter(t, execConfig(protocol.KindLLM, "printf", "%s|%s", "{prompt}", "{model}"), Options{})
	for _, prompt := range []string{
		`"; rm -rf ~`,
		`$(touch ` + canary + `)`,
		"`touch " + canary + "`; touch " + canary,
		`{output} {model} '${HOME}'`,
	} {
		job := newTestJob(t, protocol.KindLLM, "", `{"prompt":`+quote(prompt)+`}`)
		res, err := r.Run(context.Background(), job, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		var out protocol.LLMResult
		if err := json.Unmarshal(res.JSON, &out); err != nil {
			t.Fatal(err)
		}
		if want := prompt + "|printf"; out.Text != want {
			t.Errorf("program saw %q, want %q", out.Text, want)
		}
		if entries, _ := os.ReadDir(job.SpoolDir); len(entries) != 0 {
			t.Errorf("the stdout file of a JSON result was left in the spool")
		}
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("a prompt ran a command")
	}
}

func TestExecStdinAndOutputFileForJSONKinds(t *testing.T) {
	needProgram(t, "sh")
	// The script is configuration (trusted); the job's text reaches it only on stdin.
	whisper := `cat > /dev/null; printf '%s' '{"result":{"language":"de"},"transcription":[{"offsets":{"from":0,"to":1500},"text":" Hallo"},{"offsets":{"from":1500,"to":3000},"text":" Welt"}]}' > "$1.json"`
	cfg := Config{protocol.KindSTT: {Backend: BackendExec, Command: []string{"sh", "-c", whisper, "sh", "{output_base}"}, Stdin: "{input}", Ext: "json"}}
	r := mustRouter(t, cfg, Options{})
	dir := t.TempDir()
	in := filepath.Join(dir, "a.wav")
	writeTestWAV(t, in, 3)
	job := newTestJob(t, protocol.KindSTT, "", `{}`)
	job.InputFile = in
	res, err := r.Run(context.Background(), job, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var out protocol.STTResult
	if err := json.Unmarshal(res.JSON, &out); err != nil {
		t.Fatal(err)
	}
	if out.Text != "Hallo Welt" || out.Language != "de" || len(out.Segments) != 2 || out.Segments[1].End != 3 {
		t.Errorf("transcript %+v", out)
	}
}

func TestExecNonZeroExitIsRetryableUnlessConfiguredAndStderrIsLogged(t *testing.T) {
	needProgram(t, "sh")
	for _, retry := range []bool{true, false} {
		h := &recordHandler{}
		bc := BackendConfig{Backend: BackendExec, Command: []string{"sh", "-c", "echo 'loading model' >&2; echo 'CUDA out of memory' >&2; exit 3"}}
		if !retry {
			bc.NonZeroExitRetryable = &retry
		}
		r := mustRouter(t, Config{protocol.KindImage: bc}, Options{Logger: slog.New(h)})
		job := newTestJob(t, protocol.KindImage, "", `{"prompt":"x","width":8,"height":8}`)
		_, err := r.Run(context.Background(), job, nil)
		assertClass(t, err, ErrBackendFailed, retry, "")
		if !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "CUDA out of memory") {
			t.Errorf("error %q does not say the exit status and the last stderr line", err)
		}
		attrs, ok := h.find("CUDA out of memory")
		if !ok || attrs["job_id"] != job.ID || attrs["stream"] != "stderr" {
			t.Errorf("stderr line not logged with the job id: %v %v", ok, attrs)
		}
		if entries, _ := os.ReadDir(job.SpoolDir); len(entries) != 0 {
			t.Errorf("a failed job left %d files in the spool", len(entries))
		}
	}
}

func TestExecMissingProgramOrOutput(t *testing.T) {
	needProgram(t, "true")
	r := mustRouter(t, execConfig(protocol.KindTTS, "no-such-program-studio", "{output}"), Options{})
	caps := r.Refresh(context.Background())
	if _, up := caps.Models[protocol.KindTTS]; up || caps.Down[protocol.KindTTS] == "" {
		t.Fatalf("a missing program is not reported down: %+v", caps)
	}
	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindTTS, "", `{"text":"hi"}`), nil)
	assertClass(t, err, ErrBackendDown, true, "")

	r = mustRouter(t, execConfig(protocol.KindTTS, "true", "{output}"), Options{})
	_, err = r.Run(context.Background(), newTestJob(t, protocol.KindTTS, "", `{"text":"hi"}`), nil)
	assertClass(t, err, ErrBackendFailed, true, "")
	if !strings.Contains(err.Error(), "without writing its output") {
		t.Errorf("error %q does not say the output is missing", err)
	}
}

// waitForFile polls until path exists and returns its trimmed content.
func waitForFile(t *testing.T, path string) string {
	t.Helper()
	var data []byte
	waitFor(t, path, 20*time.Second, func() bool {
		var err error
		data, err = os.ReadFile(path)
		return err == nil && strings.HasSuffix(string(data), "\n")
	})
	return strings.TrimSpace(string(data))
}
