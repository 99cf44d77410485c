package notify

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/internal/syncbuf"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/outbound"
	"github.com/phigate/phigate/store"
)

// ---- fixture: a real SQLite store and a real key ring ----

var (
	ringOnce sync.Once
	ringKeys [2]*pcrypto.Key
	ringErr  error
)

func newRing(t testing.TB) *keys.Ring {
	t.Helper()
	ringOnce.Do(func() {
		for i := range ringKeys {
			if ringKeys[i], ringErr = pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "test", Email: fmt.Sprintf("k%d@riverside.example", i)}); ringErr != nil {
				return
			}
		}
	})
	if ringErr != nil {
		t.Fatal(ringErr)
	}
	r, err := keys.NewRing(pcrypto.RandomBytes(32), ringKeys[0], ringKeys[1])
	if err != nil {
		t.Fatal(err)
	}
	return r
}

type fixture struct {
	dir   string
	st    *store.SQL
	ring  *keys.Ring
	clock *testclock.Clock
	logs  *syncbuf.Buffer
	user  *store.User
}

const patient = "pat.canary-91@example.net"

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "phigate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{dir: dir, st: st, ring: newRing(t), clock: testclock.New(time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)), logs: &syncbuf.Buffer{}}
	enc, err := f.ring.SealField("email:u1", []byte(patient))
	if err != nil {
		t.Fatal(err)
	}
	// A pending recipient; the key fields are dummies (the dispatcher never
	// touches them).
	f.user = &store.User{ID: "u1", EmailIndex: f.ring.EmailIndex(patient), EmailEnc: enc, Role: store.RolePatient,
		Status: store.StatusPending, KeyFpr: "fpr-dummy", PublicKey: []byte("dummy public key"),
		PrivateKeyWrapped: []byte("dummy wrapped key"), KeyWrap: store.KeyWrapMaster, CreatedAt: f.clock.Now(), UpdatedAt: f.clock.Now()}
	if err := st.CreateUser(context.Background(), f.user); err != nil {
		t.Fatal(err)
	}
	return f
}

// enqueue commits one outbox row through store.Deliver, as intake does.
func (f *fixture) enqueue(t *testing.T, id string, n Notice) {
	t.Helper()
	plain, err := n.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := f.ring.SealField(PayloadPurpose(id), plain)
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	err = f.st.Deliver(context.Background(), store.Delivery{Outbox: []store.OutboxItem{{
		ID: id, Kind: KindNewMessage, UserID: f.user.ID, MessageID: "m-" + id, Payload: sealed, CreatedAt: now, NextAttemptAt: now,
	}}})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) dispatcher(s outbound.Sender) *Dispatcher {
	return &Dispatcher{Store: f.st, Keys: f.ring, Sender: s, Org: testOrg, Hostname: "gw.riverside.example",
		Log: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Now: f.clock.Now}
}

type outboxRow struct {
	attempts  int
	next      time.Time
	sent      bool
	payload   []byte
	lastError string
}

func (f *fixture) row(t *testing.T, id string) outboxRow {
	t.Helper()
	var r outboxRow
	var next int64
	var sent sql.NullInt64
	err := f.st.DB().QueryRow(`SELECT attempts, next_attempt_at, sent_at, payload, last_error FROM outbox WHERE id = $1`, id).
		Scan(&r.attempts, &next, &sent, &r.payload, &r.lastError)
	if err != nil {
		t.Fatal(err)
	}
	r.next, r.sent = time.Unix(0, next).UTC(), sent.Valid
	return r
}

// assertNoPHI checks the logs and every file in the data folder (database,
// WAL) for the recipient address and the smarthost's reply text.
func (f *fixture) assertNoPHI(t *testing.T, secrets ...string) {
	t.Helper()
	secrets = append(secrets, patient)
	logs := f.logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("logs contain %q:\n%s", s, logs)
		}
	}
	filepath.Walk(f.dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, _ := os.ReadFile(p)
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s contains %q", filepath.Base(p), s)
			}
		}
		return nil
	})
}

// ---- senders standing in for the smarthost ----

