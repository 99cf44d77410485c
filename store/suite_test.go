package store

// The backend-independent store test suite. Everything here talks to the
// Store interface only (plus, where a raw look is unavoidable, the optional
// DB() *sql.DB accessor with portable $N SQL), so a PostgreSQL backend can
// run the very same suite:
//
//	func TestPostgres(t *testing.T) { runSuite(t, openFreshPostgres) }

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// t0 has nanoseconds and a non-UTC zone: round trips must keep the instant
// to the nanosecond (compared with Equal, so the zone may change).
var t0 = time.Date(2031, 5, 17, 14, 3, 27, 123456789, time.FixedZone("CEST", 2*3600))

// farFuture is used to see every outbox item that is not sent.
var farFuture = t0.Add(100 * 365 * 24 * time.Hour)

func runSuite(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Store)
	}{
		{"Users", testUsers},
		{"AppPasswords", testAppPasswords},
		{"Deliver", testDeliver},
		{"DeliverAtomicity", testDeliverAtomicity},
		{"ListGetMarkRead", testListGetMarkRead},
		{"ClaimTokenByHash", testClaimTokenByHash},
		{"Claim", testClaim},
		{"Outbox", testOutbox},
		{"ConcurrentDeliver", testConcurrentDeliver},
		{"ClaimDeliverRace", testClaimDeliverRace},
		{"AuditedDeliver", testAuditedDeliver},
		{"AuditedChanges", testAuditedChanges},
		{"AuditConflictRetry", testAuditConflictRetry},
		{"UserVersion", testUserVersion},
		{"PushSubscriptions", testPushSubscriptions},
		{"NotifyPrefs", testNotifyPrefs},
		{"NoticeBatching", testNoticeBatching},
		{"ConcurrentBatching", testConcurrentBatching},
		{"Retention", testRetention},
		{"RetentionBatch", testRetentionBatch},
		{"KeyRotation", testKeyRotation},
		{"MessageCopies", testMessageCopies},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
}

// ---------------------------------------------------------------- fixtures

var seq atomic.Int64

func uid(prefix string) string { return fmt.Sprintf("%s-%05d", prefix, seq.Add(1)) }

func hash(parts ...string) []byte {
	h := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	return h[:]
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newUser builds (without storing) a user with every field set. Pending
// users carry a master-wrapped key and no password material.
func newUser(t testing.TB, id, role, status string) *User {
	u := &User{
		ID:                id,
		EmailIndex:        hash("email-index", id),
		EmailEnc:          append([]byte("sealed:"), randBytes(t, 40)...),
		Role:              role,
		Status:            status,
		KeyFpr:            "fpr-" + id,
		PublicKey:         []byte("public-key-" + id),
		PrivateKeyWrapped: []byte("wrapped-private-key-" + id),
		KeyWrap:           KeyWrapMaster,
		CreatedAt:         t0,
		UpdatedAt:         t0.Add(1500 * time.Millisecond).Add(7),
	}
	if status != StatusPending {
		u.KeyWrap = KeyWrapPassword
		u.PwParams = "argon2id$v=19$m=65536,t=3,p=4"
		u.PwSalt = randBytes(t, 16)
		u.PwVerifier = randBytes(t, 32)
	}
	return u
}

func mkUser(t testing.TB, s Store, role, status string) *User {
	t.Helper()
	u := newUser(t, uid("user"), role, status)
	if err := s.CreateUser(context.Background(), u); err != nil {
		t.Fatalf("CreateUser(%s): %v", u.ID, err)
	}
	return u
}

func newMsg(id string, rcpt, sender *User, created time.Time) Message {
	return Message{
		ID:          id,
		RecipientID: rcpt.ID,
		SenderID:    sender.ID,
		KeyFpr:      rcpt.KeyFpr,
		CreatedAt:   created,
		ExpiresAt:   created.Add(30 * 24 * time.Hour),
		Size:        int64(1000 + len(id)),
		Policy:      "portal",
		KeyPackets:  []byte("key-packets|" + id),
		Body:        []byte("encrypted-body|" + id),
		SummaryKeys: []byte("summary-keys|" + id),
		Summary:     []byte("encrypted-summary|" + id),
	}
}

func mkMsg(rcpt, sender *User, created time.Time) Message {
	return newMsg(uid("msg"), rcpt, sender, created)
}

func mkToken(u *User, created time.Time, ttl time.Duration) ClaimToken {
	return ClaimToken{Hash: hash("claim-token", uid("tok")), UserID: u.ID, CreatedAt: created, ExpiresAt: created.Add(ttl)}
}

func mkOutbox(userID, msgID string, next time.Time) OutboxItem {
	id := uid("ob")
	return OutboxItem{
		ID:            id,
		Kind:          "portal-notice",
		UserID:        userID,
		MessageID:     msgID,
		Payload:       []byte("sealed-payload|" + id),
		CreatedAt:     t0.Add(-time.Minute),
		NextAttemptAt: next,
	}
}

func deliver(t testing.TB, s Store, d Delivery) {
	t.Helper()
	if err := s.Deliver(context.Background(), d); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
}

// ---------------------------------------------------------------- comparisons

func ts(t time.Time) string { return t.Format(time.RFC3339Nano) }

func eqTime(t testing.TB, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) {
		t.Errorf("%s = %s, want %s", what, ts(got), ts(want))
	}
}

func eqTimePtr(t testing.TB, what string, got, want *time.Time) {
	t.Helper()
	switch {
	case got == nil && want == nil:
	case got == nil || want == nil:
		t.Errorf("%s = %v, want %v", what, got, want)
	default:
		eqTime(t, what, *got, *want)
	}
}

func eqBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func eqUser(t testing.TB, got, want *User) {
	t.Helper()
	if got == nil {
		t.Fatalf("user %s: got nil", want.ID)
	}
	if got.ID != want.ID || got.Role != want.Role || got.Status != want.Status ||
		got.PwParams != want.PwParams || got.KeyFpr != want.KeyFpr || got.KeyWrap != want.KeyWrap {
		t.Errorf("user scalar fields:\n got %+v\nwant %+v", *got, *want)
	}
	eqBytes(t, "EmailIndex", got.EmailIndex, want.EmailIndex)
	eqBytes(t, "EmailEnc", got.EmailEnc, want.EmailEnc)
	eqBytes(t, "PwSalt", got.PwSalt, want.PwSalt)
	eqBytes(t, "PwVerifier", got.PwVerifier, want.PwVerifier)
	eqBytes(t, "PublicKey", got.PublicKey, want.PublicKey)
	eqBytes(t, "PrivateKeyWrapped", got.PrivateKeyWrapped, want.PrivateKeyWrapped)
	eqTime(t, "CreatedAt", got.CreatedAt, want.CreatedAt)
	eqTime(t, "UpdatedAt", got.UpdatedAt, want.UpdatedAt)
}

