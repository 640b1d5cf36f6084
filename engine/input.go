// input.go: a job's input checked against its kind's shape and limits, with errors that name
// the field. It must not know the backends.

package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"studioworker/protocol"
)

// limits bound a job's input; zero values never reach here (BackendConfig.limits fills defaults).
type limits struct {
	maxPrompt, maxWidth, maxHeight, maxFrames int
}

// decodeInput decodes a job's input object into v, naming the field at fault on a type error.
// Unknown fields are allowed: backends read extras (the synthetic backend's duration_ms, say).
func decodeInput(raw protocol.Object, v any) error {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return &Error{Err: fmt.Errorf("%w: input must be a JSON object", ErrInvalidInput)}
	}
	if err := json.Unmarshal(trimmed, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return invalidInput(te.Field, "must be a JSON %s, got %s", jsonTypeName(te.Type.Kind().String()), te.Value)
		}
		return &Error{Err: fmt.Errorf("%w: input is not valid JSON: %v", ErrInvalidInput, err)}
	}
	return nil
}

func jsonTypeName(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "int", "int64", "int32", "uint", "uint64", "float64", "float32":
		return "number"
	case "bool":
		return "boolean"
	case "slice":
		return "array"
	case "ptr":
		return "value of another type"
	}
	return "object"
}

func checkText(field, s string, required bool, max int) error {
	if required && s == "" {
		return invalidInput(field, "required")
	}
	if n := utf8.RuneCountInString(s); n > max {
		return invalidInput(field, "is %d characters, over the limit of %d", n, max)
	}
	return nil
}

func checkRange(field string, v, lo, hi int) error {
	if v == 0 && lo > 0 {
		return invalidInput(field, "required (%d..%d)", lo, hi)
	}
	if v < lo || v > hi {
		return invalidInput(field, "must be between %d and %d, got %d", lo, hi, v)
	}
	return nil
}

// llmJob is a validated llm input with the prompt turned into messages.
type llmJob struct {
	protocol.LLMInput
	messages []protocol.Message
}

func parseLLM(raw protocol.Object, l limits) (llmJob, error) {
	var in protocol.LLMInput
	if err := decodeInput(raw, &in); err != nil {
		return llmJob{}, err
	}
	job := llmJob{LLMInput: in, messages: in.Messages}
	if len(job.messages) == 0 {
		if in.Prompt == "" {
			return llmJob{}, invalidInput("prompt", "required: prompt or messages")
		}
		job.messages = []protocol.Message{{Role: "user", Content: in.Prompt}}
	}
	total := 0
	for i, m := range job.messages {
		if m.Role == "" {
			return llmJob{}, invalidInput(fmt.Sprintf("messages[%d].role", i), "required")
		}
		total += utf8.RuneCountInString(m.Content)
	}
	if total > l.maxPrompt {
		field := "messages"
		if len(in.Messages) == 0 {
			field = "prompt"
		}
		return llmJob{}, invalidInput(field, "is %d characters, over the limit of %d", total, l.maxPrompt)
	}
	if in.MaxTokens != nil && *in.MaxTokens < 1 {
		return llmJob{}, invalidInput("max_tokens", "must be at least 1, got %d", *in.MaxTokens)
	}
	if in.Temperature != nil && (*in.Temperature < 0 || *in.Temperature > 2) {
		return llmJob{}, invalidInput("temperature", "must be between 0 and 2, got %g", *in.Temperature)
	}
	return job, nil
}

// prompt is the text the job is about, echoed to the hub.
func (j llmJob) prompt() string {
	if j.Prompt != "" {
		return j.Prompt
	}
	for i := len(j.messages) - 1; i >= 0; i-- {
		if j.messages[i].Role == "user" {
			return j.messages[i].Content
		}
	}
	return ""
}

func parseImage(raw protocol.Object, l limits) (protocol.ImageInput, error) {
	var in protocol.ImageInput
	if err := decodeInput(raw, &in); err != nil {
		return in, err
	}
	if err := checkText("prompt", in.Prompt, true, l.maxPrompt); err != nil {
		return in, err
	}
	if err := checkText("negative_prompt", in.NegativePrompt, false, l.maxPrompt); err != nil {
		return in, err
	}
	if err := checkRange("width", in.Width, 1, l.maxWidth); err != nil {
		return in, err
	}
	if err := checkRange("height", in.Height, 1, l.maxHeight); err != nil {
		return in, err
	}
	if in.Steps != nil {
		if err := checkRange("steps", *in.Steps, 1, 10_000); err != nil {
			return in, err
		}
	}
	return in, nil
}

func parseTTS(raw protocol.Object, l limits) (protocol.TTSInput, error) {
	var in protocol.TTSInput
	if err := decodeInput(raw, &in); err != nil {
		return in, err
	}
	if err := checkText("text", in.Text, true, l.maxPrompt); err != nil {
		return in, err
	}
	if in.Speed != nil && (*in.Speed <= 0 || *in.Speed > 10) {
		return in, invalidInput("speed", "must be above 0 and at most 10, got %g", *in.Speed)
	}
	return in, nil
}

func parseSTT(raw protocol.Object, inputFile string) (protocol.STTInput, error) {
	var in protocol.STTInput
	if err := decodeInput(raw, &in); err != nil {
		return in, err
	}
	if inputFile == "" {
		return in, &Error{Field: "input_url", Err: fmt.Errorf("%w: input_url: an stt job needs an audio file", ErrInvalidInput)}
	}
	return in, nil
}

func parseVideo(raw protocol.Object, l limits) (protocol.VideoInput, error) {
	var in protocol.VideoInput
	if err := decodeInput(raw, &in); err != nil {
		return in, err
	}
	if err := checkText("prompt", in.Prompt, true, l.maxPrompt); err != nil {
		return in, err
	}
	if err := checkRange("width", in.Width, 1, l.maxWidth); err != nil {
		return in, err
	}
	if err := checkRange("height", in.Height, 1, l.maxHeight); err != nil {
		return in, err
	}
	if err := checkRange("frames", in.Frames, 1, l.maxFrames); err != nil {
		return in, err
	}
	if err := checkRange("fps", in.FPS, 1, 120); err != nil {
		return in, err
	}
	return in, nil
}

// validateInput checks a job's input for its kind without running it, so that the router can
// refuse bad input the same way whatever the backend.
func validateInput(job Job, l limits) error {
	var err error
	switch job.Kind {
	case protocol.KindLLM:
		_, err = parseLLM(job.Input, l)
	case protocol.KindImage:
		_, err = parseImage(job.Input, l)
	case protocol.KindTTS:
		_, err = parseTTS(job.Input, l)
	case protocol.KindSTT:
		_, err = parseSTT(job.Input, job.InputFile)
	case protocol.KindVideo:
		_, err = parseVideo(job.Input, l)
	default:
		err = unsupported("kind", "unknown kind %q", job.Kind)
	}
	return err
}

// seedOf returns the job's seed, or one derived from fallback so a job without a seed still gets
// a fixed one.
func seedOf(seed *int64, fallback string) int64 {
	if seed != nil {
		return *seed
	}
	return int64(hash64(fallback) & (1<<53 - 1))
}
