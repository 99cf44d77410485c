package portal

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// TestDeviceCookieValue (issue 12.3): a device cookie verifies for its own
// account only, under its own key, within its lifetime; any change to it
// makes it an ordinary (ignored) cookie, never a panic.
func TestDeviceCookieValue(t *testing.T) {
	key, other := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)
	acct, acct2 := strings.Repeat("ab", 16), strings.Repeat("cd", 16)
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	v, err := newDeviceCookie(key, acct, now)
	if err != nil {
		t.Fatal(err)
	}
	if v2, _ := newDeviceCookie(key, acct, now); v2 == v {
		t.Error("two cookies of one account and second are equal: no nonce")
	}
	if !deviceCookieFor(key, v, acct, now) || !deviceCookieFor(key, v, acct, now.Add(deviceCookieLifetime-time.Second)) {
		t.Fatal("a fresh cookie does not verify")
	}
	for name, ok := range map[string]bool{
		"another account":      deviceCookieFor(key, v, acct2, now),
		"another key":          deviceCookieFor(other, v, acct, now),
		"expired":              deviceCookieFor(key, v, acct, now.Add(deviceCookieLifetime)),
		"issued in the future": deviceCookieFor(key, v, acct, now.Add(-deviceSkew-time.Second)),
		"empty":                deviceCookieFor(key, "", acct, now),
		"not base64":           deviceCookieFor(key, "%%%", acct, now),
		"truncated":            deviceCookieFor(key, v[:len(v)-2], acct, now),
		"longer":               deviceCookieFor(key, v+"AA", acct, now),
	} {
		if ok {
			t.Errorf("%s: verified", name)
		}
	}
	raw, _ := base64.RawURLEncoding.DecodeString(v)
	for i := range raw {
		tampered := bytes.Clone(raw)
		tampered[i] ^= 0x01
		if deviceCookieFor(key, base64.RawURLEncoding.EncodeToString(tampered), acct, now) {
			t.Fatalf("byte %d changed: still verifies", i)
		}
	}
	// The same bytes spelt with other unused bits in the last character
	// (73 bytes: the last character holds 2 bits and 4 unused ones).
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, v[len(v)-1])
	for unused := 1; unused < 16; unused++ {
		alt := v[:len(v)-1] + string(alphabet[last^unused])
		if alt != v && bytes.Equal(mustDecode(t, alt), raw) && deviceCookieFor(key, alt, acct, now) {
			t.Fatalf("the non-canonical spelling %q verifies", alt)
		}
	}
	// A cookie carries no address: only the account key's bytes, a time,
	// a nonce and the tag.
	if len(raw) != deviceBodyLen+deviceTagLen {
		t.Errorf("cookie of %d bytes", len(raw))
	}
	if _, err := newDeviceCookie(key, "not hex", now); err == nil {
		t.Error("a malformed account key made a cookie")
	}
}

func mustDecode(t *testing.T, v string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
