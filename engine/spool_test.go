// spool_test.go: the sha256 a spool file computes as it is written is the file's, for every
// engine that writes through it; a file an engine did not write itself carries none.

package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
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
