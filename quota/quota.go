// Package quota holds the per-account sending limits that need counting
// across nodes (issue 8.5): messages per hour and concurrent SMTP
// transactions. Counters live in Redis when configured, so every node sees
// the same counts, and in process otherwise; both behave the same.
//
// A transaction takes a Ticket at MAIL (Begin): the ticket holds one of the
// account's concurrent-transaction slots and reserves one message of the
// hour's budget, both checked and taken in one atomic step, so transactions
// that arrive together can never pass the limits together. End gives the
// slot back, and the reservation too unless the message was accepted.
//
// Limits that are durable facts (bytes stored per account) are computed
// from the store, not counted here (store/quota.go).
//
// An account is an opaque user id, never an address, so nothing here is PHI
// (DESIGN.md invariant 1).
package quota

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Window is the span the message rate is counted over (a sliding hour).
const Window = time.Hour

// Config sets the limits; zero or negative means "no limit" for a count.
type Config struct {
	MessagesPerHour int // accepted messages per account in any hour
	Concurrent      int // SMTP transactions (MAIL to end of DATA) in flight per account
	// Lease is how long a slot stays taken if its node dies before End
	// (so a crash cannot lock an account out for good). Default 30m. A
	// live ticket renews its lease every third of it, so a transaction
	// holds its slot however long it stays open.
	Lease time.Duration
}

func (c Config) withDefaults() Config {
	if c.Lease <= 0 {
		c.Lease = 30 * time.Minute
	}
	return c
}

// RateError refuses a transaction: the account sent its hour's budget.
type RateError struct {
	Limit      int
	RetryAfter time.Duration // until the oldest message counted leaves the window
}

func (e *RateError) Error() string {
	return fmt.Sprintf("hourly limit of %d messages reached; retry in %s", e.Limit, e.RetryAfter.Round(time.Second))
}

// BusyError refuses a transaction: the account has Limit in flight.
type BusyError struct{ Limit int }

func (e *BusyError) Error() string {
	return fmt.Sprintf("%d transactions already in progress for this account", e.Limit)
}

// ErrEmptyAccount is a caller bug (it would lump accounts together).
var ErrEmptyAccount = errors.New("quota: empty account id")

type backend interface {
	// begin checks and takes a slot and a rate reservation for id at now.
	begin(ctx context.Context, account, id string, now time.Time) error
	// end frees the slot, and the reservation unless sent.
	end(ctx context.Context, account, id string, sent bool) error
	// renew moves the slot's lease end to now + Lease (if it still has it).
	renew(ctx context.Context, account, id string, now time.Time) error
}

// Limits counts transactions per account. Safe for concurrent use; with
// Redis, across nodes.
type Limits struct {
	cfg Config
	b   backend
	// local counts in this process while the shared backend cannot be
	// reached (nil for NewMemory).
	local backend
	now   func() time.Time
	// renewEvery is how often a ticket renews its lease (Lease/3; tests
	// shorten it).
	renewEvery time.Duration
}

// Config returns the limits in force.
func (l *Limits) Config() Config { return l.cfg }

// Ticket is one transaction's hold on its account's limits.
type Ticket struct {
	b       backend // the one that counted it
	account string
	id      string
	once    sync.Once
	stop    chan struct{} // ends the lease renewal
}

// Begin starts a transaction for account: a *BusyError or *RateError when
// a limit is reached, otherwise a Ticket that the caller must End.
func (l *Limits) Begin(ctx context.Context, account string) (*Ticket, error) {
	if account == "" {
		return nil, ErrEmptyAccount
	}
	t := &Ticket{b: l.b, account: account, id: newID()}
	now := l.now()
	err := l.b.begin(ctx, account, t.id, now)
	var re *RateError
	var be *BusyError
	if err != nil && l.local != nil && !errors.As(err, &re) && !errors.As(err, &be) {
		// Redis did not answer: count on this node rather than stop all
		// mail or lift the limits (each node then allows the limits).
		t.b, err = l.local, l.local.begin(ctx, account, t.id, now)
	}
	if err != nil {
		return nil, err
	}
	t.stop = make(chan struct{})
	go t.renew(l)
	return t, nil
}

// renew keeps the slot's lease from running out while the transaction is
// open; a failed renewal is retried at the next tick (a Redis outage
// shorter than the lease loses nothing).
func (t *Ticket) renew(l *Limits) {
	every := l.renewEvery
	if every <= 0 {
		every = max(l.cfg.Lease/3, time.Millisecond)
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-tick.C:
			_ = t.b.renew(context.Background(), t.account, t.id, l.now())
		}
	}
}

// End closes the transaction: sent says whether its message was accepted
// (and so counts against the hour). Only the first call has an effect, so
// the SMTP session may call it from DATA, RSET and disconnect alike. A nil
// ticket is a no-op.
func (t *Ticket) End(ctx context.Context, sent bool) error {
	if t == nil {
		return nil
	}
	var err error
	t.once.Do(func() {
		close(t.stop)
		err = t.b.end(context.WithoutCancel(ctx), t.account, t.id, sent)
	})
	return err
}

func newID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
