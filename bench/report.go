// report.go: a run's results — rows, goals, baselines and ratios — as a table, Markdown and
// JSON, and merged into an earlier results file.

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// row is one line of the table: a figure, its baseline from the same run, and its goal.
type row struct {
	Figure string `json:"figure"`
	// Key names the row within its figure for --compare, where the label carries a size of the run
	// (a worker count, a window, a file size) that changes between runs which measure the same
	// thing; empty, the label is the key.
	Key          string   `json:"key,omitempty"`
	Value        float64  `json:"value"`
	Unit         string   `json:"unit"`
	Baseline     *float64 `json:"baseline,omitempty"`
	BaselineName string   `json:"baseline_name,omitempty"`
	Ratio        *float64 `json:"ratio,omitempty"` // value / baseline
	Goal         string   `json:"goal,omitempty"`
	Pass         *bool    `json:"pass,omitempty"` // nil: no goal for this row
}

// figureResult is one figure: its rows and the details behind them.
type figureResult struct {
	Name    string         `json:"name"`
	Seconds float64        `json:"seconds"`
	LoadAvg string         `json:"load_avg_at_start,omitempty"` // the machine's load when the figure started: >2 on 2 cores means someone else was busy
	Rows    []row          `json:"rows"`
	Details map[string]any `json:"details,omitempty"`
	Err     string         `json:"error,omitempty"`
	// Why the figure measured nothing, when it could not run here (a tool it needs is missing):
	// not a failure of the code it measures, so the run still passes.
	Skipped string `json:"skipped,omitempty"`
	// Set on a figure merged into a results file made by another run (--into): where and when
	// this figure was measured, since the file's machine and commit are the other run's.
	Merged *merged `json:"merged,omitempty"`
}

type merged struct {
	GeneratedAt time.Time `json:"generated_at"`
	Mode        string    `json:"mode"`
	Machine     machine   `json:"machine"`
}

// skip records why the figure could not run on this machine.
func (f *figureResult) skip(why string) { f.Skipped = why }

func (f *figureResult) add(r row) { f.Rows = append(f.Rows, r) }

func (f *figureResult) detail(k string, v any) {
	if f.Details == nil {
		f.Details = map[string]any{}
	}
	f.Details[k] = v
}

// withBaseline sets a row's baseline and the ratio value/baseline.
func (r row) withBaseline(name string, base float64) row {
	r.Baseline, r.BaselineName = &base, name
	if base != 0 {
		ratio := r.Value / base
		r.Ratio = &ratio
	}
	return r
}

// withGoal sets a row's goal text and whether it was met.
func (r row) withGoal(goal string, pass bool) row {
	r.Goal, r.Pass = goal, &pass
	return r
}

type machine struct {
	CPU       string  `json:"cpu"`
	Cores     int     `json:"cores"`
	GoVersion string  `json:"go_version"`
	OS        string  `json:"os"`
	Kernel    string  `json:"kernel,omitempty"`
	Commit    string  `json:"commit"`
	Dirty     bool    `json:"dirty"` // tracked files differed from the commit
	LoadAvg   string  `json:"load_avg_at_start,omitempty"`
	MemoryGiB float64 `json:"memory_gib,omitempty"`
}

type report struct {
	GeneratedAt time.Time      `json:"generated_at"`
	Mode        string         `json:"mode"` // full or quick
	Seconds     float64        `json:"seconds"`
	Machine     machine        `json:"machine"`
	Figures     []figureResult `json:"figures"`
}

func newReport(ctx context.Context, e *env, quick bool) *report {
	mode := "full"
	if quick {
		mode = "quick"
	}
	return &report{GeneratedAt: time.Now().UTC(), Mode: mode, Machine: readMachine(ctx, e.root)}
}

func readMachine(ctx context.Context, root string) machine {
	m := machine{CPU: "unknown", Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH, Commit: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.LoadAvg = loadAvg()
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %f kB", &kb); err == nil {
			m.MemoryGiB = math.Round(kb/(1<<20)*10) / 10
		}
	}
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = root
		out, err := cmd.Output()
		return strings.TrimSpace(string(out)), err
	}
	if c, err := git("rev-parse", "HEAD"); err == nil {
		m.Commit = c
	}
	if st, err := git("status", "--porcelain", "--untracked-files=no"); err == nil {
		m.Dirty = st != ""
	}
	return m
}

