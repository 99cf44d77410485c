package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/testtool"
)

// browserIdle is the idle timeout of the real-browser test: short, so the
// test sees a whole auto-logoff, and under the 60-second warning, so the
// countdown shows as soon as a signed-in page is open.
const browserIdle = 20 * time.Second

// TestBrowserPortal drives the portal in headless Chromium the way a patient
// meets it (issue #3, DESIGN.md invariant 6): claim link → password →
// authenticator enrolment → recovery codes → the message; a second tab;
// the idle countdown with "Stay signed in"; the automatic sign-out that
// wipes the message from every open tab; and, separately, a sign-in
// elsewhere that ends an open tab at once over the websocket.
//
// With PHIGATE_SCREENSHOTS=1 it also saves full-page screenshots of the
// key pages to docs/screenshots/.
func TestBrowserPortal(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	if testing.Short() {
		t.Skip("the real-browser test takes about 30 s")
	}
	began := time.Now()
	cfg := e2e.Config(t.TempDir())
	cfg.Security.RequirePatient2FA = true
	cfg.Session.IdleTimeout.Duration = browserIdle
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)

	const (
		patient = "pat.browser@example.net"
		pw      = "tidal orchard lantern 58"
		subject = "Your blood test results"
	)
	text := "Your cholesterol and blood sugar are in the normal range. Marker " + strings.ToUpper(fmt.Sprintf("%x", randBytes(6))) + "."
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{patient},
		Msg: plainText(staff, "Dr Lee", patient, subject, text)}); err != nil {
		t.Fatal(err)
	}
	token := e2e.ClaimToken(t, h.WaitNotices(1)[0])

	b := newBrowser(t, chromium)
	tab1 := b.first

	// 1. Claim link → password → authenticator app → recovery codes → the
	// message, not a dashboard.
	tab1.navigate(h.BaseURL + "/claim/" + token)
	tab1.waitFor("claim form", `document.querySelector('#password') !== null`, 10*time.Second)
	tab1.expectText("h1", "Choose a password")
	tab1.do(
		chromedp.SendKeys(chromedp.CSS("#password"), pw),
		chromedp.SendKeys(chromedp.CSS("#confirm"), pw),
	)
	tab1.shot("claim.png")
	tab1.do(chromedp.Click(chromedp.CSS(`form.card button[type=submit]`)))
	tab1.waitFor("enrolment page", `location.pathname === '/account/2fa' && document.querySelector('code.secret') !== null`, 15*time.Second)
	if q := tab1.eval(`location.search`); !strings.HasPrefix(q, "?next=%2Fmessages%2F") {
		t.Errorf("enrolment page query %q: the claim should lead on to the message", q)
	}
	tab1.expectText("h1", "Set up your authenticator app")
	if ok := evalAs[bool](tab1, `(() => { const i = document.querySelector('img.qr'); return i.complete && i.naturalWidth > 0; })()`); !ok {
		t.Error("the QR code image did not load")
	}
	secret := strings.ReplaceAll(tab1.eval(`document.querySelector('code.secret').textContent`), " ", "")
	if len(secret) < 16 {
		t.Fatalf("authenticator key %q", secret)
	}
	tab1.shot("enrol-2fa.png")
	// SetValue, not SendKeys: the countdown (idle < 60 s here) takes the
	// focus a second after the page loads, and key events would follow it.
	tab1.do(
		chromedp.SetValue(chromedp.CSS("#code"), e2e.TOTPCode(t, secret, time.Now())),
		chromedp.Click(chromedp.CSS(`form[action="/account/2fa"] button[type=submit]`)),
	)
	tab1.waitFor("recovery codes", `document.querySelectorAll('ul.codes li').length > 0`, 15*time.Second)
	tab1.expectText("h1", "Save your recovery codes")
	codes := evalAs[[]string](tab1, `Array.from(document.querySelectorAll('ul.codes li code'), c => c.textContent.trim())`)
	if len(codes) != 10 {
		t.Errorf("%d recovery codes, want 10: %q", len(codes), codes)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) < 8 || seen[c] {
			t.Errorf("recovery code %q is short or repeated", c)
		}
		seen[c] = true
	}
	tab1.shot("recovery-codes.png")
	tab1.do(chromedp.Click(chromedp.CSS(`a.button.primary`)))
	tab1.waitFor("the message", `location.pathname.startsWith('/messages/') && document.querySelector('.body.text') !== null`, 15*time.Second)
	msgURL := tab1.eval(`location.href`)
	tab1.expectText("h1", subject)
	tab1.expectText(".body.text", text)
	tab1.expectText(".sig.ok", "Verified")
	tab1.shot("message.png")
	// On a phone: the page fits the screen, no sideways scrolling.
	tab1.do(chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile, chromedp.EmulatePortrait))
	tab1.waitFor("phone layout", `window.innerWidth === 390`, 5*time.Second)
	if w := evalAs[int](tab1, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("message page is %d px wide on a 390 px phone screen", w)
	}
	tab1.expectText(".body.text", text)
	tab1.shot("message-phone.png")
	tab1.do(desktop)

	// 2. A second tab of the same browser: signed in too.
	tab2 := b.newTab("tab 2")
	tab2.navigate(h.BaseURL + "/inbox")
	tab2.waitFor("inbox", `document.querySelector('ul.inbox a') !== null`, 10*time.Second)
	tab2.expectText("ul.inbox", subject)
	tab2.expectText("form.signout button", "Sign out")
	tab1.expectText(".body.text", text)
	tab2.shot("inbox.png")

	// 3. The countdown: visible, counting down, keyboard focus on "Stay
	// signed in"; the button hides it and gives a full idle period again.
	idleSecs := int(browserIdle / time.Second)
	tab1.waitFor("countdown dialog", `document.getElementById('logoff-warning').hidden === false`, 5*time.Second)
	s1 := tab1.seconds()
	tab1.waitFor("countdown ticking", fmt.Sprintf(`parseInt(document.getElementById('logoff-seconds').textContent, 10) < %d`, s1), 3*time.Second)
	if s1 > idleSecs || s1 < 5 {
		t.Errorf("countdown shows %d s with a %s idle timeout", s1, browserIdle)
	}
	tab1.expectText("#logoff-warning", "You will be signed out in")
	tab1.expectText("#logoff-stay", "Stay signed in")
	if role := tab1.eval(`document.getElementById('logoff-warning').getAttribute('role')`); role != "alertdialog" {
		t.Errorf("countdown role %q, want alertdialog", role)
	}
	if id := tab1.eval(`document.activeElement ? document.activeElement.id : ''`); id != "logoff-stay" {
		t.Errorf("keyboard focus on %q when the countdown opens, want the Stay signed in button", id)
	}
	tab1.shot("logoff-countdown.png")
	tab2.waitFor("countdown in tab 2", `document.getElementById('logoff-warning').hidden === false`, 5*time.Second)
	// Let both countdowns run a few seconds, so that the restart below is
	// plain to see in both tabs.
	low := fmt.Sprintf(`parseInt(document.getElementById('logoff-seconds').textContent, 10) <= %d`, idleSecs-4)
	tab1.waitFor("countdown below the full period", low, 8*time.Second)
	tab2.waitFor("countdown below the full period", low, 8*time.Second)
	// Watch the button's effects: the keepalive answer and the dialog
	// closing (it opens again within a second, as the new idle period is
	// still under the 60-second warning).
	tab1.eval(`(() => {
		const box = document.getElementById('logoff-warning');
		window.__phigateClosed = false;
		new MutationObserver(() => { if (box.hidden) { window.__phigateClosed = true; } })
			.observe(box, {attributes: true, attributeFilter: ['hidden']});
		const f = window.fetch;
		window.fetch = (...a) => f(...a).then(r => {
			if (String(a[0]).includes('/session/keepalive')) { window.__phigateKeepalive = r.status; }
			return r;
		});
		return '';
	})()`)
	tab1.do(chromedp.Click(chromedp.CSS("#logoff-stay")))
	stayed := time.Now()
	tab1.waitFor("keepalive answer", `window.__phigateKeepalive !== undefined`, 5*time.Second)
	if st := evalAs[int](tab1, `window.__phigateKeepalive`); st != 200 {
		t.Fatalf("Stay signed in: keepalive answered %d, want 200 (session still usable)", st)
	}
	tab1.waitFor("dialog closed by Stay signed in", `window.__phigateClosed === true`, 3*time.Second)
	// A full idle period again, in this tab and (over BroadcastChannel) in
	// the other one.
	full := fmt.Sprintf(`parseInt(document.getElementById('logoff-seconds').textContent, 10) >= %d`, idleSecs-2)
	tab1.waitFor("countdown restarted", full, 3*time.Second)
	tab2.waitFor("countdown restarted in tab 2", full, 3*time.Second)

	// 4. Leave it idle. At expiry both tabs clear the page and go to the
	// sign-in page; nothing of the message is left in either DOM.
	for _, tb := range []*tab{tab1, tab2} {
		tb.recordExit()
	}
	tab1.waitFor("idle sign-out of tab 1", `location.pathname === '/login' && document.readyState !== 'loading'`, browserIdle+10*time.Second)
	took := time.Since(stayed)
	tab2.waitFor("idle sign-out of tab 2", `location.pathname === '/login' && document.readyState !== 'loading'`, 5*time.Second)
	if took < browserIdle-2*time.Second || took > browserIdle+8*time.Second {
		t.Errorf("signed out %s after the last activity, want about %s", took.Round(100*time.Millisecond), browserIdle)
	}
	for _, tb := range []*tab{tab1, tab2} {
		if q := tb.eval(`location.search`); q != "?ended=idle" {
			t.Errorf("%s: sign-in page query %q, want ?ended=idle", tb.name, q)
		}
		tb.expectText(".notice", "You were signed out after a period of inactivity")
		tb.expectGone(subject, text)
		tb.expectWiped(subject, text)
	}
	tab1.shot("signed-out.png")
	// The server ended the session too: the old page's address leads to the
	// sign-in page, with no content.
	tab1.navigate(msgURL)
	tab1.waitFor("message address after sign-out", `location.pathname === '/login'`, 10*time.Second)
	tab1.expectGone(subject, text)

	// 5. A sign-in elsewhere (here: the JSON API) ends an open page at once,
	// with no user action and no timer: the websocket path.
	tabA := b.newIsolatedTab("tab A")
	tabA.navigate(h.BaseURL + "/login")
	tabA.waitFor("sign-in page", `document.querySelector('#email') !== null`, 10*time.Second)
	tabA.expectText("h1", "Sign in")
	tabA.do(
		chromedp.SendKeys(chromedp.CSS("#email"), patient),
		chromedp.SendKeys(chromedp.CSS("#password"), pw),
	)
	tabA.shot("login.png")
	tabA.do(chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)))
	tabA.waitFor("second-factor page", `location.pathname === '/login/2fa' && document.querySelector('#code') !== null`, 15*time.Second)
	// The enrolment used the current step; the next step's code is new.
	tabA.do(
		chromedp.SetValue(chromedp.CSS("#code"), e2e.TOTPCode(t, secret, time.Now().Add(30*time.Second))),
		chromedp.Click(chromedp.CSS(`form[action="/login/2fa"] button[type=submit]`)),
	)
	tabA.waitFor("inbox after sign-in", `location.pathname === '/inbox' && document.querySelector('ul.inbox a') !== null`, 15*time.Second)
	tabA.do(chromedp.Click(chromedp.CSS(`ul.inbox a`)))
	tabA.waitFor("the message", `document.querySelector('.body.text') !== null`, 15*time.Second)
	tabA.expectText(".body.text", text)
	tabA.recordExit()
	// A whole sign-in, second factor included (one of the recovery codes
	// the browser showed), so the test holds whichever step replaces the
	// older session.
	api := h.Client()
	api.JSON("POST", "/api/v1/login", map[string]string{"email": patient, "password": pw}, 200, nil)
	if len(codes) > 0 {
		api.JSON("POST", "/api/v1/login/2fa", map[string]string{"code": codes[0]}, 200, nil)
	}
	replacedAt := time.Now()
	tabA.waitFor("sign-out after a sign-in elsewhere", `location.pathname === '/login' && document.readyState !== 'loading'`, 5*time.Second)
	if d := time.Since(replacedAt); d > 3*time.Second {
		t.Errorf("the open page took %s to hear of the sign-in elsewhere", d.Round(100*time.Millisecond))
	}
	if q := tabA.eval(`location.search`); q != "?ended=replaced" {
		t.Errorf("tab A: sign-in page query %q, want ?ended=replaced", q)
	}
	tabA.expectText(".notice", "signed in somewhere else")
	tabA.expectGone(subject, text)
	tabA.expectWiped(subject, text)

	t.Logf("browser test took %s", time.Since(began).Round(100*time.Millisecond))
}

