// Package session keeps portal sign-ins. The server-side record holds the
// user's private key only wrapped under a random secret that lives in the
// browser's cookie (DESIGN.md "Keys"), so the record alone unlocks nothing,
// and deleting the record makes the key unreachable.
//
// Rules (DESIGN.md invariant 6, issue #3): a session ends after Idle without
// activity (10 minutes by default, at most 30) and Absolute after sign-in
// (12 hours) however active; a user has one live session, so a new sign-in
// ends the older one; an ended session's id is remembered for an hour with
// the reason, so its browser can be told why. Records live in Redis when
// configured (shared by every node) or in process; either way nothing in a
// record is PHI: ids, the role, times, the wrapped key (ciphertext), a
// MAC of the cookie secret and the record's seal.
//
// Whoever can write to the store (Redis) must not be able to turn a session
// of their own into someone else's: every record carries a seal, an HMAC
// under the key derived from the master key over every field that
// authorises anything (see sealInput). A record whose seal does not verify
// is "no session"; it is ended at once and reported to OnTamper, so each
// tampered record is reported once.
package session

import (
	"context"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"strings"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/events"
)

// Why a session ended.
const (
	ReasonIdle       = "idle"       // no activity for Idle
	ReasonAbsolute   = "absolute"   // Absolute lifetime reached
	ReasonReplaced   = "replaced"   // the user signed in elsewhere
	ReasonUser       = "user"       // signed out
	ReasonDisabled   = "disabled"   // the account was disabled
	ReasonEverywhere = "everywhere" // "sign out everywhere"
	ReasonPrivilege  = "privilege"  // replaced by a new id at a privilege change (Rotate)
	// ReasonTampered ends a record whose seal failed. Its id then reads as
	// ErrNoSession, never as this reason: nothing in a tampered record is
	// trusted, so its holder is simply not signed in.
	ReasonTampered = "tampered"
)

// Limits on the idle timeout and the default lifetimes.
const (
	DefaultIdle     = 10 * time.Minute
	MaxIdle         = 30 * time.Minute
	DefaultAbsolute = 12 * time.Hour
)

// TombstoneTTL is how long an ended session's id (with the reason) is
// remembered.
const TombstoneTTL = time.Hour

// ErrNoSession: no such session (never existed, forgotten, or a forged or
// mangled token).
var ErrNoSession = errors.New("session: not signed in")

// EndedError says why a session is gone; Get and Resume return it for an
// ended session's id for at least TombstoneTTL.
type EndedError struct{ Reason string }

func (e *EndedError) Error() string { return "session: ended (" + e.Reason + ")" }

// Reason returns why err's session ended, or "" if err is not an
// *EndedError.
func Reason(err error) string {
	var e *EndedError
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Record is one session as stored. It never holds the private key or the
// cookie secret in the clear.
type Record struct {
	ID         string
	UserID     string
	Role       string
	WrappedKey []byte // the private key wrapped under the cookie secret
	SecretHash []byte // lets Resume refuse a forged secret before unwrapping
	Created    time.Time
	LastSeen   time.Time
	MFA        bool // the second factor is done
	// Seal is the Manager's HMAC of every field above (sealInput); stores
	// keep it as given and never compute it.
	Seal []byte
}

// SealVersion names the rule the seal is computed under; it is the first
// thing the seal covers, and the Redis store keeps it in the record ("v"),
// so a record written under an older rule (none, before version 2: the
// MAC covered the cookie secret alone) is told apart from a tampered one.
// Such records are "no session", not upgraded: accepting one even once
// would accept exactly the forgery the seal exists to stop. Their holders
// sign in again once.
const SealVersion = 2

const sealLabel = "phigate-session-record-v2"

// sealInput is the unambiguous encoding (length-prefixed fields) of every
// field of r that authorises anything: the id, the user, the role, the
// second-factor mark, the sign-in and last-activity times (the absolute and
// idle limits are counted from them), the wrapped key and the secret's MAC.
func sealInput(r *Record) []byte {
	b := append([]byte(nil), sealLabel...)
	for _, f := range [][]byte{[]byte(r.ID), []byte(r.UserID), []byte(r.Role), r.WrappedKey, r.SecretHash} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(r.Created.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.LastSeen.UnixNano()))
	if r.MFA {
		return append(b, 1)
	}
	return append(b, 0)
}