// eqMsg compares a stored message with what was delivered. KeyFpr is a
// commit-time check, not a stored column, so it is not compared.
func eqMsg(t testing.TB, got, want Message, withBody bool) {
	t.Helper()
	if got.ID != want.ID || got.RecipientID != want.RecipientID || got.SenderID != want.SenderID ||
		got.Size != want.Size || got.Policy != want.Policy {
		t.Errorf("message scalar fields:\n got %+v\nwant %+v", got, want)
	}
	eqTime(t, want.ID+" CreatedAt", got.CreatedAt, want.CreatedAt)
	eqTime(t, want.ID+" ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	eqBytes(t, want.ID+" KeyPackets", got.KeyPackets, want.KeyPackets)
	eqBytes(t, want.ID+" SummaryKeys", got.SummaryKeys, want.SummaryKeys)
	eqBytes(t, want.ID+" Summary", got.Summary, want.Summary)
	eqTimePtr(t, want.ID+" ReadAt", got.ReadAt, want.ReadAt)
	if withBody {
		eqBytes(t, want.ID+" Body", got.Body, want.Body)
	} else if len(got.Body) != 0 {
		t.Errorf("%s: ListMessages loaded the body (%d bytes)", want.ID, len(got.Body))
	}
}

func wantErr(t testing.TB, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Errorf("%s: err = %v, want %v", what, got, want)
	}
}

func msgIDs(ms []Message) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func outboxIDs(os []OutboxItem) []string {
	out := make([]string, len(os))
	for i, o := range os {
		out[i] = o.ID
	}
	return out
}

func sameIDs(t testing.TB, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// snapshot renders everything observable through the interface about the
// given users and tokens (user rows, every message with its key packets,
// tokens, unsent outbox), so "nothing changed" is one string comparison.
func snapshot(t testing.TB, s Store, userIDs []string, tokens [][]byte) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	for _, id := range userIDs {
		u, err := s.UserByID(ctx, id)
		if err != nil {
			fmt.Fprintf(&b, "user %s: %v\n", id, err)
			continue
		}
		fmt.Fprintf(&b, "user %s %s %s %s %s %x %x %x %x %s\n", u.ID, u.Status, u.KeyFpr, u.KeyWrap, u.PwParams,
			u.PwSalt, u.PwVerifier, u.PublicKey, u.PrivateKeyWrapped, ts(u.UpdatedAt))
		keys, err := s.MessageKeysForUser(ctx, id)
		if err != nil {
			t.Fatalf("MessageKeysForUser(%s): %v", id, err)
		}
		for _, k := range keys {
			fmt.Fprintf(&b, "  msg %s %q %q\n", k.MessageID, k.KeyPackets, k.SummaryKeys)
		}
		ms, err := s.ListMessages(ctx, id, t0.Add(-365*24*time.Hour))
		if err != nil {
			t.Fatalf("ListMessages(%s): %v", id, err)
		}
		fmt.Fprintf(&b, "  list %v\n", msgIDs(ms))
	}
	for _, h := range tokens {
		tok, err := s.ClaimTokenByHash(ctx, h)
		if err != nil {
			fmt.Fprintf(&b, "token %x: %v\n", h[:6], err)
			continue
		}
		used := "unused"
		if tok.UsedAt != nil {
			used = ts(*tok.UsedAt)
		}
		fmt.Fprintf(&b, "token %x %s %s\n", h[:6], tok.UserID, used)
	}
	due, err := s.DueOutbox(ctx, farFuture, 100000)
	if err != nil {
		t.Fatalf("DueOutbox: %v", err)
	}
	for _, o := range due {
		fmt.Fprintf(&b, "outbox %s %d %s %q\n", o.ID, o.Attempts, ts(o.NextAttemptAt), o.LastError)
	}
	return b.String()
}

// ---------------------------------------------------------------- users

func testUsers(t *testing.T, s Store) {
	ctx := context.Background()
	staff := mkUser(t, s, RoleStaff, StatusActive)
	patient := mkUser(t, s, RolePatient, StatusPending) // nil PwSalt/PwVerifier
	admin := newUser(t, uid("user"), RoleAdmin, StatusDisabled)
	admin.CreatedAt = time.Date(2029, 1, 2, 3, 4, 5, 999999999, time.UTC)
	admin.UpdatedAt = time.Date(2030, 1, 2, 3, 4, 5, 1, time.FixedZone("X", -7*3600))
	if err := s.CreateUser(ctx, admin); err != nil {
		t.Fatal(err)
	}

	for _, want := range []*User{staff, patient, admin} {
		got, err := s.UserByID(ctx, want.ID)
		if err != nil {
			t.Fatalf("UserByID(%s): %v", want.ID, err)
		}
		eqUser(t, got, want)
		got, err = s.UserByEmailIndex(ctx, want.EmailIndex)
		if err != nil {
			t.Fatalf("UserByEmailIndex(%s): %v", want.ID, err)
		}
		eqUser(t, got, want)
	}

	t.Run("duplicate email index", func(t *testing.T) {
		dup := newUser(t, uid("user"), RolePatient, StatusPending)
		dup.EmailIndex = staff.EmailIndex
		wantErr(t, "CreateUser dup email_index", s.CreateUser(ctx, dup), ErrExists)
		if _, err := s.UserByID(ctx, dup.ID); !errors.Is(err, ErrNotFound) {
			t.Errorf("duplicate user was stored: %v", err)
		}
		got, err := s.UserByEmailIndex(ctx, staff.EmailIndex)
		if err != nil {
			t.Fatal(err)
		}
		eqUser(t, got, staff)
	})
	t.Run("duplicate id", func(t *testing.T) {
		dup := newUser(t, staff.ID, RolePatient, StatusPending)
		wantErr(t, "CreateUser dup id", s.CreateUser(ctx, dup), ErrExists)
		got, err := s.UserByID(ctx, staff.ID)
		if err != nil {
			t.Fatal(err)
		}
		eqUser(t, got, staff)
	})
	t.Run("missing", func(t *testing.T) {
		_, err := s.UserByID(ctx, "no-such-user")
		wantErr(t, "UserByID", err, ErrNotFound)
		_, err = s.UserByEmailIndex(ctx, hash("email-index", "no-such-user"))
		wantErr(t, "UserByEmailIndex", err, ErrNotFound)
	})
}

