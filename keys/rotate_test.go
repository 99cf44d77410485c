package keys_test

// Issue 14.3: key rotation end to end on a real SQLite store, through the
// packages that read what was re-sealed (identity, notify purposes, audit).

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/internal/gpgtest"
	"github.com/phigate/phigate/internal/pgtest"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/store"
)

var (
	ctx   = context.Background()
	quiet = slog.New(slog.NewTextHandler(io.Discard, nil))
)

const pw = "correct horse battery staple"

type world struct {
	t     testing.TB
	dir   string
	cfg   config.Config
	st    *store.SQL
	ring  *keys.Ring
	trail *audit.Trail
	svc   *identity.Service
}

func newWorld(t testing.TB) *world {
	return newWorldOn(t, func(dir string) (*store.SQL, error) { return store.OpenSQLite(ctx, filepath.Join(dir, "phigate.db")) })
}

// newWorldPostgres is a world on a fresh PostgreSQL database
// (internal/pgtest; in CI a missing PostgreSQL fails the test).
func newWorldPostgres(t testing.TB) *world {
	url := pgtest.URL(t)
	return newWorldOn(t, func(string) (*store.SQL, error) { return store.OpenPostgres(ctx, url) })
}

func newWorldOn(t testing.TB, open func(dir string) (*store.SQL, error)) *world {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Server.DataDir = dir
	cfg.ApplyDev()
	cfg.Fill()
	st, err := open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := &world{t: t, dir: dir, cfg: cfg, st: st}
	w.reopen()
	return w
}

// reopen loads the keys from the files and binds them to the database,
// as a gateway (or an admin command) starting now would.
func (w *world) reopen() {
	w.t.Helper()
	if w.trail != nil {
		w.trail.Close()
	}
	r, err := keys.Load(w.cfg, quiet)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := r.Bind(ctx, w.st); err != nil {
		w.t.Fatal(err)
	}
	var eps []audit.KeyEpoch
	for _, e := range r.AuditEpochs() {
		eps = append(eps, audit.KeyEpoch{Epoch: e.Epoch, FromSeq: e.FromSeq, MAC: e.MAC, Enc: e.Enc})
	}
	tr, err := audit.New(audit.Options{Store: w.st, Epochs: eps, CheckpointFile: filepath.Join(w.dir, "audit-checkpoints.jsonl"), Log: quiet})
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { tr.Close() })
	w.ring, w.trail = r, tr
	w.svc = &identity.Service{Store: w.st, Keys: r, Password: pcrypto.TestPasswordParams, Audit: tr}
}

func (w *world) rotation() *keys.Rotation {
	return &keys.Rotation{Cfg: w.cfg, Ring: w.ring, Store: w.st, Audit: w.trail, Actor: "cli:test", Log: quiet}
}

// msg is one stored message and what it must read as.
type msg struct {
	id, to, body, passcode string
}

// population is everything sealed or keyed under the master key.
type population struct {
	staff        string // address
	appPassword  string
	recovery     []string
	partner      string // address with a registered recipient key
	partnerFpr   string
	pending      []string          // addresses of unclaimed accounts
	claimTokens  map[string]string // address -> raw claim token
	active       string            // a claimed patient
	msgs         []msg
	outbox       map[string]string // id -> payload
	push         map[string]string // id -> subscription
	breakGlass   map[string]string // id -> reason
	auditEntries int
}

