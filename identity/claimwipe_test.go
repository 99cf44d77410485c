package identity

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// TestClaimLeavesNoPendingKey (issue 8.7): once an account is claimed, its
// pending key (as stored, wrapped under the master key) and the key packets
// its messages had for that key are gone from every database file, not
// merely unreferenced: secure_delete zeroes freed space and the WAL, which
// held earlier page versions, is checkpointed and truncated.
func TestClaimLeavesNoPendingKey(t *testing.T) {
	f := newFixture(t)
	sender, err := f.svc.AddUser(ctx, "lee@clinic.example", "staff", goodPassword)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := f.svc.EnsureRecipient(ctx, "pat@example.net")
	if err != nil {
		t.Fatal(err)
	}
	var raw string
	// Several deliveries, each with its notice's token, as mail keeps
	// arriving for a pending account: each touches the account's row.
	for i := range 4 {
		r, tok := f.svc.NewClaimToken(pending.ID, time.Hour)
		if i == 0 {
			raw = r
		}
		f.deliverTo(t, pending, sender, fmt.Sprintf("m%d", i), []byte(fmt.Sprintf("Subject: note %d\r\n\r\nBody %d.\r\n", i, i)), tok)
	}
	old, err := f.st.MessageKeysForUser(ctx, pending.ID)
	if err != nil || len(old) != 4 {
		t.Fatalf("message keys: %d, %v", len(old), err)
	}
	secrets := map[string][]byte{"pending key": pending.PrivateKeyWrapped}
	for _, k := range old {
		secrets["key packets of "+k.MessageID] = k.KeyPackets
		secrets["summary key packets of "+k.MessageID] = k.SummaryKeys
	}
	before := f.fileBytes(t)
	for what, b := range secrets {
		if !bytes.Contains(before, b) {
			t.Fatalf("%s not found in the files before the claim: the search would prove nothing", what)
		}
	}

	if _, _, err := f.svc.Claim(ctx, raw, goodPassword, testIP); err != nil {
		t.Fatal(err)
	}
	after := f.fileBytes(t)
	// The packets for the escrow key are the same before and after the
	// re-wrap and stay, as they should: only what is not in the current
	// rows must be gone.
	current, err := f.st.MessageKeysForUser(ctx, pending.ID)
	if err != nil {
		t.Fatal(err)
	}
	var kept []byte
	for _, k := range current {
		kept = append(append(kept, k.KeyPackets...), k.SummaryKeys...)
	}
	for what, b := range secrets {
		checked := 0
		for at := 0; at+32 <= len(b); at += 8 {
			w := b[at : at+32]
			if bytes.Contains(kept, w) {
				continue
			}
			checked++
			if bytes.Contains(after, w) {
				t.Errorf("%s (bytes %d..%d) still in the database files after the claim", what, at, at+32)
				break
			}
		}
		if checked == 0 {
			t.Errorf("%s: nothing of it was replaced, so nothing was checked", what)
		}
	}
}