// ---------------------------------------------------------------- app passwords

func testAppPasswords(t *testing.T, s Store) {
	ctx := context.Background()
	alice := mkUser(t, s, RolePatient, StatusActive)
	bob := mkUser(t, s, RoleStaff, StatusActive)

	newAP := func(u *User, name string, at time.Time) AppPassword {
		id := uid("ap")
		return AppPassword{ID: id, UserID: u.ID, Name: name, MAC: hash("app-password-mac", id), CreatedAt: at}
	}
	checkFinds := func(t *testing.T, p AppPassword, owner *User) {
		t.Helper()
		u, ap, err := s.UserByAppPassword(ctx, p.MAC)
		if err != nil {
			t.Fatalf("UserByAppPassword(%s): %v", p.Name, err)
		}
		eqUser(t, u, owner)
		if ap == nil || ap.ID != p.ID || ap.UserID != p.UserID || ap.Name != p.Name || ap.RevokedAt != nil {
			t.Errorf("app password = %+v, want %+v", ap, p)
		} else {
			eqTime(t, "AppPassword.CreatedAt", ap.CreatedAt, p.CreatedAt)
		}
	}
	notFound := func(t *testing.T, what string, mac []byte) {
		t.Helper()
		u, ap, err := s.UserByAppPassword(ctx, mac)
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: UserByAppPassword = %v, %v, %v; want ErrNotFound", what, u, ap, err)
		}
	}

	p1 := newAP(alice, "Thunderbird", t0)
	if err := s.AddAppPassword(ctx, p1); err != nil {
		t.Fatal(err)
	}
	checkFinds(t, p1, alice)
	notFound(t, "unknown mac", hash("app-password-mac", "never-added"))

	t.Run("same name twice while active", func(t *testing.T) {
		wantErr(t, "AddAppPassword same name", s.AddAppPassword(ctx, newAP(alice, "Thunderbird", t0)), ErrExists)
	})
	t.Run("same mac twice", func(t *testing.T) {
		p := newAP(alice, "Phone", t0)
		p.MAC = p1.MAC
		wantErr(t, "AddAppPassword same mac", s.AddAppPassword(ctx, p), ErrExists)
	})

	pb := newAP(bob, "Thunderbird", t0) // names are per user
	if err := s.AddAppPassword(ctx, pb); err != nil {
		t.Fatalf("same name for another user: %v", err)
	}
	checkFinds(t, pb, bob)

	t.Run("revoke", func(t *testing.T) {
		wantErr(t, "revoke unknown name", s.RevokeAppPassword(ctx, alice.ID, "Outlook", t0), ErrNotFound)
		wantErr(t, "revoke unknown user", s.RevokeAppPassword(ctx, "no-such-user", "Thunderbird", t0), ErrNotFound)
		if err := s.RevokeAppPassword(ctx, alice.ID, "Thunderbird", t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		notFound(t, "revoked", p1.MAC)
		checkFinds(t, pb, bob) // bob's same-named password is untouched
		wantErr(t, "revoke twice", s.RevokeAppPassword(ctx, alice.ID, "Thunderbird", t0.Add(2*time.Hour)), ErrNotFound)

		p2 := newAP(alice, "Thunderbird", t0.Add(3*time.Hour))
		if err := s.AddAppPassword(ctx, p2); err != nil {
			t.Fatalf("re-add after revoke: %v", err)
		}
		checkFinds(t, p2, alice)
		notFound(t, "old revoked after re-add", p1.MAC)
		wantErr(t, "third active copy", s.AddAppPassword(ctx, newAP(alice, "Thunderbird", t0)), ErrExists)
	})

	t.Run("inactive owners", func(t *testing.T) {
		for _, status := range []string{StatusDisabled, StatusPending} {
			u := mkUser(t, s, RolePatient, status)
			p := newAP(u, "Mail", t0)
			if err := s.AddAppPassword(ctx, p); err != nil {
				t.Fatal(err)
			}
			notFound(t, "owner "+status, p.MAC)
		}
	})
}

// ---------------------------------------------------------------- deliver

func testDeliver(t *testing.T, s Store) {
	ctx := context.Background()
	sender := mkUser(t, s, RoleStaff, StatusActive)
	r1 := mkUser(t, s, RolePatient, StatusPending)
	r2 := mkUser(t, s, RolePatient, StatusActive)

	m1 := mkMsg(r1, sender, t0)
	m2 := mkMsg(r1, sender, t0.Add(time.Second))
	m3 := mkMsg(r2, sender, t0)
	tok := mkToken(r1, t0, 7*24*time.Hour)
	o1 := mkOutbox(r1.ID, m1.ID, t0)
	o2 := mkOutbox(r2.ID, m3.ID, t0.Add(time.Nanosecond))
	deliver(t, s, Delivery{Messages: []Message{m1, m2, m3}, ClaimTokens: []ClaimToken{tok}, Outbox: []OutboxItem{o1, o2}})

	got, err := s.ListMessages(ctx, r1.ID, t0)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "r1 messages", msgIDs(got), []string{m2.ID, m1.ID})
	got, err = s.ListMessages(ctx, r2.ID, t0)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "r2 messages", msgIDs(got), []string{m3.ID})
	for _, m := range []Message{m1, m2, m3} {
		g, err := s.GetMessage(ctx, m.ID)
		if err != nil {
			t.Fatalf("GetMessage(%s): %v", m.ID, err)
		}
		eqMsg(t, *g, m, true)
	}
	ct, err := s.ClaimTokenByHash(ctx, tok.Hash)
	if err != nil {
		t.Fatalf("token not committed: %v", err)
	}
	if ct.UserID != r1.ID || ct.UsedAt != nil {
		t.Errorf("token = %+v", ct)
	}
	due, err := s.DueOutbox(ctx, t0.Add(time.Second), 10)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "outbox", outboxIDs(due), []string{o1.ID, o2.ID})

	// A delivery with only a notification (e.g. a security alert) and no
	// user or message reference.
	alert := mkOutbox("", "", t0)
	alert.Kind = "security-alert"
	deliver(t, s, Delivery{Outbox: []OutboxItem{alert}})
	due, err = s.DueOutbox(ctx, t0, 10)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, o := range due {
		if o.ID == alert.ID {
			found = true
			if o.UserID != "" || o.MessageID != "" || o.Kind != "security-alert" {
				t.Errorf("alert = %+v", o)
			}
		}
	}
	if !found {
		t.Errorf("alert not in outbox: %v", outboxIDs(due))
	}
}

