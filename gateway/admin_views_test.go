package gateway_test

// Issue 13 points 2-5 against a real gateway: quarantine with context and
// an audited preview, the sender's Sent page with subjects and words, the
// landing pages, plain words instead of ids, times in the organisation's
// zone, and forms that keep what was typed.

import (
	"context"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/web"
)

const heldPolicy = `[[rule]]
name = "hold-tagged"
when.subject_tag = "[hold]"
then.action = "quarantine"
then.reason = "Tagged by the sender for a second look"

[default]
action = "portal"
expiry_days = 14
`

// heldSubject is PHI: it may appear only on the sender's Sent page and on
// a reviewer's preview, never in a notice, URL or audit detail.
const heldSubject = "Biopsy results for Ms Okafor [hold]"

var refRe = regexp.MustCompile(`\b[0-9A-F]{4}-[0-9A-F]{4}\b`)

// adminFixture is a gateway in New York time with a held-message policy,
// a staff sender and a signed-in admin.
type adminFixture struct {
	h           *e2e.Harness
	pass        string
	admin       *e2e.Client
	adminSecret string
	staffC      *e2e.Client
	staffSecret string
}

func newAdminFixture(t *testing.T) *adminFixture {
	cfg := e2e.Config(t.TempDir())
	cfg.Org.TimeZone = "America/New_York"
	h := e2e.Start(t, cfg)
	f := &adminFixture{h: h, pass: h.AddStaff(staff)}
	addAdmin(t, h, "admin@clinic.example")
	now := time.Now()
	f.admin, f.adminSecret = signInStaff(t, h, "admin@clinic.example", adminPW, now)
	f.staffC, f.staffSecret = signInStaff(t, h, staff, "staff portal password 123", now)
	f.admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": heldPolicy, "note": "hold tagged mail"}, 200, nil)
	return f
}

func (f *adminFixture) send(t *testing.T, to, subject string) {
	t.Helper()
	msg := e2e.Multipart(staff, "Dr Lee", to, subject, "Patient SSN 512-34-5678 on file. Please review before the visit.",
		"<p>Patient SSN 512-34-5678 on file.</p>", "results.pdf", []byte("%PDF-1.4 test"))
	if err := e2e.Send(e2e.SendOptions{Addr: f.h.SMTP, User: staff, Pass: f.pass, From: staff, To: []string{to}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
}

func getPage(t *testing.T, c *e2e.Client, method, path, form string, want int) string {
	t.Helper()
	var body any
	if form != "" || method == "POST" {
		body = form
	}
	st, hdr, b := c.Do(method, path, body, nil)
	if st != want {
		t.Fatalf("%s %s: %d, want %d (Location %q): %.400s", method, path, st, want, hdr.Get("Location"), b)
	}
	return string(b)
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s: no %q", what, w)
		}
	}
}

func mustNotContain(t *testing.T, what, body string, nots ...string) {
	t.Helper()
	for _, w := range nots {
		if strings.Contains(body, w) {
			t.Errorf("%s: has %q", what, w)
		}
	}
}

