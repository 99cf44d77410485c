package gateway_test

// Issue 13.1 (links that never strand a patient) and 13.9 (a reference a
// cautious patient can check), through a whole gateway: SMTP in, notices
// out of the maildrop, the portal's pages and API.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/redistest"
	"github.com/phigate/phigate/internal/testclock"
	"github.com/phigate/phigate/store"
)

var noticeRefRe = regexp.MustCompile(`Reference: ([2-9A-Z]{3}-[2-9A-Z]{3})`)

func noticeRef(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m := noticeRefRe.FindSubmatch(b)
	if m == nil {
		t.Fatalf("no reference in notice %s:\n%s", file, b)
	}
	return string(m[1])
}

// startClocked starts a gateway whose links (identity: their making,
// checking and spending) read a test clock, so a claim link can expire
// without waiting a week; everything else keeps real time, so the message
// stays readable and a new notice is due at once.
func startClocked(t *testing.T, redis bool) (*e2e.Harness, *testclock.Clock) {
	clock := testclock.New(time.Now())
	cfg := e2e.Config(t.TempDir())
	if redis {
		// The limiter's counters (and sessions) in Redis, as with several nodes.
		cfg.Redis.URL = "redis://" + redistest.Start(t).Addr + "/0"
	}
	h := e2e.StartWith(t, cfg, func(g *gateway.Gateway) {
		g.Identity.Now = clock.Now // before Start: nothing reads it yet
	})
	return h, clock
}

// An expired claim link offers a new one; fifty presses at once (page and
// API) send exactly one notice, to the address on file only, with the same
// answer to every press; the new link works and the old one does not; the
// notice references show again in the portal after sign-in. Run with the
// limiter in process and in Redis.
func TestClaimNewLink(t *testing.T) {
	t.Run("InProcess", func(t *testing.T) { testClaimNewLink(t, false) })
	t.Run("Redis", func(t *testing.T) { testClaimNewLink(t, true) })
}

