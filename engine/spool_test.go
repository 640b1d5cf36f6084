// spool_test.go: the sha256 a spool file computes as it is written is the file's, for every
// engine that writes through it; a file an engine did not write itself carries none.

package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"sync/atomic"
	"testing"

	"studioworker/protocol"
)

// checkSum fails unless res.SHA256 is the sha256 of the file on disk.
func checkSum(t *testing.T, res Result) {
	t.Helper()
	data, err := os.ReadFile(res.File)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if want := hex.EncodeToString(sum[:]); res.SHA256 != want {
		t.Fatalf("Result.SHA256 = %q, the file's is %s (%d bytes)", res.SHA256, want, len(data))
	}
}

func TestSyntheticResultsCarryTheSHA256OfTheirFile(t *testing.T) {
	r := mustRouter(t, DefaultConfig(), Options{})
	for _, c := range []struct {
		kind  protocol.Kind
		input string
	}{
		{protocol.KindImage, `{"prompt":"a lighthouse","width":64,"height":40,"seed":3}`},
		// Padding goes through the same spool file in large writes, between the encoder's
		// chunks and the IEND it held back.
		{protocol.KindImage, `{"prompt":"a lighthouse","width":64,"height":40,"seed":3,"pad_bytes":3000000}`},
		// Two bytes per Write: the hash must see the buffered bytes, not lose a partial buffer.
		{protocol.KindTTS, `{"text":"hello there"}`},
		{protocol.KindVideo, `{"prompt":"waves","width":32,"height":24,"frames":5,"fps":10}`},
	} {
		res, err := r.Run(context.Background(), newTestJob(t, c.kind, "synthetic", c.input), nil)
		if err != nil {
			t.Fatalf("%s %s: %v", c.kind, c.input, err)
		}
		checkSum(t, res)
	}
}

func TestSpoolFileSumIsEmptyUntilCommitted(t *testing.T) {
	job := Job{ID: "j", SpoolDir: t.TempDir()}
	f, err := newSpoolFile(job)
	if err != nil {
		t.Fatal(err)
	}
	defer f.abort()
	if _, err := f.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if f.sum() != "" {
		t.Fatalf("sum before commit = %q", f.sum())
	}
	path, err := f.commit("png")
	if err != nil {
		t.Fatal(err)
	}
	checkSum(t, Result{File: path, SHA256: f.sum()})
}

func TestAnExecToolsOwnFileCarriesNoSHA256(t *testing.T) {
	needProgram(t, "sh")
	// The tool writes the file itself: the engine never saw its bytes, so it claims no sum and
	// the session hashes the file.
	r := mustRouter(t, execConfig(protocol.KindTTS, "sh", "-c", `printf 'RIFF0000WAVE' > "$1"`, "sh", "{output}"), Options{})
	res, err := r.Run(context.Background(), newTestJob(t, protocol.KindTTS, "", `{"text":"hi"}`), nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.File == "" || res.SHA256 != "" {
		t.Fatalf("result %+v: want a file and no sha256", res)
	}
}

func TestSpoolFileSyncsBehindAndKeepsEveryByte(t *testing.T) {
	f, err := newSpoolFile(Job{ID: "j", SpoolDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer f.abort()
	var syncs atomic.Int32
	f.syncEvery = 4096
	f.fsync = func(file *os.File) error { syncs.Add(1); return file.Sync() }
	want := make([]byte, 0, 1<<20)
	for i := 0; len(want) < 1<<20; i++ {
		// Writes of every size, so that syncs begin while the buffer flushes and while one runs.
		b := bytes.Repeat([]byte{byte(i)}, 1+i%5000)
		if _, err := f.Write(b); err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	path, err := f.commit("png")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file of %d bytes (%v), want the %d written", len(got), err, len(want))
	}
	checkSum(t, Result{File: path, SHA256: f.sum()})
	if syncs.Load() == 0 {
		t.Error("no background sync began")
	}
}

func TestAFailedBackgroundSyncFailsTheCommit(t *testing.T) {
	dir := t.TempDir()
	f, err := newSpoolFile(Job{ID: "j", SpoolDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer f.abort()
	// On Linux a writeback error is told to one fsync only: the session's fsync after this one
	// would pass, so the commit must fail here.
	f.syncEvery = 1
	f.fsync = func(*os.File) error { return errors.New("EIO") }
	if _, err := f.Write(make([]byte, 300<<10)); err != nil { // past the 256 KiB buffer
		t.Fatal(err)
	}
	if _, err := f.commit("png"); err == nil || !Retryable(err) {
		t.Fatalf("commit after a failed sync: %v, want a retryable error", err)
	}
	if es, _ := os.ReadDir(dir); len(es) != 0 {
		t.Fatalf("left in the spool folder: %d files", len(es))
	}
}
