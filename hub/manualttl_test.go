// manualttl_test.go checks that an offer to a worker whose user answers by hand lasts
// manual_offer_ttl and says so in ttl_ms (contract §6), over a real socket.

package hub

import (
	"testing"
	"time"

	"studioworker/protocol"
)

func TestOfferLifetimeFollowsAutoAccept(t *testing.T) {
	cases := []struct {
		name       string
		autoAccept bool
		want       time.Duration
	}{
		{"auto-accept: the hub's offer TTL", true, 2 * time.Second},
		{"by hand: at least the manual TTL", false, 90 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startHub(t, func(c *Config) { c.OfferTTL, c.ManualOfferTTL = 2*time.Second, 90*time.Second })
			c := caps(1, 24, map[protocol.Kind][]string{protocol.KindLLM: {"m1"}})
			c.AutoAccept = tc.autoAccept
			w := e.connect(e.register("w"), hello(c, nil, nil))
			before := time.Now()
			id := e.submit(llmJob("m1"))
			o := expect[protocol.Offer](w)
			if o.Claim.JobID != id {
				t.Fatalf("offer for %s, want %s", o.Claim.JobID, id)
			}
			if got := time.Duration(o.TTLMS) * time.Millisecond; got != tc.want {
				t.Errorf("ttl_ms = %v, want %v", got, tc.want)
			}
			if left := o.Claim.ExpiresAt.Sub(before); left < tc.want-time.Second || left > tc.want+5*time.Second {
				t.Errorf("expires_at is %v after the submit, want about %v", left, tc.want)
			}
		})
	}
}
