// multipart.go: a multipart/form-data reader for uploads, part by part, with the part's end found
// by bytes.Index and a look at the buffer's tail only. It reads what mime/multipart reads the same
// way (multipart_test.go holds it to that), and must not know what the parts mean.

package hub

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/textproto"
	"strings"
)

// Why not mime/multipart: its part reader looks for a possible boundary at the end of each 4 KiB
// buffer with bytes.LastIndexByte, a byte-at-a-time loop over the whole buffer whenever it holds
// no '\r' (zero padding, silence), which cost the hub 0.44 s of CPU per GiB uploaded (profiled
// with bench/, issue 19). Here only the last len("\r\n--boundary")-1 bytes can hold the start of a
// boundary cut by the buffer's end, so only they are looked at, and the buffer is large, so that
// the file's bytes come out in large reads.
const (
	formBufSize = 256 << 10
	// formMaxHeader bounds one part's header block (the upload's parts carry two short lines):
	// textproto reads a header without a limit of its own.
	formMaxHeader = 64 << 10
	// formMaxBoundary is RFC 2046's limit (and what mime/multipart.Writer makes).
	formMaxBoundary = 70
	// formMaxLine is the longest line outside the parts' bytes and headers (a preamble, a line
	// between parts): mime/multipart reads them through its 4 KiB buffer and fails past it.
	formMaxLine = 4096
)

var errFormHeaderTooLarge = errors.New("multipart: a part's header is over 64 KiB")

// formReader reads a multipart/form-data body. Like multipart.Reader it accepts "\n" line ends
// when the first boundary line ends so, and skips a preamble before the first boundary.
type formReader struct {
	br               *bufio.Reader
	nl               []byte // "\r\n", or "\n" (see above)
	nlDashBoundary   []byte // nl + "--" + boundary
	dashBoundary     []byte // "--" + boundary
	dashBoundaryDash []byte // "--" + boundary + "--"
	partsRead        int
	cur              *formPart
}

// uploadForm is r.MultipartReader for multipart/form-data, on a formReader.
func uploadForm(r *http.Request) (*formReader, error) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return nil, http.ErrNotMultipart
	}
	return newFormReader(r.Body, params["boundary"])
}

func newFormReader(r io.Reader, boundary string) (*formReader, error) {
	if boundary == "" {
		return nil, http.ErrMissingBoundary
	}
	if len(boundary) > formMaxBoundary {
		return nil, fmt.Errorf("multipart: boundary is over %d bytes", formMaxBoundary)
	}
	b := []byte("\r\n--" + boundary + "--")
	return &formReader{
		br:               bufio.NewReaderSize(r, formBufSize),
		nl:               b[:2],
		nlDashBoundary:   b[:len(b)-2],
		dashBoundary:     b[2 : len(b)-2],
		dashBoundaryDash: b[2:],
	}, nil
}

// namedPart is a form part as the handlers read it: a formPart, or a mime/multipart.Part.
type namedPart interface {
	io.Reader
	FormName() string
}

// formPart is one part; its Read ends with io.EOF at the part's boundary.
type formPart struct {
	Header textproto.MIMEHeader
	fr     *formReader
	r      io.Reader // the part's bytes: raw, or decoded when quoted-printable

	n       int   // bytes at the front of the buffer known to be the part's
	total   int64 // bytes of the part read so far
	err     error // what comes once the n bytes are read: io.EOF at the boundary
	readErr error // the last error reading into the buffer

	nameDone bool
	name     string
}

// FormName is the name parameter of a form-data Content-Disposition, "" otherwise.
func (p *formPart) FormName() string {
	if !p.nameDone {
		p.nameDone = true
		if d, params, err := mime.ParseMediaType(p.Header.Get("Content-Disposition")); err == nil && d == "form-data" {
			p.name = params["name"]
		}
	}
	return p.name
}

func (p *formPart) Read(d []byte) (int, error) { return p.r.Read(d) }

// Close reads the rest of the part, so that the next one can be found.
func (p *formPart) Close() error {
	_, _ = io.Copy(io.Discard, p)
	return nil
}

// rawPart reads the part's bytes up to its boundary.
type rawPart struct{ p *formPart }

func (rp rawPart) Read(d []byte) (int, error) {
	p := rp.p
	br := p.fr.br
	// Until some bytes are known to be the part's, or there is a reason to stop: look at what is
	// buffered, and read more when that cannot decide.
	for p.n == 0 && p.err == nil {
		peek, _ := br.Peek(br.Buffered())
		p.n, p.err = scanForm(peek, p.fr.dashBoundary, p.fr.nlDashBoundary, p.total, p.readErr)
		if p.n == 0 && p.err == nil {
			// The buffer is never full here: it is far larger than a boundary, and only a
			// boundary's length at its end is ever held back.
			_, p.readErr = br.Peek(len(peek) + 1)
			if p.readErr == io.EOF {
				p.readErr = io.ErrUnexpectedEOF
			}
		}
	}
	if p.n == 0 {
		return 0, p.err
	}
	n, _ := br.Read(d[:min(len(d), p.n)])
	p.total += int64(n)
	p.n -= n
	if p.n == 0 {
		return n, p.err
	}
	return n, nil
}

