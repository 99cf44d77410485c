package store

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/pgtest"
)

func openPG(t *testing.T) *SQL {
	t.Helper()
	s, err := OpenPostgres(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	return closing(t, s)
}

// TestDumpLoadPostgres: a logical dump of a PostgreSQL store loads into an
// empty one value for value (a second dump is byte for byte the first),
// is refused by a store holding data, and a cut or altered dump loads
// nothing.
func TestDumpLoadPostgres(t *testing.T) {
	ctx := context.Background()
	src := openPG(t)
	staff := mkUser(t, src, RoleStaff, StatusActive)
	pending := mkUser(t, src, RolePatient, StatusPending)
	m := mkMsg(pending, staff, t0)
	deliver(t, src, Delivery{Messages: []Message{m}, ClaimTokens: []ClaimToken{mkToken(pending, t0, time.Hour)},
		Outbox: []OutboxItem{mkOutbox(pending.ID, m.ID, t0)}})
	var dump bytes.Buffer
	counts, err := src.Dump(ctx, &dump)
	if err != nil {
		t.Fatal(err)
	}
	if counts["users"] != 2 || counts["messages"] != 1 || counts["outbox"] != 1 || counts["claim_tokens"] != 1 {
		t.Fatalf("dump counts %v", counts)
	}
	if bytes.Contains(dump.Bytes(), []byte("encrypted-body|")) {
		t.Fatal("bytes not encoded in the dump") // base64, not raw
	}

	dst := openPG(t)
	if empty, err := dst.Empty(ctx); err != nil || !empty {
		t.Fatalf("fresh store: empty=%v, %v", empty, err)
	}
	for name, bad := range map[string][]byte{
		"cut":         dump.Bytes()[:dump.Len()*2/3],
		"no counts":   dump.Bytes()[:bytes.LastIndex(dump.Bytes()[:dump.Len()-1], []byte("\n"))+1],
		"wrong count": bytes.Replace(dump.Bytes(), []byte(`"users":2`), []byte(`"users":3`), 1),
	} {
		if _, err := dst.Load(ctx, bytes.NewReader(bad)); err == nil {
			t.Errorf("%s dump loaded", name)
		}
		if empty, _ := dst.Empty(ctx); !empty {
			t.Fatalf("a refused %s dump left rows behind", name)
		}
	}
	if _, err := dst.Load(ctx, bytes.NewReader(dump.Bytes())); err != nil {
		t.Fatalf("load: %v", err)
	}
	got, err := dst.GetMessage(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	eqMsg(t, *got, m, true)
	var again bytes.Buffer
	if _, err := dst.Dump(ctx, &again); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), dump.Bytes()) {
		t.Error("the loaded store dumps differently from the original")
	}
	if _, err := dst.Load(ctx, bytes.NewReader(dump.Bytes())); err == nil || !strings.Contains(err.Error(), "already holds data") {
		t.Errorf("load over data: %v, want a refusal", err)
	}
}
