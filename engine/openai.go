package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"studioworker/protocol"
)

// openAI runs jobs on an OpenAI-compatible server (Ollama, llama.cpp's llama-server, vLLM,
// LocalAI, LM Studio, whisper.cpp's whisper-server).
type openAI struct {
	kind   protocol.Kind
	cfg    BackendConfig
	client *http.Client
	logger *slog.Logger
}

func (o *openAI) name() string { return BackendOpenAI }

func (o *openAI) newRequest(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, joinURL(o.cfg.URL, path), body)
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("engine: openai request: %w", err)}
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if o.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+o.cfg.APIKey)
	}
	return req, nil
}

// models lists the configured models, or else the server's /models. A server that answers
// /models with an error but is configured with models is up: whisper-server has no /models.
func (o *openAI) models(ctx context.Context) ([]string, error) {
	req, err := o.newRequest(ctx, http.MethodGet, "/models", nil, "")
	if err != nil {
		return nil, err
	}
	resp, err := send(ctx, ctx, o.client, req, "openai")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if len(o.cfg.Models) > 0 {
		return o.cfg.Models, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /models: %s; list the models in the config", errorText(resp))
	}
	// llama-server answers both an OpenAI "data" list and an Ollama-style "models" list.
	var ans struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
		Models []struct {
			Name string `json:"name"`
		} `json:"models"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&ans); err != nil {
		return nil, fmt.Errorf("GET /models: unreadable answer: %w", err)
	}
	var ids []string
	for _, d := range ans.Data {
		if d.ID != "" {
			ids = append(ids, d.ID)
		}
	}
	if len(ids) == 0 {
		for _, m := range ans.Models {
			if m.Name != "" {
				ids = append(ids, m.Name)
			}
		}
	}
	if len(ids) == 0 {
		return nil, errors.New("GET /models lists no models; load one or list the models in the config")
	}
	return ids, nil
}

func (o *openAI) Run(parent context.Context, job Job, progress Progress) (Result, error) {
	progress = monotonic(progress)
	ctx, cancel := context.WithTimeout(parent, o.cfg.timeout())
	defer cancel()
	switch o.kind {
	case protocol.KindLLM:
		return o.chat(parent, ctx, job, progress)
	case protocol.KindImage:
		return o.image(parent, ctx, job, progress)
	case protocol.KindTTS:
		return o.speech(parent, ctx, job, progress)
	case protocol.KindSTT:
		return o.transcribe(parent, ctx, job, progress)
	}
	return Result{}, unsupported("kind", "openai does not run %s jobs", o.kind)
}

// progressTokens is the token count progress is measured against when the job sets no max_tokens.
const progressTokens = 512

func (o *openAI) chat(parent, ctx context.Context, job Job, progress Progress) (Result, error) {
	in, err := parseLLM(job.Input, o.cfg.limits())
	if err != nil {
		return Result{}, err
	}
	body := map[string]any{
		"model":          job.Model,
		"messages":       in.messages,
		"stream":         true,
		"stream_options": map[string]any{"include_usage": true},
	}
	budget := progressTokens
	if in.MaxTokens != nil {
		body["max_tokens"] = *in.MaxTokens
		budget = *in.MaxTokens
	}
	if in.Temperature != nil {
		body["temperature"] = *in.Temperature
	}
	if in.Seed != nil {
		body["seed"] = *in.Seed
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return Result{}, fmt.Errorf("engine: encoding the chat request: %w", err)
	}
	req, err := o.newRequest(ctx, http.MethodPost, "/chat/completions", bytes.NewReader(raw), "application/json")
	if err != nil {
		return Result{}, err
	}
	req.Header.Set("Accept", "text/event-stream")
	resp, err := send(parent, ctx, o.client, req, "openai")
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Result{}, statusError(resp, "openai /chat/completions")
	}
	var res protocol.LLMResult
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		// A server that does not stream answers one completion object.
		res, err = readCompletion(resp.Body)
	} else {
		res, err = readChatStream(resp.Body, func(tokens int) {
			progress(0.95*float64(tokens)/float64(budget), fmt.Sprintf("%d tokens", tokens))
		})
	}
	if err != nil {
		if cerr := ctxError(parent, ctx, "openai"); cerr != nil {
			return Result{}, cerr
		}
		return Result{}, err
	}
	if res.Usage.PromptTokens == 0 {
		for _, m := range in.messages {
			res.Usage.PromptTokens += len(strings.Fields(m.Content))
		}
	}
	out, err := json.Marshal(res)
	if err != nil {
		return Result{}, fmt.Errorf("engine: encoding the llm result: %w", err)
	}
	progress(1, "done")
	return Result{JSON: out, Prompt: in.prompt()}, nil
}

type chatChunk struct {
	Choices []struct {
		Delta struct {
			Content *string `json:"content"`
		} `json:"delta"`
		Message struct {
			Content *string `json:"content"`
		} `json:"message"`
		FinishReason *string `json:"finish_reason"`
	} `json:"choices"`
	Usage *protocol.Usage `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// readChatStream reads a streamed chat completion (server-sent events, "data: {json}" lines
// ending with "data: [DONE]"). Usage comes in a last chunk when the server honours
// stream_options; without it, completion tokens are the content chunks counted.
func readChatStream(body io.Reader, onToken func(int)) (protocol.LLMResult, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var (
		text   strings.Builder
		res    protocol.LLMResult
		chunks int
		usage  *protocol.Usage
		done   bool
	)
	for sc.Scan() {
		line := sc.Bytes()
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue // comments, event names, blank separators
		}
		data = bytes.TrimSpace(data)
		if string(data) == "[DONE]" {
			done = true
			break
		}
		var ch chatChunk
		if err := json.Unmarshal(data, &ch); err != nil {
			return res, backendFailed(true, "openai stream: unreadable chunk: %v", err)
		}
		if len(ch.Error) > 0 && string(ch.Error) != "null" {
			return res, backendFailed(true, "openai stream: %s", errorMessage(ch.Error))
		}
		if ch.Usage != nil {
			usage = ch.Usage
		}
		for _, c := range ch.Choices {
			if c.Delta.Content != nil && *c.Delta.Content != "" {
				text.WriteString(*c.Delta.Content)
				chunks++
				onToken(chunks)
			}
			if c.FinishReason != nil && *c.FinishReason != "" {
				res.FinishReason = *c.FinishReason
			}
		}
	}
	if err := sc.Err(); err != nil {
		return res, backendDown("openai stream", err)
	}
	if !done {
		return res, backendDown("openai stream", io.ErrUnexpectedEOF)
	}
	res.Text = text.String()
	if res.FinishReason == "" {
		res.FinishReason = "stop"
	}
	res.Usage.CompletionTokens = chunks
	if usage != nil {
		res.Usage = *usage
	}
	return res, nil
}

