// synthetic_media.go: the synthetic backend's pictures, sound and video — generated, cheap, and
// different each time.

package engine

import (
	"bufio"
	"compress/lzw"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"strconv"
)

// palette3 picks three colours from a hash; the pattern blends between them.
func palette3(h uint64) [3]color.NRGBA {
	var cs [3]color.NRGBA
	for i := range cs {
		hue := math.Mod(float64((h>>(i*16))&0xffff)/65536*360+float64(i)*120, 360)
		cs[i] = hsv(hue, 0.55+0.3*float64((h>>(48+i*4))&0xf)/15, 0.95)
	}
	return cs
}

func hsv(h, s, v float64) color.NRGBA {
	c := v * s
	x := c * (1 - math.Abs(math.Mod(h/60, 2)-1))
	m := v - c
	var r, g, b float64
	switch {
	case h < 60:
		r, g, b = c, x, 0
	case h < 120:
		r, g, b = x, c, 0
	case h < 180:
		r, g, b = 0, c, x
	case h < 240:
		r, g, b = 0, x, c
	case h < 300:
		r, g, b = x, 0, c
	default:
		r, g, b = c, 0, x
	}
	return color.NRGBA{uint8((r + m) * 255), uint8((g + m) * 255), uint8((b + m) * 255), 255}
}

// gradient maps t in [0,1) onto a closed loop through the three colours.
func gradient(cs [3]color.NRGBA, t float64) color.NRGBA {
	t = t - math.Floor(t)
	seg := t * 3
	i := int(seg) % 3
	f := seg - math.Floor(seg)
	f = f * f * (3 - 2*f) // smoothstep, so bands blend softly
	a, b := cs[i], cs[(i+1)%3]
	mix := func(x, y uint8) uint8 { return uint8(float64(x) + (float64(y)-float64(x))*f) }
	return color.NRGBA{mix(a.R, b.R), mix(a.G, b.G), mix(a.B, b.B), 255}
}

// plasma is a smooth field in [0,1) over the unit square, shaped by the hash.
type plasma struct {
	f1, f2, f3, f4, p1, p2, p3, cx, cy float64
}

func newPlasma(h uint64) plasma {
	u := func(shift uint) float64 { return float64((h>>shift)&0xff) / 255 }
	return plasma{
		f1: 2 + 6*u(0), f2: 2 + 6*u(8), f3: 1 + 5*u(16), f4: 3 + 9*u(24),
		p1: 2 * math.Pi * u(32), p2: 2 * math.Pi * u(40), p3: 2 * math.Pi * u(48),
		cx: 0.2 + 0.6*u(56), cy: 0.2 + 0.6*u(4),
	}
}

func (p plasma) at(x, y, phase float64) float64 {
	v := math.Sin(x*p.f1*math.Pi+p.p1+phase) +
		math.Sin(y*p.f2*math.Pi+p.p2) +
		math.Sin((x+y)*p.f3*math.Pi+p.p3+phase) +
		math.Sin(math.Hypot(x-p.cx, y-p.cy)*p.f4*math.Pi)
	return (v + 4) / 8
}

func (s *synthetic) image(ctx context.Context, job Job, l limits, pad int64) (Result, error) {
	in, err := parseImage(job.Input, l)
	if err != nil {
		return Result{}, err
	}
	h := hash64(in.Prompt, in.NegativePrompt, strconv.FormatInt(seedOf(in.Seed, ""), 10))
	cs, pl := palette3(h), newPlasma(h>>3)
	img := image.NewNRGBA(image.Rect(0, 0, in.Width, in.Height))
	for y := 0; y < in.Height; y++ {
		if y%64 == 0 && ctx.Err() != nil {
			return Result{}, ctxError(ctx, ctx, "synthetic")
		}
		v := float64(y) / float64(max(in.Height, in.Width))
		for x := 0; x < in.Width; x++ {
			u := float64(x) / float64(max(in.Height, in.Width))
			img.SetNRGBA(x, y, gradient(cs, pl.at(u, v, 0)))
		}
	}
	f, err := newSpoolFile(job)
	if err != nil {
		return Result{}, err
	}
	defer f.abort()
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if pad == 0 {
		if err := enc.Encode(f, img); err != nil {
			return Result{}, &Error{Retry: true, Err: fmt.Errorf("engine: encoding the png: %w", err)}
		}
	} else {
		// Hold back the IEND chunk the encoder writes last, so the padding goes before it.
		tw := &tailWriter{w: f, keep: 12}
		if err := enc.Encode(tw, img); err != nil {
			return Result{}, &Error{Retry: true, Err: fmt.Errorf("engine: encoding the png: %w", err)}
		}
		if string(tw.tail[4:8]) != "IEND" {
			return Result{}, &Error{Retry: true, Err: errors.New("engine: png encoder did not end with IEND")}
		}
		if err := writePNGPadding(ctx, f, pad); err != nil {
			return Result{}, err
		}
		if _, err := f.Write(tw.tail); err != nil {
			return Result{}, &Error{Retry: true, Err: fmt.Errorf("engine: writing the png: %w", err)}
		}
	}
	path, err := f.commit("png")
	if err != nil {
		return Result{}, err
	}
	return Result{File: path, Ext: "png", Prompt: in.Prompt, SHA256: f.sum()}, nil
}

