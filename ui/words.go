// words.go: the window's words — a State's connection, mode, durations, sizes and reasons in
// sentences a creator reads. Pure functions; they must not know the widgets.

package ui

import (
	"fmt"
	"math"
	"strings"
	"time"

	"studioworker/app"
	"studioworker/protocol"
)

// Connection states as app.ConnInfo.State carries them.
const (
	connConnecting   = "connecting"
	connConnected    = "connected"
	connReconnecting = "reconnecting"
	connAuthFailed   = "auth_failed"
	connSuperseded   = "superseded"
	connGaveUp       = "gave_up"
	connStopped      = "stopped"
	connOffline      = "offline"
	connUnregistered = "unregistered"
	// connReattaching: this window is attached to a worker that runs apart from it (a service,
	// `studio-worker run`) and has lost it; app's Client is dialing it again, and the rest of the
	// State is what that worker last said.
	connReattaching = "reattaching"
)

// Words for a window whose worker is out of reach.
const (
	titleReattaching  = "Reconnecting to the worker…"
	detailReattaching = "Studio Worker runs in the background here (a service or `studio-worker run`) and this window shows it. " +
		"It stopped or is restarting; the window attaches again as soon as it answers."
	modeReattaching = "Waiting for the worker to answer — the dashboard shows what it last said"
)

// tone is how a line is coloured: the connection dot, a status word.
type tone int

const (
	toneNeutral tone = iota // grey: stopped, not set up
	toneGood                // green: connected and working
	toneWait                // amber: connecting, paused, yielding
	toneBad                 // red: needs the user
)

// connView is the connection in words, for the header and the tray.
type connView struct {
	Title  string // "Connected to studio.example.com"
	Detail string // the last error or a hint, may be empty
	Tone   tone
	// Action names the button that fixes it: "register", "reconnect" or "".
	Action string
}

// needsSignIn reports whether the worker cannot work until the user registers (again).
func needsSignIn(s app.State) bool {
	return s.Conn.State == connAuthFailed || s.Conn.State == connUnregistered || (!s.Registered && s.Conn.State == "")
}

// describeConn puts the connection into words; now drives the reconnect countdown.
func describeConn(s app.State, now time.Time) connView {
	c := s.Conn
	host := c.Server
	if host == "" {
		host = hostOf(s.ServerURL)
	}
	if host == "" {
		host = "the Studio"
	}
	switch {
	case c.State == connAuthFailed:
		return connView{Title: "Sign-in needed — register again", Tone: toneBad, Action: "register",
			Detail: "The Studio no longer accepts this worker's credentials (it may have been removed)."}
	case c.State == connUnregistered || (!s.Registered && c.State == ""):
		return connView{Title: "Not set up yet — register this worker with a Studio", Tone: toneNeutral, Action: "register",
			Detail: "Open Settings, enter the Studio's address and a pairing code, then Register."}
	}
	switch c.State {
	case connReattaching:
		detail := detailReattaching
		if c.LastError != "" {
			detail += " " + errWords(c.LastError)
		}
		return connView{Title: titleReattaching, Tone: toneWait, Detail: detail, Action: "reconnect"}
	case connConnected:
		return connView{Title: "Connected to " + host, Tone: toneGood}
	case connConnecting:
		return connView{Title: "Connecting to " + host + "…", Tone: toneWait, Detail: c.LastError}
	case connReconnecting:
		title := fmt.Sprintf("Reconnecting to %s now", host)
		if wait := c.NextRetry.Sub(now); !c.NextRetry.IsZero() && wait > 0 {
			title = fmt.Sprintf("Reconnecting in %s", seconds(wait))
		}
		if c.Attempt > 0 {
			title += fmt.Sprintf(" (attempt %d)", c.Attempt)
		}
		return connView{Title: title, Tone: toneWait, Detail: errWords(c.LastError), Action: "reconnect"}
	case connSuperseded:
		return connView{Title: "Offline: this worker signed in from another place", Tone: toneBad, Action: "reconnect",
			Detail: "Another copy of Studio Worker connected with the same credentials. Reconnect to take over."}
	case connGaveUp:
		return connView{Title: "Offline: gave up reconnecting", Tone: toneBad, Detail: errWords(c.LastError), Action: "reconnect"}
	case connStopped:
		return connView{Title: "Stopped", Tone: toneNeutral}
	}
	title := "Offline"
	if c.LastError != "" {
		title = "Offline: " + c.LastError
	}
	return connView{Title: title, Tone: toneNeutral, Action: "reconnect"}
}

