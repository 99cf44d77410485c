package gateway_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/testtool"
)

// TestBrowserEnrol (issue 13.6): second-factor enrolment survives a typo.
// In Chromium: a wrong code, and a reload, show the same key and QR code;
// the key is in groups of four; an otpauth:// link opens the app on a
// phone; "Show me a new key" is the only thing that changes it; the
// secret and its sealed form never reach an address bar. The API the same
// way: a wrong code keeps the pending secret usable, setup with it shows it
// again, and {"new": true} makes another.
func TestBrowserEnrol(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	needAxe(t)
	if testing.Short() {
		t.Skip("a real-browser test")
	}
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	h.AddStaff(staff)
	tb := newBrowser(t, chromium).first
	tb.navigate(h.BaseURL + "/login")
	tb.waitFor("sign-in form", `document.querySelector('#email') !== null`, 10*time.Second)
	tb.do(
		chromedp.SetValue(chromedp.CSS("#email"), staff),
		chromedp.SetValue(chromedp.CSS("#password"), staffPortalPW),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button[type=submit]`)),
	)
	type shown struct{ Key, QR, Link, Href string }
	look := func(what string) shown {
		t.Helper()
		tb.waitFor(what, `location.pathname === '/account/2fa' && document.readyState === 'complete' && document.querySelector('code.secret') !== null`, 15*time.Second)
		return evalAs[shown](tb, `({Key: document.querySelector('code.secret').textContent, QR: document.querySelector('img.qr').src,
			Link: document.querySelector('.otpauth a').getAttribute('href'), Href: location.href})`)
	}
	first := look("enrolment page")
	secret := strings.ReplaceAll(first.Key, " ", "")
	for i, g := range strings.Split(first.Key, " ") {
		if len(g) != 4 && i != len(strings.Split(first.Key, " "))-1 || len(g) > 4 {
			t.Errorf("key %q: group %q, want groups of four", first.Key, g)
		}
	}
	if u, err := url.Parse(first.Link); err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Query().Get("secret") != secret {
		t.Errorf("authenticator link %q: want otpauth://totp/... with the key shown", first.Link)
	}
	checkPage(t, tb, "enrol-staff")
	// On a phone the link is there to tap.
	doIn(t, tb, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateTouch))
	tb.waitFor("phone layout", `window.innerWidth === 390`, 5*time.Second)
	if vis := evalAs[bool](tb, `document.querySelector('.otpauth a').getBoundingClientRect().height > 0`); !vis {
		t.Error("on a phone the authenticator link is hidden")
	}
	tb.do(desktop)

	wrong := "000000"
	if e2e.TOTPCode(t, secret, time.Now()) == wrong {
		wrong = "111111"
	}
	tb.do(
		chromedp.SetValue(chromedp.CSS("#code"), wrong),
		chromedp.Click(chromedp.CSS(`form[action="/account/2fa"] button.primary`)),
	)
	tb.waitFor("the refusal", `document.querySelector('#form-error') !== null`, 15*time.Second)
	tb.expectText("#form-error", "That code is not right")
	if again := look("enrolment page after a typo"); again.Key != first.Key || again.QR != first.QR || again.Link != first.Link {
		t.Errorf("after a wrong code the key changed: %q, was %q", again.Key, first.Key)
	}
	tb.navigate(h.BaseURL + "/account/2fa")
	if again := look("enrolment page reloaded"); again.Key != first.Key || again.QR != first.QR {
		t.Errorf("after a reload the key changed: %q, was %q", again.Key, first.Key)
	}
	tb.do(chromedp.Click(chromedp.CSS(`form.again button[name=new]`)))
	tb.waitFor("a new key", fmt.Sprintf(`document.querySelector('code.secret') !== null && document.querySelector('code.secret').textContent !== %q`, first.Key), 15*time.Second)
	second := look("the new key")
	if second.QR == first.QR || second.Link == first.Link {
		t.Error("Show me a new key kept the QR code or the link")
	}
	secret2 := strings.ReplaceAll(second.Key, " ", "")
	pending := tb.eval(`document.querySelector('input[name=pending]').value`)
	tb.do(
		chromedp.SetValue(chromedp.CSS("#code"), e2e.TOTPCode(t, secret2, time.Now())),
		chromedp.Click(chromedp.CSS(`form[action="/account/2fa"] button.primary`)),
	)
	tb.waitFor("recovery codes", `document.querySelectorAll('ul.codes li').length > 0`, 15*time.Second)
	for _, s := range []shown{first, second} {
		for _, secretish := range []string{strings.ReplaceAll(s.Key, " ", ""), pending} {
			if strings.Contains(s.Href, secretish) || strings.Contains(tb.eval(`location.href`), secretish) {
				t.Errorf("the secret or its sealed form is in an address: %s", s.Href)
			}
		}
	}

	// The API.
	const other = "dr.okafor@clinic.example"
	h.AddStaff(other)
	c := h.Client()
	var in struct{ Next string }
	c.JSON("POST", "/api/v1/login", map[string]string{"email": other, "password": staffPortalPW}, 200, &in)
	if in.Next != "enrol" {
		t.Fatalf("next %q, want enrol", in.Next)
	}
	type setup struct{ Secret, URI, Pending string }
	var a, again, b setup
	c.JSON("POST", "/api/v1/account/2fa/setup", nil, 200, &a)
	wrong = "000000"
	if e2e.TOTPCode(t, a.Secret, time.Now()) == wrong {
		wrong = "111111"
	}
	var refusal struct{ Error, Message string }
	c.JSON("POST", "/api/v1/account/2fa/confirm", map[string]string{"pending": a.Pending, "code": wrong}, 400, &refusal)
	if refusal.Error != "bad_code" {
		t.Errorf("wrong code: %+v, want bad_code", refusal)
	}
	c.JSON("POST", "/api/v1/account/2fa/setup", map[string]any{"pending": a.Pending}, 200, &again)
	if again.Secret != a.Secret || again.URI != a.URI {
		t.Errorf("setup with the pending secret: %q, want the same %q", again.Secret, a.Secret)
	}
	c.JSON("POST", "/api/v1/account/2fa/setup", map[string]any{"pending": a.Pending, "new": true}, 200, &b)
	if b.Secret == a.Secret || b.Pending == a.Pending {
		t.Errorf("setup with new: the same secret %q", b.Secret)
	}
	var done struct {
		RecoveryCodes []string `json:"recovery_codes"`
	}
	c.JSON("POST", "/api/v1/account/2fa/confirm", map[string]string{"pending": b.Pending, "code": e2e.TOTPCode(t, b.Secret, time.Now())}, 200, &done)
	if len(done.RecoveryCodes) != 10 {
		t.Errorf("%d recovery codes, want 10", len(done.RecoveryCodes))
	}
	c.JSON("GET", "/api/v1/messages", nil, 200, nil)
}
