package intake

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/quota"
	"github.com/phigate/phigate/store"
)

var ctx = context.Background()

// wantRejected checks that err is a *Rejected with this code and enhanced
// code.
func wantRejected(t *testing.T, what string, err error, code int, enh [3]int) *Rejected {
	t.Helper()
	var rj *Rejected
	if !errors.As(err, &rj) {
		t.Fatalf("%s: got %v, want a *Rejected %d", what, err, code)
	}
	if rj.Code != code || rj.Enhanced != enh {
		t.Errorf("%s: got %d %v (%s), want %d %v", what, rj.Code, rj.Enhanced, rj.Reason, code, enh)
	}
	return rj
}

func TestHeaderFrom(t *testing.T) {
	in := &Intake{Limits: Limits{AllowFrom: NewAllowFrom(map[string][]string{
		"Dr.Lee@Clinic.Example": {"FrontDesk@clinic.example"},
		"nurse@clinic.example":  {"ward3@clinic.example"},
	})}}
	env := Envelope{From: "dr.lee@clinic.example", To: []string{"p@example.net"}}
	for _, tc := range []struct {
		name, header string
		ok           bool
	}{
		{"own address", "From: dr.lee@clinic.example\r\n", true},
		{"own address, display name and case", "From: \"Dr Lee\" <DR.LEE@Clinic.Example>\r\n", true},
		{"encoded display name", "From: =?utf-8?q?Dr_L=C3=A9e?= <dr.lee@clinic.example>\r\n", true},
		{"allowed alias", "From: Front desk <frontdesk@clinic.example>\r\n", true},
		{"own From, own Sender", "From: frontdesk@clinic.example\r\nSender: dr.lee@clinic.example\r\n", true},
		{"someone else", "From: ceo@clinic.example\r\n", false},
		{"another account's alias", "From: ward3@clinic.example\r\n", false},
		{"display name that looks like the owner", "From: \"dr.lee@clinic.example\" <ceo@clinic.example>\r\n", false},
		{"second author not allowed", "From: dr.lee@clinic.example, ceo@clinic.example\r\n", false},
		{"foreign Sender", "From: dr.lee@clinic.example\r\nSender: ceo@clinic.example\r\n", false},
		{"two From fields", "From: dr.lee@clinic.example\r\nFrom: ceo@clinic.example\r\n", false},
		{"no From at all", "Subject: x\r\n", false},
		{"unparseable From", "From: <<<dr.lee@clinic.example\r\n", false},
		{"empty From", "From: \r\n", false},
	} {
		raw := []byte(tc.header + "Subject: test\r\n\r\nbody\r\n")
		err := in.checkMessage(env, raw)
		if tc.ok && err != nil {
			t.Errorf("%s: refused: %v", tc.name, err)
		}
		if !tc.ok {
			rj := wantRejected(t, tc.name, err, 550, [3]int{5, 7, 1})
			if !strings.Contains(rj.Reason, "From header") {
				t.Errorf("%s: reason %q does not name the From header", tc.name, rj.Reason)
			}
		}
	}
}

func TestTransactionBytes(t *testing.T) {
	in := &Intake{Limits: Limits{MaxTransactionBytes: 1000}}
	if err := in.CheckRecipients(250, 4); err != nil {
		t.Errorf("250 x 4 = 1000: %v", err)
	}
	wantRejected(t, "250 x 5 at RCPT", in.CheckRecipients(250, 5), 452, [3]int{4, 5, 3})
	if err := in.CheckRecipients(0, 100); err != nil {
		t.Errorf("no SIZE declared: %v", err)
	}
	raw := []byte("From: a@clinic.example\r\n\r\n" + strings.Repeat("x", 200-26))
	env := Envelope{From: "a@clinic.example", To: []string{"1@x.example", "2@x.example", "3@x.example", "4@x.example", "5@x.example"}}
	if err := in.checkMessage(env, raw); err != nil {
		t.Errorf("200 x 5: %v", err)
	}
	env.To = append(env.To, "6@x.example")
	wantRejected(t, "200 x 6 at DATA", in.checkMessage(env, raw), 552, [3]int{5, 3, 4})
	// A declared SIZE over the limit is refused at MAIL already.
	_, err := in.Begin(ctx, &store.User{ID: "u"}, 1001)
	wantRejected(t, "SIZE=1001 at MAIL", err, 552, [3]int{5, 3, 4})
	// No limit configured: nothing refused.
	if err := (&Intake{}).CheckRecipients(1<<40, 1000); err != nil {
		t.Errorf("no limit: %v", err)
	}
}