func (w *world) populate(nPending int) *population {
	t := w.t
	t.Helper()
	p := &population{staff: "staff@clinic.example", partner: "partner@other.example", claimTokens: map[string]string{},
		outbox: map[string]string{}, push: map[string]string{}, breakGlass: map[string]string{}}
	staff, err := w.svc.AddUser(ctx, p.staff, store.RoleStaff, pw)
	if err != nil {
		t.Fatal(err)
	}
	if p.appPassword, err = w.svc.AddAppPassword(ctx, p.staff, "laptop"); err != nil {
		t.Fatal(err)
	}
	totpSealed, err := w.ring.SealField("totp:"+staff.ID, []byte("JBSWY3DPEHPK3PXP"))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.st.SetTOTP(ctx, staff.ID, totpSealed, 0, time.Now()); err != nil {
		t.Fatal(err)
	}
	if p.recovery, err = w.svc.NewRecoveryCodes(ctx, staff); err != nil {
		t.Fatal(err)
	}
	pk, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "Partner", Email: p.partner})
	if err != nil {
		t.Fatal(err)
	}
	arm, _ := pk.PublicArmored()
	if p.partnerFpr, err = w.svc.RegisterRecipientKey(ctx, p.partner, arm, staff.ID); err != nil {
		t.Fatal(err)
	}
	addrs := []string{"active@patient.example"}
	for i := range nPending {
		addrs = append(addrs, fmt.Sprintf("p%d@patient.example", i))
	}
	for i, a := range addrs {
		u, err := w.svc.EnsureRecipient(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := w.svc.PublicKey(u)
		if err != nil {
			t.Fatal(err)
		}
		raw, tok := w.svc.NewClaimToken(u.ID, time.Hour)
		m := msg{id: store.NewID(), to: a, body: "Subject: results\r\n\r\nbody for " + a}
		body, err := pcrypto.Seal([]byte(m.body), w.ring.Gateway, pub, w.ring.Escrow)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := pcrypto.Seal([]byte("summary "+a), w.ring.Gateway, pub, w.ring.Escrow)
		if err != nil {
			t.Fatal(err)
		}
		sm := store.Message{ID: m.id, RecipientID: u.ID, SenderID: staff.ID, KeyFpr: u.KeyFpr, CreatedAt: time.Now(),
			ExpiresAt: time.Now().Add(24 * time.Hour), Size: int64(len(m.body)), Policy: "portal",
			KeyPackets: body.KeyPackets, Body: body.Data, SummaryKeys: sum.KeyPackets, Summary: sum.Data}
		if i%2 == 0 {
			m.passcode = fmt.Sprintf("PC%04d", i)
			sm.PasscodeHash = w.ring.PasscodeMAC(m.id, m.passcode)
		}
		oid := store.NewID()
		payload := "notice for " + a + " " + raw
		sealed, err := w.ring.SealField(notify.PayloadPurpose(oid), []byte(payload))
		if err != nil {
			t.Fatal(err)
		}
		p.outbox[oid] = payload
		// The sender's copy (store/copies.go), sealed to the sender and escrow.
		staffPub, err := w.svc.PublicKey(staff)
		if err != nil {
			t.Fatal(err)
		}
		cp, err := pcrypto.Seal([]byte("copy "+a), w.ring.Gateway, staffPub, w.ring.Escrow)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.st.Deliver(ctx, store.Delivery{Messages: []store.Message{sm}, ClaimTokens: []store.ClaimToken{tok},
			Copies: []store.MessageCopy{{MessageID: m.id, Kind: store.CopySender, KeyPackets: cp.KeyPackets, Data: cp.Data}},
			Outbox: []store.OutboxItem{{ID: oid, Kind: "new-message", UserID: u.ID, MessageID: m.id, Payload: sealed,
				CreatedAt: time.Now(), NextAttemptAt: time.Now().Add(time.Hour)}}}); err != nil {
			t.Fatal(err)
		}
		p.msgs = append(p.msgs, m)
		p.claimTokens[a] = raw
		if i > 0 {
			p.pending = append(p.pending, a)
		}
	}
	// One patient claims before the rotation: an active account.
	p.active = addrs[0]
	if _, _, err := w.svc.Claim(ctx, p.claimTokens[p.active], pw, "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		id := store.NewID()
		sub := fmt.Sprintf(`{"endpoint":"https://push.example/%d"}`, i)
		enc, err := w.ring.SealField("push:"+id, []byte(sub))
		if err != nil {
			t.Fatal(err)
		}
		if err := w.st.AddPushSubscription(ctx, store.PushSubscription{ID: id, UserID: staff.ID,
			EndpointMAC: pcrypto.RandomBytes(32), Host: "push.example", SubEnc: enc, CreatedAt: time.Now()}, 10); err != nil {
			t.Fatal(err)
		}
		p.push[id] = sub
	}
	id := store.NewID()
	reason, _ := w.ring.SealField("break-glass:"+id, []byte("patient unconscious, ER"))
	if err := w.st.AddBreakGlass(ctx, store.BreakGlass{ID: id, ActorID: staff.ID, MessageID: p.msgs[0].id, At: time.Now(), IP: "192.0.2.9", ReasonEnc: reason}); err != nil {
		t.Fatal(err)
	}
	p.breakGlass[id] = "patient unconscious, ER"
	for i := range 5 {
		if err := w.trail.Record(ctx, audit.Entry{Actor: staff.ID, Action: "message.read", ObjectType: "message",
			ObjectID: p.msgs[i%len(p.msgs)].id, Outcome: audit.OK, Details: map[string]string{"to": p.msgs[i%len(p.msgs)].to}}); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// check reads back everything in p through the world's current keys.
func (w *world) check(p *population) {
	t := w.t
	t.Helper()
	staff, err := w.svc.UserByEmail(ctx, p.staff)
	if err != nil {
		t.Fatalf("staff by address: %v", err)
	}
	if a, err := w.svc.Email(staff); err != nil || a != p.staff {
		t.Fatalf("staff address: %q, %v", a, err)
	}
	if _, err := w.svc.CheckAppPassword(ctx, p.staff, p.appPassword); err != nil {
		t.Errorf("app password: %v", err)
	}
	if _, err := w.ring.OpenField("totp:"+staff.ID, staff.TOTPSecretEnc); err != nil {
		t.Errorf("TOTP secret: %v", err)
	}
	if k, err := w.svc.RecipientKey(ctx, p.partner); err != nil || k.Fingerprint() != p.partnerFpr {
		t.Errorf("recipient key: %v", err)
	}
	for _, m := range p.msgs {
		u, err := w.svc.UserByEmail(ctx, m.to)
		if err != nil {
			t.Fatalf("%s: %v", m.to, err)
		}
		stored, err := w.st.GetMessage(ctx, m.id)
		if err != nil {
			t.Fatal(err)
		}
		if m.passcode != "" && !bytes.Equal(stored.PasscodeHash, w.ring.PasscodeMAC(m.id, m.passcode)) {
			t.Errorf("passcode of %s no longer matches", m.id)
		}
		var key *pcrypto.Key
		if u.Status == store.StatusPending {
			// The pending key, unwrapped under the master key.
			priv, err := w.ring.UnwrapPrivate("pending-key:"+u.ID, u.PrivateKeyWrapped)
			if err != nil {
				t.Fatalf("pending key of %s: %v", m.to, err)
			}
			key, _ = pcrypto.ReadKey(priv)
		} else {
			_, priv, err := w.svc.Login(ctx, m.to, pw)
			if err != nil {
				t.Fatalf("login %s: %v", m.to, err)
			}
			key, _ = pcrypto.ReadKey(priv)
		}
		plain, sig, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: stored.KeyPackets, Data: stored.Body}, key, w.ring.Verifier())
		if err != nil || string(plain) != m.body || sig != pcrypto.SigVerified {
			t.Errorf("message to %s: %q %v %v", m.to, plain, sig, err)
		}
	}
	for id, want := range p.outbox {
		it := w.outboxPayload(id)
		got, err := w.ring.OpenField(notify.PayloadPurpose(id), it)
		if err != nil || string(got) != want {
			t.Errorf("outbox %s: %v", id, err)
		}
	}
	subs, err := w.st.PushSubscriptions(ctx, staff.ID)
	if err != nil || len(subs) != len(p.push) {
		t.Fatalf("push subscriptions: %d, %v", len(subs), err)
	}
	for _, s := range subs {
		if got, err := w.ring.OpenField("push:"+s.ID, s.SubEnc); err != nil || string(got) != p.push[s.ID] {
			t.Errorf("push %s: %v", s.ID, err)
		}
	}
	for id, want := range p.breakGlass {
		var enc []byte
		if err := w.st.DB().QueryRowContext(ctx, `SELECT reason_enc FROM break_glass WHERE id = $1`, id).Scan(&enc); err != nil {
			t.Fatal(err)
		}
		if got, err := w.ring.OpenField("break-glass:"+id, enc); err != nil || string(got) != want {
			t.Errorf("break-glass reason: %v", err)
		}
	}
	if _, err := keys.LoadDKIM(w.cfg.Keys.DKIMKeyFile, w.ring, quiet); err != nil {
		t.Errorf("DKIM: %v", err)
	}
	if _, err := keys.LoadVAPID(w.cfg.Keys.VAPIDKeyFile, w.ring, quiet); err != nil {
		t.Errorf("VAPID: %v", err)
	}
	// The whole audit trail verifies, across every key epoch, and the
	// oldest entries' details still decrypt.
	n, err := w.trail.Verify(ctx)
	if err != nil {
		t.Fatalf("audit verify after %d entries: %v", n, err)
	}
	es, err := w.trail.Search(ctx, audit.Query{Action: "message.read", Limit: 100})
	if err != nil || len(es) == 0 || !strings.HasSuffix(es[0].Details["to"], ".example") {
		t.Errorf("old audit details: %v %v", es, err)
	}
}

