package gateway_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/e2e"
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

	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	var list failedJSON
	admin.JSON("GET", "/api/v1/admin/notices", nil, 200, &list)
	if len(list.Notices) != 2 {
		t.Fatalf("%d failed notices listed, want 2: %+v", len(list.Notices), list)
	}
	byID := map[string]int{list.Notices[0].ID: 0, list.Notices[1].ID: 1}
	g, r := list.Notices[byID[givenUp]], list.Notices[byID[retrying]]
	if g.To != "failing.patient@example.net" || !g.GivenUp || g.Attempts != 40 || g.Kind != notify.KindNewMessage ||
		g.Channel != "email" || g.Error != "550 5.1.1 mailbox unavailable" {
		t.Errorf("given-up notice: %+v", g)
	}
	if r.To != "security@clinic.example" || r.GivenUp || r.Attempts != 3 {
		t.Errorf("retrying notice: %+v", r)
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
	if len(list.Notices) != 1 || list.Notices[0].ID != retrying {
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
	if st, _, b := admin.Do("POST", "/admin/notices/"+retrying+"/retry", "", nil); st != 200 || !strings.Contains(string(b), "will be sent again") {
		t.Fatalf("page retry: %d\n%s", st, b)
	}
	h.WaitNotices(sent + 2)
}