type scriptedSender struct {
	mu    sync.Mutex
	errs  []error // returned in order; nil once exhausted
	calls []sentMsg
}

type sentMsg struct {
	from string
	to   []string
	msg  []byte
}

func (s *scriptedSender) Send(_ context.Context, from string, to []string, msg []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, sentMsg{from, append([]string(nil), to...), append([]byte(nil), msg...)})
	if len(s.errs) == 0 {
		return nil
	}
	err := s.errs[0]
	s.errs = s.errs[1:]
	return err
}

func (s *scriptedSender) count() int { s.mu.Lock(); defer s.mu.Unlock(); return len(s.calls) }

// The smarthost's reply echoes the address, as real ones do.
var tempErr = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 4, 1}, Message: "greylisted <" + patient + ">, try later"}

func TestDispatcherRetriesThenSends(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	link := "https://portal.riverside.example/claim/tok-abc"
	f.enqueue(t, "ob1", Notice{To: patient, Link: link, Claim: true, ExpiresAt: f.clock.Now().Add(30 * 24 * time.Hour)})
	snd := &scriptedSender{errs: []error{tempErr, fmt.Errorf("smarthost AUTH: %w", tempErr)}}
	d := f.dispatcher(snd)

	var gaps []time.Duration
	for attempt := 1; attempt <= 2; attempt++ {
		at := f.clock.Now()
		n, err := d.RunOnce(ctx)
		if err != nil || n != 0 {
			t.Fatalf("attempt %d: sent %d, err %v", attempt, n, err)
		}
		r := f.row(t, "ob1")
		if r.attempts != attempt || r.sent || len(r.payload) == 0 {
			t.Fatalf("after attempt %d: %+v", attempt, r)
		}
		if r.lastError != "smarthost replied 451 4.4.1" {
			t.Errorf("last_error %q", r.lastError)
		}
		if !r.next.After(at) {
			t.Fatalf("next attempt %v not after %v", r.next, at)
		}
		gaps = append(gaps, r.next.Sub(at))
		// Not due yet: nothing is sent before next_attempt_at.
		f.clock.Set(r.next.Add(-time.Second))
		if n, err := d.RunOnce(ctx); n != 0 || err != nil || snd.count() != attempt {
			t.Fatalf("sent before due: n=%d err=%v calls=%d", n, err, snd.count())
		}
		f.clock.Set(r.next)
	}
	if !(gaps[1] > gaps[0]) {
		t.Errorf("back-off did not grow: %v", gaps)
	}
	n, err := d.RunOnce(ctx)
	if err != nil || n != 1 {
		t.Fatalf("third attempt: sent %d, err %v", n, err)
	}
	r := f.row(t, "ob1")
	if !r.sent || len(r.payload) != 0 || r.lastError != "" || r.attempts != 2 {
		t.Errorf("after success: %+v (want sent, payload emptied, no error)", r)
	}
	if snd.count() != 3 {
		t.Errorf("%d sends, want 3", snd.count())
	}
	// Sent notices are not sent again.
	f.clock.Set(f.clock.Now().Add(48 * time.Hour))
	if n, _ := d.RunOnce(ctx); n != 0 || snd.count() != 3 {
		t.Errorf("resent a sent notice")
	}
	// Each try went to the recipient from NotifyFrom, with the same Message-Id.
	for i, c := range snd.calls {
		if c.from != testOrg.NotifyFrom || len(c.to) != 1 || c.to[0] != patient {
			t.Errorf("call %d envelope %s -> %v", i, c.from, c.to)
		}
		if !bytes.Contains(c.msg, []byte("Message-Id: <ob1@gw.riverside.example>")) || !bytes.Contains(c.msg, []byte(link)) {
			t.Errorf("call %d message lacks Message-Id or link", i)
		}
	}
	f.assertNoPHI(t, "greylisted", "tok-abc")
	if !strings.Contains(f.logs.String(), "notice sent") || !strings.Contains(f.logs.String(), "will retry") {
		t.Errorf("logs:\n%s", f.logs.String())
	}
}

