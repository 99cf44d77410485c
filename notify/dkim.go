package notify

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/phigate/phigate/store"
)

// DKIMSigner signs notice emails twice (issue 10.5): RSA-SHA256, which
// every receiver verifies, and Ed25519-SHA256 (RFC 8463), which RFC 8463
// section 3 advises adding beside it. Each key has its own selector, since
// a selector names one key record (RFC 6376 3.1).
type DKIMSigner struct {
	Domain   string
	Selector string // the records are Selector+"-rsa" and Selector+"-ed25519"
	RSA      *rsa.PrivateKey
	Ed25519  ed25519.PrivateKey
}

// signedHeaders are the notice's header fields the signatures cover (RFC
// 6376 5.4.1). From and Subject are listed twice: a signed name that the
// message lacks signs its absence, so nobody can add a second From or
// Subject later without breaking the signature (RFC 6376 8.15).
var signedHeaders = []string{"From", "From", "To", "Subject", "Subject", "Date", "Message-ID",
	"Auto-Submitted", "X-Auto-Response-Suppress", "Content-Language", "MIME-Version", "Content-Type",
	"Content-Transfer-Encoding"}

// DKIMRecord is one DNS TXT record to publish.
type DKIMRecord struct {
	Algorithm string // "rsa" or "ed25519"
	Name      string // owner name, without the final dot
	Value     string // the record's text, unsplit
}

func (s *DKIMSigner) keys() []struct {
	selector string
	signer   crypto.Signer
} {
	return []struct {
		selector string
		signer   crypto.Signer
	}{{s.Selector + "-rsa", s.RSA}, {s.Selector + "-ed25519", s.Ed25519}}
}

// Sign returns msg with a DKIM-Signature field per key prepended. It runs
// on the finished notice, after every header is set.
func (s *DKIMSigner) Sign(msg []byte) ([]byte, error) {
	var fields bytes.Buffer
	for _, k := range s.keys() {
		signer, err := dkim.NewSigner(&dkim.SignOptions{Domain: s.Domain, Selector: k.selector, Signer: k.signer,
			Hash: crypto.SHA256, HeaderCanonicalization: dkim.CanonicalizationRelaxed,
			BodyCanonicalization: dkim.CanonicalizationRelaxed, HeaderKeys: signedHeaders})
		if err != nil {
			return nil, fmt.Errorf("dkim: %w", err)
		}
		if _, err := signer.Write(msg); err != nil {
			signer.Close()
			return nil, fmt.Errorf("dkim: %w", err)
		}
		if err := signer.Close(); err != nil {
			return nil, fmt.Errorf("dkim: %w", err)
		}
		fields.WriteString(signer.Signature())
	}
	return append(fields.Bytes(), msg...), nil
}

// Records returns the DNS TXT records to publish for the two keys (RFC
// 6376 3.6.1; RFC 8463 4.2: an Ed25519 key is its 32 raw bytes).
func (s *DKIMSigner) Records() ([]DKIMRecord, error) {
	spki, err := x509.MarshalPKIXPublicKey(s.RSA.Public())
	if err != nil {
		return nil, err
	}
	enc := base64.StdEncoding.EncodeToString
	name := func(sel string) string { return sel + "._domainkey." + strings.TrimSuffix(s.Domain, ".") }
	ks := s.keys()
	return []DKIMRecord{
		{Algorithm: "rsa", Name: name(ks[0].selector), Value: "v=DKIM1; k=rsa; p=" + enc(spki)},
		{Algorithm: "ed25519", Name: name(ks[1].selector), Value: "v=DKIM1; k=ed25519; p=" + enc(s.Ed25519.Public().(ed25519.PublicKey))},
	}, nil
}

// ZoneLine is r as a zone-file line. A TXT character-string holds at most
// 255 octets (RFC 1035 3.3), and an RSA-2048 record is longer: it is split
// into several strings, which resolvers join back (RFC 6376 3.6.2.2).
func (r DKIMRecord) ZoneLine() string {
	var parts []string
	for v := r.Value; v != ""; {
		n := min(len(v), 255)
		parts = append(parts, `"`+v[:n]+`"`)
		v = v[n:]
	}
	return r.Name + ". IN TXT ( " + strings.Join(parts, " ") + " )"
}

// render builds the notice of outbox row it and signs it last, once every
// header is final.
func (d *Dispatcher) render(it store.OutboxItem, n Notice) ([]byte, error) {
	t := d.Templates
	if t == nil {
		t = defaultTemplates
	}
	msg, err := t.Render(it.Kind, n, d.Org, d.Hostname, it.ID, d.now())
	if err != nil || d.DKIM == nil {
		return msg, err
	}
	return d.DKIM.Sign(msg)
}