// Store keeps records, in process (Memory) or in Redis (Redis).
type Store interface {
	// Put stores r and ends every other session of r.UserID with reason
	// "replaced", in one atomic step: two racing sign-ins leave exactly one
	// live session, and the loser's id is tombstoned "replaced". It returns
	// the ids it ended. idle (> 0) is how long r lives without a Touch.
	// A record whose second factor is still pending (MFA false) replaces
	// nothing; the full sign-in (Rotate with mfa) does.
	Put(ctx context.Context, r Record, idle time.Duration) (replaced []string, err error)
	// Get returns the live record, an *EndedError for a remembered ended
	// id, or ErrNoSession.
	Get(ctx context.Context, id string) (*Record, error)
	// Touch records activity at `at` with the record's new seal (it covers
	// the last-activity time) and slides the idle window; for a session
	// that is not live it returns what Get would.
	Touch(ctx context.Context, id string, at time.Time, seal []byte, idle time.Duration) error
	// End deletes the live session id and remembers it ended for reason.
	// If id is not live it changes nothing (an earlier reason is kept) and
	// returns what Get would: ErrNoSession or the *EndedError.
	End(ctx context.Context, id, reason string) error
	// EndUser ends every live session of userID for reason and returns
	// their ids.
	EndUser(ctx context.Context, userID, reason string) ([]string, error)
	// Count returns the number of live sessions.
	Count(ctx context.Context) (int, error)
}

// Manager opens, checks and ends sessions. Several Managers (one per node)
// may share one Store.
type Manager struct {
	Store    Store
	Idle     time.Duration // DefaultIdle if 0; at most MaxIdle
	Absolute time.Duration // 0: no absolute limit
	Now      func() time.Time
	// Bus, if set, hears a SessionEnded event for every session this
	// Manager ends (including ones replaced by a new sign-in), so open pages
	// on every node can be told at once. Publishing is best effort: the
	// tombstone tells the browser on its next request anyway.
	Bus events.Bus
	// MACKey keys the stored check value of a session's secret and the
	// record's seal. Derived from the master key, it keeps someone who can
	// write to the session store (Redis) from planting a session they hold
	// the secret of, or changing who a session is.
	MACKey []byte
	// OnEnd, if set, hears every session this Manager ends, with the
	// reason (for the log and the audit trail).
	OnEnd func(ctx context.Context, userID, sessionID, reason string)
	// OnTamper, if set, hears of every record whose seal failed, once
	// (the record is ended on the spot), with the user id the record
	// claims, which is not to be trusted (for the log and the audit trail).
	OnTamper func(ctx context.Context, sessionID, claimedUserID string)
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

// IdleTimeout is the idle limit in force (Idle, defaulted and capped).
func (m *Manager) IdleTimeout() time.Duration {
	switch {
	case m.Idle <= 0:
		return DefaultIdle
	case m.Idle > MaxIdle:
		return MaxIdle
	}
	return m.Idle
}

var b64 = base64.RawURLEncoding

func keyAAD(id string) []byte { return []byte("session-key:" + id) }

func (m *Manager) macKey() []byte {
	if len(m.MACKey) == 0 {
		return []byte("session") // tests; gateway always sets a derived key
	}
	return m.MACKey
}

func (m *Manager) secretHash(secret []byte) []byte { return pcrypto.MAC(m.macKey(), secret) }

func (m *Manager) seal(r *Record) []byte { return pcrypto.MAC(m.macKey(), sealInput(r)) }

func (m *Manager) sealed(r *Record) bool { return hmac.Equal(r.Seal, m.seal(r)) }

// tampered ends a record whose seal failed and reports it, once: only the
// node whose End removes the record reports (or any, if the store failed).
func (m *Manager) tampered(ctx context.Context, r *Record) {
	err := m.Store.End(ctx, r.ID, ReasonTampered)
	if err != nil && (errors.Is(err, ErrNoSession) || Reason(err) != "") {
		return // another request got there first
	}
	if m.OnTamper != nil {
		m.OnTamper(ctx, r.ID, r.UserID)
	}
}

// Announce tells OnEnd and the bus about sessions a store ended by itself
// (the in-process sweep).
func (m *Manager) Announce(ctx context.Context, userID, id, reason string) {
	m.publish(ctx, userID, reason, id)
}

func (m *Manager) publish(ctx context.Context, userID, reason string, ids ...string) {
	if m.OnEnd != nil {
		for _, id := range ids {
			m.OnEnd(ctx, userID, id, reason)
		}
	}
	if m.Bus == nil {
		return
	}
	// The session is over whether or not the event goes out; a caller's
	// cancelled request must not suppress it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	for _, id := range ids {
		_ = m.Bus.Publish(ctx, events.Event{Kind: events.SessionEnded, UserID: userID, SessionID: id, Reason: reason})
	}
}

