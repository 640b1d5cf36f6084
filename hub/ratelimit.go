// ratelimit.go: token buckets that decide whether one more attempt may go ahead now, one bucket per
// client key plus one for all keys together, with a bounded table of keys. It must not know HTTP,
// addresses or what is being limited: callers hand it a key and a time, and it answers how long
// to wait.

package hub

import (
	"math"
	"sync"
	"time"
)

// limitReason says which bucket refused an attempt; "" means none did.
type limitReason string

const (
	limitKey   limitReason = "key"   // this key used up its burst
	limitTotal limitReason = "total" // all keys together did
	limitFull  limitReason = "full"  // the key is new and the table of keys is full
)

// bucket holds tokens as of at. A float keeps a refill of a fraction of a token between two
// attempts instead of rounding it away.
type bucket struct {
	tokens float64
	at     time.Time
}

// refill brings b up to now. A clock that went backwards adds nothing (and does not move at, so
// the time is not counted twice once it catches up).
func (b *bucket) refill(now time.Time, burst float64, per time.Duration) {
	if el := now.Sub(b.at); el > 0 {
		b.tokens = math.Min(burst, b.tokens+float64(el)/float64(per))
		b.at = now
	}
}

// wait is how long until b holds one whole token: 0 when it does.
func (b *bucket) wait(per time.Duration) time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return time.Duration(math.Ceil((1 - b.tokens) * float64(per)))
}

// limiter is a token bucket per key (burst tokens, one more every keyPer) and one for all keys
// (totalBurst tokens, one more every totalPer). An attempt takes a token from both or from
// neither: a refused attempt costs nothing, so hammering while refused does not push the next
// allowed attempt further away.
//
// The table of keys is bounded: a key whose bucket has filled up again carries no information
// and is dropped by the next sweep, so only keys seen within burst×keyPer stay; and when maxKeys
// are held a new key is refused (limitFull) rather than the table growing.
type limiter struct {
	burst      float64
	keyPer     time.Duration
	totalBurst float64
	totalPer   time.Duration
	maxKeys    int
	idle       time.Duration // burst×keyPer: after this, an untouched bucket is full again

	mu    sync.Mutex
	total bucket
	keys  map[string]*bucket
	swept time.Time // last sweep
	// nextFree is never later than the first time a held key's bucket is full again: exact after
	// a sweep, lowered as keys are added; a key taking a token only moves its own time later.
	nextFree time.Time
}

// sweepFullEvery is the most often a full table is swept on behalf of a new key.
const sweepFullEvery = time.Second

func newLimiter(burst int, keyPer time.Duration, totalPerSecond, maxKeys int, now time.Time) *limiter {
	idle := time.Duration(math.MaxInt64)
	if keyPer <= idle/time.Duration(burst) {
		idle = time.Duration(burst) * keyPer // else it overflows: a burst so large never fills up
	}
	l := &limiter{
		burst:      float64(burst),
		keyPer:     keyPer,
		totalBurst: float64(totalPerSecond),
		totalPer:   time.Second / time.Duration(totalPerSecond),
		maxKeys:    maxKeys,
		idle:       idle,
		keys:       map[string]*bucket{},
		swept:      now,
		nextFree:   now.Add(idle),
	}
	l.total = bucket{tokens: l.totalBurst, at: now}
	return l
}

// allow takes a token for key at now, or says why not and how long to wait before asking again
// (at least 1 ns when refused).
func (l *limiter) allow(key string, now time.Time) (time.Duration, limitReason) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) >= l.idle {
		l.sweep(now)
	}
	b := l.keys[key]
	if b == nil && len(l.keys) >= l.maxKeys {
		// Sweep only once a held key may have filled up, and not more than once a second: a
		// sweep walks the whole table, and a flood of new keys must not make each refusal cost
		// that.
		if !now.Before(l.nextFree) && now.Sub(l.swept) >= sweepFullEvery {
			l.sweep(now)
		}
		if len(l.keys) >= l.maxKeys {
			next := l.nextFree
			if !next.After(now) {
				next = l.swept.Add(sweepFullEvery)
			}
			return max(next.Sub(now), 1), limitFull
		}
	}
	fresh := bucket{tokens: l.burst, at: now}
	if b == nil {
		b = &fresh // entered into the table only if the attempt goes ahead
	}
	b.refill(now, l.burst, l.keyPer)
	if d := b.wait(l.keyPer); d > 0 {
		return d, limitKey
	}
	l.total.refill(now, l.totalBurst, l.totalPer)
	if d := l.total.wait(l.totalPer); d > 0 {
		return d, limitTotal
	}
	b.tokens--
	l.total.tokens--
	if b == &fresh {
		l.keys[key] = &bucket{tokens: fresh.tokens, at: fresh.at}
		if full := now.Add(l.fillTime(fresh.tokens)); full.Before(l.nextFree) {
			l.nextFree = full
		}
	}
	return 0, ""
}

// sweep drops the keys whose bucket is full again and notes when the next one will be.
func (l *limiter) sweep(now time.Time) {
	l.swept = now
	l.nextFree = now.Add(l.idle)
	for k, b := range l.keys {
		b.refill(now, l.burst, l.keyPer)
		if b.tokens >= l.burst {
			delete(l.keys, k)
			continue
		}
		if full := now.Add(l.fillTime(b.tokens)); full.Before(l.nextFree) {
			l.nextFree = full
		}
	}
}

// fillTime is how long a key's bucket holding tokens takes to be full again.
func (l *limiter) fillTime(tokens float64) time.Duration {
	return time.Duration(math.Ceil((l.burst - tokens) * float64(l.keyPer)))
}

// size is the number of keys held, for tests and metrics.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}