func (r *report) write(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// mergeInto puts rep's figures into the results file at path: each replaces the figure of its
// name or is added at the end; the others, and the file's machine, stay as they were, byte for
// byte up to indentation.
func mergeInto(path string, rep *report) error {
	var old struct {
		GeneratedAt json.RawMessage   `json:"generated_at"`
		Mode        json.RawMessage   `json:"mode"`
		Seconds     json.RawMessage   `json:"seconds"`
		Machine     json.RawMessage   `json:"machine"`
		Figures     []json.RawMessage `json:"figures"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &old); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	names := make([]string, len(old.Figures))
	for i, raw := range old.Figures {
		var f struct{ Name string }
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("%s: figure %d: %w", path, i, err)
		}
		names[i] = f.Name
	}
	for _, f := range rep.Figures {
		f.Merged = &merged{GeneratedAt: rep.GeneratedAt, Mode: rep.Mode, Machine: rep.Machine}
		raw, err := json.Marshal(f)
		if err != nil {
			return err
		}
		if i := slices.Index(names, f.Name); i >= 0 {
			old.Figures[i] = raw
		} else {
			old.Figures, names = append(old.Figures, raw), append(names, f.Name)
		}
	}
	out, err := json.MarshalIndent(old, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(out, '\n'), 0o644)
}

// num prints a figure with the precision its size deserves.
func num(v float64) string {
	a := math.Abs(v)
	switch {
	case math.IsNaN(v):
		return "-"
	case a == 0:
		return "0"
	case a >= 1000 || (v == math.Trunc(v) && a < 1e6):
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	case a >= 0.01:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.2g", v)
}

func (r row) cells() []string {
	base, ratio, result := "", "", ""
	if r.Baseline != nil {
		base = num(*r.Baseline) + " " + r.Unit + " (" + r.BaselineName + ")"
	}
	if r.Ratio != nil {
		ratio = fmt.Sprintf("%.2f×", *r.Ratio)
		if *r.Ratio >= 100 {
			ratio = fmt.Sprintf("%.0f×", *r.Ratio)
		}
	}
	if r.Pass != nil {
		result = map[bool]string{true: "PASS", false: "MISS"}[*r.Pass]
	}
	return []string{r.Figure, num(r.Value) + " " + r.Unit, base, ratio, r.Goal, result}
}

func tableHeader() []string {
	return []string{"figure", "value", "baseline (same run)", "ratio", "goal", "result", "load at start"}
}

// loadCell is the figure's load column, on its first line only: the 1-minute load average when it
// started, which says whether the machine was shared (above about 2 on 2 cores someone else was
// busy); the JSON keeps all three averages.
func loadCell(f figureResult, first bool) string {
	if !first {
		return ""
	}
	l, _, _ := strings.Cut(f.LoadAvg, " ")
	return l
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "Studio Worker benchmarks (%s run, %.0f s) on %s, %d cores, %s, commit %.12s\n\n",
		r.Mode, r.Seconds, r.Machine.CPU, r.Machine.Cores, r.Machine.GoVersion, r.Machine.Commit)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(tableHeader(), "\t"))
	for _, f := range r.Figures {
		for i, line := range figureLines(f) {
			fmt.Fprintln(tw, strings.Join(append(line, loadCell(f, i == 0)), "\t"))
		}
	}
	tw.Flush()
}

func (r *report) printMarkdown(w io.Writer) {
	fmt.Fprintf(w, "| %s |\n", strings.Join(tableHeader(), " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(tableHeader())))
	for _, f := range r.Figures {
		for i, line := range figureLines(f) {
			fmt.Fprintf(w, "| %s |\n", strings.Join(append(line, loadCell(f, i == 0)), " | "))
		}
	}
}

// figureLines are a figure's lines of the table, without the load column: why it failed or was
// skipped, then its rows.
func figureLines(f figureResult) [][]string {
	var lines [][]string
	if f.Err != "" {
		lines = append(lines, []string{f.Name, "FAILED: " + oneLine(f.Err), "", "", "", ""})
	}
	if f.Skipped != "" {
		lines = append(lines, []string{f.Name, "SKIPPED: " + oneLine(f.Skipped), "", "", "", ""})
	}
	for _, row := range f.Rows {
		lines = append(lines, row.cells())
	}
	return lines
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}

// loadAvg is the 1, 5 and 15 minute load averages, "" where unknown.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
