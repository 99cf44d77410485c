package notify

// Issue 10.4: the account's choice of channels and the batching of
// notices, through the real outbox (SQLite), dispatcher, scripted
// smarthost and the local push service stand-in.

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/pushtest"
	"github.com/phigate/phigate/store"
)

// announce commits the notices of one new message as intake.Notice does.
func (pf *pushFixture) announce(t *testing.T, p *Prefs, messageID string) {
	t.Helper()
	ctx, now := context.Background(), pf.clock.Now()
	email, err := NewItem(pf.ring, KindNewMessage, Notice{To: patient, Link: "https://portal.riverside.example/login"}, pf.user.ID, messageID, now)
	if err != nil {
		t.Fatal(err)
	}
	pushes, err := pf.p.Items(ctx, pf.user.ID, messageID, now)
	if err != nil {
		t.Fatal(err)
	}
	items, err := p.MessageNotices(ctx, pf.ring, pf.user.ID, email, pushes)
	if err != nil {
		t.Fatal(err)
	}
	if err := pf.st.Deliver(ctx, store.Delivery{Outbox: items}); err != nil {
		t.Fatal(err)
	}
}

// sendDue runs the dispatcher once and returns how many emails and pushes
// went out in that run.
func (pf *pushFixture) sendDue(t *testing.T, mail *scriptedSender) (emails, pushes int) {
	t.Helper()
	d := pf.fixture.dispatcher(mail)
	d.Push = pf.p
	m0, p0 := mail.count(), len(pf.svc.Pushes())
	if _, err := d.RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	return mail.count() - m0, len(pf.svc.Pushes()) - p0
}

func (pf *pushFixture) choose(t *testing.T, p *Prefs, choice string) {
	t.Helper()
	if err := p.SetChoice(context.Background(), pf.user.ID, choice, pf.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
}

func TestPrefsChannels(t *testing.T) {
	pf := newPushFixture(t)
	p := &Prefs{Store: pf.st} // no batching: each message its own notices
	mail := &scriptedSender{}

	// No device yet: whatever the choice, email goes (never silence).
	pf.choose(t, p, ChoicePush)
	if e, n := pf.sendDueAfter(t, p, mail, "m-nodevice"); e != 1 || n != 0 {
		t.Errorf("push chosen, no device: %d emails, %d pushes; want 1, 0", e, n)
	}
	pf.subscribe(t, pushtest.NewDevice(t), "Phone")
	pf.subscribe(t, pushtest.NewDevice(t), "Laptop")
	for _, c := range []struct {
		choice         string
		require        bool
		emails, pushes int
	}{
		{ChoiceEmail, false, 1, 0},
		{ChoicePush, false, 0, 2},
		{ChoiceBoth, false, 1, 2},
		{ChoicePush, true, 1, 2}, // the organisation requires email
	} {
		p.RequireEmail = c.require
		pf.choose(t, p, c.choice)
		if e, n := pf.sendDueAfter(t, p, mail, "m-"+c.choice); e != c.emails || n != c.pushes {
			t.Errorf("%s (email required %v): %d emails, %d pushes; want %d, %d", c.choice, c.require, e, n, c.emails, c.pushes)
		}
	}

	// No choice made: the organisation's default.
	if err := pf.st.SetNotifyChannels(context.Background(), pf.user.ID, "", pf.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	p.RequireEmail, p.Default = false, ChoiceEmail
	v, err := p.View(context.Background(), pf.user.ID)
	if err != nil || v.Chosen || v.Choice != ChoiceEmail {
		t.Fatalf("view with no choice: %+v, %v", v, err)
	}
	if e, n := pf.sendDueAfter(t, p, mail, "m-default"); e != 1 || n != 0 {
		t.Errorf("default email: %d emails, %d pushes", e, n)
	}
	if err := p.SetChoice(context.Background(), pf.user.ID, "sms", pf.clock.Now(), nil); err != ErrBadChoice {
		t.Errorf("SetChoice(sms) = %v, want ErrBadChoice", err)
	}
}

func (pf *pushFixture) sendDueAfter(t *testing.T, p *Prefs, mail *scriptedSender, messageID string) (int, int) {
	t.Helper()
	pf.announce(t, p, messageID)
	return pf.sendDue(t, mail)
}

// Five messages in quick succession: the first notice (email and push)
// goes at once; the other four bring exactly one more of each, at the
// window's end; the store is closed and opened again in between (a
// restart) and nothing is lost or doubled.
func TestBatchBurstAcrossRestart(t *testing.T) {
	pf := newPushFixture(t)
	p := &Prefs{Store: pf.st, Window: DefaultBatchWindow}
	pf.subscribe(t, pushtest.NewDevice(t), "Phone")
	mail := &scriptedSender{}

	pf.announce(t, p, "m-1")
	if e, n := pf.sendDue(t, mail); e != 1 || n != 1 {
		t.Fatalf("first message: %d emails, %d pushes; want 1, 1 at once", e, n)
	}
	for i := 2; i <= 5; i++ {
		pf.clock.Add(10 * time.Second)
		pf.announce(t, p, fmt.Sprintf("m-%d", i))
	}
	if e, n := pf.sendDue(t, mail); e != 0 || n != 0 {
		t.Fatalf("within the window: %d emails, %d pushes; want none yet", e, n)
	}

	// Restart: the batching state is in the database only.
	pf.st.Close()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(pf.dir, "phigate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pf.st, pf.p.Store, p.Store = st, st, st
	if e, n := pf.sendDue(t, mail); e != 0 || n != 0 {
		t.Fatalf("after restart, within the window: %d emails, %d pushes", e, n)
	}

	pf.clock.Add(DefaultBatchWindow)
	if e, n := pf.sendDue(t, mail); e != 1 || n != 1 {
		t.Fatalf("at the window's end: %d emails, %d pushes; want exactly 1, 1", e, n)
	}
	pf.clock.Add(3 * DefaultBatchWindow)
	if e, n := pf.sendDue(t, mail); e != 0 || n != 0 {
		t.Fatalf("later: %d emails, %d pushes; want none", e, n)
	}
	// A message after a quiet window is announced at once again.
	pf.announce(t, p, "m-6")
	if e, n := pf.sendDue(t, mail); e != 1 || n != 1 {
		t.Fatalf("after a quiet window: %d emails, %d pushes; want 1, 1", e, n)
	}
}