func TestDispatcherPermanentError(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.enqueue(t, "ob1", Notice{To: patient, Link: "https://portal.riverside.example/claim/tok-xyz", Claim: true, ExpiresAt: f.clock.Now().Add(time.Hour)})
	perm := &outbound.PermanentError{Err: &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
		Message: "<" + patient + ">: recipient address rejected: User unknown"}}
	snd := &scriptedSender{errs: []error{perm, perm}}
	d := f.dispatcher(snd)
	if n, err := d.RunOnce(ctx); n != 0 || err != nil {
		t.Fatalf("n=%d err=%v", n, err)
	}
	r := f.row(t, "ob1")
	if r.attempts != 1 || r.sent {
		t.Errorf("row %+v", r)
	}
	if r.lastError != "smarthost replied 550 5.1.1" {
		t.Errorf("last_error %q", r.lastError)
	}
	if !r.next.Equal(never) {
		t.Errorf("next attempt %v: a permanent failure must not be retried", r.next)
	}
	// A year later it is still not retried.
	f.clock.Set(f.clock.Now().AddDate(1, 0, 0))
	if n, _ := d.RunOnce(ctx); n != 0 || snd.count() != 1 {
		t.Errorf("permanent failure retried: calls %d", snd.count())
	}
	f.assertNoPHI(t, "User unknown", "address rejected", "tok-xyz")
	if !strings.Contains(f.logs.String(), "failed for good") {
		t.Errorf("logs:\n%s", f.logs.String())
	}
}

func TestDispatcherBadRows(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := f.clock.Now()
	good, _ := f.ring.SealField(PayloadPurpose("ob-good"), []byte(`{"to":"`+patient+`","link":"https://x/login"}`))
	wrongPurpose, _ := f.ring.SealField(PayloadPurpose("someone-else"), []byte(`{"to":"`+patient+`"}`))
	notJSON, _ := f.ring.SealField(PayloadPurpose("ob-json"), []byte(`not json `+patient))
	unknownKind, _ := f.ring.SealField(PayloadPurpose("ob-kind"), []byte(`{"to":"`+patient+`"}`))
	items := []store.OutboxItem{
		{ID: "ob-purpose", Kind: KindNewMessage, Payload: wrongPurpose},
		{ID: "ob-json", Kind: KindNewMessage, Payload: notJSON},
		{ID: "ob-kind", Kind: "mystery", Payload: unknownKind},
		{ID: "ob-good", Kind: KindNewMessage, Payload: good},
	}
	for i := range items {
		items[i].UserID, items[i].CreatedAt, items[i].NextAttemptAt = f.user.ID, now, now
	}
	if err := f.st.Deliver(ctx, store.Delivery{Outbox: items}); err != nil {
		t.Fatal(err)
	}
	snd := &scriptedSender{}
	n, err := f.dispatcher(snd).RunOnce(ctx)
	if err != nil || n != 1 || snd.count() != 1 {
		t.Fatalf("sent %d (calls %d), err %v; want only the good row", n, snd.count(), err)
	}
	for _, id := range []string{"ob-purpose", "ob-json", "ob-kind"} {
		r := f.row(t, id)
		if r.sent || r.attempts != 1 || !r.next.Equal(never) || r.lastError != "delivery error" {
			t.Errorf("%s: %+v, want a permanent, PHI-free failure", id, r)
		}
	}
	if r := f.row(t, "ob-good"); !r.sent {
		t.Errorf("good row not sent: %+v", r)
	}
	f.assertNoPHI(t, "not json")
}

