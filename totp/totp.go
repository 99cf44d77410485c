// Package totp is the second factor: time-based one-time codes from an
// authenticator app (RFC 6238, on github.com/pquerna/otp) with replay
// protection, and single-use recovery codes.
//
// The caller stores, per person: the secret (as sensitive as a password
// hash: keep it encrypted at rest), the last accepted step (see Verify), and
// the hashes of the unused recovery codes. Rate-limiting wrong codes is the
// caller's job too: a guess succeeds with odds of 3 in a million (three
// steps are accepted), so lock out after a few failures.
package totp

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	ptotp "github.com/pquerna/otp/totp"
)

// The parameters every authenticator app supports (Google Authenticator
// ignores anything else and silently uses these).
const (
	Period     = 30 // seconds per step
	Digits     = 6
	SecretSize = 20 // bytes (160 bits, the HMAC-SHA1 size RFC 4226 recommends)
	Skew       = 1  // steps of clock difference accepted either way
)

// QRSize is the width and height of Enrolment.QRPNG in pixels: a 200 x 200
// code inside a white margin of QRMargin on every side, the quiet zone that
// scanners need even when the page around it is dark.
const (
	QRSize   = 200 + 2*QRMargin
	QRMargin = 20
)

var validateOpts = ptotp.ValidateOpts{
	Period:    Period,
	Skew:      0, // Verify tries each step itself, to know which one matched
	Digits:    otp.DigitsSix,
	Algorithm: otp.AlgorithmSHA1,
}

// Enrolment is what a person needs to add the account to an authenticator
// app: the QR code to scan, or the secret to type.
type Enrolment struct {
	Secret string // base32, no padding
	URI    string // otpauth://totp/Issuer:account?secret=...&issuer=...&algorithm=SHA1&digits=6&period=30
	QRPNG  []byte // PNG of URI, QRSize x QRSize
}

// ErrMissingName is returned by New when issuer or account is empty.
var ErrMissingName = errors.New("totp: issuer and account must not be empty")

// New makes a new random secret for account (usually the email address),
// shown in the app under issuer (the organisation's name). SHA1, 6 digits,
// 30 s: what every authenticator app supports. A colon separates issuer and
// account in the app's label, so colons in either are dropped.
func New(issuer, account string) (*Enrolment, error) {
	issuer = strings.TrimSpace(strings.ReplaceAll(issuer, ":", ""))
	account = strings.TrimSpace(strings.ReplaceAll(account, ":", ""))
	if issuer == "" || account == "" {
		return nil, ErrMissingName
	}
	return enrolment(issuer, account, nil)
}

// enrolment makes the Enrolment for secret (raw bytes), or for a new random
// secret when secret is nil.
func enrolment(issuer, account string, secret []byte) (*Enrolment, error) {
	key, err := ptotp.Generate(ptotp.GenerateOpts{
		Issuer:      issuer,
		AccountName: account,
		Period:      Period,
		SecretSize:  SecretSize,
		Secret:      secret,
		Digits:      otp.DigitsSix,
		Algorithm:   otp.AlgorithmSHA1,
		Rand:        rand.Reader,
	})
	if err != nil {
		return nil, err
	}
	img, err := key.Image(200, 200)
	if err != nil {
		return nil, err
	}
	canvas := image.NewGray(image.Rect(0, 0, QRSize, QRSize))
	draw.Draw(canvas, canvas.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.Draw(canvas, image.Rect(QRMargin, QRMargin, QRMargin+200, QRMargin+200), img, img.Bounds().Min, draw.Src)
	var buf bytes.Buffer
	if err := png.Encode(&buf, canvas); err != nil {
		return nil, err
	}
	return &Enrolment{Secret: key.Secret(), URI: key.URL(), QRPNG: buf.Bytes()}, nil
}

// Step returns the time step that t falls in.
func Step(t time.Time) int64 {
	s := t.Unix()
	step := s / Period
	if s%Period < 0 {
		step-- // floor for times before 1970
	}
	return step
}

// Verify checks code against secret at now, allowing one step of clock skew
// either way, and refuses any step <= lastStep (replay protection: a code,
// or an earlier one, can't be used twice). It returns the matched step to
// store as the new lastStep; store it before answering, atomically with the
// check (compare-and-set on the stored value), or two requests racing with
// the same code could both pass. Pass 0 as lastStep when none is stored.
//
// Spaces in code are ignored (apps show "123 456"); anything but 6 ASCII
// digits is refused. The work done does not depend on the code's format or
// on which step matches: all three steps are always computed and compared
// in constant time.
func Verify(secret, code string, now time.Time, lastStep int64) (step int64, ok bool) {
	code = strings.Join(strings.Fields(code), "")
	wellFormed := len(code) == Digits
	for i := 0; i < len(code); i++ {
		wellFormed = wellFormed && code[i] >= '0' && code[i] <= '9'
	}
	if !wellFormed {
		code = "------" // same length as a real code, never equal to one
	}

	current := Step(now)
	matched := int64(0)
	found := 0
	for s := current - Skew; s <= current+Skew; s++ {
		want, err := ptotp.GenerateCodeCustom(secret, time.Unix(s*Period, 0), validateOpts)
		if err != nil {
			return 0, false // the secret is not valid base32: a stored-data fault
		}
		eq := subtle.ConstantTimeCompare([]byte(want), []byte(code))
		// Keep the latest matching step that is newer than lastStep; a code
		// that matches an older or used step is refused.
		fresh := eq & boolInt(s > lastStep)
		matched = int64(subtle.ConstantTimeSelect(fresh, int(s), int(matched)))
		found |= fresh
	}
	if found == 0 || !wellFormed {
		return 0, false
	}
	return matched, true
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