// tailWriter passes everything on except the last keep bytes, which it holds in tail.
type tailWriter struct {
	w    io.Writer
	keep int
	tail []byte
}

func (t *tailWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(t.tail)+len(p) <= t.keep {
		t.tail = append(t.tail, p...)
		return n, nil
	}
	// Flush what can no longer be among the last keep bytes: first from tail, then from p.
	if len(p) >= t.keep {
		if _, err := t.w.Write(t.tail); err != nil {
			return 0, err
		}
		if _, err := t.w.Write(p[:len(p)-t.keep]); err != nil {
			return 0, err
		}
		t.tail = append(t.tail[:0], p[len(p)-t.keep:]...)
		return n, nil
	}
	drop := len(t.tail) + len(p) - t.keep
	if _, err := t.w.Write(t.tail[:drop]); err != nil {
		return 0, err
	}
	t.tail = append(t.tail[drop:], p...)
	return n, nil
}

// padChunkType is a private, ancillary, safe-to-copy PNG chunk: decoders skip it.
const padChunkType = "zpAd"

// writePNGPadding writes n zero bytes as padChunkType chunks of at most 1 MiB, never holding more
// than one chunk's worth of zeros.
func writePNGPadding(ctx context.Context, w io.Writer, n int64) error {
	const chunk = 1 << 20
	zeros := make([]byte, chunk)
	fullCRC := crc32.Update(crc32.ChecksumIEEE([]byte(padChunkType)), crc32.IEEETable, zeros)
	var hdr [8]byte
	copy(hdr[4:], padChunkType)
	var crc [4]byte
	for n > 0 {
		if ctx.Err() != nil {
			return ctxError(ctx, ctx, "synthetic")
		}
		size := int64(chunk)
		sum := fullCRC
		if n < chunk {
			size = n
			sum = crc32.Update(crc32.ChecksumIEEE([]byte(padChunkType)), crc32.IEEETable, zeros[:size])
		}
		binary.BigEndian.PutUint32(hdr[:4], uint32(size))
		binary.BigEndian.PutUint32(crc[:], sum)
		for _, b := range [][]byte{hdr[:], zeros[:size], crc[:]} {
			if _, err := w.Write(b); err != nil {
				return &Error{Retry: true, Err: fmt.Errorf("engine: writing png padding: %w", err)}
			}
		}
		n -= size
	}
	return nil
}

const wavRate = 22050

// writeWAVHeader writes a 44-byte PCM header for mono 16-bit audio at rate with dataBytes of data.
func writeWAVHeader(w io.Writer, rate int, dataBytes uint32) error {
	var h [44]byte
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], 36+dataBytes)
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], uint32(rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], dataBytes)
	_, err := w.Write(h[:])
	return err
}

// ttsCharDuration is how long one character of text lasts at speed 1.
const ttsCharDuration = 0.065

// ttsSeconds is the length of the synthetic speech for text at speed.
func ttsSeconds(text string, speed float64) float64 {
	return math.Max(0.3, float64(len([]rune(text)))*ttsCharDuration/speed)
}

func (s *synthetic) tts(ctx context.Context, job Job, l limits) (Result, error) {
	in, err := parseTTS(job.Input, l)
	if err != nil {
		return Result{}, err
	}
	speed := 1.0
	if in.Speed != nil {
		speed = *in.Speed
	}
	runes := []rune(in.Text)
	total := int(ttsSeconds(in.Text, speed) * wavRate)
	perChar := max(1, int(ttsCharDuration/speed*wavRate))
	f, err := newSpoolFile(job)
	if err != nil {
		return Result{}, err
	}
	defer f.abort()
	if err := writeWAVHeader(f, wavRate, uint32(total*2)); err != nil {
		return Result{}, &Error{Retry: true, Err: fmt.Errorf("engine: writing the wav: %w", err)}
	}
	voice := float64(hash64(in.Voice)%5) * 0.1
	var sample [2]byte
	for i := 0; i < total; i++ {
		if i%wavRate == 0 && ctx.Err() != nil {
			return Result{}, ctxError(ctx, ctx, "synthetic")
		}
		v := 0.0
		if c := i / perChar; c < len(runes) && !isSpace(runes[c]) {
			// One soft tone per character, pitched by the character, shaped by a sine envelope.
			pos := float64(i%perChar) / float64(perChar)
			freq := 180 * math.Pow(2, float64(runes[c]%24)/24+voice)
			t := float64(i) / wavRate
			v = 0.35 * math.Sin(math.Pi*pos) * (math.Sin(2*math.Pi*freq*t) + 0.3*math.Sin(4*math.Pi*freq*t))
		}
		binary.LittleEndian.PutUint16(sample[:], uint16(int16(v*32767)))
		if _, err := f.Write(sample[:]); err != nil {
			return Result{}, &Error{Retry: true, Err: fmt.Errorf("engine: writing the wav: %w", err)}
		}
	}
	path, err := f.commit("wav")
	if err != nil {
		return Result{}, err
	}
	return Result{File: path, Ext: "wav", Prompt: in.Text, SHA256: f.sum()}, nil
}

