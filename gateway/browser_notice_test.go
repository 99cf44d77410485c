package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/testtool"
	"github.com/phigate/phigate/notify"
)

// htmlPart returns the text/html part of a notice email.
func htmlPart(t *testing.T, raw []byte) string {
	t.Helper()
	r, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ct, _, _ := p.Header.(*mail.InlineHeader).ContentType(); ct == "text/html" {
			b, err := io.ReadAll(p.Body)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatal("the notice has no HTML part")
	return ""
}

// Issue 13.9: the HTML part of every notice a recipient gets, shown by
// Chromium as a phone (390 px) and a desktop would: no sideways scrolling
// (the long link breaks, the button fits), no axe-core violation, targets
// of at least 24 px (checkPage). The new-message notice is the one a real
// delivery wrote to the maildrop (dispatcher, DKIM); the new-link and reset
// notices are rendered from the same templates with the same settings. A
// long organisation name and verification address make it harder.
func TestBrowserNoticeOnPhone(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	needAxe(t)
	if testing.Short() {
		t.Skip("a real-browser test")
	}
	cfg := e2e.Config(t.TempDir())
	cfg.Org.Name = "Riverside Community Health and Wellbeing Cooperative"
	cfg.Org.VerifyURL = "https://www.riverside-community-health.example/is-this-email-really-from-us"
	cfg.Org.VerifyPhone = "+44 20 7946 0000"
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	msg := e2e.Multipart(staff, "Dr Lee", "phone.reader@example.net", "Results", "body", "<p>body</p>", "a.txt", []byte("x"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"phone.reader@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	delivered, err := os.ReadFile(h.WaitNotices(1)[0])
	if err != nil {
		t.Fatal(err)
	}
	pages := map[string]string{"/notice-new-message": htmlPart(t, delivered)}
	n := notify.Notice{To: "phone.reader@example.net", Claim: true, ExpiresAt: time.Now().Add(7 * 24 * time.Hour), Reference: notify.NewReference(),
		Link: h.Cfg.Server.PublicURL + "/claim/" + strings.Repeat("Zx9_", 11)}
	for _, kind := range []string{notify.KindClaimLink, notify.KindPasswordReset} {
		raw, err := notify.RenderKind(kind, n, h.Cfg.Org, "gw.example", "x", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		pages["/notice-"+kind] = htmlPart(t, raw)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, pages[r.URL.Path])
	}))
	defer srv.Close()

	tb := newBrowser(t, chromium).first
	for path, html := range pages {
		if !strings.Contains(html, "Reference: ") || !strings.Contains(html, "/claim/") && !strings.Contains(html, "/login") {
			t.Fatalf("%s: not a notice with a link and a reference:\n%s", path, html)
		}
		tb.navigate(srv.URL + path)
		checkPage(t, tb, strings.TrimPrefix(path, "/"))
		// At 390 px the raw link is on screen in full, broken over lines,
		// and the button is inside the screen too.
		setViewport(t, tb, checkViewports[0])
		got := evalAs[[]int](tb, `(() => {
			const raw = Array.from(document.querySelectorAll('span')).find(s => s.textContent.includes('://'));
			const btn = document.querySelector('a[href*="://"]');
			const r = raw.getBoundingClientRect(), b = btn.getBoundingClientRect();
			return [Math.round(r.right), raw.getClientRects().length, Math.round(b.right), Math.round(b.height)];
		})()`)
		if got[0] > 390 || got[1] < 2 || got[2] > 390 || got[3] < 24 {
			t.Errorf("%s at 390 px: raw link right edge %d px in %d lines, button right edge %d px, height %d px", path, got[0], got[1], got[2], got[3])
		}
		doIn(t, tb, desktop)
	}
}
