// engine_sum_test.go: a result file's sha256 computed by the engine as it wrote the file is sent
// as it is, without reading the file back; a wrong one costs one upload, never a wrong result.

package session

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"studioworker/protocol"
)

func TestAnEngineSumIsSentAsItIsAndAWrongOneIsHashedAgainOnce(t *testing.T) {
	hub := newScriptHub(t)
	var mu sync.Mutex
	sent := map[string][]string{} // the sha256 field of each upload, per job
	hub.set(func(h *scriptHub) {
		// Checks like a real hub: the sha256 field against the bytes of the file part.
		h.uploadFn = func(w http.ResponseWriter, r *http.Request) {
			mr, err := r.MultipartReader()
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			var field, got string
			for {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					return
				}
				switch p.FormName() {
				case "sha256":
					b, _ := io.ReadAll(p)
					field = string(b)
				case "file":
					hs := sha256.New()
					if _, err := io.Copy(hs, p); err != nil {
						return
					}
					got = hex.EncodeToString(hs.Sum(nil))
				}
			}
			mu.Lock()
			sent[r.PathValue("id")] = append(sent[r.PathValue("id")], field)
			mu.Unlock()
			if field != got {
				http.Error(w, "sha256 mismatch", http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusOK)
		}
	})
	content := func(id string) []byte { return []byte("PNG bytes of " + id) }
	real := func(id string) string { s := sha256.Sum256(content(id)); return hex.EncodeToString(s[:]) }
	engineSum := map[string]string{
		"right": real("right"),
		// What an engine that hashed other bytes (or a file changed after) would claim.
		"wrong": strings.Repeat("ab", 32),
		// Not a sha256 at all: ignored, the file is hashed as if none was given.
		"garbled": "not-a-sum",
		"none":    "",
	}
	h := newTestHandler()
	h.setRun(func(_ context.Context, j Job, _ func(float64, string)) (Result, error) {
		p := filepath.Join(j.SpoolDir, "out.png")
		id := j.Claim.JobID
		return Result{File: p, Ext: "png", SHA256: engineSum[id]}, os.WriteFile(p, content(id), 0o600)
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	startRun(t, s)
	c := hub.next(t)
	for _, id := range []string{"right", "wrong", "garbled", "none"} {
		c.send(protocol.Offer{Claim: claim(id, protocol.KindImage)})
		c.expect(t, protocol.TypeAccept)
		h.waitEvent(t, id+" delivered", func(e Event) bool {
			d, ok := e.(DeliveredEvent)
			return ok && d.JobID == id && d.Status == protocol.AckStored
		})
	}
	mu.Lock()
	defer mu.Unlock()
	for id, want := range map[string][]string{
		"right":   {real("right")},
		"wrong":   {strings.Repeat("ab", 32), real("wrong")}, // 400, hashed again, sent again
		"garbled": {real("garbled")},
		"none":    {real("none")},
	} {
		if got := sent[id]; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: uploads sent sha256 %v, want %v", id, got, want)
		}
	}
	for _, f := range c.all() {
		if fl, ok := f.(protocol.Fail); ok {
			t.Errorf("a fail was sent: %+v", fl)
		}
	}
}

func TestPutFileTakesAGivenSumWithoutReadingTheFile(t *testing.T) {
	o, err := openOutbox(t.TempDir(), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "r.png")
	if err := os.WriteFile(src, []byte("png bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A sum that is not the file's: recorded as given proves the file was not read to hash it
	// (the uploader's 400 path is what catches a wrong one).
	given := strings.Repeat("0f", 32)
	it, err := o.putFile("j", protocol.KindImage, src, "png", "", given)
	if err != nil {
		t.Fatal(err)
	}
	if it.meta.SHA256 != given || it.meta.Size != 9 {
		t.Fatalf("entry = %+v, want the given sum and the file's size", it.meta)
	}
	reread, err := readMeta(filepath.Join(o.dir, it.metaName))
	if err != nil || reread.SHA256 != given {
		t.Fatalf("committed entry = %+v, %v", reread, err)
	}
}
