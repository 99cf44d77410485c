package gateway_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/serviceworker"
	"github.com/chromedp/chromedp"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/pushtest"
	"github.com/phigate/phigate/internal/testtool"
	"github.com/phigate/phigate/notify"
)

// TestBrowserPush (issue 10.3) in headless Chromium: Chromium's own
// manifest parser finds the web app manifest valid with the members a
// home-screen install needs; the account page registers the service
// worker for the whole portal; and the push the gateway sent for a
// message accepted over SMTP, as the stand-in push service received it
// and decrypted with the device's key, is delivered to the worker through
// the DevTools protocol (ServiceWorker.deliverPushMessage): the worker
// shows the notification.
func TestBrowserPush(t *testing.T) {
	chromium := testtool.Need(t, "chromium")
	if testing.Short() {
		t.Skip("real-browser test")
	}
	h, svc := startPush(t)
	pass := h.AddStaff(staff)
	const rcpt = "push.browser@example.net"
	api, _ := claimNew(t, h, pass, rcpt, patientPW)
	device := pushtest.NewDevice(t)
	api.JSON("POST", "/api/v1/push/devices", subscription(device), 201, nil)

	b := newBrowser(t, chromium)
	tb := b.first
	bctx := chromedp.FromContext(tb.ctx)
	if _, err := cdp.Call(tb.ctx, bctx.Browser, cdpbrowser.SetPermission, cdpbrowser.SetPermissionParams{
		Permission: &cdpbrowser.PermissionDescriptor{Name: "notifications"}, Setting: cdpbrowser.PermissionSettingGranted, Origin: h.BaseURL}); err != nil {
		t.Fatalf("grant notifications: %v", err)
	}
	tb.navigate(h.BaseURL + "/login")
	tb.waitFor("sign-in form", `document.querySelector('#email') !== null`, 10*time.Second)
	tb.do(
		chromedp.SendKeys(chromedp.CSS("#email"), rcpt),
		chromedp.SendKeys(chromedp.CSS("#password"), patientPW),
		chromedp.Click(chromedp.CSS(`main form button[type=submit]`)),
	)
	tb.waitFor("inbox", `location.pathname === '/inbox'`, 15*time.Second)

	// The manifest, as Chromium parsed it.
	m, err := chromedp.Run(tb.ctx, func(ctx context.Context, tg *chromedp.Target) (page.GetAppManifestResult, error) {
		return cdp.Call(ctx, tg, page.GetAppManifest, page.GetAppManifestParams{})
	})
	if err != nil {
		t.Fatalf("Page.getAppManifest: %v", err)
	}
	if len(m.Errors) != 0 || !strings.HasSuffix(m.URL, "/manifest.webmanifest") {
		t.Fatalf("manifest %s: errors %+v", m.URL, m.Errors)
	}
	var raw map[string]any
	if err := json.Unmarshal([]byte(m.Data), &raw); err != nil {
		t.Fatalf("manifest is not JSON: %v", err)
	}
	for _, member := range []string{"name", "short_name", "start_url", "display", "icons"} {
		if _, ok := raw[member]; !ok {
			t.Errorf("manifest lacks %q", member)
		}
	}
	if raw["short_name"] != h.Cfg.Org.Name {
		t.Errorf("short_name %v, want the organisation's name", raw["short_name"])
	}
	// Chromium reports the display mode by its enum name (kStandalone).
	if mf := m.Manifest; mf == nil || !strings.EqualFold(strings.TrimPrefix(mf.Display, "k"), "standalone") ||
		mf.Name != h.Cfg.Org.Name+" secure messages" || len(mf.Icons) < 2 || mf.StartURL != h.BaseURL+"/inbox" {
		t.Errorf("parsed manifest: %+v", mf)
	}

	// The account page registers the worker; it takes the portal.
	tb.navigate(h.BaseURL + "/account")
	tb.waitFor("notifications section", `document.querySelector('#push-form') !== null && !document.querySelector('#push-form').hidden`, 10*time.Second)
	tb.waitFor("the service worker in control", `navigator.serviceWorker.controller !== null`, 15*time.Second)
	if scope := tb.eval(`navigator.serviceWorker.controller.scriptURL`); scope != h.BaseURL+"/sw.js" {
		t.Errorf("worker script %q", scope)
	}
	tb.eval(`window.pushSeen = []; navigator.serviceWorker.addEventListener('message', (e) => window.pushSeen.push(e.data.title)); 'ok'`)

	regID, err := chromedp.Run(tb.ctx, func(ctx context.Context, tg *chromedp.Target) (serviceworker.RegistrationID, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		updates := cdp.Events(ctx, tg, serviceworker.WorkerRegistrationUpdated)
		if _, err := cdp.Call(ctx, tg, serviceworker.Enable, cdp.Empty{}); err != nil {
			return "", err
		}
		for ev, err := range updates {
			if err != nil {
				return "", err
			}
			for _, r := range ev.Registrations {
				if r.ScopeURL == h.BaseURL+"/" && !r.IsDeleted {
					return r.RegistrationID, nil
				}
			}
		}
		return "", ctx.Err()
	})
	if err != nil {
		t.Fatalf("service worker registration: %v", err)
	}

	// A message over SMTP: the push the stand-in service received, opened
	// with the device's key, is what the browser's worker gets.
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{rcpt},
		Msg: plainText(staff, "Dr Lee", rcpt, "Biopsy result", "benign")}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pushes := svc.Wait(wctx, t, 1)
	data, err := device.Decrypt(pushes[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	var pl notify.PushPayload
	if err := json.Unmarshal(data, &pl); err != nil || strings.Contains(string(data), "Biopsy") {
		t.Fatalf("payload %s: %v", data, err)
	}
	if _, err := chromedp.Run(tb.ctx, func(ctx context.Context, tg *chromedp.Target) (cdp.Empty, error) {
		return cdp.Call(ctx, tg, serviceworker.DeliverPushMessage, serviceworker.DeliverPushMessageParams{
			Origin: h.BaseURL, RegistrationID: regID, Data: string(data)})
	}); err != nil {
		t.Fatalf("ServiceWorker.deliverPushMessage: %v", err)
	}
	tb.waitFor("the worker's push handler", `window.pushSeen.length > 0`, 15*time.Second)
	if got := tb.eval(`window.pushSeen[0]`); got != pl.Title {
		t.Errorf("handler saw %q, want %q", got, pl.Title)
	}
	shown, err := chromedp.Run(tb.ctx, chromedp.Evaluate[string](
		`navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((ns) => ns.map((n) => n.title + '|' + n.body + '|' + n.data.url).join('\n'))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if want := pl.Title + "|" + pl.Body + "|" + h.BaseURL + "/inbox"; shown != want {
		t.Errorf("notifications shown: %q, want %q", shown, want)
	}
	// The account page lists the device with its last notification.
	// (A new document: the tab is on /account already.)
	tb.navigate(h.BaseURL + "/account?push=on")
	tb.waitFor("device list", `document.querySelector('table.devices') !== null`, 10*time.Second)
	if row := tb.eval(`document.querySelector('table.devices tbody tr').innerText`); !strings.Contains(row, "Phone") || strings.Contains(row, "none yet") {
		t.Errorf("device row %q: want the device with its last notification", row)
	}
	tb.shot("account-notifications.png")

	// Signing out clears what the pages showed, not the device's push
	// subscription the account holder chose to keep.
	tb.do(chromedp.Click(chromedp.CSS(`form.signout button`)))
	tb.waitFor("signed out", `location.pathname === '/login'`, 10*time.Second)
	got, err := chromedp.Run(tb.ctx, chromedp.Evaluate[bool](
		`navigator.serviceWorker.getRegistration('/').then((r) => r !== undefined && r.active !== null)`, chromedp.EvalAwaitPromise))
	if err != nil || !got {
		t.Errorf("after sign-out the service worker is gone (%v): the device would get no more pushes", err)
	}
}
