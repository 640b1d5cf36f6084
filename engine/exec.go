// exec.go: the exec backend, which runs a command-line program per job; exec_<os>.go hold how
// the program and everything it starts are started and stopped as one.
package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"studioworker/protocol"
)

// Bounds on what a command may make this process hold or log.
const (
	maxStderrLines   = 1000           // lines logged per job; the rest are counted
	maxLineBytes     = maxBackendText // a longer line is cut, saying how much
	keptStderrLines  = 8              // last lines quoted in a failure
	maxJSONOutput    = 16 << 20
	execPipeDrainFor = 2 * time.Second // after the child exits, how long to wait for its pipes
)

// execBackend runs a command-line program per job. Its argv comes from the config and each
// placeholder value is passed as (part of) one argv entry: no shell ever parses a job's text.
type execBackend struct {
	kind   protocol.Kind
	cfg    BackendConfig
	logger *slog.Logger
}

func (e *execBackend) name() string { return BackendExec }

// models checks that the program can be found and, when a probe is configured, that the probe
// succeeds within ctx; the models are the configured ones, or the program's name.
func (e *execBackend) models(ctx context.Context) ([]string, error) {
	if _, err := exec.LookPath(e.cfg.Command[0]); err != nil {
		return nil, err
	}
	if err := e.probe(ctx); err != nil {
		return nil, err
	}
	if len(e.cfg.Models) > 0 {
		return e.cfg.Models, nil
	}
	return []string{filepath.Base(e.cfg.Command[0])}, nil
}

// maxProbeOutput bounds what a probe's output may make this process hold: its last words say why.
const maxProbeOutput = 64 << 10

// probe runs the configured probe, if any, until ctx ends (the refresh's probe timeout, or the
// Test button's). A non-zero exit, a program that cannot start and one still running when ctx
// ends are failures, with the end of what it wrote cut to 1 KiB.
func (e *execBackend) probe(ctx context.Context) error {
	if len(e.cfg.Probe) == 0 {
		return nil
	}
	cmd := exec.CommandContext(ctx, e.cfg.Probe[0], e.cfg.Probe[1:]...)
	out := &tailBuffer{max: maxProbeOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = time.Second // a child that keeps the pipes open does not hold the check
	err := cmd.Run()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (still running when the check gave up)", ctx.Err())
	}
	if text := strings.TrimSpace(out.String()); text != "" {
		return fmt.Errorf("probe %s: %w: %s", e.cfg.Probe[0], err, clip(text, out.total-(len(out.b)-len(text)), true))
	}
	return fmt.Errorf("probe %s: %w", e.cfg.Probe[0], err)
}

