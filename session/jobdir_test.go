// jobdir_test.go: a job's folder under the spool (Job.SpoolDir) is there for a binary result,
// made only by the engine that wants it for a JSON job, and gone once the job ends either way.

package session

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"studioworker/protocol"
)

// TestAJobFolderIsMadeOnlyWhereItIsNeededAndAlwaysRemoved: a JSON job runs without a job folder
// made for it (making and removing one per job was a large part of the worker's CPU per job); a
// JSON engine that makes the folder finds it removed after the job; a binary job finds it made.
func TestAJobFolderIsMadeOnlyWhereItIsNeededAndAlwaysRemoved(t *testing.T) {
	for _, tc := range []struct {
		name        string
		kind        protocol.Kind
		engineMakes bool
		wantExists  bool // the folder exists when Run starts
	}{
		{name: "json", kind: protocol.KindLLM},
		{name: "json, the engine makes it", kind: protocol.KindLLM, engineMakes: true},
		{name: "binary", kind: protocol.KindImage, wantExists: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hub := newScriptHub(t)
			h := newTestHandler()
			existed := make(chan bool, 1)
			var dir string
			h.setRun(func(_ context.Context, j Job, _ func(float64, string)) (Result, error) {
				dir = j.SpoolDir
				_, err := os.Stat(j.SpoolDir)
				existed <- err == nil
				if tc.kind.BinaryResult() {
					p := filepath.Join(j.SpoolDir, "out.png")
					return Result{File: p, Ext: "png"}, os.WriteFile(p, []byte("png"), 0o600)
				}
				if tc.engineMakes {
					if err := os.MkdirAll(j.SpoolDir, 0o700); err != nil {
						return Result{}, err
					}
					if err := os.WriteFile(filepath.Join(j.SpoolDir, "scratch"), []byte("x"), 0o600); err != nil {
						return Result{}, err
					}
				}
				return Result{JSON: protocol.Object(`{"text":"ok"}`)}, nil
			})
			s := newSession(t, testConfig(t, hub.srv.URL), h)
			startRun(t, s)
			c := hub.next(t)
			c.send(protocol.Offer{Claim: claim("job-1", tc.kind)})
			c.expect(t, protocol.TypeAccept)
			c.expect(t, protocol.TypeReadyForMore)
			if got := <-existed; got != tc.wantExists {
				t.Fatalf("job folder existed at Run: %v, want %v", got, tc.wantExists)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Fatalf("job folder %s after the job: %v, want it gone", dir, err)
			}
		})
	}
}
