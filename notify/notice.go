// Package notify sends PHI-free notifications. A notice names the
// organisation, carries a link to the portal, the expiry and a contact, and
// nothing of the message: no subject, sender, body or attachment names.
package notify

import (
	"bytes"
	"encoding/json"
	htmltemplate "html/template"
	"mime"
	"strings"
	texttemplate "text/template"
	"time"

	"github.com/emersion/go-message/mail"
	"github.com/phigate/phigate/config"
)

// KindNewMessage is the outbox kind for "you have a secure message".
const KindNewMessage = "new-message"

// Notice is the sealed outbox payload: the only data a notice is made from.
type Notice struct {
	To        string    `json:"to"`
	Link      string    `json:"link"`
	Claim     bool      `json:"claim"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (n Notice) Marshal() ([]byte, error) { return json.Marshal(n) }

type noticeData struct {
	Org       string
	Link      string
	Claim     bool
	ExpiresAt string
	Contact   string
}

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
	d := noticeData{Org: org.Name, Link: n.Link, Claim: n.Claim, Contact: org.Contact,
		ExpiresAt: n.ExpiresAt.UTC().Format("Monday 2 January 2006, 15:04 MST")}
	var h mail.Header
	h.SetDate(now)
	h.SetAddressList("From", []*mail.Address{{Name: org.Name, Address: org.NotifyFrom}})
	h.SetAddressList("To", []*mail.Address{{Address: n.To}})
	h.SetSubject("You have a secure message from " + org.Name)
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
		{"text/plain", func(b *bytes.Buffer) error { return textTmpl.Execute(b, d) }},
		{"text/html", func(b *bytes.Buffer) error { return htmlTmpl.Execute(b, d) }},
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
