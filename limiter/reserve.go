package limiter

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// ErrInFlight is returned by Reserve when, until its ctx ended, the
// account had as many attempts in progress as it may still fail
// (MaxFailures minus its failures): admitting one more could let more than
// MaxFailures guesses be evaluated. Answer "try again shortly".
var ErrInFlight = errors.New("limiter: too many sign-in attempts in progress for this account; try again shortly")

// pendingTTL bounds how long a reservation that is never settled (its
// node died mid-hash) holds its place in Redis.
const pendingTTL = 2 * time.Minute

// Reserve takes one attempt's place before the attempt is evaluated, in
// one atomic step with the checks: it refuses a locked account
// (*LockedError) or a throttled address (*ThrottledError); it counts the
// attempt against the address at once; and it admits the attempt only
// while the account's failures plus its attempts in progress stay below
// MaxFailures. So no more than MaxFailures guesses per account (and
// IPMaxFailures per address and window) are ever evaluated, however many
// arrive at the same moment on however many nodes (issue 8.1).
//
// While the account is full of attempts in progress, Reserve waits for
// them to be settled (polling), until ctx ends (then ErrInFlight): once
// they have failed the account is locked and Reserve refuses; once one
// has succeeded the count is reset and Reserve admits.
//
// The caller ends the reservation with exactly one of Failed (a wrong
// guess), Succeeded (right: the account's failures are reset) or Release
// (not evaluated after all, or a right password with a second factor still
// to come: the attempt is given back).
func (l *Limiter) Reserve(ctx context.Context, account, ip string) (*Reservation, error) {
	if account == "" {
		return nil, ErrEmptyAccount
	}
	ip = ipKey(ip)
	// Poll with jittered exponential back-off (20 ms doubling to 500 ms),
	// so that many waiting attempts cost Redis a few calls each.
	for backoff := 20 * time.Millisecond; ; backoff = min(2*backoff, 500*time.Millisecond) {
		addr, err := l.b.reserve(ctx, account, ip)
		if err == nil {
			return &Reservation{l: l, account: account, ip: ip, addrAttempts: addr}, nil
		}
		if !errors.Is(err, errFull) {
			return nil, err
		}
		wait := time.NewTimer(backoff/2 + rand.N(backoff))
		select {
		case <-ctx.Done():
			wait.Stop()
			return nil, ErrInFlight
		case <-wait.C:
		}
	}
}

// errFull: a backend's "the account's attempts in progress fill its
// remaining failures" (Reserve waits on it).
var errFull = errors.New("limiter: attempts in progress")

// Reservation is one attempt admitted by Reserve. It is used by one
// goroutine and settled once.
type Reservation struct {
	l            *Limiter
	account, ip  string
	addrAttempts int
}

// AddressAttempts is how many attempts the address has counted in its
// window, this one included: its standing, which the hash queue serves
// lowest first.
func (r *Reservation) AddressAttempts() int { return r.addrAttempts }

// Failed settles the reservation as a wrong guess, counted against the
// account as Failure does (the address counted it at Reserve). lockedNow
// is true for the one failure that locked the account; until is the end
// of the account's lock whenever it is locked after this call.
func (r *Reservation) Failed(ctx context.Context) (lockedNow bool, until time.Time, err error) {
	return r.l.b.settle(ctx, r.account, r.ip, settleFailed)
}

// Succeeded settles the reservation as a right guess: the account's
// consecutive failures are reset (a lock in force stays) and the address
// gets the attempt back.
func (r *Reservation) Succeeded(ctx context.Context) error {
	_, _, err := r.l.b.settle(ctx, r.account, r.ip, settleSucceeded)
	return err
}

// Release settles the reservation without counting it: the account and
// the address get the attempt back.
func (r *Reservation) Release(ctx context.Context) error {
	_, _, err := r.l.b.settle(ctx, r.account, r.ip, settleReleased)
	return err
}

// How a reservation ends.
const (
	settleFailed    = "f"
	settleSucceeded = "s"
	settleReleased  = "r"
)
