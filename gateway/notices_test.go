package gateway_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/store"
)

// failNotice commits a sealed notice row as the dispatcher leaves one
// that failed: given up (next attempt in 2200) or retrying later.
func failNotice(t *testing.T, h *e2e.Harness, kind string, n notify.Notice, userID string, givenUp bool) string {
	t.Helper()
	ctx := context.Background()
	it, err := notify.NewItem(h.G.Keys, kind, n, userID, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := h.G.Store.Deliver(ctx, store.Delivery{Outbox: []store.OutboxItem{it}}); err != nil {
		t.Fatal(err)
	}
	attempts, next := 3, time.Now().Add(time.Hour)
	if givenUp {
		attempts, next = 40, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if err := h.G.Store.OutboxRetry(ctx, it.ID, attempts, next, "550 5.1.1 mailbox unavailable"); err != nil {
		t.Fatal(err)
	}
	return it.ID
}

type failedJSON struct {
	Notices []struct {
		ID, Kind, Channel, To, Error string
		Attempts                     int
		GivenUp                      bool `json:"given_up"`
	}
}

// Issue 10.6: an admin sees the failed notices (to whom, what kind, how
// many attempts, why) on the page and in the API, and a retry, audited,
// sends one at once; staff see neither.
func TestAdminFailedNotices(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	addAdmin(t, h, "admin@clinic.example")
	ctx := context.Background()
	_, _ = claimNew(t, h, pass, "failing.patient@example.net", patientPW)
	patient, err := h.G.Identity.UserByEmail(ctx, "failing.patient@example.net")
	if err != nil {
		t.Fatal(err)
	}
	sent := len(h.Notices())

	givenUp := failNotice(t, h, notify.KindNewMessage, notify.Notice{To: "failing.patient@example.net",
		Link: h.Cfg.Server.PublicURL + "/inbox", ExpiresAt: time.Now().Add(24 * time.Hour)}, patient.ID, true)
	retrying := failNotice(t, h, notify.KindSecurityAlert, notify.Notice{To: "security@clinic.example",
		Link: h.Cfg.Server.PublicURL + "/admin/alerts", Alert: "Lock-out of account 42"}, "", false)
	// A push row names its device owner's account (its payload is a device
	// reference, never opened for the list).
	push := failNotice(t, h, notify.KindPush, notify.Notice{}, patient.ID, true)

	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	var list failedJSON
	admin.JSON("GET", "/api/v1/admin/notices", nil, 200, &list)
	if len(list.Notices) != 3 {
		t.Fatalf("%d failed notices listed, want 3: %+v", len(list.Notices), list)
	}
	byID := map[string]int{}
	for i, n := range list.Notices {
		byID[n.ID] = i
	}
	g, r, p := list.Notices[byID[givenUp]], list.Notices[byID[retrying]], list.Notices[byID[push]]
	if g.To != "failing.patient@example.net" || !g.GivenUp || g.Attempts != 40 || g.Kind != notify.KindNewMessage ||
		g.Channel != "email" || g.Error != "550 5.1.1 mailbox unavailable" {
		t.Errorf("given-up notice: %+v", g)
	}
	if r.To != "security@clinic.example" || r.GivenUp || r.Attempts != 3 {
		t.Errorf("retrying notice: %+v", r)
	}
	if p.To != "failing.patient@example.net" || p.Channel != "push" || p.Kind != notify.KindPush || !p.GivenUp {
		t.Errorf("push: %+v", p)
	}
	st, _, page := admin.Do("GET", "/admin/notices", nil, nil)
	if st != 200 || !strings.Contains(string(page), "failing.patient@example.net") || !strings.Contains(string(page), "given up") ||
		!strings.Contains(string(page), "/admin/notices/"+givenUp+"/retry") {
		t.Fatalf("admin page: %d\n%s", st, page)
	}

	staffClient, _ := signInStaff(t, h, staff, "staff portal password 123", time.Now())
	for _, p := range []struct{ method, path string }{{"GET", "/api/v1/admin/notices"}, {"GET", "/admin/notices"},
		{"POST", "/api/v1/admin/notices/" + givenUp + "/retry"}} {
		if st, _, _ := staffClient.Do(p.method, p.path, nil, nil); st != 403 {
			t.Errorf("staff %s %s: %d, want 403", p.method, p.path, st)
		}
	}

	// Retry through the API: the notice goes out, leaves the list, and the
	// retry is in the audit trail; a second retry finds nothing to do.
	admin.JSON("POST", "/api/v1/admin/notices/"+givenUp+"/retry", nil, 200, nil)
	files := h.WaitNotices(sent + 1)
	if raw, err := os.ReadFile(files[sent]); err != nil || !strings.Contains(string(raw), "To: <failing.patient@example.net>") {
		t.Errorf("the retried notice is not the failed one:\n%s", raw)
	}
	admin.JSON("GET", "/api/v1/admin/notices", nil, 200, &list)
	if len(list.Notices) != 2 || list.Notices[0].ID == givenUp || list.Notices[1].ID == givenUp {
		t.Errorf("after the retry: %+v", list)
	}
	if st, _, _ := admin.Do("POST", "/api/v1/admin/notices/"+givenUp+"/retry", nil, nil); st != 404 {
		t.Errorf("second retry: %d, want 404", st)
	}
	adminUser, err := h.G.Identity.UserByEmail(ctx, "admin@clinic.example")
	if err != nil {
		t.Fatal(err)
	}
	es, err := h.G.Trail.Search(ctx, audit.Query{Action: "notice.retry", ObjectType: "outbox", ObjectID: givenUp})
	if err != nil || len(es) != 1 || es[0].Actor != adminUser.ID || es[0].Details["kind"] != notify.KindNewMessage {
		t.Fatalf("notice.retry audit: %+v %v", es, err)
	}

	// Retry from the page (a form post) sends the other one.
	// POST-redirect-GET (issue 13.11): the notice is on the page it redirects to.
	if st, hdr, b := admin.Do("POST", "/admin/notices/"+retrying+"/retry", "", nil); st != 303 ||
		!strings.Contains(string(mustGet(t, admin, hdr.Get("Location"))), "will be sent again") {
		t.Fatalf("page retry: %d %s\n%s", st, hdr.Get("Location"), b)
	}
	h.WaitNotices(sent + 2)
}

// Issue 10.6: the sender of an unopened message has its notice sent again
// (a fresh claim link for a pending recipient), from the Sent page and the
// API, at most once per 15 minutes per message, audited; nobody else can,
// and not after the message was opened. The portal runs on a test clock,
// so the re-sent rows are due at that clock's time: the test reads them
// from the outbox rather than wait for the real-time dispatcher.
func TestStaffResendNotice(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	clock := testclock.New(time.Now())
	h.G.Portal.Now = clock.Now // before any request
	ctx := context.Background()
	pass := h.AddStaff(staff)
	const other = "dr.other@clinic.example"
	h.AddStaff(other)
	const rcpt = "resend.patient@example.net"
	msg := e2e.Multipart(staff, "Dr Lee", rcpt, "Results", "body", "<p>body</p>", "r.txt", []byte("data"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{rcpt}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	links := map[string]bool{"/claim/" + e2e.ClaimToken(t, h.WaitNotices(1)[0]): true}
	sender, _ := signInStaff(t, h, staff, "staff portal password 123", time.Now())
	var sent struct{ Messages []struct{ ID string } }
	sender.JSON("GET", "/api/v1/sent", nil, 200, &sent)
	if len(sent.Messages) != 1 {
		t.Fatalf("sent list %+v", sent)
	}
	id := sent.Messages[0].ID
	resend := "/api/v1/sent/" + id + "/resend"
	// newNotice returns the claim link of the one new notice row of the
	// message (sealed in the outbox, due at the test clock's time).
	newNotice := func() string {
		t.Helper()
		due, err := h.G.Store.DueOutbox(ctx, clock.Now(), 100)
		if err != nil {
			t.Fatal(err)
		}
		var fresh []string
		for _, it := range due {
			if it.Kind != notify.KindNewMessage || it.MessageID != id {
				continue
			}
			plain, err := h.G.Keys.OpenField(notify.PayloadPurpose(it.ID), it.Payload)
			if err != nil {
				t.Fatal(err)
			}
			var n notify.Notice
			if err := json.Unmarshal(plain, &n); err != nil {
				t.Fatal(err)
			}
			if n.To != rcpt || !n.Claim {
				t.Errorf("re-sent notice %+v", n)
			}
			_, link, _ := strings.Cut(n.Link, "://")
			if link = link[strings.Index(link, "/"):]; !links[link] {
				links[link] = true
				fresh = append(fresh, link)
			}
		}
		if len(fresh) != 1 {
			t.Fatalf("%d new notice rows for the message, want 1", len(fresh))
		}
		return fresh[0]
	}

	// Right after the first notice: too soon.
	st, hdr, b := sender.Do("POST", resend, nil, nil)
	if st != 429 || hdr.Get("Retry-After") == "" || !strings.Contains(string(b), "too_soon") {
		t.Fatalf("resend at once: %d %s %s", st, hdr.Get("Retry-After"), b)
	}
	// Not the sender: as if there were no such message.
	stranger, _ := signInStaff(t, h, other, "staff portal password 123", time.Now())
	clock.Add(16 * time.Minute)
	if st, _, _ := stranger.Do("POST", resend, nil, nil); st != 404 {
		t.Errorf("another staff member's resend: %d, want 404", st)
	}

	sender.JSON("POST", resend, nil, 200, nil)
	newNotice()
	if st, _, _ := sender.Do("POST", resend, nil, nil); st != 429 {
		t.Errorf("second resend at once: %d, want 429", st)
	}
	// From the Sent page (a form), 16 minutes later.
	clock.Add(16 * time.Minute)
	if page := string(mustGet(t, sender, "/sent")); !strings.Contains(page, "/sent/"+id+"/resend") {
		t.Fatalf("the Sent page offers no resend:\n%s", page)
	}
	if st, hdr, b := sender.Do("POST", "/sent/"+id+"/resend", "", nil); st != 303 ||
		!strings.Contains(string(mustGet(t, sender, hdr.Get("Location"))), "will get the notice again") {
		t.Fatalf("page resend: %d %s\n%s", st, hdr.Get("Location"), b)
	}
	latest := newNotice()

	staffUser, err := h.G.Identity.UserByEmail(ctx, staff)
	if err != nil {
		t.Fatal(err)
	}
	es, err := h.G.Trail.Search(ctx, audit.Query{Action: "notice.resend", ObjectType: "message", ObjectID: id})
	if err != nil || len(es) != 2 || es[0].Actor != staffUser.ID || es[1].Actor != staffUser.ID {
		t.Fatalf("notice.resend entries: %+v %v", es, err)
	}

	// The re-sent link works; once the recipient opened the message there
	// is nothing to re-send.
	c := h.Client()
	c.JSON("POST", "/api/v1/claim", map[string]string{"token": strings.TrimPrefix(latest, "/claim/"), "password": patientPW}, 200, nil)
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, nil)
	clock.Add(16 * time.Minute)
	if st, _, _ := sender.Do("POST", resend, nil, nil); st != 404 {
		t.Errorf("resend after the message was opened: %d, want 404", st)
	}
	if page := string(mustGet(t, sender, "/sent")); strings.Contains(page, "/sent/"+id+"/resend") {
		t.Error("the Sent page still offers a resend for an opened message")
	}
}

func mustGet(t *testing.T, c *e2e.Client, path string) []byte {
	t.Helper()
	st, _, b := c.Do("GET", path, nil, nil)
	if st != 200 {
		t.Fatalf("GET %s: %d", path, st)
	}
	return b
}
