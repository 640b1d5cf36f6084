// multipart_test.go: formReader reads every body the way mime/multipart reads it — the same
// parts, headers and bytes, an error where it errs — whatever the boundary and however the body
// arrives in pieces; and what it costs on a zero-padded file part, beside mime/multipart.

package hub

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// parsed is what a reader made of a body: each part's header, form name and bytes, and the
// error that ended it (nil after a clean io.EOF at the closing boundary).
type parsed struct {
	parts []parsedPart
	err   error
}

type parsedPart struct {
	header textproto.MIMEHeader
	name   string
	data   []byte
}

func (p parsed) String() string {
	var b strings.Builder
	for _, pp := range p.parts {
		fmt.Fprintf(&b, "[%v name=%q %d bytes %.40q] ", pp.header, pp.name, len(pp.data), pp.data)
	}
	fmt.Fprintf(&b, "err=%v", p.err)
	return b.String()
}

func parseStd(r io.Reader, boundary string) parsed {
	mr := multipart.NewReader(r, boundary)
	var out parsed
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			out.err = err
			return out
		}
		data, err := io.ReadAll(p)
		out.parts = append(out.parts, parsedPart{p.Header, p.FormName(), data})
		if err != nil {
			out.err = err
			return out
		}
	}
}

func parseOurs(r io.Reader, boundary string) parsed {
	var out parsed
	fr, err := newFormReader(r, boundary)
	if err != nil {
		out.err = err
		return out
	}
	for {
		p, err := fr.NextPart()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			out.err = err
			return out
		}
		data, err := io.ReadAll(p)
		out.parts = append(out.parts, parsedPart{p.Header, p.FormName(), data})
		if err != nil {
			out.err = err
			return out
		}
	}
}

// same compares two parses: the same parts, and an error in both or in neither (the words of
// the errors may differ).
func same(a, b parsed) bool {
	if (a.err == nil) != (b.err == nil) || len(a.parts) != len(b.parts) {
		return false
	}
	for i := range a.parts {
		x, y := a.parts[i], b.parts[i]
		if x.name != y.name || !bytes.Equal(x.data, y.data) || !reflect.DeepEqual(x.header, y.header) {
			return false
		}
	}
	return true
}

// chunkReader hands out its bytes in pieces of random sizes (1 byte to 64 KiB).
type chunkReader struct {
	b   []byte
	rng *rand.Rand
	max int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.b), 1+c.rng.IntN(c.max))
	copy(p, c.b[:n])
	c.b = c.b[n:]
	return n, nil
}

const boundaryChars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"

