package compliance

// Issue 14.4: disposal (164.310(d)(2)(i)) and keeping the audit trail as
// documentation six years (164.316(b)(2)(i)).

import (
	"context"
	"fmt"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/web"
)

// Backlog counts messages whose disposal deadline passed before due and
// that still hold their ciphertext (store.Store does).
type Backlog interface {
	RetentionBacklog(ctx context.Context, due time.Time) (int, time.Time, error)
}

// first returns the oldest entry of the trail.
func first(ctx context.Context, t Entries) (*audit.Entry, error) {
	es, err := t.Search(ctx, audit.Query{Limit: 1})
	if err != nil || len(es) == 0 {
		return nil, err
	}
	return &es[0], nil
}

// newest is the later of two entries (either may be nil).
func newest(a, b *audit.Entry) *audit.Entry {
	if a == nil || (b != nil && b.Seq > a.Seq) {
		return b
	}
	return a
}

func (b *builder) disposal() Safeguard {
	c := b.cfg
	r := c.Retention
	return Safeguard{Rule: "164.310(d)(2)(i)", Title: "Disposal",
		Does: "Each message gets a disposal deadline when it is accepted (its policy rule's retain, else the policy's [retention] messages, else the end of its read window); " +
			"every retention.purge_interval the gateway empties the ciphertext of messages past it and of recalled and denied ones, deletes accounts never claimed with their pending keys, " +
			"spent links and stale push subscriptions, in bounded batches, each run audited with its counts (retention.purge). Backups are not rewritten: a disposed message " +
			"survives in the backups taken before, up to backup.keep × backup.interval.",
		Setting: "retention.purge_interval, retention.purge_batch, retention.push_stale, backup.keep × backup.interval",
		Value: fmt.Sprintf("%s, %d, %s, %d × %s", r.PurgeInterval, r.PurgeBatch, config.FormatSpan(r.PushStale.Duration),
			c.Backup.Keep, c.Backup.Interval),
		Checks: []Check{b.overdue(), b.lastPurge(), b.backupTail()}}
}

// overdue fails when messages are past their deadline by more than two
// purge intervals: the purge is not running, or cannot keep up.
func (b *builder) overdue() Check {
	const name = "nothing held past its disposal deadline"
	if b.src.Retention == nil {
		return info(name, "not checked (no store given)")
	}
	iv := b.cfg.Retention.PurgeInterval.Duration
	if iv <= 0 {
		iv = time.Hour
	}
	n, oldest, err := b.src.Retention.RetentionBacklog(b.ctx, b.src.Now.Add(-2*iv))
	if err != nil {
		return check(name, false, "the store could not be read: "+err.Error())
	}
	if n == 0 {
		return check(name, true, "no message is more than "+(2*iv).String()+" past its deadline")
	}
	return check(name, false, fmt.Sprintf("%s past their deadline, the oldest since %s: is serve running its purge?",
		web.Count(n, "message"), oldest.UTC().Format(time.RFC3339)))
}

func (b *builder) lastPurge() Check {
	const name = "last purge that disposed of something"
	e := b.ev.purge
	if e == nil {
		return info(name, "none recorded yet")
	}
	at := e.Time.UTC()
	d := e.Details
	c := info(name, fmt.Sprintf("%s ago: messages %s expired, %s recalled, %s denied; %s unclaimed accounts (%s pending keys); %s links; %s push subscriptions",
		b.src.Now.Sub(at).Round(time.Minute), orZero(d["messages_expired"]), orZero(d["messages_recalled"]), orZero(d["messages_denied"]),
		orZero(d["accounts_unclaimed"]), orZero(d["pending_keys"]), orZero(d["links"]), orZero(d["push_subscriptions"])))
	c.At = &at
	return c
}

// backupTail states how long a disposed message can live on in backups.
func (b *builder) backupTail() Check {
	bk := b.cfg.Backup
	if bk.Interval.Duration <= 0 {
		return info("disposed messages survive in backups", "periodic backups are off: as long as on-demand backups are kept")
	}
	return info("disposed messages survive in backups", fmt.Sprintf("up to %s (backup.keep %d × backup.interval %s)",
		config.FormatSpan(time.Duration(bk.Keep)*bk.Interval.Duration), bk.Keep, bk.Interval))
}

func (b *builder) documentation() Safeguard {
	a := b.cfg.Retention.Audit.Duration
	cs := []Check{check("audit retention at least six years", a >= config.MinAuditRetention,
		"retention.audit "+config.FormatSpan(a)+"; phigate never deletes audit entries (the tables refuse updates and deletes)")}
	if e := b.ev.first; e != nil {
		at := e.Time.UTC()
		c := info("audit trail kept from its first entry", fmt.Sprintf("entry %d, %s; the daily verification checks the chain from there", e.Seq, at.Format(time.DateOnly)))
		c.At = &at
		cs = append(cs, c)
	}
	return Safeguard{Rule: "164.316(b)(2)(i)", Title: "Documentation: time limit (audit trail kept six years)",
		Does:    "The audit trail is append-only and never pruned: no phigate command deletes entries, and the database refuses updates and deletes on it.",
		Setting: "retention.audit", Value: config.FormatSpan(a), Checks: cs}
}

func orZero(s string) string {
	if s == "" {
		return "0"
	}
	return s
}