func TestDispatcherGivesUpAfterMaxAttempts(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.enqueue(t, "ob1", Notice{To: patient, Link: "https://x/login"})
	if err := f.st.OutboxRetry(ctx, "ob1", MaxAttempts-2, f.clock.Now(), "smarthost replied 451 4.4.1"); err != nil {
		t.Fatal(err)
	}
	snd := &scriptedSender{errs: []error{tempErr, tempErr, tempErr}}
	d := f.dispatcher(snd)
	d.RunOnce(ctx)
	r := f.row(t, "ob1")
	if r.attempts != MaxAttempts-1 || r.next.Equal(never) {
		t.Fatalf("attempt %d: %+v", MaxAttempts-1, r)
	}
	f.clock.Set(r.next)
	d.RunOnce(ctx)
	r = f.row(t, "ob1")
	if r.attempts != MaxAttempts || !r.next.Equal(never) {
		t.Errorf("after MaxAttempts: %+v, want given up", r)
	}
	f.clock.Set(f.clock.Now().AddDate(1, 0, 0))
	d.RunOnce(ctx)
	if snd.count() != 2 {
		t.Errorf("%d sends, want 2", snd.count())
	}
}

// With the real dev-mode sender, a due notice ends up as one file.
func TestDispatcherMaildrop(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		f.enqueue(t, fmt.Sprintf("ob%d", i), Notice{To: patient, Link: fmt.Sprintf("https://x/claim/t%d", i), Claim: true, ExpiresAt: f.clock.Now().Add(time.Hour)})
	}
	drop := filepath.Join(t.TempDir(), "maildrop")
	n, err := f.dispatcher(&outbound.Maildrop{Dir: drop}).RunOnce(ctx)
	if err != nil || n != 3 {
		t.Fatalf("sent %d, err %v", n, err)
	}
	ents, _ := os.ReadDir(drop)
	if len(ents) != 3 {
		t.Fatalf("%d files", len(ents))
	}
	for i := 0; i < 3; i++ {
		if r := f.row(t, fmt.Sprintf("ob%d", i)); !r.sent || len(r.payload) != 0 {
			t.Errorf("ob%d: %+v", i, r)
		}
	}
}

// signalStore is the real store, telling the test when a row is marked sent.
type signalStore struct {
	*store.SQL
	sent chan string
}

func (s signalStore) OutboxSent(ctx context.Context, at time.Time, ids ...string) error {
	err := s.SQL.OutboxSent(ctx, at, ids...)
	for _, id := range ids {
		s.sent <- id
	}
	return err
}

func TestRunKickAndStop(t *testing.T) {
	f := newFixture(t)
	snd := &scriptedSender{}
	d := f.dispatcher(snd)
	ss := signalStore{SQL: f.st, sent: make(chan string, 10)}
	d.Store = ss
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	// Intake kicks from SMTP sessions while Run may still be starting.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); d.Kick() }()
	}
	d.Kick()
	wg.Wait()
	f.enqueue(t, "ob1", Notice{To: patient, Link: "https://x/login"})
	d.Kick()
	if id := <-ss.sent; id != "ob1" {
		t.Fatalf("sent %s", id)
	}
	cancel()
	<-done
	if r := f.row(t, "ob1"); !r.sent || snd.count() != 1 {
		t.Errorf("row %+v, %d sends", r, snd.count())
	}
	// Kick after Run has ended neither blocks nor panics.
	d.Kick()
}

// Kick on a dispatcher that never runs must not block intake.
// TestKickWithoutRun: kicks before Run never block, and they coalesce into
// one pending kick for Run to see.
func TestKickWithoutRun(t *testing.T) {
	d := &Dispatcher{}
	for i := 0; i < 3; i++ {
		d.Kick()
	}
	if n := len(d.kicks()); n != 1 {
		t.Fatalf("%d kicks pending after three, want 1", n)
	}
}

func TestBackoff(t *testing.T) {
	prev := time.Duration(0)
	for a := 1; a <= MaxAttempts; a++ {
		b := backoff(a)
		if b < prev || b > time.Hour || b < 30*time.Second {
			t.Errorf("backoff(%d) = %v (previous %v)", a, b, prev)
		}
		prev = b
	}
	if backoff(1) != 30*time.Second || backoff(2) != time.Minute || backoff(MaxAttempts) != time.Hour {
		t.Errorf("backoff 1,2,max = %v %v %v", backoff(1), backoff(2), backoff(MaxAttempts))
	}
	if errors.Is(nil, tempErr) {
		t.Fatal("unreachable")
	}
}
