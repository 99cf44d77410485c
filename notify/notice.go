// Package notify sends PHI-free notifications. A notice names the
// organisation, carries a link to the portal, the expiry and a contact, and
// nothing of the message: no subject, sender, body or attachment names.
package notify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"strings"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// Outbox kinds.
const (
	KindNewMessage    = "new-message"    // "you have a secure message"
	KindPasswordReset = "password-reset" // a reset link the account holder asked for
	KindSecurityAlert = "security-alert" // to the security officer; names an event, never PHI
	// KindClaimLink is a new claim link a pending recipient asked for from
	// an expired or used one (issue 13.1, portal/newlink.go).
	KindClaimLink = "claim-link"
)

// Notice is the sealed outbox payload: the only data a notice is made from.
type Notice struct {
	To        string    `json:"to"`
	Link      string    `json:"link"`
	Claim     bool      `json:"claim"`
	ExpiresAt time.Time `json:"expires_at"`
	// LinkExpiresAt is when the link stops working, when that is sooner
	// than ExpiresAt: a claim link lives portal.claim_ttl (7 days), the
	// message it leads to portal.message_expiry (30), and the notice must
	// not promise the longer one for the link.
	LinkExpiresAt time.Time `json:"link_expires_at,omitzero"`
	// Alert is a fixed event description for security alerts (e.g.
	// "Break-glass access to message 3f2a..."): ids and event names only.
	Alert string `json:"alert,omitempty"`
	// Reference is the notice's short random code (reference.go), shown
	// again in the portal after sign-in; NewItem sets it.
	Reference string `json:"reference,omitempty"`
}

func (n Notice) Marshal() ([]byte, error) { return json.Marshal(n) }

// noticeData is everything a notice template may show: the PHI-free
// fields it offers (templates.go refuses a template that reaches for
// anything else).
type noticeData struct {
	Org       string
	Link      string
	Claim     bool
	ExpiresAt string
	// LinkExpiresAt is "" when the link lives as long as the message.
	LinkExpiresAt string
	Contact       string
	Alert         string
	// Reference is the notice's own code; VerifyURL and VerifyPhone are
	// where a patient checks it (org.verify_url, org.verify_phone).
	Reference   string
	VerifyURL   string
	VerifyPhone string
}

// Render builds the RFC 5322 notice for n. id becomes the Message-ID's left
// part so a retried send keeps the same Message-ID.
func Render(n Notice, org config.Org, hostname, id string, now time.Time) ([]byte, error) {
	return RenderKind(KindNewMessage, n, org, hostname, id, now)
}

// RenderKind builds the notice of the given outbox kind with the built-in
// templates.
func RenderKind(kind string, n Notice, org config.Org, hostname, id string, now time.Time) ([]byte, error) {
	return defaultTemplates.Render(kind, n, org, hostname, id, now)
}

// Render builds the notice of the given outbox kind: a multipart/alternative
// of a plain-text and an HTML part, and nothing else (no attachment, no
// inline image, ever); no List-Unsubscribe, as a notice is transactional.
func (t *Templates) Render(kind string, n Notice, org config.Org, hostname, id string, now time.Time) ([]byte, error) {
	kt, ok := t.kinds[kind]
	if !ok {
		return nil, fmt.Errorf("unknown notice kind %q", kind)
	}
	d := noticeData{Org: org.Name, Link: n.Link, Claim: n.Claim, Contact: org.Contact, Alert: n.Alert,
		ExpiresAt: noticeTime(n.ExpiresAt, org), Reference: n.Reference, VerifyURL: org.VerifyURL, VerifyPhone: org.VerifyPhone}
	if !n.LinkExpiresAt.IsZero() && n.LinkExpiresAt.Before(n.ExpiresAt) {
		d.LinkExpiresAt = noticeTime(n.LinkExpiresAt, org)
	}
	var subject bytes.Buffer
	if err := kt.subject.Execute(&subject, d); err != nil {
		return nil, err
	}
	sender := org.NoticeSenderName
	if sender == "" {
		sender = org.Name
	}
	var h mail.Header
	h.SetDate(now)
	h.SetAddressList("From", []*mail.Address{{Name: sender, Address: org.NotifyFrom}})
	h.SetAddressList("To", []*mail.Address{{Address: n.To}})
	h.SetSubject(strings.Join(strings.Fields(subject.String()), " "))
	h.SetMessageID(id + "@" + hostname)
	// RFC 3834: machine-generated, so auto-responders stay quiet.
	h.Set("Auto-Submitted", "auto-generated")
	h.Set("X-Auto-Response-Suppress", "All")
	h.Set("Content-Language", "en")

	var buf bytes.Buffer
	w, err := mail.CreateInlineWriter(&buf, h)
	if err != nil {
		return nil, err
	}
	for _, part := range []struct {
		ct  string
		run func(*bytes.Buffer) error
	}{
		{"text/plain", func(b *bytes.Buffer) error { return kt.text.Execute(b, d) }},
		{"text/html", func(b *bytes.Buffer) error { return kt.html.Execute(b, d) }},
	} {
		var body bytes.Buffer
		if err := part.run(&body); err != nil {
			return nil, err
		}
		var ph mail.InlineHeader
		ph.Set("Content-Type", mime.FormatMediaType(part.ct, map[string]string{"charset": "utf-8"}))
		ph.Set("Content-Transfer-Encoding", "quoted-printable")
		pw, err := w.CreatePart(ph)
		if err != nil {
			return nil, err
		}
		if _, err := pw.Write([]byte(strings.ReplaceAll(body.String(), "\r\n", "\n"))); err != nil {
			return nil, err
		}
		pw.Close()
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// NewItem seals n into an outbox row of the given kind, ready to commit in
// the same transaction as whatever caused it.
func NewItem(keys Sealer, kind string, n Notice, userID, messageID string, now time.Time) (store.OutboxItem, error) {
	id := store.NewID()
	if referenced[kind] && n.Reference == "" {
		n.Reference = NewReference()
	}
	plain, err := n.Marshal()
	if err != nil {
		return store.OutboxItem{}, err
	}
	sealed, err := keys.SealField(PayloadPurpose(id), plain)
	if err != nil {
		return store.OutboxItem{}, err
	}
	return store.OutboxItem{ID: id, Kind: kind, UserID: userID, MessageID: messageID,
		Payload: sealed, CreatedAt: now, NextAttemptAt: now, Reference: n.Reference}, nil
}

// noticeTime is how a notice writes a moment: as the portal's pages do,
// in the organisation's zone with the zone named (org.time_zone, issue 13.4).
func noticeTime(t time.Time, org config.Org) string { return web.When(t, org.Location()) }