func readCompletion(body io.Reader) (protocol.LLMResult, error) {
	var ch chatChunk
	if err := json.NewDecoder(io.LimitReader(body, 64<<20)).Decode(&ch); err != nil {
		return protocol.LLMResult{}, backendFailed(true, "openai: unreadable completion: %v", err)
	}
	if len(ch.Choices) == 0 || ch.Choices[0].Message.Content == nil {
		return protocol.LLMResult{}, backendFailed(true, "openai: completion without a message")
	}
	res := protocol.LLMResult{Text: *ch.Choices[0].Message.Content, FinishReason: "stop"}
	if f := ch.Choices[0].FinishReason; f != nil && *f != "" {
		res.FinishReason = *f
	}
	if ch.Usage != nil {
		res.Usage = *ch.Usage
	} else {
		res.Usage.CompletionTokens = len(strings.Fields(res.Text))
	}
	return res, nil
}

func errorMessage(raw json.RawMessage) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &e) == nil && e.Message != "" {
		return e.Message
	}
	return string(raw)
}

func (o *openAI) image(parent, ctx context.Context, job Job, progress Progress) (Result, error) {
	in, err := parseImage(job.Input, o.cfg.limits())
	if err != nil {
		return Result{}, err
	}
	body := map[string]any{
		"model":           job.Model,
		"prompt":          in.Prompt,
		"n":               1,
		"size":            fmt.Sprintf("%dx%d", in.Width, in.Height),
		"response_format": "b64_json",
	}
	// Extensions that LocalAI and stable-diffusion servers read; sent only when the job sets them,
	// since OpenAI itself refuses unknown fields.
	if in.NegativePrompt != "" {
		body["negative_prompt"] = in.NegativePrompt
	}
	if in.Seed != nil {
		body["seed"] = *in.Seed
	}
	if in.Steps != nil {
		body["steps"] = *in.Steps
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return Result{}, fmt.Errorf("engine: encoding the image request: %w", err)
	}
	req, err := o.newRequest(ctx, http.MethodPost, "/images/generations", bytes.NewReader(raw), "application/json")
	if err != nil {
		return Result{}, err
	}
	progress(0.05, "generating")
	resp, err := send(parent, ctx, o.client, req, "openai")
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Result{}, statusError(resp, "openai /images/generations")
	}
	progress(0.9, "receiving the image")
	// The image arrives base64 inside JSON; decode it as it streams rather than holding the answer.
	field := &jsonStringField{r: bufio.NewReaderSize(resp.Body, 64<<10), key: "b64_json"}
	path, ext, err := o.saveDetected(parent, ctx, job, base64.NewDecoder(base64.StdEncoding, field))
	if err != nil {
		return Result{}, err
	}
	progress(1, "done")
	return Result{File: path, Ext: ext, Prompt: in.Prompt}, nil
}

