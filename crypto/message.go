package crypto

import (
	"bytes"
	stdcrypto "crypto"
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Sealed is one signed-and-encrypted OpenPGP message split into its parts, so
// that re-wrapping touches only the small key packets, never the body.
type Sealed struct {
	KeyPackets []byte // concatenated PKESK packets, one per recipient
	Data       []byte // the encrypted data packet (SEIPD)
}

// Bytes returns KeyPackets||Data, a whole binary OpenPGP message.
func (s *Sealed) Bytes() []byte {
	out := make([]byte, 0, len(s.KeyPackets)+len(s.Data))
	out = append(out, s.KeyPackets...)
	return append(out, s.Data...)
}

// Armor returns the whole message ASCII-armored ("PGP MESSAGE").
func (s *Sealed) Armor() ([]byte, error) {
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.MessageType, nil)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(s.KeyPackets); err != nil {
		return nil, err
	}
	if _, err := w.Write(s.Data); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ParseSealed splits a whole OpenPGP message (binary or armored) into its
// PKESK packets and its encrypted data packet.
func ParseSealed(msg []byte) (*Sealed, error) {
	body, err := dearmor(msg, openpgp.MessageType)
	if err != nil {
		return nil, err
	}
	r := bytes.NewReader(body)
	for r.Len() > 0 {
		start := len(body) - r.Len()
		p, err := packet.Read(r)
		switch p.(type) {
		case *packet.SymmetricallyEncrypted, *packet.AEADEncrypted:
			if err != nil {
				return nil, fmt.Errorf("crypto: parse message: %w", err)
			}
			return &Sealed{KeyPackets: body[:start:start], Data: body[start:]}, nil
		case *packet.EncryptedKey:
			if err != nil && !isSkippable(err) {
				return nil, fmt.Errorf("crypto: parse message: %w", err)
			}
		default:
			if err != nil && !isSkippable(err) {
				return nil, fmt.Errorf("crypto: parse message: %w", err)
			}
			return nil, errors.New("crypto: parse message: unexpected packet before encrypted data")
		}
	}
	return nil, errors.New("crypto: parse message: no encrypted data packet")
}

// isSkippable: the packet was consumed whole but is of a kind or version we
// don't understand (e.g. another recipient's future PKESK); keep it verbatim.
func isSkippable(err error) bool {
	var u pgperrors.UnsupportedError
	var t pgperrors.UnknownPacketTypeError
	return errors.As(err, &u) || errors.As(err, &t)
}

// sealConfig: SEIPDv1 (no AEADConfig) and v3 PKESKs so GnuPG 2.2 can read
// the result; no compression (speed, and no compression side channels).
var sealConfig = &packet.Config{
	DefaultCipher:          packet.CipherAES256,
	DefaultHash:            stdcrypto.SHA256,
	DefaultCompressionAlgo: packet.CompressionNone,
}

const sealChunk = 64 << 10

// Seal signs plaintext with signer (private) and encrypts to every recipient
// (public is enough). A nil signer produces an unsigned message. The result,
// KeyPackets||Data, is a valid OpenPGP message that gpg can decrypt.
func Seal(plaintext []byte, signer *Key, recipients ...*Key) (*Sealed, error) {
	if len(recipients) == 0 {
		return nil, errors.New("crypto: seal: no recipients")
	}
	to := make([]*openpgp.Entity, len(recipients))
	for i, r := range recipients {
		if r == nil {
			return nil, errors.New("crypto: seal: nil recipient")
		}
		to[i] = r.e
	}
	var signed *openpgp.Entity
	if signer != nil {
		if !signer.IsPrivate() {
			return nil, errors.New("crypto: seal: signer has no private key")
		}
		signed = signer.e
	}
	keys := bytes.NewBuffer(make([]byte, 0, 128*len(recipients)))
	// Literal header, OPS, signature, MDC and partial-length headers stay
	// well under 1 KiB + 1%.
	data := bytes.NewBuffer(make([]byte, 0, len(plaintext)+len(plaintext)/64+1024))
	w, err := openpgp.EncryptSplit(keys, data, to, signed, &openpgp.FileHints{IsBinary: true}, sealConfig)
	if err != nil {
		return nil, fmt.Errorf("crypto: seal: %w", err)
	}
	// Chunked writes let go-crypto's partial-length writers flush as they go;
	// one big Write makes each layer buffer (and copy) the whole message.
	for rest := plaintext; len(rest) > 0; {
		n := min(len(rest), sealChunk)
		if _, err := w.Write(rest[:n]); err != nil {
			return nil, fmt.Errorf("crypto: seal: %w", err)
		}
		rest = rest[n:]
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("crypto: seal: %w", err)
	}
	return &Sealed{KeyPackets: keys.Bytes(), Data: data.Bytes()}, nil
}

type SignatureStatus int

const (
	SigVerified      SignatureStatus = iota // signed by verifier, intact
	SigUnsigned                             // no signature
	SigUnknownSigner                        // signed, but not by verifier
	SigInvalid                              // signature does not verify (tampered)
)

func (s SignatureStatus) String() string {
	switch s {
	case SigVerified:
		return "verified"
	case SigUnsigned:
		return "unsigned"
	case SigUnknownSigner:
		return "unknown-signer"
	case SigInvalid:
		return "invalid"
	}
	return fmt.Sprintf("SignatureStatus(%d)", int(s))
}

// openRing keeps decryption and verification keys apart, so a message signed
// by the reader's own key is never mistaken for one signed by verifier.
type openRing struct {
	dec openpgp.EntityList
	ver openpgp.EntityList
}

func (r openRing) KeysById(id uint64) []openpgp.Key { return r.dec.KeysById(id) }
func (r openRing) KeysByIdUsage(id uint64, usage byte) []openpgp.Key {
	return r.ver.KeysByIdUsage(id, usage)
}
func (r openRing) DecryptionKeys() []openpgp.Key { return r.dec.DecryptionKeys() }

// Open decrypts with key (private) and checks the signature against verifier
// (public; nil means nobody is trusted, so a signed message is
// SigUnknownSigner). Decryption or integrity (MDC/AEAD) failure is an error;
// a bad signature is not an error but SigInvalid.
func Open(s *Sealed, key *Key, verifier *Key, opts ...OpenOption) ([]byte, SignatureStatus, error) {
	if !key.IsPrivate() {
		return nil, 0, errors.New("crypto: open: key has no private part")
	}
	var o openOptions
	for _, f := range opts {
		f(&o)
	}
	ring := openRing{dec: openpgp.EntityList{key.e}}
	if verifier != nil {
		ring.ver = append(openpgp.EntityList{verifier.e}, verifier.earlier...)
	}
	if o.memo == nil || verifier == nil {
		body, md, err := readSealed(s, ring)
		if err != nil {
			return nil, 0, err
		}
		return body, statusOf(md), nil
	}
	k := memoKeyFor(s, key)
	if e, ok := o.memo.lookup(k); ok {
		if body, ok := openRemembered(s, ring, e); ok {
			o.memo.hits.Add(1)
			return body, SigVerified, nil
		}
		// Anything unexpected: forget it and do the whole check, whose
		// outcome (error or status) is the answer.
		o.memo.forget(k)
	}
	body, md, err := readSealed(s, ring)
	if err != nil {
		return nil, 0, err
	}
	st := statusOf(md)
	if st == SigVerified && timeInvariant(md) {
		o.memo.add(memoSlot{key: k, signer: md.SignedBy.Entity, signKey: md.SignedBy.PublicKey, at: memoNow().Unix()})
	}
	return body, st, nil
}

// OpenOption changes what Open does.
type OpenOption func(*openOptions)

type openOptions struct{ memo *VerifiedMemo }

// RememberVerified makes Open consult and fill m (issue 12, the inbox):
// a message whose exact bytes this process already opened with the same
// key, and whose signature the same verifier objects then found good
// (recorded only when that result cannot expire: timeInvariant), is
// still decrypted and its integrity (MDC or AEAD) still checked to the
// end, but its public-key signature is not computed again. A miss, or a
// hit whose checks do not all hold, is a full Open. For summaries only:
// message bodies keep the full check on every open.
func RememberVerified(m *VerifiedMemo) OpenOption {
	return func(o *openOptions) { o.memo = m }
}

// readSealed decrypts s with ring and reads the plaintext to EOF, which is
// when go-crypto checks the MDC (or last AEAD tag) and the signature.
func readSealed(s *Sealed, ring openRing) ([]byte, *openpgp.MessageDetails, error) {
	msg := io.MultiReader(bytes.NewReader(s.KeyPackets), bytes.NewReader(s.Data))
	md, err := openpgp.ReadMessage(msg, ring, nil, nil)
	if err != nil {
		if errors.Is(err, pgperrors.ErrKeyIncorrect) {
			return nil, nil, ErrNotRecipient
		}
		return nil, nil, fmt.Errorf("crypto: open: %w", err)
	}
	if !md.IsEncrypted || md.DecryptedWith.Entity == nil {
		return nil, nil, errors.New("crypto: open: message is not encrypted to key")
	}
	// Read to EOF first: MDC and signature are only checked at the end.
	// The plaintext is about as long as the data packets: sized once
	// rather than grown by doubling (issue 12, the read path).
	buf := bytes.NewBuffer(make([]byte, 0, len(s.Data)+bytes.MinRead))
	if _, err := buf.ReadFrom(md.UnverifiedBody); err != nil {
		return nil, nil, fmt.Errorf("crypto: open: %w", err)
	}
	return buf.Bytes(), md, nil
}

func statusOf(md *openpgp.MessageDetails) SignatureStatus {
	switch {
	case !md.IsSigned:
		return SigUnsigned
	case md.SignedBy == nil:
		return SigUnknownSigner
	case md.SignatureError != nil || md.Signature == nil:
		return SigInvalid
	}
	return SigVerified
}

// openRemembered is a memo hit: it decrypts with a ring that holds no
// verification key, so go-crypto resolves no signature's issuer
// (md.SignedBy stays nil: the "unknown signer" case, which hashes nothing
// for a signature and verifies none) but still parses every packet and
// checks the MDC / AEAD tags when the body is read to EOF (any failure
// is an error from readSealed). Then what a full Open would have used
// must be what the entry records: the one-pass signature's issuer
// resolves, in this verifier, to the same entity and key objects, a
// signature packet by that issuer follows the data, and the clock has
// not gone back past the recorded check. The same key and the same bytes
// give the same session key and plaintext (decryption is deterministic),
// so the full check would find what it found before.
func openRemembered(s *Sealed, ring openRing, e memoSlot) ([]byte, bool) {
	if memoNow().Unix() < e.at {
		return nil, false
	}
	body, md, err := readSealed(s, openRing{dec: ring.dec})
	if err != nil || !md.IsSigned || md.SignedBy != nil || md.SignatureError != nil {
		return nil, false
	}
	ks := ring.ver.KeysByIdUsage(md.SignedByKeyId, packet.KeyFlagSign)
	if len(ks) == 0 || ks[0].Entity != e.signer || ks[0].PublicKey != e.signKey {
		return nil, false
	}
	for _, sig := range md.UnverifiedSignatures {
		if sig.IssuerKeyId != nil && *sig.IssuerKeyId == md.SignedByKeyId {
			return body, true
		}
	}
	return nil, false
}

// Rewrap decrypts the session key from the PKESK in keyPackets that belongs
// to from (private), and returns keyPackets with that PKESK replaced by one
// of the same session key to `to` (public). Every other packet (e.g. the
// escrow key's PKESK) is kept byte-for-byte. If from has several PKESKs (a
// duplicate recipient), all are replaced, so from can no longer open the
// message. ErrNoKeyPacket if none matches from.
func Rewrap(keyPackets []byte, from, to *Key) ([]byte, error) {
	if !from.IsPrivate() {
		return nil, errors.New("crypto: rewrap: from has no private part")
	}
	if to == nil {
		return nil, errors.New("crypto: rewrap: nil target key")
	}
	encKey, ok := to.e.EncryptionKey(sealConfig.Now())
	if !ok {
		return nil, errors.New("crypto: rewrap: target key has no valid encryption key")
	}
	fromRing := openpgp.EntityList{from.e}
	out := make([]byte, 0, len(keyPackets)+64)
	r := bytes.NewReader(keyPackets)
	replaced := 0
	for r.Len() > 0 {
		start := len(keyPackets) - r.Len()
		p, err := packet.Read(r)
		end := len(keyPackets) - r.Len()
		if err != nil {
			if !isSkippable(err) {
				return nil, fmt.Errorf("crypto: rewrap: %w", err)
			}
			out = append(out, keyPackets[start:end]...)
			continue
		}
		ek, isPKESK := p.(*packet.EncryptedKey)
		if !isPKESK {
			return nil, errors.New("crypto: rewrap: unexpected packet among key packets")
		}
		if !decryptPKESK(ek, fromRing) {
			out = append(out, keyPackets[start:end]...)
			continue
		}
		var nb bytes.Buffer
		err = packet.SerializeEncryptedKeyAEAD(&nb, encKey.PublicKey, ek.CipherFunc, ek.Version == 6, ek.Key, sealConfig)
		clear(ek.Key)
		if err != nil {
			return nil, fmt.Errorf("crypto: rewrap: %w", err)
		}
		out = append(out, nb.Bytes()...)
		replaced++
	}
	if replaced == 0 {
		return nil, ErrNoKeyPacket
	}
	return out, nil
}

// decryptPKESK tries from's decryption keys on ek (matched by key ID, or all
// of them for a hidden recipient) and reports whether one worked.
func decryptPKESK(ek *packet.EncryptedKey, ring openpgp.EntityList) bool {
	var cands []openpgp.Key
	if ek.KeyId == 0 {
		cands = ring.DecryptionKeys()
	} else {
		cands = ring.KeysById(ek.KeyId)
	}
	for _, k := range cands {
		if k.PrivateKey == nil || k.PrivateKey.Encrypted {
			continue
		}
		if ek.Decrypt(k.PrivateKey, sealConfig) == nil {
			return true
		}
	}
	return false
}

// Recover re-addresses a message to `to` with the help of via (the escrow
// key, private): it decrypts the session key from via's PKESK and returns
// key packets holding a new PKESK to `to` plus via's PKESK unchanged. Every
// other PKESK (the lost key's) is dropped. This is the escrow-assisted
// recovery after a forgotten password (DESIGN.md "Keys").
func Recover(keyPackets []byte, via, to *Key) ([]byte, error) {
	if !via.IsPrivate() {
		return nil, errors.New("crypto: recover: escrow key has no private part")
	}
	encKey, ok := to.e.EncryptionKey(sealConfig.Now())
	if !ok {
		return nil, errors.New("crypto: recover: target key has no valid encryption key")
	}
	viaRing := openpgp.EntityList{via.e}
	var kept, added []byte
	r := bytes.NewReader(keyPackets)
	for r.Len() > 0 {
		start := len(keyPackets) - r.Len()
		p, err := packet.Read(r)
		end := len(keyPackets) - r.Len()
		if err != nil {
			if isSkippable(err) {
				continue
			}
			return nil, fmt.Errorf("crypto: recover: %w", err)
		}
		ek, isPKESK := p.(*packet.EncryptedKey)
		if !isPKESK {
			return nil, errors.New("crypto: recover: unexpected packet among key packets")
		}
		if ek.KeyId == 0 || len(viaRing.KeysById(ek.KeyId)) == 0 {
			continue // the lost key's packet (or an unknown one): dropped
		}
		kept = append(kept, keyPackets[start:end]...)
		if added != nil || !decryptPKESK(ek, viaRing) {
			continue
		}
		var nb bytes.Buffer
		err = packet.SerializeEncryptedKeyAEAD(&nb, encKey.PublicKey, ek.CipherFunc, ek.Version == 6, ek.Key, sealConfig)
		clear(ek.Key)
		if err != nil {
			return nil, fmt.Errorf("crypto: recover: %w", err)
		}
		added = nb.Bytes()
	}
	if added == nil {
		return nil, ErrNoKeyPacket
	}
	return append(added, kept...), nil
}
