package detect

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"
)

// crlf turns a readable test message into wire form.
func crlf(s string) []byte {
	return []byte(strings.ReplaceAll(strings.TrimLeft(s, "\n"), "\n", "\r\n"))
}

func b64(s string) string {
	enc := base64.StdEncoding.EncodeToString([]byte(s))
	var b strings.Builder
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	return b.String()
}

func utf16le(s string) string {
	var b bytes.Buffer
	b.Write([]byte{0xff, 0xfe})
	for _, u := range utf16.Encode([]rune(s)) {
		b.WriteByte(byte(u))
		b.WriteByte(byte(u >> 8))
	}
	return b.String()
}

// multipartFixture is a message with one of everything ScanMessage reads.
func multipartFixture() []byte {
	inner := `From: a@example.org
Subject: Forwarded: MBI 1EG4-TE5-MK73
Content-Type: text/plain

MRN: 7654321
`
	return crlf(`From: Dr A <a@example.org>
To: b@example.com
Subject: =?UTF-8?Q?Re:_patient_SSN_512-34-5678?=
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

DOB: 01/05/1980. Call 212-867-=
5309 about E11.9=2E
--alt
Content-Type: text/html; charset=utf-8

<html><head><style>.x{content:"DOB 02/03/1970"}</style>
<script>var ssn="512-34-9999";</script></head><body>
<p>DOB: 01/<b>05</b>/1980. Call 212&#45;867&#x2D;5309 about <i>E11</i>.9.</p>
</body></html>
--alt--

--outer
Content-Type: text/csv; name="labs.csv"
Content-Disposition: attachment; filename="labs.csv"
Content-Transfer-Encoding: base64

` + b64("npi,card\n1234567893,4111111111111111\n1987654328,5555 5555 5555 4444\n") + `
--outer
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Diagnose: Schizophr=E9nie
--outer
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="export.json"

{"ssn": "512-34-1111"}
--outer
Content-Type: text/plain; name="utf16.txt"
Content-Disposition: attachment; filename="utf16.txt"
Content-Transfer-Encoding: base64

` + b64(utf16le("SSN 512-34-2222\r\n")) + `
--outer
Content-Type: application/pdf; name="scan.pdf"
Content-Disposition: attachment; filename="scan.pdf"
Content-Transfer-Encoding: base64

` + b64("%PDF-1.4\nSSN 512-34-3333\n%%EOF\n") + `
--outer
Content-Type: image/png
Content-Transfer-Encoding: base64

` + b64("\x89PNG\r\n\x1a\n 512-34-4444") + `
--outer
Content-Type: message/rfc822

` + inner + `
--outer
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="=?UTF-8?B?` + base64.StdEncoding.EncodeToString([]byte("Doe DOB 1-5-1980.pdf")) + `?="

binary
--outer--
`)
}

func TestScanMessageMultipart(t *testing.T) {
	s := newTestScanner(t, Config{Keywords: []string{"Schizophrénie"}, MRNPattern: `MRN[:# ]*\d{7}`})
	raw := multipartFixture()
	res := s.ScanMessageResult(raw)
	want := Counts{
		SSN:     3, // subject, export.json, utf16.txt (not the script, the PDF or the PNG)
		DOB:     2, // body (alternatives count once; not the <style>), file name
		Phone:   1, // QP soft break and &#45; both joined
		ICD10:   1,
		NPI:     2,
		Card:    2,
		Keyword: 1, // ISO-8859-1 decoded
		MBI:     1, // attached message's subject
		MRN:     1, // attached message's body
	}
	if !reflect.DeepEqual(res.Counts, want) {
		t.Errorf("counts = %v\nwant     %v", res.Counts, want)
	}
	if res.Unscanned != 3 { // pdf, png, the binary file
		t.Errorf("Unscanned = %d, want 3", res.Unscanned)
	}
	if res.Incomplete {
		t.Error("Incomplete set on a well-formed message")
	}
	if got := s.ScanMessage(raw); !reflect.DeepEqual(got, res.Counts) {
		t.Errorf("ScanMessage = %v, ScanMessageResult = %v", got, res.Counts)
	}
}

func TestHTMLText(t *testing.T) {
	for _, tc := range []struct {
		name, html string
		want       Counts
	}{
		{"split by inline tags and entities", `<div>SSN 512-<span style="x">34</span>&#45;5678</div>`, Counts{SSN: 1}},
		{"named entity nbsp", `SSN 512&nbsp;34&nbsp;5678`, Counts{SSN: 1}},
		{"cells are not joined", `<table><tr><td>SSN</td><td>512</td><td>34</td><td>5678</td></tr></table>`, Counts{}},
		{"script skipped", `<script>"512-34-5678"</script><p>ok</p>`, Counts{}},
		{"style skipped", `<style>/* 512-34-5678 */</style>`, Counts{}},
		{"alt and title", `<img alt="MBI 1EG4-TE5-MK73"><a title="DOB 01/05/1980">x</a>`, Counts{MBI: 1, DOB: 1}},
		{"comment ignored", `<!-- 512-34-5678 -->`, Counts{}},
		{"broken html", `<p>SSN 512-34-5678<b`, Counts{SSN: 1}},
		{"br breaks", `212-867<br>-5309`, Counts{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestScanner(t, Config{})
			got := s.ScanText(htmlText([]byte(tc.html)))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("htmlText(%q) -> %q -> %v, want %v", tc.html, htmlText([]byte(tc.html)), got, tc.want)
			}
		})
	}
}

