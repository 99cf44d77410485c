package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/phigate/phigate/internal/testtool"
)

// TestBrowserNotifyPrefs (issue 10.4) in headless Chromium: the account
// page shows the organisation's default, the account holder picks "Email"
// and saves with the form alone, and the choice is what notices then
// follow.
func TestBrowserNotifyPrefs(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	if testing.Short() {
		t.Skip("real-browser test")
	}
	h, _ := startPush(t)
	pass := h.AddStaff(staff)
	const rcpt = "prefs.browser@example.net"
	claimNew(t, h, pass, rcpt, patientPW)

	tb := newBrowser(t, chromium).first
	tb.navigate(h.BaseURL + "/login")
	tb.waitFor("sign-in form", `document.querySelector('#email') !== null`, 10*time.Second)
	tb.do(
		chromedp.SendKeys(chromedp.CSS("#email"), rcpt),
		chromedp.SendKeys(chromedp.CSS("#password"), patientPW),
		chromedp.Click(chromedp.CSS(`main form button[type=submit]`)),
	)
	tb.waitFor("inbox", `location.pathname === '/inbox'`, 15*time.Second)
	tb.navigate(h.BaseURL + "/account")
	tb.waitFor("choice of channels", `document.querySelector('#notify-prefs') !== null`, 10*time.Second)
	if got := tb.eval(`document.querySelector('#notify-prefs input[name=channels]:checked').value`); got != "both" {
		t.Errorf("checked before any choice: %q, want the default both", got)
	}
	tb.do(
		chromedp.Click(chromedp.CSS(`#notify-prefs input[value=email]`)),
		chromedp.Click(chromedp.CSS(`#notify-prefs button[type=submit]`)),
	)
	tb.waitFor("saved", `location.search === '?prefs=saved' && document.readyState === 'complete' && document.querySelector('#notify-prefs') !== null`, 15*time.Second)
	if got := tb.eval(`document.querySelector('#notify-prefs input[name=channels]:checked').value`); got != "email" {
		t.Errorf("checked after saving: %q, want email", got)
	}
	tb.do(desktop)
	tb.shot("account-notify-prefs.png")
	// The browser's sign-in ended the API client's session (one per
	// account): read the choice as the gateway's notices do.
	u, err := h.G.Store.UserByEmailIndex(context.Background(), h.G.Keys.EmailIndex(rcpt))
	if err != nil {
		t.Fatal(err)
	}
	v, err := h.G.Intake.Prefs.View(context.Background(), u.ID)
	if err != nil || v.Choice != "email" || !v.Chosen {
		t.Errorf("after the page's choice: %+v, %v", v, err)
	}
}
