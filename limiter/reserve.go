package limiter

import (
	"context"
	"time"
)

// Reserve is Check and Failure in one atomic step, taken before the
// attempt is evaluated: it refuses a locked account (*LockedError) or a
// throttled address (*ThrottledError), and otherwise counts the attempt as
// a failure at once. Because the count comes first, no more than
// MaxFailures guesses per account (and IPMaxFailures per address and
// window) are ever evaluated, however many arrive at the same time on
// however many nodes (issue 8.1); the reservation that reaches MaxFailures
// locks the account for everyone still queued behind it.
//
// The caller then ends the reservation with exactly one of Failed (a wrong
// guess: already counted), Succeeded (right: the account's count is reset)
// or Release (the attempt does not count, for example a right password
// with a second factor still to come, or an internal fault).
func (l *Limiter) Reserve(ctx context.Context, account, ip string) (*Reservation, error) {
	if account == "" {
		return nil, ErrEmptyAccount
	}
	ip = ipKey(ip)
	got, err := l.b.reserve(ctx, account, ip)
	if err != nil {
		return nil, err
	}
	return &Reservation{l: l, account: account, ip: ip, got: got}, nil
}

// reserved is what a backend's reserve reports.
type reserved struct {
	lockedNow    bool      // this attempt reached MaxFailures
	until        time.Time // the lock this attempt set, if lockedNow
	addrAttempts int       // the address's count in its window, this attempt included (0 without an address)
}

// Reservation is one attempt counted by Reserve. It is used by one
// goroutine.
type Reservation struct {
	l           *Limiter
	account, ip string
	got         reserved
}

// AddressAttempts is how many attempts the address has counted in its
// window, this one included: its standing, which the hash queue serves
// lowest first.
func (r *Reservation) AddressAttempts() int { return r.got.addrAttempts }

// Failed ends the reservation as a wrong guess, which Reserve has counted
// already. lockedNow is true for the one attempt that locked the account;
// until is then the end of the lock.
func (r *Reservation) Failed() (lockedNow bool, until time.Time) {
	return r.got.lockedNow, r.got.until
}

// Succeeded ends the reservation as a right guess: the attempt is given
// back to the address, a lock this very attempt set is lifted, and the
// account's consecutive failures are reset (as Success). A lock set by
// another attempt stays.
func (r *Reservation) Succeeded(ctx context.Context) error {
	return r.l.b.release(ctx, r.account, r.ip, r.lockUntil(), true)
}

// Release ends the reservation without counting it at all: the account
// and the address get the attempt back, and a lock this attempt set is
// lifted; failures counted by other attempts stay.
func (r *Reservation) Release(ctx context.Context) error {
	return r.l.b.release(ctx, r.account, r.ip, r.lockUntil(), false)
}

func (r *Reservation) lockUntil() time.Time {
	if !r.got.lockedNow {
		return time.Time{}
	}
	return r.got.until
}
