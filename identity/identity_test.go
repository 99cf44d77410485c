package identity

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/store"
)

var ctx = context.Background()

type fixture struct {
	dir    string
	st     *store.SQL
	ring   *keys.Ring
	escrow *pcrypto.Key // private half, which only the security officer holds
	svc    *Service
	now    time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(ctx, filepath.Join(dir, "phigate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	gw, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "gateway"})
	if err != nil {
		t.Fatal(err)
	}
	escrow, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "escrow"})
	if err != nil {
		t.Fatal(err)
	}
	ring, err := keys.NewRing(pcrypto.RandomBytes(32), gw, escrow)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{dir: dir, st: st, ring: ring, escrow: escrow, now: time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)}
	f.svc = &Service{Store: st, Keys: ring, Password: pcrypto.TestPasswordParams, Now: func() time.Time { return f.now }}
	return f
}

// fileBytes is every byte the store wrote (database, WAL, shared memory).
func (f *fixture) fileBytes(t *testing.T) []byte {
	t.Helper()
	var all []byte
	filepath.Walk(f.dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			b, _ := os.ReadFile(p)
			all = append(all, b...)
		}
		return nil
	})
	return all
}

const goodPassword = "correct horse battery"

// testIP is the claimant's address the trail records.
const testIP = "192.0.2.10"

func TestAddUserValidation(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name, email, role, pw string
		want                  string
		is                    error
	}{
		{"no at", "not-an-email", "staff", goodPassword, "not a valid email address", nil},
		{"display name", "Dr Lee <lee@clinic.example>", "staff", goodPassword, "not a valid email address", nil},
		{"two addresses", "a@clinic.example, b@clinic.example", "staff", goodPassword, "not a valid email address", nil},
		{"empty", "", "staff", goodPassword, "not a valid email address", nil},
		{"no local part", "@clinic.example", "staff", goodPassword, "not a valid email address", nil},
		{"unknown role", "lee@clinic.example", "superuser", goodPassword, `unknown role "superuser"`, nil},
		{"empty role", "lee@clinic.example", "", goodPassword, "unknown role", nil},
		{"short password", "lee@clinic.example", "staff", "short", "at least 12 characters (this one has 5)", ErrWeakPassword},
		{"11 characters", "lee@clinic.example", "staff", "elevenchars", "at least 12 characters (this one has 11)", ErrWeakPassword},
		{"11 runes, more bytes", "lee@clinic.example", "staff", "ääääääääääå", "(this one has 11)", ErrWeakPassword},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, err := f.svc.AddUser(ctx, c.email, c.role, c.pw)
			if err == nil || u != nil {
				t.Fatalf("accepted: %+v", u)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want %q", err, c.want)
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
		})
	}
	// None of the refused calls created anything.
	var n int
	f.st.DB().QueryRow(`SELECT COUNT(*) FROM users`).Scan(&n)
	if n != 0 {
		t.Errorf("%d users after refused calls", n)
	}

	// 12 characters is enough; every role works.
	for i, role := range []string{store.RoleStaff, store.RoleAdmin, store.RoleSecurity, store.RolePatient} {
		email := []string{"staff", "admin", "sec", "pat"}[i] + "@clinic.example"
		u, err := f.svc.AddUser(ctx, email, role, "twelve chars")
		if err != nil {
			t.Fatalf("%s: %v", role, err)
		}
		if u.Role != role || u.Status != store.StatusActive || u.KeyWrap != store.KeyWrapPassword {
			t.Errorf("%s: %+v", role, u)
		}
	}
	// Duplicates, however the address is written.
	for _, dup := range []string{"staff@clinic.example", "STAFF@Clinic.Example", " staff@clinic.example "} {
		if _, err := f.svc.AddUser(ctx, dup, "staff", goodPassword); err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Errorf("duplicate %q: %v", dup, err)
		}
	}
}

