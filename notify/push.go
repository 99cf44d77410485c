package notify

// The Web Push channel (issue 10.3, docs/notifications.md). A device's
// subscription is checked against the allowlist of push services when it
// is made and again before every send: the gateway posts only to https
// endpoints on listed hosts, never to a URL a browser made up. Each
// device gets its own outbox row, so a device that fails is retried
// alone and a 404/410 from its push service ends only its subscription.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"
	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/outbound"
	"github.com/phigate/phigate/store"
)

// Channel is the way a notice reaches a person. Each outbox kind belongs
// to one channel; which channels a notice is written for is decided when
// it is queued (preferences: issue 10.4).
type Channel string

const (
	ChannelEmail Channel = "email"
	ChannelPush  Channel = "push"
)

// KindPush is a push to one device that a secure message is waiting.
const KindPush = "push"

// ChannelOf names the channel an outbox kind goes out on.
func ChannelOf(kind string) Channel {
	if kind == KindPush {
		return ChannelPush
	}
	return ChannelEmail
}

// PushNotice is the sealed payload of a KindPush row: the device and the
// portal link, nothing of the message.
type PushNotice struct {
	Subscription string `json:"subscription"`
	Link         string `json:"link"`
}

// PushPayload is what the service worker receives (RFC 8291 encrypted):
// that a secure message is waiting and where to read it. No sender, no
// subject, no count.
type PushPayload struct {
	Title string `json:"title"`
	Body  string `json:"body"`
	URL   string `json:"url"`
}

// Subscription is a browser's PushSubscription as its toJSON() gives it.
type Subscription struct {
	Endpoint string `json:"endpoint"`
	// ExpirationTime is part of toJSON() (mostly null); not used.
	ExpirationTime *int64 `json:"expirationTime,omitempty"`
	Keys           struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// Device is one subscription as its owner sees it: never the endpoint.
type Device struct {
	ID          string     `json:"id"`
	Label       string     `json:"label"`
	Service     string     `json:"service"` // the push service's host
	CreatedAt   time.Time  `json:"created_at"`
	LastSuccess *time.Time `json:"last_success,omitempty"`
}

// RefusedError is a subscription the gateway will not use; Reason is safe
// to show.
type RefusedError struct{ Reason string }

func (e *RefusedError) Error() string { return "push subscription refused: " + e.Reason }

// ErrTooManyDevices: the account has the most subscriptions it may.
var ErrTooManyDevices = store.ErrLimit

// Allowlist holds the push services' host names; "*.example.com" matches
// any subdomain of example.com (not example.com itself).
type Allowlist []string

// Check refuses an endpoint that is not https on port 443 of a listed
// host. IP literals, user info and other ports are refused whatever the
// list says.
func (a Allowlist) Check(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil || !u.IsAbs() {
		return &RefusedError{"the endpoint is not an absolute URL"}
	}
	if u.Scheme != "https" {
		return &RefusedError{"the endpoint must use https"}
	}
	if u.User != nil || u.Opaque != "" {
		return &RefusedError{"the endpoint must be a plain https URL"}
	}
	if p := u.Port(); p != "" && p != "443" {
		return &RefusedError{"the endpoint must use the https port"}
	}
	host := strings.ToLower(u.Hostname())
	if net.ParseIP(host) != nil {
		return &RefusedError{"the endpoint must name a push service, not an address"}
	}
	for _, pat := range a {
		pat = strings.ToLower(pat)
		if host == pat || strings.HasPrefix(pat, "*.") && strings.HasSuffix(host, pat[1:]) && len(host) > len(pat)-1 {
			return nil
		}
	}
	return &RefusedError{"the push service " + host + " is not on this gateway's list"}
}

// Pusher owns push subscriptions and sends pushes. One Pusher serves the
// portal (subscribe, list, remove) and the dispatcher (send).
type Pusher struct {
	Store store.Store
	Keys  Sealer
	// VAPIDPublic / VAPIDPrivate: the keys.VAPID pair (base64url).
	VAPIDPublic, VAPIDPrivate string
	// Subject is the VAPID contact (RFC 8292 2.1): a mailto: or https URL.
	Subject    string
	Org        string // the notification's title
	PublicURL  string // the portal: the notification opens its inbox
	Allow      Allowlist
	MaxDevices int
	TTL        time.Duration
	// Client posts to push services; nil: a client that follows no
	// redirect (a push service never needs one, and a redirect would
	// lead off the allowlist).
	Client *http.Client
	Audit  audit.Recorder // may be nil
	Log    *slog.Logger
	Now    func() time.Time

	clientOnce sync.Once
	client0    *http.Client

	mu        sync.Mutex
	delivered []string // devices whose last success is still to be written
	recording bool     // a send is writing them
}

func (p *Pusher) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Pusher) client() *http.Client {
	if p.Client != nil {
		return p.Client
	}
	p.clientOnce.Do(func() {
		// Connections to a push service are kept for the dispatcher's
		// workers (the default keeps two per host: the others would
		// handshake again for every push).
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 32
		p.client0 = &http.Client{Transport: tr, Timeout: 30 * time.Second, CheckRedirect: noRedirect}
	})
	return p.client0
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// NoRedirect is for callers building their own Client (tests).
var NoRedirect = noRedirect

func subPurpose(id string) string { return "push:" + id }

// endpointMAC identifies an endpoint for replacement. The endpoint holds a
// long random token, so a plain hash reveals nothing guessable.
func endpointMAC(endpoint string) []byte {
	h := sha256.Sum256([]byte("phigate push endpoint v1\x00" + endpoint))
	return h[:]
}

// checkKeys refuses keys that cannot be the browser's: p256dh is an
// uncompressed P-256 point, auth 16 bytes (RFC 8291 3.1, 3.2).
func checkKeys(s Subscription) error {
	dh, err := decodeB64(s.Keys.P256dh)
	if err != nil || len(dh) != 65 || dh[0] != 4 {
		return &RefusedError{"the subscription's p256dh key is not a P-256 public key"}
	}
	auth, err := decodeB64(s.Keys.Auth)
	if err != nil || len(auth) != 16 {
		return &RefusedError{"the subscription's auth secret is not 16 bytes"}
	}
	return nil
}

func decodeB64(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}

// maxLabel bounds the device name.
const maxLabel = 60

// Subscribe checks and stores a device's subscription for userID.
func (p *Pusher) Subscribe(ctx context.Context, userID string, s Subscription, label string) (Device, error) {
	if err := p.Allow.Check(s.Endpoint); err != nil {
		return Device{}, err
	}
	if err := checkKeys(s); err != nil {
		return Device{}, err
	}
	label = cleanLabel(label)
	id := store.NewID()
	plain, err := json.Marshal(s)
	if err != nil {
		return Device{}, err
	}
	sealed, err := p.Keys.SealField(subPurpose(id), plain)
	if err != nil {
		return Device{}, err
	}
	u, _ := url.Parse(s.Endpoint)
	row := store.PushSubscription{ID: id, UserID: userID, EndpointMAC: endpointMAC(s.Endpoint),
		Host: strings.ToLower(u.Hostname()), Label: label, SubEnc: sealed, CreatedAt: p.now()}
	if err := p.Store.AddPushSubscription(ctx, row, p.MaxDevices); err != nil {
		return Device{}, err
	}
	return deviceOf(row), nil
}

func cleanLabel(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
	if r := []rune(s); len(r) > maxLabel {
		s = string(r[:maxLabel])
	}
	if s == "" {
		s = "This device"
	}
	return s
}

func deviceOf(r store.PushSubscription) Device {
	return Device{ID: r.ID, Label: r.Label, Service: r.Host, CreatedAt: r.CreatedAt, LastSuccess: r.LastSuccess}
}

// Devices lists userID's subscriptions.
func (p *Pusher) Devices(ctx context.Context, userID string) ([]Device, error) {
	rows, err := p.Store.PushSubscriptions(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]Device, len(rows))
	for i, r := range rows {
		out[i] = deviceOf(r)
	}
	return out, nil
}

