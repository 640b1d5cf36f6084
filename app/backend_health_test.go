// backend_health_test.go: when a backend went down is kept and said (State.EngineDownSince).

package app

import (
	"reflect"
	"testing"
	"time"

	"studioworker/engine"
)

func TestDownSince(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 16, 0, 0, 0, time.UTC)
	t1 := t0.Add(time.Minute)
	tests := []struct {
		name          string
		before, after map[string]string
		since         map[string]time.Time
		wantSince     map[string]time.Time
		wantNotices   []string
	}{
		{"the first check is not news", map[string]string{"llm": engine.NotCheckedYet}, map[string]string{}, nil,
			map[string]time.Time{}, nil},
		{"not checked yet has no since", nil, map[string]string{"llm": engine.NotCheckedYet}, nil,
			map[string]time.Time{}, nil},
		{"a backend goes down", map[string]string{}, map[string]string{"llm": "connection refused"}, nil,
			map[string]time.Time{"llm": t1}, []string{"The llm backend stopped answering: connection refused"}},
		{"it stays down: the time is kept", map[string]string{"llm": "connection refused"}, map[string]string{"llm": "EOF"},
			map[string]time.Time{"llm": t0}, map[string]time.Time{"llm": t0}, nil},
		{"it comes back", map[string]string{"llm": "connection refused"}, map[string]string{},
			map[string]time.Time{"llm": t0}, map[string]time.Time{}, []string{"The llm backend answers again: llm jobs are taken again"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			since, notices := downSince(tc.before, tc.since, tc.after, t1)
			if !reflect.DeepEqual(since, tc.wantSince) {
				t.Errorf("since = %v, want %v", since, tc.wantSince)
			}
			var texts []string
			for _, n := range notices {
				if n.Kind != NoticeBackend {
					t.Errorf("notice kind %q", n.Kind)
				}
				texts = append(texts, n.Text)
			}
			if !reflect.DeepEqual(texts, tc.wantNotices) {
				t.Errorf("notices = %q, want %q", texts, tc.wantNotices)
			}
		})
	}
}