// tailBuffer keeps the last max bytes written to it, and counts them all.
type tailBuffer struct {
	max   int
	b     []byte
	total int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.total += len(p)
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

// values returns the placeholder values of a job, validating its input.
func (e *execBackend) values(job Job) (map[string]string, string, error) {
	l := e.cfg.limits()
	v := map[string]string{"model": job.Model}
	itoa := func(p *int) string {
		if p == nil {
			return ""
		}
		return strconv.Itoa(*p)
	}
	seed := func(s *int64) string { return strconv.FormatInt(seedOf(s, job.ID), 10) }
	var prompt string
	switch job.Kind {
	case protocol.KindLLM:
		in, err := parseLLM(job.Input, l)
		if err != nil {
			return nil, "", err
		}
		prompt = in.prompt()
		if len(in.Messages) > 0 {
			var b strings.Builder
			for _, m := range in.messages {
				fmt.Fprintf(&b, "%s: %s\n", m.Role, m.Content)
			}
			v["prompt"] = b.String()
		} else {
			v["prompt"] = in.Prompt
		}
		v["text"] = v["prompt"]
		v["seed"] = seed(in.Seed)
	case protocol.KindImage:
		in, err := parseImage(job.Input, l)
		if err != nil {
			return nil, "", err
		}
		prompt = in.Prompt
		v["prompt"], v["negative_prompt"] = in.Prompt, in.NegativePrompt
		v["width"], v["height"], v["steps"] = strconv.Itoa(in.Width), strconv.Itoa(in.Height), itoa(in.Steps)
		v["seed"] = seed(in.Seed)
	case protocol.KindTTS:
		in, err := parseTTS(job.Input, l)
		if err != nil {
			return nil, "", err
		}
		prompt = in.Text
		v["text"], v["prompt"], v["voice"] = in.Text, in.Text, in.Voice
	case protocol.KindSTT:
		in, err := parseSTT(job.Input, job.InputFile)
		if err != nil {
			return nil, "", err
		}
		v["input"], v["language"] = job.InputFile, in.Language
	case protocol.KindVideo:
		in, err := parseVideo(job.Input, l)
		if err != nil {
			return nil, "", err
		}
		prompt = in.Prompt
		v["prompt"] = in.Prompt
		v["width"], v["height"] = strconv.Itoa(in.Width), strconv.Itoa(in.Height)
		v["frames"], v["fps"] = strconv.Itoa(in.Frames), strconv.Itoa(in.FPS)
		v["seed"] = seed(in.Seed)
	default:
		return nil, "", unsupported("kind", "unknown kind %q", job.Kind)
	}
	return v, prompt, nil
}

func (e *execBackend) Run(parent context.Context, job Job, progress Progress) (Result, error) {
	progress = monotonic(progress)
	values, prompt, err := e.values(job)
	if err != nil {
		return Result{}, err
	}
	if job.SpoolDir == "" {
		return Result{}, &Error{Retry: true, Err: errors.New("engine: job has no spool folder for its output")}
	}
	if err := os.MkdirAll(job.SpoolDir, 0o700); err != nil {
		return Result{}, &Error{Retry: true, Err: fmt.Errorf("engine: spool folder: %w", err)}
	}
	ext := e.cfg.resultExt(job.Kind)
	base := filepath.Join(job.SpoolDir, safeName(job.ID)+"-"+randomHex(6))
	out := base + "." + ext
	values["output"], values["output_base"] = out, base
	defer func() {
		if err != nil {
			os.Remove(out)
		}
	}()

	// strings.Replacer replaces in one pass, so a prompt that contains "{output}" stays text.
	pairs := make([]string, 0, 2*len(execPlaceholders))
	for _, p := range execPlaceholders {
		pairs = append(pairs, "{"+p+"}", values[p])
	}
	fill := strings.NewReplacer(pairs...)
	argv := make([]string, len(e.cfg.Command))
	toStdout := true
	for i, a := range e.cfg.Command {
		if strings.Contains(a, "{output}") || strings.Contains(a, "{output_base}") {
			toStdout = false
		}
		argv[i] = fill.Replace(a)
	}
	if strings.Contains(e.cfg.Stdin, "{output}") || strings.Contains(e.cfg.Stdin, "{output_base}") {
		toStdout = false
	}

	ctx, cancel := context.WithTimeout(parent, e.cfg.timeout())
	defer cancel()
	log := e.logger.With("job_id", job.ID, "kind", job.Kind, "source", "engine.exec")
	stderr := &lineLog{log: log, stream: "stderr"}
	cmd, err := newCommand(job.SpoolDir, argv)
	if err != nil {
		return Result{}, err
	}
	tree, err := newProcTree()
	if err != nil {
		return Result{}, backendDown("exec "+argv[0], err)
	}
	defer tree.close()
	tree.prepare(cmd)
	cmd.Stderr = stderr
	cmd.WaitDelay = execPipeDrainFor
	if e.cfg.Stdin != "" {
		cmd.Stdin = strings.NewReader(fill.Replace(e.cfg.Stdin))
	}
	var stdoutFile *os.File
	stdoutLog := &lineLog{log: log, stream: "stdout"}
	if toStdout {
		stdoutFile, err = os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return Result{}, &Error{Retry: true, Err: fmt.Errorf("engine: output file: %w", err)}
		}
		defer stdoutFile.Close()
		cmd.Stdout = stdoutFile
	} else {
		cmd.Stdout = stdoutLog
	}

	log.Info("engine: starting command", "program", argv[0])
	progress(0.05, "running "+filepath.Base(argv[0]))
	if err = cmd.Start(); err != nil {
		return Result{}, backendDown("exec "+argv[0], err)
	}
	if err = tree.started(cmd.Process); err != nil {
		// The child is not under control (on Windows it is still suspended): end it rather
		// than run a job that could not be stopped.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		err = backendDown("exec "+argv[0], err)
		return Result{}, err
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var runErr error
	select {
	case runErr = <-waited:
	case <-ctx.Done():
		// Ask the whole tree to stop, then kill it after the grace period.
		tree.terminate()
		grace := time.NewTimer(e.cfg.killGrace())
		select {
		case <-waited:
			grace.Stop()
		case <-grace.C:
			log.Warn("engine: command ignored SIGTERM; killing its process group", "grace", e.cfg.killGrace())
			tree.kill()
			<-waited
		}
		tree.kill() // what the leader left behind in its group
		stderr.flush()
		stdoutLog.flush()
		err = ctxError(parent, ctx, "exec "+filepath.Base(argv[0]))
		return Result{}, err
	}
	stderr.flush()
	stdoutLog.flush()
	if runErr != nil {
		retry := e.cfg.NonZeroExitRetryable == nil || *e.cfg.NonZeroExitRetryable
		err = backendFailed(retry, "%s: %v%s", filepath.Base(argv[0]), runErr, stderr.lastLines())
		return Result{}, err
	}
	if stdoutFile != nil {
		if err = stdoutFile.Close(); err != nil {
			err = &Error{Retry: true, Err: fmt.Errorf("engine: output file: %w", err)}
			return Result{}, err
		}
	}
	st, statErr := os.Stat(out)
	if statErr != nil || st.Size() == 0 {
		retry := e.cfg.NonZeroExitRetryable == nil || *e.cfg.NonZeroExitRetryable
		err = backendFailed(retry, "%s exited without writing its output to %s%s", filepath.Base(argv[0]), out, stderr.lastLines())
		return Result{}, err
	}
	if !job.Kind.BinaryResult() {
		var obj protocol.Object
		obj, err = e.jsonResult(job, out, values)
		os.Remove(out) // JSON results travel in the frame; the file was only the tool's way to say it
		if err != nil {
			return Result{}, err
		}
		progress(1, "done")
		return Result{JSON: obj, Prompt: prompt}, nil
	}
	progress(1, "done")
	return Result{File: out, Ext: ext, Prompt: prompt}, nil
}

// jsonResult turns a command's output file into an llm or stt result. It takes plain text, an
// object already in the result's shape ({"text": ...}), or whisper.cpp's -oj JSON.
func (e *execBackend) jsonResult(job Job, path string, values map[string]string) (protocol.Object, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &Error{Retry: true, Err: fmt.Errorf("engine: output file: %w", err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJSONOutput+1))
	if err != nil {
		return nil, &Error{Retry: true, Err: fmt.Errorf("engine: output file: %w", err)}
	}
	if len(data) > maxJSONOutput {
		return nil, backendFailed(true, "the command's output is over %d bytes", maxJSONOutput)
	}
	trimmed := bytes.TrimSpace(data)
	var v any
	switch job.Kind {
	case protocol.KindLLM:
		res := protocol.LLMResult{FinishReason: "stop"}
		if json.Unmarshal(trimmed, &res) != nil || !bytes.HasPrefix(trimmed, []byte("{")) {
			res = protocol.LLMResult{Text: string(trimmed), FinishReason: "stop"}
		}
		if res.FinishReason == "" {
			res.FinishReason = "stop"
		}
		if res.Usage == (protocol.Usage{}) {
			res.Usage = protocol.Usage{PromptTokens: len(strings.Fields(values["prompt"])), CompletionTokens: len(strings.Fields(res.Text))}
		}
		v = res
	case protocol.KindSTT:
		v = parseTranscript(trimmed, values["language"], job.Model)
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("engine: encoding the result: %w", err)
	}
	return out, nil
}

// parseTranscript reads whisper.cpp's JSON (-oj), an OpenAI-shaped transcript, or plain text;
// language and model are the job's. The language is always an ISO 639-1 code, and the model one
// the output names when it is not the job's.
func parseTranscript(data []byte, language, model string) protocol.STTResult {
	res := parseTranscriptAsIs(data, language, model)
	res.Language = isoLanguage(res.Language)
	res.Model = answeredModel(res.Model, model)
	return res
}

func parseTranscriptAsIs(data []byte, language, model string) protocol.STTResult {
	res := protocol.STTResult{Language: language, Segments: protocol.List[protocol.Segment]{}}
	var w struct {
		// whisper.cpp's -oj: "params": {"model": "models/ggml-base.en.bin", ...}; its top-level
		// "model" is an object describing the weights, an OpenAI-shaped answer's a name.
		Params struct {
			Model string `json:"model"`
		} `json:"params"`
		Model  json.RawMessage `json:"model"`
		Result struct {
			Language string `json:"language"`
		} `json:"result"`
		Transcription []struct {
			Offsets struct {
				From, To float64
			} `json:"offsets"`
			Text string `json:"text"`
		} `json:"transcription"`
		Text     *string            `json:"text"`
		Language string             `json:"language"`
		Segments []protocol.Segment `json:"segments"`
	}
	if !bytes.HasPrefix(data, []byte("{")) || json.Unmarshal(data, &w) != nil {
		res.Text = string(data)
		return res
	}
	switch {
	case w.Transcription != nil:
		var parts []string
		for _, t := range w.Transcription {
			text := strings.TrimSpace(t.Text)
			parts = append(parts, text)
			res.Segments = append(res.Segments, protocol.Segment{Start: t.Offsets.From / 1000, End: t.Offsets.To / 1000, Text: text})
		}
		res.Text = strings.Join(parts, " ")
		if w.Result.Language != "" {
			res.Language = w.Result.Language
		}
		res.Model = weightsName(w.Params.Model, model)
	case w.Text != nil:
		res.Text = strings.TrimSpace(*w.Text)
		if w.Language != "" {
			res.Language = w.Language
		}
		res.Segments = append(res.Segments, w.Segments...)
		var name string
		if json.Unmarshal(w.Model, &name) == nil {
			res.Model = name
		}
	default:
		res.Text = string(data)
	}
	return res
}

// weightsName is the model a whisper.cpp output names by its weights file: the file's name
// without its folders, which may hold the creator's user name, nor ".bin". A job that asked for the
// file by that name or with ".bin" asked for this model.
func weightsName(path, asked string) string {
	name := path[strings.LastIndexAny(path, `/\`)+1:]
	if strings.EqualFold(name, asked) {
		return asked
	}
	return strings.TrimSuffix(name, ".bin")
}

// lineLog logs what a command writes, one log entry per line, within bounds, and keeps the last
// lines to quote in a failure.
type lineLog struct {
	log     *slog.Logger
	stream  string
	mu      sync.Mutex
	partial []byte
	over    int // bytes of the current line past maxLineBytes
	logged  int
	dropped int
	last    []string
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			l.keep(p)
			break
		}
		l.keep(p[:i])
		l.emit()
		p = p[i+1:]
	}
	return n, nil
}

// keep adds p to the current line, up to maxLineBytes, counting the rest.
func (l *lineLog) keep(p []byte) {
	room := max(0, maxLineBytes-len(l.partial))
	l.partial = append(l.partial, p[:min(room, len(p))]...)
	l.over += len(p) - min(room, len(p))
}

func (l *lineLog) emit() {
	line := strings.TrimRight(clip(string(l.partial), len(l.partial)+l.over, false), "\r")
	l.partial, l.over = l.partial[:0], 0
	if strings.TrimSpace(line) == "" {
		return
	}
	if len(l.last) == keptStderrLines {
		l.last = l.last[1:]
	}
	l.last = append(l.last, line)
	if l.logged >= maxStderrLines {
		l.dropped++
		return
	}
	l.logged++
	l.log.Info(line, "stream", l.stream)
}

// flush logs a last unterminated line and how many lines were not logged.
func (l *lineLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.partial) > 0 {
		l.emit()
	}
	if l.dropped > 0 {
		l.log.Warn(fmt.Sprintf("engine: %d more %s lines were not logged", l.dropped, l.stream), "stream", l.stream)
		l.dropped = 0
	}
}

// lastLines quotes the last stderr lines for an error message, their last maxBackendText bytes.
func (l *lineLog) lastLines() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.last) == 0 {
		return ""
	}
	joined := strings.Join(l.last, " | ")
	return ": " + clip(joined, len(joined), true)
}
