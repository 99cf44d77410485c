package intake

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/phigate/phigate/detect"
	"github.com/phigate/phigate/message"
)

// benchMessage20KB is gateway's BenchmarkIntake20KB message (e2e.Multipart
// with benchMessage(20 << 10)): text and HTML alternatives and a base64
// attachment.
func benchMessage20KB() []byte {
	const size = 20 << 10
	filler := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit. 0123456789\r\n"), size/70+1)
	var b bytes.Buffer
	b.WriteString("From: Dr Lee <dr.lee@clinic.example>\r\nTo: bench@example.net\r\nSubject: Bench\r\n" +
		"Date: Sun, 06 Dec 2026 20:00:00 +0000\r\nMessage-ID: <1@test>\r\nMIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n")
	b.WriteString("--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n")
	fmt.Fprintf(&b, "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", filler[:size*3/4])
	b.WriteString("--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>bench</p>\r\n--alt--\r\n")
	b.WriteString("--outer\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(filler[:size/6])
	var w strings.Builder
	for i := 0; i < len(enc); i += 76 {
		w.WriteString(enc[i:min(i+76, len(enc))] + "\r\n")
	}
	b.WriteString(w.String())
	b.WriteString("\r\n--outer--\r\n")
	return b.Bytes()
}

type scannerDetector struct{ s *detect.Scanner }

func (d scannerDetector) ScanView(v *message.View) map[string]int { return d.s.ScanView(v) }

// BenchmarkFacts20KB is the content part of Accept: parsing the message
// (message.Parse) and computing the policy facts from it, detectors
// included.
func BenchmarkFacts20KB(b *testing.B) {
	s, err := detect.New(detect.Config{})
	if err != nil {
		b.Fatal(err)
	}
	in := &Intake{Detector: scannerDetector{s}}
	raw := benchMessage20KB()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		in.facts(raw, message.Parse(raw))
	}
}
