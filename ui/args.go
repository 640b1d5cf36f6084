// args.go: a command line and a comma list as the Settings fields show and read them, quoting
// kept. It must not know which backend runs the command.

package ui

import (
	"errors"
	"strings"
)

// errUnclosedQuote: a command line in the settings has a quote that is never closed.
var errUnclosedQuote = errors.New("a quote is not closed")

// splitArgs splits a command line the way a POSIX shell splits words, without running a shell:
// spaces separate words, '…' keeps everything literally, "…" allows \" and \\, and a backslash
// outside quotes escapes the next character. The exec backend takes an argv, never a shell string.
func splitArgs(line string) ([]string, error) {
	var (
		args    []string
		cur     strings.Builder
		inWord  bool
		quote   rune // 0, '\'' or '"'
		escaped bool
	)
	for _, r := range line {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '\\':
			escaped, inWord = true, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, errUnclosedQuote
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args, nil
}

// joinArgs is the inverse of splitArgs: words that need it are quoted.
func joinArgs(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		switch {
		case a == "":
			out[i] = "''"
		case !strings.ContainsAny(a, " \t\n'\"\\"):
			out[i] = a
		case !strings.Contains(a, "'"):
			out[i] = "'" + a + "'"
		default:
			out[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
		}
	}
	return strings.Join(out, " ")
}

// splitList splits a comma-separated list, trimming spaces and dropping empty entries.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
