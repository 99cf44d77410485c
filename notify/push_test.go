package notify

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/pushtest"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/store"
)

func TestAllowlistCheck(t *testing.T) {
	a := Allowlist{"fcm.googleapis.com", "updates.push.services.mozilla.com", "*.push.apple.com", "*.notify.windows.com"}
	ok := []string{
		"https://fcm.googleapis.com/fcm/send/abc",
		"https://FCM.googleapis.com/fcm/send/abc",
		"https://fcm.googleapis.com:443/fcm/send/abc",
		"https://web.push.apple.com/QGx",
		"https://wns2-by3p.notify.windows.com/w/?token=x",
		"https://updates.push.services.mozilla.com/wpush/v2/x",
	}
	for _, e := range ok {
		if err := a.Check(e); err != nil {
			t.Errorf("%s: %v", e, err)
		}
	}
	refused := map[string]string{
		"http://fcm.googleapis.com/fcm/send/abc":           "https",
		"https://push.evil.example/x":                      "not on this gateway's list",
		"https://push.apple.com/x":                         "not on this gateway's list", // the wildcard needs a subdomain
		"https://evilpush.apple.com/x":                     "not on this gateway's list",
		"https://fcm.googleapis.com.evil.example/x":        "not on this gateway's list",
		"https://127.0.0.1/x":                              "not an address",
		"https://[::1]/x":                                  "not an address",
		"https://169.254.169.254/latest/meta-data":         "not an address",
		"https://fcm.googleapis.com:8443/x":                "https port",
		"https://user:pw@fcm.googleapis.com/x":             "plain https URL",
		"/relative/path":                                   "absolute",
		"file:///etc/passwd":                               "https",
		"https://internal-host/x":                          "not on this gateway's list",
		"https://metadata.google.internal/computeMetadata": "not on this gateway's list",
	}
	for e, why := range refused {
		err := a.Check(e)
		var re *RefusedError
		if !errors.As(err, &re) || !strings.Contains(re.Reason, why) {
			t.Errorf("%s: got %v, want a refusal saying %q", e, err, why)
		}
	}
}

func TestChannelOf(t *testing.T) {
	for kind, want := range map[string]Channel{KindPush: ChannelPush, KindNewMessage: ChannelEmail, KindPasswordReset: ChannelEmail, KindRelay: ChannelEmail} {
		if got := ChannelOf(kind); got != want {
			t.Errorf("ChannelOf(%s) = %s, want %s", kind, got, want)
		}
	}
}

type recorded struct{ entries []audit.Entry }

func (r *recorded) Record(_ context.Context, e audit.Entry) error {
	r.entries = append(r.entries, e)
	return nil
}

type pushFixture struct {
	*fixture
	svc   *pushtest.Service
	vapid *keys.VAPID
	p     *Pusher
	trail *recorded
}

