// files_stage_test.go: pipeCopy, the parallel hash-and-write copy of an incoming file, against a
// plain copy: the same bytes and digest at every size around its buffers, the limit, and the
// errors of either side.

package hub

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

func TestPipeCopyKeepsEveryByteInOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 4095, pipeBufSize - 1, pipeBufSize, pipeBufSize + 1, pipeBuffers*pipeBufSize + 12345} {
		src := make([]byte, size)
		for i := range src {
			src[i] = byte(rng.Uint32())
		}
		for _, r := range []struct {
			name string
			r    io.Reader
		}{
			{"whole", bytes.NewReader(src)},
			{"4 KiB reads", &smallReads{r: bytes.NewReader(src), max: 4096}},
			{"one byte then EOF with data", iotest.DataErrReader(iotest.OneByteReader(bytes.NewReader(src)))},
		} {
			var dst bytes.Buffer
			h := sha256.New()
			n, err := pipeCopy(&dst, h, r.r, int64(size)+10)
			if err != nil || n != int64(size) {
				t.Fatalf("%d bytes, %s: n %d err %v", size, r.name, n, err)
			}
			want := sha256.Sum256(src)
			if !bytes.Equal(dst.Bytes(), src) || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatalf("%d bytes, %s: the copy or its digest differs", size, r.name)
			}
		}
	}
}

func TestPipeCopyReadsOneByteOverTheLimit(t *testing.T) {
	const limit = 3*pipeBufSize + 7
	src := bytes.Repeat([]byte{'x'}, 5*pipeBufSize)
	var dst bytes.Buffer
	n, err := pipeCopy(&dst, sha256.New(), bytes.NewReader(src), limit)
	if err != nil || n != limit+1 || dst.Len() != limit+1 {
		t.Fatalf("n %d, wrote %d, err %v; want %d", n, dst.Len(), err, limit+1)
	}
}

func TestPipeCopyReportsAReadError(t *testing.T) {
	// A multipart body cut short ends its part with io.ErrUnexpectedEOF: that must not pass for
	// the end of the file.
	for _, want := range []error{io.ErrUnexpectedEOF, errors.New("connection reset")} {
		r := io.MultiReader(bytes.NewReader(make([]byte, pipeBufSize+100)), iotest.ErrReader(want))
		n, err := pipeCopy(io.Discard, sha256.New(), r, 1<<30)
		if !errors.Is(err, want) || n != pipeBufSize+100 {
			t.Fatalf("n %d err %v, want %v", n, err, want)
		}
	}
}

func TestPipeCopyStopsReadingAfterAFailedWrite(t *testing.T) {
	want := errors.New("disk full")
	src := &countingReader{r: bytes.NewReader(make([]byte, 64*pipeBufSize))}
	_, err := pipeCopy(&failingWriter{after: 2, err: want}, sha256.New(), src, 1<<40)
	if !errors.Is(err, want) {
		t.Fatalf("err %v, want %v", err, want)
	}
	// The reader is at most the pipeline's buffers (plus the one it was filling) ahead of the
	// failed write.
	if most := int64(2+pipeBuffers+2) * pipeBufSize; src.n > most {
		t.Fatalf("read %d bytes after the write failed at %d, want at most %d", src.n, 2*pipeBufSize, most)
	}
}

type smallReads struct {
	r   io.Reader
	max int
}

func (s *smallReads) Read(p []byte) (int, error) {
	if len(p) > s.max {
		p = p[:s.max]
	}
	return s.r.Read(p)
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// failingWriter takes `after` writes, then fails every one.
type failingWriter struct {
	after int
	err   error
}

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.after == 0 {
		return 0, f.err
	}
	f.after--
	return len(p), nil
}