// saveDetected streams r into a spool file whose extension is read from its first bytes.
func (o *openAI) saveDetected(parent, ctx context.Context, job Job, r io.Reader) (string, string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(12)
	if err != nil && len(head) == 0 {
		if cerr := ctxError(parent, ctx, "openai"); cerr != nil {
			return "", "", cerr
		}
		if errors.Is(err, errNoField) {
			return "", "", backendFailed(true, "openai: the answer has no %s", "b64_json")
		}
		return "", "", backendDown("openai", err)
	}
	ext := sniffExt(head)
	if !o.kind.AllowedExt(ext) {
		return "", "", backendFailed(true, "openai answered a %s file, not one of %s", orUnknown(ext), strings.Join(o.kind.ResultExts(), ", "))
	}
	f, err := newSpoolFile(job)
	if err != nil {
		return "", "", err
	}
	defer f.abort()
	if _, err := io.Copy(f, br); err != nil {
		if cerr := ctxError(parent, ctx, "openai"); cerr != nil {
			return "", "", cerr
		}
		if errors.Is(err, errNoField) || errors.As(err, new(base64.CorruptInputError)) {
			return "", "", backendFailed(true, "openai: bad answer: %v", err)
		}
		return "", "", backendDown("openai", err)
	}
	path, err := f.commit(ext)
	return path, ext, err
}

func orUnknown(s string) string {
	if s == "" {
		return "unrecognised"
	}
	return s
}

// sniffExt names a file type from its first bytes, "" when unknown.
func sniffExt(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("\x89PNG")):
		return "png"
	case bytes.HasPrefix(b, []byte{0xFF, 0xD8, 0xFF}):
		return "jpg"
	case len(b) >= 12 && string(b[0:4]) == "RIFF" && string(b[8:12]) == "WEBP":
		return "webp"
	case len(b) >= 12 && string(b[0:4]) == "RIFF" && string(b[8:12]) == "WAVE":
		return "wav"
	case bytes.HasPrefix(b, []byte("ID3")), len(b) >= 2 && b[0] == 0xFF && b[1]&0xE0 == 0xE0:
		return "mp3"
	case bytes.HasPrefix(b, []byte("OggS")):
		return "ogg"
	case bytes.HasPrefix(b, []byte("fLaC")):
		return "flac"
	case bytes.HasPrefix(b, []byte("GIF8")):
		return "gif"
	case len(b) >= 8 && string(b[4:8]) == "ftyp":
		return "mp4"
	case bytes.HasPrefix(b, []byte{0x1A, 0x45, 0xDF, 0xA3}):
		return "webm"
	}
	return ""
}

var errNoField = errors.New("field not found in the answer")

// jsonStringField reads the value of the first string field named key in a JSON stream, byte by
// byte as it arrives, undoing the escapes a base64 value can carry ("\/", and "\n" from encoders
// that wrap lines).
type jsonStringField struct {
	r     *bufio.Reader
	key   string
	found bool
	done  bool
}

func (j *jsonStringField) find() error {
	pat := `"` + j.key + `"`
	m := 0
	for m < len(pat) {
		c, err := j.r.ReadByte()
		if err != nil {
			return fmt.Errorf("%w: %s", errNoField, j.key)
		}
		switch {
		case c == pat[m]:
			m++
		case c == pat[0]:
			m = 1
		default:
			m = 0
		}
	}
	for _, want := range []byte{':', '"'} {
		for {
			c, err := j.r.ReadByte()
			if err != nil {
				return fmt.Errorf("%w: %s", errNoField, j.key)
			}
			if c == ' ' || c == '\t' || c == '\n' || c == '\r' {
				continue
			}
			if c != want {
				return fmt.Errorf("%w: %s is not a string", errNoField, j.key)
			}
			break
		}
	}
	j.found = true
	return nil
}

