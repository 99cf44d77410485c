package intake

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/quota"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// Limits are the per-account sending limits that are checked against the
// message and the store (issue 8.5); the counted ones (messages per hour,
// concurrent transactions) are in Intake.Quota. Zero means no limit.
type Limits struct {
	// MaxTransactionBytes bounds message size x recipients: what one
	// transaction makes the gateway seal, store or queue.
	MaxTransactionBytes int64
	// MaxStoredBytes bounds the bytes of an account's sent copies that the
	// store holds (StoredBytes).
	MaxStoredBytes int64
	// CommitBatchBytes bounds the sealed portal copies held in memory and
	// committed in one step of a transaction (0: 32 MiB).
	CommitBatchBytes int64
	// AllowFrom maps an account's address to the other header From
	// addresses it may use (issue 8.6); see NewAllowFrom.
	AllowFrom AllowFrom
}

// StoredBytes reports what an account's sent messages occupy in the store
// (store.SQL implements it).
type StoredBytes interface {
	StoredBytes(ctx context.Context, senderID string) (int64, error)
}

// AllowFrom is the admin's allow list of header From addresses per
// account, keyed and valued by normalised address.
type AllowFrom map[string]map[string]bool

// NewAllowFrom normalises an allow list from configuration (account
// address -> addresses it may put in From).
func NewAllowFrom(m map[string][]string) AllowFrom {
	a := AllowFrom{}
	for acct, addrs := range m {
		k := keys.NormalizeAddr(acct)
		if a[k] == nil {
			a[k] = map[string]bool{}
		}
		for _, addr := range addrs {
			a[k][keys.NormalizeAddr(addr)] = true
		}
	}
	return a
}

// Refusals of the sending limits. Temporary (4xx) where waiting helps: the
// hour's budget and transactions in flight; permanent (5xx) where the
// message as sent can never fit: its size, the stored quota, a header From
// that is not the sender's (RFC 3463 codes).
func errRate(e *quota.RateError) *Rejected {
	return &Rejected{Code: 451, Enhanced: [3]int{4, 7, 0}, Rule: "limit:messages_per_hour", Reason: fmt.Sprintf(
		"Hourly sending limit of %s reached for this account; try again in %s", web.Count(e.Limit, "message"),
		web.Count(int((e.RetryAfter+time.Minute-1)/time.Minute), "minute"))}
}

func errBusy(e *quota.BusyError) *Rejected {
	return &Rejected{Code: 451, Enhanced: [3]int{4, 7, 0}, Rule: "limit:concurrent_transactions", Reason: fmt.Sprintf(
		"This account already has %s in progress; try again when one has finished", web.Count(e.Limit, "message"))}
}

// RFC 5321 4.5.3.1.10: 452 at RCPT asks the client to send the rest of the
// recipients in another transaction.
func (in *Intake) errRcptSize() *Rejected {
	return &Rejected{Code: 452, Enhanced: [3]int{4, 5, 3}, Rule: "limit:transaction_bytes", Reason: fmt.Sprintf(
		"Too many recipients for a message of this size (size x recipients may be at most %d bytes); send the rest in another message",
		in.Limits.MaxTransactionBytes)}
}

func (in *Intake) errSize() *Rejected {
	return &Rejected{Code: 552, Enhanced: [3]int{5, 3, 4}, Rule: "limit:transaction_bytes", Reason: fmt.Sprintf(
		"Message too big for this many recipients (size x recipients may be at most %d bytes); send it to fewer recipients at a time",
		in.Limits.MaxTransactionBytes)}
}

func (in *Intake) errStored() *Rejected {
	return &Rejected{Code: 552, Enhanced: [3]int{5, 2, 2}, Rule: "limit:stored_bytes", Reason: fmt.Sprintf(
		"This account's secure-message storage quota (%d bytes) is full; recall messages or wait for old ones to expire",
		in.Limits.MaxStoredBytes)}
}

var (
	errFromNotOwned = &Rejected{Code: 550, Enhanced: [3]int{5, 7, 1}, Rule: "sender:header_from", Reason: "The From header must be your own address " +
		"(or one your administrator allows you): the address you authenticated as"}
	errFromUnreadable = &Rejected{Code: 550, Enhanced: [3]int{5, 7, 1}, Rule: "sender:header_from", Reason: "The From header could not be read; " +
		"a message needs exactly one From header with valid addresses (RFC 5322 3.6.2)"}
)