// plainText builds a single-part text/plain message, so its text lands in
// the page itself (not in the sandboxed frame HTML mail gets).
func plainText(from, fromName, to, subject, text string) []byte {
	return fmt.Appendf(nil, "From: %s <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%d@test>\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n",
		fromName, from, to, subject, time.Now().Format(time.RFC1123Z), time.Now().UnixNano(), text)
}

// desktop is the 1280x900 page area every tab starts with (the window of
// that size leaves a smaller page area in headless mode).
var desktop = chromedp.EmulateViewport(1280, 900)

// browser is one headless Chromium with a fresh profile.
type browser struct {
	t     *testing.T
	first *tab
}

func newBrowser(t *testing.T, exec string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exec),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.IgnoreCertErrors, // the dev gateway's self-signed certificate
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t}
	b.first = &tab{t: t, name: "tab 1", ctx: ctx}
	b.first.start()
	return b
}

// newTab opens another tab in the same profile (cookies, BroadcastChannel).
func (b *browser) newTab(name string) *tab {
	ctx, cancel := chromedp.NewContext(b.first.ctx)
	b.t.Cleanup(cancel)
	tb := &tab{t: b.t, name: name, ctx: ctx}
	tb.start()
	return tb
}

// newIsolatedTab opens a tab in a new, empty browser context: another
// person's browser, as far as the gateway can tell.
func (b *browser) newIsolatedTab(name string) *tab {
	ctx, cancel := chromedp.NewContext(b.first.ctx, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	tb := &tab{t: b.t, name: name, ctx: ctx}
	tb.start()
	return tb
}

type tab struct {
	t    *testing.T
	name string
	ctx  context.Context
}

// start runs the tab's first action, which binds the browser (or the tab)
// to the tab's own context: it takes no deadline, so it is bounded here.
func (tb *tab) start() {
	tb.t.Helper()
	done := make(chan error, 1)
	go func() { done <- chromedp.Do(tb.ctx, desktop) }()
	select {
	case err := <-done:
		if err != nil {
			tb.t.Fatalf("%s: start: %v", tb.name, err)
		}
	case <-time.After(30 * time.Second):
		tb.t.Fatalf("%s: the browser did not start within 30 s", tb.name)
	}
}

func (tb *tab) do(actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v (page %s)", tb.name, err, tb.where())
	}
}

