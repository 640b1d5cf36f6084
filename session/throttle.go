// throttle.go: reads a hub's 429 into an error that says when to try again (Retry-After, in
// seconds or as an HTTP date), so that a user who registers too often is told a time rather
// than "try later". It must not know what was throttled or how the caller goes on.

package session

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfter caps what a hub may ask for: a date years away, or a typo, would otherwise tell
// the user to come back next decade.
const maxRetryAfter = 24 * time.Hour

// ThrottledError is a 429 answer. RetryAfter is how long the hub asked to wait (0 when it said
// nothing usable); At is when that wait ends, by this machine's clock.
type ThrottledError struct {
	What       string // what was refused, e.g. "register"
	RetryAfter time.Duration
	At         time.Time
	HubSaid    string // the hub's own words, "" when it gave none
}

func (e *ThrottledError) Error() string {
	var b strings.Builder
	b.WriteString(e.What)
	b.WriteString(": the hub is refusing attempts for now (429 Too Many Requests")
	if e.HubSaid != "" {
		b.WriteString(": ")
		b.WriteString(e.HubSaid)
	}
	b.WriteString(")")
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, "; try again in %s, at %s", roundUpSeconds(e.RetryAfter), e.At.Format("15:04:05"))
	} else {
		b.WriteString("; try again later")
	}
	return b.String()
}

// throttled builds the error for resp, a 429 received at now.
func throttled(what string, resp *http.Response, now time.Time) *ThrottledError {
	e := &ThrottledError{What: what, HubSaid: strings.TrimPrefix(bodySnippet(resp.Body), ": ")}
	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), now); ok {
		e.RetryAfter = d
		e.At = now.Add(d)
	}
	return e
}

// parseRetryAfter reads RFC 9110's Retry-After: delay-seconds or an HTTP date. "0" or a date in
// the past means at once, which is said as one second, since 0 reads as "nothing usable".
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(max(secs, 1), int64(maxRetryAfter/time.Second))) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return min(max(t.Sub(now), time.Second), maxRetryAfter), true
}

// roundUpSeconds prints a wait in whole seconds, never less than it is.
func roundUpSeconds(d time.Duration) time.Duration {
	return (d + time.Second - 1).Truncate(time.Second)
}