func isSpace(r rune) bool { return r == ' ' || r == '\t' || r == '\n' || r == '\r' }

// wavInfo is what the synthetic stt reads from a WAV file.
type wavInfo struct {
	sampleRate, channels, bits int
	dataBytes                  int64
	seconds                    float64
}

// readWAVInfo reads a RIFF/WAVE file's format and the length of its data, without reading the
// samples. A data size the writer left at 0 or 0xFFFFFFFF (streamed) is taken from the file size.
func readWAVInfo(path string) (wavInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return wavInfo{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return wavInfo{}, err
	}
	r := bufio.NewReader(f)
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil || string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return wavInfo{}, errors.New("not a WAV file (no RIFF/WAVE header)")
	}
	var info wavInfo
	byteRate := 0
	off := int64(12)
	for {
		var ch [8]byte
		if _, err := io.ReadFull(r, ch[:]); err != nil {
			return wavInfo{}, errors.New("WAV file has no data chunk")
		}
		off += 8
		size := int64(binary.LittleEndian.Uint32(ch[4:]))
		switch string(ch[:4]) {
		case "fmt ":
			if size < 16 {
				return wavInfo{}, errors.New("WAV fmt chunk too short")
			}
			var fm [16]byte
			if _, err := io.ReadFull(r, fm[:]); err != nil {
				return wavInfo{}, errors.New("WAV fmt chunk truncated")
			}
			info.channels = int(binary.LittleEndian.Uint16(fm[2:]))
			info.sampleRate = int(binary.LittleEndian.Uint32(fm[4:]))
			byteRate = int(binary.LittleEndian.Uint32(fm[8:]))
			info.bits = int(binary.LittleEndian.Uint16(fm[14:]))
			if _, err := r.Discard(int(size - 16 + size%2)); err != nil {
				return wavInfo{}, errors.New("WAV fmt chunk truncated")
			}
		case "data":
			if byteRate <= 0 {
				return wavInfo{}, errors.New("WAV data before a valid fmt chunk")
			}
			if rest := st.Size() - off; size == 0 || size == 0xFFFFFFFF || size > rest {
				size = rest
			}
			info.dataBytes = size
			info.seconds = float64(size) / float64(byteRate)
			return info, nil
		default:
			if _, err := r.Discard(int(size + size%2)); err != nil {
				return wavInfo{}, errors.New("WAV file has no data chunk")
			}
		}
		off += size + size%2
	}
}

func (s *synthetic) video(ctx context.Context, job Job, l limits, progress Progress) (Result, error) {
	in, err := parseVideo(job.Input, l)
	if err != nil {
		return Result{}, err
	}
	if in.Width > 65535 || in.Height > 65535 {
		return Result{}, invalidInput("width", "a GIF is at most 65535 pixels wide and high")
	}
	h := hash64(in.Prompt, strconv.FormatInt(seedOf(in.Seed, ""), 10))
	cs, pl := palette3(h), newPlasma(h>>3)
	f, err := newSpoolFile(job)
	if err != nil {
		return Result{}, err
	}
	defer f.abort()
	// A palette that loops through the three colours; frames rotate through it, so the pattern
	// flows while each frame is computed from one index map.
	var pal [256]color.NRGBA
	for i := range pal {
		pal[i] = gradient(cs, float64(i)/256)
	}
	base := make([]byte, in.Width*in.Height)
	scale := float64(max(in.Width, in.Height))
	for y := 0; y < in.Height; y++ {
		for x := 0; x < in.Width; x++ {
			base[y*in.Width+x] = byte(pl.at(float64(x)/scale, float64(y)/scale, 0) * 256)
		}
	}
	gw, err := newGIFWriter(f, in.Width, in.Height, pal)
	if err != nil {
		return Result{}, err
	}
	delay := max(2, int(math.Round(100/float64(in.FPS))))
	frame := make([]byte, len(base))
	for i := 0; i < in.Frames; i++ {
		if ctx.Err() != nil {
			return Result{}, ctxError(ctx, ctx, "synthetic")
		}
		shift := byte(i * 256 / in.Frames)
		for j, b := range base {
			frame[j] = b + shift
		}
		if err := gw.frame(frame, delay); err != nil {
			return Result{}, err
		}
		progress(0.95+0.05*float64(i+1)/float64(in.Frames), fmt.Sprintf("frame %d/%d", i+1, in.Frames))
	}
	if err := gw.close(); err != nil {
		return Result{}, err
	}
	path, err := f.commit("gif")
	if err != nil {
		return Result{}, err
	}
	return Result{File: path, Ext: "gif", Prompt: in.Prompt, SHA256: f.sum()}, nil
}

