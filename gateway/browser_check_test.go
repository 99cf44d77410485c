package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/phigate/phigate/internal/testtool"
)

// The shared page checks of issue 13 (see /work/notes/browser-check.md):
// every real-browser test that opens a portal page calls checkPage on it,
// so that each page is held, at a phone and at a desktop size, to no
// sideways scrolling, no axe-core violation and WCAG 2.2 target sizes.

// axeVersion is the axe-core release the checks run. .ci/run installs this
// exact version from npm into axeCacheDir and names the file in
// AXE_CORE_JS; either way the file must be this version.
const axeVersion = "4.14.1"

// viewport is one screen size checkPage looks at the page with.
type viewport struct {
	name          string // file-name suffix: "phone", "desktop"
	width, height int64
	mobile        bool
}

// checkViewports: a common phone (390×844 CSS px, as an iPhone 12-15) and a
// small laptop screen.
var checkViewports = []viewport{
	{name: "phone", width: 390, height: 844, mobile: true},
	{name: "desktop", width: 1280, height: 800},
}

// minTarget is WCAG 2.2 SC 2.5.8 (target size, minimum), in CSS px.
const minTarget = 24

var axeOnce struct {
	sync.Once
	src, path, err string
}

// axeCacheDir is where .ci/run installs axe-core when AXE_CORE_JS is
// not set: $XDG_CACHE_HOME/phigate/axe-core-VERSION (~/.cache/... by default).
func axeCacheDir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "phigate", "axe-core-"+axeVersion)
}

// needAxe returns the source of axe.min.js. Like testtool.Need, a missing
// axe-core skips the test outside CI and fails it in CI (CI=true), where
// .ci/run must have installed it. Call it at the start of a browser test,
// beside testtool.Need(t, "chromium"), so a skip comes before any work.
func needAxe(t testing.TB) string {
	t.Helper()
	axeOnce.Do(func() {
		p := os.Getenv("AXE_CORE_JS")
		if p == "" {
			p = filepath.Join(axeCacheDir(), "node_modules", "axe-core", "axe.min.js")
		}
		axeOnce.path = p
		b, err := os.ReadFile(p)
		if err != nil {
			axeOnce.err = fmt.Sprintf("axe-core not found (%v): npm install --prefix %s axe-core@%s, or set AXE_CORE_JS", err, axeCacheDir(), axeVersion)
			return
		}
		// The file opens with "/*! axe v4.14.1": another version may judge
		// differently from the one the pages were checked with.
		if !strings.Contains(string(b[:min(len(b), 200)]), "axe v"+axeVersion) {
			axeOnce.err = fmt.Sprintf("%s is not axe-core %s (header %q)", p, axeVersion, string(b[:min(len(b), 40)]))
			return
		}
		axeOnce.src = string(b)
	})
	if axeOnce.err != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s; .ci/run should have installed it", axeOnce.err)
		}
		t.Skip(axeOnce.err)
	}
	return axeOnce.src
}

// checkPage checks the page tb shows now, at each of checkViewports:
//
//  1. nothing is wider than the screen: the page never scrolls sideways
//     (the offending elements are named if it does);
//  2. axe-core (the pinned npm release, injected into the page) finds no
//     violation of its default rules (WCAG 2.0-2.2 A/AA and best practice);
//     each is reported with its rule id, impact and target;
//  3. every visible control (a, button, input, select, textarea, summary,
//     [role=button]) is at least 24×24 CSS px, or meets the spacing
//     exception of WCAG 2.2 SC 2.5.8 (a 24 px circle on its centre touches
//     no other target nor another small target's circle);
//  4. with PHIGATE_SCREENSHOTS set, saves a full-page screenshot as
//     <name>-phone.png and <name>-desktop.png (PHIGATE_SCREENSHOTS=1:
//     docs/screenshots/; otherwise the directory it names).
//
// Problems are reported with t.Errorf (the test goes on); t may be a
// subtest of the one that opened tb. The tab is left at the default desktop
// size (1280×900) the other helpers expect.
func checkPage(t testing.TB, tb *tab, name string) {
	t.Helper()
	axe := needAxe(t)
	where := tb.where()
	for _, vp := range checkViewports {
		setViewport(t, tb, vp)
		checkNoSideways(t, tb, name, vp, where)
		checkAxe(t, tb, axe, name, vp, where)
		checkTargets(t, tb, name, vp, where)
		if dir := screenshotDir(); dir != "" {
			pageShot(t, tb, filepath.Join(dir, name+"-"+vp.name+".png"))
		}
	}
	doIn(t, tb, desktop)
}

