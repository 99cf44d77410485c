package notify

import (
	"crypto/rand"
	"math/big"
)

// Issue 13.9: a short reference on every notice that reaches a recipient,
// shown again in the portal after sign-in, so a cautious patient can tell
// the notice from a look-alike. It is random (never derived from the
// message, the address or anything else), not a secret and not a key to
// anything: it only matches a notice the portal shows to the account it
// was sent to.

// referenceAlphabet has no look-alikes (0/O, 1/I/L, 5/S, 8/B, U/V), so it
// can be read out over the phone and typed from a printout.
const referenceAlphabet = "234679ACDEFGHJKMNPQRTWXYZ"

// ReferenceAlphabet is referenceAlphabet, for those who read references back.
const ReferenceAlphabet = referenceAlphabet

// referenced are the kinds of notice that carry a reference: those sent
// to a recipient with a link to follow. Alerts and reports go to staff.
var referenced = map[string]bool{KindNewMessage: true, KindClaimLink: true, KindPasswordReset: true}

// NewReference returns a fresh reference: six characters from
// referenceAlphabet (25^6, about 2^28), written in two groups of three,
// e.g. "K7P-4QX".
func NewReference() string {
	var b [7]byte
	n := big.NewInt(int64(len(referenceAlphabet)))
	for i := range b {
		if i == 3 {
			b[i] = '-'
			continue
		}
		v, err := rand.Int(rand.Reader, n)
		if err != nil {
			panic(err) // crypto/rand does not fail on supported platforms
		}
		b[i] = referenceAlphabet[v.Int64()]
	}
	return string(b[:])
}
