package policy

import (
	"fmt"
	"time"

	"github.com/phigate/phigate/config"
)

// DefaultUnclaimed is how long an account nobody claimed is kept after its
// last message when the policy's [retention] does not say.
const DefaultUnclaimed = 90 * 24 * time.Hour

// maxRetain bounds a retention period: long enough for any records
// schedule, short enough that a typo ("600y") is caught.
const maxRetain = 100 * config.Year

// Retention is the policy's [retention] section (issue 14.4):
//
//	[retention]
//	messages = "180d"            # a stored message's lifetime when its rule has no retain
//	unclaimed_accounts = "90d"   # an unclaimed account, after its last message
//
// A rule's then.retain overrides messages for what it delivers. Without
// either, a message is disposed of when its read window (expiry_days)
// ends.
type Retention struct {
	Messages          string `toml:"messages"`
	UnclaimedAccounts string `toml:"unclaimed_accounts"`
}

// checkRetain validates a rule's retain against its own read window.
func checkRetain(t Then, bad func(string, ...any)) {
	if t.Retain == "" {
		return
	}
	d, err := config.ParseSpan(t.Retain)
	switch {
	case err != nil:
		bad("retain: %v", err)
	case t.Action == Reject || t.Action == Relay:
		bad("retain %s: a %s rule stores no message to keep", t.Retain, t.Action)
	case d < 24*time.Hour || d > maxRetain:
		bad("retain %s: use 1d to 100y", t.Retain)
	case t.ExpiryDays > 0 && d < time.Duration(t.ExpiryDays)*24*time.Hour:
		bad("retain %s is shorter than the read window (expiry_days = %d): the message would be disposed of before the recipient's time to read it ends",
			t.Retain, t.ExpiryDays)
	}
}

// check validates the [retention] section; line finds a key's line.
func (r Retention) check(line func(string) int) []error {
	var errs []error
	for _, f := range []struct{ key, v string }{{"messages", r.Messages}, {"unclaimed_accounts", r.UnclaimedAccounts}} {
		if f.v == "" {
			continue
		}
		d, err := config.ParseSpan(f.v)
		if err == nil && (d < 24*time.Hour || d > maxRetain) {
			err = fmt.Errorf("%s: use 1d to 100y", f.v)
		}
		if err != nil {
			errs = append(errs, &ValidationError{Line: line(f.key), Msg: "retention." + f.key + ": " + err.Error()})
		}
	}
	return errs
}

// retained sets dec's retention: its rule's retain, else the policy's
// [retention] messages ("" leaves the read window's end).
func (d *Document) retained(dec Decision) Decision {
	dec.Retain = dec.Then.Retain
	if dec.Retain == "" {
		dec.Retain = d.Retention.Messages
	}
	return dec
}

// RetainFor is how long the message a decision stores is kept from its
// acceptance; 0 means until its read window ends.
func (dec Decision) RetainFor() time.Duration {
	if dec.Retain == "" {
		return 0
	}
	d, _ := config.ParseSpan(dec.Retain) // validated when the policy was parsed
	return d
}

// UnclaimedFor is how long an account nobody claimed is kept after its
// last message.
func (d *Document) UnclaimedFor() time.Duration {
	if d == nil || d.Retention.UnclaimedAccounts == "" {
		return DefaultUnclaimed
	}
	v, _ := config.ParseSpan(d.Retention.UnclaimedAccounts)
	return v
}

// UnclaimedFor reads the active version's unclaimed-account lifetime.
func (e *Engine) UnclaimedFor() time.Duration {
	doc, _ := e.Current()
	return doc.UnclaimedFor()
}
