package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/testtool"
)

// liveLog records, from before the page's own scripts run, every text a
// live region takes (aria-live, or the implicitly live roles alert, status
// and log) and every number the visible countdown shows.
const liveLog = `(() => {
	window.__live = []; window.__ticks = 0;
	const live = n => {
		for (let e = n && (n.nodeType === 1 ? n : n.parentElement); e; e = e.parentElement) {
			const l = e.getAttribute('aria-live'), r = e.getAttribute('role');
			if ((l && l !== 'off') || r === 'alert' || r === 'status' || r === 'log') { return e; }
		}
		return null;
	};
	const last = new Map();
	new MutationObserver(ms => {
		for (const m of ms) {
			const t = m.target.nodeType === 1 ? m.target : m.target.parentElement;
			if (t && t.id === 'logoff-seconds') { window.__ticks++; }
			const region = live(m.target);
			if (!region) { continue; }
			const text = region.textContent.trim();
			if (text !== '' && last.get(region) !== text) {
				window.__live.push((region.id || region.tagName) + ': ' + text);
			}
			last.set(region, text);
		}
	}).observe(document, {subtree: true, childList: true, characterData: true});
})();`

// TestBrowserCountdown (issue 13.8): over a whole logoff countdown a screen
// reader is told twice, when it opens and near its end, while the visible
// number counts down every second; the countdown box is no live region.
func TestBrowserCountdown(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	if testing.Short() {
		t.Skip("a real-browser test of about 30 s")
	}
	cfg := e2e.Config(t.TempDir())
	cfg.Session.IdleTimeout.Duration = browserIdle // 20 s: the countdown opens at once
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	const rcpt = "countdown@example.net"
	claimNew(t, h, pass, rcpt, patientPW)

	tb := newBrowser(t, chromium).first
	tb.navigate(h.BaseURL + "/login")
	tb.waitFor("sign-in form", `document.querySelector('#email') !== null`, 10*time.Second)
	tb.do(
		chromedp.SetValue(chromedp.CSS("#email"), rcpt),
		chromedp.SetValue(chromedp.CSS("#password"), patientPW),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
	)
	tb.waitFor("inbox", `location.pathname === '/inbox'`, 15*time.Second)
	tb.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: liveLog})
		return err
	}))
	tb.navigate(h.BaseURL + "/inbox")
	tb.waitFor("countdown", `document.getElementById('logoff-warning').hidden === false`, 5*time.Second)
	opened := tb.seconds()
	if l := tb.eval(`document.getElementById('logoff-warning').getAttribute('aria-live') || ''`); l != "" {
		t.Errorf("the countdown box is a live region (aria-live=%q): each second would be read out", l)
	}
	tb.waitFor("the countdown's last seconds", `parseInt(document.getElementById('logoff-seconds').textContent, 10) <= 2`, browserIdle)
	said := evalAs[[]string](tb, `window.__live`)
	ticks := evalAs[int](tb, `window.__ticks`)
	t.Logf("countdown from %d s: %d visible updates; announced: %q", opened, ticks, said)
	if ticks < 10 {
		t.Errorf("the visible countdown changed %d times, want one a second", ticks)
	}
	if len(said) != 2 {
		t.Fatalf("%d announcements over the countdown, want 2 (start, near the end): %q", len(said), said)
	}
	if !strings.Contains(said[0], "You will be signed out in") || !strings.Contains(said[0], "Stay signed in") {
		t.Errorf("first announcement %q: want when and how to stay", said[0])
	}
	if !strings.Contains(said[1], "seconds left") {
		t.Errorf("second announcement %q: want the seconds left", said[1])
	}
	// The sign-out itself still comes on time and clears the page.
	tb.waitFor("idle sign-out", `location.pathname === '/login'`, 10*time.Second)
}