// newRecord wraps priv under a fresh secret for a fresh id.
func (m *Manager) newRecord(userID, role string, priv []byte, mfa bool, created, now time.Time) (string, *Record, error) {
	id := b64.EncodeToString(pcrypto.RandomBytes(18))
	secret := pcrypto.RandomBytes(32)
	wrapped, err := pcrypto.Wrap(secret, priv, keyAAD(id))
	if err != nil {
		return "", nil, err
	}
	r := &Record{ID: id, UserID: userID, Role: role, WrappedKey: wrapped,
		SecretHash: m.secretHash(secret), Created: created, LastSeen: now, MFA: mfa}
	r.Seal = m.seal(r)
	return id + "." + b64.EncodeToString(secret), r, nil
}

// Start opens a session holding priv and ends the user's other sessions
// (reason "replaced", announced on the Bus). The returned token goes into
// the cookie; it is the only place the secret exists.
func (m *Manager) Start(ctx context.Context, userID, role string, priv []byte, mfa bool) (string, *Record, error) {
	if userID == "" {
		return "", nil, errors.New("session: empty user id")
	}
	now := m.now()
	token, r, err := m.newRecord(userID, role, priv, mfa, now, now)
	if err != nil {
		return "", nil, err
	}
	replaced, err := m.Store.Put(ctx, *r, m.IdleTimeout())
	if err != nil {
		return "", nil, err
	}
	m.publish(ctx, userID, ReasonReplaced, replaced...)
	return token, r, nil
}

func split(token string) (id string, secret []byte, ok bool) {
	id, s, ok := strings.Cut(token, ".")
	if !ok || id == "" {
		return "", nil, false
	}
	secret, err := b64.DecodeString(s)
	if err != nil || len(secret) != 32 {
		return "", nil, false
	}
	return id, secret, true
}

// load returns the live record for token if its seal verifies and its
// secret matches. The seal is checked first, whoever asks: a tampered
// record is ended even when the asker's secret is wrong.
func (m *Manager) load(ctx context.Context, token string) (*Record, []byte, error) {
	id, secret, ok := split(token)
	if !ok {
		return nil, nil, ErrNoSession
	}
	r, err := m.Store.Get(ctx, id)
	if Reason(err) == ReasonTampered {
		return nil, nil, ErrNoSession
	}
	if err != nil {
		return nil, nil, err
	}
	if !m.sealed(r) {
		m.tampered(ctx, r)
		return nil, nil, ErrNoSession
	}
	if subtle.ConstantTimeCompare(r.SecretHash, m.secretHash(secret)) != 1 {
		return nil, nil, ErrNoSession
	}
	return r, secret, nil
}

// check enforces the idle and absolute limits, ending the session if one
// is reached.
func (m *Manager) check(ctx context.Context, r *Record, now time.Time) error {
	reason := ""
	switch {
	case now.Sub(r.LastSeen) >= m.IdleTimeout():
		reason = ReasonIdle
	case m.Absolute > 0 && now.Sub(r.Created) >= m.Absolute:
		reason = ReasonAbsolute
	default:
		return nil
	}
	if err := m.Store.End(ctx, r.ID, reason); err != nil {
		return err // ended meanwhile (for another reason), or the store failed
	}
	m.publish(ctx, r.UserID, reason, r.ID)
	return &EndedError{Reason: reason}
}

// Resume checks the token, enforces the idle and absolute limits (ending
// the session with reason "idle" or "absolute"), slides the idle window,
// and returns the record with the unwrapped private key. Errors:
// ErrNoSession for an unknown or forged token, *EndedError for an ended
// session, or the store's error.
func (m *Manager) Resume(ctx context.Context, token string) (*Record, []byte, error) {
	return m.resume(ctx, token, true)
}