func (w *world) outboxPayload(id string) []byte {
	var b []byte
	if err := w.st.DB().QueryRowContext(ctx, `SELECT payload FROM outbox WHERE id = $1`, id).Scan(&b); err != nil {
		w.t.Fatal(err)
	}
	return b
}

// failSwitch is the store with the switch transaction failing, as a
// crash at step 3 leaves it (the transaction rolled back).
type failSwitch struct{ *store.SQL }

func (failSwitch) SwitchKeyEpoch(context.Context, store.KeySwitch) (map[string]int, error) {
	return nil, errors.New("killed")
}

// sealedValues is every value of the sealed columns and keyed-hash
// columns now in the database, and the key files.
func (w *world) everySealed() map[string][]byte {
	out := map[string][]byte{}
	for _, c := range store.SealedColumns {
		page, err := w.st.SealedPage(ctx, c, "", 100000)
		if err != nil {
			w.t.Fatal(err)
		}
		for _, v := range page {
			out[c.Table+"."+c.Column+":"+v.ID] = v.Old
		}
	}
	return out
}

func TestRotateMasterInterruptedResumes(t *testing.T) { testRotateMaster(t, newWorld(t)) }

func TestRotateMasterInterruptedResumesPostgres(t *testing.T) {
	testRotateMaster(t, newWorldPostgres(t))
}

