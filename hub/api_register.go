// api_register.go: pairing codes and worker registration. A code is kept only as its hash and is
// spent in the same transaction that creates the worker, so one code can never admit two; the
// endpoint is throttled per client address and in total before it reads a byte of the body. It
// must not know about sessions: a registered worker is a row and an entry in Hub.workers until it
// connects.

package hub

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"studioworker/protocol"
)

// pairingAlphabet leaves out letters that read like digits.
const pairingAlphabet = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// newPairingCode is ten characters in two groups of five, short enough to read out and type.
func newPairingCode() string {
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	out := make([]byte, 0, 11)
	for i, c := range b {
		if i == 5 {
			out = append(out, '-')
		}
		out = append(out, pairingAlphabet[int(c)%len(pairingAlphabet)])
	}
	return string(out)
}

// normalizeCode lets a code be typed in any case, with or without its dash or spaces: only its
// characters are hashed.
func normalizeCode(code string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToUpper(strings.TrimSpace(code)))
}

// NewPairingCode makes a single-use pairing code.
func (h *Hub) NewPairingCode(ctx context.Context) (string, error) {
	code := newPairingCode()
	sum := hashToken(normalizeCode(code))
	now := fmtTime(h.now())
	err := h.db.do(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO pairing_codes(code_hash, created_at) VALUES($1, $2)`, sum[:], now)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("hub: store pairing code: %w", err)
	}
	return code, nil
}

func (h *Hub) handlePairingCode(w http.ResponseWriter, r *http.Request) {
	code, err := h.NewPairingCode(r.Context())
	if err != nil {
		h.log.Error("pairing code", "err", err)
		h.writeStoreError(w, err, "store the pairing code")
		return
	}
	writeJSON(w, http.StatusCreated, protocol.PairingCodeResponse{PairingCode: code})
}

// errPairingRejected is every refusal of a code; the worker's user is told no more than that, so
// an answer does not say whether a guessed code exists.
var (
	errPairingRejected = errors.New("wrong, used or expired pairing code")
	errPairingExpired  = fmt.Errorf("%w: expired", errPairingRejected)
)

// errClientGone: the registration's request ended before its write ran, so nothing was written.
var errClientGone = errors.New("the request ended before the registration was stored")

// spendCode marks the code used, in the transaction that creates the worker, if it exists, is
// unused and is no older than ttl at now.
func spendCode(tx *sql.Tx, codeHash [32]byte, now time.Time, ttl time.Duration) error {
	var created string
	err := tx.QueryRow(`SELECT created_at FROM pairing_codes WHERE code_hash=$1 AND used_at=''`, codeHash[:]).Scan(&created)
	if errors.Is(err, sql.ErrNoRows) {
		return errPairingRejected
	}
	if err != nil {
		return fmt.Errorf("read pairing code: %w", err)
	}
	// Compared as times, not as text: fmtTime trims a fraction's trailing zeros, so "…:00Z" sorts
	// after "…:00.5Z". A created_at that does not parse is too old to trust.
	if c := parseTime(created); c.IsZero() || now.Sub(c) > ttl {
		return errPairingExpired
	}
	res, err := tx.Exec(`UPDATE pairing_codes SET used_at=$1 WHERE code_hash=$2 AND used_at=''`, fmtTime(now), codeHash[:])
	if err != nil {
		return fmt.Errorf("spend pairing code: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errPairingRejected
	}
	return nil
}

// remoteIP keys the registration limit by the connection's address, never by a header a client
// writes (X-Forwarded-For): a hub behind a proxy sees the proxy, and raises the limits instead.
// An IPv6 client is keyed by its /64, since one host is commonly given a whole /64 and could
// otherwise take a fresh address for every attempt.
func remoteIP(r *http.Request) string {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	ip := ap.Addr().Unmap()
	if ip.Is6() {
		if p, err := ip.WithZone("").Prefix(64); err == nil {
			return p.String()
		}
	}
	return ip.String()
}

// throttleSentence says what happened to a worker's user, who reads it in the worker's window.
func throttleSentence(why limitReason) string {
	switch why {
	case limitTotal:
		return "the hub is taking too many registrations right now"
	case limitFull:
		return "too many addresses are registering at once"
	}
	return "too many registration attempts from this address"
}

// refuseThrottled answers 429 with Retry-After in whole seconds (at least 1, as the header has no
// fractions and 0 would invite an immediate retry).
func (h *Hub) refuseThrottled(w http.ResponseWriter, r *http.Request, addr string, wait time.Duration, why limitReason) {
	secs := max(1, int((wait+time.Second-1)/time.Second))
	h.met.registerThrottled.Add(1)
	if ok, suppressed := h.throttleLog.take(h.now()); ok {
		h.log.Warn("registration throttled", "limit", string(why), "addr", addr, "remote", r.RemoteAddr,
			"retry_after_s", secs, "suppressed", suppressed)
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeError(w, http.StatusTooManyRequests, fmt.Sprintf("%s; try again in %d s", throttleSentence(why), secs))
}

func (h *Hub) handleRegister(w http.ResponseWriter, r *http.Request) {
	// First of all: a throttled attempt reads no body and touches no row, so a flood costs a map
	// lookup per request.
	addr := h.clientAddr(r)
	if wait, why := h.regLimit.allow(addr, h.now()); why != "" {
		h.refuseThrottled(w, r, addr, wait, why)
		return
	}
	var req protocol.RegisterRequest
	if err := readJSON(w, r, 64<<10, &req); err != nil {
		writeError(w, http.StatusBadRequest, "bad registration: "+err.Error())
		return
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 200 {
		writeError(w, http.StatusBadRequest, "bad registration: name must have 1 to 200 characters")
		return
	}
	id, token := newID("w"), newSecret()
	tokenHash := hashToken(token)
	codeHash := hashToken(normalizeCode(req.PairingCode))
	now := h.now()
	open, ttl := h.cfg.OpenRegistration, h.cfg.PairingTTL
	ctx := r.Context()
	// The write may wait in the store's queue behind a busy batch, and store.do returning on ctx
	// would not take it out of the queue: it would still commit, spending the code for a token
	// nobody receives. So the handler waits for the outcome whatever ctx does (the hub's memory
	// then always matches the row), and the write itself checks, once it runs, that someone is
	// still there to answer.
	err := h.db.do(context.WithoutCancel(ctx), func(tx *sql.Tx) error {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%w: %w", errClientGone, err)
		}
		if !open {
			if err := spendCode(tx, codeHash, now, ttl); err != nil {
				return err
			}
		}
		_, err := tx.Exec(`INSERT INTO workers(id, name, token_hash, created_at) VALUES($1,$2,$3,$4)`, id, req.Name, tokenHash[:], fmtTime(now))
		return err
	})
	if errors.Is(err, errPairingRejected) {
		h.met.registerRefused.Add(1)
		// The limit still lets through a line per attempt from each of many addresses: the log
		// gets one line per refusalLogEvery, which counts the others.
		if ok, suppressed := h.codeLog.take(h.now()); ok {
			// The operator may learn what the worker is not told: that its code was real but old.
			reason := "wrong or used"
			if errors.Is(err, errPairingExpired) {
				reason = "expired"
			}
			h.log.Warn("registration refused: wrong, used or expired pairing code", "reason", reason,
				"name", req.Name, "remote", r.RemoteAddr, "suppressed", suppressed)
		}
		writeError(w, http.StatusForbidden, errPairingRejected.Error())
		return
	}
	if errors.Is(err, errClientGone) {
		h.log.Info("registration dropped: its client left before it was stored; the pairing code is still good",
			"name", req.Name, "remote", r.RemoteAddr)
		writeError(w, http.StatusServiceUnavailable, "the request ended before the registration was stored; nothing was spent")
		return
	}
	if err != nil {
		h.log.Error("register worker", "err", err)
		h.writeStoreError(w, err, "register the worker")
		return
	}
	// The client may have left during the commit itself: then the answer cannot reach it, and
	// the registration is taken back so that the code works again.
	if ctx.Err() != nil {
		uerr := h.undoRegistration(id, codeHash, open)
		if uerr == nil {
			h.log.Info("registration taken back: its client left while it was stored; the pairing code is still good",
				"name", req.Name, "remote", r.RemoteAddr)
			writeError(w, http.StatusServiceUnavailable, "the request ended before the registration was answered; nothing was spent")
			return
		}
		// The row stays: it is listed (and can be revoked) like any worker, whose token nobody holds.
		h.log.Error("registration whose client left could not be taken back", "worker_id", id, "err", uerr)
	}
	h.mu.Lock()
	h.workers[id] = &worker{id: id, name: req.Name, tokenHash: tokenHash, lastSeen: now, held: map[string]*job{}}
	h.mu.Unlock()
	h.log.Info("worker registered", "worker_id", id, "name", req.Name)
	writeJSON(w, http.StatusCreated, protocol.RegisterResponse{WorkerID: id, AuthToken: token})
}

// undoRegistration deletes a committed registration that nobody received, and makes its code
// unused again.
func (h *Hub) undoRegistration(id string, codeHash [32]byte, open bool) error {
	err := h.db.do(context.Background(), func(tx *sql.Tx) error {
		if _, err := tx.Exec(`DELETE FROM workers WHERE id=$1`, id); err != nil {
			return fmt.Errorf("delete worker: %w", err)
		}
		if !open {
			if _, err := tx.Exec(`UPDATE pairing_codes SET used_at='' WHERE code_hash=$1`, codeHash[:]); err != nil {
				return fmt.Errorf("reopen pairing code: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hub: take back registration %s: %w", id, err)
	}
	return nil
}
