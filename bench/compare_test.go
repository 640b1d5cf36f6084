// compare_test.go: --compare and `bench compare` — which rows are the same row, the change and the
// result columns, and the two files of testdata/ side by side; and the load at a figure's start in
// the run's own table. It knows nothing of how a figure is measured.

package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

func TestPairRows(t *testing.T) {
	r := func(label, key string, v float64) row { return row{Figure: label, Key: key, Value: v, Unit: "ms"} }
	type pair struct{ now, then string } // labels; "" where that side is absent
	tests := []struct {
		name      string
		now, then []row
		want      []pair
	}{
		{
			name: "same labels, in the order of now",
			now:  []row{r("a p50", "", 1), r("a p99", "", 2)},
			then: []row{r("a p99", "", 3), r("a p50", "", 4)},
			want: []pair{{"a p50", "a p50"}, {"a p99", "a p99"}},
		},
		{
			name: "by key though the label changed",
			now:  []row{r("offer p99, 20000 open", "offer p99", 1)},
			then: []row{r("offer p99, 10000 open", "offer p99", 2)},
			want: []pair{{"offer p99, 20000 open", "offer p99, 10000 open"}},
		},
		{
			name: "both keyed, different keys: not the same row even with the same label",
			now:  []row{r("x", "k1", 1)},
			then: []row{r("x", "k2", 2)},
			want: []pair{{"x", ""}, {"", "x"}},
		},
		{
			name: "a key now, none in the older file: by label",
			now:  []row{r("idle worker (60 s): CPU", "CPU", 1)},
			then: []row{r("idle worker (60 s): CPU", "", 2)},
			want: []pair{{"idle worker (60 s): CPU", "idle worker (60 s): CPU"}},
		},
		{
			name: "sizes changed and no key then: by the label with its numbers masked",
			now:  []row{r("hub RSS per worker (10000 heartbeating)", "hub RSS per worker", 1)},
			then: []row{r("hub RSS per worker (1000 heartbeating)", "", 2)},
			want: []pair{{"hub RSS per worker (10000 heartbeating)", "hub RSS per worker (1000 heartbeating)"}},
		},
		{
			name: "masked labels that are not unique never match: p50 is not p99",
			now:  []row{r("offer p50, 20000 open", "", 1), r("offer p99, 20000 open", "", 2)},
			then: []row{r("offer p50, 10000 open", "", 3), r("offer p99, 10000 open", "", 4)},
			want: []pair{{"offer p50, 20000 open", ""}, {"offer p99, 20000 open", ""}, {"", "offer p50, 10000 open"}, {"", "offer p99, 10000 open"}},
		},
		{
			name: "a row only now and a row only then",
			now:  []row{r("kept", "", 1), r("new", "", 2)},
			then: []row{r("gone", "", 3), r("kept", "", 4)},
			want: []pair{{"kept", "kept"}, {"new", ""}, {"", "gone"}},
		},
		{
			name: "nothing then",
			now:  []row{r("a", "", 1)},
			want: []pair{{"a", ""}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []pair
			for _, p := range pairRows(tc.now, tc.then) {
				var g pair
				if p.now != nil {
					g.now = p.now.Figure
				}
				if p.then != nil {
					g.then = p.then.Figure
				}
				got = append(got, g)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("pairs = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRowPairChangeAndResult(t *testing.T) {
	yes, no := true, false
	r := func(v float64, goal string, pass *bool) *row {
		return &row{Figure: "f", Value: v, Unit: "ms", Goal: goal, Pass: pass}
	}
	tests := []struct {
		name           string
		p              rowPair
		change, result string
	}{
		{"faster, still passing", rowPair{r(1, "≤ 5 ms", &yes), r(2, "≤ 5 ms", &yes)}, "-50 %", "PASS"},
		{"a small change keeps a decimal", rowPair{r(1.05, "", nil), r(1, "", nil)}, "+5.0 %", ""},
		{"unchanged", rowPair{r(3, "", nil), r(3, "", nil)}, "0 %", ""},
		{"regressed", rowPair{r(9, "≤ 5 ms", &no), r(4, "≤ 5 ms", &yes)}, "+125 %", "PASS → MISS (regressed)"},
		{"fixed", rowPair{r(4, "≤ 5 ms", &yes), r(9, "≤ 5 ms", &no)}, "-56 %", "MISS → PASS (fixed)"},
		{"the goal was reworded", rowPair{r(4, "≤ 2× fsync", &yes), r(9, "≤ 5 ms", &no)}, "-56 %", "MISS → PASS (fixed); goal then: ≤ 5 ms"},
		{"a goal only now", rowPair{r(4, "≤ 5 ms", &yes), r(4, "", nil)}, "0 %", "PASS (no goal then)"},
		{"a goal only then", rowPair{r(4, "", nil), r(4, "≤ 5 ms", &no)}, "0 %", "no goal now (was MISS)"},
		{"from zero: no percentage", rowPair{r(2, "", nil), r(0, "", nil)}, "", ""},
		{"a row only now", rowPair{now: r(2, "0", &yes)}, "", "PASS (no result then)"},
		{"a row only then", rowPair{then: r(2, "0", &yes)}, "", "was PASS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.p.change(); got != tc.change {
				t.Errorf("change = %q, want %q", got, tc.change)
			}
			if got := tc.p.result(); got != tc.result {
				t.Errorf("result = %q, want %q", got, tc.result)
			}
		})
	}
}

// TestCompareFiles compares testdata/compare_new.json with compare_old.json, which hold one case
// each: a goal met now that was missed (under a reworded goal), a goal missed now that was met, a
// label whose worker count changed and had no key then, a key that matches across labels, a row
// only now and one only then, a figure only now (failed), a figure only then (not shown), and a
// figure measured on its own then (merged).
func TestCompareFiles(t *testing.T) {
	c, err := compareFiles("testdata/compare_old.json", "testdata/compare_new.json", "")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, fp := range c.figures {
		names = append(names, fp.now.Name)
	}
	if want := []string{"dispatch", "throughput", "scale", "hostile", "recovery"}; !slices.Equal(names, want) {
		t.Fatalf("figures = %q, want %q (those of the newer file, in its order; llm is only in the older)", names, want)
	}
	cells := func(fig, label string) []string {
		t.Helper()
		for _, fp := range c.figures {
			if fp.now.Name != fig {
				continue
			}
			for _, p := range fp.rows {
				if cs := p.cells(); cs[0] == label {
					return cs
				}
			}
		}
		t.Fatalf("%s: no row %q", fig, label)
		return nil
	}
	tests := []struct {
		fig, label string
		want       []string // figure, now, then, change, ratio now / then, result
	}{
		{"dispatch", "dispatch latency p50 (POST /v1/jobs → engine Run)",
			[]string{"dispatch latency p50 (POST /v1/jobs → engine Run)", "0.445 ms", "0.890 ms", "-50 %", "59.30× / 119×", ""}},
		{"dispatch", "dispatch latency p99",
			[]string{"dispatch latency p99", "1.50 ms", "8.69 ms", "-83 %", "1.67× / 76.90×", "MISS → PASS (fixed); goal then: ≤ 5 ms and ≤ 20× baseline"}},
		{"dispatch", "↳ bare fsync p99", []string{"↳ bare fsync p99", "0.800 ms", "(no such row then)", "", "", ""}},
		{"dispatch", "dispatch latency max", []string{"dispatch latency max", "(no such row now)", "6.15 ms", "", "", ""}},
		{"throughput", "throughput, 8 workers × 8 slots, median round",
			[]string{"throughput, 8 workers × 8 slots, median round", "706 jobs/s", "1435 jobs/s", "-51 %", "", "PASS → MISS (regressed)"}},
		{"scale", "hub RSS per connected worker (10000 heartbeating)",
			[]string{"hub RSS per connected worker (10000 heartbeating)", "25.82 KiB", "51.64 KiB", "-50 %", "", ""}},
		{"scale", "offer latency under that load p99",
			[]string{"offer latency under that load p99", "12.60 ms", "5.72 ms", "+120 %", "", "PASS"}},
		{"hostile", "offer latency p99, 1 worker, 20000 hostile idle connections open",
			[]string{"offer latency p99, 1 worker, 20000 hostile idle connections open", "3.03 ms", "2.02 ms", "+50 %", "", ""}},
	}
	for _, tc := range tests {
		if got := cells(tc.fig, tc.label); !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got  %q\n want %q", tc.label, got, tc.want)
		}
	}

	var text bytes.Buffer
	c.print(&text)
	for _, want := range []string{
		"Now: testdata/compare_new.json (full run of 2026-12-01 09:00 UTC, commit abcdef012345",
		"Then: testdata/compare_old.json (full run of 2026-11-28 16:21 UTC, commit c96829fe2cfa",
		"dispatch: load at start now 0.52 0.40 0.33, then 1.01 0.83 1.06\n",
		"throughput: load at start now 3.10 1.20 1.00, then 1.49 0.93 1.09\n",
		"recovery: load at start now unknown; not in the earlier file; FAILED now: the hub did not restart\n",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the printed comparison lacks %q:\n%s", want, text.String())
		}
	}
	if strings.Contains(text.String(), "llm") || strings.Contains(text.String(), "Not comparable") {
		t.Errorf("the printed comparison shows a figure that did not run, or calls two full runs not comparable:\n%s", text.String())
	}

	var md bytes.Buffer
	c.printMarkdown(&md)
	tableLines := 0
	for line := range strings.Lines(md.String()) {
		if strings.HasPrefix(line, "|") {
			tableLines++
			if n := strings.Count(line, "|"); n != len(compareHeader())+1 {
				t.Errorf("a Markdown line with %d bars, want %d: %q", n, len(compareHeader())+1, line)
			}
		}
	}
	if want := 2 + len(c.figures) + 9; tableLines != want { // header, rule, a line per figure, 9 rows
		t.Errorf("%d Markdown table lines, want %d:\n%s", tableLines, want, md.String())
	}
}

func TestCompareOnlyAndMergedFigures(t *testing.T) {
	c, err := compareFiles("testdata/compare_new.json", "testdata/compare_old.json", "llm,scale")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.figures) != 2 || c.figures[0].now.Name != "scale" || c.figures[1].now.Name != "llm" {
		t.Fatalf("--only llm,scale compared %d figures", len(c.figures))
	}
	if got, want := c.figures[1].figureLine(), "llm: load at start now 1.25 1.41 1.40; not in the earlier file"; got != want {
		t.Errorf("llm's line = %q, want %q", got, want)
	}
	there, err := compareFiles("testdata/compare_old.json", "testdata/compare_old.json", "llm")
	if err != nil {
		t.Fatal(err)
	}
	if got := there.figures[0].figureLine(); !strings.Contains(got, "(then measured on its own, 2026-11-29 10:00 UTC, commit 6e1fc9c00000)") {
		t.Errorf("a merged figure's line does not say when it was measured: %q", got)
	}
	if _, err := compareFiles("testdata/compare_old.json", "testdata/compare_new.json", "nosuch"); err == nil {
		t.Errorf("--only nosuch was accepted")
	}
	if _, err := compareFiles("testdata/missing.json", "testdata/compare_new.json", ""); err == nil {
		t.Errorf("a missing file was accepted")
	}
}