func testRotateMaster(t *testing.T, w *world) {
	// Created now so the rotation must re-wrap them.
	if _, err := keys.LoadDKIM(w.cfg.Keys.DKIMKeyFile, w.ring, quiet); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.LoadVAPID(w.cfg.Keys.VAPIDKeyFile, w.ring, quiet); err != nil {
		t.Fatal(err)
	}
	p := w.populate(6)
	oldMaster, err := os.ReadFile(w.cfg.Keys.MasterKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	before := w.everySealed()
	w.check(p)

	// Run 1 stops after 5 values (a limit, as an operator's --limit or
	// a kill between batches leaves it).
	rot := w.rotation()
	rot.Batch, rot.Limit = 2, 5
	res, err := rot.RotateMaster(ctx)
	if !errors.Is(err, keys.ErrPaused) || res.Resealed != 5 {
		t.Fatalf("run 1: %+v, %v; want paused after 5", res, err)
	}
	if _, err := os.Stat(keys.NextMasterFile(w.cfg)); err != nil {
		t.Fatalf("the new key must wait beside the old one: %v", err)
	}
	// Half-way: a gateway starting now has both keys and works.
	w.reopen()
	w.check(p)
	eps, _ := w.st.KeyEpochs(ctx)
	if len(eps) != 2 || eps[1].State != store.EpochRotating || eps[1].Resealed != 5 {
		t.Fatalf("epochs half-way: %+v", eps)
	}
	// Something written half-way (by that gateway) is re-sealed too.
	staff, _ := w.svc.UserByEmail(ctx, p.staff)
	late := store.NewID()
	enc, _ := w.ring.SealField("push:"+late, []byte("late"))
	if err := w.st.AddPushSubscription(ctx, store.PushSubscription{ID: late, UserID: staff.ID, EndpointMAC: pcrypto.RandomBytes(32),
		Host: "push.example", SubEnc: enc, CreatedAt: time.Now()}, 10); err != nil {
		t.Fatal(err)
	}
	p.push[late] = "late"

	// Run 2 re-seals the rest, then is killed at the switch.
	rot = w.rotation()
	rot.Store = failSwitch{w.st}
	if _, err := rot.RotateMaster(ctx); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("run 2: %v", err)
	}
	w.reopen()
	w.check(p)

	// Run 3 finishes.
	rot = w.rotation()
	res, err = rot.RotateMaster(ctx)
	if err != nil {
		t.Fatalf("run 3: %v", err)
	}
	t.Logf("run 3: %+v", res)
	if !res.Resumed || res.Epoch != 2 || res.Counts["users"] == 0 || res.Counts["recovery_codes"] != 10 || res.Counts["recipient_keys"] != 1 {
		t.Errorf("run 3: %+v", res)
	}
	if _, err := os.Stat(keys.NextMasterFile(w.cfg)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".next must be gone: %v", err)
	}
	newMaster, _ := os.ReadFile(w.cfg.Keys.MasterKeyFile)
	if bytes.Equal(newMaster, oldMaster) {
		t.Fatal("the master key file still holds the old key")
	}
	w.reopen()
	w.check(p)
	if w.ring.KeyID() != res.To {
		t.Errorf("active key %s, want %s", w.ring.KeyID(), res.To)
	}
	// The rotation is in the trail: the start, and the switch with counts.
	for _, a := range []string{"keys.rotate_master.start", audit.KeySwitchAction} {
		es, err := w.trail.Search(ctx, audit.Query{Action: a})
		if err != nil || len(es) != 1 {
			t.Fatalf("%s entries: %d, %v", a, len(es), err)
		}
		if a == audit.KeySwitchAction && (es[0].Details["to_key"] != res.To || es[0].Details["recovery_codes"] != "10") {
			t.Errorf("switch entry details: %v", es[0].Details)
		}
	}
	// A pending account claimed after the rotation gets its messages.
	if _, _, err := w.svc.Claim(ctx, p.claimTokens[p.pending[0]], pw, "192.0.2.2"); err != nil {
		t.Fatalf("claim after rotation: %v", err)
	}
	w.check(p)

	// The old master key opens nothing any more.
	old, err := keys.Load(w.cfgWithMaster(t, oldMaster), quiet)
	if err == nil {
		t.Fatalf("the gateway key file still unwraps under the old master key (key %s)", old.KeyID())
	}
	oldRing := w.ringWith(t, oldMaster)
	after := w.everySealed()
	t.Logf("%d sealed values before, %d after", len(before), len(after))
	if len(after) < len(before) {
		t.Fatalf("%d sealed values before, %d after", len(before), len(after))
	}
	for k, v := range after {
		if bytes.Equal(before[k], v) {
			t.Errorf("%s unchanged by the rotation", k)
		}
		c, id, _ := strings.Cut(k, ":")
		opened := false
		for _, purpose := range []string{"email:", "pending-key:", "totp:", "outbox:", "push:", "break-glass:"} {
			if _, err := oldRing.OpenField(purpose+id, v); err == nil {
				opened = true
			}
			if _, err := oldRing.UnwrapPrivate(purpose+id, v); err == nil {
				opened = true
			}
		}
		if opened {
			t.Errorf("%s still opens under the old master key", c)
		}
	}
	for _, a := range []string{p.staff, p.partner, p.active, p.pending[1]} {
		if _, err := w.st.UserByEmailIndex(ctx, oldRing.EmailIndex(a)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the old blind index still finds %s: %v", a, err)
		}
	}
	if _, _, err := w.st.UserByAppPassword(ctx, oldRing.AppPasswordMAC(p.appPassword)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the old key still checks the app password: %v", err)
	}
	if _, err := keys.LoadDKIM(w.cfg.Keys.DKIMKeyFile, oldRing, quiet); err == nil {
		t.Error("DKIM file still unwraps under the old master key")
	}
	if _, err := keys.LoadVAPID(w.cfg.Keys.VAPIDKeyFile, oldRing, quiet); err == nil {
		t.Error("VAPID file still unwraps under the old master key")
	}

	// A second rotation chains on: three epochs, the trail still verifies.
	res2, err := w.rotation().RotateMaster(ctx)
	if err != nil || res2.Epoch != 3 || res2.Resumed {
		t.Fatalf("second rotation: %+v, %v", res2, err)
	}
	w.reopen()
	w.check(p)
	if got := len(w.ring.AuditEpochs()); got != 3 {
		t.Errorf("%d audit epochs, want 3", got)
	}
}

