package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/pushtest"
	"github.com/phigate/phigate/notify"
)

// startPush runs a gateway whose push channel posts to a local stand-in
// push service, the only host on its allowlist.
func startPush(t *testing.T) (*e2e.Harness, *pushtest.Service) {
	svc := pushtest.Start(t)
	cfg := e2e.Config(t.TempDir())
	cfg.Push.AllowedHosts = []string{pushtest.Host}
	h := e2e.StartWith(t, cfg, func(g *gateway.Gateway) { g.PushClient = svc.Client() })
	return h, svc
}

type devicesJSON struct {
	PublicKey  string          `json:"public_key"`
	Devices    []notify.Device `json:"devices"`
	MaxDevices int             `json:"max_devices"`
}

func subscription(d *pushtest.Device) map[string]any {
	return map[string]any{"subscription": d.JSON(), "label": "Phone"}
}

func pushForm(endpoint string, d *pushtest.Device, label string) string {
	return url.Values{"endpoint": {endpoint}, "p256dh": {d.P256dh()}, "auth": {d.Auth()}, "label": {label}}.Encode()
}

// Issue 10.3: devices are added, listed and removed through the API and the
// account page (one operation behind both); endpoints off the allowlist
// are refused either way; a message accepted over SMTP reaches each
// device as an RFC 8291 push that the test decrypts and finds PHI-free; a
// 410 from the push service removes the device.
func TestPushDevices(t *testing.T) {
	h, svc := startPush(t)
	ctx := context.Background()
	pass := h.AddStaff(staff)
	pat, _ := claimNew(t, h, pass, "push.patient@example.net", patientPW)

	var got devicesJSON
	pat.JSON("GET", "/api/v1/push", nil, 200, &got)
	if got.PublicKey != h.G.Push.VAPIDPublic || len(got.Devices) != 0 || got.MaxDevices != 10 {
		t.Fatalf("GET /api/v1/push: %+v", got)
	}

	// Refusals: plain http, a host not listed, an IP literal.
	phone, laptop := pushtest.NewDevice(t), pushtest.NewDevice(t)
	for _, bad := range []string{
		strings.Replace(phone.Endpoint(), "https:", "http:", 1),
		"https://push.attacker.example/wpush/x",
		"https://127.0.0.1/wpush/x",
		"https://[::1]/wpush/x",
	} {
		sub := subscription(phone)
		sub["subscription"].(map[string]any)["endpoint"] = bad
		st, _, b := pat.Do("POST", "/api/v1/push/devices", sub, nil)
		if st != 400 || !strings.Contains(string(b), `"refused"`) {
			t.Errorf("API subscribe %s: %d %s", bad, st, b)
		}
		st, _, b = pat.Do("POST", "/account/push", pushForm(bad, phone, "x"), nil)
		if st != 400 || !strings.Contains(string(b), "cannot be used") {
			t.Errorf("page subscribe %s: %d", bad, st)
		}
	}

	// One device through the API, one through the page.
	var dev notify.Device
	pat.JSON("POST", "/api/v1/push/devices", subscription(phone), 201, &dev)
	st, hdr, _ := pat.Do("POST", "/account/push", pushForm(laptop.Endpoint(), laptop, "Laptop"), nil)
	if st != 303 || !strings.HasPrefix(hdr.Get("Location"), "/account?push=on") {
		t.Fatalf("page subscribe: %d %v", st, hdr)
	}
	pat.JSON("GET", "/api/v1/push", nil, 200, &got)
	if len(got.Devices) != 2 || got.Devices[0].Label != "Phone" || got.Devices[1].Label != "Laptop" || got.Devices[0].Service != pushtest.Host {
		t.Fatalf("devices: %+v", got.Devices)
	}
	_, _, page := pat.Do("GET", "/account", nil, nil)
	for _, want := range []string{"Laptop", "Phone", pushtest.Host, "Add to Home Screen", `data-key="` + got.PublicKey + `"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	_, _, list := pat.Do("GET", "/api/v1/push", nil, nil)
	for _, secret := range []string{phone.Path(), laptop.Path(), phone.Auth(), laptop.P256dh()} {
		if strings.Contains(string(page), secret) || strings.Contains(string(list), secret) {
			t.Errorf("the endpoint or a key is shown: %q", secret)
		}
	}

	// A message with canaries: each device gets one push, which says only
	// that a secure message waits.
	subject, body := newCanary("SUBJ"), newCanary("BODY")
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"push.patient@example.net"},
		Msg: plainText(staff, "Dr Lee", "push.patient@example.net", subject, body)}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pushes := svc.Wait(wctx, t, 2)
	for _, d := range []*pushtest.Device{phone, laptop} {
		var n int
		for _, p := range pushes {
			if p.Path != d.Path() {
				continue
			}
			n++
			plain, err := d.Decrypt(p.Body)
			if err != nil {
				t.Fatalf("decrypt: %v", err)
			}
			var pl notify.PushPayload
			if err := json.Unmarshal(plain, &pl); err != nil {
				t.Fatal(err)
			}
			if pl.URL != h.BaseURL+"/inbox" || pl.Title != h.Cfg.Org.Name {
				t.Errorf("payload %+v", pl)
			}
			for _, c := range []string{subject, body, "CANARY", "push.patient", staff, "Dr Lee"} {
				if strings.Contains(string(plain), c) || bytes.Contains(p.Body, []byte(c)) {
					t.Errorf("push carries %q", c)
				}
			}
			if err := pushtest.CheckVAPID(p.Header, got.PublicKey, time.Now()); err != nil {
				t.Errorf("VAPID: %v", err)
			}
		}
		if n != 1 {
			t.Errorf("device %s got %d pushes, want 1", d.Path(), n)
		}
	}

	// A device whose push service says it is gone (410) is removed at its
	// first push. (A new device, so batching, issue 10.4, cannot hold
	// that push back: each device's first push goes at once.)
	old := pushtest.NewDevice(t)
	var oldDev notify.Device
	pat.JSON("POST", "/api/v1/push/devices", map[string]any{"subscription": old.JSON(), "label": "Old phone"}, 201, &oldDev)
	svc.Answer(old, http.StatusGone)
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"push.patient@example.net"},
		Msg: plainText(staff, "Dr Lee", "push.patient@example.net", "second", "second")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the gone device removed", func() bool {
		pat.JSON("GET", "/api/v1/push", nil, 200, &got)
		for _, d := range got.Devices {
			if d.ID == oldDev.ID {
				return false
			}
		}
		return true
	})
	if len(got.Devices) != 2 {
		t.Fatalf("devices after the 410: %+v, want Phone and Laptop", got.Devices)
	}
	var reached bool
	for _, p := range svc.Pushes() {
		reached = reached || p.Path == old.Path()
	}
	if !reached {
		t.Fatal("the gone device was removed without a push to it")
	}

	// Removal: another account cannot remove a device; the page and the
	// API can.
	phoneID, laptopID := got.Devices[0].ID, got.Devices[1].ID
	other, _ := claimNew(t, h, pass, "other.patient@example.net", patientPW)
	if st, _, _ := other.Do("DELETE", "/api/v1/push/devices/"+phoneID, nil, nil); st != 404 {
		t.Errorf("another account's DELETE: %d, want 404", st)
	}
	if st, hdr, _ := pat.Do("POST", "/account/push/"+phoneID+"/delete", "", nil); st != 303 || !strings.Contains(hdr.Get("Location"), "push=removed") {
		t.Errorf("page remove: %d %v", st, hdr)
	}
	if st, _, _ := pat.Do("DELETE", "/api/v1/push/devices/"+laptopID, nil, nil); st != 204 {
		t.Errorf("API remove: %d", st)
	}
	if st, _, _ := pat.Do("DELETE", "/api/v1/push/devices/"+laptopID, nil, nil); st != 404 {
		t.Errorf("API remove twice: %d", st)
	}
	pat.JSON("GET", "/api/v1/push", nil, 200, &got)
	if len(got.Devices) != 0 {
		t.Errorf("devices left: %+v", got.Devices)
	}

	// The trail: subscriptions, refusals, removals by the holder and by
	// the system.
	count := func(action, outcome, actor string) int {
		es, err := h.G.Trail.Search(ctx, audit.Query{Action: action, Limit: audit.MaxLimit})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, e := range es {
			if e.Outcome == outcome && (actor == "" || e.Actor == actor) {
				n++
			}
		}
		return n
	}
	if n := count("push.subscribe", "ok", ""); n != 3 {
		t.Errorf("%d push.subscribe ok entries, want 3", n)
	}
	if n := count("push.subscribe", "refused", ""); n != 8 {
		t.Errorf("%d push.subscribe refused entries, want 8", n)
	}
	if n := count("push.unsubscribe", "ok", "system"); n != 1 {
		t.Errorf("%d system push.unsubscribe entries, want 1", n)
	}
	if n := count("push.unsubscribe", "ok", ""); n != 3 {
		t.Errorf("%d push.unsubscribe entries, want 3", n)
	}
}

// The service worker is served from the root with the headers a browser
// needs to give it the whole portal as scope; the manifest and its icons
// are public, and the CSP lets the page load the manifest.
func TestPushWorkerAndManifest(t *testing.T) {
	h, _ := startPush(t)
	c := h.Client()
	st, hdr, b := c.Do("GET", "/sw.js", nil, nil)
	if st != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/javascript") || hdr.Get("Service-Worker-Allowed") != "/" ||
		!bytes.Contains(b, []byte("addEventListener('push'")) {
		t.Fatalf("GET /sw.js: %d %v", st, hdr)
	}
	st, hdr, b = c.Do("GET", "/manifest.webmanifest", nil, nil)
	if st != 200 || hdr.Get("Content-Type") != "application/manifest+json" {
		t.Fatalf("GET /manifest.webmanifest: %d %v", st, hdr)
	}
	var m struct {
		Name      string
		ShortName string `json:"short_name"`
		Display   string
		StartURL  string `json:"start_url"`
		Icons     []struct{ Src, Sizes, Type, Purpose string }
	}
	if err := json.Unmarshal(b, &m); err != nil || m.Display != "standalone" || m.Name == "" || m.ShortName != h.Cfg.Org.Name || m.StartURL != "/inbox" || len(m.Icons) < 2 {
		t.Fatalf("manifest %s: %v", b, err)
	}
	for _, ic := range m.Icons {
		st, hdr, b := c.Do("GET", ic.Src, nil, nil)
		if st != 200 || hdr.Get("Content-Type") != "image/png" {
			t.Fatalf("GET %s: %d", ic.Src, st)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", ic.Src, err)
		}
		if got := img.Bounds().Dx(); ic.Sizes != fmt.Sprintf("%dx%d", got, img.Bounds().Dy()) {
			t.Errorf("%s is %dpx, manifest says %s", ic.Src, got, ic.Sizes)
		}
	}
	_, hdr, page := c.Do("GET", "/login", nil, nil)
	if !strings.Contains(hdr.Get("Content-Security-Policy"), "manifest-src 'self'") || !bytes.Contains(page, []byte(`rel="manifest" href="/manifest.webmanifest"`)) {
		t.Errorf("login page: CSP %q; manifest link missing or blocked", hdr.Get("Content-Security-Policy"))
	}
}