func testDeliverAtomicity(t *testing.T, s Store) {
	ctx := context.Background()
	sender := mkUser(t, s, RoleStaff, StatusActive)
	r1 := mkUser(t, s, RolePatient, StatusPending)
	r2 := mkUser(t, s, RolePatient, StatusActive)
	existing := mkMsg(r1, sender, t0.Add(-time.Hour))
	existingTok := mkToken(r1, t0.Add(-time.Hour), 24*time.Hour)
	deliver(t, s, Delivery{Messages: []Message{existing}, ClaimTokens: []ClaimToken{existingTok},
		Outbox: []OutboxItem{mkOutbox(r1.ID, existing.ID, t0)}})

	// batch builds a delivery that would be fine on its own: two
	// recipients, several messages, a token and notifications.
	batch := func() Delivery {
		a := mkMsg(r1, sender, t0)
		b := mkMsg(r2, sender, t0)
		c := mkMsg(r1, sender, t0.Add(time.Second))
		return Delivery{
			Messages:    []Message{a, b, c},
			ClaimTokens: []ClaimToken{mkToken(r1, t0, 24*time.Hour)},
			Outbox:      []OutboxItem{mkOutbox(r1.ID, a.ID, t0), mkOutbox(r2.ID, b.ID, t0)},
		}
	}

	cases := []struct {
		name   string
		break_ func(d *Delivery)
		want   error // nil: any error
	}{
		{"duplicate message id in batch", func(d *Delivery) {
			m := d.Messages[0]
			m.Body = []byte("other body")
			d.Messages = append(d.Messages, m)
		}, nil},
		{"message id already stored", func(d *Delivery) {
			m := mkMsg(r1, sender, t0)
			m.ID = existing.ID
			d.Messages = append(d.Messages, m)
		}, nil},
		{"unknown recipient", func(d *Delivery) {
			ghost := newUser(t, "ghost-recipient", RolePatient, StatusPending)
			d.Messages = append(d.Messages, mkMsg(ghost, sender, t0))
		}, nil},
		{"unknown sender", func(d *Delivery) {
			ghost := newUser(t, "ghost-sender", RoleStaff, StatusActive)
			d.Messages = append(d.Messages, mkMsg(r2, ghost, t0))
		}, nil},
		{"token for unknown user", func(d *Delivery) {
			ghost := newUser(t, "ghost-token-user", RolePatient, StatusPending)
			d.ClaimTokens = append(d.ClaimTokens, mkToken(ghost, t0, time.Hour))
		}, nil},
		{"duplicate token hash", func(d *Delivery) {
			tok := mkToken(r1, t0, time.Hour)
			tok.Hash = existingTok.Hash
			d.ClaimTokens = append(d.ClaimTokens, tok)
		}, nil},
		{"duplicate outbox id", func(d *Delivery) {
			o := mkOutbox(r2.ID, "", t0)
			o.ID = d.Outbox[0].ID
			d.Outbox = append(d.Outbox, o)
		}, nil},
		{"outbox for unknown user", func(d *Delivery) {
			d.Outbox = append(d.Outbox, mkOutbox("ghost-outbox-user", "", t0))
		}, nil},
		{"key changed for second recipient", func(d *Delivery) {
			d.Messages[1].KeyFpr = "stale-fpr"
		}, ErrKeyChanged},
		{"key changed for first recipient", func(d *Delivery) {
			for i := range d.Messages {
				if d.Messages[i].RecipientID == r1.ID {
					d.Messages[i].KeyFpr = "stale-fpr"
				}
			}
		}, ErrKeyChanged},
		// Every message carries the key it was sealed to; a stale one must
		// be refused even when an earlier message to the same recipient in
		// the batch carries the current key.
		{"key changed on a later message to the same recipient", func(d *Delivery) {
			d.Messages[2].KeyFpr = "stale-fpr"
		}, ErrKeyChanged},
	}
	users := []string{sender.ID, r1.ID, r2.ID}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := batch()
			tc.break_(&d)
			var toks [][]byte
			for _, tk := range d.ClaimTokens {
				toks = append(toks, tk.Hash)
			}
			toks = append(toks, existingTok.Hash)
			before := snapshot(t, s, users, toks)
			err := s.Deliver(ctx, d)
			if err == nil {
				t.Fatalf("Deliver succeeded, want an error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Deliver err = %v, want %v", err, tc.want)
			}
			after := snapshot(t, s, users, toks)
			if before != after {
				t.Errorf("failed Deliver left changes behind:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			for _, m := range d.Messages {
				if m.ID == existing.ID {
					continue
				}
				if _, err := s.GetMessage(ctx, m.ID); !errors.Is(err, ErrNotFound) {
					t.Errorf("message %s of the failed batch is visible (err %v)", m.ID, err)
				}
			}
		})
	}

	// The store is not wedged by the failures: a good batch still commits.
	d := batch()
	deliver(t, s, d)
	for _, m := range d.Messages {
		if _, err := s.GetMessage(ctx, m.ID); err != nil {
			t.Errorf("good batch after failures: %v", err)
		}
	}
}

// ---------------------------------------------------------------- list / get / read

