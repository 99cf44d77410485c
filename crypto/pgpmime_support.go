package crypto

import (
	stdcrypto "crypto"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Reasons a recipient's public key is refused (pgp action, key registration).
// Test with errors.Is; errors.As(err, *KeyRefusedError) gives the plain
// reason to show.
var (
	ErrKeyInvalid      = errors.New("key unusable")
	ErrKeyExpired      = errors.New("key expired")
	ErrKeyRevoked      = errors.New("key revoked")
	ErrKeyWeak         = errors.New("key too weak")
	ErrKeyNoEncryption = errors.New("key cannot encrypt")
	ErrKeyAddress      = errors.New("key not for this address")
)

// KeyRefusedError says why a key can't be used to encrypt to someone.
// Reason is plain language meant for the admin or the person registering
// the key; it never contains the address or the key's user IDs.
type KeyRefusedError struct {
	Kind   error // one of the ErrKey* values
	Reason string
}

func (e *KeyRefusedError) Error() string { return "key refused: " + e.Reason }
func (e *KeyRefusedError) Unwrap() error { return e.Kind }

func refuse(kind error, format string, args ...any) error {
	return &KeyRefusedError{Kind: kind, Reason: fmt.Sprintf(format, args...)}
}

// CheckRecipient reports whether k can safely be used to encrypt mail to
// address at time now: a valid (unexpired, unrevoked) primary key with a
// valid self-signature, a usable encryption (sub)key, no weak algorithms
// (RSA under 2048 bits, DSA, ElGamal, deprecated RSA variants, unaccepted
// curves, MD5/SHA-1/RIPEMD-160 self-signatures), and, if address is not
// empty, an unrevoked user ID for that address (case-insensitive). nil means
// usable; otherwise the error is a *KeyRefusedError.
func (k *Key) CheckRecipient(address string, now time.Time) error {
	if k == nil || k.e == nil {
		return refuse(ErrKeyInvalid, "no key was given")
	}
	e := k.e
	sig, ident := e.PrimarySelfSignature()
	if sig == nil {
		return refuse(ErrKeyInvalid, "the key has no valid self-signature")
	}
	if e.PrimaryKey.CreationTime.After(now) {
		return refuse(ErrKeyInvalid, "the key's creation date is in the future; check the clock of the computer that made it")
	}
	if e.Revoked(now) {
		return refuse(ErrKeyRevoked, "the key has been revoked by its owner%s; ask for their current key", revocationReason(e.Revocations))
	}
	if ident != nil && ident.Revoked(now) {
		return refuse(ErrKeyRevoked, "the key's user ID has been revoked; ask for their current key")
	}
	if e.PrimaryKey.KeyExpired(sig, now) {
		return refuse(ErrKeyExpired, "the key expired on %s; the owner can extend it and send it again", expiryOf(e.PrimaryKey.CreationTime, sig.KeyLifetimeSecs))
	}
	if sig.SigExpired(now) {
		return refuse(ErrKeyExpired, "the key's self-signature expired on %s; the owner can renew it and send the key again", expiryOf(sig.CreationTime, sig.SigLifetimeSecs))
	}
	if why := weakness(e.PrimaryKey); why != "" {
		return refuse(ErrKeyWeak, "the key %s", why)
	}
	if weakHash(sig.Hash) {
		return refuse(ErrKeyWeak, "the key's self-signature uses %s, which is no longer safe; the owner can re-sign it with a current version of their software", hashName(sig.Hash))
	}
	enc, ok := e.EncryptionKey(now)
	if !ok {
		return noEncryptionKey(e, now)
	}
	if enc.PublicKey != e.PrimaryKey {
		if why := weakness(enc.PublicKey); why != "" {
			return refuse(ErrKeyWeak, "the key's encryption subkey %s", why)
		}
		if enc.SelfSignature != nil && weakHash(enc.SelfSignature.Hash) {
			return refuse(ErrKeyWeak, "the key's encryption subkey is bound with %s, which is no longer safe", hashName(enc.SelfSignature.Hash))
		}
	}
	if address != "" && !hasAddress(e, address, now) {
		return refuse(ErrKeyAddress, "none of the key's user IDs is for this address")
	}
	return nil
}

// noEncryptionKey explains why EncryptionKey found nothing usable.
func noEncryptionKey(e *openpgp.Entity, now time.Time) error {
	var expired, revoked, storageOnly bool
	var latest time.Time
	for _, sk := range e.Subkeys {
		if sk.Sig == nil || !sk.Sig.FlagsValid || !sk.PublicKey.PubKeyAlgo.CanEncrypt() {
			continue
		}
		if !sk.Sig.FlagEncryptCommunications {
			storageOnly = storageOnly || sk.Sig.FlagEncryptStorage
			continue
		}
		switch {
		case sk.Revoked(now):
			revoked = true
		case sk.PublicKey.CreationTime.After(now):
			// not yet valid: counts as no usable subkey
		case sk.PublicKey.KeyExpired(sk.Sig, now):
			expired = true
			if t := sk.PublicKey.CreationTime.Add(lifetime(sk.Sig.KeyLifetimeSecs)); t.After(latest) {
				latest = t
			}
		case sk.Sig.SigExpired(now):
			expired = true
			if t := sk.Sig.CreationTime.Add(lifetime(sk.Sig.SigLifetimeSecs)); t.After(latest) {
				latest = t
			}
		}
	}
	switch {
	case expired:
		return refuse(ErrKeyExpired, "the key's encryption subkey expired on %s; the owner can extend it and send the key again", latest.UTC().Format(time.DateOnly))
	case revoked:
		return refuse(ErrKeyRevoked, "the key's encryption subkey has been revoked; ask for their current key")
	case storageOnly:
		return refuse(ErrKeyNoEncryption, "the key's encryption subkey is marked for storage only, not for messages")
	}
	return refuse(ErrKeyNoEncryption, "the key has no encryption subkey (it can only sign); the owner must add one or send a different key")
}

func lifetime(secs *uint32) time.Duration {
	if secs == nil {
		return 0
	}
	return time.Duration(*secs) * time.Second
}

func expiryOf(created time.Time, secs *uint32) string {
	return created.Add(lifetime(secs)).UTC().Format(time.DateOnly)
}

func revocationReason(revs []*packet.Signature) string {
	for _, r := range revs {
		if r.RevocationReason == nil {
			continue
		}
		switch *r.RevocationReason {
		case packet.KeyCompromised:
			return " (reason: key compromised)"
		case packet.KeySuperseded:
			return " (reason: key superseded)"
		case packet.KeyRetired:
			return " (reason: key no longer used)"
		}
	}
	return ""
}

// weakness returns why pk's algorithm or size is refused, or "".
func weakness(pk *packet.PublicKey) string {
	switch pk.PubKeyAlgo {
	case packet.PubKeyAlgoRSA:
		bits, err := pk.BitLength()
		if err != nil {
			return "has an unreadable RSA key"
		}
		if bits < 2048 {
			return fmt.Sprintf("is a %d-bit RSA key; at least 2048 bits are required", bits)
		}
	case packet.PubKeyAlgoRSAEncryptOnly, packet.PubKeyAlgoRSASignOnly:
		return "uses a deprecated RSA variant (encrypt-only or sign-only)"
	case packet.PubKeyAlgoDSA:
		return "uses DSA, which is no longer considered safe"
	case packet.PubKeyAlgoElGamal:
		return "uses ElGamal, which is no longer considered safe"
	case packet.PubKeyAlgoECDSA, packet.PubKeyAlgoECDH, packet.PubKeyAlgoEdDSA:
		c, err := pk.Curve()
		if err != nil {
			return "uses an unknown elliptic curve"
		}
		switch c {
		case packet.Curve25519, packet.Curve448, packet.CurveNistP256, packet.CurveNistP384, packet.CurveNistP521,
			packet.CurveBrainpoolP256, packet.CurveBrainpoolP384, packet.CurveBrainpoolP512:
		default:
			return fmt.Sprintf("uses the elliptic curve %s, which is not accepted", c)
		}
	case packet.PubKeyAlgoX25519, packet.PubKeyAlgoX448, packet.PubKeyAlgoEd25519, packet.PubKeyAlgoEd448,
		packet.PubKeyAlgoMlkem768X25519, packet.PubKeyAlgoMlkem1024X448,
		packet.PubKeyAlgoMldsa65Ed25519, packet.PubKeyAlgoMldsa87Ed448,
		packet.PubKeyAlgoSlhdsaShake128s, packet.PubKeyAlgoSlhdsaShake128f, packet.PubKeyAlgoSlhdsaShake256s:
	default:
		return fmt.Sprintf("uses an unsupported public-key algorithm (%d)", pk.PubKeyAlgo)
	}
	return ""
}

func weakHash(h stdcrypto.Hash) bool {
	return h == stdcrypto.MD5 || h == stdcrypto.SHA1 || h == stdcrypto.RIPEMD160
}

func hashName(h stdcrypto.Hash) string {
	switch h {
	case stdcrypto.MD5:
		return "MD5"
	case stdcrypto.SHA1:
		return "SHA-1"
	case stdcrypto.RIPEMD160:
		return "RIPEMD-160"
	}
	return h.String()
}

// hasAddress: some valid, unrevoked user ID of e is for address
// (case-insensitive, like keys.NormalizeAddr).
func hasAddress(e *openpgp.Entity, address string, now time.Time) bool {
	want := bareAddress(address)
	if want == "" {
		return false
	}
	for _, id := range e.Identities {
		if id.SelfSignature == nil || id.Revoked(now) || id.SelfSignature.SigExpired(now) {
			continue
		}
		got := ""
		if id.UserId != nil {
			got = id.UserId.Email
		}
		if got == "" {
			got = id.Name
		}
		if bareAddress(got) == want {
			return true
		}
	}
	return false
}

func bareAddress(s string) string {
	s = strings.TrimSpace(s)
	if a, err := mail.ParseAddress(s); err == nil {
		s = a.Address
	}
	return strings.ToLower(s)
}
