// main_test.go: main's wiring — its arguments reach app's command table with this build's version.

package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestDispatch(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		stdout     string
		stderrPart string
	}{
		{[]string{"version"}, 0, "protocol v1", ""},
		{[]string{"--help"}, 0, "studio-worker register", ""},
		{[]string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := dispatch(tt.args, &out, &errb); code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, errb.String())
			}
			if !strings.Contains(out.String(), tt.stdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tt.stdout)
			}
			if !strings.Contains(errb.String(), tt.stderrPart) {
				t.Errorf("stderr %q lacks %q", errb.String(), tt.stderrPart)
			}
		})
	}
}
