// logevery.go: lets one log line of a kind through per interval and counts the ones it held back,
// so that a flood of refusals costs one line per interval instead of one per request and the log
// still says how many there were. It must not know what is logged or why.

package hub

import (
	"sync"
	"time"
)

// logEvery is safe for concurrent use; its zero value lets every line through (every 0).
type logEvery struct {
	every time.Duration

	mu   sync.Mutex
	last time.Time
	held int // lines held back since the last one let through
}

// take reports whether a line may be written at now and, when it may, how many were held back
// since the previous one (to be written in it).
func (l *logEvery) take(now time.Time) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.held++
		return false, 0
	}
	suppressed = l.held
	l.last, l.held = now, 0
	return true, suppressed
}