func errWords(e string) string {
	if e == "" {
		return ""
	}
	return "Last error: " + e
}

// hostOf returns the host[:port] of a URL, or the text itself when it is not one.
func hostOf(raw string) string {
	s := raw
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		s = s[i+1:] // never show credentials embedded in a URL
	}
	return s
}

// describeMode puts what the worker is doing into one line.
func describeMode(s app.State) (string, tone) {
	if s.Conn.State == connReattaching {
		// The mode is the worker's last word, which may no longer hold: say what is known.
		return modeReattaching, toneWait
	}
	switch s.Mode {
	case protocol.StateBusy:
		if len(s.Running) > 0 {
			j := s.Running[0]
			line := "Working on " + jobLabel(j.Kind, j.Model)
			if n := len(s.Running) - 1; n > 0 {
				line += fmt.Sprintf(" and %d more", n)
			}
			return line, toneGood
		}
		return orDefault(s.ModeReason, "Working"), toneGood
	case protocol.StatePaused:
		return "Paused by you — no new jobs until you resume", toneWait
	case protocol.StateDraining:
		if len(s.Running) > 0 {
			return orDefault(s.ModeReason, "Finishing job "+shortID(s.Running[0].JobID)+", then pausing"), toneWait
		}
		return orDefault(s.ModeReason, "Finishing, then pausing"), toneWait
	case protocol.StateYielding:
		who := s.YieldedTo
		if who == "" {
			return orDefault(s.ModeReason, "Paused while another program uses the GPU — resumes by itself"), toneWait
		}
		return "Paused while " + who + " uses the GPU — resumes by itself", toneWait
	}
	if s.VRAM.Basis == app.ReachNoGPU {
		return noGPUMode(s), toneWait
	}
	if s.AutoAccept {
		return "Ready — taking jobs as they come", toneGood
	}
	return "Ready — you choose each offer (auto-accept is off)", toneGood
}

// noGPUMode is the idle line of a worker that sees no GPU and has no VRAM cap: the hub offers it
// only the jobs that state no VRAM need, so it names those and never says "Ready".
func noGPUMode(s app.State) string {
	kinds := s.ServedKinds()
	if len(kinds) == 0 {
		return "No GPU, and no backend is answering — no jobs can reach this computer"
	}
	line := "No GPU — taking only " + joinKinds(kinds) + " jobs that need no VRAM"
	if !s.AutoAccept {
		line += " (you choose each offer)"
	}
	return line
}

// vramNote is the header's line about which jobs cannot reach this worker for want of VRAM, and
// why; "" when a GPU is seen (its card says the rest).
func vramNote(s app.State) string {
	switch s.VRAM.Basis {
	case app.ReachNoGPU:
		return "No GPU seen: jobs that need VRAM are not offered to this computer. " +
			"If it has a GPU the worker cannot see, set a VRAM cap in Settings."
	case app.ReachUserLimitNoGPU:
		return fmt.Sprintf("No GPU seen: free VRAM is unknown, so jobs are offered up to your VRAM cap of %s GB.",
			strings.TrimSuffix(fmt.Sprintf("%.1f", s.VRAM.LimitGB), ".0"))
	}
	return ""
}

// joinKinds is "llm", "llm and tts", "llm, image and tts".
func joinKinds(ks []string) string {
	if len(ks) <= 1 {
		return strings.Join(ks, "")
	}
	return strings.Join(ks[:len(ks)-1], ", ") + " and " + ks[len(ks)-1]
}

func orDefault(s, def string) string {
	if s != "" {
		return s
	}
	return def
}

// jobLabel is "image · sdxl-turbo".
func jobLabel(kind protocol.Kind, model string) string {
	if model == "" {
		return string(kind)
	}
	return string(kind) + " · " + model
}

// shortID keeps a job id readable: the first 8 characters.
func shortID(id string) string {
	r := []rune(id)
	if len(r) > 8 {
		return string(r[:8]) + "…"
	}
	return id
}

// clock is an elapsed time as 00:12, 03:04 or 1:02:03.
func clock(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	t := int64(d / time.Second)
	h, m, sec := t/3600, t/60%60, t%60
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d", h, m, sec)
	}
	return fmt.Sprintf("%02d:%02d", m, sec)
}

// humanDuration is a job's duration: "850 ms", "4.1 s", "2 min 3 s", "1 h 4 min".
func humanDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0 s"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Round(time.Second).Seconds()))
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	}
	d = d.Round(time.Minute)
	return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
}

