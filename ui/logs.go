// logs.go: the Logs tab — a bounded buffer of log lines with a level filter, search, copy, and
// the selected line in full. It must not know where the lines come from.

package ui

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"studioworker/app"
	"studioworker/protocol"
)

// maxLogLines bounds the log view; the log file keeps everything.
const maxLogLines = 2000

// Level filter choices, least to most strict.
var logLevelChoices = []string{"Everything", "Info and above", "Warnings and errors", "Errors only"}

// logLine is one entry of the log view, formatted once.
type logLine struct {
	level protocol.LogLevel
	text  string // the whole line as shown and copied
	lower string // text in lower case, for the search
}

// logBuffer keeps the newest lines, at most max, and the ones that pass the filter.
type logBuffer struct {
	max      int
	lines    []logLine
	minLevel int
	query    string
	shown    []logLine
}

func levelRank(l protocol.LogLevel) int {
	switch l {
	case protocol.LevelDebug:
		return 0
	case protocol.LevelWarn:
		return 2
	case protocol.LevelError:
		return 3
	}
	return 1 // info, and anything unknown
}

// formatLog renders a notice as one line: time, level, source, text, attributes.
func formatLog(n app.Notice, loc *time.Location) logLine {
	lvl := n.Level
	if lvl == "" {
		lvl = protocol.LevelInfo
	}
	var b strings.Builder
	if !n.Time.IsZero() {
		b.WriteString(n.Time.In(loc).Format("15:04:05"))
		b.WriteString("  ")
	}
	fmt.Fprintf(&b, "%-5s  ", strings.ToUpper(string(lvl)))
	if n.Source != "" {
		b.WriteString(n.Source)
		b.WriteString(": ")
	}
	b.WriteString(n.Text)
	if n.JobID != "" && (n.Attrs == nil || n.Attrs["job_id"] == "") {
		b.WriteString("  job_id=")
		b.WriteString(n.JobID)
	}
	keys := make([]string, 0, len(n.Attrs))
	for k := range n.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %s=%s", k, n.Attrs[k])
	}
	text := strings.ReplaceAll(b.String(), "\n", " ⏎ ")
	return logLine{level: lvl, text: text, lower: strings.ToLower(text)}
}

func (lb *logBuffer) matches(l logLine) bool {
	return levelRank(l.level) >= lb.minLevel && (lb.query == "" || strings.Contains(l.lower, lb.query))
}

// add appends lines, dropping the oldest beyond max.
func (lb *logBuffer) add(lines ...logLine) {
	lb.lines = append(lb.lines, lines...)
	if over := len(lb.lines) - lb.max; over > 0 {
		// Copy down rather than reslice, so the backing array does not creep forward forever.
		lb.lines = append(lb.lines[:0], lb.lines[over:]...)
		lb.refilter()
		return
	}
	for _, l := range lines {
		if lb.matches(l) {
			lb.shown = append(lb.shown, l)
		}
	}
}

func (lb *logBuffer) setFilter(minLevel int, query string) {
	lb.minLevel, lb.query = minLevel, strings.ToLower(strings.TrimSpace(query))
	lb.refilter()
}

func (lb *logBuffer) refilter() {
	lb.shown = lb.shown[:0]
	for _, l := range lb.lines {
		if lb.matches(l) {
			lb.shown = append(lb.shown, l)
		}
	}
}

// text is what Copy puts on the clipboard: the lines that pass the filter.
func (lb *logBuffer) text() string {
	var b strings.Builder
	for _, l := range lb.shown {
		b.WriteString(l.text)
		b.WriteByte('\n')
	}
	return b.String()
}

// logView is the Logs tab: live lines, a level filter, a search, Copy.
type logView struct {
	buf     logBuffer
	loc     *time.Location
	list    *widget.List
	level   *widget.Select
	search  *widget.Entry
	follow  *widget.Check
	count   *widget.RichText
	file    *widget.RichText
	whole   *widget.Label // the selected line in full: the list cuts long ones with "…"
	lost    uint64
	copy    func(string)
	content fyne.CanvasObject
}

// logWholeHint stands where the selected line is shown in full until one is selected.
const logWholeHint = "Click a line to read it whole here (and select its text to copy it)."