func noticeTo(t *testing.T, h *e2e.Harness, from int, addr, has string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, f := range h.Notices()[from:] {
			b, _ := os.ReadFile(f)
			if strings.Contains(string(b), "To: <"+addr+">") && strings.Contains(string(b), has) {
				return string(b)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no notice to %s with %q", addr, has)
	return ""
}

func entries(t *testing.T, h *e2e.Harness, q audit.Query) []audit.Entry {
	t.Helper()
	es, err := h.G.Trail.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

// Point 2: the quarantine shows context, the preview is an audited
// access, a decision asks for confirmation and a note, and the sender
// hears at once, then of the decision, under the reference their Sent page
// shows.
func TestQuarantineWithContext(t *testing.T) {
	f := newAdminFixture(t)
	h, admin := f.h, f.admin
	before := len(h.Notices())
	f.send(t, "held@example.net", heldSubject)

	// The sender is told at once, PHI-free, with the reference.
	note := noticeTo(t, h, before, staff, "held for review")
	ref := refRe.FindString(note)
	if ref == "" {
		t.Fatalf("held note has no reference: %s", note)
	}
	mustContain(t, "held note", note, "EST", "hold-tagged")
	mustNotContain(t, "held note", note, "Biopsy", "Okafor", "held@example.net")

	// The list: sender's address, rule and reason in words, detectors
	// (counts), size and attachments; no content.
	list := getPage(t, admin, "GET", "/admin/quarantine", "", 200)
	mustContain(t, "quarantine list", list, staff, "held@example.net", "hold-tagged", "Tagged by the sender for a second look",
		"Held because the subject carries the tag [hold]", "1 match: US Social Security numbers", "1 attachment", ref, "EST")
	mustNotContain(t, "quarantine list", list, "Biopsy", "512-34-5678")
	id := regexp.MustCompile(`/admin/quarantine/([0-9a-f]{44})`).FindStringSubmatch(list)
	if id == nil {
		t.Fatal("no review link")
	}
	mid := id[1]
	if web.Ref(mid) != ref {
		t.Errorf("reference %s is not message %s", ref, mid)
	}
	// The API says the same.
	var api struct {
		Messages []struct {
			Sender, Reason, Reference string
			Attachments               int
			Detectors                 []struct {
				Name  string
				Count int
			}
		}
	}
	admin.JSON("GET", "/api/v1/admin/quarantine", nil, 200, &api)
	if len(api.Messages) != 1 || api.Messages[0].Sender != staff || api.Messages[0].Attachments != 1 || api.Messages[0].Reference != ref ||
		len(api.Messages[0].Detectors) != 1 || api.Messages[0].Detectors[0].Name != "ssn" {
		t.Errorf("API quarantine: %+v", api)
	}

	// Reviewing shows no content until asked; asking is recorded.
	review := getPage(t, admin, "GET", "/admin/quarantine/"+mid, "", 200)
	mustNotContain(t, "review page", review, "Biopsy")
	if n := len(entries(t, h, audit.Query{Action: "quarantine.preview"})); n != 0 {
		t.Fatalf("%d previews recorded before any", n)
	}
	preview := getPage(t, admin, "GET", "/admin/quarantine/"+mid+"?preview=1", "", 200)
	mustContain(t, "preview", preview, "Biopsy results for Ms Okafor [hold]", "Patient SSN 512-34-5678 on file. Please review")
	pv := entries(t, h, audit.Query{Action: "quarantine.preview"})
	if len(pv) != 1 || pv[0].ObjectID != mid || pv[0].Outcome != "ok" {
		t.Fatalf("preview entries: %+v", pv)
	}
	for k, v := range pv[0].Details {
		if strings.Contains(v, "Biopsy") {
			t.Errorf("preview entry detail %s holds the subject", k)
		}
	}
	// A second admin who was not a reviewer when it was held gets no preview.
	addAdmin(t, h, "late@clinic.example")
	late, _ := signInStaff(t, h, "late@clinic.example", adminPW, time.Now())
	lp := getPage(t, late, "GET", "/admin/quarantine/"+mid+"?preview=1", "", 200)
	mustNotContain(t, "late admin's preview", lp, "Biopsy")
	mustContain(t, "late admin's preview", lp, "your key is not among them")

	// Approving asks for confirmation and a note; without a note nothing
	// happens and the page says why.
	confirm := getPage(t, admin, "GET", "/admin/quarantine/"+mid+"/approve", "", 200)
	mustContain(t, "confirm page", confirm, "Yes, approve and deliver", `name="note"`)
	refusedPage := getPage(t, admin, "POST", "/admin/quarantine/"+mid+"/approve", "note=", 400)
	mustContain(t, "approve without a note", refusedPage, "Write a short note", `aria-invalid="true"`)
	if n := len(entries(t, h, audit.Query{Action: "quarantine.approve"})); n != 0 {
		t.Fatal("approved without a note")
	}
	st, hdr, _ := admin.Do("POST", "/admin/quarantine/"+mid+"/approve", "note="+url.QueryEscape("Checked with Dr Lee by phone"), nil)
	if st != 303 || hdr.Get("Location") != "/admin/quarantine?done=approved" {
		t.Fatalf("approve: %d %q", st, hdr.Get("Location"))
	}
	done := getPage(t, admin, "GET", "/admin/quarantine?done=approved", "", 200)
	mustContain(t, "after approving", done, "Approved: the message is delivered", "Nothing is held")
	ap := entries(t, h, audit.Query{Action: "quarantine.approve"})
	if len(ap) != 1 || ap[0].Details["note"] != "Checked with Dr Lee by phone" {
		t.Fatalf("approve entry: %+v", ap)
	}
	// The preview is gone with the hold.
	after := getPage(t, admin, "GET", "/admin/quarantine/"+mid+"?preview=1", "", 404)
	mustNotContain(t, "preview after the decision", after, "Biopsy")
	// The sender hears the decision under the same reference.
	decided := noticeTo(t, h, before, staff, "approved")
	mustContain(t, "decision note", decided, ref)
	mustNotContain(t, "decision note", decided, "Biopsy", "Checked with Dr Lee")
	// And finds it on the Sent page by that reference.
	sent := getPage(t, f.staffC, "POST", "/sent", "q="+url.QueryEscape(ref), 200)
	mustContain(t, "Sent search by reference", sent, ref, heldSubject, "1 message of 1 matches")
}

// Point 3: the Sent page in the sender's words, search without PHI in a
// URL, recall with confirmation and POST-redirect-GET; landing pages.
func TestSentPageAndLanding(t *testing.T) {
	f := newAdminFixture(t)
	h := f.h
	f.send(t, "pat@example.net", "Follow-up appointment details")
	f.send(t, "other@example.net", "Vaccination record")
	noticeTo(t, h, 0, "pat@example.net", "/claim/")
	noticeTo(t, h, 0, "other@example.net", "/claim/")
	waitNotified(t, f.staffC, 2)

	sent := getPage(t, f.staffC, "GET", "/sent", "", 200)
	mustContain(t, "Sent page", sent, "Follow-up appointment details", "Vaccination record", "pat@example.net",
		"Recipient notified, not opened yet", "EST", "Times are in America/New_York")
	var api struct {
		Messages []struct{ ID, Subject, Status, Reference string }
	}
	f.staffC.JSON("GET", "/api/v1/sent", nil, 200, &api)
	if len(api.Messages) != 2 || api.Messages[0].Subject != "Vaccination record" || api.Messages[0].Status == "" || api.Messages[0].Reference == "" {
		t.Fatalf("API sent: %+v", api)
	}
	// The admin sees nobody's subjects: the copy is sealed to the sender.
	var adminSent struct{ Messages []struct{ Subject string } }
	f.admin.JSON("GET", "/api/v1/sent", nil, 200, &adminSent)
	if len(adminSent.Messages) != 0 {
		t.Errorf("admin's Sent list: %+v", adminSent)
	}

	// Search: a POST, so the words are never in a URL.
	found := getPage(t, f.staffC, "POST", "/sent", "q=follow-up", 200)
	mustContain(t, "search", found, "Follow-up appointment details", "1 message of 2 matches")
	mustNotContain(t, "search", found, "Vaccination record")
	mustContain(t, "no match", getPage(t, f.staffC, "POST", "/sent", "q=nothing-like-this", 200), "No sent message matches")

	// Recall: a confirmation page, then the POST redirects.
	id := api.Messages[0].ID
	confirm := getPage(t, f.staffC, "GET", "/sent/"+id+"/recall", "", 200)
	mustContain(t, "recall confirmation", confirm, "Recall message "+api.Messages[0].Reference, "Vaccination record", "Yes, recall it")
	st, hdr, _ := f.staffC.Do("POST", "/sent/"+id+"/recall", "", nil)
	if st != 303 || hdr.Get("Location") != "/sent?done=recalled" {
		t.Fatalf("recall: %d %q", st, hdr.Get("Location"))
	}
	mustContain(t, "after recall", getPage(t, f.staffC, "GET", "/sent?done=recalled", "", 200), "Recalled. The recipient", ">Recalled")
	getPage(t, f.staffC, "GET", "/sent/"+id+"/recall", "", 404)

	getPage(t, f.staffC, "GET", "/admin", "", 403)

	// Landing: staff on Sent, admins on the overview, after the second factor.
	land := func(email, pw, secret string) string {
		c := h.Client()
		st, hdr, _ := c.Do("POST", "/login", "email="+url.QueryEscape(email)+"&password="+url.QueryEscape(pw), nil)
		if st != 303 || hdr.Get("Location") != "/login/2fa" {
			t.Fatalf("sign-in of %s: %d %q", email, st, hdr.Get("Location"))
		}
		st, hdr, _ = c.Do("POST", "/login/2fa", "code="+e2e.TOTPCode(t, secret, time.Now().Add(30*time.Second)), nil)
		if st != 303 {
			t.Fatalf("second factor of %s: %d", email, st)
		}
		return hdr.Get("Location")
	}
	if got := land(staff, "staff portal password 123", f.staffSecret); got != "/sent" {
		t.Errorf("staff land on %q, want /sent", got)
	}
	if got := land("admin@clinic.example", adminPW, f.adminSecret); got != "/admin" {
		t.Errorf("admins land on %q, want /admin", got)
	}
}

// waitNotified waits until n of the sender's messages show a sent notice
// (the dispatcher records notice.send after the SMTP hand-over).
func waitNotified(t *testing.T, c *e2e.Client, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		var l struct{ Messages []struct{ Status string } }
		c.JSON("GET", "/api/v1/sent", nil, 200, &l)
		k := 0
		for _, m := range l.Messages {
			if m.Status == "Recipient notified, not opened yet" {
				k++
			}
		}
		if k >= n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("fewer than %d messages notified", n)
}

// Point 3 (overview) and point 4: the admin's overview, and the audit
// trail, history and policy versions in words, in the organisation's zone.
func TestAdminOverviewAndWords(t *testing.T) {
	f := newAdminFixture(t)
	admin := f.admin
	f.send(t, "held@example.net", heldSubject)
	f.send(t, "pat@example.net", "Plain message")

	ov := getPage(t, admin, "GET", "/admin", "", 200)
	mustContain(t, "overview", ov, "1 message waiting", "Review held messages", "not been verified from the portal yet", "Security alerts")
	getPage(t, admin, "GET", "/admin/audit?verify=1", "", 200)
	ov = getPage(t, admin, "GET", "/admin", "", 200)
	mustContain(t, "overview after verifying", ov, "Last verified", "by admin@clinic.example: intact", "EST")

	// A security officer lands there too, without the admin-only parts.
	if _, err := f.h.G.Identity.AddUser(context.Background(), "officer@clinic.example", "security", adminPW); err != nil {
		t.Fatal(err)
	}
	officer, _ := signInStaff(t, f.h, "officer@clinic.example", adminPW, time.Now())
	so := getPage(t, officer, "GET", "/admin", "", 200)
	mustContain(t, "officer's overview", so, "Security alerts", "Last verified")
	// Both find their way back to it from every page.
	mustContain(t, "overview link", ov, `<a href="/admin">Overview</a>`)
	mustContain(t, "officer's overview link", so, `<a href="/admin">Overview</a>`)
	mustNotContain(t, "officer's overview", so, "Review held messages", "Notices</h2>")

	// The audit trail: addresses and named actions, not ids and keys.
	au := getPage(t, admin, "GET", "/admin/audit", "", 200)
	mustContain(t, "audit", au, "Signed in", "Message accepted", "Policy changed", staff, "admin@clinic.example", "EST",
		`<form method="post" action="/admin/audit" class="filters"`)
	mustNotContain(t, "audit", au, ">message.accept<", ">auth.login<", ">cli:unknown<")
	for _, id := range regexp.MustCompile(`<td class="addr">([0-9a-f]{32,})</td>`).FindAllStringSubmatch(au, -1) {
		t.Errorf("audit page shows the id %s", id[1])
	}
	// The filter bar takes an address (POST: it is not put in a URL).
	mine := getPage(t, admin, "POST", "/admin/audit", "user="+url.QueryEscape(staff)+"&action=message.accept", 200)
	mustContain(t, "filtered audit", mine, "Message accepted", "2 entries")
	mustNotContain(t, "filtered audit", mine, `title="auth.login"`)
	// A refusal, the same as the API's (issue 13.11): 400 with the words.
	mustContain(t, "unknown address", getPage(t, admin, "POST", "/admin/audit", "user=nobody%40example.net", 400),
		"No account has the address nobody@example.net")

	// The sender's history of a message.
	var sent struct{ Messages []struct{ ID string } }
	f.staffC.JSON("GET", "/api/v1/sent", nil, 200, &sent)
	hist := getPage(t, f.staffC, "GET", "/messages/"+sent.Messages[0].ID+"/history", "", 200)
	mustContain(t, "history", hist, "Message accepted", staff, "EST")
	mustNotContain(t, "history", hist, ">message.accept<")

	// Policy versions name their authors by address.
	pol := getPage(t, admin, "GET", "/admin/policy", "", 200)
	mustContain(t, "policy versions", pol, "admin@clinic.example")
}

// Point 5: a refused policy keeps the admin's text and marks the line.
func TestPolicyEditorKeepsText(t *testing.T) {
	f := newAdminFixture(t)
	bad := "[[rule]]\nname = \"mine\"\nwhen.recipient_domains = [\"lab.example\"]\nthen.action = \"mail\"\n\n[default]\naction = \"portal\"\n"
	got := getPage(t, f.admin, "POST", "/admin/policy", "do=apply&note="+url.QueryEscape("my change")+"&body="+url.QueryEscape(bad), 400)
	mustContain(t, "refused policy", got, "The policy was not applied", "&#34;lab.example&#34;", `value="my change"`,
		`aria-invalid="true"`, "<mark>", "The problem is on line 1")
	// Nothing was applied.
	var p struct{ Version int64 }
	f.admin.JSON("GET", "/api/v1/admin/policy", nil, 200, &p)
	if p.Version != 2 {
		t.Errorf("active version %d after a refused change", p.Version)
	}
}

// Point 5 beyond the policy: a refused form comes back with what was typed
// (account creation, a key upload, the recovery form's address), never
// with a password or passphrase.
func TestFormsKeepWhatWasTyped(t *testing.T) {
	f := newAdminFixture(t)
	got := getPage(t, f.admin, "POST", "/admin/users", "email=not-an-address&role=security", 400)
	mustContain(t, "account creation", got, `value="not-an-address"`, `<option selected>security</option>`)
	key := "-----BEGIN PGP PUBLIC KEY BLOCK-----\nnot really a key\n-----END PGP PUBLIC KEY BLOCK-----"
	got = getPage(t, f.staffC, "POST", "/account/key", "key="+url.QueryEscape(key), 400)
	mustContain(t, "own key", got, "not really a key")
	got = getPage(t, f.admin, "POST", "/admin/keys", "email=pat%40example.net&key="+url.QueryEscape(key), 400)
	mustContain(t, "recipient key", got, `value="pat@example.net"`, "not really a key")
}