// scanForm says how many bytes at the front of buf are the part's for sure, and io.EOF when the
// part's boundary follows them. total is how much of the part was read before buf; readErr is the
// error that ended the buffer's filling, returned once buf cannot decide without more input.
// mime/multipart's scanUntilBoundary, but for the last step.
func scanForm(buf, dashBoundary, nlDashBoundary []byte, total int64, readErr error) (int, error) {
	if total == 0 {
		// At the start of a part (its header's blank line took the "\r\n"), an empty part's
		// boundary comes without the line end in front.
		if bytes.HasPrefix(buf, dashBoundary) {
			switch matchBoundaryEnd(buf, dashBoundary, readErr) {
			case -1:
				return len(dashBoundary), nil
			case 0:
				return 0, nil
			case +1:
				return 0, io.EOF
			}
		}
		if bytes.HasPrefix(dashBoundary, buf) {
			return 0, readErr
		}
	}
	if i := bytes.Index(buf, nlDashBoundary); i >= 0 {
		switch matchBoundaryEnd(buf[i:], nlDashBoundary, readErr) {
		case -1:
			return i + len(nlDashBoundary), nil
		case 0:
			return i, nil
		case +1:
			return i, io.EOF
		}
	}
	if bytes.HasPrefix(nlDashBoundary, buf) {
		return 0, readErr
	}
	// No whole boundary in buf: only its last len(nlDashBoundary)-1 bytes can be the start of
	// one cut by the end of the buffer; everything before them is the part's.
	from := max(0, len(buf)-len(nlDashBoundary)+1)
	for i := from; i < len(buf); i++ {
		j := bytes.IndexByte(buf[i:], nlDashBoundary[0])
		if j < 0 {
			break
		}
		i += j
		if bytes.HasPrefix(nlDashBoundary, buf[i:]) {
			return i, nil
		}
	}
	return len(buf), readErr
}

// matchBoundaryEnd looks past a boundary found at the start of buf: +1 when it ends there (followed
// by "--", a space, a tab, a line end, or the end of the input), -1 when it is only the start of a
// longer word, 0 when more input must be read to say.
func matchBoundaryEnd(buf, prefix []byte, readErr error) int {
	if len(buf) == len(prefix) {
		if readErr != nil {
			return +1
		}
		return 0
	}
	c := buf[len(prefix)]
	if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
		return +1
	}
	if c == '-' {
		if len(buf) == len(prefix)+1 {
			if readErr != nil {
				return -1
			}
			return 0
		}
		if buf[len(prefix)+1] == '-' {
			return +1
		}
	}
	return -1
}

// NextPart reads up to the next part and returns it, or io.EOF after the closing boundary. The
// part before it, unread, is read to its end first.
func (r *formReader) NextPart() (*formPart, error) {
	if r.cur != nil {
		r.cur.Close()
		r.cur = nil
	}
	expectNewPart := false
	for {
		line, err := r.br.ReadSlice('\n')
		if len(line) > formMaxLine {
			return nil, fmt.Errorf("multipart: NextPart: a line is over %d bytes", formMaxLine)
		}
		if err == io.EOF && r.isFinalBoundary(line) {
			return nil, io.EOF // "--boundary--" without a line end at the very end
		}
		if err != nil {
			return nil, fmt.Errorf("multipart: NextPart: %w", err)
		}
		if r.isBoundaryDelimiterLine(line) {
			r.partsRead++
			p, err := r.newPart()
			if err != nil {
				return nil, err
			}
			r.cur = p
			return p, nil
		}
		if r.isFinalBoundary(line) {
			return nil, io.EOF
		}
		if expectNewPart {
			return nil, fmt.Errorf("multipart: expecting a new Part; got line %q", string(line))
		}
		if r.partsRead == 0 {
			continue // the preamble
		}
		// The line end between the previous part's bytes and the boundary line that follows.
		if bytes.Equal(line, r.nl) {
			expectNewPart = true
			continue
		}
		return nil, fmt.Errorf("multipart: unexpected line in Next(): %q", line)
	}
}

func (r *formReader) newPart() (*formPart, error) {
	if err := r.headerFits(); err != nil {
		return nil, err
	}
	h, err := textproto.NewReader(r.br).ReadMIMEHeader()
	if err != nil {
		return nil, err
	}
	p := &formPart{Header: h, fr: r}
	p.r = rawPart{p}
	const cte = "Content-Transfer-Encoding"
	if strings.EqualFold(h.Get(cte), "quoted-printable") {
		h.Del(cte)
		p.r = quotedprintable.NewReader(rawPart{p})
	}
	return p, nil
}

// headerFits checks that the part's header block ends (with an empty line) within formMaxHeader
// bytes, or with the input, before textproto reads it.
func (r *formReader) headerFits() error {
	for n := 0; ; {
		peek, err := r.br.Peek(min(formMaxHeader, n+4096))
		if headerEnd(peek) || err != nil {
			return nil // an input cut short is textproto's to report
		}
		if len(peek) >= formMaxHeader {
			return errFormHeaderTooLarge
		}
		n = len(peek)
	}
}

// headerEnd reports whether b holds a whole header block: up to and with an empty line.
func headerEnd(b []byte) bool {
	if bytes.HasPrefix(b, []byte("\n")) || bytes.HasPrefix(b, []byte("\r\n")) {
		return true
	}
	return bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\n\r\n"))
}

func (r *formReader) isBoundaryDelimiterLine(line []byte) bool {
	if !bytes.HasPrefix(line, r.dashBoundary) {
		return false
	}
	rest := skipLWSP(line[len(r.dashBoundary):])
	// A first boundary line that ends in "\n" alone switches the reader to "\n" line ends:
	// against the RFC, but senders do it.
	if r.partsRead == 0 && len(rest) == 1 && rest[0] == '\n' {
		r.nl = r.nl[1:]
		r.nlDashBoundary = r.nlDashBoundary[1:]
	}
	return bytes.Equal(rest, r.nl)
}

func (r *formReader) isFinalBoundary(line []byte) bool {
	if !bytes.HasPrefix(line, r.dashBoundaryDash) {
		return false
	}
	rest := skipLWSP(line[len(r.dashBoundaryDash):])
	return len(rest) == 0 || bytes.Equal(rest, r.nl)
}

func skipLWSP(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}
