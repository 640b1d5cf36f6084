// template.go: kardianos/service v1.3.0's template engine, rewritten (see below). It must not know
// what the templates say or where their data comes from.

package service

import (
	"fmt"
	"strings"
)

// kardianos/service v1.3.0 renders unit files with a small engine of its own, which it does not
// export. renderUnit and renderLaunchAgent must show the exact text that Install writes, so
// this is the same engine, rewritten: {{Key}}, {{Key | fn | fn}}, {{.}} inside a range,
// {{if Key}}…{{else}}…{{end}}, {{range Key}}…{{end}}, and {{- / -}} whitespace trimming. A value
// is a string or a []string; there is no field access, no comparison and no text/template syntax.
// TestServiceInstallWritesRenderedUnit compares the two on Linux.

type tmplKind uint8

const (
	tmplText tmplKind = iota
	tmplValue
	tmplIf
	tmplRange
)

type tmplNode struct {
	kind  tmplKind
	text  string   // literal text, or the key looked up
	funcs []string // pipeline (values only)
	body  []tmplNode
	alt   []tmplNode // else branch of an if
}

// renderTemplate parses src and renders it with data; funcs are the pipeline functions.
func renderTemplate(src string, data map[string]any, funcs map[string]func(string) string) (string, error) {
	nodes, _, _, _, err := parseNodes(src, false)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := execNodes(&b, nodes, data, nil, funcs); err != nil {
		return "", err
	}
	return b.String(), nil
}

// parseNodes parses src up to the end or one of terminators ("else", "end"). trimLeading trims
// the leading whitespace of the first literal (a "-}}" just before it). It returns the terminator
// met, the rest of src after it, and whether that terminator ended with "-}}".
func parseNodes(src string, trimLeading bool, terminators ...string) (nodes []tmplNode, term, rest string, trimNext bool, err error) {
	for {
		lit, action, found := src, "", false
		var trimBefore, trimAfter bool
		if open := strings.Index(src, "{{"); open >= 0 {
			end := strings.Index(src[open:], "}}")
			if end < 0 {
				return nil, "", "", false, fmt.Errorf(`template: unclosed "{{"`)
			}
			lit, action, src, found = src[:open], src[open+2:open+end], src[open+end+2:], true
			if strings.HasPrefix(action, "-") {
				trimBefore, action = true, action[1:]
			}
			if strings.HasSuffix(action, "-") {
				trimAfter, action = true, action[:len(action)-1]
			}
			action = strings.TrimSpace(action)
		} else {
			src = ""
		}
		if trimLeading {
			lit = strings.TrimLeft(lit, " \t\r\n")
		}
		if trimBefore {
			lit = strings.TrimRight(lit, " \t\r\n")
		}
		if lit != "" {
			nodes = append(nodes, tmplNode{kind: tmplText, text: lit})
		}
		trimLeading = trimAfter
		if !found {
			return nodes, "", "", false, nil
		}

		word := action
		if i := strings.IndexAny(action, " \t|"); i >= 0 {
			word = action[:i]
		}
		switch word {
		case "end", "else":
			for _, t := range terminators {
				if word == t {
					return nodes, word, src, trimAfter, nil
				}
			}
			return nil, "", "", false, fmt.Errorf("template: unexpected %q", word)
		case "if", "range":
			n := tmplNode{kind: tmplIf, text: strings.TrimSpace(action[len(word):])}
			if n.text == "" {
				return nil, "", "", false, fmt.Errorf("template: %q needs a key", word)
			}
			var stop string
			var tn bool
			if word == "range" {
				n.kind = tmplRange
				n.body, stop, src, tn, err = parseNodes(src, trimAfter, "end")
			} else {
				n.body, stop, src, tn, err = parseNodes(src, trimAfter, "else", "end")
			}
			if err != nil {
				return nil, "", "", false, err
			}
			if stop == "" {
				return nil, "", "", false, fmt.Errorf("template: %q %s has no {{end}}", word, n.text)
			}
			if stop == "else" {
				if n.alt, stop, src, tn, err = parseNodes(src, tn, "end"); err != nil {
					return nil, "", "", false, err
				}
				if stop == "" {
					return nil, "", "", false, fmt.Errorf("template: %q %s has no {{end}}", word, n.text)
				}
			}
			trimLeading = tn
			nodes = append(nodes, n)
		default:
			parts := strings.Split(action, "|")
			n := tmplNode{kind: tmplValue, text: strings.TrimSpace(parts[0])}
			for _, p := range parts[1:] {
				n.funcs = append(n.funcs, strings.TrimSpace(p))
			}
			nodes = append(nodes, n)
		}
	}
}

func execNodes(b *strings.Builder, nodes []tmplNode, data map[string]any, dot any, funcs map[string]func(string) string) error {
	for i := range nodes {
		n := &nodes[i]
		if n.kind == tmplText {
			b.WriteString(n.text)
			continue
		}
		v := dot
		if n.text != "." {
			var ok bool
			if v, ok = data[n.text]; !ok {
				return fmt.Errorf("template: unknown key %q", n.text)
			}
		}
		switch n.kind {
		case tmplValue:
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("template: key %q is not a string", n.text)
			}
			for _, name := range n.funcs {
				fn, ok := funcs[name]
				if !ok {
					return fmt.Errorf("template: unknown function %q", name)
				}
				s = fn(s)
			}
			b.WriteString(s)
		case tmplIf:
			body := n.alt
			switch t := v.(type) {
			case string:
				if t != "" {
					body = n.body
				}
			case []string:
				if len(t) > 0 {
					body = n.body
				}
			}
			if err := execNodes(b, body, data, dot, funcs); err != nil {
				return err
			}
		case tmplRange:
			items, ok := v.([]string)
			if !ok {
				return fmt.Errorf("template: key %q is not a list", n.text)
			}
			for _, item := range items {
				if err := execNodes(b, n.body, data, item, funcs); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
