package totp

import (
	"crypto/rand"
	"strings"
)

// RecoveryCodeCount is how many recovery codes a person gets (issue #3).
const RecoveryCodeCount = 10

// recoveryAlphabet is Crockford's base32 in lower case: 32 symbols (5 bits
// each, so 10 symbols are 50 bits), without i, l, o and u. Normalize reads the
// look-alikes people type for them (i and l as 1, o as 0), so no symbol can
// be mistaken for another when read aloud or copied by hand.
const recoveryAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

const recoveryLen = 10 // symbols per code: 50 bits

// RecoveryCodes returns n random single-use codes (n <= 0 gives none), all
// different, each 10 symbols (50 bits) shown as two groups of five, e.g.
// "7k2mq-9xq4r". Store only a hash of Normalize(code) for each, and delete
// the hash when a code is used. 50 bits resist online guessing; since a
// stolen database allows offline guessing, hash with a key the database
// doesn't hold (HMAC with a server key) or a slow hash (Argon2id).
func RecoveryCodes(n int) []string {
	if n <= 0 {
		return nil
	}
	codes := make([]string, 0, n)
	seen := make(map[string]bool, n)
	buf := make([]byte, recoveryLen)
	for len(codes) < n {
		rand.Read(buf) // never fails (crypto/rand crashes the program instead)
		var b strings.Builder
		for i, c := range buf {
			if i == recoveryLen/2 {
				b.WriteByte('-')
			}
			b.WriteByte(recoveryAlphabet[c&31]) // 256 is a multiple of 32: uniform
		}
		code := b.String()
		if !seen[code] {
			seen[code] = true
			codes = append(codes, code)
		}
	}
	return codes
}

// Normalize canonicalises a recovery code as typed: case, spaces and dashes
// don't matter, and the look-alikes of Crockford's base32 are read as the
// symbols they resemble (i and l as 1, o as 0). The result of a code from
// RecoveryCodes is its 10 symbols without the dash; hash that. Input that was
// never a code normalises to something no code hashes to.
func Normalize(code string) string {
	var b strings.Builder
	b.Grow(len(code))
	for _, r := range code {
		switch {
		case r == '-' || r == ' ' || r == '\t' || r == '\n' || r == '\r' || r == '\u00a0' || r == '\u2010' || r == '\u2011' || r == '\u2013' || r == '\u2212':
			// separators people type or paste: dashes, hyphens, spaces
		case r == 'o' || r == 'O':
			b.WriteByte('0')
		case r == 'i' || r == 'I' || r == 'l' || r == 'L':
			b.WriteByte('1')
		case r >= 'A' && r <= 'Z':
			b.WriteRune(r + ('a' - 'A'))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
