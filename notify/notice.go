// Package notify sends PHI-free notifications. A notice names the
// organisation, carries a link to the portal, the expiry and a contact, and
// nothing of the message: no subject, sender, body or attachment names.
package notify

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	htmltemplate "html/template"
	"mime"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/store"
)

// Outbox kinds.
const (
	KindNewMessage    = "new-message"    // "you have a secure message"
	KindPasswordReset = "password-reset" // a reset link the account holder asked for
	KindSecurityAlert = "security-alert" // to the security officer; names an event, never PHI
)

// Notice is the sealed outbox payload: the only data a notice is made from.
type Notice struct {
	To        string    `json:"to"`
	Link      string    `json:"link"`
	Claim     bool      `json:"claim"`
	ExpiresAt time.Time `json:"expires_at"`
	// Alert is a fixed event description for security alerts (e.g.
	// "Break-glass access to message 3f2a..."): ids and event names only.
	Alert string `json:"alert,omitempty"`
}

func (n Notice) Marshal() ([]byte, error) { return json.Marshal(n) }

type noticeData struct {
	Org       string
	Link      string
	Claim     bool
	ExpiresAt string
	Contact   string
	Alert     string
}

// kindTemplates are the subject, text and HTML of one kind of notice.
type kindTemplates struct {
	subject func(org string) string
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

var kinds = map[string]kindTemplates{
	KindNewMessage: {func(org string) string { return "You have a secure message from " + org }, textTmpl, htmlTmpl},
	KindPasswordReset: {func(org string) string { return "Reset your password for " + org + " secure messages" },
		resetText, resetHTML},
	KindSecurityAlert: {func(org string) string { return "[phigate security alert] " + org }, alertText, alertHTML},
	KindDeliveryFailure: {func(org string) string { return "Undeliverable: a message you sent through " + org },
		failureText, failureHTML},
	KindPasscode: {func(org string) string { return "Passcode for a secure message you sent through " + org },
		failureText, failureHTML},
	KindSenderNote: {func(org string) string { return "About a secure message you sent through " + org },
		failureText, failureHTML},
}

var resetText = texttemplate.Must(texttemplate.New("reset").Parse(`Someone asked to reset the password of your {{.Org}} secure message account.

To choose a new password, open this link before {{.ExpiresAt}}:
{{.Link}}

If you did not ask for this, ignore this email; your password stays as it
is. Questions: contact {{.Contact}}.
{{.Org}} will never ask for your password by email.
`))

var resetHTML = htmltemplate.Must(htmltemplate.New("reset").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Reset your password</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;font-size:16px;color:#1a1a1a;line-height:1.5">
<p>Someone asked to reset the password of your <strong>{{.Org}}</strong> secure message account.</p>
<p><a href="{{.Link}}" style="display:inline-block;padding:12px 20px;background:#0b5394;color:#ffffff;text-decoration:none;border-radius:4px">Choose a new password</a></p>
<p>Or copy this address into your browser:<br>{{.Link}}</p>
<p>The link works until {{.ExpiresAt}}. If you did not ask for this, ignore this email; your password stays as it is. Questions: contact {{.Contact}}.</p>
</body></html>
`))

var failureText = texttemplate.Must(texttemplate.New("failure").Parse(`{{.Alert}}

The message itself is not attached. Questions: contact {{.Contact}}.
`))

var failureHTML = htmltemplate.Must(htmltemplate.New("failure").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Undeliverable</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;font-size:16px;color:#1a1a1a;line-height:1.5">
<p>{{.Alert}}</p>
<p>The message itself is not attached. Questions: contact {{.Contact}}.</p>
</body></html>
`))

var alertText = texttemplate.Must(texttemplate.New("alert").Parse(`Security alert from {{.Org}}'s secure messaging gateway:

{{.Alert}}

Review it in the admin pages: {{.Link}}
This alert carries no patient information by design.
`))

var alertHTML = htmltemplate.Must(htmltemplate.New("alert").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Security alert</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;font-size:16px;color:#1a1a1a;line-height:1.5">
<p>Security alert from <strong>{{.Org}}</strong>'s secure messaging gateway:</p>
<p><strong>{{.Alert}}</strong></p>
<p>Review it in the admin pages: <a href="{{.Link}}">{{.Link}}</a></p>
<p style="color:#444">This alert carries no patient information by design.</p>
</body></html>
`))

var textTmpl = texttemplate.Must(texttemplate.New("text").Parse(`{{.Org}} has sent you a secure message.

{{if .Claim}}To read it, open this link and choose a password:{{else}}To read it, sign in to the secure message portal:{{end}}
{{.Link}}

The message can be read until {{.ExpiresAt}}.

This notice does not contain the message itself. If you were not
expecting it, or have questions, contact {{.Contact}}.
{{.Org}} will never ask for your password by email.
`))

var htmlTmpl = htmltemplate.Must(htmltemplate.New("html").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>Secure message</title></head>
<body style="font-family:Arial,Helvetica,sans-serif;font-size:16px;color:#1a1a1a;line-height:1.5">
<p><strong>{{.Org}}</strong> has sent you a secure message.</p>
<p><a href="{{.Link}}" style="display:inline-block;padding:12px 20px;background:#0b5394;color:#ffffff;text-decoration:none;border-radius:4px">{{if .Claim}}Open and set your password{{else}}Sign in to read it{{end}}</a></p>
<p>Or copy this address into your browser:<br>{{.Link}}</p>
<p>The message can be read until {{.ExpiresAt}}.</p>
<p style="color:#444">This notice does not contain the message itself. If you were not expecting it, or have questions, contact {{.Contact}}. {{.Org}} will never ask for your password by email.</p>
</body></html>
`))

// Render builds the RFC 5322 notice for n. id becomes the Message-ID's left
// part so a retried send keeps the same Message-ID.
func Render(n Notice, org config.Org, hostname, id string, now time.Time) ([]byte, error) {
	return RenderKind(KindNewMessage, n, org, hostname, id, now)
}

// RenderKind builds the notice of the given outbox kind.
func RenderKind(kind string, n Notice, org config.Org, hostname, id string, now time.Time) ([]byte, error) {
	kt, ok := kinds[kind]
	if !ok {
		return nil, fmt.Errorf("unknown notice kind %q", kind)
	}
	d := noticeData{Org: org.Name, Link: n.Link, Claim: n.Claim, Contact: org.Contact, Alert: n.Alert,
		ExpiresAt: n.ExpiresAt.UTC().Format("Monday 2 January 2006, 15:04 MST")}
	var h mail.Header
	h.SetDate(now)
	h.SetAddressList("From", []*mail.Address{{Name: org.Name, Address: org.NotifyFrom}})
	h.SetAddressList("To", []*mail.Address{{Address: n.To}})
	h.SetSubject(kt.subject(org.Name))
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
	id := randomID()
	plain, err := n.Marshal()
	if err != nil {
		return store.OutboxItem{}, err
	}
	sealed, err := keys.SealField(PayloadPurpose(id), plain)
	if err != nil {
		return store.OutboxItem{}, err
	}
	return store.OutboxItem{ID: id, Kind: kind, UserID: userID, MessageID: messageID,
		Payload: sealed, CreatedAt: now, NextAttemptAt: now}, nil
}

func randomID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