// Remove ends one of userID's subscriptions (store.ErrNotFound if it is
// not theirs).
func (p *Pusher) Remove(ctx context.Context, userID, id string) error {
	return p.Store.DeletePushSubscription(ctx, userID, id)
}

// Items returns one sealed KindPush outbox row per device of userID, to
// commit with the message they announce.
func (p *Pusher) Items(ctx context.Context, userID, messageID string, now time.Time) ([]store.OutboxItem, error) {
	subs, err := p.Store.PushSubscriptions(ctx, userID)
	if err != nil {
		return nil, err
	}
	out := make([]store.OutboxItem, 0, len(subs))
	for _, s := range subs {
		id := store.NewID()
		plain, err := json.Marshal(PushNotice{Subscription: s.ID, Link: p.PublicURL + "/inbox"})
		if err != nil {
			return nil, err
		}
		sealed, err := p.Keys.SealField(PayloadPurpose(id), plain)
		if err != nil {
			return nil, err
		}
		out = append(out, store.OutboxItem{ID: id, Kind: KindPush, UserID: userID, MessageID: messageID,
			Payload: sealed, CreatedAt: now, NextAttemptAt: now})
	}
	return out, nil
}

// PushError is a push the push service did not take; its text names the
// status only (never the endpoint, which is the device's address).
type PushError struct {
	Status int
	Err    error
}

func (e *PushError) Error() string {
	if e.Err != nil {
		return "push service unreachable: " + e.Err.Error()
	}
	return fmt.Sprintf("push service answered %d", e.Status)
}

func (e *PushError) Unwrap() error { return e.Err }

