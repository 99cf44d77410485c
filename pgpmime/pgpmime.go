// Package pgpmime builds and reads PGP/MIME messages (RFC 3156,
// multipart/encrypted) for the pgp action: the original message, with its
// user-facing header fields protected inside the ciphertext ("protected
// headers", protected-headers="v1"), signed by the gateway key and encrypted
// to the recipient's registered public key. The outer header carries no PHI.
package pgpmime

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-message/textproto"

	pcrypto "github.com/phigate/phigate/crypto"
)

// Options are the outer (unencrypted) header values. None of them may carry
// PHI: From and To are reduced to bare addresses (display names dropped).
type Options struct {
	From, To  string    // one From address; To may be a comma-separated list
	MessageID string    // outer Message-ID; the original's is kept if given
	Date      time.Time // zero means now
	Hostname  string    // right-hand side of a generated Message-ID
}

// Subject is the outer Subject: the placeholder the protected-headers
// convention suggests, so no subject text leaves the ciphertext.
const Subject = "..."

const (
	preamble = "This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
	// AttachmentName is the file name of the encrypted part.
	AttachmentName = "encrypted.asc"
)

// protectedFields are copied from the original header into the encrypted
// part (in their original order and exact bytes). Bcc is deliberately absent:
// every recipient would see it. Trace fields (Received, DKIM-Signature, ...)
// are dropped. Every Content-* field is kept too, since it describes the body.
var protectedFields = map[string]bool{
	"Date":         true,
	"From":         true,
	"Sender":       true,
	"Reply-To":     true,
	"To":           true,
	"Cc":           true,
	"Subject":      true,
	"Message-Id":   true,
	"In-Reply-To":  true,
	"References":   true,
	"Mime-Version": true,
}

// Encrypt builds an RFC 3156 multipart/encrypted message from raw (an RFC
// 5322 message). The encrypted payload is the original MIME entity whose
// header keeps only the protected fields and the Content-* fields, with
// protected-headers="v1" added to its Content-Type; line endings are made
// CRLF (MIME canonical form). It is signed by signer (private) and encrypted
// to every recipient (the recipient's key, and e.g. the escrow key). Each
// recipient key must pass CheckRecipient (without an address check).
//
// Errors never quote the message: they may end up in logs.
func Encrypt(raw []byte, opt Options, signer *pcrypto.Key, recipients ...*pcrypto.Key) ([]byte, error) {
	if signer == nil || !signer.IsPrivate() {
		return nil, errors.New("pgpmime: a private signing key is required")
	}
	if len(recipients) == 0 {
		return nil, errors.New("pgpmime: no recipient keys")
	}
	now := time.Now()
	for i, r := range recipients {
		if err := r.CheckRecipient("", now); err != nil {
			return nil, fmt.Errorf("pgpmime: recipient key %d: %w", i+1, err)
		}
	}
	from, err := addressList(opt.From, false)
	if err != nil {
		return nil, fmt.Errorf("pgpmime: From: %w", err)
	}
	to, err := addressList(opt.To, true)
	if err != nil {
		return nil, fmt.Errorf("pgpmime: To: %w", err)
	}
	msgID, err := messageID(opt.MessageID, opt.Hostname)
	if err != nil {
		return nil, err
	}
	date := opt.Date
	if date.IsZero() {
		date = now
	}

	inner, err := ProtectedEntity(raw)
	if err != nil {
		return nil, err
	}
	sealed, err := pcrypto.Seal(inner, signer, recipients...)
	clear(inner)
	if err != nil {
		return nil, fmt.Errorf("pgpmime: %w", err)
	}
	armored, err := sealed.Armor()
	if err != nil {
		return nil, fmt.Errorf("pgpmime: armor: %w", err)
	}
	return outer(armored, from, to, msgID, date)
}