func (w *world) cfgWithMaster(t *testing.T, master []byte) config.Config {
	c := w.cfg
	c.Keys.MasterKeyFile = filepath.Join(t.TempDir(), "old.key")
	if err := os.WriteFile(c.Keys.MasterKeyFile, master, 0o600); err != nil {
		t.Fatal(err)
	}
	c.Dev = false
	return c
}

func (w *world) ringWith(t *testing.T, master []byte) *keys.Ring {
	c := w.cfgWithMaster(t, master)
	raw, err := os.ReadFile(c.Keys.MasterKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := keys.NewRing(k, w.ring.Gateway, w.ring.Escrow)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRotateSigningKeepsOldPublic(t *testing.T) {
	w := newWorld(t)
	p := w.populate(1)
	oldFpr := w.ring.Gateway.Fingerprint()
	res, err := w.rotation().RotateSigning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Old != oldFpr || res.New == oldFpr {
		t.Fatalf("rotation: %+v (old key %s)", res, oldFpr)
	}
	if _, err := os.Stat(w.cfg.Keys.GatewayKeyFile + ".next"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".next must be gone: %v", err)
	}
	w.reopen()
	if w.ring.Gateway.Fingerprint() != res.New {
		t.Fatalf("the gateway now signs with %s, want %s", w.ring.Gateway.Fingerprint(), res.New)
	}
	if h := w.ring.GatewayHistory(); len(h) != 1 || h[0].Fingerprint() != oldFpr || h[0].IsPrivate() {
		t.Fatalf("history: %v", h)
	}
	// Messages signed by the old key verify (check opens every one with
	// Verifier), and only thanks to the kept public key.
	w.check(p)
	stored, _ := w.st.GetMessage(ctx, p.msgs[1].id)
	u, _ := w.svc.UserByEmail(ctx, p.msgs[1].to)
	priv, _ := w.ring.UnwrapPrivate("pending-key:"+u.ID, u.PrivateKeyWrapped)
	key, _ := pcrypto.ReadKey(priv)
	sealed := &pcrypto.Sealed{KeyPackets: stored.KeyPackets, Data: stored.Body}
	if _, sig, err := pcrypto.Open(sealed, key, w.ring.Gateway.Public()); err != nil || sig != pcrypto.SigUnknownSigner {
		t.Errorf("against the new key alone the old signature must be unknown: %v %v", sig, err)
	}
	// New messages are signed by the new key and verify too.
	fresh, err := pcrypto.Seal([]byte("new"), w.ring.Gateway, key.Public(), w.ring.Escrow)
	if err != nil {
		t.Fatal(err)
	}
	if _, sig, err := pcrypto.Open(fresh, key, w.ring.Verifier()); err != nil || sig != pcrypto.SigVerified {
		t.Errorf("new message: %v %v", sig, err)
	}
	// A key that was never the gateway's still does not verify.
	stranger, _ := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "stranger"})
	forged, _ := pcrypto.Seal([]byte("forged"), stranger, key.Public())
	if _, sig, _ := pcrypto.Open(forged, key, w.ring.Verifier()); sig != pcrypto.SigUnknownSigner {
		t.Errorf("a stranger's signature: %v", sig)
	}
	es, err := w.trail.Search(ctx, audit.Query{Action: "keys.rotate_signing"})
	if err != nil || len(es) != 1 || es[0].Details["old"] != oldFpr || es[0].Details["new"] != res.New {
		t.Errorf("audit: %+v %v", es, err)
	}
	// A second rotation keeps both earlier keys.
	res2, err := w.rotation().RotateSigning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.reopen()
	if len(w.ring.GatewayHistory()) != 2 || w.ring.Gateway.Fingerprint() != res2.New {
		t.Errorf("after a second rotation: %d earlier keys", len(w.ring.GatewayHistory()))
	}
	w.check(p)
}

