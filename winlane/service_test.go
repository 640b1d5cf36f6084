// The service step of the lane: `service install` into Wine's service manager, the command line it
// registers, a start that connects to the hub, and a stop while a job runs, which must finish the
// job and deliver its result before the worker exits.
package winlane

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"studioworker/protocol"
)

const serviceKey = `HKLM\System\CurrentControlSet\Services\studio-worker`

func (w *wine) service(t *testing.T, h *hubProc) {
	if code, out := w.run(time.Minute, "service", "install"); code != 0 {
		t.Fatalf("service install: exit %d\n%s", code, out)
	}
	defer func() {
		if code, out := w.run(time.Minute, "service", "uninstall"); code != 0 {
			t.Errorf("service uninstall: exit %d\n%s", code, out)
		}
		if _, err := w.reg("query", serviceKey); err == nil {
			t.Errorf("the service is still registered after uninstall")
		}
	}()
	key, err := w.reg("query", serviceKey)
	if err != nil {
		t.Fatalf("reg query %s: %v\n%s", serviceKey, err, key)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`ImagePath\s+REG_(EXPAND_)?SZ\s+\S*studio-worker\.exe"? run --config "C:\\users\\[^"]+\\AppData\\Roaming\\studio-worker\\config\.json" --windows-service`),
		regexp.MustCompile(`Start\s+REG_DWORD\s+0x2\b`), // SERVICE_AUTO_START
	} {
		if !want.MatchString(key) {
			t.Fatalf("the service's registry key does not match %s:\n%s", want, key)
		}
	}

	if code, out := w.run(time.Minute, "service", "start"); code != 0 {
		t.Fatalf("service start: exit %d\n%s", code, out)
	}
	h.waitConnected(t)
	id := h.submit(t, protocol.JobRequest{Kind: protocol.KindImage, Model: "synthetic",
		Input: protocol.Object(`{"prompt":"finished while stopping","width":64,"height":64,"duration_ms":3000}`)})
	h.waitStatus(t, id, protocol.JobRunning)
	if code, out := w.run(time.Minute, "service", "stop"); code != 0 {
		t.Fatalf("service stop: exit %d\n%s", code, out)
	}
	info := h.wait(t, id)
	if info.Status != protocol.JobCompleted || info.Attempts != 0 {
		t.Fatalf("a job running when the service was stopped: %+v (want it finished and delivered)", info)
	}
	waitFor(t, 30*time.Second, "the service's worker to exit", func() bool {
		_, out := w.run(time.Minute, "status")
		return strings.Contains(out, "no Studio Worker is running")
	})
	if _, out := w.run(time.Minute, "service", "status"); !strings.Contains(out, "Stopped") {
		t.Fatalf("service status after stop: %s", out)
	}
}

// reg runs Wine's reg.exe.
func (w *wine) reg(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := w.command(ctx, "wine", append([]string{"reg"}, args...)...)
	out := w.outputFile(cmd)
	err := cmd.Run()
	return out(), err
}
