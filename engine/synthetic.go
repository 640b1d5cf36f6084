// synthetic.go: the synthetic backend (the demo and tests) — every kind, answered with made-up
// but well-formed results at a set pace, failing or running long on request. It uses no GPU.

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
	"unicode"

	"studioworker/protocol"
)

// maxSyntheticDuration caps input.duration_ms so a typo cannot hold a slot for days.
const maxSyntheticDuration = time.Hour

// synthetic makes real, valid outputs without a GPU, deterministically from the input and its seed.
// It is for the demo, tests and benchmarks, and says so in the capabilities (engine "synthetic").
type synthetic struct {
	kind protocol.Kind
	cfg  BackendConfig
}

// syntheticExtras are input fields only the synthetic backend reads.
type syntheticExtras struct {
	// DurationMS simulates that much work, in about ten progress steps.
	DurationMS *int64 `json:"duration_ms"`
	// Fail makes the job fail, not retryable, with this message (after the simulated work).
	Fail *string `json:"fail"`
	// PadBytes (image) appends that many zero bytes to the PNG in private ancillary chunks, so a
	// benchmark can make a result file of any size quickly.
	PadBytes *int64 `json:"pad_bytes"`
}

func (s *synthetic) name() string { return BackendSynthetic }

func (s *synthetic) models(context.Context) ([]string, error) {
	if len(s.cfg.Models) > 0 {
		return s.cfg.Models, nil
	}
	return []string{"synthetic"}, nil
}

func (s *synthetic) Run(ctx context.Context, job Job, progress Progress) (Result, error) {
	progress = monotonic(progress)
	var ex syntheticExtras
	if err := decodeInput(job.Input, &ex); err != nil {
		return Result{}, err
	}
	if ex.DurationMS != nil && (*ex.DurationMS < 0 || time.Duration(*ex.DurationMS)*time.Millisecond > maxSyntheticDuration) {
		return Result{}, invalidInput("duration_ms", "must be between 0 and %d, got %d", maxSyntheticDuration.Milliseconds(), *ex.DurationMS)
	}
	if ex.PadBytes != nil && (*ex.PadBytes < 0 || job.Kind != protocol.KindImage) {
		return Result{}, invalidInput("pad_bytes", "must be a non-negative number of bytes, for image jobs only")
	}
	l := s.cfg.limits()
	// Validate before the simulated work, as a real backend would refuse at once.
	if err := validateInput(job, l); err != nil {
		return Result{}, err
	}
	if ex.DurationMS != nil && *ex.DurationMS > 0 {
		if err := simulateWork(ctx, time.Duration(*ex.DurationMS)*time.Millisecond, progress); err != nil {
			return Result{}, err
		}
	}
	if ex.Fail != nil {
		return Result{}, &Error{Err: errors.New(*ex.Fail)}
	}
	var (
		res Result
		err error
	)
	switch job.Kind {
	case protocol.KindLLM:
		res, err = s.llm(job, l)
	case protocol.KindImage:
		var pad int64
		if ex.PadBytes != nil {
			pad = *ex.PadBytes
		}
		res, err = s.image(ctx, job, l, pad)
	case protocol.KindTTS:
		res, err = s.tts(ctx, job, l)
	case protocol.KindSTT:
		res, err = s.stt(job)
	case protocol.KindVideo:
		res, err = s.video(ctx, job, l, progress)
	default:
		err = unsupported("kind", "unknown kind %q", job.Kind)
	}
	if err != nil {
		return Result{}, err
	}
	progress(1, "done")
	return res, nil
}

// simulateWork waits d in ten steps, reporting progress after each, and stops when ctx ends.
func simulateWork(ctx context.Context, d time.Duration, progress Progress) error {
	const steps = 10
	t := time.NewTimer(d / steps)
	defer t.Stop()
	for i := 1; i <= steps; i++ {
		select {
		case <-ctx.Done():
			return ctxError(ctx, ctx, "synthetic")
		case <-t.C:
		}
		progress(float64(i)/steps*0.95, fmt.Sprintf("synthetic work %d/%d", i, steps))
		t.Reset(d / steps)
	}
	return nil
}

var syntheticWords = strings.Fields(`amber bright canvas drift echo field gentle harbor ivory juniper kindle
lantern meadow north ocean pebble quiet river silver timber umber velvet willow yonder zephyr
morning garden window paper signal orbit studio color light shadow wave stone cloud tide`)

func (s *synthetic) llm(job Job, l limits) (Result, error) {
	in, err := parseLLM(job.Input, l)
	if err != nil {
		return Result{}, err
	}
	var transcript strings.Builder
	promptTokens := 0
	for _, m := range in.messages {
		transcript.WriteString(m.Role + "\x00" + m.Content + "\x00")
		promptTokens += len(strings.Fields(m.Content))
	}
	seed := seedOf(in.Seed, "")
	rng := rand.New(rand.NewPCG(hash64(transcript.String()), uint64(seed)))
	n, finish := 12+rng.IntN(40), "stop"
	if in.MaxTokens != nil && *in.MaxTokens < n {
		n, finish = *in.MaxTokens, "length"
	}
	words := make([]string, n)
	for i := range words {
		words[i] = syntheticWords[rng.IntN(len(syntheticWords))]
	}
	text := strings.Join(words, " ")
	if finish == "stop" {
		text += "."
	}
	r := []rune(text)
	r[0] = unicode.ToUpper(r[0])
	out, err := json.Marshal(protocol.LLMResult{
		Text:         string(r),
		FinishReason: finish,
		Usage:        protocol.Usage{PromptTokens: promptTokens, CompletionTokens: n},
	})
	if err != nil {
		return Result{}, fmt.Errorf("engine: encoding the llm result: %w", err)
	}
	return Result{JSON: out, Prompt: in.prompt()}, nil
}

func (s *synthetic) stt(job Job) (Result, error) {
	in, err := parseSTT(job.Input, job.InputFile)
	if err != nil {
		return Result{}, err
	}
	info, err := readWAVInfo(job.InputFile)
	if err != nil {
		return Result{}, &Error{Field: "input_url", Err: fmt.Errorf("%w: input_url: %w", ErrInvalidInput, err)}
	}
	lang := in.Language
	if lang == "" {
		lang = "en"
	}
	const segLen = 5.0
	segs := protocol.List[protocol.Segment]{}
	for start := 0.0; start < info.seconds; start += segLen {
		end := min(start+segLen, info.seconds)
		segs = append(segs, protocol.Segment{Start: start, End: end, Text: fmt.Sprintf("(synthetic speech from %.2f s to %.2f s)", start, end)})
	}
	out, err := json.Marshal(protocol.STTResult{
		Text:     fmt.Sprintf("Synthetic transcript of a %.2f second recording.", info.seconds),
		Language: lang,
		Segments: segs,
	})
	if err != nil {
		return Result{}, fmt.Errorf("engine: encoding the stt result: %w", err)
	}
	return Result{JSON: out}, nil
}