// TestRotateSigningResumes: a crash after the new key was written to
// .next (before the database recorded it) is finished by the next run
// with that same key.
func TestRotateSigningResumes(t *testing.T) {
	w := newWorld(t)
	p := w.populate(1)
	pending, _ := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "next gateway"})
	priv, _ := pending.PrivateBytes()
	wrapped, err := w.ring.WrapPrivate("gateway-key", priv)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(w.cfg.Keys.GatewayKeyFile+".next", wrapped, 0o600); err != nil {
		t.Fatal(err)
	}
	w.reopen() // a gateway started meanwhile still signs with the old key
	if w.ring.Gateway.Fingerprint() == pending.Fingerprint() {
		t.Fatal("the half-written key must not be in use")
	}
	res, err := w.rotation().RotateSigning(ctx)
	if err != nil || res.New != pending.Fingerprint() {
		t.Fatalf("resumed rotation: %+v, %v; want %s", res, err, pending.Fingerprint())
	}
	w.reopen()
	w.check(p)
}

func TestRewrapEscrowKeepsBodies(t *testing.T) { testRewrapEscrow(t, newWorld(t)) }

func TestRewrapEscrowKeepsBodiesPostgres(t *testing.T) { testRewrapEscrow(t, newWorldPostgres(t)) }