// screenshotDir is where checkPage saves its screenshots, or "".
func screenshotDir() string {
	switch d := os.Getenv("PHIGATE_SCREENSHOTS"); d {
	case "", "0":
		return ""
	case "1":
		return filepath.Join("..", "docs", "screenshots")
	default:
		return d
	}
}

// doIn runs actions in tb within 15 s, failing t (not tb.t: t may be a
// subtest) if they fail.
func doIn(t testing.TB, tb *tab, a ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, a...); err != nil {
		t.Fatalf("%s: %v", tb.name, err)
	}
}

// evalIn evaluates js in tb's page, failing t on an error.
func evalIn[T any](t testing.TB, tb *tab, d time.Duration, js string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, d)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, opts...))
	if err != nil {
		t.Fatalf("%s: %.80s…: %v", tb.name, js, err)
	}
	return v
}

func setViewport(t testing.TB, tb *tab, vp viewport) {
	t.Helper()
	opts := []chromedp.EmulateViewportOption{func(p *emulation.SetDeviceMetricsOverrideParams, _ *emulation.SetTouchEmulationEnabledParams) {
		// screen.* is how the wait below knows the size applied.
		p.ScreenWidth, p.ScreenHeight = vp.width, vp.height
	}}
	if vp.mobile {
		// A phone: the page's meta viewport applies, touch input, twice
		// the pixels (so its screenshot looks as it does on one).
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulatePortrait, chromedp.EmulateScale(2))
	}
	doIn(t, tb, chromedp.EmulateViewport(vp.width, vp.height, opts...))
	// Wait for the new layout: the screen size applied, images loaded, and
	// two frames drawn since. (Not innerWidth: a phone widens the layout
	// viewport to a page that is too wide, which checkNoSideways reports.)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ok := evalIn[bool](t, tb, 5*time.Second, fmt.Sprintf(`screen.width === %d && document.readyState === 'complete' &&
			Array.from(document.images).every(i => i.complete)`, vp.width))
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the page did not settle at %d px within 10 s (screen %d px)", tb.name, vp.width,
				evalIn[int](t, tb, 5*time.Second, `screen.width`))
		}
		time.Sleep(50 * time.Millisecond)
	}
	evalIn[bool](t, tb, 5*time.Second, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))`, chromedp.EvalAwaitPromise)
}

// checkNoSideways: the page is no wider than the screen (scrollWidth <=
// innerWidth, and innerWidth is the screen's: a phone zooms out to fit a
// page that is too wide, which widens innerWidth instead).
func checkNoSideways(t testing.TB, tb *tab, name string, vp viewport, where string) {
	t.Helper()
	type sideways struct {
		ScrollWidth, InnerWidth int
		Offenders               []string
	}
	res := evalIn[sideways](t, tb, 10*time.Second, fmt.Sprintf(`(() => {
		const W = %d;
		const sw = document.scrollingElement.scrollWidth;
		const out = [];
		if (sw > W || window.innerWidth > W) {
			// The outermost elements that reach past the right edge (their
			// parent does not), outside any box that scrolls or clips.
			const past = el => el.getBoundingClientRect().right > W + 0.5;
			const clipped = el => {
				for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
					if (getComputedStyle(p).overflowX !== 'visible') { return true; }
				}
				return false;
			};
			for (const el of document.body.querySelectorAll('*')) {
				if (!past(el) || (el.parentElement !== document.body && past(el.parentElement)) || clipped(el)) { continue; }
				const r = el.getBoundingClientRect();
				let d = el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
					(el.classList.length ? '.' + Array.from(el.classList).join('.') : '');
				out.push(d + ' (' + Math.round(r.left) + '-' + Math.round(r.right) + ' px: ' +
					JSON.stringify((el.innerText || el.value || '').trim().slice(0, 40)) + ')');
				if (out.length >= 15) { break; }
			}
		}
		return {ScrollWidth: sw, InnerWidth: window.innerWidth, Offenders: out};
	})()`, vp.width))
	if res.ScrollWidth > int(vp.width) || res.InnerWidth > int(vp.width) {
		t.Errorf("%s at %s (%d px): the page is %d px wide and scrolls sideways (%s); too wide:\n\t%s",
			name, vp.name, vp.width, res.ScrollWidth, where, strings.Join(res.Offenders, "\n\t"))
	}
}

