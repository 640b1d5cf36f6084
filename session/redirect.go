// redirect.go is the session's redirect policy: every hop is held to the rules a URL given
// directly is held to (http or https; plain http only to loopback unless allow_insecure), and the
// worker's token goes only to the hub's own origin — scheme, host and port — never to another,
// whatever Go's client would keep. It must not know what is being fetched.

package session

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// maxRedirects is what Go's client allows by default.
const maxRedirects = 10

// withRedirectPolicy returns a copy of c that follows redirects by the session's rules; the
// Transport (and its connection pool) is shared with c.
func (s *Session) withRedirectPolicy(c *http.Client) *http.Client {
	cp := *c
	cp.CheckRedirect = s.checkRedirect
	return &cp
}

func (s *Session) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	u := req.URL
	if err := schemeAllowed(u, s.cfg.AllowInsecure); err != nil {
		return fmt.Errorf("redirect to %s: %w", u.Redacted(), err)
	}
	if !sameOrigin(u, s.base) {
		// Go keeps Authorization for the same host name on any port or scheme.
		req.Header.Del("Authorization")
		req.Header.Del("Cookie")
	}
	return nil
}

// sameOrigin compares scheme, host and port, with the scheme's default port filled in.
func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https", "wss":
		return "443"
	case "http", "ws":
		return "80"
	}
	return ""
}
