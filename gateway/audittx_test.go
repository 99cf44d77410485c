package gateway_test

import (
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/e2e"
)

// TestAuditedChangesInTransaction (issue 9.2): accept, claim, reply,
// recall, quarantine approve and deny, and purge each leave exactly one entry,
// written by the change's own transaction (actor, object), and the chain
// verifies afterwards. The store suite shows the atomicity itself
// (AuditedDeliver, AuditedChanges); this is the whole gateway doing it.
func TestAuditedChangesInTransaction(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	addAdmin(t, h, "admin@clinic.example")
	now := time.Now()
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, now)
	admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": testPolicy, "note": "audit tx test"}, 200, nil)
	ctx := t.Context()
	staffUser, err := h.G.Identity.UserByEmail(ctx, staff)
	if err != nil {
		t.Fatal(err)
	}
	adminUser, err := h.G.Identity.UserByEmail(ctx, "admin@clinic.example")
	if err != nil {
		t.Fatal(err)
	}

	// Accept, claim, and a secure reply (its copy is a stored message).
	c, id := claimNew(t, h, pass, "tx@example.net", patientPW)
	patient, err := h.G.Identity.UserByEmail(ctx, "tx@example.net")
	if err != nil {
		t.Fatal(err)
	}
	var reply struct {
		ReplyID string `json:"reply_id"`
	}
	c.JSON("POST", "/api/v1/messages/"+id+"/reply", map[string]string{"text": "Thank you."}, 200, &reply)
	// Recall.
	sender, _ := signInStaff(t, h, staff, "staff portal password 123", now)
	sender.JSON("POST", "/api/v1/sent/"+id+"/recall", nil, 200, nil)
	// Two held messages: one approved, one denied.
	for _, to := range []string{"held1@example.net", "held2@example.net"} {
		msg := e2e.Multipart(staff, "Dr Lee", to, "Results [hold]", "hello", "<p>hello</p>", "a.txt", []byte("data"))
		if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{to}, Msg: msg}); err != nil {
			t.Fatal(err)
		}
	}
	var q struct {
		Messages []struct{ ID, Recipient string }
	}
	admin.JSON("GET", "/api/v1/admin/quarantine", nil, 200, &q)
	if len(q.Messages) != 2 {
		t.Fatalf("%d held messages, want 2", len(q.Messages))
	}
	approved, denied := q.Messages[0].ID, q.Messages[1].ID
	admin.JSON("POST", "/api/v1/admin/quarantine/"+approved+"/approve", map[string]string{"note": "checked"}, 200, nil)
	admin.JSON("POST", "/api/v1/admin/quarantine/"+denied+"/deny", map[string]string{"note": "not for outside"}, 200, nil)
	// Purge: the recalled and the denied message.
	if n, err := h.G.PurgeOnce(ctx, time.Now()); err != nil || n != 2 {
		t.Fatalf("purge: %d, %v", n, err)
	}

	for _, want := range []struct{ action, objType, objID, actor string }{
		{"message.accept", "message", id, staffUser.ID},
		{"message.accept", "message", approved, staffUser.ID},
		{"message.accept", "message", denied, staffUser.ID},
		{"account.claim", "user", patient.ID, patient.ID},
		{"message.reply", "message", id, patient.ID},
		{"message.recall", "message", id, staffUser.ID},
		{"quarantine.approve", "message", approved, adminUser.ID},
		{"quarantine.deny", "message", denied, adminUser.ID},
		{"message.purge", "message", id, "system"},
		{"message.purge", "message", denied, "system"},
	} {
		es, err := h.G.Trail.Search(ctx, audit.Query{Action: want.action, ObjectType: want.objType, ObjectID: want.objID})
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 {
			t.Errorf("%s on %s: %d entries, want 1", want.action, want.objID, len(es))
			continue
		}
		if e := es[0]; e.Actor != want.actor || e.Outcome != audit.OK || e.Seq == 0 || e.Correlation == "" && want.actor != "system" {
			t.Errorf("%s entry: %+v", want.action, e)
		}
	}
	if es, _ := h.G.Trail.Search(ctx, audit.Query{Action: "message.reply"}); len(es) != 1 || es[0].Details["copy"] != reply.ReplyID {
		t.Errorf("message.reply entry does not name the stored copy %s: %+v", reply.ReplyID, es)
	}
	if es, _ := h.G.Trail.Search(ctx, audit.Query{Action: "message.purge", ObjectType: "message", ObjectID: approved}); len(es) != 0 {
		t.Errorf("a delivered message was recorded as purged")
	}
	// What `phigate audit verify` runs: the whole chain against the
	// checkpoints.
	head, _, err := h.G.Trail.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := h.G.Trail.Verify(ctx); err != nil || n < head {
		t.Fatalf("verify: %d of %d entries, %v", n, head, err)
	}
}