func testListGetMarkRead(t *testing.T, s Store) {
	ctx := context.Background()
	sender := mkUser(t, s, RoleStaff, StatusActive)
	r := mkUser(t, s, RolePatient, StatusActive)
	other := mkUser(t, s, RolePatient, StatusActive)
	now := t0.Add(10 * 24 * time.Hour)

	m1 := mkMsg(r, sender, t0)
	m2 := mkMsg(r, sender, t0.Add(time.Minute))
	m3 := mkMsg(r, sender, t0.Add(time.Minute).Add(1)) // 1ns later than m2
	expired := mkMsg(r, sender, t0.Add(2*time.Minute))
	expired.ExpiresAt = now.Add(-time.Nanosecond)
	boundary := mkMsg(r, sender, t0.Add(3*time.Minute))
	boundary.ExpiresAt = now // expires_at <= now is expired
	lastNs := mkMsg(r, sender, t0.Add(-time.Minute))
	lastNs.ExpiresAt = now.Add(time.Nanosecond) // still visible
	o := mkMsg(other, sender, t0.Add(5*time.Minute))
	deliver(t, s, Delivery{Messages: []Message{m1, expired, m3, o, boundary, m2, lastNs}})

	list, err := s.ListMessages(ctx, r.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "ListMessages", msgIDs(list), []string{m3.ID, m2.ID, m1.ID, lastNs.ID})
	want := map[string]Message{m1.ID: m1, m2.ID: m2, m3.ID: m3, lastNs.ID: lastNs}
	for _, g := range list {
		if w, ok := want[g.ID]; ok {
			eqMsg(t, g, w, false)
		}
	}
	list, err = s.ListMessages(ctx, other.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "other's ListMessages", msgIDs(list), []string{o.ID})
	list, err = s.ListMessages(ctx, sender.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Errorf("sender sees messages addressed to others: %v", msgIDs(list))
	}

	// Expired messages are hidden from the list but still exist (retention
	// decides when they go), and still count for re-wrapping.
	keys, err := s.MessageKeysForUser(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range keys {
		kids = append(kids, k.MessageID)
	}
	wantKids := []string{m1.ID, m2.ID, m3.ID, expired.ID, boundary.ID, lastNs.ID}
	sort.Strings(wantKids)
	sameIDs(t, "MessageKeysForUser", kids, wantKids)
	for _, k := range keys {
		eqBytes(t, "MessageKeys.KeyPackets", k.KeyPackets, []byte("key-packets|"+k.MessageID))
		eqBytes(t, "MessageKeys.SummaryKeys", k.SummaryKeys, []byte("summary-keys|"+k.MessageID))
	}

	g, err := s.GetMessage(ctx, m1.ID)
	if err != nil {
		t.Fatal(err)
	}
	eqMsg(t, *g, m1, true)
	_, err = s.GetMessage(ctx, "no-such-message")
	wantErr(t, "GetMessage missing", err, ErrNotFound)

	read1 := t0.Add(time.Hour).Add(42)
	if err := s.MarkRead(ctx, m1.ID, read1); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRead(ctx, m1.ID, read1.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	g, err = s.GetMessage(ctx, m1.ID)
	if err != nil {
		t.Fatal(err)
	}
	eqTimePtr(t, "ReadAt after two MarkRead", g.ReadAt, &read1)
	list, err = s.ListMessages(ctx, r.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list {
		switch m.ID {
		case m1.ID:
			eqTimePtr(t, "listed ReadAt", m.ReadAt, &read1)
		default:
			if m.ReadAt != nil {
				t.Errorf("%s: ReadAt = %v, want nil", m.ID, m.ReadAt)
			}
		}
	}
}

// ---------------------------------------------------------------- claim

func testClaimTokenByHash(t *testing.T, s Store) {
	ctx := context.Background()
	u := mkUser(t, s, RolePatient, StatusPending)
	tok := mkToken(u, t0, 72*time.Hour+3)
	deliver(t, s, Delivery{ClaimTokens: []ClaimToken{tok}})
	got, err := s.ClaimTokenByHash(ctx, tok.Hash)
	if err != nil {
		t.Fatal(err)
	}
	eqBytes(t, "Hash", got.Hash, tok.Hash)
	if got.UserID != u.ID {
		t.Errorf("UserID = %q, want %q", got.UserID, u.ID)
	}
	eqTime(t, "CreatedAt", got.CreatedAt, tok.CreatedAt)
	eqTime(t, "ExpiresAt", got.ExpiresAt, tok.ExpiresAt)
	eqTimePtr(t, "UsedAt", got.UsedAt, nil)
	_, err = s.ClaimTokenByHash(ctx, hash("claim-token", "never-issued"))
	wantErr(t, "unknown token", err, ErrNotFound)
}

// claimFx is a pending user with two messages (one already expired: it
// must be re-wrapped all the same), two claim links, and a second pending
// user with a message and a link of their own that a claim must not touch.
type claimFx struct {
	sender, p, other *User
	msgs             []Message
	otherMsg         Message
	tok, tok2        ClaimToken
	otherTok         ClaimToken
}

func setupClaim(t *testing.T, s Store, ttl time.Duration) *claimFx {
	t.Helper()
	f := &claimFx{
		sender: mkUser(t, s, RoleStaff, StatusActive),
		p:      mkUser(t, s, RolePatient, StatusPending),
		other:  mkUser(t, s, RolePatient, StatusPending),
	}
	m1 := mkMsg(f.p, f.sender, t0)
	m2 := mkMsg(f.p, f.sender, t0.Add(time.Minute))
	m2.ExpiresAt = t0.Add(2 * time.Minute)
	f.msgs = []Message{m1, m2}
	f.otherMsg = mkMsg(f.other, f.sender, t0)
	f.tok = mkToken(f.p, t0, ttl)
	f.tok2 = mkToken(f.p, t0.Add(time.Minute), 7*24*time.Hour)
	f.otherTok = mkToken(f.other, t0, 7*24*time.Hour)
	deliver(t, s, Delivery{
		Messages:    []Message{m1, m2, f.otherMsg},
		ClaimTokens: []ClaimToken{f.tok, f.tok2, f.otherTok},
		Outbox:      []OutboxItem{mkOutbox(f.p.ID, m1.ID, t0)},
	})
	return f
}

func (f *claimFx) users() []string { return []string{f.sender.ID, f.p.ID, f.other.ID} }

func (f *claimFx) tokens() [][]byte { return [][]byte{f.tok.Hash, f.tok2.Hash, f.otherTok.Hash} }

// claim computes a complete claim from the messages stored right now.
func (f *claimFx) claim(t *testing.T, s Store, at time.Time) Claim {
	t.Helper()
	keys, err := s.MessageKeysForUser(context.Background(), f.p.ID)
	if err != nil {
		t.Fatal(err)
	}
	var rw []MessageKeys
	for _, k := range keys {
		rw = append(rw, MessageKeys{
			MessageID:   k.MessageID,
			KeyPackets:  []byte("rewrapped-key-packets|" + k.MessageID),
			SummaryKeys: []byte("rewrapped-summary-keys|" + k.MessageID),
		})
	}
	return Claim{
		UserID:            f.p.ID,
		TokenHash:         f.tok.Hash,
		OldKeyFpr:         f.p.KeyFpr,
		NewKeyFpr:         "new-fpr-" + f.p.ID,
		PublicKey:         []byte("new-public-key-" + f.p.ID),
		PrivateKeyWrapped: []byte("password-wrapped-key-" + f.p.ID),
		PwParams:          "argon2id$v=19$m=65536,t=3,p=4",
		PwSalt:            []byte("salt-" + f.p.ID),
		PwVerifier:        []byte("verifier-" + f.p.ID),
		Rewrapped:         rw,
		At:                at,
	}
}

// checkClaimed asserts the full effect of a successful claim.
func (f *claimFx) checkClaimed(t *testing.T, s Store, c Claim) {
	t.Helper()
	ctx := context.Background()
	want := *f.p
	want.Status = StatusActive
	want.KeyFpr = c.NewKeyFpr
	want.PublicKey = c.PublicKey
	want.PrivateKeyWrapped = c.PrivateKeyWrapped
	want.KeyWrap = KeyWrapPassword
	want.PwParams = c.PwParams
	want.PwSalt = c.PwSalt
	want.PwVerifier = c.PwVerifier
	want.UpdatedAt = c.At
	got, err := s.UserByID(ctx, f.p.ID)
	if err != nil {
		t.Fatal(err)
	}
	eqUser(t, got, &want)

	for _, m := range f.msgs {
		g, err := s.GetMessage(ctx, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		w := m
		w.KeyPackets = []byte("rewrapped-key-packets|" + m.ID)
		w.SummaryKeys = []byte("rewrapped-summary-keys|" + m.ID)
		eqMsg(t, *g, w, true) // body and summary untouched
	}
	g, err := s.GetMessage(ctx, f.otherMsg.ID)
	if err != nil {
		t.Fatal(err)
	}
	eqMsg(t, *g, f.otherMsg, true)

	for _, h := range [][]byte{f.tok.Hash, f.tok2.Hash} {
		tok, err := s.ClaimTokenByHash(ctx, h)
		if err != nil {
			t.Fatal(err)
		}
		eqTimePtr(t, "token UsedAt", tok.UsedAt, &c.At)
	}
	tok, err := s.ClaimTokenByHash(ctx, f.otherTok.Hash)
	if err != nil {
		t.Fatal(err)
	}
	eqTimePtr(t, "other user's token UsedAt", tok.UsedAt, nil)
	ou, err := s.UserByID(ctx, f.other.ID)
	if err != nil {
		t.Fatal(err)
	}
	eqUser(t, ou, f.other)
}

func testClaim(t *testing.T, s Store) {
	ctx := context.Background()
	at := t0.Add(2 * time.Hour).Add(17)

	t.Run("success", func(t *testing.T) {
		f := setupClaim(t, s, 7*24*time.Hour)
		c := f.claim(t, s, at)
		if len(c.Rewrapped) != 2 {
			t.Fatalf("MessageKeysForUser returned %d keys, want 2", len(c.Rewrapped))
		}
		if err := s.Claim(ctx, c); err != nil {
			t.Fatalf("Claim: %v", err)
		}
		f.checkClaimed(t, s, c)

		before := snapshot(t, s, f.users(), f.tokens())
		wantErr(t, "second Claim, same token", s.Claim(ctx, c), ErrTokenSpent)
		c2 := c
		c2.TokenHash = f.tok2.Hash
		wantErr(t, "Claim with the other link", s.Claim(ctx, c2), ErrTokenSpent)
		if after := snapshot(t, s, f.users(), f.tokens()); after != before {
			t.Errorf("spent-token claims changed state:\n%s\n---\n%s", before, after)
		}

		// Mail sealed to the destroyed pending key must now be refused.
		m := mkMsg(f.p, f.sender, at)
		wantErr(t, "Deliver to old key", s.Deliver(ctx, Delivery{Messages: []Message{m}}), ErrKeyChanged)
		m.KeyFpr = c.NewKeyFpr
		if err := s.Deliver(ctx, Delivery{Messages: []Message{m}}); err != nil {
			t.Errorf("Deliver to new key: %v", err)
		}
	})

	// failing runs a claim that must fail with want and change nothing;
	// then a correct claim must still succeed.
	failing := func(t *testing.T, f *claimFx, c Claim, want error) {
		t.Helper()
		before := snapshot(t, s, f.users(), f.tokens())
		err := s.Claim(ctx, c)
		if err == nil {
			t.Fatalf("Claim succeeded, want %v", want)
		}
		if want != nil && !errors.Is(err, want) {
			t.Errorf("Claim err = %v, want %v", err, want)
		}
		if after := snapshot(t, s, f.users(), f.tokens()); after != before {
			t.Errorf("failed Claim changed state:\nbefore:\n%s\nafter:\n%s", before, after)
		}
	}
	recovers := func(t *testing.T, f *claimFx) {
		t.Helper()
		c := f.claim(t, s, at)
		if err := s.Claim(ctx, c); err != nil {
			t.Fatalf("correct Claim after the failed one: %v", err)
		}
		f.checkClaimed(t, s, c)
	}

	t.Run("expired token", func(t *testing.T) {
		f := setupClaim(t, s, time.Hour)
		c := f.claim(t, s, t0.Add(time.Hour)) // at == expires_at: expired
		failing(t, f, c, ErrTokenSpent)
		c.At = t0.Add(3 * time.Hour)
		failing(t, f, c, ErrTokenSpent)
		c.At = t0.Add(time.Hour).Add(-1) // one nanosecond before expiry
		if err := s.Claim(ctx, c); err != nil {
			t.Fatalf("Claim just before expiry: %v", err)
		}
		f.checkClaimed(t, s, c)
	})
	t.Run("unknown token", func(t *testing.T) {
		f := setupClaim(t, s, 7*24*time.Hour)
		c := f.claim(t, s, at)
		c.TokenHash = hash("claim-token", "never-issued")
		failing(t, f, c, ErrTokenSpent)
		recovers(t, f)
	})
	t.Run("token of another user", func(t *testing.T) {
		f := setupClaim(t, s, 7*24*time.Hour)
		c := f.claim(t, s, at)
		c.TokenHash = f.otherTok.Hash
		failing(t, f, c, ErrTokenSpent)
		recovers(t, f)
	})
	t.Run("rewrapped misses a message", func(t *testing.T) {
		f := setupClaim(t, s, 7*24*time.Hour)
		c := f.claim(t, s, at)
		c.Rewrapped = c.Rewrapped[:1]
		failing(t, f, c, ErrConflict)
		recovers(t, f)
	})
	t.Run("rewrapped misses all messages", func(t *testing.T) {
		f := setupClaim(t, s, 7*24*time.Hour)
		c := f.claim(t, s, at)
		c.Rewrapped = nil
		failing(t, f, c, ErrConflict)
		recovers(t, f)
	})
	t.Run("rewrapped names another user's message", func(t *testing.T) {
		f := setupClaim(t, s, 7*24*time.Hour)
		c := f.claim(t, s, at)
		c.Rewrapped[1].MessageID = f.otherMsg.ID
		failing(t, f, c, ErrConflict)
		recovers(t, f)
	})
	t.Run("rewrapped repeats one message instead of another", func(t *testing.T) {
		// Same count as the stored messages, every UPDATE hits one row, yet
		// one message is left sealed to the pending key that the claim
		// destroys.
		f := setupClaim(t, s, 7*24*time.Hour)
		c := f.claim(t, s, at)
		c.Rewrapped[1] = c.Rewrapped[0]
		failing(t, f, c, ErrConflict)
		recovers(t, f)
	})
	t.Run("user no longer pending", func(t *testing.T) {
		sender := mkUser(t, s, RoleStaff, StatusActive)
		for _, status := range []string{StatusActive, StatusDisabled} {
			u := mkUser(t, s, RolePatient, status)
			m := mkMsg(u, sender, t0)
			tok := mkToken(u, t0, 7*24*time.Hour)
			deliver(t, s, Delivery{Messages: []Message{m}, ClaimTokens: []ClaimToken{tok}})
			f := &claimFx{sender: sender, p: u, other: sender, msgs: []Message{m}, tok: tok, tok2: tok, otherTok: tok}
			failing(t, f, f.claim(t, s, at), ErrTokenSpent)
		}
	})
	t.Run("stale old key", func(t *testing.T) {
		f := setupClaim(t, s, 7*24*time.Hour)
		c := f.claim(t, s, at)
		c.OldKeyFpr = "some-other-fpr"
		failing(t, f, c, nil)
		recovers(t, f)
	})
}

// ---------------------------------------------------------------- outbox

func testOutbox(t *testing.T, s Store) {
	ctx := context.Background()
	u := mkUser(t, s, RolePatient, StatusPending)
	now := t0.Add(time.Hour)
	o1 := mkOutbox(u.ID, "m-1", now.Add(-2*time.Minute))
	o2 := mkOutbox(u.ID, "m-2", now.Add(-time.Minute))
	o3 := mkOutbox(u.ID, "", now) // next_attempt_at == now: due
	o4 := mkOutbox(u.ID, "m-4", now.Add(time.Nanosecond))
	o5 := mkOutbox(u.ID, "m-5", now.Add(time.Hour))
	// Insert out of order so ordering comes from next_attempt_at.
	deliver(t, s, Delivery{Outbox: []OutboxItem{o4, o2, o5, o3}})
	deliver(t, s, Delivery{Outbox: []OutboxItem{o1}})

	due, err := s.DueOutbox(ctx, now, 100)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "due", outboxIDs(due), []string{o1.ID, o2.ID, o3.ID})
	want := map[string]OutboxItem{o1.ID: o1, o2.ID: o2, o3.ID: o3}
	for _, g := range due {
		w := want[g.ID]
		if g.Kind != w.Kind || g.UserID != w.UserID || g.MessageID != w.MessageID || g.Attempts != 0 ||
			g.LastError != "" || g.SentAt != nil {
			t.Errorf("outbox item = %+v, want %+v", g, w)
		}
		eqBytes(t, "Payload", g.Payload, w.Payload)
		eqTime(t, "CreatedAt", g.CreatedAt, w.CreatedAt)
		eqTime(t, "NextAttemptAt", g.NextAttemptAt, w.NextAttemptAt)
	}

	due, err = s.DueOutbox(ctx, now, 2)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "due limit 2", outboxIDs(due), []string{o1.ID, o2.ID})
	due, err = s.DueOutbox(ctx, now.Add(-3*time.Minute), 100)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "due before anything", outboxIDs(due), nil)

	next := now.Add(5 * time.Minute).Add(3)
	if err := s.OutboxRetry(ctx, o1.ID, 1, next, "451 4.4.1 smarthost unreachable"); err != nil {
		t.Fatal(err)
	}
	due, err = s.DueOutbox(ctx, now, 100)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "due after retry", outboxIDs(due), []string{o2.ID, o3.ID})
	due, err = s.DueOutbox(ctx, next, 100)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "due at retry time", outboxIDs(due), []string{o2.ID, o3.ID, o4.ID, o1.ID})
	for _, g := range due {
		if g.ID == o1.ID {
			if g.Attempts != 1 || g.LastError != "451 4.4.1 smarthost unreachable" {
				t.Errorf("retried item = %+v", g)
			}
			eqTime(t, "retried NextAttemptAt", g.NextAttemptAt, next)
			eqBytes(t, "retried Payload", g.Payload, o1.Payload)
		}
	}

	if err := s.OutboxSent(ctx, now, o2.ID); err != nil {
		t.Fatalf("OutboxSent: %v", err)
	}
	if err := s.OutboxSent(ctx, now, o1.ID); err != nil {
		t.Fatalf("OutboxSent after retry: %v", err)
	}
	due, err = s.DueOutbox(ctx, farFuture, 100)
	if err != nil {
		t.Fatal(err)
	}
	sameIDs(t, "due after sent", outboxIDs(due), []string{o3.ID, o4.ID, o5.ID})

	// The payload (sealed address + claim link) must be gone once sent.
	// Only observable through a raw handle; both SQL backends have one.
	if r, ok := s.(interface{ DB() *sql.DB }); ok {
		for _, id := range []string{o1.ID, o2.ID} {
			var payload []byte
			var sentAt sql.NullInt64
			var lastErr string
			if err := r.DB().QueryRowContext(ctx, `SELECT payload, sent_at, last_error FROM outbox WHERE id = $1`, id).
				Scan(&payload, &sentAt, &lastErr); err != nil {
				t.Fatal(err)
			}
			if len(payload) != 0 {
				t.Errorf("%s: payload kept after send: %q", id, payload)
			}
			if !sentAt.Valid || lastErr != "" {
				t.Errorf("%s: sent_at=%v last_error=%q", id, sentAt, lastErr)
			}
		}
	} else {
		t.Fatal("backend has no DB(): payload erasure cannot be checked")
	}
}

