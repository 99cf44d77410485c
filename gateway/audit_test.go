package gateway_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/e2e"
)

type entriesJSON struct {
	Entries []audit.Entry `json:"entries"`
}

// TestAuditCoverage walks the main flows and checks that each left its
// entry in the trail: who, from where, what, which record, outcome.
func TestAuditCoverage(t *testing.T) {
	dir := t.TempDir()
	h := e2e.Start(t, e2e.Config(dir))
	pass := h.AddStaff(staff)
	addAdmin(t, h, "admin@clinic.example")
	now := time.Now()
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, now)

	// SMTP: a refused AUTH and an accepted message; claim, read, download.
	_ = e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: "wrong", From: staff, To: []string{"x@example.net"}, Msg: []byte("Subject: x\r\n\r\nx\r\n")})
	c, id := claimNew(t, h, pass, "audited@example.net", patientPW)
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, nil)
	c.Do("GET", "/api/v1/messages/"+id+"/attachments/0", nil, nil)
	c.JSON("POST", "/api/v1/logout", nil, 204, nil)
	h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "audited@example.net", "password": "not it at all"}, 401, nil)
	// Admin actions.
	staffUser, _ := h.G.Identity.UserByEmail(t.Context(), staff)
	admin.JSON("POST", "/api/v1/admin/users/"+staffUser.ID+"/role", map[string]string{"role": "security"}, 200, nil)
	admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": testPolicy, "note": "audit test"}, 200, nil)
	key, _ := os.ReadFile(filepath.Join(dir, "escrow-private.asc"))
	pp, _ := os.ReadFile(filepath.Join(dir, "escrow-passphrase.txt"))
	admin.JSON("POST", "/api/v1/admin/break-glass", map[string]string{"message_id": id, "reason": "Emergency: patient in theatre now",
		"escrow_key": string(key), "passphrase": strings.TrimSpace(string(pp))}, 200, nil)
	st, _, export := admin.Do("GET", "/api/v1/audit/export?format=csv", nil, nil)
	if st != 200 {
		t.Fatalf("export: %d", st)
	}
	var v struct {
		OK      bool
		Checked int64
	}
	admin.JSON("POST", "/api/v1/audit/verify", nil, 200, &v)
	if !v.OK || v.Checked < 20 {
		t.Errorf("verify: %+v", v)
	}

	var all entriesJSON
	admin.JSON("GET", "/api/v1/audit?limit=500", nil, 200, &all)
	seen := map[string]audit.Entry{}
	for _, e := range all.Entries {
		key := e.Action + "/" + e.Outcome
		if _, ok := seen[key]; !ok {
			seen[key] = e
		}
	}
	for _, want := range []string{
		"smtp.connect/ok", "smtp.auth/failed", "smtp.auth/ok", "smtp.refuse/refused", "message.accept/ok", "notice.send/ok",
		"account.claim/ok", "auth.login/ok", "message.read/ok", "message.attachment/ok", "auth.logoff/ok", "auth.login/failed",
		"auth.2fa.enrol/ok", "user.role/ok", "policy.apply/ok", "breakglass.open/ok", "audit.export/ok", "audit.verify/ok",
	} {
		e, ok := seen[want]
		if !ok {
			t.Errorf("no %s entry in the trail", want)
			continue
		}
		if e.Actor == "" || e.Time.IsZero() || e.Seq == 0 {
			t.Errorf("%s entry incomplete: %+v", want, e)
		}
	}
	if e := seen["message.read/ok"]; e.ObjectType != "message" || e.ObjectID != id || e.IP != "127.0.0.1" {
		t.Errorf("message.read entry: %+v", e)
	}
	if e := seen["message.accept/ok"]; e.Details["rule"] == "" || e.Details["recipient"] != "audited@example.net" {
		t.Errorf("message.accept details: %+v", e.Details)
	}
	if e := seen["breakglass.open/ok"]; !strings.Contains(e.Details["reason"], "theatre") {
		t.Errorf("break-glass reason not in the (encrypted) details: %+v", e.Details)
	}
	// The export carries the chain head, and the recipient's address and
	// the break-glass reason live only encrypted in the database.
	if !bytes.Contains(export, []byte("# head")) {
		t.Errorf("CSV export lacks the chain head")
	}
	h.Stop()
	// The database files on SQLite, every stored value on PostgreSQL.
	db := h.StoreBytes()
	if !bytes.Contains(db, []byte("breakglass.open")) { // plaintext by design: the scan sees the rows
		t.Errorf("the database read for the scan lacks the audit rows")
	}
	for _, leak := range []string{"audited@example.net", "theatre"} {
		if bytes.Contains(db, []byte(leak)) {
			t.Errorf("%q in the database in the clear", leak)
		}
	}
}

