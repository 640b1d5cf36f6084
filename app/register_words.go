// register_words.go: what went wrong with a registration, as a sentence for the creator with
// the next step, and the field it is about — not the Go error chain ("register: Post
// \"http://…\": dial tcp …: connection refused"). It must not know which page shows it.

package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"studioworker/session"
)

// registerProblem maps a failed registration (or a server address refused before anything was
// sent) to the field it is about and a sentence that says what to do.
func registerProblem(err error, serverURL string) (field, sentence string) {
	where := serverURL
	if u, perr := url.Parse(serverURL); perr == nil && u.Host != "" {
		where = u.Host
	}
	var dnsErr *net.DNSError
	var certErr *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var recErr tls.RecordHeaderError
	var throttled *session.ThrottledError
	var netErr net.Error
	switch {
	case errors.Is(err, session.ErrPairingRejected):
		return "pairing_code", "The Studio did not accept this pairing code: it is wrong, already used or expired. Ask your Studio for a new code and enter it here."
	case errors.Is(err, session.ErrInsecureURL):
		return "server_url", "This address uses plain http:// to another computer, so the worker's sign-in would cross the network unencrypted. " +
			"Use the Studio's https:// address, or, on a network you trust, tick \"Allow http://\" in Settings."
	case strings.TrimSpace(serverURL) == "":
		return "server_url", "Enter your Studio's address, such as https://studio.example.com."
	case errors.As(err, &throttled):
		wait := "in a minute"
		if throttled.RetryAfter > 0 {
			wait = "in " + strconv.Itoa(int(math.Ceil(throttled.RetryAfter.Seconds()))) + " s"
		}
		return "server_url", "The Studio is refusing registrations for a moment, after too many attempts from this computer. Try again " + wait + "."
	case strings.Contains(err.Error(), "is not http(s)"), strings.Contains(err.Error(), "scheme must be"):
		return "server_url", "The address must start with https:// (or http:// for a Studio on this computer), such as https://studio.example.com."
	case strings.Contains(err.Error(), "has no host"):
		return "server_url", "This address has no computer name in it: write it as https://studio.example.com."
	case errors.Is(err, syscall.ECONNREFUSED):
		return "server_url", "Nothing answers at " + where + ". Check the address and its port, and that the Studio is running."
	case errors.As(err, &dnsErr):
		return "server_url", "No computer named " + dnsErr.Name + " could be found. Check the spelling of the address, and that this computer is online."
	case errors.As(err, &certErr), errors.As(err, &unknownCA), errors.As(err, &hostErr):
		return "server_url", "The Studio's certificate could not be verified, so Studio Worker did not send anything. Check the address; " +
			"a Studio with a certificate of its own needs that certificate installed on this computer."
	case errors.As(err, &recErr), strings.Contains(err.Error(), "HTTP response to HTTPS client"):
		return "server_url", "The address " + where + " does not answer https://. If the Studio runs without https on your own network, use http:// and tick \"Allow http://\" in Settings."
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "server_url", "The address " + where + " did not answer in time. Check the address, and that this computer can reach the Studio's network."
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "server_url", "The connection to " + where + " failed (" + rootCause(err) + "). Check the address and this computer's network."
	}
	if _, status, ok := strings.Cut(err.Error(), "the hub answered "); ok { // "the hub answered 404 Not Found: …"
		status, _, _ = strings.Cut(status, ":")
		return "server_url", "This address is not a Studio, or not the right page of one (it answered " + status + "). Use the address your Studio shows with the pairing code."
	}
	return "server_url", "Could not register: " + rootCause(err) + ". Check the address, then try again."
}

// rootCause is an error's last link, where the words that matter are ("connection refused"),
// without the chain of operations before it.
func rootCause(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		if tail := strings.TrimSpace(msg[i+2:]); tail != "" {
			return tail
		}
	}
	return msg
}

// backendProblem says why a backend's Test failed, in a sentence with the next step. A command
// line backend's own words are kept (they name the program); a server's network failure is said
// as for a Studio address.
func backendProblem(err error, f BackendForm) string {
	where := f.URL
	if u, perr := url.Parse(f.URL); perr == nil && u.Host != "" {
		where = u.Host
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case f.URL == "":
		return "The test failed: " + rootCause(err) + "."
	case errors.Is(err, syscall.ECONNREFUSED):
		return "Nothing answers at " + where + ". Start the backend, or check its address and port."
	case errors.As(err, &dnsErr):
		return "No computer named " + dnsErr.Name + " could be found. Check the backend's address."
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "The backend at " + where + " did not answer in time. It may still be loading a model: try again in a moment."
	case strings.Contains(err.Error(), "401"), strings.Contains(err.Error(), "403"):
		return "The backend at " + where + " refused the API key. Check the key, or leave it empty if the server needs none."
	case strings.Contains(err.Error(), "404"):
		return "The backend at " + where + " answers, but not as this kind of backend (404). Check the address (an OpenAI-compatible server's ends in /v1) and the backend chosen."
	}
	return "The backend at " + where + " did not answer as expected: " + rootCause(err) + "."
}