func (tb *tab) navigate(url string) {
	tb.t.Helper()
	tb.do(chromedp.Navigate(url))
}

func evalAs[T any](tb *tab, js string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js))
	if err != nil {
		tb.t.Fatalf("%s: %s: %v (page %s)", tb.name, js, err, tb.where())
	}
	return v
}

func (tb *tab) eval(js string) string { tb.t.Helper(); return evalAs[string](tb, js) }

// where is the tab's address, for failure messages.
func (tb *tab) where() string {
	ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
	defer cancel()
	u, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.href`))
	if err != nil {
		return "(unknown: " + err.Error() + ")"
	}
	return u
}

// waitFor polls a JavaScript condition until it holds, across navigations
// (an evaluation that fails while a page is being replaced is retried).
func (tb *tab) waitFor(what, cond string, timeout time.Duration) {
	tb.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			ctx, cancel := context.WithTimeout(tb.ctx, 2*time.Second)
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
			cancel()
			tb.t.Fatalf("%s: no %s within %s (page %s, last error %v)\n%s", tb.name, what, timeout, tb.where(), lastErr, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// expectText checks that the element sel shows want (its visible text).
func (tb *tab) expectText(sel, want string) {
	tb.t.Helper()
	got := evalAs[string](tb, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText : '(no element)'; })()`, sel))
	if !strings.Contains(got, want) {
		tb.t.Errorf("%s: %s shows %q, want %q (page %s)", tb.name, sel, got, want, tb.where())
	}
}