func TestScanMessageHugeIsBounded(t *testing.T) {
	s := newTestScanner(t, Config{})
	line := "SSN 512-34-5678\n" // 16 bytes
	body := strings.Repeat(line, (MaxScanBytes+(2<<20))/len(line))
	raw := append(crlf("Subject: big\nContent-Type: text/plain\n\n"), body...)
	res := s.ScanMessageResult(raw)
	if !res.Incomplete {
		t.Error("Incomplete not set on a message over MaxScanBytes")
	}
	max := MaxScanBytes / len(line)
	if n := res.Counts[SSN]; n < max-1 || n > max {
		t.Errorf("SSN count = %d, want about %d (the first MaxScanBytes only)", n, max)
	}

	// Many parts, each under the budget, together over it.
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=b\n\n")
	chunk := strings.Repeat(line, (1<<20)/len(line))
	for range 12 {
		b.WriteString("--b\nContent-Type: text/plain\n\n" + chunk + "\n")
	}
	b.WriteString("--b--\n")
	res = s.ScanMessageResult(crlf(b.String()))
	if !res.Incomplete || res.Counts[SSN] > max {
		t.Errorf("12 MB over parts: incomplete=%v ssn=%d (max %d)", res.Incomplete, res.Counts[SSN], max)
	}
}

func TestScanMessageStructureBounds(t *testing.T) {
	s := newTestScanner(t, Config{})
	// Nesting deeper than MaxDepth.
	res := s.ScanMessageResult(crlf(deepMultipart(MaxDepth + 5)))
	if !res.Incomplete || res.Counts[SSN] != 0 {
		t.Errorf("deep: %+v", res)
	}

	// More parts than MaxParts.
	var b strings.Builder
	b.WriteString("Content-Type: multipart/mixed; boundary=b\n\n")
	for range MaxParts + 10 {
		b.WriteString("--b\nContent-Type: text/plain\n\nSSN 512-34-5678\n")
	}
	b.WriteString("--b--\n")
	res = s.ScanMessageResult(crlf(b.String()))
	if !res.Incomplete || res.Counts[SSN] != MaxParts-1 { // the root counts as a part
		t.Errorf("many parts: incomplete=%v ssn=%d", res.Incomplete, res.Counts[SSN])
	}

	// Attached messages nested past MaxDepth.
	msg := "Subject: SSN 512-34-5678\nContent-Type: text/plain\n\nx\n"
	for range MaxDepth + 3 {
		msg = "Subject: fwd\nContent-Type: message/rfc822\n\n" + msg
	}
	res = s.ScanMessageResult(crlf(msg))
	if !res.Incomplete || res.Counts[SSN] != 0 {
		t.Errorf("deep rfc822: %+v", res)
	}
}

// malformedCases are broken messages with what ScanMessage finds in them.
var malformedCases = []struct {
	name           string
	raw            string
	ssn            int
	wantIncomplete bool
}{
	{"not a message", "Hello, SSN 512-34-5678 here\n", 1, true},
	{"empty", "", 0, false},
	{"headers only", "Subject: SSN 512-34-5678\n", 1, false},
	{"missing final boundary", "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nSSN 512-34-5678\n", 1, true},
	{"no boundary param", "Content-Type: multipart/mixed\n\nSSN 512-34-5678\n", 1, false},
	{"unknown transfer encoding", "Content-Type: text/plain\nContent-Transfer-Encoding: x-weird\n\nSSN 512-34-5678\n", 1, true},
	{"unknown charset", "Content-Type: text/plain; charset=x-nope\n\nSSN 512-34-5678\n", 1, false},
	{"bad base64", "Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\n" + b64("SSN 512-34-5678 ") + "!!!@@@\n", 1, true},
	{"broken content type", "Content-Type: ;;;=\n\nSSN 512-34-5678\n", 1, false},
	{"nul bytes", "Subject: x\n\n\x00\x00SSN 512-34-5678\x00", 1, false},
	{"preamble is scanned", "Content-Type: multipart/mixed; boundary=b\n\nSSN 512-34-5678 in the preamble\n--b\nContent-Type: text/plain\n\nhello\n--b--\n", 1, false},
	{"boundary never appears", "Content-Type: multipart/mixed; boundary=zzz\n\nSSN 512-34-5678\n", 1, true},
	{"unterminated boundary param", "Content-Type: multipart/mixed; boundary=\"b\n\n--b\nContent-Type: text/plain\n\nSSN 512-34-5678\n--b--\n", 1, false},
}

