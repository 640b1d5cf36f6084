// openai.go: the openai backend, which runs jobs on an OpenAI-compatible server: its models,
// and the image, speech and transcription jobs (llm jobs are in openai_chat.go).
package engine

import (
	"bufio"
	"bytes"
	"cmp"
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
	"slices"
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
	// ps is Ollama's last list of loaded models (vram.go).
	ps figureCache[[]psModel]
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

// models lists what the server serves, from its /models: all of it when no models are
// configured, else the configured ones it has (matchModels). A server whose /models cannot be
// read but which is configured with models is up with those: whisper-server has no /models, and
// then nothing can check them.
func (o *openAI) models(ctx context.Context) ([]string, error) {
	if len(o.cfg.Models) == 0 {
		if ms, ok, err := o.modelsOfKind(ctx); ok {
			return ms, err
		}
	}
	req, err := o.newRequest(ctx, http.MethodGet, "/models", nil, "")
	if err != nil {
		return nil, err
	}
	resp, err := send(ctx, ctx, o.client, req, "openai")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	served, listErr := readModelList(resp)
	if len(o.cfg.Models) == 0 {
		return withUntagged(served), listErr
	}
	if listErr != nil {
		return o.cfg.Models, nil
	}
	have, _ := matchModels(o.cfg.Models, served)
	if len(have) == 0 {
		return nil, fmt.Errorf("the server has none of the configured models (%s); it serves %s: load one, or change models in the config",
			strings.Join(o.cfg.Models, ", "), strings.Join(served, ", "))
	}
	return have, nil
}

// capabilityOfKind is the word LocalAI's /models/capabilities uses for the models of a kind.
func capabilityOfKind(k protocol.Kind) string {
	switch k {
	case protocol.KindLLM:
		return "chat"
	case protocol.KindImage:
		return "image"
	case protocol.KindTTS:
		return "tts"
	case protocol.KindSTT:
		return "transcript"
	}
	return ""
}

// modelsOfKind asks LocalAI's GET /models/capabilities for the models of this kind, since its
// /models lists every model whatever its kind (a chat job sent to a speech model fails). ok is
// false when the server has no such list (every other server: a 404), or it says nothing of
// capabilities; then /models is read as for any server. A list without a model of the kind is
// an error, so that the kind is down saying why rather than offering models of other kinds.
func (o *openAI) modelsOfKind(ctx context.Context) (models []string, ok bool, err error) {
	want := capabilityOfKind(o.kind)
	req, err := o.newRequest(ctx, http.MethodGet, "/models/capabilities", nil, "")
	if err != nil || want == "" {
		return nil, false, nil
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return nil, false, nil // /models says whether the server is down
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		return nil, false, nil
	}
	var ans struct {
		Data []struct {
			ID           string    `json:"id"`
			Capabilities *[]string `json:"capabilities"`
		} `json:"data"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&ans) != nil {
		return nil, false, nil
	}
	said := false
	for _, d := range ans.Data {
		if d.Capabilities == nil {
			continue // a model file without a config: LocalAI does not know its kind
		}
		said = true
		if d.ID != "" && slices.Contains(*d.Capabilities, want) {
			models = append(models, d.ID)
		}
	}
	if !said {
		return nil, false, nil
	}
	if len(models) == 0 {
		return nil, true, fmt.Errorf("GET /models/capabilities lists no %q model for %s jobs; install one, or list the models in the config", want, o.kind)
	}
	return models, true, nil
}

// readModelList reads a /models answer: an OpenAI "data" list, or the Ollama-style "models" list
// llama-server also sends.
func readModelList(resp *http.Response) ([]string, error) {
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /models: %s; list the models in the config", errorText(resp))
	}
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
	ctx, st := withStall(ctx, o.cfg.stallTimeout())
	defer st.stop()
	switch o.kind {
	case protocol.KindLLM:
		return o.chat(parent, ctx, st, job, progress)
	case protocol.KindImage:
		return o.image(parent, ctx, st, job, progress)
	case protocol.KindTTS:
		return o.speech(parent, ctx, st, job, progress)
	case protocol.KindSTT:
		return o.transcribe(parent, ctx, st, job, progress)
	}
	return Result{}, unsupported("kind", "openai does not run %s jobs", o.kind)
}

// do sends a job's request and puts the answer's body under the stall watchdog; ctx is the
// request's context, from withStall.
func (o *openAI) do(parent, ctx context.Context, st *stall, req *http.Request, name string) (*http.Response, error) {
	resp, err := send(parent, ctx, o.client, req, "openai")
	if err != nil {
		return nil, err
	}
	resp.Body = st.watch(resp.Body, name)
	return resp, nil
}

func (o *openAI) image(parent, ctx context.Context, st *stall, job Job, progress Progress) (Result, error) {
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
		// "steps" for stable-diffusion servers, "step" for LocalAI, which reads only that key.
		body["steps"], body["step"] = *in.Steps, *in.Steps
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
	resp, err := o.do(parent, ctx, st, req, "openai /images/generations")
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
	path, ext, sum, err := o.saveDetected(parent, ctx, job, base64.NewDecoder(base64.StdEncoding, field))
	if err != nil {
		return Result{}, err
	}
	progress(1, "done")
	return Result{File: path, Ext: ext, Prompt: in.Prompt, SHA256: sum}, nil
}

// saveDetected streams r into a spool file whose extension is read from its first bytes; it
// returns the file's path, extension and sha256.
func (o *openAI) saveDetected(parent, ctx context.Context, job Job, r io.Reader) (string, string, string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(12)
	if err != nil && len(head) == 0 {
		if cerr := endOf(parent, ctx, "openai"); cerr != nil {
			return "", "", "", cerr
		}
		if errors.Is(err, errNoField) {
			return "", "", "", backendFailed(true, "openai: the answer has no %s", "b64_json")
		}
		return "", "", "", backendDown("openai", err)
	}
	ext := sniffExt(head)
	if !o.kind.AllowedExt(ext) {
		return "", "", "", backendFailed(true, "openai answered a %s file, not one of %s", orUnknown(ext), strings.Join(o.kind.ResultExts(), ", "))
	}
	f, err := newSpoolFile(job)
	if err != nil {
		return "", "", "", err
	}
	defer f.abort()
	if _, err := io.Copy(f, br); err != nil {
		if cerr := endOf(parent, ctx, "openai"); cerr != nil {
			return "", "", "", cerr
		}
		if errors.Is(err, errNoField) || errors.As(err, new(base64.CorruptInputError)) {
			return "", "", "", backendFailed(true, "openai: bad answer: %v", err)
		}
		return "", "", "", backendDown("openai", err)
	}
	path, err := f.commit(ext)
	return path, ext, f.sum(), err
}

func orUnknown(s string) string {
	if s == "" {
		return "unrecognised"
	}
	return s
}

func (o *openAI) speech(parent, ctx context.Context, st *stall, job Job, progress Progress) (Result, error) {
	in, err := parseTTS(job.Input, o.cfg.limits())
	if err != nil {
		return Result{}, err
	}
	body := map[string]any{"model": job.Model, "input": in.Text, "response_format": "wav"}
	// A voice is sent only when the job or the config names one: LocalAI takes a voice in the
	// request over the model's own, so a default such as "alloy" would speak in a voice the
	// creator never chose, or fail on a model that has no voice of that name.
	if voice := cmp.Or(in.Voice, o.cfg.Voice); voice != "" {
		body["voice"] = voice
	}
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
	resp, err := o.do(parent, ctx, st, req, "openai /audio/speech")
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Result{}, statusError(resp, "openai /audio/speech")
	}
	path, ext, sum, err := o.saveDetected(parent, ctx, job, resp.Body)
	if err != nil {
		return Result{}, err
	}
	progress(1, "done")
	return Result{File: path, Ext: ext, Prompt: in.Text, SHA256: sum}, nil
}

func (o *openAI) transcribe(parent, ctx context.Context, st *stall, job Job, progress Progress) (Result, error) {
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
	resp, err := o.do(parent, ctx, st, req, "openai "+path)
	if err != nil {
		return Result{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Result{}, statusError(resp, "openai "+path)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		if cerr := endOf(parent, ctx, "openai"); cerr != nil {
			return Result{}, cerr
		}
		return Result{}, backendDown("openai "+path, err)
	}
	var ans struct {
		Text     *string `json:"text"`
		Language string  `json:"language"`
		Model    string  `json:"model"`
		Segments []struct {
			Start float64 `json:"start"`
			End   float64 `json:"end"`
			Text  string  `json:"text"`
		} `json:"segments"`
	}
	// whisper-server names no model (and ignores the request's), so its results carry none: the
	// worker cannot tell which one answered.
	res := protocol.STTResult{Language: isoLanguage(in.Language), Segments: protocol.List[protocol.Segment]{}}
	if json.Unmarshal(body, &ans) == nil && ans.Text != nil {
		res.Text = strings.TrimSpace(*ans.Text)
		if ans.Language != "" {
			res.Language = isoLanguage(ans.Language)
		}
		res.Model = answeredModel(ans.Model, job.Model)
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
