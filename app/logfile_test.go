// logfile_test.go: the log file's rotation and its bound.

package app

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// logfFiles reads every file in dir: name -> content.
func logfFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	return files
}

func logfWrite(t *testing.T, l *LogFile, s string) {
	t.Helper()
	n, err := l.Write([]byte(s))
	if err != nil || n != len(s) {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func TestLogFileRotation(t *testing.T) {
	tests := []struct {
		name   string
		max    int64
		keep   int
		writes []string
		want   map[string]string
	}{
		{
			name:   "up to the cap stays in one file",
			max:    10,
			keep:   2,
			writes: []string{"aaaa\n", "bbbb\n"},
			want:   map[string]string{"w.log": "aaaa\nbbbb\n"},
		},
		{
			name:   "a write past the cap rotates first",
			max:    10,
			keep:   2,
			writes: []string{"aaaa\n", "bbbb\n", "c\n"},
			want:   map[string]string{"w.log": "c\n", "w.log.1": "aaaa\nbbbb\n"},
		},
		{
			name:   "files shift and the oldest goes",
			max:    10,
			keep:   2,
			writes: []string{"aaaa\n", "bbbb\n", "cccc\n", "dddd\n", "eeee\n", "ffff\n", "gggg\n"},
			want:   map[string]string{"w.log": "gggg\n", "w.log.1": "eeee\nffff\n", "w.log.2": "cccc\ndddd\n"},
		},
		{
			name:   "a write bigger than the cap gets a file of its own",
			max:    4,
			keep:   3,
			writes: []string{"ab\n", "0123456789\n", "cd\n"},
			want:   map[string]string{"w.log": "cd\n", "w.log.1": "0123456789\n", "w.log.2": "ab\n"},
		},
		{
			name:   "keep 1",
			max:    3,
			keep:   1,
			writes: []string{"a\n", "b\n", "c\n", "d\n"},
			want:   map[string]string{"w.log": "d\n", "w.log.1": "c\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := OpenLogFile(filepath.Join(dir, "w.log"), tt.max, tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.writes {
				logfWrite(t, l, w)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got := logfFiles(t, dir)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("files = %q\nwant    %q", got, tt.want)
			}
		})
	}
}

func TestLogFileKeepCount(t *testing.T) {
	for _, keep := range []int{1, 2, 5} {
		t.Run("keep "+strconv.Itoa(keep), func(t *testing.T) {
			dir := t.TempDir()
			l, err := OpenLogFile(filepath.Join(dir, "w.log"), 16, keep)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			const lines = 200
			for i := range lines {
				logfWrite(t, l, fmt.Sprintf("line %04d\n", i)) // 10 bytes: one line per file
				if n := len(logfFiles(t, dir)); n > keep+1 {
					t.Fatalf("after line %d: %d files, want at most %d", i, n, keep+1)
				}
			}
			want := []string{"w.log"}
			for i := 1; i <= keep; i++ {
				want = append(want, "w.log."+strconv.Itoa(i))
			}
			files := logfFiles(t, dir)
			names := slices.Sorted(maps.Keys(files))
			if !slices.Equal(names, want) {
				t.Fatalf("files = %q, want %q", names, want)
			}
			// Newest in w.log, then w.log.1, … : the last keep+1 lines in order.
			for i, name := range want {
				if line := fmt.Sprintf("line %04d\n", lines-1-i); files[name] != line {
					t.Errorf("%s = %q, want %q", name, files[name], line)
				}
			}
		})
	}
}

func TestLogFileConcurrentWriters(t *testing.T) {
	dir := t.TempDir()
	const writers, lines, max, keep = 8, 300, 1000, 1000 // keep all, to check nothing is lost
	l, err := OpenLogFile(filepath.Join(dir, "w.log"), max, keep)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				line := fmt.Sprintf("writer %d line %04d %s\n", w, i, strings.Repeat("x", 10+i%17))
				if _, err := l.Write([]byte(line)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	files := logfFiles(t, dir)
	if len(files) < 10 {
		t.Fatalf("only %d files: the test did not rotate much", len(files))
	}
	// Oldest first: w.log.<n> … w.log.1, w.log.
	next := make([]int, writers) // the line each writer must show next
	for i := len(files) - 1; i >= 0; i-- {
		name := "w.log"
		if i > 0 {
			name += "." + strconv.Itoa(i)
		}
		content, ok := files[name]
		if !ok {
			t.Fatalf("%s is missing; files: %d", name, len(files))
		}
		if len(content) > max {
			t.Errorf("%s has %d bytes, over the cap %d", name, len(content), max)
		}
		sc := bufio.NewScanner(strings.NewReader(content))
		for sc.Scan() {
			var w, n int
			var pad string
			if _, err := fmt.Sscanf(sc.Text(), "writer %d line %d %s", &w, &n, &pad); err != nil || w < 0 || w >= writers || len(pad) != 10+n%17 {
				t.Fatalf("%s: torn line %q (%v)", name, sc.Text(), err)
			}
			if n != next[w] {
				t.Fatalf("%s: writer %d line %d, want line %d", name, w, n, next[w])
			}
			next[w]++
		}
	}
	for w, n := range next {
		if n != lines {
			t.Errorf("writer %d: %d lines found, want %d", w, n, lines)
		}
	}
}

func TestLogFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix permissions")
	}
	dir := filepath.Join(t.TempDir(), "cache", "studio-worker")
	path := filepath.Join(dir, "worker.log")
	l, err := OpenLogFile(path, 8, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for range 5 {
		logfWrite(t, l, "12345\n") // rotates at each write
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("folder: %v, %v; want 0700", st.Mode().Perm(), err)
	}
	for _, p := range []string{path, path + ".1", path + ".2"} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v; want 0600", p, err)
			if err == nil {
				t.Errorf("%s mode %v", p, st.Mode().Perm())
			}
		}
	}
}