// seconds is the number the countdown shows.
func (tb *tab) seconds() int {
	tb.t.Helper()
	s := tb.eval(`document.getElementById('logoff-seconds').textContent`)
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		tb.t.Fatalf("%s: countdown shows %q", tb.name, s)
	}
	return n
}

// expectGone checks that no trace of the message is anywhere in the DOM.
func (tb *tab) expectGone(secrets ...string) {
	tb.t.Helper()
	html := tb.eval(`document.documentElement.outerHTML`)
	for _, s := range secrets {
		if strings.Contains(html, s) {
			tb.t.Errorf("%s: %q is still in the page after sign-out (page %s)", tb.name, s, tb.where())
		}
	}
}

// recordExit makes the page note, as it is left, whether it still shows the
// message; the note survives the navigation in sessionStorage.
func (tb *tab) recordExit() {
	tb.t.Helper()
	tb.eval(`(() => {
		sessionStorage.removeItem('phigate-test-exit');
		window.addEventListener('pagehide', () => {
			const m = document.getElementById('main');
			sessionStorage.setItem('phigate-test-exit', JSON.stringify({
				main: m ? m.innerHTML.trim().length : -1,
				html: document.documentElement.outerHTML,
				title: document.title,
			}));
		});
		return '';
	})()`)
}

