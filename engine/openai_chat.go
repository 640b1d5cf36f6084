// openai_chat.go: the openai backend's llm jobs: the streamed chat completion and how its
// server-sent events are read.
package engine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"studioworker/protocol"
)

// progressTokens is the token count progress is measured against when the job sets no max_tokens.
const progressTokens = 512

func (o *openAI) chat(parent, ctx context.Context, st *stall, job Job, progress Progress) (Result, error) {
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
	resp, err := o.do(parent, ctx, st, req, "openai /chat/completions")
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
		res, err = readChatStream(resp.Body, tokenProgress(progress, budget))
	}
	if err != nil {
		if cerr := endOf(parent, ctx, "openai"); cerr != nil {
			return Result{}, cerr
		}
		return Result{}, err
	}
	res.Model = answeredModel(res.Model, job.Model)
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

// tokenProgress is the stream's callback, called once per token: progress against budget tokens,
// 95 % at most until the answer is read, and "N tokens". It costs one short string per token,
// built in place (Itoa and + made two).
func tokenProgress(progress Progress, budget int) func(int) {
	return func(tokens int) {
		var b [32]byte
		msg := string(append(strconv.AppendInt(b[:0], int64(tokens), 10), " tokens"...))
		progress(0.95*float64(tokens)/float64(budget), msg)
	}
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
	Model string          `json:"model"`
}

// streamChunk is what readChatStream reads of one chunk, reused from chunk to chunk: with one
// json.Decoder a chunk then costs the token's string and nothing else (issue 16: the per-token
// cost). A null or absent content or finish_reason leaves the field as reset left it.
type streamChunk struct {
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *protocol.Usage `json:"usage"`
	Error json.RawMessage `json:"error"`
	Model json.RawMessage `json:"model"` // raw, so its buffer is reused: only the first is read
}

// reset empties c for the next chunk, keeping its buffers: the decoder leaves alone the fields a
// chunk does not carry, and decodes a slice's elements over what they held.
func (c *streamChunk) reset() {
	clear(c.Choices[:cap(c.Choices)])
	c.Choices = c.Choices[:0]
	c.Usage = nil
	c.Error = c.Error[:0]
	c.Model = c.Model[:0]
}

// sseData is the data of a server-sent event stream's "data:" lines as one stream of JSON
// values, a newline after each, for one json.Decoder: unlike json.Unmarshal per line, a Decoder
// keeps its scanner and decoding state from value to value, which is most of what a chunk cost
// (issue 16). It ends (io.EOF) at "data: [DONE]", at an "error:" line, at an empty data line and
// at the end of the body, and says which; a failed read of the body is passed on and kept.
type sseData struct {
	sc      *bufio.Scanner
	pending []byte // the rest of the current line's data, then its newline
	sep     bool   // the newline after the current line's data is due
	done    bool   // "data: [DONE]" was read
	errLine []byte // an "error:" line's text (older llama-server), copied
	empty   bool   // a "data:" line without data
	readErr error  // the scanner's error
}

