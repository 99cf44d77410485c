package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/testtool"
)

// TestBrowserAdminFlows walks issue 13 points 2-5 in a real Chromium, each
// page through checkPage at 390 and 1280 px (no sideways scrolling,
// axe-core, target sizes): the admin's landing overview, the quarantine
// with its context, the preview and the approve confirmation with a note;
// the audit filter bar; the policy editor keeping refused text; and the
// staff member's landing Sent page, its search and the recall
// confirmation.
func TestBrowserAdminFlows(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	needAxe(t)
	if testing.Short() {
		t.Skip("a real-browser test")
	}
	cfg := e2e.Config(t.TempDir())
	cfg.Org.TimeZone = "America/New_York"
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	const admin = "admin@clinic.example"
	addAdmin(t, h, admin)
	adminAPI, adminSecret := signInStaff(t, h, admin, adminPW, time.Now())
	adminAPI.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": heldPolicy, "note": "hold tagged mail"}, 200, nil)
	_, staffSecret := signInStaff(t, h, staff, staffPortalPW, time.Now())
	for _, m := range []struct{ to, subject string }{
		{"held.patient@example.net", heldSubject},
		{"margaret.featherstonehaugh-cholmondeley@example-community-health-partnership.net", "Follow-up appointment"},
	} {
		msg := e2e.Multipart(staff, "Dr Lee", m.to, m.subject, "Patient SSN 512-34-5678 on file. Please review before the visit.",
			"<p>Please review.</p>", "results.pdf", []byte("%PDF-1.4 test"))
		if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{m.to}, Msg: msg}); err != nil {
			t.Fatal(err)
		}
	}
	b := newBrowser(t, chromium)
	const ready = `document.querySelector('main h1') !== null && document.readyState === 'complete'`

	// The admin lands on the overview.
	ad := b.newIsolatedTab("admin")
	signInChecked(t, h, ad, admin, adminPW, adminSecret, "")
	ad.waitFor("the overview", `location.pathname === '/admin' && `+ready, 10*time.Second)
	ad.expectText("main", "1 message waiting")
	checkPage(t, ad, "admin")

	// The quarantine: context without content.
	ad.navigate(h.BaseURL + "/admin/quarantine")
	ad.waitFor("the quarantine", ready, 10*time.Second)
	ad.expectText(".held", staff)
	ad.expectText(".held", "Tagged by the sender for a second look")
	ad.expectText(".held", "1 match: US Social Security numbers")
	if strings.Contains(ad.eval(`document.body.innerText`), "Biopsy") {
		t.Error("the quarantine list shows the subject")
	}
	checkPage(t, ad, "admin-quarantine-context")

	// Review, then ask for the preview (an audited access).
	ad.do(chromedp.Click(chromedp.CSS(`.held li:first-child a.button`)))
	ad.waitFor("the review page", `document.querySelector('a[href$="?preview=1"]') !== null && `+ready, 10*time.Second)
	checkPage(t, ad, "admin-quarantine-review")
	ad.do(chromedp.Click(chromedp.CSS(`a[href$="?preview=1"]`)))
	ad.waitFor("the preview", `document.querySelector('.preview') !== null`, 10*time.Second)
	ad.expectText("main", heldSubject)
	ad.expectText(".preview", "Patient SSN 512-34-5678 on file")
	checkPage(t, ad, "admin-quarantine-preview")

	// Approve: a confirmation with a note, then back on the list.
	ad.do(chromedp.Click(chromedp.CSS(`main a[href$="/approve"]`)))
	ad.waitFor("the confirmation", `location.pathname.endsWith('/approve') && document.querySelector('#note') !== null`, 10*time.Second)
	ad.expectText("main h1", "Approve held message")
	checkPage(t, ad, "admin-quarantine-approve")
	ad.do(chromedp.SetValue(chromedp.CSS("#note"), "Checked with Dr Lee by phone"),
		chromedp.Click(chromedp.CSS(`form.card button[type=submit]`)))
	ad.waitFor("the list after approving", `location.search === '?done=approved' && `+ready, 10*time.Second)
	ad.expectText("main", "Approved: the message is delivered")
	checkPage(t, ad, "admin-quarantine-approved")

	// The audit filter bar: compact at desktop size, an address typed in
	// it never lands in the URL.
	ad.navigate(h.BaseURL + "/admin/audit")
	ad.waitFor("the audit trail", `document.querySelector('form.filters') !== null`, 10*time.Second)
	if hgt := evalAs[float64](ad, `document.querySelector('form.filters').getBoundingClientRect().height`); hgt > 220 {
		t.Errorf("the audit filter bar is %.0f px high at 1280 px: not a compact bar", hgt)
	}
	ad.expectText("table.audit", "Signed in")
	checkPage(t, ad, "admin-audit-bar")
	ad.do(chromedp.SetValue(chromedp.CSS("#f-user"), staff),
		chromedp.SetValue(chromedp.CSS("#f-action"), "quarantine.*"),
		chromedp.Click(chromedp.CSS(`form.filters button[type=submit]`)))
	ad.waitFor("the filtered trail", `document.querySelector('#f-user') !== null && document.querySelector('#f-user').value === '`+staff+`'`, 10*time.Second)
	if strings.Contains(ad.where(), "@") {
		t.Errorf("the address is in the URL: %s", ad.where())
	}
	checkPage(t, ad, "admin-audit-filtered")

	// The policy editor keeps refused text and marks the line.
	ad.navigate(h.BaseURL + "/admin/policy")
	ad.waitFor("the policy editor", `document.querySelector('#body') !== null`, 10*time.Second)
	broken := "[[rule]]\nname = \"mine\"\nwhen.recipient_domains = [\"lab.example\"]\nthen.action = \"mail\"\n\n[default]\naction = \"portal\"\n"
	ad.do(chromedp.SetValue(chromedp.CSS("#body"), broken), chromedp.SetValue(chromedp.CSS("#note"), "my change"),
		chromedp.Click(chromedp.CSS(`form.card input[value=apply] ~ button[type=submit]`)))
	ad.waitFor("the refused policy", `document.querySelector('.problem-lines') !== null`, 10*time.Second)
	if got := ad.eval(`document.querySelector('#body').value`); got != broken {
		t.Errorf("the editor lost the text: %q", got)
	}
	if got := ad.eval(`document.querySelector('#note').value`); got != "my change" {
		t.Errorf("the note was lost: %q", got)
	}
	// The line the policy names (its rule's first line) is marked.
	ad.expectText(".problem-lines mark", `[[rule]]`)
	ad.expectText(".problem-lines", "The problem is on line 1")
	checkPage(t, ad, "admin-policy-refused")

	// The staff member lands on Sent: subjects, words, the reference.
	st := b.newIsolatedTab("staff")
	signInChecked(t, h, st, staff, staffPortalPW, staffSecret, "")
	st.waitFor("the Sent page", `location.pathname === '/sent' && document.querySelectorAll('#live-list tbody tr').length === 2`, 10*time.Second)
	st.expectText("#live-list", heldSubject)
	st.expectText("#live-list", "Follow-up appointment")
	checkPage(t, st, "sent-landing")
	st.do(chromedp.SetValue(chromedp.CSS("#q"), "follow-up"), chromedp.Click(chromedp.CSS(`form.filters button[type=submit]`)))
	st.waitFor("the search", `document.querySelectorAll('#live-list tbody tr').length === 1`, 10*time.Second)
	if strings.Contains(st.where(), "follow") {
		t.Errorf("the search words are in the URL: %s", st.where())
	}
	checkPage(t, st, "sent-search")
	st.do(chromedp.Click(chromedp.CSS(`#live-list a[href$="/recall"]`)))
	st.waitFor("the recall confirmation", `location.pathname.endsWith('/recall') && `+ready, 10*time.Second)
	st.expectText("main h2", "Recall message")
	checkPage(t, st, "sent-recall")
	st.do(chromedp.Click(chromedp.CSS(`form.card button[type=submit]`)))
	st.waitFor("back on Sent", `location.pathname === '/sent' && location.search === '?done=recalled'`, 10*time.Second)
	// The recall's live event redraws the list meanwhile: wait for it.
	st.waitFor("the recalled row", `document.querySelector('#live-list').innerText.includes('Recalled')`, 10*time.Second)
}
