// observers.go: the one State and the notices, published to every subscriber (windows, the control
// socket's event stream) with the newest state kept and notices bounded, losses counted. It must
// not know what a State means.

package app

import (
	"sync"
	"sync/atomic"
)

// noticeBuffer is how many notices a subscriber may fall behind before it loses the oldest.
const noticeBuffer = 256

// Observers is the single owner of the worker's State and of its subscribers. Publishing never
// blocks: a subscriber gets the latest State (older ones are replaced) and a bounded queue of
// notices that loses its oldest entries, counting them, when the subscriber is slow.
type Observers struct {
	mu    sync.Mutex
	state State
	subs  map[*Subscription]struct{}
}

// NewObservers starts from an initial state.
func NewObservers(initial State) *Observers {
	return &Observers{state: initial.Clone(), subs: map[*Subscription]struct{}{}}
}

// Subscription receives States and Notices until Close.
type Subscription struct {
	owner   *Observers
	states  chan State
	notices chan Notice
	lost    atomic.Uint64
	once    sync.Once
}

// States delivers the latest State after each change; only the newest waiting one is kept.
// It is closed by Close.
func (s *Subscription) States() <-chan State { return s.states }

// Notices delivers notices in order; it is closed by Close.
func (s *Subscription) Notices() <-chan Notice { return s.notices }

// Lost returns how many notices this subscriber lost because it was slow, and resets the count.
func (s *Subscription) Lost() uint64 { return s.lost.Swap(0) }

// Close unsubscribes and closes both channels. It is safe to call more than once.
func (s *Subscription) Close() {
	s.once.Do(func() {
		s.owner.mu.Lock()
		delete(s.owner.subs, s)
		close(s.states)
		close(s.notices)
		s.owner.mu.Unlock()
	})
}

// Subscribe returns the current State and a subscription for what follows; nothing that happens
// after the snapshot is missed.
func (o *Observers) Subscribe() (State, *Subscription) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := &Subscription{owner: o, states: make(chan State, 1), notices: make(chan Notice, noticeBuffer)}
	o.subs[s] = struct{}{}
	return o.state.Clone(), s
}

// Snapshot returns a copy of the current State.
func (o *Observers) Snapshot() State {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.state.Clone()
}

// Update changes the State with fn and publishes the result; fn runs under the lock and must not
// call back into Observers.
func (o *Observers) Update(fn func(*State)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fn(&o.state)
	o.state.Seq++
	if len(o.subs) == 0 {
		return
	}
	snap := o.state.Clone()
	for s := range o.subs {
		// Replace whatever the subscriber has not read yet: it only needs the newest State.
		// The lock makes this the only sender, so the second send always has room.
		select {
		case s.states <- snap:
		default:
			select {
			case <-s.states:
			default:
			}
			s.states <- snap
		}
	}
}

// Notify publishes a notice to every subscriber, dropping a slow subscriber's oldest notice.
func (o *Observers) Notify(n Notice) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for s := range o.subs {
		select {
		case s.notices <- n:
		default:
			select {
			case <-s.notices:
				s.lost.Add(1)
			default:
			}
			select {
			case s.notices <- n:
			default:
				s.lost.Add(1)
			}
		}
	}
}

// addLost counts n notices as lost for every subscriber: they were dropped before they reached
// this Observers (the event stream of a worker it mirrors said so), so no subscriber will see them.
func (o *Observers) addLost(n uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for s := range o.subs {
		s.lost.Add(n)
	}
}

// Subscribers returns how many subscriptions are open (for tests and status).
func (o *Observers) Subscribers() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.subs)
}
