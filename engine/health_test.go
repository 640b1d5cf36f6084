package engine

import (
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"studioworker/protocol"
)

// TestABackendThatDiesIsWithdrawnAtOnceAndBackSoon: a job that cannot reach its backend takes
// the kind out of the capabilities before Run returns (and tells the OnChange listeners), and
// once the backend answers again the probe brings it back without waiting for the 60 s refresh.
func TestABackendThatDiesIsWithdrawnAtOnceAndBackSoon(t *testing.T) {
	f := newFakeOpenAI(t, "")
	addr := f.Listener.Addr().String()
	handler := f.Config.Handler
	cfg := Config{protocol.KindLLM: {Backend: BackendOpenAI, URL: f.URL + "/v1", TimeoutS: 20}}
	r := mustRouter(t, cfg, Options{RefreshEvery: time.Hour})
	changes := make(chan Capabilities, 16)
	r.OnChange(func(c Capabilities) {
		select {
		case changes <- c:
		default:
		}
	})
	ctx := background(t)
	r.Start(ctx)
	up := func() bool { _, ok := r.Capabilities().Models[protocol.KindLLM]; return ok }
	waitFor(t, "the first refresh", 10*time.Second, up)

	for _, tc := range []struct {
		name  string
		kill  func()
		heal  func()
		input string
	}{
		{
			name:  "the stream is cut mid-answer",
			input: `{"prompt":"vanish"}`,
			kill:  func() {},
			heal:  func() {},
		},
		{
			name:  "the server is gone, then starts again on its port",
			input: `{"prompt":"hello"}`,
			kill:  func() { f.Close() },
			heal: func() {
				ln, err := net.Listen("tcp", addr)
				if err != nil {
					t.Fatalf("listen again on %s: %v", addr, err)
				}
				srv := &http.Server{Handler: handler}
				go srv.Serve(ln)
				t.Cleanup(func() { srv.Close() })
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for len(changes) > 0 {
				<-changes
			}
			tc.kill()
			_, err := r.Run(ctx, newTestJob(t, protocol.KindLLM, "", tc.input), nil)
			if !errors.Is(err, ErrBackendDown) {
				t.Fatalf("Run: %v, want ErrBackendDown", err)
			}
			if up() {
				t.Fatal("the kind is still offered after Run found its backend down")
			}
			select {
			case c := <-changes:
				if _, ok := c.Models[protocol.KindLLM]; ok || c.Down[protocol.KindLLM] == "" {
					t.Errorf("the change told to listeners: %+v", c)
				}
			default:
				t.Error("no OnChange call for the kind going down")
			}
			healed := time.Now()
			tc.heal()
			waitFor(t, "the kind to come back", 30*time.Second, up)
			t.Logf("offered again %.2f s after the backend answered", time.Since(healed).Seconds())
		})
	}
}

func TestProbeDelayStaysShort(t *testing.T) {
	prev := time.Duration(0)
	for n := range 40 {
		d := probeDelay(n)
		if d < prev || d > maxProbeDelay || d <= 0 {
			t.Fatalf("probeDelay(%d) = %v after %v: want growing, at most %v", n, d, prev, maxProbeDelay)
		}
		prev = d
	}
	if maxProbeDelay > 4*time.Second {
		t.Errorf("maxProbeDelay %v: a backend that answers again must be offered again within 5 s", maxProbeDelay)
	}
}
