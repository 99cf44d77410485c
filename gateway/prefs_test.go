package gateway_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/pushtest"
	"github.com/phigate/phigate/notify"
)

// Issue 10.4: the choice of channels through the API and the account page
// (one operation behind both, audited as account.notify-prefs), and a
// message over SMTP that follows it: push chosen with a device on gives a
// push and no email; both gives both (email required by the organisation:
// notify.TestPrefsChannels).
func TestNotifyPrefs(t *testing.T) {
	h, svc := startPush(t)
	ctx := context.Background()
	pass := h.AddStaff(staff)
	pat, _ := claimNew(t, h, pass, "prefs.patient@example.net", patientPW)

	var v notify.PrefsView
	pat.JSON("GET", "/api/v1/account/notifications", nil, 200, &v)
	if v != (notify.PrefsView{Choice: "both", Default: "both"}) {
		t.Fatalf("before any choice: %+v", v)
	}
	pat.JSON("PUT", "/api/v1/account/notifications", map[string]string{"channels": "push"}, 200, &v)
	if v.Choice != "push" || !v.Chosen {
		t.Fatalf("after choosing push: %+v", v)
	}
	if st, _, b := pat.Do("PUT", "/api/v1/account/notifications", map[string]string{"channels": "sms"}, nil); st != 400 || !strings.Contains(string(b), "bad_channels") {
		t.Errorf("PUT sms: %d %s", st, b)
	}
	st, hdr, _ := pat.Do("POST", "/account/notifications", url.Values{"channels": {"email"}}.Encode(), nil)
	if st != 303 || !strings.HasPrefix(hdr.Get("Location"), "/account?prefs=saved") {
		t.Fatalf("page choice: %d %v", st, hdr)
	}
	_, _, page := pat.Do("GET", "/account?prefs=saved", nil, nil)
	for _, want := range []string{`value="email" checked`, "Your notification choice is saved"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("account page lacks %q", want)
		}
	}
	pat.JSON("GET", "/api/v1/account/notifications", nil, 200, &v)
	if v.Choice != "email" {
		t.Errorf("the page's choice, read by the API: %+v", v)
	}
	if st, _, _ := pat.Do("POST", "/account/notifications", url.Values{"channels": {"fax"}}.Encode(), nil); st != 400 {
		t.Errorf("page choice fax: %d", st)
	}
	es, err := h.G.Trail.Search(ctx, audit.Query{Action: "account.notify-prefs", Limit: audit.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		got = append(got, e.Details["channels"])
	}
	if len(got) != 2 || !strings.Contains(strings.Join(got, ","), "push") || !strings.Contains(strings.Join(got, ","), "email") {
		t.Errorf("account.notify-prefs entries: %v, want one push, one email", got)
	}

	// Push only, with a device: the message is announced by push alone.
	phone := pushtest.NewDevice(t)
	pat.JSON("POST", "/api/v1/push/devices", subscription(phone), 201, nil)
	pat.JSON("PUT", "/api/v1/account/notifications", map[string]string{"channels": "push"}, 200, nil)
	send := func(subject string) {
		t.Helper()
		msg := e2e.Multipart(staff, "Dr Lee", "prefs.patient@example.net", subject, "body", "<p>x</p>", "f.txt", []byte("data"))
		if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"prefs.patient@example.net"}, Msg: msg}); err != nil {
			t.Fatal(err)
		}
	}
	mails := len(h.Notices())
	send("one")
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	svc.Wait(wctx, t, 1)
	// Both: the next message is announced both ways.
	pat.JSON("PUT", "/api/v1/account/notifications", map[string]string{"channels": "both"}, 200, nil)
	send("two")
	svc.Wait(wctx, t, 2)
	h.WaitNotices(mails + 1)
	if n := len(h.Notices()); n != mails+1 {
		t.Errorf("email notices for the two messages: %d, want 1 (the push-only one had none)", n-mails)
	}
}
