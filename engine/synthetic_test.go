package engine

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"image/gif"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

func TestSyntheticImageIsARealPatternedPNGDeterministicForSeed(t *testing.T) {
	r := mustRouter(t, DefaultConfig(), Options{})
	run := func(input string) []byte {
		t.Helper()
		job := newTestJob(t, protocol.KindImage, "synthetic", input)
		res, err := r.Run(context.Background(), job, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if res.Ext != "png" || filepath.Dir(res.File) != job.SpoolDir || !strings.HasSuffix(res.File, ".png") {
			t.Fatalf("result %+v not a png inside %s", res, job.SpoolDir)
		}
		data, err := os.ReadFile(res.File)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	a := run(`{"prompt":"a lighthouse at dusk","width":320,"height":200,"seed":7}`)
	img, err := png.Decode(bytes.NewReader(a))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 320 || b.Dy() != 200 {
		t.Fatalf("size %v, want 320x200", b)
	}
	colours := map[[3]uint32]bool{}
	for y := 0; y < 200; y += 5 {
		for x := 0; x < 320; x += 5 {
			r, g, b, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, b >> 8}] = true
		}
	}
	if len(colours) < 50 {
		t.Errorf("only %d distinct colours: a flat image, not a pattern", len(colours))
	}
	if again := run(`{"prompt":"a lighthouse at dusk","width":320,"height":200,"seed":7}`); !bytes.Equal(a, again) {
		t.Error("same input and seed gave different images")
	}
	if other := run(`{"prompt":"a lighthouse at dusk","width":320,"height":200,"seed":8}`); bytes.Equal(a, other) {
		t.Error("another seed gave the same image")
	}
}

