// Package handclock is a clock that moves only when a test moves it, for tests of code that
// takes its time from a now func (caches, rate limits, countdowns), so they wait on nothing. It
// must not know what the code under test does with the time.
package handclock

import (
	"sync"
	"time"
)

// Clock is safe for use by the code under test and the test at once.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// New is a clock at t.
func New(t time.Time) *Clock { return &Clock{t: t} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Add moves the clock on by d.
func (c *Clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
