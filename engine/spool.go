// spool.go: a result file written into the spool folder under a temporary name, hashed and
// flushed to disk as it is written, and committed whole. It must not know what the file holds.

package engine

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"

	"studioworker/internal/durable"
)

// spoolFile is a result file being written inside a job's spool folder. It is created with a
// ".part" name and gets its final extension on commit, so a half-written file never looks like a
// result; abort removes it. Its sha256 is computed on the way to the file (hashedFile), so the
// worker need not read a large result back just to hash it before the upload (issue 19: about
// 0.8 s per GiB).
type spoolFile struct {
	f    *os.File
	h    hash.Hash
	w    *bufio.Writer
	path string
	done bool
	hex  string // the sha256 once committed

	syncEvery int64                // syncEvery; tests make it small
	fsync     func(*os.File) error // (*os.File).Sync; tests make it fail
	unsynced  int64                // bytes written since the last background sync began
	syncing   chan struct{}        // closed when the background sync ends; nil when none was started
	syncErr   error                // a background sync's error, set before syncing is closed
}

// syncEvery is how much a result file grows before a background fsync of it begins. The session
// fsyncs the file before its upload (PROTOCOL.md §10 (q)); flushed as it is written, the file has
// little left to flush then: that fsync took 0.56 s for 1 GiB written in one go (issue 19), time
// between the engine's end and the upload's start.
const syncEvery = 64 << 20

// spoolSink is what the bufio.Writer writes to: the file, the hash (exactly the bytes the file
// took; under the buffer, so it sees large chunks even when an engine writes two bytes at a
// time), and the background fsync's count.
type spoolSink struct{ s *spoolFile }

func (w spoolSink) Write(p []byte) (int, error) {
	s := w.s
	n, err := s.f.Write(p)
	s.h.Write(p[:n])
	s.unsynced += int64(n)
	if s.unsynced >= s.syncEvery {
		s.syncBehind()
	}
	return n, err
}

// syncBehind starts an fsync of the file on a goroutine, unless one still runs (then the next
// write tries again). At most one runs at a time, and commit and abort wait for it.
func (s *spoolFile) syncBehind() {
	if s.syncing != nil {
		select {
		case <-s.syncing:
		default:
			return
		}
		if s.syncErr != nil {
			return // commit reports it
		}
	}
	s.unsynced = 0
	done := make(chan struct{})
	s.syncing = done
	go func() {
		defer close(done)
		// Kept for commit: on Linux a failed writeback is reported to one fsync only, so an
		// error swallowed here would let the session's own fsync pass over lost bytes.
		s.syncErr = s.fsync(s.f)
	}()
}

// waitSync waits for the background fsync, if one was started, and returns its error.
func (s *spoolFile) waitSync() error {
	if s.syncing == nil {
		return nil
	}
	<-s.syncing
	return s.syncErr
}

// newSpoolFile creates an empty result file for job inside job.SpoolDir.
func newSpoolFile(job Job) (*spoolFile, error) {
	if job.SpoolDir == "" {
		return nil, &Error{Retry: true, Err: errors.New("engine: job has no spool folder for its result file")}
	}
	if err := os.MkdirAll(job.SpoolDir, 0o700); err != nil {
		return nil, &Error{Retry: true, Err: fmt.Errorf("engine: spool folder: %w", err)}
	}
	f, err := os.CreateTemp(job.SpoolDir, safeName(job.ID)+"-*.part")
	if err != nil {
		return nil, &Error{Retry: true, Err: fmt.Errorf("engine: result file: %w", err)}
	}
	s := &spoolFile{f: f, h: sha256.New(), path: f.Name(), syncEvery: syncEvery, fsync: (*os.File).Sync}
	s.w = bufio.NewWriterSize(spoolSink{s}, 256<<10)
	return s, nil
}

func (s *spoolFile) Write(p []byte) (int, error) { return s.w.Write(p) }

// base is the path without its ".part" extension.
func (s *spoolFile) base() string { return strings.TrimSuffix(s.path, ".part") }

// commit flushes and closes the file and renames it to carry ext; it returns the final path.
func (s *spoolFile) commit(ext string) (string, error) {
	s.done = true
	err := s.w.Flush()
	if serr := s.waitSync(); err == nil {
		err = serr
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(s.path)
		return "", &Error{Retry: true, Err: fmt.Errorf("engine: writing the result file: %w", err)}
	}
	final := s.base() + "." + ext
	// durable.Rename also waits out (or copies past) a backend that still holds the file open,
	// which Windows would otherwise refuse.
	if err := durable.Rename(s.path, final); err != nil {
		os.Remove(s.path)
		return "", &Error{Retry: true, Err: fmt.Errorf("engine: result file: %w", err)}
	}
	s.hex = hex.EncodeToString(s.h.Sum(nil))
	return final, nil
}

// sum is the lower-case hex sha256 of the committed file, "" before commit. The session hands it
// to the hub as it is; the hub checks it, and a mismatch makes the worker hash the file itself
// (PROTOCOL.md §10 (j)), so a wrong sum costs one upload, never a wrong result.
func (s *spoolFile) sum() string { return s.hex }

// abort closes and removes the file unless it was committed; safe to defer.
func (s *spoolFile) abort() {
	if s.done {
		return
	}
	s.done = true
	_ = s.waitSync()
	s.f.Close()
	os.Remove(s.path)
}

// safeName keeps a job id usable as part of a file name, whatever the hub put in it.
func safeName(id string) string {
	var b strings.Builder
	for _, r := range id {
		if b.Len() >= 64 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 {
		return "job"
	}
	return b.String()
}

// insideDir reports whether path lies inside dir (after cleaning); used to check where a
// command-line tool was told to write.
func insideDir(dir, path string) bool {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(path))
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..")
}

func hash64(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

func removeQuietly(path string) { _ = os.Remove(path) }