func TestCompareSaysWhenRunsAreNotComparable(t *testing.T) {
	now := &report{Mode: "quick", Machine: machine{CPU: "A", Cores: 16}}
	then := &report{Mode: "full", Machine: machine{CPU: "B", Cores: 2}}
	h := compareReports(now, then, "this run", "old.json").heading()
	if !strings.Contains(h, "Not comparable: a quick run beside a full one") || !strings.Contains(h, "Different machines") {
		t.Errorf("heading = %q", h)
	}
}

// The run's own table carries each figure's 1-minute load average at its start, on the figure's
// first line only (FAILED or SKIPPED, where there is one), in both the text and the Markdown.
func TestTableShowsTheLoadAtEachFiguresStart(t *testing.T) {
	rep := &report{Mode: "full", Figures: []figureResult{
		{Name: "dispatch", LoadAvg: "1.01 0.83 1.06", Rows: []row{{Figure: "p50", Value: 1, Unit: "ms"}, {Figure: "p99", Value: 2, Unit: "ms"}}},
		{Name: "idle_gui", LoadAvg: "2.50 1.00 1.00", Skipped: "no Xvfb"},
	}}
	var md bytes.Buffer
	rep.printMarkdown(&md)
	want := "| figure | value | baseline (same run) | ratio | goal | result | load at start |\n" +
		"|---|---|---|---|---|---|---|\n" +
		"| p50 | 1 ms |  |  |  |  | 1.01 |\n" +
		"| p99 | 2 ms |  |  |  |  |  |\n" +
		"| idle_gui | SKIPPED: no Xvfb |  |  |  |  | 2.50 |\n"
	if md.String() != want {
		t.Errorf("Markdown:\n%s\nwant:\n%s", md.String(), want)
	}
	var text bytes.Buffer
	rep.print(&text)
	lines := strings.Split(strings.TrimSpace(text.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, "2.50") || !strings.HasSuffix(lines[len(lines)-3], "1.01") || strings.HasSuffix(strings.TrimSpace(lines[len(lines)-2]), "1.01") {
		t.Errorf("the text table's load column:\n%s", text.String())
	}
}