// axeViolation is the part of an axe-core result the report needs.
type axeViolation struct {
	ID, Impact, Help string
	Nodes            []struct {
		Target []any
		HTML   string
	}
}

// checkAxe injects axe-core (once per page) and runs it over the document.
// The message body's frame is not entered: it is the sender's HTML, in a
// sandbox that runs no script.
func checkAxe(t testing.TB, tb *tab, src, name string, vp viewport, where string) {
	t.Helper()
	if !evalIn[bool](t, tb, 5*time.Second, `typeof window.axe === 'object'`) {
		// Evaluated through DevTools, so the page's CSP (script-src
		// 'self') does not stop it.
		evalIn[chromedp.Void](t, tb, 20*time.Second, src+"\n;undefined")
	}
	vs := evalIn[[]axeViolation](t, tb, 60*time.Second, `axe.run(document, {iframes: false, resultTypes: ['violations']})
		.then(r => r.violations.map(v => ({ID: v.id, Impact: v.impact || '', Help: v.help,
			Nodes: v.nodes.map(n => ({Target: n.target, HTML: n.html.slice(0, 160)}))})))`, chromedp.EvalAwaitPromise)
	for _, v := range vs {
		var nodes []string
		for _, n := range v.Nodes {
			nodes = append(nodes, fmt.Sprintf("%v  %s", n.Target, n.HTML))
		}
		t.Errorf("%s at %s: axe-core %s (%s): %s (%s)\n\t%s", name, vp.name, v.ID, v.Impact, v.Help, where, strings.Join(nodes, "\n\t"))
	}
}

// checkTargets: WCAG 2.2 SC 2.5.8 for every control a person can see.
func checkTargets(t testing.TB, tb *tab, name string, vp viewport, where string) {
	t.Helper()
	small := evalIn[[]string](t, tb, 10*time.Second, fmt.Sprintf(`(() => {
		const MIN = %d;
		const sel = 'a[href], button, input:not([type=hidden]), select, textarea, summary, [role=button]';
		const seen = [];
		for (const el of document.querySelectorAll(sel)) {
			const r = el.getBoundingClientRect();
			const st = getComputedStyle(el);
			// Not on screen: hidden, or (as the skip link until it has the
			// focus) moved out of the page.
			if (r.width === 0 || r.height === 0 || st.visibility === 'hidden' || r.right <= 0 || r.bottom <= 0) { continue; }
			seen.push({el, r, cx: r.left + r.width / 2, cy: r.top + r.height / 2,
				small: r.width < MIN - 0.01 || r.height < MIN - 0.01});
		}
		// The spacing exception: a circle of diameter MIN on the small
		// target's centre intersects no other target, nor the circle of
		// another small target.
		const hitsRect = (c, r) => {
			const dx = Math.max(r.left - c.cx, 0, c.cx - r.right);
			const dy = Math.max(r.top - c.cy, 0, c.cy - r.bottom);
			return dx * dx + dy * dy < (MIN / 2) * (MIN / 2);
		};
		const out = [];
		for (const a of seen) {
			if (!a.small) { continue; }
			const near = seen.filter(b => b !== a && !b.el.contains(a.el) && !a.el.contains(b.el) &&
				(b.small ? Math.hypot(a.cx - b.cx, a.cy - b.cy) < MIN : hitsRect(a, b.r)));
			if (near.length === 0) { continue; }
			const d = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
				(el.getAttribute('type') ? '[type=' + el.getAttribute('type') + ']' : '') +
				' ' + JSON.stringify((el.innerText || el.value || el.getAttribute('aria-label') || '').trim().slice(0, 30));
			out.push(d(a.el) + ' is ' + Math.round(a.r.width) + '×' + Math.round(a.r.height) + ' px, too near ' + near.slice(0, 3).map(b => d(b.el)).join(', '));
		}
		return out;
	})()`, minTarget))
	for _, s := range small {
		t.Errorf("%s at %s: target under %d×%d CSS px without the spacing exception: %s (%s)", name, vp.name, minTarget, minTarget, s, where)
	}
}