func newPushFixture(t testing.TB) *pushFixture {
	f := newFixture(t)
	v, err := keys.LoadVAPID(f.dir+"/vapid-key.wrapped", f.ring, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	svc := pushtest.Start(t)
	pf := &pushFixture{fixture: f, svc: svc, vapid: v, trail: &recorded{}}
	pf.p = &Pusher{Store: f.st, Keys: f.ring, VAPIDPublic: v.Public, VAPIDPrivate: v.Private, Subject: "mailto:privacy@riverside.example",
		Org: "Riverside Clinic", PublicURL: "https://portal.riverside.example", Allow: Allowlist{pushtest.Host},
		MaxDevices: 3, TTL: 24 * time.Hour, Client: svc.Client(), Audit: pf.trail,
		Log: slog.New(slog.NewTextHandler(f.logs, nil)), Now: f.clock.Now}
	return pf
}

func (pf *pushFixture) subscribe(t *testing.T, d *pushtest.Device, label string) Device {
	t.Helper()
	var s Subscription
	s.Endpoint, s.Keys.P256dh, s.Keys.Auth = d.Endpoint(), d.P256dh(), d.Auth()
	dev, err := pf.p.Subscribe(context.Background(), pf.user.ID, s, label)
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

// queue commits the push rows for one message, as intake does.
func (pf *pushFixture) queue(t *testing.T, messageID string) []store.OutboxItem {
	t.Helper()
	items, err := pf.p.Items(context.Background(), pf.user.ID, messageID, pf.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := pf.st.Deliver(context.Background(), store.Delivery{Outbox: items}); err != nil {
		t.Fatal(err)
	}
	return items
}

// deviceOf opens a push row's payload to name its device.
func (pf *pushFixture) deviceOf(t *testing.T, it store.OutboxItem) string {
	t.Helper()
	plain, err := pf.ring.OpenField(PayloadPurpose(it.ID), it.Payload)
	if err != nil {
		t.Fatal(err)
	}
	var n PushNotice
	if err := json.Unmarshal(plain, &n); err != nil {
		t.Fatal(err)
	}
	return n.Subscription
}

func (pf *pushFixture) dispatcher() *Dispatcher {
	d := pf.fixture.dispatcher(&scriptedSender{})
	d.Push = pf.p
	return d
}

// A push reaches each device through the outbox, encrypted as RFC 8291
// requires, signed with the gateway's VAPID key, and says only that a
// message waits: the test decrypts it as the browser would.
func TestPushThroughOutboxEncryptedAndPHIFree(t *testing.T) {
	pf := newPushFixture(t)
	ctx := context.Background()
	phone, laptop := pushtest.NewDevice(t), pushtest.NewDevice(t)
	pf.subscribe(t, phone, "Phone")
	pf.subscribe(t, laptop, "Laptop")
	items := pf.queue(t, "msg-canary-subject-7731")
	if len(items) != 2 {
		t.Fatalf("%d push rows for two devices", len(items))
	}
	n, err := pf.dispatcher().RunOnce(ctx)
	if err != nil || n != 2 {
		t.Fatalf("RunOnce sent %d: %v", n, err)
	}
	pushes := pf.svc.Pushes()
	if len(pushes) != 2 {
		t.Fatalf("push service received %d pushes, want 2", len(pushes))
	}
	for _, dev := range []*pushtest.Device{phone, laptop} {
		var got *pushtest.Push
		for i := range pushes {
			if pushes[i].Path == dev.Path() {
				got = &pushes[i]
			}
		}
		if got == nil {
			t.Fatalf("no push for device %s", dev.Path())
		}
		if ce := got.Header.Get("Content-Encoding"); ce != "aes128gcm" {
			t.Errorf("Content-Encoding %q, want aes128gcm (RFC 8291 4)", ce)
		}
		if ttl := got.Header.Get("TTL"); ttl != "86400" {
			t.Errorf("TTL %q, want 86400", ttl)
		}
		if err := pushtest.CheckVAPID(got.Header, pf.vapid.Public, time.Now()); err != nil {
			t.Errorf("VAPID: %v", err)
		}
		plain, err := dev.Decrypt(got.Body)
		if err != nil {
			t.Fatalf("decrypt: %v", err)
		}
		var p PushPayload
		if err := json.Unmarshal(plain, &p); err != nil {
			t.Fatalf("payload %q: %v", plain, err)
		}
		if p.URL != "https://portal.riverside.example/inbox" || p.Title != "Riverside Clinic" || !strings.Contains(p.Body, "secure message") {
			t.Errorf("payload %+v", p)
		}
		for _, canary := range []string{patient, "canary", "msg-", pf.user.ID} {
			if strings.Contains(string(plain), canary) {
				t.Errorf("push carries %q: %s", canary, plain)
			}
		}
		// The ciphertext only for the long canary: random bytes hold a
		// short one now and then.
		if strings.Contains(string(got.Body), patient) {
			t.Errorf("the encrypted push carries the address")
		}
	}
	for _, it := range items {
		if r := pf.row(t, it.ID); !r.sent {
			t.Errorf("row %s not marked sent", it.ID)
		}
	}
	devs, _ := pf.p.Devices(ctx, pf.user.ID)
	for _, d := range devs {
		if d.LastSuccess == nil || !d.LastSuccess.Equal(pf.clock.Now()) {
			t.Errorf("device %s: last success %v", d.Label, d.LastSuccess)
		}
	}
	pf.assertNoPHI(t)
}

// 410 (and 404) end the subscription; 503 is retried with back-off on the
// push row alone; another 4xx fails the row for good.
func TestPushAnswers(t *testing.T) {
	pf := newPushFixture(t)
	ctx := context.Background()
	gone, busy, bad := pushtest.NewDevice(t), pushtest.NewDevice(t), pushtest.NewDevice(t)
	goneDev := pf.subscribe(t, gone, "Old phone")
	busyDev := pf.subscribe(t, busy, "Tablet")
	badDev := pf.subscribe(t, bad, "Desktop")
	pf.svc.Answer(gone, http.StatusGone)
	pf.svc.Answer(busy, http.StatusServiceUnavailable)
	pf.svc.Answer(bad, http.StatusBadRequest)
	items := pf.queue(t, "m1")
	if _, err := pf.dispatcher().RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	devs, _ := pf.p.Devices(ctx, pf.user.ID)
	for _, d := range devs {
		if d.ID == goneDev.ID {
			t.Errorf("a 410 left the subscription in place")
		}
	}
	if len(devs) != 2 {
		t.Errorf("%d devices left, want 2", len(devs))
	}
	byDevice := map[string]outboxRow{}
	for _, it := range items {
		byDevice[pf.deviceOf(t, it)] = pf.row(t, it.ID)
	}
	if r := byDevice[goneDev.ID]; !r.sent {
		t.Errorf("the gone device's row: %+v, want done", r)
	}
	if r := byDevice[busyDev.ID]; r.sent || r.attempts != 1 || r.lastError != "push service answered 503" || !r.next.Equal(pf.clock.Now().Add(backoff(1))) {
		t.Errorf("the busy device's row: %+v, want a retry after %s", r, backoff(1))
	}
	if r := byDevice[badDev.ID]; r.sent || !r.next.Equal(never) || r.lastError != "push service answered 400" {
		t.Errorf("the 400 device's row: %+v, want failed for good", r)
	}
	var unsub int
	for _, e := range pf.trail.entries {
		if e.Action == "push.unsubscribe" && e.Actor == "system" && e.Details["device"] == goneDev.ID {
			unsub++
		}
	}
	if unsub != 1 {
		t.Errorf("%d push.unsubscribe entries for the gone device, want 1: %+v", unsub, pf.trail.entries)
	}
	// The busy device recovers: the retry goes to it alone.
	pf.svc.Answer(busy, http.StatusCreated)
	pf.clock.Add(backoff(1))
	before := len(pf.svc.Pushes())
	if n, err := pf.dispatcher().RunOnce(ctx); err != nil || n != 1 {
		t.Fatalf("retry sent %d: %v", n, err)
	}
	if p := pf.svc.Pushes()[before:]; len(p) != 1 || p[0].Path != busy.Path() {
		t.Errorf("retry reached %v, want the busy device only", p)
	}
}

// The allowlist is checked again at send time: a subscription made while
// a host was listed gets no request once it is not.
func TestPushAllowlistAtSendTime(t *testing.T) {
	pf := newPushFixture(t)
	d := pushtest.NewDevice(t)
	pf.subscribe(t, d, "Phone")
	items := pf.queue(t, "m1")
	pf.p.Allow = Allowlist{"fcm.googleapis.com"}
	if _, err := pf.dispatcher().RunOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(pf.svc.Pushes()); n != 0 {
		t.Fatalf("%d requests to a host no longer listed", n)
	}
	if r := pf.row(t, items[0].ID); r.sent || !r.next.Equal(never) || !strings.Contains(r.lastError, "not on this gateway's list") {
		t.Errorf("row %+v, want failed for good with the refusal", r)
	}
}

func TestSubscribeRefusals(t *testing.T) {
	pf := newPushFixture(t)
	ctx := context.Background()
	d := pushtest.NewDevice(t)
	good := Subscription{Endpoint: d.Endpoint()}
	good.Keys.P256dh, good.Keys.Auth = d.P256dh(), d.Auth()
	for name, mut := range map[string]func(*Subscription){
		"http":        func(s *Subscription) { s.Endpoint = strings.Replace(s.Endpoint, "https:", "http:", 1) },
		"not listed":  func(s *Subscription) { s.Endpoint = "https://push.evil.example/x" },
		"ip literal":  func(s *Subscription) { s.Endpoint = "https://127.0.0.1/x" },
		"short auth":  func(s *Subscription) { s.Keys.Auth = "AAAA" },
		"bad p256dh":  func(s *Subscription) { s.Keys.P256dh = s.Keys.Auth },
		"no endpoint": func(s *Subscription) { s.Endpoint = "" },
	} {
		s := good
		mut(&s)
		_, err := pf.p.Subscribe(ctx, pf.user.ID, s, "x")
		var re *RefusedError
		if !errors.As(err, &re) {
			t.Errorf("%s: got %v, want a refusal", name, err)
		}
	}
	if devs, _ := pf.p.Devices(ctx, pf.user.ID); len(devs) != 0 {
		t.Fatalf("refused subscriptions were stored: %+v", devs)
	}
	// The bound per account; a label is cleaned and bounded.
	for i := range 3 {
		pf.subscribe(t, pushtest.NewDevice(t), strings.Repeat("é", 100)+string(rune('a'+i))+"\x07")
	}
	if _, err := pf.p.Subscribe(ctx, pf.user.ID, good, "fourth"); !errors.Is(err, ErrTooManyDevices) {
		t.Errorf("fourth device: %v, want ErrTooManyDevices", err)
	}
	devs, _ := pf.p.Devices(ctx, pf.user.ID)
	for _, dv := range devs {
		if n := len([]rune(dv.Label)); n != maxLabel || strings.ContainsRune(dv.Label, 7) {
			t.Errorf("label %q (%d runes)", dv.Label, n)
		}
		if dv.Service != pushtest.Host {
			t.Errorf("service %q", dv.Service)
		}
	}
}

// BenchmarkPushDispatch sends a backlog of b.N pushes (one device each,
// as many devices as rows) from the outbox to the local TLS push service
// with the dispatcher's default workers: encryption (RFC 8291), VAPID
// signature, the HTTPS post and the sent mark. Reports pushes/s.
func BenchmarkPushDispatch(b *testing.B) {
	pf := newPushFixture(b)
	ctx := context.Background()
	pf.p.MaxDevices = b.N + 1
	for i := 0; i < b.N; i++ {
		d := pushtest.NewDevice(b)
		var s Subscription
		s.Endpoint, s.Keys.P256dh, s.Keys.Auth = d.Endpoint(), d.P256dh(), d.Auth()
		if _, err := pf.p.Subscribe(ctx, pf.user.ID, s, "d"); err != nil {
			b.Fatal(err)
		}
	}
	items, err := pf.p.Items(ctx, pf.user.ID, "m1", pf.clock.Now())
	if err != nil {
		b.Fatal(err)
	}
	if err := pf.st.Deliver(ctx, store.Delivery{Outbox: items}); err != nil {
		b.Fatal(err)
	}
	d := pf.dispatcher()
	b.ResetTimer()
	start := time.Now()
	n, err := d.RunOnce(ctx)
	el := time.Since(start)
	b.StopTimer()
	if err != nil || n != b.N || len(pf.svc.Pushes()) != b.N {
		b.Fatalf("sent %d of %d (service got %d): %v", n, b.N, len(pf.svc.Pushes()), err)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "pushes/s")
}

// A push that goes out says nothing of the smarthost: email notices
// waiting for it keep their back-off slot (a successful email send would
// release them).
func TestPushSuccessLeavesSmarthostWaitAlone(t *testing.T) {
	pf := newPushFixture(t)
	ctx := context.Background()
	pf.enqueue(t, "mail1", Notice{To: patient, Link: "https://portal.riverside.example/login", ExpiresAt: pf.clock.Now().Add(time.Hour)})
	pf.clock.Add(time.Second)
	pf.subscribe(t, pushtest.NewDevice(t), "Phone")
	pf.queue(t, "m1")
	d := pf.dispatcher()
	d.Sender = &scriptedSender{errs: []error{errors.New("dial tcp 192.0.2.1:587: connect: connection refused")}}
	d.Workers = 1 // the email (due first) fails before the push goes out
	n, err := d.RunOnce(ctx)
	if err != nil || n != 1 || len(pf.svc.Pushes()) != 1 {
		t.Fatalf("sent %d (%d pushes): %v", n, len(pf.svc.Pushes()), err)
	}
	if r := pf.row(t, "mail1"); r.sent || r.attempts != 1 || !r.next.Equal(pf.clock.Now().Add(backoff(1))) {
		t.Errorf("waiting email row %+v: want one attempt and its back-off slot kept", r)
	}
}