// ---------------------------------------------------------------- concurrency

func testConcurrentDeliver(t *testing.T, s Store) {
	ctx := context.Background()
	const workers, perWorker = 8, 25
	sender := mkUser(t, s, RoleStaff, StatusActive)
	rcpts := make([]*User, workers)
	for i := range rcpts {
		rcpts[i] = mkUser(t, s, RolePatient, StatusPending)
	}

	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker+64)
	start := make(chan struct{})
	done := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(r *User) {
			defer wg.Done()
			<-start
			for i := 0; i < perWorker; i++ {
				m := mkMsg(r, sender, t0.Add(time.Duration(i)*time.Second))
				d := Delivery{Messages: []Message{m}, Outbox: []OutboxItem{mkOutbox(r.ID, m.ID, t0)}}
				if i == 0 {
					d.ClaimTokens = []ClaimToken{mkToken(r, t0, time.Hour)}
				}
				if err := s.Deliver(ctx, d); err != nil {
					errs <- fmt.Errorf("deliver %s #%d: %w", r.ID, i, err)
				}
			}
		}(rcpts[w])
	}
	// Readers run alongside the writers, as portal sessions would.
	var rwg sync.WaitGroup
	for i := 0; i < 2; i++ {
		rwg.Add(1)
		go func(r *User) {
			defer rwg.Done()
			<-start
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := s.ListMessages(ctx, r.ID, t0); err != nil {
					errs <- fmt.Errorf("concurrent ListMessages: %w", err)
					return
				}
				if _, err := s.DueOutbox(ctx, t0, 10); err != nil {
					errs <- fmt.Errorf("concurrent DueOutbox: %w", err)
					return
				}
			}
		}(rcpts[i])
	}
	close(start)
	wg.Wait()
	close(done)
	rwg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		n++
		if n <= 10 {
			t.Error(err)
		}
	}
	if n > 10 {
		t.Errorf("... %d errors in all", n)
	}

	total := 0
	for _, r := range rcpts {
		list, err := s.ListMessages(ctx, r.ID, t0)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != perWorker {
			t.Errorf("%s has %d messages, want %d", r.ID, len(list), perWorker)
		}
		total += len(list)
	}
	if total != workers*perWorker {
		t.Errorf("total messages = %d, want %d", total, workers*perWorker)
	}
	due, err := s.DueOutbox(ctx, t0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != workers*perWorker {
		t.Errorf("outbox has %d items, want %d", len(due), workers*perWorker)
	}
}

