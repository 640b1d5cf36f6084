// compare.go: one run's results beside an earlier results file, figure by figure and row by row
// (value now and then, the change, the ratio to the same-run baseline, and whether the goal's
// result changed), so a regression is seen. It knows only the results as report.go writes them:
// nothing of how a figure is measured, and it runs nothing.

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
)

// readReport reads a results file written by report.write or mergeInto.
func readReport(path string) (*report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// compareFiles reads the results file newPath and, of its figures those --only names (empty: all),
// pairs each with the older file's.
func compareFiles(oldPath, newPath, only string) (comparison, error) {
	then, err := readReport(oldPath)
	if err != nil {
		return comparison{}, err
	}
	now, err := readReport(newPath)
	if err != nil {
		return comparison{}, err
	}
	if err := now.keepFigures(only); err != nil {
		return comparison{}, err
	}
	return compareReports(now, then, newPath, oldPath), nil
}

// rowPair is one row now beside the same row then; either is nil where the row is only on one side.
type rowPair struct {
	now, then *row
}

// figurePair is one figure of the newer results beside the figure of its name in the older file
// (then is nil where the older file has no such figure).
type figurePair struct {
	now, then *figureResult
	rows      []rowPair
}

// comparison is the newer results beside the older: the newer's figures, in its order, and only
// those (a run with --only is compared on what it ran).
type comparison struct {
	now, then         *report
	nowName, thenName string // the files (or "this run"), for the heading
	figures           []figurePair
}

func compareReports(now, then *report, nowName, thenName string) comparison {
	c := comparison{now: now, then: then, nowName: nowName, thenName: thenName}
	for i := range now.Figures {
		fp := figurePair{now: &now.Figures[i]}
		for j := range then.Figures {
			if then.Figures[j].Name == fp.now.Name {
				fp.then = &then.Figures[j]
				break
			}
		}
		var thenRows []row
		if fp.then != nil {
			thenRows = fp.then.Rows
		}
		fp.rows = pairRows(fp.now.Rows, thenRows)
		c.figures = append(c.figures, fp)
	}
	return c
}

// numbers are what changes in a label when a run's sizes do ("1000 heartbeating", "60 s").
var numbers = regexp.MustCompile(`[0-9]+(?:[.,][0-9]+)*`)

// pairRows matches each row now with the same row then, in three passes, each only over rows the
// earlier passes left: by key where both rows have one; by label where at least one has none (an
// older file has no keys); and by the label with its numbers masked where that masked label is
// unique on both sides, so a file written before a row had its key still matches after the
// run's sizes changed, while "p50" and "p99" (both "p#") never match each other. The rows now
// keep their order; the rows only then come last, in theirs.
func pairRows(now, then []row) []rowPair {
	match := make([]int, len(now)) // index into then, or -1
	taken := make([]bool, len(then))
	for i := range match {
		match[i] = -1
	}
	pass := func(same func(a, b row) bool) {
		for i, a := range now {
			if match[i] >= 0 {
				continue
			}
			for j, b := range then {
				if !taken[j] && same(a, b) {
					match[i], taken[j] = j, true
					break
				}
			}
		}
	}
	pass(func(a, b row) bool { return a.Key != "" && a.Key == b.Key })
	pass(func(a, b row) bool { return (a.Key == "" || b.Key == "") && a.Figure == b.Figure })

	masked := func(r row) string { return numbers.ReplaceAllString(r.Figure, "#") }
	count := map[string][2]int{} // masked label → unmatched rows now, then
	for i, a := range now {
		if match[i] < 0 {
			n := count[masked(a)]
			n[0]++
			count[masked(a)] = n
		}
	}
	for j, b := range then {
		if !taken[j] {
			n := count[masked(b)]
			n[1]++
			count[masked(b)] = n
		}
	}
	pass(func(a, b row) bool {
		m := masked(a)
		return (a.Key == "" || b.Key == "") && count[m] == [2]int{1, 1} && m == masked(b)
	})

	var out []rowPair
	for i := range now {
		p := rowPair{now: &now[i]}
		if match[i] >= 0 {
			p.then = &then[match[i]]
		}
		out = append(out, p)
	}
	for j := range then {
		if !taken[j] {
			out = append(out, rowPair{then: &then[j]})
		}
	}
	return out
}

// change is (now − then) / then in percent; "" where there is no then or it is 0 and now is not.
func (p rowPair) change() string {
	if p.now == nil || p.then == nil {
		return ""
	}
	a, b := p.now.Value, p.then.Value
	switch {
	case a == b:
		return "0 %"
	case b == 0 || math.IsNaN(a) || math.IsNaN(b):
		return ""
	}
	pct := (a - b) / math.Abs(b) * 100
	if math.Abs(pct) >= 10 {
		return fmt.Sprintf("%+.0f %%", pct)
	}
	return fmt.Sprintf("%+.1f %%", pct)
}

func ratioText(r *row) string {
	if r == nil || r.Ratio == nil {
		return "-"
	}
	if *r.Ratio >= 100 {
		return fmt.Sprintf("%.0f×", *r.Ratio)
	}
	return fmt.Sprintf("%.2f×", *r.Ratio)
}

func passText(r *row) string {
	switch {
	case r == nil || r.Pass == nil:
		return ""
	case *r.Pass:
		return "PASS"
	}
	return "MISS"
}

// result says whether the goal's result changed: "PASS → MISS (regressed)" is what this mode is
// for. Where the goal itself was reworded the two results answer different questions, so the
// older goal is named.
func (p rowPair) result() string {
	now, then := passText(p.now), passText(p.then)
	var s string
	switch {
	case p.now == nil && then != "":
		s = "was " + then
	case p.then == nil && now != "":
		s = now + " (no result then)"
	case now == then:
		s = now
	case now == "":
		s = "no goal now (was " + then + ")"
	case then == "":
		s = now + " (no goal then)"
	case now == "MISS":
		s = "PASS → MISS (regressed)"
	default:
		s = "MISS → PASS (fixed)"
	}
	if p.now != nil && p.then != nil && p.now.Goal != "" && p.then.Goal != "" && p.now.Goal != p.then.Goal {
		s += "; goal then: " + p.then.Goal
	}
	return s
}

func (p rowPair) cells() []string {
	label, now, then := "", "", ""
	if p.now != nil {
		label, now = p.now.Figure, num(p.now.Value)+" "+p.now.Unit
	} else {
		label, now = p.then.Figure, "(no such row now)"
	}
	if p.then != nil {
		then = num(p.then.Value) + " " + p.then.Unit
	} else {
		then = "(no such row then)"
	}
	ratio := ""
	if (p.now != nil && p.now.Ratio != nil) || (p.then != nil && p.then.Ratio != nil) {
		ratio = ratioText(p.now) + " / " + ratioText(p.then)
	}
	return []string{label, now, then, p.change(), ratio, p.result()}
}

func compareHeader() []string {
	return []string{"figure", "now", "then", "change", "ratio now / then", "result (goal)"}
}

// heading names the two sides, and says so where they are not comparable.
func (c comparison) heading() string {
	side := func(name string, r *report) string {
		return fmt.Sprintf("%s (%s run of %s, commit %.12s, %s, %d cores)",
			name, r.Mode, r.GeneratedAt.Format("2006-01-02 15:04 MST"), r.Machine.Commit, r.Machine.CPU, r.Machine.Cores)
	}
	s := "Now: " + side(c.nowName, c.now) + "\nThen: " + side(c.thenName, c.then)
	if c.now.Mode != c.then.Mode {
		s += "\nNot comparable: a " + c.now.Mode + " run beside a " + c.then.Mode + " one (--quick figures are not comparable)."
	}
	if c.now.Machine.CPU != c.then.Machine.CPU || c.now.Machine.Cores != c.then.Machine.Cores {
		s += "\nDifferent machines: compare the ratios to the same-run baselines, not the values."
	}
	return s
}

// figureLine is the figure's line above its rows: the load average at its start on each side,
// which says whether a change is the code or a busy machine, and where it failed or was skipped.
func (fp figurePair) figureLine() string {
	load := func(f *figureResult) string {
		if f.LoadAvg == "" {
			return "unknown"
		}
		return f.LoadAvg
	}
	s := fp.now.Name + ": load at start now " + load(fp.now)
	if fp.then == nil {
		s += "; not in the earlier file"
	} else {
		s += ", then " + load(fp.then)
		if m := fp.then.Merged; m != nil {
			s += fmt.Sprintf(" (then measured on its own, %s, commit %.12s)", m.GeneratedAt.Format("2006-01-02 15:04 MST"), m.Machine.Commit)
		}
	}
	for _, side := range []struct {
		when string
		f    *figureResult
	}{{"now", fp.now}, {"then", fp.then}} {
		if side.f == nil {
			continue
		}
		if side.f.Err != "" {
			s += "; FAILED " + side.when + ": " + oneLine(side.f.Err)
		}
		if side.f.Skipped != "" {
			s += "; SKIPPED " + side.when + ": " + oneLine(side.f.Skipped)
		}
	}
	return s
}

func (c comparison) print(w io.Writer) {
	fmt.Fprintln(w, c.heading())
	for _, fp := range c.figures {
		fmt.Fprintln(w)
		fmt.Fprintln(w, fp.figureLine())
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(compareHeader(), "\t"))
		for _, p := range fp.rows {
			fmt.Fprintln(tw, strings.Join(p.cells(), "\t"))
		}
		tw.Flush()
	}
}

