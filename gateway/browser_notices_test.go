package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/testtool"
	"github.com/phigate/phigate/notify"
)

// Issue 10.6 in a real browser: the admin's Notices page lists a failed
// notice and its Retry button sends it; the sender's Sent page offers
// "Send notice again" (also after live.js redrew the list) and says when
// it is too soon. With PHIGATE_SCREENSHOTS=1 it saves both pages.
func TestBrowserNotices(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	if testing.Short() {
		t.Skip("a real-browser test")
	}
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	addAdmin(t, h, "admin@clinic.example")
	const patient = "pat.notices@example.net"
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{patient},
		Msg: plainText(staff, "Dr Lee", patient, "Your appointment", "See you soon.")}); err != nil {
		t.Fatal(err)
	}
	h.WaitNotices(1)
	u, err := h.G.Identity.UserByEmail(t.Context(), patient)
	if err != nil {
		t.Fatal(err)
	}
	failed := failNotice(t, h, notify.KindNewMessage, notify.Notice{To: patient, Link: h.BaseURL + "/login",
		ExpiresAt: time.Now().Add(48 * time.Hour)}, u.ID, true)

	b := newBrowser(t, chromium)
	sent := signInTab(t, h, b.newIsolatedTab("sender"), staff)
	sent.navigate(h.BaseURL + "/sent")
	sent.waitFor("the live Sent page", `document.querySelector('[data-live-state="ready"]') !== null &&
		document.querySelector('#live-list form[action$="/resend"] button') !== null`, 15*time.Second)
	sent.shot("sent-resend.png")
	sent.do(chromedp.Click(chromedp.CSS(`#live-list form[action$="/resend"] button`)))
	sent.waitFor("the too-soon answer", `document.body.innerText.includes('less than 15 minutes ago')`, 10*time.Second)

	admin := signInTab(t, h, b.newIsolatedTab("admin"), "admin@clinic.example")
	admin.navigate(h.BaseURL + "/admin/notices")
	admin.waitFor("the failed notice", `document.querySelector('form[action="/admin/notices/`+failed+`/retry"]') !== null`, 10*time.Second)
	admin.expectText("table.users tbody", patient)
	admin.expectText("table.users tbody", "given up")
	admin.shot("admin-notices.png")
	admin.do(chromedp.Click(chromedp.CSS(`form[action="/admin/notices/` + failed + `/retry"] button`)))
	admin.waitFor("the retry's confirmation", `document.body.innerText.includes('will be sent again')`, 10*time.Second)
	if raw := h.WaitNotices(2); !strings.HasSuffix(raw[1], ".eml") {
		t.Fatalf("notices %v", raw)
	}
}

// signInTab signs email in within tb (password, then the second factor,
// enrolled through the API) and returns tb on its landing page.
func signInTab(t *testing.T, h *e2e.Harness, tb *tab, email string) *tab {
	t.Helper()
	pw := staffPortalPW
	if strings.HasPrefix(email, "admin@") {
		pw = adminPW
	}
	_, secret := signInStaff(t, h, email, pw, time.Now())
	tb.navigate(h.BaseURL + "/login")
	tb.waitFor("sign-in form", `document.querySelector('#email') !== null`, 10*time.Second)
	tb.do(
		chromedp.SetValue(chromedp.CSS("#email"), email),
		chromedp.SetValue(chromedp.CSS("#password"), pw),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
	)
	tb.waitFor("second-factor form", `location.pathname === '/login/2fa' && document.querySelector('#code') !== null`, 10*time.Second)
	tb.do(
		chromedp.SetValue(chromedp.CSS("#code"), e2e.TOTPCode(t, secret, time.Now().Add(30*time.Second))),
		chromedp.Click(chromedp.CSS(`form[action="/login/2fa"] button[type=submit]`)),
	)
	// Staff land on Sent, admins on the overview (issue 13.3).
	tb.waitFor("signed in", `['/inbox', '/sent', '/admin'].includes(location.pathname)`, 10*time.Second)
	return tb
}
