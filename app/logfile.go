// logfile.go: the worker's log file — where it lives on each OS, bounded by rotation. It must not
// know what is logged.

package app

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
)

// A service has no terminal, and a creator sending a bug report needs a file: the worker logs to
// stderr and to a LogFile, which is capped in size and keeps a few older files beside it.

// Defaults of OpenLogFile: at most about 20 MiB of logs on disk.
const (
	DefaultLogMaxBytes int64 = 5 << 20
	DefaultLogKeep           = 3
)

// LogDir is the folder of the worker's log files: os.UserCacheDir()/studio-worker.
func LogDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("log folder: %w", err)
	}
	return filepath.Join(dir, "studio-worker"), nil
}

// LogFile is an io.WriteCloser on a file that rotates when a write would take it past maxBytes:
// path becomes path.1, path.1 becomes path.2 and so on up to path.<keep>, the oldest is deleted,
// and the write goes to a new, empty path. Each write lands whole in one file (a write larger than
// maxBytes gets a file of its own), so a log record is never split. Safe for concurrent use.
type LogFile struct {
	path     string
	maxBytes int64
	keep     int

	mu     sync.Mutex
	f      *os.File // nil after a failed rotation until a write opens it again, and after Close
	size   int64
	closed bool
}

// OpenLogFile opens path for appending, creating its folder (0700) and the file (0600). maxBytes
// <= 0 means DefaultLogMaxBytes, keep <= 0 means DefaultLogKeep.
func OpenLogFile(path string, maxBytes int64, keep int) (*LogFile, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultLogMaxBytes
	}
	if keep <= 0 {
		keep = DefaultLogKeep
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	l := &LogFile{path: path, maxBytes: maxBytes, keep: keep}
	if err := l.openLocked(); err != nil {
		return nil, err
	}
	return l, nil
}

// Path is the file being written; the older ones are Path()+".1" … Path()+".<keep>".
func (l *LogFile) Path() string { return l.path }

// Write writes p whole to the current file, rotating first when p would take it past the cap.
// When rotating fails (a full disk, a folder made read-only), the write still goes to the current
// file and the rotation is tried again at the next write: a log line is worth more than the cap.
func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, fmt.Errorf("log file %s: %w", l.path, os.ErrClosed)
	}
	var rotateErr error
	if l.f != nil && l.size > 0 && l.size+int64(len(p)) > l.maxBytes {
		rotateErr = l.rotateLocked()
	}
	if l.f == nil {
		if err := l.openLocked(); err != nil {
			return 0, errors.Join(rotateErr, err)
		}
	}
	n, err := l.f.Write(p)
	l.size += int64(n)
	if err != nil {
		return n, fmt.Errorf("log file: %w", err)
	}
	return n, nil
}

// Close closes the file; later writes fail with os.ErrClosed.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	return nil
}

func (l *LogFile) openLocked() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	st, err := f.Stat()
	if err == nil && st.Mode().Perm() != 0o600 && runtime.GOOS != "windows" {
		// A file left by an older version or another tool: logs can name files and hosts.
		err = f.Chmod(0o600)
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("log file: %w", err)
	}
	l.f, l.size = f, st.Size()
	return nil
}

// rotateLocked shifts the files by one and opens a new path. The file is closed before it is
// renamed, which Windows needs.
func (l *LogFile) rotateLocked() error {
	var errs []error
	if err := l.f.Close(); err != nil {
		errs = append(errs, err)
	}
	l.f = nil
	name := func(i int) string { return l.path + "." + strconv.Itoa(i) }
	if err := os.Remove(name(l.keep)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	for i := l.keep - 1; i >= 1; i-- {
		if err := os.Rename(name(i), name(i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Rename(l.path, name(1)); err != nil {
		errs = append(errs, err)
	}
	if err := l.openLocked(); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("log file: rotate %s: %w", l.path, errors.Join(errs...))
	}
	return nil
}
