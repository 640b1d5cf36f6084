// files_stage.go: the copy of an incoming file into its temporary file, with the reading (socket
// and multipart boundaries), the sha256 and the write syscalls each on a goroutine of its own, so
// that an upload costs the slowest of the three instead of their sum.

package hub

import (
	"errors"
	"hash"
	"io"
	"sync"
)

// A 1 GiB upload on one goroutine spent, per GiB, about 2 s in write syscalls, 0.65 s in sha256
// and 0.5 s reading and scanning for the boundary, one after the other (bench/ upload figure,
// docs/performance.md). In a pipeline of pipeBuffers buffers the three overlap; the hub holds at
// most pipeBuffers × pipeBufSize per upload in flight, and the buffers are pooled.
const (
	pipeBuffers = 4
	pipeBufSize = 1 << 20
)

var pipeBufPool = sync.Pool{New: func() any { b := make([]byte, pipeBufSize); return &b }}

// pipeCopy copies src to dst and into h, reading at most limit+1 bytes, and returns how many it
// read. It returns the first error of a read (other than io.EOF) or of a write; after a failed
// write it stops reading. h sees exactly the bytes dst was given, in order.
func pipeCopy(dst io.Writer, h hash.Hash, src io.Reader, limit int64) (int64, error) {
	free := make(chan *[]byte, pipeBuffers)
	for range pipeBuffers {
		free <- pipeBufPool.Get().(*[]byte)
	}
	type chunk struct {
		buf *[]byte
		n   int
	}
	toHash := make(chan chunk, pipeBuffers)
	toWrite := make(chan chunk, pipeBuffers)
	stop := make(chan struct{}) // closed by the writer once a write fails
	var werr error              // the writer's; read after wg.Wait
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // hashes each chunk, then hands it on to be written
		defer wg.Done()
		defer close(toWrite)
		for c := range toHash {
			h.Write((*c.buf)[:c.n])
			toWrite <- c
		}
	}()
	go func() { // writes each chunk and gives its buffer back; after a failure it only drains
		defer wg.Done()
		for c := range toWrite {
			if werr == nil {
				if _, err := dst.Write((*c.buf)[:c.n]); err != nil {
					werr = err
					close(stop)
				}
			}
			free <- c.buf
		}
	}()

	lr := io.LimitReader(src, limit+1)
	var total int64
	var rerr error
	for done := false; !done; {
		var buf *[]byte
		select {
		case buf = <-free:
		case <-stop:
			done = true
			continue
		}
		// Fill the whole buffer (a multipart part gives at most 4 KiB a Read), so that each
		// write is large. Not io.ReadFull: it reports a source's own io.ErrUnexpectedEOF (a
		// body cut short) the same as a clean end after a partial buffer.
		b, n := *buf, 0
		var err error
		for n < len(b) && err == nil {
			var k int
			k, err = lr.Read(b[n:])
			n += k
		}
		if n > 0 {
			total += int64(n)
			toHash <- chunk{buf, n}
		} else {
			free <- buf
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				rerr = err
			}
			done = true
		}
	}
	close(toHash)
	wg.Wait()
	for range pipeBuffers { // every buffer is back in free once both goroutines have ended
		pipeBufPool.Put(<-free)
	}
	if rerr != nil {
		return total, rerr
	}
	return total, werr
}
