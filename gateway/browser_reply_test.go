package gateway_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/testtool"
)

// TestBrowserReplyAttachment: a real browser sends the message page's reply
// form with a file (multipart/form-data, as Chromium builds it); the portal
// reads it in memory, the reply shows in the thread with its attachment,
// and a file over portal.max_reply_body_bytes gets the 413 page. The
// gateway's temporary directory stays empty throughout.
func TestBrowserReplyAttachment(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	if testing.Short() {
		t.Skip("a real-browser test")
	}
	dir := t.TempDir() // the first call fixes the test's temp parent before TMPDIR changes
	files := t.TempDir()
	// Chromium starts before TMPDIR changes, so its own temporary files
	// stay out of the gateway's.
	b := newBrowser(t, chromium)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cfg := e2e.Config(dir)
	cfg.Portal.MaxReplyBodyBytes = 256 << 10
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)

	const patient = "pat.reply@example.net"
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{patient},
		Msg: plainText(staff, "Dr Lee", patient, "Your appointment", "Please bring your insurance card.")}); err != nil {
		t.Fatal(err)
	}
	token := e2e.ClaimToken(t, h.WaitNotices(1)[0])
	tab := b.first
	tab.navigate(h.BaseURL + "/claim/" + token)
	tab.waitFor("claim form", `document.querySelector('#password') !== null`, 10*time.Second)
	tab.do(
		chromedp.SetValue(chromedp.CSS("#password"), patientPW),
		chromedp.SetValue(chromedp.CSS("#confirm"), patientPW),
		chromedp.Click(chromedp.CSS(`form.card button[type=submit]`)),
	)
	tab.waitFor("the message with its reply form", `document.querySelector('#reply-files') !== null`, 15*time.Second)
	msgURL := tab.eval(`location.href`)

	writeFile := func(name string, size int) string {
		p := filepath.Join(files, name)
		c := []byte(newCanary("REPLYFILE"))
		if err := os.WriteFile(p, bytes.Repeat(c, size/len(c)+1)[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	send := func(text, file string) {
		tab.do(
			chromedp.SetValue(chromedp.CSS("#reply-text"), text),
			chromedp.SetUploadFiles(chromedp.CSS("#reply-files"), []string{file}),
			chromedp.Click(chromedp.CSS(`form[action$="/reply"] button[type=submit]`)),
		)
	}

	send("Here is my card.", writeFile("insurance-card.pdf", 20<<10))
	tab.waitFor("the reply in the thread", `location.search.includes('replied=1') && document.querySelector('.reply') !== null`, 15*time.Second)
	tab.expectText(".reply", "insurance-card.pdf")
	tab.expectText(".reply .body", "Here is my card.")

	tab.navigate(msgURL)
	tab.waitFor("the reply form", `document.querySelector('#reply-files') !== null`, 10*time.Second)
	send("And the whole file.", writeFile("scan.pdf", 300<<10))
	tab.waitFor("the 413 page", `document.body !== null && document.body.innerText.includes('larger than this page accepts')`, 15*time.Second)
	if txt := tab.eval(`document.body.innerText`); !strings.Contains(txt, "256 KB") {
		t.Errorf("the 413 page does not name the bound: %q", txt)
	}

	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left in the gateway's temporary directory: %s", e.Name())
	}
}
