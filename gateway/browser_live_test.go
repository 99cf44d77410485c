package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/testtool"
)

// TestBrowserLiveInbox (issue 10.1): in headless Chromium, a message sent
// over SMTP appears in the patient's already open inbox without a reload,
// and the sender's open Sent page shows, without a reload, that it was
// opened. Each page marks its window first: a reload would lose the mark.
func TestBrowserLiveInbox(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	if testing.Short() {
		t.Skip("a real-browser test")
	}
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	const patient = "pat.live@example.net"
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{patient},
		Msg: plainText(staff, "Dr Lee", patient, "Welcome to the clinic", "Your first secure message.")}); err != nil {
		t.Fatal(err)
	}
	token := e2e.ClaimToken(t, h.WaitNotices(1)[0])

	b := newBrowser(t, chromium)
	inbox := b.first
	inbox.navigate(h.BaseURL + "/claim/" + token)
	inbox.waitFor("claim form", `document.querySelector('#password') !== null`, 10*time.Second)
	inbox.do(
		chromedp.SetValue(chromedp.CSS("#password"), patientPW),
		chromedp.SetValue(chromedp.CSS("#confirm"), patientPW),
		chromedp.Click(chromedp.CSS(`form.card button[type=submit]`)),
	)
	inbox.waitFor("the first message", `location.pathname.startsWith('/messages/')`, 15*time.Second)
	inbox.navigate(h.BaseURL + "/inbox")
	inbox.waitFor("the inbox", `document.querySelectorAll('ul.inbox li').length === 1`, 10*time.Second)

	// The sender's Sent page, in another person's browser: the second
	// factor is enrolled through the API, the sign-in done in the page.
	_, secret := signInStaff(t, h, staff, staffPortalPW, time.Now())
	sent := b.newIsolatedTab("sent")
	sent.navigate(h.BaseURL + "/login")
	sent.waitFor("sign-in form", `document.querySelector('#email') !== null`, 10*time.Second)
	sent.do(
		chromedp.SetValue(chromedp.CSS("#email"), staff),
		chromedp.SetValue(chromedp.CSS("#password"), staffPortalPW),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
	)
	sent.waitFor("second-factor form", `location.pathname === '/login/2fa' && document.querySelector('#code') !== null`, 10*time.Second)
	sent.do(
		chromedp.SetValue(chromedp.CSS("#code"), e2e.TOTPCode(t, secret, time.Now().Add(30*time.Second))),
		chromedp.Click(chromedp.CSS(`form[action="/login/2fa"] button[type=submit]`)),
	)
	sent.waitFor("signed in", `location.pathname === '/sent'`, 10*time.Second) // staff land on Sent (issue 13.3)
	sent.navigate(h.BaseURL + "/sent")
	sent.waitFor("the Sent page", `document.querySelectorAll('#live-list tbody tr').length === 1`, 10*time.Second)

	// Both pages hear their events (the server's first report has come)
	// before anything is sent.
	for _, tb := range []*tab{inbox, sent} {
		tb.do(chromedp.Evaluate[chromedp.Void](`window.phigateNoReload = true`))
		// 30 s: under a whole `go test ./...` on two cores the socket's
		// first report once took longer than 10 s (it passes alone in 5 s).
		tb.waitFor("the live connection", `document.querySelector('[data-live-state="ready"]') !== null`, 30*time.Second)
	}

	subject := "Lab results ready " + newCanary("LIVE")
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{patient},
		Msg: plainText(staff, "Dr Lee", patient, subject, "Your results are in.")}); err != nil {
		t.Fatal(err)
	}
	inbox.waitFor("the new message in the open inbox",
		`window.phigateNoReload === true && document.querySelectorAll('ul.inbox li').length === 2`, 15*time.Second)
	inbox.expectText("ul.inbox li:first-child", subject)
	inbox.expectText("ul.inbox li:first-child .meta", "New")
	inbox.expectText("#live-status", "A new secure message arrived.")
	href := inbox.eval(`document.querySelector('ul.inbox li:first-child a').getAttribute('href')`)
	if !strings.HasPrefix(href, "/messages/") {
		t.Fatalf("new row links to %q", href)
	}
	sent.waitFor("the new message on the open Sent page",
		`window.phigateNoReload === true && document.querySelectorAll('#live-list tbody tr').length === 2`, 15*time.Second)

	// The patient opens it (in another tab of her browser); the sender's
	// page shows it opened, still without a reload.
	reader := b.newTab("reader")
	reader.navigate(h.BaseURL + href)
	reader.waitFor("the message", `document.querySelector('.body.text') !== null`, 10*time.Second)
	id := strings.TrimPrefix(href, "/messages/")
	sent.waitFor("'opened' on the Sent page", `window.phigateNoReload === true && (() => {
		const r = document.querySelector('#live-list tr[data-id="`+id+`"]');
		return r !== null && r.querySelector('td.status').textContent.startsWith('Opened');
	})()`, 15*time.Second)
	inbox.waitFor("the message shown as read in the first tab",
		`window.phigateNoReload === true && !document.querySelector('ul.inbox li:first-child').classList.contains('unread')`, 15*time.Second)
}