func TestAddUserStoresNoPlaintext(t *testing.T) {
	f := newFixture(t)
	u, err := f.svc.AddUser(ctx, "Dr.Quinn@Clinic.Example", "staff", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if email, err := f.svc.Email(u); err != nil || email != "dr.quinn@clinic.example" {
		t.Errorf("Email = %q %v", email, err)
	}
	got, err := f.svc.UserByEmail(ctx, "DR.QUINN@clinic.example")
	if err != nil || got.ID != u.ID {
		t.Fatalf("UserByEmail: %v", err)
	}
	if _, err := f.svc.EnsureRecipient(ctx, "pat.quinn@example.net"); err != nil {
		t.Fatal(err)
	}
	all := bytes.ToLower(f.fileBytes(t))
	for _, s := range []string{"dr.quinn", "pat.quinn", goodPassword} {
		if bytes.Contains(all, []byte(s)) {
			t.Errorf("database files contain %q in the clear", s)
		}
	}
}

func TestEnsureRecipient(t *testing.T) {
	f := newFixture(t)
	u, err := f.svc.EnsureRecipient(ctx, " Pat@Example.NET ")
	if err != nil {
		t.Fatal(err)
	}
	if u.Status != store.StatusPending || u.Role != store.RolePatient || u.KeyWrap != store.KeyWrapMaster || len(u.PwVerifier) != 0 {
		t.Errorf("pending user %+v", u)
	}
	if email, _ := f.svc.Email(u); email != "pat@example.net" {
		t.Errorf("email %q", email)
	}
	// The pending private key is wrapped under the master key, bound to the account.
	priv, err := f.ring.UnwrapPrivate(pendingKeyPurpose(u.ID), u.PrivateKeyWrapped)
	if err != nil {
		t.Fatal(err)
	}
	k, err := pcrypto.ReadKey(priv)
	if err != nil || k.Fingerprint() != u.KeyFpr || !k.IsPrivate() {
		t.Fatalf("pending key: %v", err)
	}
	if _, err := f.ring.UnwrapPrivate(pendingKeyPurpose("someone-else"), u.PrivateKeyWrapped); err == nil {
		t.Error("pending key unwraps for another account")
	}
	again, err := f.svc.EnsureRecipient(ctx, "pat@example.net")
	if err != nil || again.ID != u.ID || again.KeyFpr != u.KeyFpr {
		t.Errorf("second call: %+v %v", again, err)
	}
}

func TestEnsureRecipientConcurrent(t *testing.T) {
	f := newFixture(t)
	const n = 10
	ids := make([]string, n)
	fprs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			addr := []string{"new.patient@example.net", "New.Patient@example.net", " new.patient@EXAMPLE.net"}[i%3]
			u, err := f.svc.EnsureRecipient(ctx, addr)
			errs[i] = err
			if err == nil {
				ids[i], fprs[i] = u.ID, u.KeyFpr
			}
		}(i)
	}
	close(start)
	wg.Wait()
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if ids[i] != ids[0] || fprs[i] != fprs[0] {
			t.Errorf("goroutine %d got account %s/%s, goroutine 0 got %s/%s", i, ids[i], fprs[i], ids[0], fprs[0])
		}
	}
	var count int
	if err := f.st.DB().QueryRow(`SELECT COUNT(*) FROM users WHERE email_index = $1`, f.ring.EmailIndex("new.patient@example.net")).Scan(&count); err != nil {
		t.Fatal(err)
	}
	if count != 1 {
		t.Errorf("%d accounts for one address", count)
	}
	// The stored account is the one everybody got, and its key unwraps.
	u, err := f.svc.UserByEmail(ctx, "new.patient@example.net")
	if err != nil || u.ID != ids[0] || u.KeyFpr != fprs[0] {
		t.Fatalf("stored %+v %v", u, err)
	}
	if _, err := f.ring.UnwrapPrivate(pendingKeyPurpose(u.ID), u.PrivateKeyWrapped); err != nil {
		t.Error(err)
	}
}

var appPwFormat = regexp.MustCompile(`^[a-z2-7]{4}(-[a-z2-7]{4}){7}$`)