// expectWiped checks the note recordExit left: the page emptied itself
// before it went to the sign-in page, so nothing of the message stayed on
// screen while the sign-in page loaded.
func (tb *tab) expectWiped(secrets ...string) {
	tb.t.Helper()
	raw := tb.eval(`sessionStorage.getItem('phigate-test-exit') || ''`)
	if raw == "" {
		tb.t.Errorf("%s: the signed-in page left no exit note", tb.name)
		return
	}
	var exit struct {
		Main        int
		HTML, Title string
	}
	if err := json.Unmarshal([]byte(raw), &exit); err != nil {
		tb.t.Fatal(err)
	}
	if exit.Main != 0 || exit.Title != "Signed out" {
		tb.t.Errorf("%s: the page was left without being cleared (main has %d characters, title %q)", tb.name, exit.Main, exit.Title)
	}
	for _, s := range secrets {
		if strings.Contains(exit.HTML, s) {
			tb.t.Errorf("%s: %q was still in the page as it was left", tb.name, s)
		}
	}
}

// shot saves a full-page screenshot to docs/screenshots/ when
// PHIGATE_SCREENSHOTS=1 (so ordinary runs leave the tree alone). The
// countdown bar is hidden for the shot unless the shot is of the countdown
// itself: with this test's short idle timeout it is open on every
// signed-in page, which it never is at normal settings.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	if os.Getenv("PHIGATE_SCREENSHOTS") != "1" {
		return
	}
	hide := name != "logoff-countdown.png"
	if hide {
		// CSSOM, not a style element: the page's CSP allows no inline styles.
		tb.eval(`(() => { const b = document.getElementById('logoff-warning'); if (b) { b.style.setProperty('display', 'none', 'important'); } return ''; })()`)
	}
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	cancel()
	if hide {
		tb.eval(`(() => { const b = document.getElementById('logoff-warning'); if (b) { b.style.removeProperty('display'); } return ''; })()`)
	}
	if err != nil {
		tb.t.Fatalf("%s: screenshot %s: %v", tb.name, name, err)
	}
	dir := filepath.Join("..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}