// seconds is a countdown: "7 s", "2 min 5 s"; never below 1 s while time remains.
func seconds(d time.Duration) string {
	s := int(math.Ceil(d.Seconds()))
	if s < 60 {
		return fmt.Sprintf("%d s", s)
	}
	return fmt.Sprintf("%d min %d s", s/60, s%60)
}

// expiresIn is an offer's countdown.
func expiresIn(at, now time.Time) string {
	if at.IsZero() {
		return ""
	}
	left := at.Sub(now)
	if left <= 0 {
		return "expiring…"
	}
	return "expires in " + seconds(left)
}

// gb formats megabytes as gigabytes with one decimal.
func gb(mb int64) string { return fmt.Sprintf("%.1f", float64(mb)/1024) }

// vramNeed is an offer's VRAM estimate as a phrase: "6 GB VRAM", or that it states none.
func vramNeed(g float64) string {
	if g <= 0 {
		return "no VRAM need stated"
	}
	return gbEstimate(g) + " VRAM"
}

// gbEstimate formats an offer's VRAM estimate: "1.5 GB", "6 GB".
func gbEstimate(g float64) string {
	if g <= 0 {
		return "unknown"
	}
	if g == math.Trunc(g) {
		return fmt.Sprintf("%.0f GB", g)
	}
	return fmt.Sprintf("%.1f GB", g)
}

// percent formats a progress fraction.
func percent(f float64) string {
	if f < 0 {
		f = 0
	}
	if f > 1 {
		f = 1
	}
	return fmt.Sprintf("%d %%", int(math.Round(f*100)))
}

// gpuReading is a card's one-line reading: "62 °C · 87 % busy".
func gpuReading(c app.GPUCard) string {
	parts := make([]string, 0, 2)
	if c.HasTemperature {
		parts = append(parts, fmt.Sprintf("%d °C", c.TemperatureC))
	}
	if c.HasUtilization {
		parts = append(parts, fmt.Sprintf("%d %% busy", c.UtilizationPct))
	} else {
		parts = append(parts, "utilization not reported")
	}
	return strings.Join(parts, " · ")
}

// recentStatus is a finished job's status in words.
func recentStatus(r app.RecentJob) string {
	switch r.Status {
	case "done":
		return "done"
	case "failed":
		if r.Error != "" {
			return "failed: " + r.Error
		}
		return "failed"
	case "cancelled":
		return "cancelled"
	case "declined":
		return orDefault(r.Error, "declined") // "declined by you", "declined: paused"
	}
	return r.Status
}

// backendDownLine says which backend is down, since when, and why: "The llm backend is not
// answering since 16:52: …". Before the first check there is no "since": it is not a failure.
func backendDownLine(s app.State, kind string) string {
	if t, ok := s.EngineDownSince[kind]; ok {
		return fmt.Sprintf("The %s backend is not answering since %s: %s", kind, t.Local().Format("15:04"), s.EngineDown[kind])
	}
	return fmt.Sprintf("The %s backend is not answering: %s", kind, s.EngineDown[kind])
}

// firstDownKind is the down backend to name in a one-line status, the one down longest; "" when
// none has failed (a backend not checked yet has not).
func firstDownKind(s app.State) string {
	kind, since := "", time.Time{}
	for k, t := range s.EngineDownSince {
		if kind == "" || t.Before(since) || (t.Equal(since) && k < kind) {
			kind, since = k, t
		}
	}
	return kind
}

// backendVRAMLine is what the backends say of one card's VRAM, the figures admission uses:
// "Ollama holds 5.8 GB for llama3.1:8b · ComfyUI counts 10.0 GB free (6.0 GB of it its own cache)".
// A figure that names no card (Ollama does not say) goes on the card when there is only one.
func backendVRAMLine(bs []app.BackendVRAM, card, cards int) string {
	var parts []string
	for _, b := range bs {
		if b.GPU != card && !(b.GPU < 0 && cards == 1) {
			continue
		}
		switch {
		case b.HeldMB > 0 && b.Model != "":
			parts = append(parts, fmt.Sprintf("%s holds %s GB for %s", b.Backend, gb(b.HeldMB), b.Model))
		case b.FreeMB > 0 && b.CacheFreeMB > 0:
			parts = append(parts, fmt.Sprintf("%s counts %s GB free (%s GB of it its own cache)", b.Backend, gb(b.FreeMB), gb(b.CacheFreeMB)))
		case b.FreeMB > 0:
			parts = append(parts, fmt.Sprintf("%s counts %s GB free", b.Backend, gb(b.FreeMB)))
		}
	}
	return strings.Join(parts, " · ")
}