func (j *jsonStringField) Read(p []byte) (int, error) {
	if j.done {
		return 0, io.EOF
	}
	if !j.found {
		if err := j.find(); err != nil {
			return 0, err
		}
	}
	n := 0
	for n < len(p) {
		c, err := j.r.ReadByte()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n, err
		}
		switch c {
		case '"':
			j.done = true
			return n, io.EOF
		case '\\':
			e, err := j.r.ReadByte()
			if err != nil {
				return n, io.ErrUnexpectedEOF
			}
			switch e {
			case '/', '\\':
				p[n] = e
				n++
			case 'n', 'r', 't':
			default:
				return n, fmt.Errorf("unexpected escape \\%c in %s", e, j.key)
			}
		default:
			p[n] = c
			n++
		}
		if n > 0 && j.r.Buffered() == 0 {
			return n, nil // hand over what we have rather than block for more
		}
	}
	return n, nil
}

func (o *openAI) speech(parent, ctx context.Context, job Job, progress Progress) (Result, error) {
	in, err := parseTTS(job.Input, o.cfg.limits())
	if err != nil {
		return Result{}, err
	}
	voice := in.Voice
	if voice == "" {
		voice = o.cfg.Voice
	}
	if voice == "" {
		voice = "alloy"
	}
	body := map[string]any{"model": job.Model, "input": in.Text, "voice": voice, "response_format": "wav"}
	if in.Speed != nil {
		body["speed"] = *in.Speed
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return Result{}, fmt.Errorf("engine: encoding the speech request: %w", err)
	}
	req, err := o.newRequest(ctx, http.MethodPost, "/audio/speech", bytes.NewReader(raw), "application/json")
	if err != nil {
		return Result{}, err
	}
	progress(0.05, "speaking")
	resp, err := send(parent, ctx, o.client, req, "openai")
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Result{}, statusError(resp, "openai /audio/speech")
	}
	path, ext, err := o.saveDetected(parent, ctx, job, resp.Body)
	if err != nil {
		return Result{}, err
	}
	progress(1, "done")
	return Result{File: path, Ext: ext, Prompt: in.Text}, nil
}

func (o *openAI) transcribe(parent, ctx context.Context, job Job, progress Progress) (Result, error) {
	in, err := parseSTT(job.Input, job.InputFile)
	if err != nil {
		return Result{}, err
	}
	audio, err := os.Open(job.InputFile)
	if err != nil {
		return Result{}, &Error{Retry: true, Err: fmt.Errorf("engine: stt input file: %w", err)}
	}
	defer audio.Close()

	// Stream the upload: a pipe fed by a goroutine that this call waits for before returning.
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		err := func() error {
			for _, kv := range [][2]string{{"model", job.Model}, {"response_format", "verbose_json"}, {"language", in.Language}} {
				if kv[1] == "" {
					continue
				}
				if err := mw.WriteField(kv[0], kv[1]); err != nil {
					return err
				}
			}
			part, err := mw.CreateFormFile("file", filepath.Base(job.InputFile))
			if err != nil {
				return err
			}
			if _, err := io.Copy(part, audio); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	defer func() {
		pr.CloseWithError(errors.New("request ended"))
		<-wrote
	}()

	path := o.cfg.TranscriptionPath
	if path == "" {
		path = "/audio/transcriptions"
	}
	req, err := o.newRequest(ctx, http.MethodPost, path, pr, mw.FormDataContentType())
	if err != nil {
		return Result{}, err
	}
	progress(0.05, "transcribing")
	resp, err := send(parent, ctx, o.client, req, "openai")
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Result{}, statusError(resp, "openai "+path)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		if cerr := ctxError(parent, ctx, "openai"); cerr != nil {
			return Result{}, cerr
		}
		return Result{}, backendDown("openai "+path, err)
	}
	var ans struct {
		Text     *string `json:"text"`
		Language string  `json:"language"`
		Segments []struct {
			Start float64 `json:"start"`
			End   float64 `json:"end"`
			Text  string  `json:"text"`
		} `json:"segments"`
	}
	res := protocol.STTResult{Language: in.Language, Segments: protocol.List[protocol.Segment]{}}
	if json.Unmarshal(body, &ans) == nil && ans.Text != nil {
		res.Text = strings.TrimSpace(*ans.Text)
		if ans.Language != "" {
			res.Language = ans.Language
		}
		for _, s := range ans.Segments {
			res.Segments = append(res.Segments, protocol.Segment{Start: s.Start, End: s.End, Text: strings.TrimSpace(s.Text)})
		}
	} else if !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		// A server that ignores response_format answers the transcript as plain text.
		res.Text = strings.TrimSpace(string(body))
	} else {
		return Result{}, backendFailed(true, "openai %s: answer without text", path)
	}
	out, err := json.Marshal(res)
	if err != nil {
		return Result{}, fmt.Errorf("engine: encoding the stt result: %w", err)
	}
	progress(1, "done")
	return Result{JSON: out}, nil
}