func TestBeginCounts(t *testing.T) {
	clk := testclock.New(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	in := &Intake{Quota: quota.NewMemory(quota.Config{MessagesPerHour: 2, Concurrent: 1}, clk.Now)}
	u := &store.User{ID: "staff-1"}
	t1, err := in.Begin(ctx, u, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = in.Begin(ctx, u, 0)
	rj := wantRejected(t, "second transaction at once", err, 451, [3]int{4, 7, 0})
	if !strings.Contains(rj.Reason, "1 message in progress") {
		t.Errorf("busy reason: %q", rj.Reason)
	}
	t1.End(ctx, true)
	clk.Add(15 * time.Minute)
	t2, err := in.Begin(ctx, u, 0)
	if err != nil {
		t.Fatal(err)
	}
	t2.End(ctx, true)
	_, err = in.Begin(ctx, u, 0)
	rj = wantRejected(t, "third message in the hour", err, 451, [3]int{4, 7, 0})
	// The first leaves the window in 45 minutes.
	if !strings.Contains(rj.Reason, "limit of 2 messages") || !strings.Contains(rj.Reason, "try again in 45 minutes") {
		t.Errorf("rate reason: %q", rj.Reason)
	}
	// Another account is not affected.
	if _, err := in.Begin(ctx, &store.User{ID: "staff-2"}, 0); err != nil {
		t.Errorf("other account: %v", err)
	}
}

// TestStoredQuota checks the stored quota against a real store: the sizes
// of the copies an account sent that still hold ciphertext.
func TestStoredQuota(t *testing.T) {
	st, err := store.OpenSQLite(ctx, filepath.Join(t.TempDir(), "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	mk := func(id, role, status string) *store.User {
		u := &store.User{ID: id, EmailIndex: []byte("idx-" + id), EmailEnc: []byte("enc"), Role: role, Status: status,
			KeyFpr: "fpr-" + id, PublicKey: []byte("pub"), KeyWrap: store.KeyWrapMaster, CreatedAt: now, UpdatedAt: now}
		if err := st.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	staff, other, patient := mk("staff", store.RoleStaff, store.StatusActive), mk("other", store.RoleStaff, store.StatusActive),
		mk("patient", store.RolePatient, store.StatusPending)
	msg := func(id string, from *store.User, size int64) store.Message {
		return store.Message{ID: id, RecipientID: patient.ID, SenderID: from.ID, KeyFpr: patient.KeyFpr, CreatedAt: now,
			ExpiresAt: now.Add(time.Hour), Size: size, Policy: "p", KeyPackets: []byte("k"), Body: []byte("b"),
			SummaryKeys: []byte("sk"), Summary: []byte("s")}
	}
	if err := st.Deliver(ctx, store.Delivery{Messages: []store.Message{msg("m1", staff, 600), msg("m2", other, 5000)}}); err != nil {
		t.Fatal(err)
	}
	in := &Intake{Stored: st, Limits: Limits{MaxStoredBytes: 1000}}
	if _, err := in.Begin(ctx, staff, 0); err != nil {
		t.Fatalf("600 of 1000 stored: %v", err)
	}
	if err := in.checkStored(ctx, staff, 400); err != nil {
		t.Errorf("600 + 400: %v", err)
	}
	wantRejected(t, "600 + 401", in.checkStored(ctx, staff, 401), 552, [3]int{5, 2, 2})
	// The other account is over its quota: refused already at MAIL.
	_, err = in.Begin(ctx, other, 0)
	wantRejected(t, "MAIL with a full quota", err, 552, [3]int{5, 2, 2})
}

func TestBatchOf(t *testing.T) {
	in := &Intake{Limits: Limits{CommitBatchBytes: 1 << 20}}
	for _, tc := range []struct{ size, want int }{
		{100<<10 - sealOverhead, 10}, // 100 KiB sealed each
		{1 << 20, 1},                 // larger than a batch: one at a time
		{64 << 20, 1},
	} {
		if got := in.batchOf(tc.size); got != tc.want {
			t.Errorf("batchOf(%d) = %d, want %d", tc.size, got, tc.want)
		}
	}
	// The default is 32 MiB.
	if got := (&Intake{}).batchOf(1<<20 - sealOverhead); got != 32 {
		t.Errorf("default batch of 1 MiB copies: %d, want 32", got)
	}
}