func (s *sseData) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if s.sep {
			s.sep = false
			p[0] = '\n'
			return 1, nil
		}
		if s.done || s.errLine != nil || s.empty || s.readErr != nil {
			return 0, io.EOF
		}
		if !s.sc.Scan() {
			if s.readErr = s.sc.Err(); s.readErr != nil {
				return 0, s.readErr
			}
			return 0, io.EOF
		}
		line := s.sc.Bytes()
		if data, ok := bytes.CutPrefix(line, []byte("error:")); ok {
			s.errLine = append([]byte{}, data...)
			return 0, io.EOF
		}
		data, ok := bytes.CutPrefix(line, []byte("data:"))
		if !ok {
			continue // comments, event names, blank separators
		}
		data = bytes.TrimSpace(data)
		switch {
		case string(data) == "[DONE]":
			s.done = true
			return 0, io.EOF
		case len(data) == 0:
			s.empty = true
			return 0, io.EOF
		}
		// The scanner's buffer holds until the next Scan, which comes only once this is read.
		s.pending, s.sep = data, true
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// readChatStream reads a streamed chat completion (server-sent events, "data: {json}" lines
// ending with "data: [DONE]"). Usage comes in a last chunk when the server honours
// stream_options; without it, completion tokens are the content chunks counted.
func readChatStream(body io.Reader, onToken func(int)) (protocol.LLMResult, error) {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	src := &sseData{sc: sc}
	dec := json.NewDecoder(src)
	var (
		text   strings.Builder
		res    protocol.LLMResult
		chunks int
		usage  *protocol.Usage
		ch     streamChunk
		model  json.RawMessage
	)
	for {
		ch.reset()
		err := dec.Decode(&ch)
		if errors.Is(err, io.EOF) && src.readErr == nil {
			break
		}
		if src.readErr != nil {
			if errors.Is(src.readErr, bufio.ErrTooLong) {
				return res, backendFailed(true, "openai stream: a line longer than 4 MiB")
			}
			// The connection broke inside the body (a reset, or closed inside a chunk): the
			// server may be gone, so its kind is withdrawn and probed again at once.
			return res, backendDown("openai stream", src.readErr)
		}
		if err != nil {
			// A chunk cut short by the end of the body reads as an unexpected EOF.
			return res, backendFailed(true, "openai stream: unreadable chunk: %v", err)
		}
		if len(ch.Error) > 0 && string(ch.Error) != "null" {
			return res, streamError(ch.Error)
		}
		if ch.Usage != nil {
			usage = ch.Usage
		}
		if len(model) == 0 && len(ch.Model) > 0 {
			model = append(model, ch.Model...)
		}
		for _, c := range ch.Choices {
			if c.Delta.Content != "" {
				text.WriteString(c.Delta.Content)
				chunks++
				onToken(chunks)
			}
			if c.FinishReason != "" {
				res.FinishReason = c.FinishReason
			}
		}
	}
	switch {
	case src.errLine != nil:
		return res, streamError(src.errLine) // older llama-server: an "error:" line instead of a chunk
	case src.empty:
		return res, backendFailed(true, "openai stream: unreadable chunk: a data line without data")
	}
	if len(model) > 0 {
		_ = json.Unmarshal(model, &res.Model) // a model that is not a string is no model
	}
	if !src.done {
		return res, stoppedMidAnswer(chunks)
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
	if len(ch.Error) > 0 && string(ch.Error) != "null" {
		return protocol.LLMResult{}, streamError(ch.Error)
	}
	if len(ch.Choices) == 0 || ch.Choices[0].Message.Content == nil {
		return protocol.LLMResult{}, backendFailed(true, "openai: completion without a message")
	}
	res := protocol.LLMResult{Text: *ch.Choices[0].Message.Content, FinishReason: "stop", Model: ch.Model}
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

// streamError classifies an error a server sends inside its answer, after its 200: llama-server's
// {"code":500,"message":"Failed to parse input at pos …","type":"server_error"} (with no
// [DONE]), vLLM's {…,"code":400} (then [DONE]). It is the backend's failure, retryable, unless
// its code is a 4xx that says the request itself is wrong. A failure that repeats (llama-server's
// parse error with a fixed seed) is kept off this worker by the hub's cool-off, not here.
func streamError(raw []byte) *Error {
	e, ok := parseBackendError(raw)
	if !ok {
		e = backendError{Message: strings.TrimSpace(string(raw))}
	}
	text := "openai stream error"
	if head := e.head(""); head != "" {
		text += " " + head
	}
	if e.Message != "" {
		text += ": " + clipText(e.Message)
	}
	if e.Status == http.StatusNotFound || modelMissing(e.Message) {
		// The same verdict as a 404 before the stream: this worker advertised a model its
		// backend no longer has, and another attempt here would meet the same answer.
		return unsupported("model", "%s", text)
	}
	if c := e.Status; c >= 400 && c < 500 && c != http.StatusUnauthorized && c != http.StatusForbidden &&
		c != http.StatusRequestTimeout && c != http.StatusTooManyRequests {
		return &Error{Err: fmt.Errorf("%w: %s", ErrInvalidInput, text)}
	}
	return backendFailed(true, "%s", text)
}

// stoppedMidAnswer is the error of a stream whose body ended cleanly (the server closed the answer
// itself) without [DONE]. The server is up but gave up on the generation: Ollama ends a stream
// this way when its runner fails, with one empty chunk and without its error, which stays in its
// own log. Retryable, and not ErrBackendDown: that would withdraw the kind as if the server had
// gone, and send the next probe to a server that answers it at once.
func stoppedMidAnswer(tokens int) *Error {
	return backendFailed(true, "openai stream: the backend stopped mid-answer: the stream ended without [DONE] after %d tokens (the backend's own log says why)", tokens)
}

// modelMissingRE matches the words of servers that do not have the model asked for: Ollama's
// `model "x" not found, try pulling it first`, vLLM's "The model `x` does not exist.".
// The name between is one quoted string or one word, so that a failure elsewhere ("model eval:
// kernel not found") is not taken for a missing model.
var modelMissingRE = regexp.MustCompile("(?i)\\bmodel(?:\\s+(?:\"[^\"]{1,200}\"|'[^']{1,200}'|`[^`]{1,200}`|\\S{1,200}))?\\s+(?:not found|does not exist)")

// modelMissing reports whether a backend's error message says the model is missing, which no
// retry on this worker can mend.
func modelMissing(msg string) bool { return modelMissingRE.MatchString(msg) }
