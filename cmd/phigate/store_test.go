package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/pgtest"
)

// TestStoreMigrateToPostgres: an SQLite installation with a claimed
// account, its messages and their audit entries is copied with `phigate
// store migrate`; a gateway on the same keys and the PostgreSQL copy then
// decrypts every message for the patient and the audit chain verifies.
func TestStoreMigrateToPostgres(t *testing.T) {
	const staff, patient, password = "dr.lee@clinic.example", "pat@example.net", "a very good passphrase"
	cfg := e2e.Config(t.TempDir())
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	texts := []string{"First results.\r\n", "Second results.\r\n"}
	send := func(h *e2e.Harness, text string) {
		t.Helper()
		msg := e2e.Multipart(staff, "Dr Lee", patient, "Results", text, "<p>x</p>", "r.bin", []byte("attached"))
		if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{patient}, Msg: msg}); err != nil {
			t.Fatal(err)
		}
	}
	send(h, texts[0])
	token := e2e.ClaimToken(t, h.WaitNotices(1)[0])
	h.Client().JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": password}, 200, nil)
	send(h, texts[1]) // sealed to the password-wrapped key
	h.WaitNotices(2)
	before, err := h.G.Trail.Verify(context.Background())
	if err != nil || before == 0 {
		t.Fatalf("audit chain before the move: %d entries, %v", before, err)
	}
	h.Stop()

	url := pgtest.URL(t)
	migrate := func() (int, string) {
		var out, errOut bytes.Buffer
		code := run([]string{"store", "migrate", "--from", "sqlite:" + h.Cfg.Database.DSN, "--to", url}, nil, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := migrate(); code != 0 || !strings.Contains(out, "OK: 2 users, 2 messages") {
		t.Fatalf("store migrate: exit %d: %s", code, out)
	}
	// A second run finds the target holding data and copies nothing.
	if code, out := migrate(); code != 1 || !strings.Contains(out, "already holds data") {
		t.Errorf("store migrate into a used database: exit %d: %s", code, out)
	}
	// A missing source is an error, not a new empty database.
	var out bytes.Buffer
	missing := filepath.Join(t.TempDir(), "none.db")
	if code := run([]string{"store", "migrate", "--from", "sqlite:" + missing, "--to", url}, nil, &out, &out); code != 1 {
		t.Errorf("missing source: exit %d: %s", code, out.String())
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("store migrate created the missing source")
	}

	moved := h.Cfg
	moved.Store.URL = url
	h2 := e2e.Start(t, moved)
	c := h2.Client()
	c.JSON("POST", "/api/v1/login", map[string]string{"email": patient, "password": password}, 200, nil)
	var list struct{ Messages []struct{ ID string } }
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != 2 {
		t.Fatalf("%d messages on PostgreSQL, want 2", len(list.Messages))
	}
	var got []string
	for _, m := range list.Messages {
		var msg struct{ Text string }
		c.JSON("GET", "/api/v1/messages/"+m.ID, nil, 200, &msg)
		got = append(got, msg.Text)
	}
	if !(got[0] == texts[0] && got[1] == texts[1]) && !(got[0] == texts[1] && got[1] == texts[0]) {
		t.Errorf("decrypted texts %q, want %q", got, texts)
	}
	after, err := h2.G.Trail.Verify(context.Background())
	if err != nil || after < before {
		t.Errorf("audit chain after the move: %d entries (%d before), %v", after, before, err)
	}
}