// Send posts one KindPush row's push. A device removed meanwhile, or one
// its push service says is gone (404/410, RFC 8030 7.3), is done: nothing
// to retry. Other 4xx answers are permanent; 429, 5xx and network
// errors are retried by the dispatcher.
func (p *Pusher) Send(ctx context.Context, it store.OutboxItem) error {
	plain, err := p.Keys.OpenField(PayloadPurpose(it.ID), it.Payload)
	if err != nil {
		return &outbound.PermanentError{Err: err}
	}
	var n PushNotice
	if err := json.Unmarshal(plain, &n); err != nil {
		return &outbound.PermanentError{Err: err}
	}
	row, err := p.Store.PushSubscriptionByID(ctx, n.Subscription)
	if errors.Is(err, store.ErrNotFound) {
		p.Log.InfoContext(ctx, "push: device unsubscribed before the send", "outbox", it.ID)
		return nil
	}
	if err != nil {
		return err
	}
	sub, err := p.open(row)
	if err != nil {
		return &outbound.PermanentError{Err: err}
	}
	// Again at send time: the list may have changed since the subscription.
	if err := p.Allow.Check(sub.Endpoint); err != nil {
		return &outbound.PermanentError{Err: err}
	}
	status, err := p.post(ctx, sub, PushPayload{Title: p.Org, URL: n.Link,
		Body: "You have a new secure message. Sign in to the portal to read it."})
	switch {
	case err != nil:
		return &PushError{Err: err}
	case status == http.StatusNotFound || status == http.StatusGone:
		return p.gone(ctx, row)
	case status >= 200 && status < 300:
		p.recordSuccess(ctx, row.ID)
		return nil
	case status == http.StatusTooManyRequests || status >= 500:
		return &PushError{Status: status}
	}
	return &outbound.PermanentError{Err: &PushError{Status: status}}
}

// recordSuccess sets a device's last success. Sends that finish together
// share one write: the first one writes its own and every other that
// arrives meanwhile; the others return at once. (A write per push took a
// third of the dispatch time from a backlog.) The time is informational:
// a crash may lose the last few.
func (p *Pusher) recordSuccess(ctx context.Context, id string) {
	p.mu.Lock()
	p.delivered = append(p.delivered, id)
	if p.recording {
		p.mu.Unlock()
		return
	}
	p.recording = true
	for len(p.delivered) > 0 {
		ids := p.delivered
		p.delivered = nil
		p.mu.Unlock()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := p.Store.PushDelivered(wctx, p.now(), ids...); err != nil {
			p.Log.WarnContext(ctx, "push: last success not recorded", "devices", len(ids), "err", err)
		}
		cancel()
		p.mu.Lock()
	}
	p.recording = false
	p.mu.Unlock()
}

func (p *Pusher) open(row *store.PushSubscription) (Subscription, error) {
	var s Subscription
	plain, err := p.Keys.OpenField(subPurpose(row.ID), row.SubEnc)
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(plain, &s)
}

// post encrypts the payload (RFC 8291 aes128gcm, by webpush-go) and posts
// it with a VAPID authorisation (RFC 8292). Topic lets the push service
// keep one pending push per device instead of many (RFC 8030 5.4).
func (p *Pusher) post(ctx context.Context, s Subscription, payload PushPayload) (int, error) {
	body, err := json.Marshal(payload)
	if err != nil {
		return 0, err
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := webpush.SendNotificationWithContext(sctx, body,
		&webpush.Subscription{Endpoint: s.Endpoint, Keys: webpush.Keys{Auth: s.Keys.Auth, P256dh: s.Keys.P256dh}},
		&webpush.Options{HTTPClient: p.client(), Subscriber: p.Subject, TTL: int(p.TTL / time.Second),
			Urgency: webpush.UrgencyNormal, Topic: "secure-message",
			VAPIDPublicKey: p.VAPIDPublic, VAPIDPrivateKey: p.VAPIDPrivate})
	if err != nil {
		// net/http's errors quote the URL: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// gone removes a subscription its push service no longer knows, and
// records that in the trail as the system's unsubscribe.
func (p *Pusher) gone(ctx context.Context, row *store.PushSubscription) error {
	err := p.Store.DeletePushSubscription(ctx, row.UserID, row.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	p.Log.InfoContext(ctx, "push: the push service says the device is gone; subscription removed", "device", row.ID)
	if p.Audit != nil {
		e := audit.Entry{Actor: "system", Action: "push.unsubscribe", ObjectType: "user", ObjectID: row.UserID,
			Outcome: audit.OK, Details: map[string]string{"device": row.ID, "why": "gone"}}
		if err := p.Audit.Record(ctx, e); err != nil {
			p.Log.ErrorContext(ctx, "audit write failed", "action", e.Action, "err", err)
		}
	}
	return nil
}

// describe is the outbox's last_error for a failed send.
func describe(err error) string {
	var pe *PushError
	var re *RefusedError
	switch {
	case errors.As(err, &pe):
		return pe.Error()
	case errors.As(err, &re):
		return re.Error()
	}
	return outbound.Describe(err)
}
