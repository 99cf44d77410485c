package store

// Issue 14.3: key epochs, re-sealing, the keyed-hash switch, gateway key
// history and escrow re-wrap. Part of the backend suite.

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"
	"time"
)

func rehashFor(kind string, old []byte) []byte {
	h := sha256.Sum256(append([]byte(kind+"|"), old...))
	return h[:]
}

func testKeyRotation(t *testing.T, s Store) {
	ctx := context.Background()
	as := auditOf(t, s)
	if eps, err := s.KeyEpochs(ctx); err != nil || len(eps) != 0 {
		t.Fatalf("fresh store: %v %v", eps, err)
	}
	start := &chained{action: "keys.rotate_master.start", ids: []string{"2"}}
	if err := s.BeginKeyEpoch(ctx, KeyEpoch{Epoch: 1, KeyID: "k1", AuditFromSeq: 1, CreatedAt: t0},
		KeyEpoch{Epoch: 2, KeyID: "k2", CreatedAt: t0}, start.fn); err != nil {
		t.Fatal(err)
	}
	// Resuming with the same key records nothing again; another key is
	// a conflict.
	if err := s.BeginKeyEpoch(ctx, KeyEpoch{Epoch: 1, KeyID: "k1"}, KeyEpoch{Epoch: 2, KeyID: "k2"}, start.fn); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "another rotation", s.BeginKeyEpoch(ctx, KeyEpoch{}, KeyEpoch{Epoch: 3, KeyID: "k3"}, start.fn), ErrConflict)
	if head, _, _ := as.AuditHead(ctx); head != 1 {
		t.Errorf("audit head %d after one start, want 1", head)
	}
	eps, err := s.KeyEpochs(ctx)
	if err != nil || len(eps) != 2 || eps[0].State != EpochActive || eps[1].State != EpochRotating || eps[1].KeyID != "k2" {
		t.Fatalf("epochs: %+v %v", eps, err)
	}

	// Re-sealing pages through a column and writes compare-and-set.
	sender := mkUser(t, s, RoleStaff, StatusActive)
	var users []*User
	for range 5 {
		users = append(users, mkUser(t, s, RolePatient, StatusPending))
	}
	col := SealedColumn{Table: "users", Column: "email_enc", ID: "id"}
	var all []SealedValue
	for after := ""; ; {
		page, err := s.SealedPage(ctx, col, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		if len(page) > 2 {
			t.Fatalf("page of %d, limit 2", len(page))
		}
		all = append(all, page...)
		after = page[len(page)-1].ID
	}
	if len(all) != 6 {
		t.Fatalf("%d sealed addresses, want 6", len(all))
	}
	for i := range all {
		all[i].New = append([]byte("new|"), all[i].Old...)
	}
	all[0].Old = []byte("changed meanwhile") // not written: the next pass takes it
	n, err := s.Reseal(ctx, col, 2, all)
	if err != nil || n != 5 {
		t.Fatalf("Reseal: %d, %v; want 5", n, err)
	}
	if _, err := s.SealedPage(ctx, SealedColumn{Table: "users", Column: "pw_verifier", ID: "id"}, "", 10); err == nil {
		t.Error("a column not in SealedColumns must be refused")
	}
	eps, _ = s.KeyEpochs(ctx)
	if eps[1].Resealed != 5 {
		t.Errorf("resealed %d, want 5", eps[1].Resealed)
	}

	// The switch: keyed hashes hashed again, recipient keys re-keyed,
	// epochs sealed, the marker entry, the new epoch active.
	if err := s.AddAppPassword(ctx, AppPassword{ID: uid("ap"), UserID: sender.ID, Name: "laptop", MAC: hash("ap"), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRecoveryCodes(ctx, sender.ID, [][]byte{hash("rc1"), hash("rc2")}); err != nil {
		t.Fatal(err)
	}
	m := mkMsg(users[0], sender, t0)
	m.PasscodeHash = hash("passcode")
	deliver(t, s, Delivery{Messages: []Message{m}})
	if err := s.SetRecipientKey(ctx, RecipientKey{EmailIndex: hash("partner"), Fingerprint: "fpr", PublicKeyEnc: []byte("sealed-key"), AddedBy: sender.ID, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	sw := KeySwitch{Epoch: 2, At: t0, NewKeyID: "k2", Rehash: rehashFor,
		RecipientKey: func(oldIdx, newIdx, sealed []byte) ([]byte, error) {
			return append([]byte("resealed|"), sealed...), nil
		},
		SealEpoch: func(e KeyEpoch) ([]byte, error) { return []byte("epoch-secret"), nil },
	}
	// A failure inside the switch changes nothing.
	failing := sw
	failing.RecipientKey = func(_, _, _ []byte) ([]byte, error) { return nil, errors.New("boom") }
	failing.Audit = func(map[string]int) AuditFunc { return (&chained{action: "x", ids: []string{"2"}}).fn }
	if _, err := s.SwitchKeyEpoch(ctx, failing); err == nil {
		t.Fatal("a failing switch must fail")
	}
	if u, err := s.UserByID(ctx, sender.ID); err != nil || string(u.EmailIndex) != string(sender.EmailIndex) {
		t.Fatalf("a failed switch left a re-keyed index: %v", err)
	}
	var counts map[string]int
	sw.Audit = func(c map[string]int) AuditFunc {
		counts = c
		return (&chained{action: "keys.rotate_master", ids: []string{"2"}}).fn
	}
	got, err := s.SwitchKeyEpoch(ctx, sw)
	if err != nil {
		t.Fatal(err)
	}
	if got["users"] != 6 || got["app_passwords"] != 1 || got["recovery_codes"] != 2 || got["passcodes"] != 1 ||
		got["recipient_keys"] != 1 || got["resealed"] != 5 || counts["users"] != 6 {
		t.Errorf("counts %v (audit saw %v)", got, counts)
	}
	u, err := s.UserByEmailIndex(ctx, rehashFor("index", sender.EmailIndex))
	if err != nil || u.ID != sender.ID {
		t.Errorf("user by the re-keyed index: %v", err)
	}
	if _, _, err := s.UserByAppPassword(ctx, rehashFor("app-password", hash("ap"))); err != nil {
		t.Errorf("app password by the re-keyed hash: %v", err)
	}
	if ok, err := s.UseRecoveryCode(ctx, sender.ID, rehashFor("recovery", hash("rc2")), t0); !ok || err != nil {
		t.Errorf("recovery code by the re-keyed hash: %v %v", ok, err)
	}
	if ok, _ := s.UseRecoveryCode(ctx, sender.ID, hash("rc1"), t0); ok {
		t.Error("the old recovery-code hash still matches")
	}
	gm, _ := s.GetMessage(ctx, m.ID)
	eqBytes(t, "passcode", gm.PasscodeHash, rehashFor("recovery", hash("passcode")))
	rk, err := s.RecipientKeyByIndex(ctx, rehashFor("index", hash("partner")))
	if err != nil {
		t.Fatal(err)
	}
	eqBytes(t, "recipient key", rk.PublicKeyEnc, []byte("resealed|sealed-key"))
	eps, _ = s.KeyEpochs(ctx)
	if eps[0].State != EpochRetired || string(eps[0].Sealed) != "epoch-secret" || eps[0].SealedBy != "k2" || eps[0].RotatedAt == nil {
		t.Errorf("retired epoch: %+v", eps[0])
	}
	head, _, _ := as.AuditHead(ctx)
	if eps[1].State != EpochActive || eps[1].AuditFromSeq != head+1 {
		t.Errorf("active epoch: %+v (audit head %d)", eps[1], head)
	}
	recs, _ := as.ListAudit(ctx, AuditFilter{AfterSeq: head - 1, Limit: 1})
	if len(recs) != 1 || recs[0].Action != "keys.rotate_master" {
		t.Errorf("the last entry before the new epoch is the switch: %+v", recs)
	}
	if _, err := s.SwitchKeyEpoch(ctx, sw); !errors.Is(err, ErrConflict) {
		t.Errorf("switching twice: %v", err)
	}

	// Gateway key history.
	at := t0.Add(time.Hour)
	old := GatewayKey{Fingerprint: "old", PublicKey: []byte("old-pub"), CreatedAt: t0, RetiredAt: &at}
	next := GatewayKey{Fingerprint: "new", PublicKey: []byte("new-pub"), CreatedAt: at}
	if err := s.RotateGatewayKey(ctx, old, next, (&chained{action: "keys.rotate_signing", ids: []string{"new"}}).fn); err != nil {
		t.Fatal(err)
	}
	// Resumed: nothing doubles.
	if err := s.RotateGatewayKey(ctx, old, next, (&chained{action: "keys.rotate_signing", ids: []string{"new"}}).fn); err != nil {
		t.Fatal(err)
	}
	gks, err := s.GatewayKeys(ctx)
	if err != nil || len(gks) != 2 || gks[0].Fingerprint != "old" || gks[0].RetiredAt == nil || gks[1].RetiredAt != nil {
		t.Fatalf("gateway keys: %+v %v", gks, err)
	}
	eqBytes(t, "old public key", gks[0].PublicKey, []byte("old-pub"))

	// Escrow re-wrap: key packets replaced compare-and-set, with the
	// batch's entry; bodies untouched.
	msgs, err := s.MessageKeyPage(ctx, "", 100)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("MessageKeyPage: %d %v", len(msgs), err)
	}
	nk := msgs[0]
	nk.KeyPackets, nk.SummaryKeys = []byte("rewrapped"), []byte("rewrapped-summary")
	stale := msgs[0]
	stale.KeyPackets = []byte("claimed meanwhile")
	var audited int
	n, err = s.ReplaceMessageKeys(ctx, []MessageKeys{stale}, []MessageKeys{nk}, func(n int) AuditFunc {
		audited = n
		return (&chained{action: "keys.rewrap_escrow", ids: []string{"x"}}).fn
	})
	if err != nil || n != 0 {
		t.Errorf("stale packets: %d %v, want 0", n, err)
	}
	before, _, _ := as.AuditHead(ctx)
	n, err = s.ReplaceMessageKeys(ctx, msgs, []MessageKeys{nk}, func(n int) AuditFunc {
		audited = n
		return (&chained{action: "keys.rewrap_escrow", ids: []string{"x"}}).fn
	})
	if err != nil || n != 1 || audited != 1 {
		t.Fatalf("ReplaceMessageKeys: %d %v (audited %d)", n, err, audited)
	}
	if after, _, _ := as.AuditHead(ctx); after != before+1 {
		t.Errorf("audit head %d -> %d, want one entry", before, after)
	}
	gm, _ = s.GetMessage(ctx, m.ID)
	eqBytes(t, "key packets", gm.KeyPackets, []byte("rewrapped"))
	eqBytes(t, "summary keys", gm.SummaryKeys, []byte("rewrapped-summary"))
	eqBytes(t, "body", gm.Body, m.Body)
	eqBytes(t, "summary", gm.Summary, m.Summary)

	// Emptied values (a sent notice's payload) are not returned, and do
	// not end the paging early.
	var obs []OutboxItem
	for range 3 {
		obs = append(obs, mkOutbox(sender.ID, "", farFuture))
	}
	deliver(t, s, Delivery{Outbox: obs})
	if err := s.OutboxSent(ctx, t0, obs[0].ID, obs[1].ID); err != nil {
		t.Fatal(err)
	}
	ocol := SealedColumn{Table: "outbox", Column: "payload", ID: "id"}
	var seen []string
	for after := ""; ; {
		page, err := s.SealedPage(ctx, ocol, after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		seen = append(seen, page[0].ID)
		after = page[0].ID
	}
	sameIDs(t, "unsent payloads", seen, []string{obs[2].ID})

	// The same for message copies.
	m2 := mkMsg(users[1], sender, t0)
	deliver(t, s, Delivery{Messages: []Message{m2}, Copies: []MessageCopy{
		{MessageID: m2.ID, Kind: CopySender, KeyPackets: []byte("copy-kp"), Data: []byte("copy-data")}}})
	cks, err := s.CopyKeyPage(ctx, CopyKeys{}, 10)
	if err != nil || len(cks) != 1 || cks[0].MessageID != m2.ID {
		t.Fatalf("CopyKeyPage: %+v %v", cks, err)
	}
	if more, _ := s.CopyKeyPage(ctx, cks[0], 10); len(more) != 0 {
		t.Errorf("page after the last copy: %d", len(more))
	}
	nc := cks[0]
	nc.KeyPackets = []byte("copy-rewrapped")
	if n, err := s.ReplaceCopyKeys(ctx, cks, []CopyKeys{nc}, func(int) AuditFunc {
		return (&chained{action: "keys.rewrap_escrow", ids: []string{"c"}}).fn
	}); err != nil || n != 1 {
		t.Fatalf("ReplaceCopyKeys: %d %v", n, err)
	}
	got2, _ := s.MessageCopies(ctx, CopySender, m2.ID)
	eqBytes(t, "copy key packets", got2[m2.ID].KeyPackets, []byte("copy-rewrapped"))
	eqBytes(t, "copy data", got2[m2.ID].Data, []byte("copy-data"))
}