// Look is Resume without recording activity: for what a page fetches by
// itself (live updates, issue 10.1), which must not keep an unattended
// session signed in past its idle timeout.
func (m *Manager) Look(ctx context.Context, token string) (*Record, []byte, error) {
	return m.resume(ctx, token, false)
}

func (m *Manager) resume(ctx context.Context, token string, touch bool) (*Record, []byte, error) {
	r, secret, err := m.load(ctx, token)
	if err != nil {
		return nil, nil, err
	}
	now := m.now()
	if err := m.check(ctx, r, now); err != nil {
		return nil, nil, err
	}
	priv, err := pcrypto.Unwrap(secret, r.WrappedKey, keyAAD(r.ID))
	if err != nil {
		return nil, nil, ErrNoSession
	}
	if !touch {
		return r, priv, nil
	}
	touched := *r
	touched.LastSeen = now
	touched.Seal = m.seal(&touched)
	if err := m.Store.Touch(ctx, r.ID, now, touched.Seal, m.IdleTimeout()); err != nil {
		return nil, nil, err
	}
	return &touched, priv, nil
}

// Peek checks the token like Resume (secret, idle and absolute limits,
// ending the session if one is reached) but neither records activity nor
// unwraps the key: for watchers such as the websocket, which must not keep
// a session alive. The same errors as Resume.
func (m *Manager) Peek(ctx context.Context, token string) (*Record, error) {
	r, _, err := m.load(ctx, token)
	if err != nil {
		return nil, err
	}
	if err := m.check(ctx, r, m.now()); err != nil {
		return nil, err
	}
	return r, nil
}

// End ends the token's session for reason (usually "user": signed out) and
// announces it ("" means "user"). Ending an already ended, unknown or forged token is a
// harmless no-op: only the holder of the cookie secret can end a session
// this way.
func (m *Manager) End(ctx context.Context, token, reason string) error {
	if reason == "" {
		reason = ReasonUser
	}
	r, _, err := m.load(ctx, token)
	if err != nil {
		if errors.Is(err, ErrNoSession) || Reason(err) != "" {
			return nil
		}
		return err
	}
	if err := m.Store.End(ctx, r.ID, reason); err != nil {
		if errors.Is(err, ErrNoSession) || Reason(err) != "" {
			return nil
		}
		return err
	}
	m.publish(ctx, r.UserID, reason, r.ID)
	return nil
}

// EndUser ends every session of userID (account disabled, "sign out
// everywhere", password reset) and announces each.
func (m *Manager) EndUser(ctx context.Context, userID, reason string) error {
	if reason == "" {
		reason = ReasonEverywhere
	}
	ids, err := m.Store.EndUser(ctx, userID, reason)
	if err != nil {
		return err
	}
	m.publish(ctx, userID, reason, ids...)
	return nil
}

// Rotate gives the token's session a new id and secret, for the same user
// and private key, with the new role and second-factor state (sign-in
// steps, privilege changes), so a token captured before the change is
// worthless after it. The old id is ended with reason "privilege" (and
// announced: a page holding it should reconnect with its new cookie). The
// absolute lifetime still counts from the original sign-in. The same
// errors as Resume.
func (m *Manager) Rotate(ctx context.Context, token, role string, mfa bool) (string, *Record, error) {
	r, secret, err := m.load(ctx, token)
	if err != nil {
		return "", nil, err
	}
	now := m.now()
	if err := m.check(ctx, r, now); err != nil {
		return "", nil, err
	}
	priv, err := pcrypto.Unwrap(secret, r.WrappedKey, keyAAD(r.ID))
	if err != nil {
		return "", nil, ErrNoSession
	}
	newToken, nr, err := m.newRecord(r.UserID, role, priv, mfa, r.Created, now)
	if err != nil {
		return "", nil, err
	}
	// End first: if the old session was ended meanwhile (a newer sign-in
	// elsewhere), it must not come back to life under a new id.
	if err := m.Store.End(ctx, r.ID, ReasonPrivilege); err != nil {
		return "", nil, err
	}
	m.publish(ctx, r.UserID, ReasonPrivilege, r.ID)
	replaced, err := m.Store.Put(ctx, *nr, m.IdleTimeout())
	if err != nil {
		return "", nil, err
	}
	m.publish(ctx, r.UserID, ReasonReplaced, replaced...)
	return newToken, nr, nil
}
