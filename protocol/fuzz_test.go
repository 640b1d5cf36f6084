package protocol

import (
	"os"
	"testing"
)

// FuzzDecode checks that Decode never panics and that whatever it accepts re-encodes to bytes it
// accepts again with the same type. Run it with: go test -run XXX -fuzz FuzzDecode ./protocol/
// (the normal test run executes only the seed corpus).
func FuzzDecode(f *testing.F) {
	for _, file := range goldenFiles(f) {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"type":"offer","claim":null}`))
	f.Add([]byte(`{"type":"heartbeat","status":{"state":"idle","running":[null],"accepting":true},"gpus":[]}`))
	f.Add([]byte(`{"type":7}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := Decode(data)
		if err != nil {
			if fr != nil {
				t.Fatalf("error %v with a non-nil frame", err)
			}
			return
		}
		out, err := Encode(fr)
		if err != nil {
			t.Fatalf("accepted frame does not encode: %v", err)
		}
		back, err := Decode(out)
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v\nin:  %q\nout: %q", err, data, out)
		}
		if back.FrameType() != fr.FrameType() {
			t.Fatalf("type changed %q -> %q", fr.FrameType(), back.FrameType())
		}
	})
}
