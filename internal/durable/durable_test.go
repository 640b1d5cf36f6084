// Tests of durable that hold on every OS; durable_windows_test.go adds what only Windows refuses.
package durable

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name   string
		before string // "" = no file yet
		data   string
	}{
		{"new file", "", "hello"},
		{"replaces", "old content that is longer", "new"},
		{"empty", "x", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tempDir(t)
			path := filepath.Join(dir, "Jos\u00e9 M\u00fcller", "config.json")
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				t.Fatal(err)
			}
			if tc.before != "" {
				if err := os.WriteFile(path, []byte(tc.before), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(path, []byte(tc.data), 0o600); err != nil {
				t.Fatalf("WriteFile: %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != tc.data {
				t.Fatalf("content = %q, %v; want %q", got, err, tc.data)
			}
			assertOnly(t, filepath.Dir(path), "config.json")
			if runtime.GOOS != "windows" {
				st, _ := os.Stat(path)
				if st.Mode().Perm() != 0o600 {
					t.Fatalf("mode = %v, want 0600", st.Mode().Perm())
				}
			}
		})
	}
}

func TestWriteFileMissingFolder(t *testing.T) {
	path := filepath.Join(tempDir(t), "no-such-folder", "f")
	err := WriteFile(path, []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), "no-such-folder") {
		t.Fatalf("err = %v, want one that names the path", err)
	}
}

func TestRenameAcrossFolders(t *testing.T) {
	dir := tempDir(t)
	src := filepath.Join(dir, "spool", "job 1.part")
	dst := filepath.Join(dir, "outbox", "job 1.png")
	for _, d := range []string{filepath.Dir(src), filepath.Dir(dst)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(src, []byte("png"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, []byte("an older result"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Rename(src, dst); err != nil {
		t.Fatalf("Rename: %v", err)
	}
	if got, _ := os.ReadFile(dst); string(got) != "png" {
		t.Fatalf("dst = %q", got)
	}
	if _, err := os.Stat(src); !os.IsNotExist(err) {
		t.Fatalf("src still there: %v", err)
	}
}

func TestRenameMissingSource(t *testing.T) {
	dir := tempDir(t)
	if err := Rename(filepath.Join(dir, "gone"), filepath.Join(dir, "x")); !os.IsNotExist(err) {
		t.Fatalf("err = %v, want not-exist", err)
	}
}

func TestRemove(t *testing.T) {
	dir := tempDir(t)
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := Remove(p); err != nil {
		t.Fatalf("removing a missing file: %v", err)
	}
}

func TestSyncDirAndFile(t *testing.T) {
	dir := tempDir(t)
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(dir); err != nil {
		t.Fatalf("SyncDir: %v", err)
	}
	if err := SyncFile(p); err != nil {
		t.Fatalf("SyncFile: %v", err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("SyncDir of a missing folder succeeded")
	}
}

func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("folder holds %v, want %v", got, names)
	}
}

func TestRemoveAll(t *testing.T) {
	for name, remove := range map[string]func(string) error{"RemoveAll": RemoveAll, "one entry at a time": removeTree} {
		t.Run(name, func(t *testing.T) { testRemoveAll(t, remove) })
	}
}

func testRemoveAll(t *testing.T, removeAll func(string) error) {
	dir := tempDir(t)
	tree := filepath.Join(dir, "jobs", "job 1")
	if err := os.MkdirAll(filepath.Join(tree, "in"), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{filepath.Join(tree, "a.part"), filepath.Join(tree, "in", "audio.wav")} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := removeAll(filepath.Join(dir, "jobs")); err != nil {
		t.Fatalf("remove: %v", err)
	}
	assertOnly(t, dir)
	if err := removeAll(filepath.Join(dir, "jobs")); err != nil {
		t.Fatalf("removing nothing: %v", err)
	}
}

// tempDir is t.TempDir that also cleans up under Wine 8, whose refusal of os.RemoveAll would fail
// every test in the Windows lane at cleanup.
func tempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "durable-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return dir
}
