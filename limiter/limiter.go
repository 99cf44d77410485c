// Package limiter locks accounts out after repeated failed sign-ins and
// throttles addresses that fail too often, so that neither one account's
// password nor many accounts from one address can be guessed at speed
// (issue #3). Counters live in Redis when configured, so every node sees
// the same counts, and in process otherwise; both behave the same.
//
// Rules:
//
//   - Account lock-out: MaxFailures consecutive failed sign-ins (Success
//     resets the count) lock the account for Lockout. The count is forgotten
//     after Lockout without a further failure, so a sign-in typo now and then
//     never adds up to a lock. Attempts while locked are refused by Check
//     and, if still reported with Failure, are not counted and do not extend
//     the lock: an attacker cannot keep a victim locked out for longer than
//     Lockout after the lock began by guessing on. After the lock ends the
//     account gets MaxFailures new tries. Admins can Unlock at once.
//   - Address throttling: an address (IP) may fail IPMaxFailures times
//     within a fixed window of IPWindow that starts at its first failure;
//     once it has, Check refuses it with a ThrottledError until the window
//     ends. (A fixed window lets an address spend at most twice its budget
//     across a window boundary; that is accepted for its simplicity and its
//     constant memory per address.) IPv6 addresses count per /64, since one
//     client usually holds a whole /64.
//
// Callers that evaluate an expensive guess (a password hash) use Reserve,
// which checks and counts in one atomic step before the guess is
// evaluated, so concurrent guesses cannot all pass the check (issue 8.1);
// Check and Failure remain for cheap checks.
//
// An account is an opaque id (the caller's keyed hash of the sign-in name),
// never an address or a name, so nothing here is PHI (DESIGN.md invariant 1).
package limiter

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Config sets the limits; zero (or negative) fields take the defaults.
type Config struct {
	MaxFailures   int           // consecutive failures that lock an account (5)
	Lockout       time.Duration // how long the lock lasts (15m)
	IPMaxFailures int           // failures one address may have per window (20)
	IPWindow      time.Duration // the address window (15m)
}

// DefaultConfig returns the defaults: 5 failures lock for 15
// minutes; 20 failures per address per 15 minutes.
func DefaultConfig() Config {
	return Config{MaxFailures: 5, Lockout: 15 * time.Minute, IPMaxFailures: 20, IPWindow: 15 * time.Minute}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxFailures <= 0 {
		c.MaxFailures = d.MaxFailures
	}
	if c.Lockout <= 0 {
		c.Lockout = d.Lockout
	}
	if c.IPMaxFailures <= 0 {
		c.IPMaxFailures = d.IPMaxFailures
	}
	if c.IPWindow <= 0 {
		c.IPWindow = d.IPWindow
	}
	// Redis counts in milliseconds, and a TTL must never be 0.
	c.Lockout = max(c.Lockout, time.Millisecond)
	c.IPWindow = max(c.IPWindow, time.Millisecond)
	return c
}

// LockedError: the account is locked out until Until.
type LockedError struct{ Until time.Time }

func (e *LockedError) Error() string {
	return "account locked until " + e.Until.UTC().Format(time.RFC3339)
}

// ThrottledError: the address has failed too often; try again after
// RetryAfter.
type ThrottledError struct{ RetryAfter time.Duration }

func (e *ThrottledError) Error() string {
	return fmt.Sprintf("too many failed sign-ins from this address; retry in %s", e.RetryAfter.Round(time.Second))
}

// ErrEmptyAccount is returned for an empty account id (a caller bug that
// would otherwise lump every anonymous attempt into one account).
var ErrEmptyAccount = errors.New("limiter: empty account id")

type backend interface {
	check(ctx context.Context, account, ip string) error
	failure(ctx context.Context, account, ip string) (bool, time.Time, error)
	success(ctx context.Context, account string) error
	unlock(ctx context.Context, account string) error
	status(ctx context.Context, account string) (int, time.Time, error)
	// reserve is Reserve's one atomic step: it refuses (*LockedError,
	// *ThrottledError, errFull) or admits the attempt, counting it as
	// pending for the account and as a failure for the address, and
	// returns the address's count.
	reserve(ctx context.Context, account, ip string) (int, error)
	// settle ends a reservation (settleFailed, settleSucceeded or
	// settleReleased); for a failure it reports as Failure does.
	settle(ctx context.Context, account, ip, outcome string) (bool, time.Time, error)
}

// Limiter counts failed sign-ins per account and per address. It is safe
// for concurrent use; with Redis, across nodes.
type Limiter struct {
	cfg Config
	b   backend
}

// Config returns the limits in force (defaults filled in).
func (l *Limiter) Config() Config { return l.cfg }

// Check refuses an attempt before the password is even looked at: a
// *LockedError if the account is locked (checked first), a *ThrottledError
// if the address has used up its failures for the window, nil otherwise.
// An empty ip skips the address check.
func (l *Limiter) Check(ctx context.Context, account, ip string) error {
	if account == "" {
		return ErrEmptyAccount
	}
	return l.b.check(ctx, account, ipKey(ip))
}

// Failure counts a failed sign-in against the account and the address.
// lockedNow is true exactly once per lock: for the failure that reached
// MaxFailures. until is the end of the account's lock whenever the account
// is locked after this call (just now or before), zero otherwise. A failure
// while locked is not counted against the account and does not extend the
// lock; it still counts against the address.
func (l *Limiter) Failure(ctx context.Context, account, ip string) (lockedNow bool, until time.Time, err error) {
	if account == "" {
		return false, time.Time{}, ErrEmptyAccount
	}
	return l.b.failure(ctx, account, ipKey(ip))
}

// Success resets the account's consecutive failures (a lock in force stays).
func (l *Limiter) Success(ctx context.Context, account string) error {
	if account == "" {
		return ErrEmptyAccount
	}
	return l.b.success(ctx, account)
}

// Unlock is the admin's unlock: it clears the lock and the failure count.
func (l *Limiter) Unlock(ctx context.Context, account string) error {
	if account == "" {
		return ErrEmptyAccount
	}
	return l.b.unlock(ctx, account)
}

// Status reports the account's consecutive failures and, if it is locked,
// when the lock ends (zero if not locked). While locked, failures is the
// count that caused the lock.
func (l *Limiter) Status(ctx context.Context, account string) (failures int, lockedUntil time.Time, err error) {
	if account == "" {
		return 0, time.Time{}, ErrEmptyAccount
	}
	return l.b.status(ctx, account)
}

// ipKey is what an address is counted under: an IPv4 address as itself, an
// IPv6 address by its /64, anything else (for example a caller's hash) as
// given. "" means no address.
func ipKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}