func newLogView(loc *time.Location, copyText func(string)) *logView {
	v := &logView{buf: logBuffer{max: maxLogLines, minLevel: 1}, loc: loc, copy: copyText}
	v.list = widget.NewList(
		func() int { return len(v.buf.shown) },
		func() fyne.CanvasObject {
			l := widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Monospace: true})
			l.Truncation = fyne.TextTruncateEllipsis
			return l
		},
		func(id widget.ListItemID, o fyne.CanvasObject) {
			if id < 0 || id >= len(v.buf.shown) {
				return
			}
			l := o.(*widget.Label)
			line := v.buf.shown[id]
			l.Importance = levelImportance(line.level)
			l.SetText(line.text)
		},
	)
	v.whole = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Monospace: true})
	v.whole.Wrapping = fyne.TextWrapWord
	v.whole.Selectable = true
	v.whole.Importance = widget.LowImportance
	v.whole.SetText(logWholeHint)
	v.list.OnSelected = func(id widget.ListItemID) {
		if id < 0 || id >= len(v.buf.shown) {
			return
		}
		v.whole.Importance = levelImportance(v.buf.shown[id].level)
		v.whole.SetText(v.buf.shown[id].text)
	}
	v.search = widget.NewEntry()
	v.search.SetPlaceHolder("Search the log")
	v.search.OnChanged = func(string) { v.applyFilter() }
	v.level = widget.NewSelect(logLevelChoices, nil)
	v.level.SetSelectedIndex(1) // before OnChanged is set: the buffer starts at info already
	v.level.OnChanged = func(string) { v.applyFilter() }
	v.follow = widget.NewCheck("Follow", nil)
	v.follow.Checked = true
	v.follow.OnChanged = func(on bool) {
		if on {
			v.list.ScrollToBottom()
		}
	}
	v.count = subtle("")
	v.file = subtle("")
	v.file.Truncation = fyne.TextTruncateEllipsis
	copyBtn := widget.NewButtonWithIcon("Copy", theme.ContentCopyIcon(), func() { v.copy(v.buf.text()) })
	bar := container.NewBorder(nil, nil, container.New(&fixedWidth{width: 200}, v.level), container.NewHBox(v.follow, copyBtn),
		container.NewBorder(nil, nil, widget.NewIcon(theme.SearchIcon()), nil, v.search))
	bottom := container.NewVBox(widget.NewSeparator(), v.whole, container.NewBorder(nil, nil, nil, v.count, v.file))
	v.content = container.NewBorder(bar, bottom, nil, nil, v.list)
	v.updateCount()
	return v
}

func levelImportance(l protocol.LogLevel) widget.Importance {
	switch l {
	case protocol.LevelError:
		return widget.DangerImportance
	case protocol.LevelWarn:
		return widget.WarningImportance
	case protocol.LevelDebug:
		return widget.LowImportance
	}
	return widget.MediumImportance
}

func (v *logView) applyFilter() {
	idx := 1
	for i, c := range logLevelChoices {
		if c == v.level.Selected {
			idx = i
		}
	}
	v.buf.setFilter(idx, v.search.Text)
	v.list.Refresh()
	v.updateCount()
}

// add shows log notices; lost is how many the window missed since the last call.
func (v *logView) add(ns []app.Notice, lost uint64) {
	lines := make([]logLine, 0, len(ns)+1)
	if lost > 0 {
		v.lost += lost
		text := fmt.Sprintf("(%d log lines were skipped because the window fell behind; the log file has them all)", lost)
		lines = append(lines, logLine{level: protocol.LevelWarn, text: text, lower: strings.ToLower(text)})
	}
	for _, n := range ns {
		if n.Kind == app.NoticeLog {
			lines = append(lines, formatLog(n, v.loc))
		}
	}
	if len(lines) == 0 {
		return
	}
	v.buf.add(lines...)
	v.list.Refresh()
	if v.follow.Checked {
		v.list.ScrollToBottom()
	}
	v.updateCount()
}

func (v *logView) setLogFile(path string) {
	if path == "" {
		setSubtle(v.file, "")
		return
	}
	setSubtle(v.file, "Log file: "+path)
}

func (v *logView) updateCount() {
	setSubtle(v.count, fmt.Sprintf("%d of %d lines", len(v.buf.shown), len(v.buf.lines)))
}