func testRewrapEscrow(t *testing.T, w *world) {
	p := w.populate(3)
	// The officer's old escrow key (dev mode wrote it beside the data).
	oldPriv, _ := os.ReadFile(filepath.Join(w.dir, "escrow-private.asc"))
	oldPass, _ := os.ReadFile(filepath.Join(w.dir, "escrow-passphrase.txt"))
	oldEscrow, err := pcrypto.UnlockArmored(oldPriv, []byte(strings.TrimSpace(string(oldPass))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.rotation().RewrapEscrow(ctx, oldEscrow); err == nil {
		t.Fatal("re-wrapping to the same escrow key must be refused")
	}
	before := map[string]*store.Message{}
	var ids []string
	for _, m := range p.msgs {
		before[m.id], _ = w.st.GetMessage(ctx, m.id)
		ids = append(ids, m.id)
	}
	copiesBefore, err := w.st.MessageCopies(ctx, store.CopySender, ids...)
	if err != nil || len(copiesBefore) != len(ids) {
		t.Fatalf("copies: %d %v", len(copiesBefore), err)
	}
	// A new escrow key: the configuration names its public half.
	newEscrow, _ := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "escrow 2"})
	pub, _ := newEscrow.PublicArmored()
	if err := os.WriteFile(w.cfg.Keys.EscrowPublicKeyFile, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	w.reopen()
	if w.ring.Escrow.Fingerprint() != newEscrow.Fingerprint() {
		t.Fatal("new messages must be encrypted to the new escrow key")
	}
	rot := w.rotation()
	rot.Batch = 2
	res, err := rot.RewrapEscrow(ctx, oldEscrow)
	if err != nil {
		t.Fatal(err)
	}
	if res.Rewrapped != len(p.msgs) || res.Skipped != 0 || res.Copies != len(p.msgs) {
		t.Errorf("first run: %+v, want %d re-wrapped", res, len(p.msgs))
	}
	for _, m := range p.msgs {
		after, _ := w.st.GetMessage(ctx, m.id)
		b := before[m.id]
		// Bodies untouched: the encrypted data packets are the same bytes.
		if !bytes.Equal(after.Body, b.Body) || !bytes.Equal(after.Summary, b.Summary) {
			t.Errorf("%s: the encrypted data changed", m.id)
		}
		bs, _ := pcrypto.ParseSealed(append(append([]byte(nil), b.KeyPackets...), b.Body...))
		as, _ := pcrypto.ParseSealed(append(append([]byte(nil), after.KeyPackets...), after.Body...))
		if !bytes.Equal(bs.Data, as.Data) {
			t.Errorf("%s: the SEIPD packet changed", m.id)
		}
		if bytes.Equal(after.KeyPackets, b.KeyPackets) || bytes.Equal(after.SummaryKeys, b.SummaryKeys) {
			t.Errorf("%s: key packets not re-wrapped", m.id)
		}
		for _, sl := range []*pcrypto.Sealed{{KeyPackets: after.KeyPackets, Data: after.Body}, {KeyPackets: after.SummaryKeys, Data: after.Summary}} {
			if _, _, err := pcrypto.Open(sl, newEscrow, w.ring.Verifier()); err != nil {
				t.Errorf("%s: the new escrow key cannot open it: %v", m.id, err)
			}
			if _, _, err := pcrypto.Open(sl, oldEscrow, w.ring.Verifier()); !errors.Is(err, pcrypto.ErrNotRecipient) {
				t.Errorf("%s: the old escrow key still opens it: %v", m.id, err)
			}
		}
		plain, _, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: after.KeyPackets, Data: after.Body}, newEscrow, nil)
		if err != nil || string(plain) != m.body {
			t.Errorf("%s via the new escrow key: %q %v", m.id, plain, err)
		}
	}
	copiesAfter, _ := w.st.MessageCopies(ctx, store.CopySender, ids...)
	for id, c := range copiesAfter {
		b := copiesBefore[id]
		if !bytes.Equal(c.Data, b.Data) || bytes.Equal(c.KeyPackets, b.KeyPackets) {
			t.Errorf("copy of %s: data changed or key packets not re-wrapped", id)
		}
		sl := &pcrypto.Sealed{KeyPackets: c.KeyPackets, Data: c.Data}
		if _, _, err := pcrypto.Open(sl, newEscrow, nil); err != nil {
			t.Errorf("copy of %s: the new escrow key cannot open it: %v", id, err)
		}
		if _, _, err := pcrypto.Open(sl, oldEscrow, nil); !errors.Is(err, pcrypto.ErrNotRecipient) {
			t.Errorf("copy of %s: the old escrow key still opens it: %v", id, err)
		}
	}
	// The recipients still read (check logs in or unwraps and opens).
	w.check(p)
	// A second run finds nothing left (resumable: an interrupted run is
	// just run again).
	res, err = w.rotation().RewrapEscrow(ctx, oldEscrow)
	if err != nil || res.Rewrapped != 0 || res.Copies != 0 || res.Skipped != len(p.msgs) {
		t.Errorf("second run: %+v, %v", res, err)
	}
	es, err := w.trail.Search(ctx, audit.Query{Action: "keys.rewrap_escrow"})
	if err != nil || len(es) != 4 || es[0].Details["copies"] != "2" || es[2].Details["messages"] != "2" || es[3].Details["messages"] != "2" {
		t.Errorf("audit: one entry per batch with its count: %+v %v", es, err)
	}
	// Recovery with the new escrow key works (identity.Recover).
	u, _ := w.svc.UserByEmail(ctx, p.active)
	if _, err := w.svc.Recover(ctx, u.ID, newEscrow); err != nil {
		t.Errorf("recover with the new escrow key: %v", err)
	}
}

