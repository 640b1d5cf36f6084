// status_text.go: the worker's State in words, for `studio-worker status`. It must not know how
// the State reaches it (the control socket) nor how the window shows the same facts.

package app

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"
)

// StatusText is the state in words, for `studio-worker status`.
func StatusText(st State) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	conn := st.Conn.State
	switch st.Conn.State {
	case "connected":
		conn = "connected to " + st.Conn.Server
	case "reconnecting":
		conn = fmt.Sprintf("reconnecting to %s (attempt %d)", st.Conn.Server, st.Conn.Attempt)
	}
	if st.Conn.LastError != "" && st.Conn.State != "connected" {
		conn += ": " + st.Conn.LastError
	}
	fmt.Fprintf(tw, "Connection\t%s\n", conn)
	fmt.Fprintf(tw, "State\t%s — %s\n", st.Mode, st.ModeReason)
	fmt.Fprintf(tw, "Auto-accept\t%v\n", st.AutoAccept)
	fmt.Fprintf(tw, "Engine\t%s\n", st.Engine)
	if st.GPU.Problem != "" {
		fmt.Fprintf(tw, "GPU\t%s\n", st.GPU.Problem)
	}
	for _, g := range st.GPU.Cards {
		name := g.Name
		if st.GPU.Simulated {
			name += " (simulated)"
		}
		fmt.Fprintf(tw, "GPU %d\t%s · %.1f / %.1f GB\n", g.Index, name, float64(g.UsedMB)/1024, float64(g.TotalMB)/1024)
	}
	if line := vramStatusLine(st); line != "" {
		fmt.Fprintf(tw, "VRAM\t%s\n", line)
	}
	for _, j := range st.Running {
		fmt.Fprintf(tw, "Running\t%s · %s · %s · %.0f %%\n", j.Kind, j.Model, j.JobID, j.Fraction*100)
	}
	for _, o := range st.Offers {
		fmt.Fprintf(tw, "Offer\t%s · %s · %s (expires %s)\n", o.Kind, o.Model, o.JobID, o.ExpiresAt.Format(time.TimeOnly))
	}
	fmt.Fprintf(tw, "Jobs\t%d done, %d failed, %d cancelled\n", st.Counters.Done, st.Counters.Failed, st.Counters.Cancelled)
	fmt.Fprintf(tw, "Config\t%s\n", st.ConfigPath)
	fmt.Fprintf(tw, "Log file\t%s\n", st.LogFile)
	tw.Flush()
	return b.String()
}
