package gateway_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/e2e"
)

// retentionPolicy keeps records.example's messages 30 days though their
// read window is 1 day; everything else gets the shipped 30-day window
// (and is disposed of when it ends), and unclaimed accounts go 90 days
// after their last message.
const retentionPolicy = `[[rule]]
name = "records"
when.recipient_domains = ["records.example"]
then.action = "portal"
then.expiry_days = 1
then.retain = "30d"

[default]
action = "portal"
expiry_days = 30

[retention]
unclaimed_accounts = "90d"
`

// TestRetentionDisposal (issue 14.4): a message past its rule's retention
// loses its ciphertext (gone from the database files), its recipient is
// told in plain words that it was deleted, an unclaimed account goes with
// its pending key, each run is audited with its counts, and the audit
// chain still verifies.
func TestRetentionDisposal(t *testing.T) {
	ctx := context.Background()
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	if _, err := h.G.PolicyVersions.Apply(ctx, "system", retentionPolicy, "retention test"); err != nil {
		t.Fatal(err)
	}
	pass := h.AddStaff(staff)
	c, id := claimNew(t, h, pass, "kept@records.example", patientPW)
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, nil)

	// A second recipient who never claims the account.
	before := len(h.Notices())
	msg := e2e.Multipart(staff, "Dr Lee", "never@example.net", "Results", "body", "<p>x</p>", "r.pdf", []byte("%PDF-1.4 results"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"never@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	claimLink := e2e.ClaimToken(t, h.WaitNotices(before + 1)[before])

	m, err := h.G.Store.GetMessage(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if want := m.CreatedAt.Add(30 * 24 * time.Hour); !m.DisposeAt.Equal(want) || !m.ExpiresAt.Equal(m.CreatedAt.Add(24*time.Hour)) {
		t.Fatalf("deadlines: read until %s, dispose at %s; want a day and %s", m.ExpiresAt, m.DisposeAt, want)
	}
	// A run of the body's ciphertext (attachment inside), to look for in
	// the database files.
	chunk := bytes.Clone(m.Body[len(m.Body)/2 : len(m.Body)/2+48])
	if !bytes.Contains(h.StoreBytes(), chunk) {
		t.Fatal("the ciphertext sample is not in the database to begin with")
	}

	now := time.Now()
	// Day 2: the read window ended but the 30-day retention holds.
	if n, err := h.G.PurgeOnce(ctx, now.Add(2*24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("purge on day 2: %d, %v", n, err)
	}
	if !bytes.Contains(h.StoreBytes(), chunk) {
		t.Fatal("disposed of before its retention ended")
	}

	// Day 31: both messages are due (30 days retention, 30 days window).
	if n, err := h.G.PurgeOnce(ctx, now.Add(31*24*time.Hour)); err != nil || n != 2 {
		t.Fatalf("purge on day 31: %d, %v", n, err)
	}
	if bytes.Contains(h.StoreBytes(), chunk) {
		t.Error("the disposed message's ciphertext is still in the database files")
	}
	if m, err := h.G.Store.MessageMeta(ctx, id); err != nil || m.PurgedAt == nil {
		t.Fatalf("message row after disposal: %+v, %v", m, err)
	}
	// The recipient is told what happened, in plain words.
	st, _, page := c.Do("GET", "/messages/"+id, nil, nil)
	if st != 410 || !bytes.Contains(page, []byte("This message was deleted on")) || !bytes.Contains(page, []byte("If you still need it, contact")) {
		t.Errorf("message page after disposal: %d\n%s", st, page)
	}
	var apiErr struct{ Error, Code, Message string }
	c.JSON("GET", "/api/v1/messages/"+id, nil, 410, &apiErr)
	if !strings.Contains(apiErr.Code+apiErr.Error, "disposed") {
		t.Errorf("API answer after disposal: %+v", apiErr)
	}
	run := lastRun(t, h)
	if run.Details["messages_expired"] != "2" || run.Details["accounts_unclaimed"] != "0" {
		t.Errorf("retention.purge entry on day 31: %v", run.Details)
	}
	purges, err := h.G.Trail.Search(ctx, audit.Query{Action: "message.purge", ObjectID: id})
	if err != nil || len(purges) != 1 || purges[0].Details["why"] != "retention" || purges[0].Correlation != run.Correlation {
		t.Errorf("message.purge for the message: %+v, %v (run %s)", purges, err, run.Correlation)
	}

	// Day 125: 90 days after its last message, the unclaimed account goes
	// with its pending key; its claim link is dead.
	if _, err := h.G.PurgeOnce(ctx, now.Add(125*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	run = lastRun(t, h)
	if run.Details["accounts_unclaimed"] != "1" || run.Details["pending_keys"] != "1" {
		t.Errorf("retention.purge entry on day 125: %v", run.Details)
	}
	if es, _ := h.G.Trail.Search(ctx, audit.Query{Action: "account.dispose"}); len(es) != 1 {
		t.Errorf("account.dispose entries: %d", len(es))
	}
	if st, _, _ := h.Client().Do("POST", "/api/v1/claim", map[string]string{"token": claimLink, "password": patientPW}, nil); st != 410 {
		t.Errorf("claim with a disposed account's link: %d, want 410", st)
	}
	// The claimed recipient's account stays.
	c.JSON("GET", "/api/v1/messages", nil, 200, nil)

	if _, err := h.G.Trail.Verify(ctx); err != nil {
		t.Fatalf("audit verify after the purges: %v", err)
	}
}

func lastRun(t *testing.T, h *e2e.Harness) audit.Entry {
	t.Helper()
	es, err := h.G.Trail.Search(context.Background(), audit.Query{Action: "retention.purge", Newest: true, Limit: 1})
	if err != nil || len(es) != 1 {
		t.Fatalf("retention.purge entries: %v, %v", es, err)
	}
	return es[0]
}
