package crypto

import (
	"errors"
	"fmt"
	"io"

	"github.com/ProtonMail/go-crypto/openpgp"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
)

// Streaming forms of Seal and Open, and detached signatures, for data too
// large to hold in memory whole (backups, issue 14.1). Same algorithms and
// settings as Seal: go-crypto does all of the cryptography.

// SealStream returns a writer whose plaintext is signed by signer and
// encrypted to recipients, the binary OpenPGP message going to dst. Close
// it to finish the message (it does not close dst).
func SealStream(dst io.Writer, signer *Key, recipients ...*Key) (io.WriteCloser, error) {
	if len(recipients) == 0 {
		return nil, errors.New("crypto: seal: no recipients")
	}
	if signer == nil || !signer.IsPrivate() {
		return nil, errors.New("crypto: seal: signer has no private key")
	}
	to := make([]*openpgp.Entity, len(recipients))
	for i, r := range recipients {
		to[i] = r.e
	}
	w, err := openpgp.Encrypt(dst, to, signer.e, &openpgp.FileHints{IsBinary: true}, sealConfig)
	if err != nil {
		return nil, fmt.Errorf("crypto: seal: %w", err)
	}
	return w, nil
}

// OpenedStream is the plaintext of a message being read by OpenStream.
type OpenedStream struct {
	md *openpgp.MessageDetails
}

// Read reads the (not yet verified) plaintext; integrity and signature are
// known only once it returned io.EOF (Status).
func (o *OpenedStream) Read(p []byte) (int, error) { return o.md.UnverifiedBody.Read(p) }

// Status is the signature status, valid after Read returned io.EOF (an
// integrity failure is Read's error, never io.EOF).
func (o *OpenedStream) Status() SignatureStatus {
	switch {
	case !o.md.IsSigned:
		return SigUnsigned
	case o.md.SignedBy == nil:
		return SigUnknownSigner
	case o.md.SignatureError != nil || o.md.Signature == nil:
		return SigInvalid
	}
	return SigVerified
}

// OpenStream starts decrypting the message read from src with key
// (private), checking the signature against verifier (public).
func OpenStream(src io.Reader, key, verifier *Key) (*OpenedStream, error) {
	if !key.IsPrivate() {
		return nil, errors.New("crypto: open: key has no private part")
	}
	ring := openRing{dec: openpgp.EntityList{key.e}}
	if verifier != nil {
		ring.ver = openpgp.EntityList{verifier.e}
	}
	md, err := openpgp.ReadMessage(src, ring, nil, nil)
	if err != nil {
		if errors.Is(err, pgperrors.ErrKeyIncorrect) {
			return nil, ErrNotRecipient
		}
		return nil, fmt.Errorf("crypto: open: %w", err)
	}
	if !md.IsEncrypted || md.DecryptedWith.Entity == nil {
		return nil, errors.New("crypto: open: message is not encrypted to key")
	}
	return &OpenedStream{md: md}, nil
}

// DetachSign writes a binary detached signature by signer over data.
func DetachSign(dst io.Writer, signer *Key, data io.Reader) error {
	if signer == nil || !signer.IsPrivate() {
		return errors.New("crypto: sign: signer has no private key")
	}
	if err := openpgp.DetachSign(dst, signer.e, data, sealConfig); err != nil {
		return fmt.Errorf("crypto: sign: %w", err)
	}
	return nil
}

// VerifyDetached checks a binary detached signature over data against
// signer (public). Any failure (not signed by signer, altered data or
// signature) is an error.
func VerifyDetached(signature, data io.Reader, signer *Key) error {
	if signer == nil {
		return errors.New("crypto: verify: no signer key")
	}
	_, err := openpgp.CheckDetachedSignature(append(openpgp.EntityList{signer.e}, signer.earlier...), data, signature, &packet.Config{})
	if err != nil {
		return fmt.Errorf("crypto: verify: %w", err)
	}
	return nil
}
