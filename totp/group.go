package totp

import (
	"encoding/base32"
	"errors"
	"html/template"
	"strings"
)

// Grouped is the secret in groups of four characters, as people type it
// into an authenticator app from the screen (issue 13.6); apps ignore the
// spaces.
func (e *Enrolment) Grouped() string { return Group(e.Secret) }

// Group splits s into groups of four, separated by single spaces.
func Group(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && i%4 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Again rebuilds the Enrolment of a secret New made earlier (base32, as in
// Enrolment.Secret): the same QR code and key, so that a person who mistyped
// the first code keeps the account their app has already added (issue 13.6).
func Again(issuer, account, secret string) (*Enrolment, error) {
	issuer = strings.TrimSpace(strings.ReplaceAll(issuer, ":", ""))
	account = strings.TrimSpace(strings.ReplaceAll(account, ":", ""))
	if issuer == "" || account == "" {
		return nil, ErrMissingName
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(secret))
	if err != nil || len(raw) == 0 {
		return nil, errors.New("totp: not a secret New made")
	}
	return enrolment(issuer, account, raw)
}

// Link is URI for a page's link: a phone opens its authenticator app with
// it. (html/template lets no otpauth: URL through unless told it is safe;
// this one is built by New from the issuer, the account and the secret.)
func (e *Enrolment) Link() template.URL { return template.URL(e.URI) }