// randomBody builds a multipart body with multipart.Writer: a random boundary, a few parts whose
// bytes are made to look like the boundary (its start cut at every length, "\r\n--", runs of
// '\r', zeros), sometimes a preamble, sometimes "\n" line ends throughout.
func randomBody(rng *rand.Rand) (body []byte, boundary string) {
	bl := 1 + rng.IntN(70)
	if rng.IntN(3) == 0 {
		bl = 1 + rng.IntN(4) // short boundaries match by chance more often
	}
	var bb strings.Builder
	for range bl {
		bb.WriteByte(boundaryChars[rng.IntN(len(boundaryChars)-1)]) // not ending in a space
	}
	boundary = bb.String()
	var buf bytes.Buffer
	if rng.IntN(4) == 0 {
		buf.WriteString("a preamble line\r\n--not the boundary\r\n")
	}
	mw := multipart.NewWriter(&buf)
	if err := mw.SetBoundary(boundary); err != nil {
		panic(err)
	}
	for i := range rng.IntN(5) {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="f%d"; filename="x%d.bin"`, i, i))
		if rng.IntN(5) == 0 {
			h.Set("Content-Type", "application/octet-stream")
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			panic(err)
		}
		w.Write(randomContent(rng, boundary))
	}
	mw.Close()
	body = buf.Bytes()
	if rng.IntN(6) == 0 {
		body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
	}
	return body, boundary
}

func randomContent(rng *rand.Rand, boundary string) []byte {
	var c []byte
	delim := "\r\n--" + boundary
	for range rng.IntN(12) {
		switch rng.IntN(8) {
		case 0:
			c = append(c, make([]byte, rng.IntN(300_000))...) // zeros, across buffer ends
		case 1:
			c = append(c, delim[:rng.IntN(len(delim)+1)]...) // a boundary cut short
		case 2:
			c = append(c, delim+"x"...) // a longer word than the boundary: content
		case 3:
			c = append(c, bytes.Repeat([]byte{'\r'}, rng.IntN(100))...)
		case 4:
			c = append(c, "\r\n-"...)
		case 5:
			b := make([]byte, rng.IntN(5000))
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			c = append(c, b...)
		default:
			c = append(c, "some text\r\n"...)
		}
	}
	return c
}

func TestFormReaderReadsWhatMimeMultipartReads(t *testing.T) {
	rng := rand.New(rand.NewPCG(19, 2))
	rounds := 400
	if testing.Short() {
		rounds = 60
	}
	clean := 0
	for round := range rounds {
		body, boundary := randomBody(rng)
		// Content made of boundary pieces sometimes holds a whole delimiter line, which makes
		// a body mime/multipart refuses: then formReader must refuse it too.
		want := parseStd(bytes.NewReader(body), boundary)
		if want.err == nil {
			clean++
		}
		for _, r := range []io.Reader{
			bytes.NewReader(body),
			&chunkReader{b: body, rng: rng, max: 1},
			&chunkReader{b: body, rng: rng, max: 100},
			&chunkReader{b: body, rng: rng, max: 64 << 10},
		} {
			if got := parseOurs(r, boundary); !same(got, want) {
				t.Fatalf("round %d, boundary %q, %T:\n ours %v\n std  %v", round, boundary, r, got, want)
			}
		}
		// Cut anywhere, the body is an error for both (or, cut inside the closing boundary's
		// line end, a whole body for both).
		cut := body[:rng.IntN(len(body)+1)]
		want = parseStd(bytes.NewReader(cut), boundary)
		if got := parseOurs(&chunkReader{b: cut, rng: rng, max: 1000}, boundary); !same(got, want) {
			t.Fatalf("round %d, boundary %q, cut at %d of %d:\n ours %v\n std  %v", round, boundary, len(cut), len(body), got, want)
		}
	}
	if clean < rounds/2 {
		t.Errorf("only %d of %d bodies were whole: the test says little about reading them", clean, rounds)
	}
}

func TestFormReaderOddBodies(t *testing.T) {
	for _, c := range []struct{ name, body string }{
		{"empty", ""},
		{"no parts", "--b--\r\n"},
		{"closing boundary without a line end", "--b\r\nA: 1\r\n\r\nx\r\n--b--"},
		{"empty part", "--b\r\n\r\n\r\n--b--\r\n"},
		{"empty part body starts with the boundary", "--b\r\n\r\n--b\r\n\r\ny\r\n--b--\r\n"},
		{"boundary with trailing space", "--b  \r\n\r\nx\r\n--b\t\r\n\r\ny\r\n--b--  \r\n"},
		{"a longer word is content", "--b\r\n\r\nx\r\n--bb\r\n--b-x\r\n--b--\r\n"},
		{"garbage after a part", "--b\r\n\r\nx\r\n--b\r\n\r\ny\r\nzzz\r\n--b--\r\n"},
		{"bad header", "--b\r\nnot a header\r\n\r\nx\r\n--b--\r\n"},
		{"quoted-printable", "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=3Db=\r\nc\r\n--b--\r\n"},
		{"no disposition", "--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--\r\n"},
		{"attachment, not form-data", "--b\r\nContent-Disposition: attachment; name=\"n\"\r\n\r\nx\r\n--b--\r\n"},
		{"newline line ends", "--b\nContent-Disposition: form-data; name=\"n\"\n\nx\r\ny\n--b--\n"},
		{"cut in a part", "--b\r\n\r\nxxxxx"},
		{"cut in a header", "--b\r\nA: 1\r\n"},
		{"preamble only", "hello\r\nworld\r\n"},
	} {
		want := parseStd(strings.NewReader(c.body), "b")
		for _, max := range []int{1, 3, 1 << 20} {
			got := parseOurs(&chunkReader{b: []byte(c.body), rng: rand.New(rand.NewPCG(1, 1)), max: max}, "b")
			if !same(got, want) {
				t.Errorf("%s (reads of at most %d):\n ours %v\n std  %v", c.name, max, got, want)
			}
		}
	}
}

func TestFormReaderRefusesWhatItCannotHold(t *testing.T) {
	if _, err := newFormReader(strings.NewReader(""), strings.Repeat("b", formMaxBoundary+1)); err == nil {
		t.Error("a boundary over 70 bytes was taken")
	}
	if _, err := newFormReader(strings.NewReader(""), ""); err == nil {
		t.Error("an empty boundary was taken")
	}
	// A header block that never ends is refused at formMaxHeader, not read into memory whole.
	body := "--b\r\nA: " + strings.Repeat("x", 1<<20)
	fr, err := newFormReader(strings.NewReader(body), "b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fr.NextPart(); !errors.Is(err, errFormHeaderTooLarge) {
		t.Errorf("a 1 MiB header: %v, want errFormHeaderTooLarge", err)
	}
}

func TestFormReaderGivesTheFileInLargeReads(t *testing.T) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile("file", "r.png")
	w.Write(make([]byte, 4<<20))
	mw.Close()
	fr, err := newFormReader(&buf, mw.Boundary())
	if err != nil {
		t.Fatal(err)
	}
	p, err := fr.NextPart()
	if err != nil {
		t.Fatal(err)
	}
	reads, total := 0, 0
	b := make([]byte, 1<<20)
	for {
		n, err := p.Read(b)
		total += n
		reads++
		if err != nil {
			break
		}
	}
	// mime/multipart hands out at most 4 KiB a read: a thousand for these 4 MiB.
	if total != 4<<20 || reads > 4*(1<<20)/(formBufSize/2) {
		t.Errorf("%d bytes in %d reads", total, reads)
	}
}

func FuzzFormReader(f *testing.F) {
	rng := rand.New(rand.NewPCG(7, 7))
	for range 20 {
		body, boundary := randomBody(rng)
		if len(body) > 8<<10 {
			body = body[:8<<10] // the fuzzer mutates small inputs faster
		}
		f.Add(body, boundary, uint16(1000))
	}
	f.Add([]byte("--b\r\n\r\nx\r\n--b--"), "b", uint16(1))
	f.Add([]byte("--b\n\nx\n--b-\n--b--\n"), "b", uint16(2))
	f.Fuzz(func(t *testing.T, body []byte, boundary string, chunk uint16) {
		if boundary == "" || len(boundary) > formMaxBoundary {
			if _, err := newFormReader(bytes.NewReader(body), boundary); err == nil {
				t.Fatalf("boundary %q taken", boundary)
			}
			return
		}
		got := parseOurs(&chunkReader{b: body, rng: rand.New(rand.NewPCG(uint64(chunk), 0)), max: 1 + int(chunk)}, boundary)
		want := parseStd(bytes.NewReader(body), boundary)
		// mime/multipart reads lines through a 4 KiB buffer and fails on a longer one; where it
		// reads the body, formReader must read the same.
		if want.err == nil && !same(got, want) {
			t.Fatalf("boundary %q:\n ours %v\n std  %v", boundary, got, want)
		}
	})
}

// The hub's cost of scanning a zero-padded 64 MiB file part: the padding of the bench's upload.
func BenchmarkFormReaderZeros(b *testing.B) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, _ := mw.CreateFormFile("file", "r.png")
	w.Write(make([]byte, 64<<20))
	mw.Close()
	body := buf.Bytes()
	b.Run("formReader", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			fr, _ := newFormReader(bytes.NewReader(body), mw.Boundary())
			p, _ := fr.NextPart()
			io.Copy(io.Discard, p)
		}
	})
	b.Run("mime-multipart", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			mr := multipart.NewReader(bytes.NewReader(body), mw.Boundary())
			p, _ := mr.NextPart()
			io.Copy(io.Discard, p)
		}
	})
}