// gifWriter streams an animated GIF frame by frame, so a long video never sits in memory whole
// (image/gif's EncodeAll needs every frame at once).
type gifWriter struct {
	out  io.Writer
	w, h int
}

func newGIFWriter(w io.Writer, width, height int, pal [256]color.NRGBA) (*gifWriter, error) {
	b := make([]byte, 0, 13+768+19)
	b = append(b, "GIF89a"...)
	b = binary.LittleEndian.AppendUint16(b, uint16(width))
	b = binary.LittleEndian.AppendUint16(b, uint16(height))
	b = append(b, 0xF7, 0, 0) // global colour table of 256 entries, 8 bits per primary
	for _, c := range pal {
		b = append(b, c.R, c.G, c.B)
	}
	// NETSCAPE2.0 application extension: loop forever.
	b = append(b, 0x21, 0xFF, 0x0B)
	b = append(b, "NETSCAPE2.0"...)
	b = append(b, 0x03, 0x01, 0x00, 0x00, 0x00)
	if _, err := w.Write(b); err != nil {
		return nil, &Error{Retry: true, Err: fmt.Errorf("engine: writing the gif: %w", err)}
	}
	return &gifWriter{out: w, w: width, h: height}, nil
}

// frame writes one frame of palette indices shown for delay hundredths of a second.
func (g *gifWriter) frame(pix []byte, delay int) error {
	b := make([]byte, 0, 18)
	b = append(b, 0x21, 0xF9, 0x04, 0x04) // graphic control: keep the frame, no transparency
	b = binary.LittleEndian.AppendUint16(b, uint16(delay))
	b = append(b, 0x00, 0x00)
	b = append(b, 0x2C, 0, 0, 0, 0) // image descriptor at 0,0
	b = binary.LittleEndian.AppendUint16(b, uint16(g.w))
	b = binary.LittleEndian.AppendUint16(b, uint16(g.h))
	b = append(b, 0x00, 0x08) // no local colour table; LZW minimum code size 8
	if _, err := g.out.Write(b); err != nil {
		return &Error{Retry: true, Err: fmt.Errorf("engine: writing the gif: %w", err)}
	}
	bw := &gifBlockWriter{w: g.out}
	lw := lzw.NewWriter(bw, lzw.LSB, 8)
	if _, err := lw.Write(pix); err != nil {
		return &Error{Retry: true, Err: fmt.Errorf("engine: writing the gif: %w", err)}
	}
	if err := lw.Close(); err != nil {
		return &Error{Retry: true, Err: fmt.Errorf("engine: writing the gif: %w", err)}
	}
	if err := bw.close(); err != nil {
		return &Error{Retry: true, Err: fmt.Errorf("engine: writing the gif: %w", err)}
	}
	return nil
}

// close writes the trailer.
func (g *gifWriter) close() error {
	if _, err := g.out.Write([]byte{0x3B}); err != nil {
		return &Error{Retry: true, Err: fmt.Errorf("engine: writing the gif: %w", err)}
	}
	return nil
}

// gifBlockWriter cuts a stream into GIF data sub-blocks of at most 255 bytes.
type gifBlockWriter struct {
	w   io.Writer
	buf [256]byte
	n   int
	err error
}

func (b *gifBlockWriter) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 && b.err == nil {
		c := copy(b.buf[1+b.n:], p)
		b.n += c
		p = p[c:]
		if b.n == 255 {
			b.flush()
		}
	}
	if b.err != nil {
		return 0, b.err
	}
	return total, nil
}

func (b *gifBlockWriter) flush() {
	if b.n == 0 || b.err != nil {
		return
	}
	b.buf[0] = byte(b.n)
	_, b.err = b.w.Write(b.buf[:1+b.n])
	b.n = 0
}

// close flushes the last sub-block and writes the block terminator.
func (b *gifBlockWriter) close() error {
	b.flush()
	if b.err != nil {
		return b.err
	}
	_, err := b.w.Write([]byte{0})
	return err
}