func testClaimNewLink(t *testing.T, redis bool) {
	h, clock := startClocked(t, redis)
	ctx := context.Background()
	pass := h.AddStaff(staff)
	const rcpt = "stranded.patient@example.net"
	msg := e2e.Multipart(staff, "Dr Lee", rcpt, "Follow-up", "body", "<p>body</p>", "a.txt", []byte("x"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{rcpt}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	first := h.WaitNotices(1)[0]
	oldToken, firstRef := e2e.ClaimToken(t, first), noticeRef(t, first)

	// Eight days on: the link (7 days) has ended, the message (30) has not.
	clock.Add(8 * 24 * time.Hour)
	c := h.Client()
	st, _, page := c.Do("GET", "/claim/"+oldToken, nil, nil)
	if st != 410 || !bytes.Contains(page, []byte("This link has expired")) ||
		!bytes.Contains(page, []byte(`action="/claim/`+oldToken+`/new-link"`)) || !bytes.Contains(page, []byte("Send me a new link")) ||
		bytes.Contains(page, []byte(`name="password"`)) || bytes.Contains(page, []byte(`type="email"`)) {
		t.Fatalf("expired link page: %d\n%s", st, page)
	}
	var status struct {
		State   string
		NewLink bool `json:"new_link"`
	}
	c.JSON("POST", "/api/v1/claim/status", map[string]string{"token": oldToken}, 200, &status)
	if status.State != "expired" || !status.NewLink {
		t.Fatalf("API status of the expired link: %+v", status)
	}

	// The burst: 25 page presses and 25 API presses at once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	answers := map[string]int{}
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pc := h.Client()
			var key string
			if i%2 == 0 {
				st, hdr, _ := pc.Do("POST", "/claim/"+oldToken+"/new-link", "", nil)
				key = fmt.Sprintf("page %d %s", st, hdr.Get("Location"))
			} else {
				st, _, b := pc.Do("POST", "/api/v1/claim/new-link", map[string]string{"token": oldToken}, nil)
				key = fmt.Sprintf("api %d %s", st, b)
			}
			mu.Lock()
			answers[key]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(answers) != 2 || answers["page 303 /claim/"+oldToken+"/new-link"] != 25 {
		t.Fatalf("the presses were not all answered alike: %v", answers)
	}
	for k := range answers {
		if strings.HasPrefix(k, "api") && (!strings.HasPrefix(k, "api 202 ") || !strings.Contains(k, `"status":"accepted"`)) {
			t.Errorf("API answer %s", k)
		}
	}
	st, _, sentPage := c.Do("GET", "/claim/"+oldToken+"/new-link", nil, nil)
	if st != 200 || !bytes.Contains(sentPage, []byte("we have emailed a new link to the address the message was sent to")) {
		t.Fatalf("answer page: %d\n%s", st, sentPage)
	}

	files := h.WaitNotices(2)
	raw, err := os.ReadFile(files[1])
	if err != nil {
		t.Fatal(err)
	}
	for _, must := range []string{"To: <" + rcpt + ">", "Subject: Your new link for secure messages", "DKIM-Signature:", "Reference: "} {
		if !bytes.Contains(raw, []byte(must)) {
			t.Errorf("the new-link notice lacks %q:\n%s", must, raw)
		}
	}
	if n := bytes.Count(raw, []byte("@example.net")); n != 1 {
		t.Errorf("the new-link notice names %d example.net addresses, want only the recipient's", n)
	}
	newToken, newRef := e2e.ClaimToken(t, files[1]), noticeRef(t, files[1])
	if newToken == oldToken || newRef == firstRef {
		t.Fatal("the new notice repeats the old link or reference")
	}
	// No second notice, however long the dispatcher has to send one.
	time.Sleep(500 * time.Millisecond)
	if n := len(h.Notices()); n != 2 {
		t.Fatalf("%d notices after fifty presses, want 2 (the first and one new link)", n)
	}
	patient, err := h.G.Identity.UserByEmail(ctx, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	es, err := h.G.Trail.Search(ctx, audit.Query{Action: "account.claim.new-link", ObjectType: "user", ObjectID: patient.ID})
	if err != nil || len(es) != 1 || es[0].Actor != "anonymous" {
		t.Fatalf("account.claim.new-link entries: %+v %v", es, err)
	}
	// Most presses never reached the database: the limiter refused them
	// (at most limiter.MaxFailures, 5, are admitted per account).
	if n := strings.Count(h.Logs.String(), "rate limited"); n < 45 {
		t.Errorf("%d presses refused by the limiter, want at least 45", n)
	}

	// The old link stays dead (still offering a new one); the new one sets
	// the password and lands on the message, which shows both references.
	c.JSON("POST", "/api/v1/claim", map[string]string{"token": oldToken, "password": patientPW}, 410, nil)
	st, hdr, _ := c.Do("POST", "/claim/"+newToken, "password=maple+river+lantern+42&confirm=maple+river+lantern+42", nil)
	if st != 303 || !strings.HasPrefix(hdr.Get("Location"), "/messages/") {
		t.Fatalf("claim with the new link: %d -> %s", st, hdr.Get("Location"))
	}
	for _, path := range []string{hdr.Get("Location"), "/inbox"} {
		page := mustGet(t, c, path)
		for _, ref := range []string{firstRef, newRef} {
			if !bytes.Contains(page, []byte(ref)) {
				t.Errorf("%s does not show the notice reference %s", path, ref)
			}
		}
		if !bytes.Contains(page, []byte("Your notice references")) {
			t.Errorf("%s has no notice reference banner", path)
		}
	}

	var inbox struct {
		Refs []struct{ Reference, About string } `json:"notice_references"`
	}
	c.JSON("GET", "/api/v1/messages", nil, 200, &inbox)
	if len(inbox.Refs) != 2 || inbox.Refs[0].Reference != newRef || inbox.Refs[0].About != "new link" ||
		inbox.Refs[1].Reference != firstRef || inbox.Refs[1].About != "new message" {
		t.Errorf("API notice references %+v, want %s (new link) then %s (new message)", inbox.Refs, newRef, firstRef)
	}

	// A used link of a claimed account points to sign-in and reset, and a
	// press on it sends nothing.
	st, _, page = c.Do("GET", "/claim/"+oldToken, nil, nil)
	if st != 410 || !bytes.Contains(page, []byte("Your password is already set")) || !bytes.Contains(page, []byte(`href="/login"`)) ||
		!bytes.Contains(page, []byte(`href="/reset"`)) || bytes.Contains(page, []byte("Send me a new link")) {
		t.Fatalf("used link of a claimed account: %d\n%s", st, page)
	}
	c.JSON("POST", "/api/v1/claim/new-link", map[string]string{"token": newToken}, 202, nil)
	time.Sleep(300 * time.Millisecond)
	if n := len(h.Notices()); n != 2 {
		t.Errorf("a press on a claimed account's link sent a notice (%d notices)", n)
	}
}

// A recipient whose only message was recalled is not asked for a
// password: the page says the sender withdrew it, the claim is refused on
// both faces, and no new link is offered or sent.
func TestClaimRecalledOnly(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	ctx := context.Background()
	pass := h.AddStaff(staff)
	const rcpt = "withdrawn.patient@example.net"
	msg := e2e.Multipart(staff, "Dr Lee", rcpt, "Sent in error", "body", "<p>body</p>", "a.txt", []byte("x"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{rcpt}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	token := e2e.ClaimToken(t, h.WaitNotices(1)[0])
	c := h.Client()
	if st, _, b := c.Do("GET", "/claim/"+token, nil, nil); st != 200 || !bytes.Contains(b, []byte(`name="password"`)) {
		t.Fatalf("before the recall the link asks for a password: %d", st)
	}

	sender, _ := signInStaff(t, h, staff, "staff portal password 123", time.Now())
	var sent struct{ Messages []struct{ ID string } }
	sender.JSON("GET", "/api/v1/sent", nil, 200, &sent)
	sender.JSON("POST", "/api/v1/sent/"+sent.Messages[0].ID+"/recall", nil, 200, nil)

	st, _, page := c.Do("GET", "/claim/"+token, nil, nil)
	if st != 410 || !bytes.Contains(page, []byte("The sender withdrew this message")) ||
		!bytes.Contains(page, []byte("you don&#39;t need to set a password")) ||
		bytes.Contains(page, []byte(`name="password"`)) || bytes.Contains(page, []byte("Send me a new link")) {
		t.Fatalf("recalled-only link page: %d\n%s", st, page)
	}
	var status struct {
		State   string
		NewLink bool `json:"new_link"`
	}
	c.JSON("POST", "/api/v1/claim/status", map[string]string{"token": token}, 200, &status)
	if status.State != "withdrawn" || status.NewLink {
		t.Errorf("API status: %+v", status)
	}
	var refusal struct{ Error, State string }
	c.JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": patientPW}, 410, &refusal)
	if refusal.Error != "nothing_to_read" || refusal.State != "withdrawn" {
		t.Errorf("API claim of a recalled-only account: %+v", refusal)
	}
	st, _, page = c.Do("POST", "/claim/"+token, "password=maple+river+lantern+42&confirm=maple+river+lantern+42", nil)
	if st != 410 || !bytes.Contains(page, []byte("The sender withdrew this message")) {
		t.Errorf("page claim of a recalled-only account: %d\n%s", st, page)
	}
	u, err := h.G.Identity.UserByEmail(ctx, rcpt)
	if err != nil || u.Status != store.StatusPending {
		t.Fatalf("account after the refused claims: %+v %v", u, err)
	}
	c.JSON("POST", "/api/v1/claim/new-link", map[string]string{"token": token}, 202, nil)
	time.Sleep(300 * time.Millisecond)
	if n := len(h.Notices()); n != 1 {
		t.Errorf("%d notices: a new link went to an account with nothing to read", n)
	}
}

// A link that never existed gets the plain page and the same answer to a
// press as any other link.
func TestClaimUnknownLink(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	c := h.Client()
	const bogus = "not-a-real-token-at-all-xxxxxxxxxxxxxxxxxxxx"
	st, _, page := c.Do("GET", "/claim/"+bogus, nil, nil)
	if st != 410 || !bytes.Contains(page, []byte("This link can&#39;t be used")) || bytes.Contains(page, []byte(`name="password"`)) {
		t.Fatalf("unknown link: %d\n%s", st, page)
	}
	st, hdr, _ := c.Do("POST", "/claim/"+bogus+"/new-link", "", nil)
	if st != 303 || hdr.Get("Location") != "/claim/"+bogus+"/new-link" {
		t.Fatalf("press on an unknown link: %d %s", st, hdr.Get("Location"))
	}
	if len(h.Notices()) != 0 {
		t.Error("a notice went out for an unknown link")
	}
}