// printMarkdown is one table for docs/performance.md and the README; each figure's line is a row
// of its own, in bold, so the table stays one table.
func (c comparison) printMarkdown(w io.Writer) {
	for line := range strings.Lines(c.heading()) {
		fmt.Fprintf(w, "%s  \n", strings.TrimSuffix(line, "\n"))
	}
	fmt.Fprintln(w)
	h := compareHeader()
	fmt.Fprintf(w, "| %s |\n", strings.Join(h, " | "))
	fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(h)))
	for _, fp := range c.figures {
		fmt.Fprintf(w, "| **%s** |%s\n", fp.figureLine(), strings.Repeat(" |", len(h)-1))
		for _, p := range fp.rows {
			fmt.Fprintf(w, "| %s |\n", strings.Join(p.cells(), " | "))
		}
	}
}

// keepFigures drops the figures --only does not name (empty keeps them all), for `bench compare`.
func (r *report) keepFigures(only string) error {
	if strings.TrimSpace(only) == "" {
		return nil
	}
	selected, err := selectFigures(only)
	if err != nil {
		return err
	}
	var kept []figureResult
	for _, f := range r.Figures {
		for _, s := range selected {
			if s.name == f.Name {
				kept = append(kept, f)
				break
			}
		}
	}
	r.Figures = kept
	return nil
}
