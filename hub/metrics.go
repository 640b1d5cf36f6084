// metrics.go: the Prometheus counters and gauges, counted as things happen and written out on
// scrape, so that a scrape touches neither the database nor Hub.mu. It must not know why a
// counter moves.

package hub

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"

	"studioworker/protocol"
)

// metrics are counted as things happen and written in the Prometheus text format on scrape; no
// scrape touches the database.
type metrics struct {
	connected     atomic.Int64
	offers        atomic.Int64
	expiries      atomic.Int64
	requeues      atomic.Int64
	lateAccepts   atomic.Int64
	uploadBytes   atomic.Int64
	frameErrors   atomic.Int64
	unknownFrames atomic.Int64
	authFailures  atomic.Int64
	superseded    atomic.Int64

	registerThrottled atomic.Int64
	registerRefused   atomic.Int64

	mu       sync.Mutex
	declines map[protocol.DeclineReason]int64
	jobs     map[protocol.JobStatus]int64
}

func newMetrics() *metrics {
	return &metrics{declines: map[protocol.DeclineReason]int64{}, jobs: map[protocol.JobStatus]int64{}}
}

var declineReasons = []protocol.DeclineReason{protocol.DeclineBusy, protocol.DeclinePaused, protocol.DeclineVRAM,
	protocol.DeclineUnsupported, protocol.DeclineUser, protocol.DeclineExpired}

func (m *metrics) decline(r protocol.DeclineReason) {
	known := false
	for _, k := range declineReasons {
		known = known || k == r
	}
	if !known {
		r = "other" // a label per reason a worker invents would grow without bound
	}
	m.mu.Lock()
	m.declines[r]++
	m.mu.Unlock()
}

func (m *metrics) jobStatus(s protocol.JobStatus, delta int64) {
	if s == "" {
		return
	}
	m.mu.Lock()
	m.jobs[s] += delta
	m.mu.Unlock()
}

func (m *metrics) queued() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.jobs[protocol.JobQueued]
}

func (m *metrics) write(w io.Writer) {
	m.mu.Lock()
	jobs := map[protocol.JobStatus]int64{}
	for k, v := range m.jobs {
		jobs[k] = v
	}
	declines := map[protocol.DeclineReason]int64{}
	for k, v := range m.declines {
		declines[k] = v
	}
	m.mu.Unlock()
	p := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	p("studio_hub_workers_connected", "gauge", "Workers with an open session.")
	fmt.Fprintf(w, "studio_hub_workers_connected %d\n", m.connected.Load())
	p("studio_hub_jobs", "gauge", "Jobs by status.")
	for _, s := range []protocol.JobStatus{protocol.JobQueued, protocol.JobOffered, protocol.JobRunning,
		protocol.JobCompleted, protocol.JobFailed, protocol.JobCancelled} {
		fmt.Fprintf(w, "studio_hub_jobs{status=%q} %d\n", s, jobs[s])
	}
	p("studio_hub_offers_total", "counter", "Offers sent to workers.")
	fmt.Fprintf(w, "studio_hub_offers_total %d\n", m.offers.Load())
	p("studio_hub_declines_total", "counter", "Offers declined, by reason.")
	for _, r := range append(declineReasons, "other") {
		fmt.Fprintf(w, "studio_hub_declines_total{reason=%q} %d\n", r, declines[r])
	}
	counters := []struct {
		name, help string
		v          *atomic.Int64
	}{
		{"studio_hub_offer_expiries_total", "Offers not answered before they expired.", &m.expiries},
		{"studio_hub_late_accepts_total", "Accepts of offers no longer open (answered with cancel).", &m.lateAccepts},
		{"studio_hub_requeues_total", "Leased runs that ended without a result and went back to the queue.", &m.requeues},
		{"studio_hub_upload_bytes_total", "Bytes of result files stored.", &m.uploadBytes},
		{"studio_hub_frame_errors_total", "Malformed or oversized frames received.", &m.frameErrors},
		{"studio_hub_unknown_frames_total", "Frames of an unknown type, ignored.", &m.unknownFrames},
		{"studio_hub_auth_failures_total", "Worker connections refused for an unknown worker or a wrong token.", &m.authFailures},
		{"studio_hub_superseded_total", "Sessions replaced by a newer connection of the same worker.", &m.superseded},
		{"studio_hub_registrations_throttled_total", "Registration attempts answered 429: too many from one address, from all, or from too many addresses at once.", &m.registerThrottled},
		{"studio_hub_registrations_refused_total", "Registration attempts refused for their pairing code.", &m.registerRefused},
	}
	for _, c := range counters {
		p(c.name, "counter", c.help)
		fmt.Fprintf(w, "%s %d\n", c.name, c.v.Load())
	}
}

func (h *Hub) handleMetrics(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	h.met.write(w)
}