func TestScanMessageMalformed(t *testing.T) {
	s := newTestScanner(t, Config{})
	for _, tc := range malformedCases {
		t.Run(tc.name, func(t *testing.T) {
			res := s.ScanMessageResult(crlf(tc.raw))
			if res.Counts[SSN] != tc.ssn || res.Incomplete != tc.wantIncomplete {
				t.Errorf("got ssn=%d incomplete=%v, want %d %v (%+v)", res.Counts[SSN], res.Incomplete, tc.ssn, tc.wantIncomplete, res)
			}
		})
	}
}

func TestScanMessageGarbageNoPanic(t *testing.T) {
	s := newTestScanner(t, Config{MRNPattern: `\d{7}`, Keywords: []string{"x"}})
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("-\r\n:;=\"<>/ abcdefABCDEF0123456789Content-Type: multipart/mixed; boundary=message/rfc822 base64 quoted-printable --b\x00\xff\xfe")
	for range 3000 {
		n := r.IntN(600)
		b := make([]byte, n)
		for i := range b {
			if r.IntN(4) == 0 {
				b[i] = byte(r.IntN(256))
			} else {
				b[i] = alphabet[r.IntN(len(alphabet))]
			}
		}
		s.ScanMessage(b)
		s.ScanMessage(append(crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n"), b...))
	}
}

func FuzzScanMessage(f *testing.F) {
	s := newTestScanner(f, Config{MRNPattern: `\d{7}`, Keywords: []string{"HIV"}})
	for _, seed := range []string{
		"Subject: x\r\n\r\nSSN 512-34-5678",
		"Content-Type: multipart/alternative; boundary=a\r\n\r\n--a\r\nContent-Type: text/html\r\n\r\n<p>1EG4-TE5-MK73</p>\r\n--a--\r\n",
		"Content-Type: message/rfc822\r\n\r\nSubject: DOB 01/05/1980\r\n\r\nbody",
		"Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nSchizophr=E9nie",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		res := s.ScanMessageResult(raw)
		if res.Counts == nil {
			t.Fatal("nil counts")
		}
	})
}

// oneMBMessage is a realistic 1 MB message: a clinical note in text and
// HTML, a CSV attachment (base64) and a PDF (skipped).
func oneMBMessage() []byte {
	note := clinicalText(200 << 10)
	html := "<html><body><p>" + strings.ReplaceAll(note, "\n", "</p>\n<p>") + "</p></body></html>"
	var csv strings.Builder
	for csv.Len() < 250<<10 {
		csv.WriteString("Jane Doe,03/14/1962,512-34-5678,1234567893,E11.9,(212) 867-5309\n")
	}
	pdf := strings.Repeat("%PDF binary stream data ", (150<<10)/24)
	return crlf(`From: a@example.org
Subject: Referral packet
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: multipart/alternative; boundary=alt

--alt
Content-Type: text/plain; charset=utf-8

` + note + `
--alt
Content-Type: text/html; charset=utf-8

` + html + `
--alt--
--outer
Content-Type: text/csv; name=patients.csv
Content-Transfer-Encoding: base64

` + b64(csv.String()) + `
--outer
Content-Type: application/pdf; name=scan.pdf
Content-Transfer-Encoding: base64

` + b64(pdf) + `
--outer--
`)
}

func BenchmarkScanMessage1MB(b *testing.B) {
	s := newTestScanner(b, Config{MRNPattern: `MRN[:# ]*\d{7}`, Keywords: []string{"oncology", "HIV", "breast cancer"}})
	raw := oneMBMessage()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		s.ScanMessage(raw)
	}
}

func TestOneMBMessageShape(t *testing.T) {
	raw := oneMBMessage()
	if len(raw) < 900<<10 || len(raw) > 1200<<10 {
		t.Fatalf("benchmark message is %d bytes", len(raw))
	}
	s := newTestScanner(t, Config{})
	res := s.ScanMessageResult(raw)
	if res.Incomplete || res.Unscanned != 1 || res.Counts[SSN] == 0 || res.Counts[MBI] == 0 {
		t.Fatalf("1 MB message: %+v", res)
	}
}

// deepMultipart is a message of depth nested multiparts around one text
// part with an SSN.
func deepMultipart(depth int) string {
	var b strings.Builder
	b.WriteString("Subject: deep\n")
	for i := range depth {
		fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i)
	}
	b.WriteString("Content-Type: text/plain\n\nSSN 512-34-5678\n")
	for i := depth - 1; i >= 0; i-- {
		fmt.Fprintf(&b, "--b%d--\n", i)
	}
	return b.String()
}
