package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMergeIntoKeepsOtherFigures(t *testing.T) {
	path := filepath.Join(t.TempDir(), "latest.json")
	old := `{
  "generated_at": "2026-11-28T16:21:53Z",
  "mode": "full",
  "seconds": 1,
  "machine": {
    "cpu": "x",
    "cores": 2
  },
  "figures": [
    {
      "name": "dispatch",
      "details": {
        "d": {
          "n": 2,
          "p50": 1
        }
      }
    },
    {
      "name": "llm",
      "rows": []
    }
  ]
}
`
	if err := os.WriteFile(path, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := &report{Mode: "full", Figures: []figureResult{{Name: "llm", Rows: []row{{Figure: "f", Value: 2, Unit: "ms"}}}, {Name: "new"}}}
	if err := mergeInto(path, rep); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := string(b)
	if !strings.HasPrefix(got, old[:strings.Index(old, `    {
      "name": "llm"`)]) {
		t.Errorf("the file's head and the dispatch figure changed:\n%s", got)
	}
	if strings.Count(got, `"name": "llm"`) != 1 || !strings.Contains(got, `"figure": "f"`) || !strings.Contains(got, `"name": "new"`) || !strings.Contains(got, `"merged"`) {
		t.Errorf("llm not replaced or new not added:\n%s", got)
	}
}