func TestAppPasswords(t *testing.T) {
	f := newFixture(t)
	lee, err := f.svc.AddUser(ctx, "lee@clinic.example", "staff", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	kim, err := f.svc.AddUser(ctx, "kim@clinic.example", "admin", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := f.svc.AddAppPassword(ctx, "Lee@Clinic.Example", " Thunderbird ")
	if err != nil {
		t.Fatal(err)
	}
	if !appPwFormat.MatchString(secret) {
		t.Errorf("app password %q: want 8 groups of 4 base32 characters", secret)
	}
	second, err := f.svc.AddAppPassword(ctx, "lee@clinic.example", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if second == secret {
		t.Fatal("two app passwords alike")
	}
	kimSecret, err := f.svc.AddAppPassword(ctx, "kim@clinic.example", "laptop")
	if err != nil {
		t.Fatal(err)
	}

	check := func(user, secret string, want *store.User) {
		t.Helper()
		u, err := f.svc.CheckAppPassword(ctx, user, secret)
		if want == nil {
			if !errors.Is(err, ErrBadCredentials) || u != nil {
				t.Errorf("CheckAppPassword(%q, %q) = %v, %v; want ErrBadCredentials", user, secret, u, err)
			}
			return
		}
		if err != nil || u.ID != want.ID {
			t.Errorf("CheckAppPassword(%q, %q) = %v, %v; want %s", user, secret, u, err, want.ID)
		}
	}
	check("lee@clinic.example", secret, lee)
	check("LEE@clinic.example", secret, lee)
	check("lee@clinic.example", " "+second+"\n", lee)
	check("kim@clinic.example", kimSecret, kim)
	// Wrong secret, near misses, and the portal password.
	check("lee@clinic.example", strings.Replace(secret, secret[:1], string("abcdefgh"[(strings.IndexByte("abcdefgh", secret[0])+1)%8]), 1), nil)
	check("lee@clinic.example", secret[:len(secret)-1], nil)
	check("lee@clinic.example", strings.ReplaceAll(secret, "-", ""), nil)
	check("lee@clinic.example", goodPassword, nil)
	check("lee@clinic.example", "", nil)
	// Someone else's username with this secret, and this username with theirs.
	check("kim@clinic.example", secret, nil)
	check("lee@clinic.example", kimSecret, nil)
	check("nobody@clinic.example", secret, nil)

	// Names: unique among active ones, bounded length.
	if _, err := f.svc.AddAppPassword(ctx, "lee@clinic.example", "Thunderbird"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate name: %v", err)
	}
	for _, bad := range []string{"", "   ", strings.Repeat("x", 65)} {
		if _, err := f.svc.AddAppPassword(ctx, "lee@clinic.example", bad); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	if _, err := f.svc.AddAppPassword(ctx, "nobody@clinic.example", "x"); err == nil {
		t.Error("app password for a missing account")
	}

	// Revoking one leaves the other working; the name can then be reused.
	if err := f.svc.RevokeAppPassword(ctx, "lee@clinic.example", "Thunderbird"); err != nil {
		t.Fatal(err)
	}
	check("lee@clinic.example", secret, nil)
	check("lee@clinic.example", second, lee)
	if err := f.svc.RevokeAppPassword(ctx, "lee@clinic.example", "Thunderbird"); err == nil {
		t.Error("revoked twice")
	}
	if err := f.svc.RevokeAppPassword(ctx, "nobody@clinic.example", "phone"); err == nil {
		t.Error("revoked for a missing account")
	}
	fresh, err := f.svc.AddAppPassword(ctx, "lee@clinic.example", "Thunderbird")
	if err != nil {
		t.Fatal(err)
	}
	check("lee@clinic.example", fresh, lee)
	check("lee@clinic.example", secret, nil)

	// Secrets are stored only as keyed hashes.
	all := f.fileBytes(t)
	for _, s := range []string{secret, second, kimSecret, fresh, strings.ReplaceAll(secret, "-", "")} {
		if bytes.Contains(all, []byte(s)) {
			t.Errorf("app password stored in the clear")
		}
	}
}

func TestAppPasswordsOnlyForActiveStaff(t *testing.T) {
	f := newFixture(t)
	if _, err := f.svc.EnsureRecipient(ctx, "pending@example.net"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AddAppPassword(ctx, "pending@example.net", "x"); err == nil {
		t.Error("app password for a pending recipient")
	}
	if _, err := f.svc.AddUser(ctx, "pat@example.net", store.RolePatient, goodPassword); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.AddAppPassword(ctx, "pat@example.net", "x"); err == nil {
		t.Error("app password for a patient")
	}
}

func TestLogin(t *testing.T) {
	f := newFixture(t)
	u, err := f.svc.AddUser(ctx, "lee@clinic.example", "staff", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	got, priv, err := f.svc.Login(ctx, "Lee@Clinic.example", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != u.ID {
		t.Errorf("logged in as %s", got.ID)
	}
	k, err := pcrypto.ReadKey(priv)
	if err != nil || !k.IsPrivate() || k.Fingerprint() != u.KeyFpr {
		t.Fatalf("unlocked key: %v", err)
	}
	// The key opens a message sealed to the account's public key.
	pub, err := pcrypto.ReadKey(u.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := pcrypto.Seal([]byte("hello"), f.ring.Gateway, pub)
	if err != nil {
		t.Fatal(err)
	}
	if body, sig, err := pcrypto.Open(sealed, k, f.ring.Gateway); err != nil || string(body) != "hello" || sig != pcrypto.SigVerified {
		t.Errorf("open: %q %v %v", body, sig, err)
	}

	for _, c := range []struct{ email, pw string }{
		{"lee@clinic.example", "correct horse batterY"},
		{"lee@clinic.example", ""},
		{"lee@clinic.example", goodPassword + " "},
		{"nobody@clinic.example", goodPassword},
		{"", goodPassword},
	} {
		u, priv, err := f.svc.Login(ctx, c.email, c.pw)
		if !errors.Is(err, ErrBadCredentials) || u != nil || priv != nil {
			t.Errorf("Login(%q, %q) = %v, %d key bytes, %v; want ErrBadCredentials", c.email, c.pw, u, len(priv), err)
		}
	}
	// A pending account has no password to sign in with.
	if _, err := f.svc.EnsureRecipient(ctx, "pending@example.net"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.Login(ctx, "pending@example.net", goodPassword); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("pending account login: %v", err)
	}
}

// deliverTo seals raw (and a summary) to u's current key and the escrow key
// and commits it with the given claim tokens, as intake does.
func (f *fixture) deliverTo(t *testing.T, u, sender *store.User, id string, raw []byte, toks ...store.ClaimToken) {
	t.Helper()
	pub, err := pcrypto.ReadKey(u.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	body, err := pcrypto.Seal(raw, f.ring.Gateway, pub, f.ring.Escrow)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := pcrypto.Seal([]byte(`{"subject":"summary of `+id+`"}`), f.ring.Gateway, pub, f.ring.Escrow)
	if err != nil {
		t.Fatal(err)
	}
	err = f.st.Deliver(ctx, store.Delivery{
		Messages: []store.Message{{ID: id, RecipientID: u.ID, SenderID: sender.ID, KeyFpr: u.KeyFpr, CreatedAt: f.now,
			ExpiresAt: f.now.Add(30 * 24 * time.Hour), Size: int64(len(raw)), Policy: "default-portal",
			KeyPackets: body.KeyPackets, Body: body.Data, SummaryKeys: sum.KeyPackets, Summary: sum.Data}},
		ClaimTokens: toks,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) open(t *testing.T, id string, k *pcrypto.Key) (body, summary []byte, err error) {
	t.Helper()
	m, err := f.st.GetMessage(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	body, sig, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: m.KeyPackets, Data: m.Body}, k, f.ring.Gateway)
	if err != nil {
		return nil, nil, err
	}
	if sig != pcrypto.SigVerified {
		t.Errorf("message %s signature %v", id, sig)
	}
	summary, _, err = pcrypto.Open(&pcrypto.Sealed{KeyPackets: m.SummaryKeys, Data: m.Summary}, k, f.ring.Gateway)
	return body, summary, err
}

func TestClaim(t *testing.T) {
	f := newFixture(t)
	sender, err := f.svc.AddUser(ctx, "lee@clinic.example", "staff", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := f.svc.EnsureRecipient(ctx, "pat@example.net")
	if err != nil {
		t.Fatal(err)
	}
	pendingPriv, err := f.ring.UnwrapPrivate(pendingKeyPurpose(pending.ID), pending.PrivateKeyWrapped)
	if err != nil {
		t.Fatal(err)
	}
	pendingKey, err := pcrypto.ReadKey(pendingPriv)
	if err != nil {
		t.Fatal(err)
	}
	raw1, tok1 := f.svc.NewClaimToken(pending.ID, time.Hour)
	raw2, tok2 := f.svc.NewClaimToken(pending.ID, time.Hour)
	msgs := map[string][]byte{
		"m1": []byte("Subject: results\r\n\r\nYour results are fine.\r\n"),
		"m2": []byte("Subject: follow-up\r\n\r\nPlease call us.\r\n"),
	}
	f.deliverTo(t, pending, sender, "m1", msgs["m1"], tok1)
	f.deliverTo(t, pending, sender, "m2", msgs["m2"], tok2)
	for id := range msgs {
		if _, _, err := f.open(t, id, pendingKey); err != nil {
			t.Fatalf("before claim, pending key cannot open %s: %v", id, err)
		}
	}

	// The link is good until used; a weak password does not spend it.
	if u, err := f.svc.CheckClaimToken(ctx, raw1); err != nil || u.ID != pending.ID {
		t.Fatalf("CheckClaimToken: %v", err)
	}
	if _, _, err := f.svc.Claim(ctx, raw1, "short", testIP); !errors.Is(err, ErrWeakPassword) {
		t.Fatalf("weak password: %v", err)
	}
	if _, _, err := f.svc.Claim(ctx, "not-a-token", goodPassword, testIP); !errors.Is(err, ErrBadToken) {
		t.Errorf("made-up token: %v", err)
	}

	u, priv, err := f.svc.Claim(ctx, raw1, goodPassword, testIP)
	if err != nil {
		t.Fatal(err)
	}
	if u.ID != pending.ID || u.Status != store.StatusActive || u.KeyWrap != store.KeyWrapPassword || u.KeyFpr == pending.KeyFpr {
		t.Errorf("claimed account %+v", u)
	}
	claimKey, err := pcrypto.ReadKey(priv)
	if err != nil || claimKey.Fingerprint() != u.KeyFpr {
		t.Fatalf("claim key: %v", err)
	}

	// Sign in with the new password: the key from Login opens every message.
	_, loginPriv, err := f.svc.Login(ctx, "pat@example.net", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	newKey, err := pcrypto.ReadKey(loginPriv)
	if err != nil {
		t.Fatal(err)
	}
	if newKey.Fingerprint() != u.KeyFpr {
		t.Errorf("login key %s, account key %s", newKey.Fingerprint(), u.KeyFpr)
	}
	for id, want := range msgs {
		body, summary, err := f.open(t, id, newKey)
		if err != nil || !bytes.Equal(body, want) || !strings.Contains(string(summary), id) {
			t.Errorf("%s with the new key: %q %q %v", id, body, summary, err)
		}
		// Escrow still opens it (break-glass and recovery).
		body, summary, err = f.open(t, id, f.escrow)
		if err != nil || !bytes.Equal(body, want) || !strings.Contains(string(summary), id) {
			t.Errorf("%s with escrow: %q %v", id, body, err)
		}
		// The pending key no longer can.
		if _, _, err := f.open(t, id, pendingKey); err == nil {
			t.Errorf("%s still opens with the destroyed pending key", id)
		}
	}
	// The pending key is gone from the account.
	if bytes.Equal(u.PrivateKeyWrapped, pending.PrivateKeyWrapped) || u.KeyWrap != store.KeyWrapPassword {
		t.Error("pending key still stored")
	}
	if _, err := f.ring.UnwrapPrivate(pendingKeyPurpose(u.ID), u.PrivateKeyWrapped); err == nil {
		t.Error("the stored key still unwraps with the master key")
	}

	// Both links are now spent: single use, and claiming ends the others.
	for _, raw := range []string{raw1, raw2} {
		if _, err := f.svc.CheckClaimToken(ctx, raw); !errors.Is(err, ErrBadToken) {
			t.Errorf("CheckClaimToken after claim: %v", err)
		}
		if _, _, err := f.svc.Claim(ctx, raw, "another good password", testIP); !errors.Is(err, ErrBadToken) {
			t.Errorf("second claim: %v", err)
		}
	}
	if _, _, err := f.svc.Login(ctx, "pat@example.net", "another good password"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("second claim changed the password: %v", err)
	}
	// New mail after the claim is sealed to the new key, and no claim link is
	// needed for it.
	f.deliverTo(t, u, sender, "m3", []byte("later"))
	if body, _, err := f.open(t, "m3", newKey); err != nil || string(body) != "later" {
		t.Errorf("m3: %q %v", body, err)
	}
}

func TestClaimTokenExpiry(t *testing.T) {
	f := newFixture(t)
	sender, _ := f.svc.AddUser(ctx, "lee@clinic.example", "staff", goodPassword)
	pending, err := f.svc.EnsureRecipient(ctx, "pat@example.net")
	if err != nil {
		t.Fatal(err)
	}
	raw, tok := f.svc.NewClaimToken(pending.ID, time.Hour)
	if !tok.ExpiresAt.Equal(f.now.Add(time.Hour)) || tok.UserID != pending.ID || bytes.Contains(tok.Hash, []byte(raw)) {
		t.Errorf("token %+v", tok)
	}
	f.deliverTo(t, pending, sender, "m1", []byte("x"), tok)
	f.now = f.now.Add(time.Hour)
	if _, err := f.svc.CheckClaimToken(ctx, raw); !errors.Is(err, ErrBadToken) {
		t.Errorf("expired token: %v", err)
	}
	if _, _, err := f.svc.Claim(ctx, raw, goodPassword, testIP); !errors.Is(err, ErrBadToken) {
		t.Errorf("claim with expired token: %v", err)
	}
	if u, _ := f.svc.UserByEmail(ctx, "pat@example.net"); u.Status != store.StatusPending {
		t.Errorf("account changed: %+v", u)
	}
	// The raw token is never stored.
	if bytes.Contains(f.fileBytes(t), []byte(raw)) {
		t.Error("raw claim token stored")
	}
}

// Two claims racing with one link: exactly one wins.
func TestClaimRace(t *testing.T) {
	f := newFixture(t)
	sender, _ := f.svc.AddUser(ctx, "lee@clinic.example", "staff", goodPassword)
	pending, err := f.svc.EnsureRecipient(ctx, "pat@example.net")
	if err != nil {
		t.Fatal(err)
	}
	raw, tok := f.svc.NewClaimToken(pending.ID, time.Hour)
	f.deliverTo(t, pending, sender, "m1", []byte("x"), tok)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, _, errs[i] = f.svc.Claim(ctx, raw, "violet harbor canyon "+string(rune('a'+i)), testIP)
		}(i)
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, ErrBadToken):
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d claims succeeded, want 1", wins)
	}
}

// TestLoginUnknownTakesTheHashQueue (issue 8.1): an unknown address takes
// the same queued hash as a real account, so when no hash can be had
// (here: the caller has gone) both answer the same, and neither reports
// bad credentials for an attempt that was never evaluated.
func TestLoginUnknownTakesTheHashQueue(t *testing.T) {
	f := newFixture(t)
	if _, err := f.svc.AddUser(ctx, "lee@clinic.example", "staff", goodPassword); err != nil {
		t.Fatal(err)
	}
	gone, cancel := context.WithCancel(ctx)
	cancel()
	for _, email := range []string{"lee@clinic.example", "nobody@clinic.example"} {
		if _, _, err := f.svc.Login(gone, email, goodPassword); !errors.Is(err, context.Canceled) {
			t.Errorf("Login(%s) without a hash slot: %v, want context.Canceled", email, err)
		}
	}
}
