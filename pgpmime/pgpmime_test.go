package pgpmime

import (
	"bytes"
	"errors"
	"mime"
	"net/mail"
	"strings"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
)

func TestRoundTrip(t *testing.T) {
	gw, rcpt, escrow := testKey(t, "gateway"), testKey(t, "recipient"), testKey(t, "escrow")
	raw := []byte(origHeader + origBody)
	out, err := Encrypt(raw, testOptions(), gw, rcpt.Public(), escrow.Public())
	if err != nil {
		t.Fatal(err)
	}

	// Nothing of the message is in the clear anywhere in the output.
	if c := containsAny(string(out), canaries); c != "" {
		t.Fatalf("output contains canary %q:\n%s", c, out)
	}

	// Outer header: addresses only, placeholder subject, the original ID.
	p := parsePGPMIME(t, out)
	want := map[string]string{
		"From":         "dr.hartley@clinic.example",
		"To":           "jane.roe@patient.example",
		"Subject":      "...",
		"Message-Id":   "<orig-4711@clinic.example>",
		"Mime-Version": "1.0",
		"Date":         "Tue, 03 Nov 2026 08:15:00 +0000",
	}
	for k, v := range want {
		if got := p.header.Get(k); got != v {
			t.Errorf("outer %s = %q, want %q", k, got, v)
		}
	}
	if len(p.header) != len(want)+1 { // + Content-Type
		t.Errorf("outer header has extra fields: %v", p.header)
	}
	if p.params["protocol"] != "application/pgp-encrypted" {
		t.Errorf("protocol = %q", p.params["protocol"])
	}
	if !bytes.HasPrefix(out, []byte("Date: ")) || !bytes.Contains(out, []byte("\r\n\r\n"+preamble+"--"+p.params["boundary"]+"\r\n")) {
		t.Errorf("unexpected layout:\n%s", out[:min(len(out), 600)])
	}
	if bytes.Contains(bytes.ReplaceAll(out, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("output has bare LF")
	}

	// RFC 3156 parts.
	if ct := p.part1.Header.Get("Content-Type"); ct != "application/pgp-encrypted" {
		t.Errorf("part 1 Content-Type %q", ct)
	}
	if string(p.body1) != "Version: 1\r\n" {
		t.Errorf("part 1 body %q", p.body1)
	}
	mt, params, _ := mime.ParseMediaType(p.part2.Header.Get("Content-Type"))
	if mt != "application/octet-stream" || params["name"] != "encrypted.asc" {
		t.Errorf("part 2 Content-Type %q", p.part2.Header.Get("Content-Type"))
	}
	disp, dparams, _ := mime.ParseMediaType(p.part2.Header.Get("Content-Disposition"))
	if disp != "inline" || dparams["filename"] != "encrypted.asc" {
		t.Errorf("part 2 Content-Disposition %q", p.part2.Header.Get("Content-Disposition"))
	}
	if !bytes.HasPrefix(p.body2, []byte("-----BEGIN PGP MESSAGE-----\r\n")) ||
		!bytes.HasSuffix(p.body2, []byte("-----END PGP MESSAGE-----")) {
		t.Errorf("part 2 is not an armored message:\n%s", p.body2)
	}
	if p.trailingPartsFound != 0 {
		t.Errorf("%d extra parts", p.trailingPartsFound)
	}

	// Decrypt: the protected header block followed by the original body.
	wantInner := protectedHeader + origBody
	for _, k := range []*pcrypto.Key{rcpt, escrow} {
		inner, sig, err := Decrypt(out, k, gw.Public())
		if err != nil {
			t.Fatal(err)
		}
		if sig != pcrypto.SigVerified {
			t.Errorf("signature %v", sig)
		}
		if string(inner) != wantInner {
			t.Fatalf("inner entity:\n%q\nwant\n%q", inner, wantInner)
		}
	}
	inner, _, _ := Decrypt(out, rcpt, gw.Public())
	m, err := mail.ReadMessage(bytes.NewReader(inner))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"Subject": canarySubject, "From": origFrom, "To": origTo, "Cc": canaryCc,
		"Message-Id": "<orig-4711@clinic.example>", "Date": "Tue, 03 Nov 2026 09:15:00 +0100"} {
		if got := m.Header.Get(k); got != v {
			t.Errorf("protected %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Bcc", "Received", "X-Mailer"} {
		if m.Header.Get(k) != "" {
			t.Errorf("inner header keeps %s", k)
		}
	}
	mt, params, err = mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || params["boundary"] != "b1-xyz" || params["protected-headers"] != "v1" {
		t.Errorf("inner Content-Type %q (%v)", m.Header.Get("Content-Type"), err)
	}

	// Signature status with the wrong verifier, or none.
	if _, sig, err := Decrypt(out, rcpt, testKey(t, "other").Public()); err != nil || sig != pcrypto.SigUnknownSigner {
		t.Errorf("other verifier: %v %v", sig, err)
	}
	if _, sig, err := Decrypt(out, rcpt, nil); err != nil || sig != pcrypto.SigUnknownSigner {
		t.Errorf("nil verifier: %v %v", sig, err)
	}
	// Not a recipient.
	if _, _, err := Decrypt(out, testKey(t, "other"), gw.Public()); !errors.Is(err, pcrypto.ErrNotRecipient) {
		t.Errorf("non-recipient: %v", err)
	}
}

func TestEncryptGeneratesMessageIDAndDate(t *testing.T) {
	gw, rcpt := testKey(t, "gateway"), testKey(t, "recipient")
	before := time.Now().Add(-time.Second)
	out, err := Encrypt([]byte("Subject: hi\r\n\r\nbody\r\n"),
		Options{From: "a@clinic.example", To: "B <b@x.example>, c@y.example", Hostname: "gw.clinic.example"}, gw, rcpt.Public())
	if err != nil {
		t.Fatal(err)
	}
	p := parsePGPMIME(t, out)
	id := p.header.Get("Message-Id")
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@gw.clinic.example>") || len(id) < 30 {
		t.Errorf("Message-ID %q", id)
	}
	if to := p.header.Get("To"); to != "b@x.example, c@y.example" {
		t.Errorf("To %q", to)
	}
	d, err := p.header.Date()
	if err != nil || d.Before(before) || d.After(time.Now().Add(time.Second)) {
		t.Errorf("Date %v %v", d, err)
	}
	// Message-ID without brackets gets them.
	out, _ = Encrypt([]byte("Subject: hi\r\n\r\nbody\r\n"),
		Options{From: "a@clinic.example", To: "b@x.example", MessageID: "abc@clinic.example"}, gw, rcpt.Public())
	if got := parsePGPMIME(t, out).header.Get("Message-Id"); got != "<abc@clinic.example>" {
		t.Errorf("Message-ID %q", got)
	}
}

func TestProtectedEntity(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"bare LF made CRLF",
			"From: a@x.example\nSubject: s\nContent-Type: text/plain; charset=utf-8\n\nline 1\nline 2\r\n",
			"From: a@x.example\r\nSubject: s\r\nContent-Type: text/plain; charset=utf-8;\r\n protected-headers=\"v1\"\r\n\r\nline 1\r\nline 2\r\n"},
		{"no Content-Type gets the RFC 2045 default",
			"From: a@x.example\r\nSubject: s\r\n\r\nhello\r\n",
			"From: a@x.example\r\nSubject: s\r\nContent-Type: text/plain; protected-headers=\"v1\"\r\n\r\nhello\r\n"},
		{"already marked",
			"Subject: s\r\nContent-Type: text/plain; protected-headers=\"v1\"\r\n\r\nx",
			"Subject: s\r\nContent-Type: text/plain; protected-headers=\"v1\"\r\n\r\nx"},
		{"trailing semicolon, encoded words and Content-* kept verbatim",
			"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/html;\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Language: de\r\nX-Spam: no\r\n\r\n=3D\r\n",
			"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/html;\r\n protected-headers=\"v1\"\r\nContent-Transfer-Encoding: quoted-printable\r\nContent-Language: de\r\n\r\n=3D\r\n"},
		{"header only, no body",
			"Subject: s\r\n",
			"Subject: s\r\nContent-Type: text/plain; protected-headers=\"v1\"\r\n\r\n"},
	}
	for _, c := range cases {
		got, err := ProtectedEntity([]byte(c.in))
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if string(got) != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

func TestEncryptErrorsDoNotQuoteInput(t *testing.T) {
	gw, rcpt := testKey(t, "gateway"), testKey(t, "recipient")
	opt := Options{From: "a@clinic.example", To: "b@x.example"}
	// A header line without a colon: go-message's error would quote it.
	_, err := Encrypt([]byte("Subject: ok\r\n"+canarySubject+"\r\n\r\nbody"), opt, gw, rcpt.Public())
	if err == nil || strings.Contains(err.Error(), "CANARY") {
		t.Errorf("malformed header: %v", err)
	}
	for _, bad := range []Options{
		{From: canaryFromName, To: "b@x.example"},
		{From: "a@clinic.example", To: canaryToName + " <broken"},
		{From: "a@clinic.example, c@clinic.example", To: "b@x.example"},
		{From: "a@clinic.example\r\nBcc: " + canaryBcc, To: "b@x.example"},
		{From: "a@clinic.example", To: "b@x.example", MessageID: "<x@y>\r\nSubject: " + canarySubject},
	} {
		_, err := Encrypt([]byte("Subject: s\r\n\r\nb"), bad, gw, rcpt.Public())
		if err == nil || strings.Contains(err.Error(), "CANARY") {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if _, err := Encrypt([]byte("Subject: s\r\n\r\nb"), opt, gw.Public(), rcpt.Public()); err == nil {
		t.Error("public signer accepted")
	}
	if _, err := Encrypt([]byte("Subject: s\r\n\r\nb"), opt, gw); err == nil {
		t.Error("no recipients accepted")
	}
}

func TestEncryptRefusesUnusableRecipient(t *testing.T) {
	cfg := entityConfig()
	cfg.Time = func() time.Time { return time.Now().Add(-48 * time.Hour) }
	cfg.KeyLifetimeSecs = 3600
	k, err := pcrypto.ReadKey(armorPublic(t, newEntity(t, "expired", cfg)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Encrypt([]byte("Subject: s\r\n\r\nb"), Options{From: "a@clinic.example", To: "b@x.example"},
		testKey(t, "gateway"), testKey(t, "escrow").Public(), k)
	if !errors.Is(err, pcrypto.ErrKeyExpired) {
		t.Fatalf("got %v", err)
	}
}

func TestDecryptRejectsOtherMessages(t *testing.T) {
	gw, rcpt := testKey(t, "gateway"), testKey(t, "recipient")
	for name, msg := range map[string]string{
		"plain":         "Subject: x\r\n\r\nhello",
		"wrong type":    "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
		"wrong proto":   "Content-Type: multipart/encrypted; protocol=\"application/pkcs7-mime\"; boundary=b\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n--b--\r\n",
		"no version":    "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 2\r\n--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n--b--\r\n",
		"one part only": "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=b\r\n\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b--\r\n",
	} {
		if _, _, err := Decrypt([]byte(msg), rcpt, gw.Public()); !errors.Is(err, ErrNotPGPMIME) {
			t.Errorf("%s: %v", name, err)
		}
	}

	// Tampered ciphertext: an error, never plaintext.
	out, err := Encrypt([]byte(origHeader+origBody), testOptions(), gw, rcpt.Public())
	if err != nil {
		t.Fatal(err)
	}
	payload, err := EncryptedPayload(out)
	if err != nil {
		t.Fatal(err)
	}
	s, err := pcrypto.ParseSealed(payload)
	if err != nil {
		t.Fatal(err)
	}
	s.Data[len(s.Data)/2] ^= 1
	arm, _ := s.Armor()
	tampered := bytes.Replace(out, toCRLF(bytes.TrimRight(payload, "\r\n")), toCRLF(bytes.TrimRight(arm, "\r\n")), 1)
	if bytes.Equal(tampered, out) {
		t.Fatal("tampering did not change the message")
	}
	if inner, _, err := Decrypt(tampered, rcpt, gw.Public()); err == nil {
		t.Fatalf("tampered message decrypted: %d bytes", len(inner))
	}
}