// Begin starts an SMTP transaction for sender at MAIL: it takes a slot of
// the account's concurrent transactions and a message of its hour's budget
// (a *Rejected when either is used up), and refuses early what can already
// be seen not to fit: a declared SIZE (RFC 1870) over the transaction
// bytes, or a stored quota already full. The caller ends the ticket at the
// end of the transaction (DATA, RSET or disconnect).
func (in *Intake) Begin(ctx context.Context, sender *store.User, declaredSize int64) (*quota.Ticket, error) {
	if lim := in.Limits.MaxTransactionBytes; lim > 0 && declaredSize > lim {
		return nil, in.errSize()
	}
	if err := in.checkStored(ctx, sender, 0); err != nil {
		return nil, err
	}
	if in.Quota == nil {
		return nil, nil
	}
	t, err := in.Quota.Begin(ctx, sender.ID)
	var re *quota.RateError
	var be *quota.BusyError
	switch {
	case errors.As(err, &re):
		return nil, errRate(re)
	case errors.As(err, &be):
		return nil, errBusy(be)
	}
	return t, err
}

// CheckRecipients refuses, at RCPT, the recipient that would take a
// message of the declared SIZE over the transaction bytes.
func (in *Intake) CheckRecipients(declaredSize int64, recipients int) error {
	if lim := in.Limits.MaxTransactionBytes; lim > 0 && declaredSize*int64(recipients) > lim {
		return in.errRcptSize()
	}
	return nil
}

// checkMessage is what Accept checks of the message before any policy
// decision: its header From, and its size x recipients.
func (in *Intake) checkMessage(env Envelope, raw []byte) error {
	if lim := in.Limits.MaxTransactionBytes; lim > 0 && int64(len(raw))*int64(len(env.To)) > lim {
		return in.errSize()
	}
	return in.checkHeaderFrom(env, raw)
}

// checkStored refuses when the account's stored copies plus adding more
// bytes would pass its quota.
func (in *Intake) checkStored(ctx context.Context, sender *store.User, adding int64) error {
	lim := in.Limits.MaxStoredBytes
	if lim <= 0 || in.Stored == nil {
		return nil
	}
	n, err := in.tally.get(ctx, in.Stored, sender.ID, in.now())
	if err != nil {
		return fmt.Errorf("stored bytes: %w", err)
	}
	if n+adding > lim || (adding == 0 && n >= lim) {
		return in.errStored()
	}
	return nil
}

// checkHeaderFrom requires every author in the header From, and the Sender
// if there is one (RFC 5322 3.6.2), to be the authenticated account's
// address (the envelope sender, which MAIL checked) or an address the
// admin allows it. A message with no From got one from the envelope
// (smtpd); one with several From fields is refused, since readers differ
// in which one they show.
func (in *Intake) checkHeaderFrom(env Envelope, raw []byte) error {
	th, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return errFromUnreadable
	}
	if n := len(th.Values("From")); n != 1 {
		return errFromUnreadable
	}
	h := mail.Header{Header: gomessage.Header{Header: th}}
	own := keys.NormalizeAddr(env.From)
	for _, field := range []string{"From", "Sender"} {
		list, err := h.AddressList(field)
		if err != nil || (field == "From" && len(list) == 0) {
			return errFromUnreadable
		}
		for _, a := range list {
			addr := keys.NormalizeAddr(a.Address)
			if addr != own && !in.Limits.AllowFrom[own][addr] {
				return errFromNotOwned
			}
		}
	}
	return nil
}

// batchOf returns how many portal copies of a size-byte message one commit
// takes: as many as fit in CommitBatchBytes of sealed data, at least one.
func (in *Intake) batchOf(size int) int {
	limit := in.Limits.CommitBatchBytes
	if limit <= 0 {
		limit = 32 << 20
	}
	// A sealed copy is the message, its sealed summary and the key packets
	// and signature: the message's size plus a few KiB.
	return max(1, int(limit/(int64(size)+sealOverhead)))
}

// sealOverhead is a generous bound on what sealing adds to a copy
// (signature, key packets for recipient and escrow, summary).
const sealOverhead = 8 << 10