// testClaimDeliverRace runs a claim (computed before a new message
// arrives) against the delivery of that message. One must lose: either the
// delivery commits first and the claim sees a message it did not re-wrap
// (ErrConflict), or the claim commits first and the delivery finds the key
// changed (ErrKeyChanged). Never both, never a message left on the pending
// key of an active account.
func testClaimDeliverRace(t *testing.T, s Store) {
	ctx := context.Background()
	const rounds = 20
	var deliverFirst, claimFirst int
	for i := 0; i < rounds; i++ {
		f := setupClaim(t, s, 7*24*time.Hour)
		c := f.claim(t, s, t0.Add(time.Hour))
		late := mkMsg(f.p, f.sender, t0.Add(30*time.Minute))

		var claimErr, deliverErr error
		var wg sync.WaitGroup
		start := make(chan struct{})
		wg.Add(2)
		go func() { defer wg.Done(); <-start; claimErr = s.Claim(ctx, c) }()
		go func() {
			defer wg.Done()
			<-start
			deliverErr = s.Deliver(ctx, Delivery{Messages: []Message{late},
				Outbox: []OutboxItem{mkOutbox(f.p.ID, late.ID, t0)}})
		}()
		close(start)
		wg.Wait()

		u, err := s.UserByID(ctx, f.p.ID)
		if err != nil {
			t.Fatal(err)
		}
		keys, err := s.MessageKeysForUser(ctx, f.p.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case deliverErr == nil && errors.Is(claimErr, ErrConflict):
			deliverFirst++
			if u.Status != StatusPending || u.KeyFpr != f.p.KeyFpr {
				t.Errorf("round %d: claim lost but user is %s/%s", i, u.Status, u.KeyFpr)
			}
			if len(keys) != 3 {
				t.Errorf("round %d: %d messages, want 3", i, len(keys))
			}
			for _, k := range keys {
				if !bytes.HasPrefix(k.KeyPackets, []byte("key-packets|")) {
					t.Errorf("round %d: %s re-wrapped by a failed claim", i, k.MessageID)
				}
			}
			tok, err := s.ClaimTokenByHash(ctx, f.tok.Hash)
			if err != nil || tok.UsedAt != nil {
				t.Errorf("round %d: token after failed claim: %+v, %v", i, tok, err)
			}
		case claimErr == nil && errors.Is(deliverErr, ErrKeyChanged):
			claimFirst++
			f.checkClaimed(t, s, c)
			if len(keys) != 2 {
				t.Errorf("round %d: %d messages, want 2", i, len(keys))
			}
			if _, err := s.GetMessage(ctx, late.ID); !errors.Is(err, ErrNotFound) {
				t.Errorf("round %d: refused delivery is visible: %v", i, err)
			}
		default:
			t.Errorf("round %d: claim err %v, deliver err %v", i, claimErr, deliverErr)
		}
		// Whatever happened: an active account has no message left on the
		// pending key.
		if u.Status == StatusActive {
			for _, k := range keys {
				if !bytes.HasPrefix(k.KeyPackets, []byte("rewrapped-key-packets|")) {
					t.Errorf("round %d: active user has message %s still sealed to the pending key", i, k.MessageID)
				}
			}
		}
	}
	t.Logf("claim/deliver race: deliver first %d, claim first %d", deliverFirst, claimFirst)
}