func TestLogFileTightensAnOpenFile(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Unix permissions")
	}
	path := filepath.Join(t.TempDir(), "worker.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // past the umask
		t.Fatal(err)
	}
	l, err := OpenLogFile(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode after open: %v, %v; want 0600", st.Mode().Perm(), err)
	}
}

func TestLogFileAppendsAndCountsWhatIsThere(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.log")
	if err := os.WriteFile(path, []byte("0123456\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := OpenLogFile(path, 10, 3)
	if err != nil {
		t.Fatal(err)
	}
	logfWrite(t, l, "a\n") // 10 bytes: fits
	logfWrite(t, l, "b\n") // 12: rotates
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"w.log": "b\n", "w.log.1": "0123456\na\n"}
	if got := logfFiles(t, dir); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("files = %q, want %q", got, want)
	}
}

func TestLogFileDefaultsAndClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "w.log")
	l, err := OpenLogFile(path, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	if l.maxBytes != DefaultLogMaxBytes || l.keep != DefaultLogKeep || DefaultLogMaxBytes != 5<<20 || DefaultLogKeep != 3 {
		t.Errorf("max %d keep %d, want 5 MiB and 3", l.maxBytes, l.keep)
	}
	if l.Path() != path {
		t.Errorf("Path() = %q, want %q", l.Path(), path)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := l.Write([]byte("late\n")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Write after Close: %v, want os.ErrClosed", err)
	}
}

func TestLogFileRotationFailureKeepsLogging(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "w.log")
	l, err := OpenLogFile(path, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	logfWrite(t, l, "aaa\n")
	// A folder that is not empty where w.log.1 goes: it can be neither removed nor replaced, even
	// by root.
	block := filepath.Join(path+".1", "in-the-way")
	if err := os.MkdirAll(block, 0o700); err != nil {
		t.Fatal(err)
	}
	logfWrite(t, l, "bbb\n") // cannot rotate: goes on in the same file
	if got, _ := os.ReadFile(path); string(got) != "aaa\nbbb\n" {
		t.Fatalf("w.log = %q after a failed rotation", got)
	}
	if err := os.RemoveAll(path + ".1"); err != nil {
		t.Fatal(err)
	}
	logfWrite(t, l, "ccc\n") // rotates now
	want := map[string]string{"w.log": "ccc\n", "w.log.1": "aaa\nbbb\n"}
	if got := logfFiles(t, dir); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("files = %q, want %q", got, want)
	}
}

func TestLogDir(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("XDG_CACHE_HOME is how Linux finds the cache folder")
	}
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	got, err := LogDir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(cache, "studio-worker"); got != want {
		t.Errorf("LogDir() = %q, want %q", got, want)
	}
}
