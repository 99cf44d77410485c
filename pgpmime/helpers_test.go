package pgpmime

import (
	"bytes"
	stdcrypto "crypto"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"

	pcrypto "github.com/phigate/phigate/crypto"
)

var (
	keyMu    sync.Mutex
	keyCache = map[string]*pcrypto.Key{}
)

// testKey returns a per-process private key for name@example.test.
func testKey(t testing.TB, name string) *pcrypto.Key {
	t.Helper()
	keyMu.Lock()
	defer keyMu.Unlock()
	if k, ok := keyCache[name]; ok {
		return k
	}
	k, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: name, Email: name + "@example.test"})
	if err != nil {
		t.Fatal(err)
	}
	keyCache[name] = k
	return k
}

// Canary strings: none may appear outside the ciphertext.
const (
	canarySubject  = "CANARY-SUBJ-3f9a biopsy results"
	canaryFromName = "CANARY-FROMNAME Hartley"
	canaryToName   = "CANARY-TONAME Roe"
	canaryCc       = "canary-cc-77e1@partner.example"
	canaryBcc      = "canary-bcc-0d42@clinic.example"
	canaryBody     = "CANARY-BODY-51d2 HbA1c 7.9% - please call the clinic."
	canaryAttach   = "CANARY-ATTACH-roe-labs.pdf"
	canaryMailer   = "CANARY-MAILER"
	canaryReceived = "CANARY-RECEIVED-host"
)

var canaries = []string{canarySubject, canaryFromName, canaryToName, canaryCc, canaryBcc,
	canaryBody, canaryAttach, canaryMailer, canaryReceived, "biopsy", "HbA1c", "roe-labs"}

const (
	origFrom = `"` + canaryFromName + `" <dr.hartley@clinic.example>`
	origTo   = canaryToName + ` <jane.roe@patient.example>`
)

// origHeader and origBody make up a typical multipart message with an
// attachment; protectedHeader is what the encrypted part's header must be.
const origHeader = "Received: from " + canaryReceived + " by mx.clinic.example\r\n" +
	"From: " + origFrom + "\r\n" +
	"To: " + origTo + "\r\n" +
	"Cc: " + canaryCc + "\r\n" +
	"Bcc: " + canaryBcc + "\r\n" +
	"Subject: " + canarySubject + "\r\n" +
	"Date: Tue, 03 Nov 2026 09:15:00 +0100\r\n" +
	"Message-ID: <orig-4711@clinic.example>\r\n" +
	"X-Mailer: " + canaryMailer + "\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed;\r\n boundary=\"b1-xyz\"\r\n" +
	"\r\n"

const origBody = "This is a multi-part message in MIME format.\r\n" +
	"--b1-xyz\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"Content-Transfer-Encoding: 8bit\r\n" +
	"\r\n" +
	canaryBody + "\r\n" +
	"Grüße, Dr. H.\r\n" +
	"--b1-xyz\r\n" +
	"Content-Type: application/pdf; name=\"" + canaryAttach + "\"\r\n" +
	"Content-Disposition: attachment; filename=\"" + canaryAttach + "\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"JVBERi0xLjQKJcOkw7zDtsOfCg==\r\n" +
	"--b1-xyz--\r\n"

const protectedHeader = "From: " + origFrom + "\r\n" +
	"To: " + origTo + "\r\n" +
	"Cc: " + canaryCc + "\r\n" +
	"Subject: " + canarySubject + "\r\n" +
	"Date: Tue, 03 Nov 2026 09:15:00 +0100\r\n" +
	"Message-ID: <orig-4711@clinic.example>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed;\r\n boundary=\"b1-xyz\";\r\n protected-headers=\"v1\"\r\n" +
	"\r\n"

var testDate = time.Date(2026, 11, 3, 8, 15, 0, 0, time.UTC)

func testOptions() Options {
	return Options{
		From:      origFrom,
		To:        origTo,
		MessageID: "<orig-4711@clinic.example>",
		Date:      testDate,
		Hostname:  "gw.clinic.example",
	}
}

// parsedPGPMIME is msg taken apart with the standard library only (an
// independent check of the structure go-message wrote).
type parsedPGPMIME struct {
	header             mail.Header
	params             map[string]string
	part1, part2       *multipart.Part
	body1, body2       []byte
	raw2               []byte // the second part as it appears on the wire, header included
	trailingPartsFound int
}

func parsePGPMIME(t *testing.T, msg []byte) *parsedPGPMIME {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("outer message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/encrypted" {
		t.Fatalf("outer Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	p := &parsedPGPMIME{header: m.Header, params: params}
	mr := multipart.NewReader(m.Body, params["boundary"])
	if p.part1, err = mr.NextRawPart(); err != nil {
		t.Fatalf("part 1: %v", err)
	}
	p.body1, _ = io.ReadAll(p.part1)
	if p.part2, err = mr.NextRawPart(); err != nil {
		t.Fatalf("part 2: %v", err)
	}
	p.body2, _ = io.ReadAll(p.part2)
	for {
		if _, err := mr.NextRawPart(); err != nil {
			if err != io.EOF {
				t.Fatalf("after part 2: %v", err)
			}
			break
		}
		p.trailingPartsFound++
	}
	// The raw second part: from its delimiter line to the closing one.
	delim := "--" + params["boundary"] + "\r\n"
	i := bytes.Index(msg, []byte(delim))
	j := bytes.Index(msg[i+len(delim):], []byte(delim))
	start := i + len(delim) + j + len(delim)
	end := bytes.Index(msg[start:], []byte("\r\n--"+params["boundary"]+"--"))
	p.raw2 = msg[start : start+end]
	return p
}

// --- keys crafted with go-crypto directly ---

func entityConfig() *packet.Config {
	return &packet.Config{
		Algorithm:              packet.PubKeyAlgoEdDSA,
		Curve:                  packet.Curve25519,
		DefaultHash:            stdcrypto.SHA256,
		DefaultCipher:          packet.CipherAES256,
		DefaultCompressionAlgo: packet.CompressionNone,
	}
}

func newEntity(t *testing.T, name string, cfg *packet.Config) *openpgp.Entity {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.test", cfg)
	if err != nil {
		t.Fatalf("NewEntity(%s): %v", name, err)
	}
	return e
}

func armorPublic(t *testing.T, e *openpgp.Entity) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return buf.Bytes()
}

func containsAny(s string, needles []string) string {
	for _, n := range needles {
		if strings.Contains(s, n) {
			return n
		}
	}
	return ""
}

func newEntityErr(name string, cfg *packet.Config) (*openpgp.Entity, error) {
	return openpgp.NewEntity(name, "", name+"@example.test", cfg)
}
