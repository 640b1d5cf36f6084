// outbox_unlink_test.go: a large delivered result file is deleted off the uploader's goroutine,
// and is gone by the time Session.Run returns.

package session

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"studioworker/protocol"
)

// sparseFile makes a file of size bytes that costs no disk: only its size matters here.
func sparseFile(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveDeliveredDropsTheEntryAtOnceAndTheLargeFileByWaitUnlinks(t *testing.T) {
	o, err := openOutbox(t.TempDir(), discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	put := func(id string, size int64) *outboxItem {
		src := filepath.Join(t.TempDir(), "r.png")
		sparseFile(t, src, size)
		it, err := o.putFile(id, protocol.KindImage, src, "png", "", "")
		if err != nil {
			t.Fatal(err)
		}
		return it
	}
	big, small := put("big", unlinkLater), put("small", unlinkLater-1)
	for _, it := range []*outboxItem{big, small} {
		if !o.removeDelivered(it.meta.JobID) {
			t.Fatalf("%s: no entry to remove", it.meta.JobID)
		}
		// The entry itself goes at once: a restart must not find it and upload it again.
		if o.get(it.meta.JobID) != nil {
			t.Fatalf("%s: still in the outbox", it.meta.JobID)
		}
		if _, err := os.Stat(filepath.Join(o.dir, it.metaName)); !os.IsNotExist(err) {
			t.Fatalf("%s: entry file still there: %v", it.meta.JobID, err)
		}
	}
	// The small one is deleted inline, as before.
	if _, err := os.Stat(filepath.Join(o.dir, small.meta.File)); !os.IsNotExist(err) {
		t.Fatalf("small result file still there after removeDelivered: %v", err)
	}
	o.waitUnlinks()
	if es, _ := os.ReadDir(o.dir); len(es) != 0 {
		t.Fatalf("outbox folder after waitUnlinks: %v", names(es))
	}
	o.waitUnlinks() // nothing running: returns at once
}

func TestALargeDeliveredResultIsGoneWhenRunReturns(t *testing.T) {
	hub := newScriptHub(t) // answers every upload 200
	h := newTestHandler()
	h.setRun(func(_ context.Context, j Job, _ func(float64, string)) (Result, error) {
		p := filepath.Join(j.SpoolDir, "out.png")
		sparseFile(t, p, unlinkLater+1)
		return Result{File: p, Ext: "png"}, nil
	})
	s := newSession(t, testConfig(t, hub.srv.URL), h)
	r := startRun(t, s)
	c := hub.next(t)
	c.send(protocol.Offer{Claim: claim("big", protocol.KindImage)})
	c.expect(t, protocol.TypeAccept)
	h.waitEvent(t, "delivered", func(e Event) bool { d, ok := e.(DeliveredEvent); return ok && d.JobID == "big" })
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	if es, _ := os.ReadDir(filepath.Join(s.cfg.SpoolDir, "outbox")); len(es) != 0 {
		t.Fatalf("outbox folder after Run returned: %v", names(es))
	}
}