func TestSyntheticImagePadBytesStreamsAValidBiggerPNG(t *testing.T) {
	r := mustRouter(t, DefaultConfig(), Options{})
	const pad = 3<<20 + 12345
	job := newTestJob(t, protocol.KindImage, "", `{"prompt":"x","width":16,"height":16,"pad_bytes":`+itoa(pad)+`}`)
	res, err := r.Run(context.Background(), job, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	f, err := os.Open(res.File)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	if st.Size() < pad {
		t.Fatalf("file is %d bytes, want at least %d", st.Size(), pad)
	}
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("padded png does not decode: %v", err)
	}
	if img.Bounds().Dx() != 16 {
		t.Fatalf("size %v", img.Bounds())
	}
	// The file still ends with IEND, after the padding chunks.
	tail := make([]byte, 12)
	if _, err := f.ReadAt(tail, st.Size()-12); err != nil || string(tail[4:8]) != "IEND" {
		t.Fatalf("file does not end with IEND: %q %v", tail, err)
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// wavHeader reads the fields of a 44-byte PCM header.
func wavHeader(t *testing.T, data []byte) (rate, bits, channels int, dataBytes int) {
	t.Helper()
	if len(data) < 44 || string(data[0:4]) != "RIFF" || string(data[8:16]) != "WAVEfmt " || string(data[36:40]) != "data" {
		t.Fatalf("not a canonical WAV header: %q", data[:min(44, len(data))])
	}
	if got := int(binary.LittleEndian.Uint32(data[4:])); got != len(data)-8 {
		t.Errorf("RIFF size %d, want %d", got, len(data)-8)
	}
	dataBytes = int(binary.LittleEndian.Uint32(data[40:]))
	if dataBytes != len(data)-44 {
		t.Errorf("data size %d, want %d", dataBytes, len(data)-44)
	}
	return int(binary.LittleEndian.Uint32(data[24:])), int(binary.LittleEndian.Uint16(data[34:])), int(binary.LittleEndian.Uint16(data[22:])), dataBytes
}

func TestSyntheticTTSWritesAWAVWhoseLengthFollowsTheText(t *testing.T) {
	r := mustRouter(t, DefaultConfig(), Options{})
	seconds := func(text string) float64 {
		t.Helper()
		job := newTestJob(t, protocol.KindTTS, "synthetic", `{"text":`+quote(text)+`}`)
		res, err := r.Run(context.Background(), job, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if res.Ext != "wav" {
			t.Fatalf("ext %q", res.Ext)
		}
		data, err := os.ReadFile(res.File)
		if err != nil {
			t.Fatal(err)
		}
		rate, bits, ch, n := wavHeader(t, data)
		if rate != wavRate || bits != 16 || ch != 1 {
			t.Fatalf("format %d Hz %d bits %d channels", rate, bits, ch)
		}
		silent := true
		for _, b := range data[44:] {
			if b != 0 {
				silent = false
				break
			}
		}
		if silent {
			t.Error("the speech is silence")
		}
		return float64(n) / float64(rate*2)
	}
	short, long := seconds("Hello there."), seconds(strings.Repeat("A longer sentence to say. ", 6))
	if long <= 3*short {
		t.Errorf("long text lasts %.2f s, short %.2f s: length does not follow the text", long, short)
	}
	if want := ttsSeconds("Hello there.", 1); short < want-0.01 || short > want+0.01 {
		t.Errorf("short text lasts %.2f s, want %.2f", short, want)
	}
}

// writeTestWAV writes seconds of 16 kHz mono silence with a canonical header.
func writeTestWAV(t *testing.T, path string, seconds float64) {
	t.Helper()
	n := int(seconds * 16000)
	var b bytes.Buffer
	if err := writeWAVHeader(&b, 16000, uint32(n*2)); err != nil {
		t.Fatal(err)
	}
	b.Write(make([]byte, n*2))
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestSyntheticSTTStatesTheRealDurationOfTheWAV(t *testing.T) {
	r := mustRouter(t, DefaultConfig(), Options{})
	dir := t.TempDir()
	in := filepath.Join(dir, "in.wav")
	writeTestWAV(t, in, 12.5)
	job := newTestJob(t, protocol.KindSTT, "synthetic", `{"language":"fr"}`)
	job.InputFile = in
	res, err := r.Run(context.Background(), job, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var out protocol.STTResult
	if err := json.Unmarshal(res.JSON, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.Text, "12.50 second") || out.Language != "fr" {
		t.Errorf("result %+v does not state 12.50 s in fr", out)
	}
	if len(out.Segments) != 3 || out.Segments[2].End != 12.5 {
		t.Errorf("segments %+v, want 3 ending at 12.5", out.Segments)
	}

	notWAV := filepath.Join(dir, "in.txt")
	os.WriteFile(notWAV, []byte("hello"), 0o600)
	job.InputFile = notWAV
	_, err = r.Run(context.Background(), job, nil)
	assertClass(t, err, ErrInvalidInput, false, "input_url")

	job.InputFile = ""
	_, err = r.Run(context.Background(), job, nil)
	assertClass(t, err, ErrInvalidInput, false, "input_url")
}

func TestSyntheticVideoIsAnAnimatedGIFWithTheFramesAsked(t *testing.T) {
	r := mustRouter(t, DefaultConfig(), Options{})
	run := func(seed int) []byte {
		job := newTestJob(t, protocol.KindVideo, "synthetic", `{"prompt":"waves","width":96,"height":64,"frames":12,"fps":10,"seed":`+itoa(seed)+`}`)
		res, err := r.Run(context.Background(), job, nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		if res.Ext != "gif" {
			t.Fatalf("ext %q", res.Ext)
		}
		data, err := os.ReadFile(res.File)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	data := run(1)
	g, err := gif.DecodeAll(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if len(g.Image) != 12 || g.Config.Width != 96 || g.Config.Height != 64 {
		t.Fatalf("%d frames of %dx%d, want 12 of 96x64", len(g.Image), g.Config.Width, g.Config.Height)
	}
	for i, d := range g.Delay {
		if d != 10 {
			t.Fatalf("frame %d delay %d, want 10 (1/100 s at 10 fps)", i, d)
		}
	}
	if bytes.Equal(g.Image[0].Pix, g.Image[6].Pix) {
		t.Error("frames 0 and 6 are identical: not animated")
	}
	if !bytes.Equal(data, run(1)) {
		t.Error("same seed gave another video")
	}
	if bytes.Equal(data, run(2)) {
		t.Error("another seed gave the same video")
	}
}

func TestSyntheticLLMCountsTokensAndHonoursMaxTokens(t *testing.T) {
	r := mustRouter(t, DefaultConfig(), Options{})
	run := func(input string) protocol.LLMResult {
		t.Helper()
		res, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "synthetic", input), nil)
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		var out protocol.LLMResult
		if err := json.Unmarshal(res.JSON, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	a := run(`{"prompt":"tell me about rivers please","seed":3}`)
	if a.Usage.PromptTokens != 5 || a.Usage.CompletionTokens != len(strings.Fields(a.Text)) || a.FinishReason != "stop" {
		t.Errorf("result %+v: usage does not count the words", a)
	}
	if b := run(`{"prompt":"tell me about rivers please","seed":3}`); b != a {
		t.Errorf("same seed, other text: %q vs %q", a.Text, b.Text)
	}
	c := run(`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"max_tokens":4}`)
	if c.Usage.CompletionTokens != 4 || c.FinishReason != "length" || len(strings.Fields(c.Text)) != 4 {
		t.Errorf("result %+v, want 4 tokens cut by length", c)
	}
}

func TestSyntheticDurationGivesProgressStepsAndFailFails(t *testing.T) {
	r := mustRouter(t, DefaultConfig(), Options{})
	var p progressLog
	_, err := r.Run(context.Background(), newTestJob(t, protocol.KindLLM, "synthetic", `{"prompt":"hi","duration_ms":100}`), p.fn)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	fracs, _ := p.snapshot()
	if len(fracs) < 10 || fracs[len(fracs)-1] != 1 {
		t.Fatalf("progress %v: want about ten steps ending at 1", fracs)
	}
	for i := 1; i < len(fracs); i++ {
		if fracs[i] < fracs[i-1] {
			t.Fatalf("progress goes backwards: %v", fracs)
		}
	}

	_, err = r.Run(context.Background(), newTestJob(t, protocol.KindImage, "synthetic", `{"prompt":"x","width":8,"height":8,"fail":"model exploded"}`), nil)
	if err == nil || err.Error() != "model exploded" || Retryable(err) {
		t.Fatalf("err %v (retryable %v), want the message, not retryable", err, Retryable(err))
	}
}

func TestSyntheticCancelStopsTheSimulatedWork(t *testing.T) {
	r := mustRouter(t, DefaultConfig(), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	job := newTestJob(t, protocol.KindImage, "synthetic", `{"prompt":"x","width":8,"height":8,"duration_ms":600000}`)
	done := runAsync(func() error { _, err := r.Run(ctx, job, nil); return err })
	cancel()
	err := awaitErr(t, done, 10*time.Second)
	assertClass(t, err, ErrCancelled, true, "")
	if entries, _ := os.ReadDir(job.SpoolDir); len(entries) != 0 {
		t.Errorf("a cancelled job left %d files in the spool", len(entries))
	}
}

func quote(s string) string { b, _ := json.Marshal(s); return string(b) }