// pageShot saves a full-page PNG of tb. The countdown bar is hidden for the
// shot: the tests' short idle timeouts keep it open on every signed-in
// page, which it never is at normal settings.
func pageShot(t testing.TB, tb *tab, file string) {
	t.Helper()
	// CSSOM, not a style element: the page's CSP allows no inline styles.
	evalIn[string](t, tb, 5*time.Second, `(() => { const b = document.getElementById('logoff-warning'); if (b) { b.style.setProperty('display', 'none', 'important'); } return ''; })()`)
	// A long page (the audit trail as cards) on a loaded machine takes a while.
	ctx, cancel := context.WithTimeout(tb.ctx, 90*time.Second)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	cancel()
	evalIn[string](t, tb, 5*time.Second, `(() => { const b = document.getElementById('logoff-warning'); if (b) { b.style.removeProperty('display'); } return ''; })()`)
	if err != nil {
		t.Fatalf("%s: screenshot %s: %v", tb.name, file, err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserCheckPage holds checkPage itself to account: a page built to
// break each rule is reported on every count, at both sizes, and a page
// that keeps them passes clean.
func TestBrowserCheckPage(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	needAxe(t)
	if testing.Short() {
		t.Skip("a real-browser test")
	}
	const head = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>t</title></head><body><main><h1>Check</h1>`
	pages := map[string]string{
		"/bad": head + `<table><tr><td style="white-space:nowrap">` + strings.Repeat("wide ", 400) + `</td></tr></table>` +
			`<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">` +
			`<p><button style="width:16px;height:16px;padding:0">a</button><button style="width:16px;height:16px;padding:0">b</button></p></main></body></html>`,
		"/good": head + `<p>A <a href="/bad">link in a sentence</a> is fine.</p>` +
			`<p><button style="min-width:44px;min-height:44px">OK</button> <button style="width:16px;height:16px;padding:0;margin-left:40px" aria-label="small but alone">x</button></p></main></body></html>`,
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, pages[r.URL.Path])
	}))
	defer srv.Close()
	tb := newBrowser(t, chromium).first

	t.Setenv("PHIGATE_SCREENSHOTS", "")
	rec := &recordTB{TB: t}
	tb.navigate(srv.URL + "/bad")
	checkPage(rec, tb, "bad")
	for _, want := range []string{
		"bad at phone (390 px): the page is", "bad at desktop (1280 px): the page is", "table (8-",
		"axe-core image-alt (critical)",
		"at phone: target under 24×24", "at desktop: target under 24×24", `button "a" is 16×16 px, too near button "b"`,
	} {
		if !strings.Contains(strings.Join(rec.errs, "\n"), want) {
			t.Errorf("the bad page's report lacks %q:\n%s", want, strings.Join(rec.errs, "\n"))
		}
	}
	if w := evalAs[int](tb, `window.innerWidth`); w != 1280 {
		t.Errorf("checkPage left the tab %d px wide, want the 1280 px desktop", w)
	}

	rec = &recordTB{TB: t}
	tb.navigate(srv.URL + "/good")
	checkPage(rec, tb, "good")
	if len(rec.errs) != 0 {
		t.Errorf("the good page was faulted:\n%s", strings.Join(rec.errs, "\n"))
	}
}

// recordTB keeps what Errorf reports instead of failing the test.
type recordTB struct {
	testing.TB
	errs []string
}

func (r *recordTB) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *recordTB) Helper() {}
