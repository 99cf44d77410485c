package portal

// Device cookies (issue 12.3; OWASP "Slow Down Online Guessing Attacks
// with Device Cookies"). After a fully successful sign-in (the password
// and, where the account needs one, the second factor) the browser gets a
// cookie naming the account it signed into. A later sign-in to that same
// account from that browser has its password hash served in the hash
// queue's priority lane (crypto.HashClient.Device), ahead of a flood of
// attempts from addresses that are as new as the account holder's. It
// changes nothing else: the lock-out and the per-address budget still
// apply, the password is still checked, and a cookie that does not verify,
// has expired or names another account is ignored (the ordinary queue),
// never an error.
//
// The value is base64url(version | account | issued | nonce | tag):
// version 1 byte, account the 16 bytes of the account's lock-out key (the
// start of its blind index: no address, nothing about a person), issued
// the Unix time in seconds (8 bytes, big-endian), nonce 16 random bytes,
// tag HMAC-SHA256 over everything before it under a key derived from the
// master key (keys.Ring.DeviceCookieKey). A master-key rotation changes
// that key: cookies issued before it stop verifying and their sign-ins
// wait in the ordinary queue until the next success issues a new one.

import (
	"crypto/hmac"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/identity"
)

// deviceCookieName has the __Secure- prefix: browsers accept it only with
// Secure, from an HTTPS origin. (Not __Host-: that needs Path=/, and this
// cookie is sent only to the sign-in routes.)
const deviceCookieName = "__Secure-phigate-device"

// deviceCookieLifetime: a device cookie lasts 180 days, the OWASP
// suggestion, about as long as a patient may go between two messages
// from their clinic; shorter would drop the priority of exactly the
// occasional readers the portal is for. It is not a setting: it grants no
// access, only a place in the queue, and a stolen one is bounded by the
// lane's own limits and the lock-out.
const deviceCookieLifetime = 180 * 24 * time.Hour

// deviceCookiePaths are the sign-in routes, the page's and the API's
// (each covers its /2fa step too): a cookie has one Path, so the browser
// gets one cookie for each, with the same value.
var deviceCookiePaths = [...]string{"/login", "/api/v1/login"}

const (
	deviceVersion  = 1
	deviceAcctLen  = 16
	deviceNonceLen = 16
	deviceBodyLen  = 1 + deviceAcctLen + 8 + deviceNonceLen
	deviceTagLen   = 32
	// deviceSkew is how far in the future an issue time may be (clocks of
	// several nodes).
	deviceSkew = 5 * time.Minute
	// maxDeviceCookies bounds how many cookies of the name one request
	// may have looked at.
	maxDeviceCookies = 4
)

func deviceTag(key, body []byte) []byte {
	return pcrypto.MAC(key, append([]byte("phigate device cookie\x00"), body...))
}

// newDeviceCookie is a device cookie's value for the account whose
// lock-out key is acct, issued at now.
func newDeviceCookie(key []byte, acct string, now time.Time) (string, error) {
	a, err := hex.DecodeString(acct)
	if err != nil || len(a) != deviceAcctLen {
		return "", errors.New("portal: device cookie: malformed account key")
	}
	body := make([]byte, 0, deviceBodyLen+deviceTagLen)
	body = append(body, deviceVersion)
	body = append(body, a...)
	body = binary.BigEndian.AppendUint64(body, uint64(now.Unix()))
	body = append(body, pcrypto.RandomBytes(deviceNonceLen)...)
	return base64.RawURLEncoding.EncodeToString(append(body, deviceTag(key, body)...)), nil
}

// deviceCookieFor reports whether value is a device cookie issued under key
// for the account acct, not expired at now.
func deviceCookieFor(key []byte, value, acct string, now time.Time) bool {
	// Strict: a value whose unused final bits differ decodes to the same
	// bytes; only the one canonical spelling of a cookie is accepted.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(value)
	if err != nil || len(raw) != deviceBodyLen+deviceTagLen || raw[0] != deviceVersion {
		return false
	}
	body, tag := raw[:deviceBodyLen], raw[deviceBodyLen:]
	if !hmac.Equal(tag, deviceTag(key, body)) {
		return false
	}
	if hex.EncodeToString(body[1:1+deviceAcctLen]) != acct {
		return false
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(body[1+deviceAcctLen:])), 0)
	return !issued.After(now.Add(deviceSkew)) && now.Sub(issued) < deviceCookieLifetime
}

// hasDeviceCookie reports whether r carries a device cookie of the account
// acct that verifies.
func (s *Server) hasDeviceCookie(r *http.Request, acct string) bool {
	cookies := r.CookiesNamed(deviceCookieName)
	key, now := s.Identity.Keys.DeviceCookieKey(), s.now()
	for i, c := range cookies {
		if i == maxDeviceCookies {
			break
		}
		if deviceCookieFor(key, c.Value, acct, now) {
			return true
		}
	}
	return false
}

// issueDevice is the device cookie a fully successful sign-in of acct
// earns, for the faces to set ("" if it could not be made: the sign-in
// stands, the next one is ordinary).
func (s *Server) issueDevice(r *http.Request, acct string) string {
	v, err := newDeviceCookie(s.Identity.Keys.DeviceCookieKey(), acct, s.now())
	if err != nil {
		s.Log.ErrorContext(r.Context(), "device cookie", "err", err)
		return ""
	}
	return v
}

// setDeviceCookie sets the device cookie a sign-in earned (signedIn.device)
// on both sign-in paths; "" sets nothing.
func setDeviceCookie(w http.ResponseWriter, value string) {
	if value == "" {
		return
	}
	for _, p := range deviceCookiePaths {
		http.SetCookie(w, &http.Cookie{Name: deviceCookieName, Value: value, Path: p,
			MaxAge: int(deviceCookieLifetime / time.Second), Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	}
}

// forgetDeviceOnFailure clears this browser's device cookie when a
// sign-in step it came with failed on a wrong password or code (OWASP:
// lock out the device cookie after failures; here after one, since the
// account's own lock-out already counts them). The person's browser drops
// it and earns a new one at its next success; a copy replayed from
// elsewhere ignores this, and is bounded by the account's lock-out and
// the priority lane's bounds instead. Other refusals (locked, throttled,
// busy) keep it: nothing was guessed.
func forgetDeviceOnFailure(w http.ResponseWriter, r *http.Request, err error) {
	if len(r.CookiesNamed(deviceCookieName)) == 0 || !guessFailed(err) {
		return
	}
	for _, p := range deviceCookiePaths {
		http.SetCookie(w, &http.Cookie{Name: deviceCookieName, Value: "", Path: p, MaxAge: -1,
			Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	}
}

func guessFailed(err error) bool {
	return errors.Is(err, identity.ErrBadCredentials) || errors.Is(err, identity.ErrBadCode)
}