// outer writes the multipart/encrypted envelope around armored.
func outer(armored []byte, from, to, msgID string, date time.Time) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(armored) + len(armored)/32 + 1024)
	mw := textproto.NewMultipartWriter(&buf)

	// The outer header is written by hand for exact, conventional spelling
	// (go-message would canonicalise Message-ID to Message-Id); every value
	// was validated above and holds no line break.
	fmt.Fprintf(&buf, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&buf, "From: %s\r\n", from)
	fmt.Fprintf(&buf, "To: %s\r\n", to)
	fmt.Fprintf(&buf, "Subject: %s\r\n", Subject)
	fmt.Fprintf(&buf, "Message-ID: %s\r\n", msgID)
	buf.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&buf, "Content-Type: multipart/encrypted;\r\n protocol=\"application/pgp-encrypted\";\r\n boundary=\"%s\"\r\n", mw.Boundary())
	buf.WriteString("\r\n")
	buf.WriteString(preamble)

	w, err := mw.CreatePart(rawHeader(
		"Content-Type: application/pgp-encrypted\r\n",
		"Content-Description: PGP/MIME version identification\r\n",
	))
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, "Version: 1\r\n"); err != nil {
		return nil, err
	}

	w, err = mw.CreatePart(rawHeader(
		"Content-Type: application/octet-stream; name=\""+AttachmentName+"\"\r\n",
		"Content-Description: OpenPGP encrypted message\r\n",
		"Content-Disposition: inline; filename=\""+AttachmentName+"\"\r\n",
	))
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(toCRLF(bytes.TrimRight(armored, "\r\n"))); err != nil {
		return nil, err
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// rawHeader makes a header of complete "Key: value\r\n" fields, written in
// the given order (AddRaw inserts at the top).
func rawHeader(fields ...string) textproto.Header {
	var h textproto.Header
	for i := len(fields) - 1; i >= 0; i-- {
		h.AddRaw([]byte(fields[i]))
	}
	return h
}

// ProtectedEntity returns the payload Encrypt encrypts: raw's body
// unchanged, under a header holding only the protected fields and Content-*
// fields of raw (exact bytes, original order), with protected-headers="v1"
// on the Content-Type; all line endings CRLF.
func ProtectedEntity(raw []byte) ([]byte, error) {
	canon := toCRLF(raw)
	br := bufio.NewReader(bytes.NewReader(canon))
	hdr, err := textproto.ReadHeader(br)
	if err != nil && !errors.Is(err, io.EOF) {
		// The library's error quotes the bad line: keep it out of logs.
		return nil, errors.New("pgpmime: the message header cannot be parsed")
	}
	if hdr.Len() == 0 {
		return nil, errors.New("pgpmime: the message has no header")
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		return nil, err
	}

	out := bytes.NewBuffer(make([]byte, 0, len(canon)+64))
	haveCT := false
	for f := hdr.Fields(); f.Next(); {
		k := f.Key()
		if !protectedFields[k] && !strings.HasPrefix(k, "Content-") {
			continue
		}
		b, err := f.Raw()
		if err != nil {
			return nil, errors.New("pgpmime: the message header cannot be parsed")
		}
		if k == "Content-Type" {
			if haveCT {
				continue // a duplicate Content-Type is ambiguous: keep the first
			}
			haveCT = true
			b = markProtected(b, f.Value())
		}
		out.Write(b)
		if !bytes.HasSuffix(b, []byte("\r\n")) {
			out.WriteString("\r\n")
		}
	}
	if !haveCT {
		// RFC 2045 default type, now with the marker.
		out.WriteString("Content-Type: text/plain; protected-headers=\"v1\"\r\n")
	}
	out.WriteString("\r\n")
	out.Write(rest)
	return out.Bytes(), nil
}

// markProtected appends protected-headers="v1" to a raw Content-Type field
// (as a folded continuation line, so the original parameters, e.g. the
// boundary, stay byte-for-byte), unless it already has the parameter.
func markProtected(raw []byte, value string) []byte {
	if _, params, err := mime.ParseMediaType(value); err == nil {
		if _, ok := params["protected-headers"]; ok {
			return raw
		}
	}
	b := bytes.TrimRight(raw, " \t\r\n;")
	out := make([]byte, 0, len(b)+32)
	out = append(out, b...)
	return append(out, ";\r\n protected-headers=\"v1\"\r\n"...)
}

// toCRLF turns every bare LF into CRLF (existing CRLFs are kept).
func toCRLF(b []byte) []byte {
	n := bytes.Count(b, []byte("\n")) - bytes.Count(b, []byte("\r\n"))
	if n == 0 {
		return b
	}
	out := make([]byte, 0, len(b)+n)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}

// addressList reduces s to bare addresses (display names and comments
// dropped), comma-separated. Parse errors are not quoted (they echo input).
func addressList(s string, many bool) (string, error) {
	if strings.ContainsAny(s, "\r\n") {
		return "", errors.New("address contains a line break")
	}
	list, err := mail.ParseAddressList(s)
	if err != nil || len(list) == 0 {
		return "", errors.New("not a valid address")
	}
	if !many && len(list) != 1 {
		return "", errors.New("want exactly one address")
	}
	addrs := make([]string, len(list))
	for i, a := range list {
		addrs[i] = a.Address
	}
	return strings.Join(addrs, ", "), nil
}

// messageID returns id in angle brackets, or a new random one at host.
func messageID(id, host string) (string, error) {
	id = strings.TrimSpace(id)
	if id != "" {
		if strings.ContainsAny(id, "\r\n \t") {
			return "", errors.New("pgpmime: Message-ID contains whitespace")
		}
		return "<" + strings.Trim(id, "<>") + ">", nil
	}
	host = strings.TrimSpace(host)
	if host == "" {
		host = "phigate.invalid"
	}
	if strings.ContainsAny(host, "\r\n \t<>@") {
		return "", errors.New("pgpmime: invalid Hostname")
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "<" + hex.EncodeToString(b[:]) + "@" + host + ">", nil
}