// TestProofOfDelivery: the sender sees their message's history (accepted,
// notified, opened from where); nobody else but admins and officers does.
func TestProofOfDelivery(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	h.AddStaff("other.doctor@clinic.example")
	c, id := claimNew(t, h, pass, "pod@example.net", patientPW)
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, nil)
	now := time.Now()
	sender, _ := signInStaff(t, h, staff, "staff portal password 123", now)
	var hist struct {
		History []audit.Entry `json:"history"`
	}
	sender.JSON("GET", "/api/v1/messages/"+id+"/history", nil, 200, &hist)
	var actions []string
	for _, e := range hist.History {
		actions = append(actions, e.Action)
	}
	got := strings.Join(actions, " ")
	for _, want := range []string{"message.accept", "notice.send", "message.read"} {
		if !strings.Contains(got, want) {
			t.Errorf("history lacks %s: %s", want, got)
		}
	}
	other, _ := signInStaff(t, h, "other.doctor@clinic.example", "staff portal password 123", now)
	other.JSON("GET", "/api/v1/messages/"+id+"/history", nil, 404, nil)
	c.JSON("GET", "/api/v1/messages/"+id+"/history", nil, 404, nil)
}

// TestSecurityAlerts: a lock-out and a break-glass each mail the security
// officer a PHI-free alert, and the admin page lists them.
func TestSecurityAlerts(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Security.IPMaxFailures = 1000
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	c, _ := claimNew(t, h, pass, "alerted.patient@example.net", patientPW)
	c.JSON("POST", "/api/v1/logout", nil, 204, nil)
	before := len(h.Notices())
	for i := 0; i < 5; i++ {
		h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "alerted.patient@example.net", "password": "wrong password number " + string(rune('a'+i))}, 401, nil)
	}
	var alertMail []byte
	waitFor(t, "lock-out alert", func() bool {
		for _, f := range h.Notices()[before:] {
			b, _ := os.ReadFile(f)
			if bytes.Contains(b, []byte("security alert")) && bytes.Contains(b, []byte("security@clinic.example")) {
				alertMail = b
				return true
			}
		}
		return false
	})
	if bytes.Contains(alertMail, []byte("alerted.patient")) {
		t.Errorf("alert names the patient:\n%s", alertMail)
	}
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	var list struct {
		Alerts []struct{ Kind, Text string }
	}
	admin.JSON("GET", "/api/v1/alerts", nil, 200, &list)
	if len(list.Alerts) == 0 || list.Alerts[0].Kind != "lockout" {
		t.Errorf("alerts: %+v", list)
	}
	if st, _, b := admin.Do("GET", "/admin/alerts", nil, nil); st != 200 || !bytes.Contains(b, []byte("lockout")) {
		t.Errorf("alerts page: %d", st)
	}
}

// TestSentAndRecall: the sender's "sent" list shows notified and opened (when,
// from where); a recall hides the content from the recipient, who sees that
// it was recalled; the ciphertext is purged.
func TestSentAndRecall(t *testing.T) {
	dir := t.TempDir()
	h := e2e.Start(t, e2e.Config(dir))
	pass := h.AddStaff(staff)
	c, id := claimNew(t, h, pass, "recall@example.net", patientPW)
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, nil)
	sender, _ := signInStaff(t, h, staff, "staff portal password 123", time.Now())
	var sent struct {
		Messages []struct {
			ID, Recipient, State string
			Notified             *time.Time
			OpenedAt             *time.Time `json:"opened_at"`
			OpenedFrom           string     `json:"opened_from"`
		}
	}
	sender.JSON("GET", "/api/v1/sent", nil, 200, &sent)
	if len(sent.Messages) != 1 || sent.Messages[0].Recipient != "recall@example.net" || sent.Messages[0].Notified == nil ||
		sent.Messages[0].OpenedAt == nil || sent.Messages[0].OpenedFrom != "127.0.0.1" || sent.Messages[0].State != "delivered" {
		t.Fatalf("sent: %+v", sent)
	}
	// Only the sender can recall.
	c.JSON("POST", "/api/v1/sent/"+id+"/recall", nil, 404, nil)
	sender.JSON("POST", "/api/v1/sent/"+id+"/recall", nil, 200, nil)
	sender.JSON("POST", "/api/v1/sent/"+id+"/recall", nil, 404, nil)
	c.JSON("GET", "/api/v1/messages/"+id, nil, 410, nil)
	var list struct {
		Messages []struct {
			ID       string
			Recalled bool
			Subject  string
		}
	}
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != 1 || !list.Messages[0].Recalled || strings.Contains(list.Messages[0].Subject, "For ") {
		t.Errorf("recipient's list after recall: %+v", list)
	}
	n, err := h.G.PurgeOnce(t.Context(), time.Now())
	if err != nil || n != 1 {
		t.Fatalf("purge: %d %v", n, err)
	}
	m, err := h.G.Store.GetMessage(t.Context(), id)
	if err != nil || len(m.Body) != 0 || len(m.KeyPackets) != 0 {
		t.Errorf("ciphertext not purged: %v %d", err, len(m.Body))
	}
	if st, _, b := sender.Do("GET", "/sent", nil, nil); st != 200 || !bytes.Contains(b, []byte("recalled")) {
		t.Errorf("sent page: %d", st)
	}
}