// TestSigningHistoryWithGPG: gpg, given the exported signing keys (what
// `phigate keys export-signing` prints), verifies a message signed before
// a signing-key rotation and one signed after it.
func TestSigningHistoryWithGPG(t *testing.T) {
	g := gpgtest.New(t)
	w := newWorld(t)
	reader, _ := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "reader"})
	priv, _ := reader.PrivateBytes()
	g.MustRun(priv, "--import")
	body := []byte("Subject: x\r\n\r\nsigned before the rotation\r\n")
	before, err := pcrypto.Seal(body, w.ring.Gateway, reader.Public(), w.ring.Escrow)
	if err != nil {
		t.Fatal(err)
	}
	oldFpr := w.ring.Gateway.Fingerprint()
	res, err := w.rotation().RotateSigning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.reopen()
	after, _ := pcrypto.Seal(body, w.ring.Gateway, reader.Public(), w.ring.Escrow)
	bundle, err := w.ring.SigningKeysArmored()
	if err != nil {
		t.Fatal(err)
	}
	_, st := g.MustRun(bundle, "--import")
	if n := strings.Count(st, "[GNUPG:] IMPORT_OK"); n != 2 {
		t.Fatalf("gpg imported %d keys, want the current and the earlier one:\n%s", n, st)
	}
	for _, c := range []struct {
		msg *pcrypto.Sealed
		fpr string
	}{{before, oldFpr}, {after, res.New}} {
		out, st := g.MustRun(c.msg.Bytes(), "--decrypt")
		if out != string(body) || !strings.Contains(st, "[GNUPG:] VALIDSIG "+strings.ToUpper(c.fpr)) {
			t.Errorf("gpg: want a valid signature by %s:\n%s", c.fpr, st)
		}
	}
}
