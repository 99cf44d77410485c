package detect

// The MIME walk ScanMessage had before it scanned message.Parse's tree
// (issue 12): kept as the reference the new walk must agree with
// (TestScanSameAsLegacy, FuzzScanSameAsLegacy). Test code only.

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"mime"
	"reflect"
	"strings"
	"testing"

	gomessage "github.com/emersion/go-message"
	"github.com/phigate/phigate/message"
)

var wordDecoder = &mime.WordDecoder{CharsetReader: gomessage.CharsetReader}

func decodeWords(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// legacyScanMessageResult is ScanMessage, also saying what was not scanned.
func (s *Scanner) legacyScanMessageResult(raw []byte) (res MessageResult) {
	m := &legacyMsgScan{s: s, budget: MaxScanBytes}
	c := Counts{}
	defer func() {
		// Defence in depth: the parsers below are fuzzed, but a panic on
		// hostile mail must not take the gateway down. What was counted
		// stands, and the result says the scan did not finish.
		if r := recover(); r != nil {
			res = MessageResult{Counts: c, Incomplete: true, Unscanned: m.unscanned}
		}
	}()
	e, err := gomessage.Read(bytes.NewReader(raw))
	if e == nil {
		// Not even a header block: scan the bytes as text.
		m.incomplete = true
		m.scanBytes(raw, c)
	} else {
		m.noteErr(err)
		c.add(m.entity(e, 0))
	}
	return MessageResult{Counts: c, Incomplete: m.incomplete, Unscanned: m.unscanned}
}

type legacyMsgScan struct {
	s          *Scanner
	budget     int // text bytes left to scan
	parts      int
	incomplete bool
	unscanned  int
}

func (m *legacyMsgScan) noteErr(err error) {
	if err == nil {
		return
	}
	// An unknown charset still yields the undecoded bytes, which are
	// scanned (digits are ASCII in the charsets mail uses in practice);
	// anything else
	// (unknown transfer encoding, broken headers) means bytes went unread
	// or were read encoded.
	if !gomessage.IsUnknownCharset(err) {
		m.incomplete = true
	}
}

// scan scans text within the budget, into c.
func (m *legacyMsgScan) scan(text string, c Counts) {
	if text == "" {
		return
	}
	if m.budget <= 0 {
		m.incomplete = true
		return
	}
	if len(text) > m.budget {
		text = text[:m.budget]
		m.incomplete = true
	}
	m.budget -= len(text)
	m.s.scanInto(text, c)
}

// scanBytes is scan for bytes, converting no more than the budget.
func (m *legacyMsgScan) scanBytes(b []byte, c Counts) {
	if len(b) > m.budget+1 {
		b = b[:max(m.budget+1, 0)]
	}
	m.scan(string(b), c)
}

// read reads a body, at most the remaining budget (and one byte more, to
// tell a cut).
func (m *legacyMsgScan) read(r io.Reader) []byte {
	if m.budget <= 0 {
		m.incomplete = true
		return nil
	}
	b, err := io.ReadAll(io.LimitReader(r, int64(m.budget)+1))
	if err != nil {
		m.incomplete = true // bad base64 and the like: scan what decoded
	}
	return b
}

// entity scans a message or part and returns its counts.
func (m *legacyMsgScan) entity(e *gomessage.Entity, depth int) Counts {
	c := Counts{}
	m.parts++
	if m.parts > MaxParts || depth > MaxDepth {
		m.incomplete = true
		return c
	}
	if depth == 0 || e.Header.Has("Subject") {
		subj, err := e.Header.Text("Subject")
		if err != nil {
			subj = e.Header.Get("Subject")
		}
		m.scan(subj, c)
	}
	ct, params, err := e.Header.ContentType()
	if err != nil {
		// RFC 2045 §5.2: a syntactically invalid Content-Type is taken
		// as text/plain, so the body is scanned as text.
		ct, params = "", nil
	}
	if strings.HasPrefix(ct, "multipart/") && params["boundary"] != "" {
		return m.multipart(e, c, ct == "multipart/alternative", params["boundary"], depth)
	}
	_, dparams, _ := e.Header.ContentDisposition()
	name := decodeWords(dparams["filename"])
	if name == "" {
		name = decodeWords(params["name"])
	}
	m.scan(name, c) // "Smith_John_DOB_01-05-1980.pdf"
	switch kind(ct, name) {
	case kindMessage:
		b := m.readAll(e.Body)
		inner, err := gomessage.Read(bytes.NewReader(b))
		if inner == nil {
			m.incomplete = true
			m.scanBytes(b, c)
			break
		}
		m.noteErr(err)
		c.add(m.entity(inner, depth+1))
	case kindHTML:
		// Charged by the HTML's size, not its text's, so markup counts
		// against the bound too.
		b := m.read(e.Body)
		if len(b) > m.budget {
			b = b[:m.budget]
			m.incomplete = true
		}
		m.budget -= len(b)
		m.s.scanInto(htmlText(b), c)
	case kindText:
		m.scan(textOf(m.read(e.Body)), c)
	default:
		m.unscanned++
	}
	return c
}

// legacyCaptureLimit bounds how much of a multipart body is kept to scan its
// preamble, or the whole body when no part can be found in it.
const legacyCaptureLimit = 1 << 20

// capture keeps the first legacyCaptureLimit bytes read through it, until
// stopped.
type legacyCapture struct {
	r       io.Reader
	buf     []byte
	stopped bool
}

func (c *legacyCapture) stop() { c.buf, c.stopped = nil, true }

func (c *legacyCapture) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if room := legacyCaptureLimit - len(c.buf); room > 0 && !c.stopped {
		c.buf = append(c.buf, p[:min(n, room)]...)
	}
	return n, err
}

// multipart scans the parts of e into c. The parts of a
// multipart/alternative are all scanned but count once (per detector, the
// largest count), since they carry the same content. The preamble, which
// clients do not show but which is sent all the same, is scanned too; a
// body in which no part can be found is scanned as text.
func (m *legacyMsgScan) multipart(e *gomessage.Entity, c Counts, alternative bool, boundary string, depth int) Counts {
	rec := &legacyCapture{r: e.Body}
	e.Body = rec
	mr := e.MultipartReader()
	alt := Counts{}
	found := 0
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if p == nil {
			m.incomplete = true // a broken boundary: the rest is unreadable
			break
		}
		if found == 0 {
			if i := bytes.Index(rec.buf, []byte("--"+boundary)); i > 0 {
				m.scan(string(rec.buf[:i]), c)
			} else if i < 0 {
				m.incomplete = true // preamble longer than legacyCaptureLimit
			}
			rec.stop()
		}
		found++
		m.noteErr(err)
		pc := m.entity(p, depth+1)
		if alternative {
			alt.max(pc)
		} else {
			c.add(pc)
		}
		if m.parts > MaxParts {
			break
		}
	}
	if found == 0 {
		m.incomplete = true
		m.scanBytes(rec.buf, c)
	}
	c.add(alt)
	return c
}

// readAll reads an attached message whole: it is parsed, not scanned, so
// the text budget does not apply; its size is bounded by the raw message.
func (m *legacyMsgScan) readAll(r io.Reader) []byte {
	b, err := io.ReadAll(r)
	if err != nil {
		m.incomplete = true
	}
	return b
}

// scanCorpus is every message the tests of this package scan, and more of
// the hostile kind: broken structure, deep nesting, many parts, bad
// encodings and charsets, bodies over the budget, and random mutations
// of well-formed messages.
func scanCorpus() [][]byte {
	var out [][]byte
	add := func(s string) { out = append(out, crlf(s)) }
	out = append(out, multipartFixture(), oneMBMessage())
	for _, tc := range malformedCases {
		add(tc.raw)
	}
	for _, s := range []string{
		"Subject: x\n\nSSN 512-34-5678",
		"Content-Type: multipart/alternative; boundary=a\n\n--a\nContent-Type: text/html\n\n<p>1EG4-TE5-MK73</p>\n--a--\n",
		"Content-Type: message/rfc822\n\nSubject: DOB 01/05/1980\n\nbody",
		"Content-Type: text/plain; charset=iso-8859-1\nContent-Transfer-Encoding: quoted-printable\n\nSchizophr=E9nie",
		// Multiparts without a usable boundary: text to the detectors.
		"Content-Type: multipart/mixed\n\n--\nContent-Type: text/plain\n\nSSN 512-34-5678\n----\n",
		"Content-Type: multipart/mixed; boundary=\"\"\n\npre SSN 512-34-5678\n--\nx\n--\n",
		"Content-Type: multipart/mixed; boundary=b; ;;\n\n--b\nContent-Type: text/plain\n\nSSN 512-34-5678\n--b--\n",
		"Content-Type: Multipart/Mixed; Boundary=B\n\n--B\nContent-Type: TEXT/PLAIN\n\nSSN 512-34-5678\n--B--\n",
		// Unknown encodings and charsets, alone and together.
		"Content-Type: text/plain; charset=x-nope\nContent-Transfer-Encoding: x-weird\n\nSSN 512-34-5678\n",
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain; charset=x-nope\nContent-Transfer-Encoding: base64\n\n" + b64("SSN 512-34-5678") + "\n--b\nContent-Type: text/html; charset=windows-1252\n\n<p>\x93DOB 01/05/1980\x94</p>\n--b--\n",
		"Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nSSN 512=3\n=ZZ34-5678 =\n",
		"Content-Type: text/html\nContent-Transfer-Encoding: base64\n\n" + b64("<p>SSN 512-34-5678</p>") + "*&^\n",
		// Attached messages: broken, headerless, nested, with parts.
		"Content-Type: message/rfc822\n\n",
		"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n" + b64("Subject: SSN 512-34-5678\n\nDOB 01/05/1980\n") + "\n",
		"Content-Type: message/rfc822\n\n\x00: \x00\nSSN 512-34-5678\n",
		"Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: message/rfc822\n\nContent-Type: multipart/mixed; boundary=i\n\n--i\nContent-Type: text/plain\n\nSSN 512-34-5678\n--i\nContent-Type: message/global\n\nSubject: MBI 1EG4-TE5-MK73\n\nx\n--i--\n\n--o\nContent-Type: text/plain\n\nSSN 512-34-5679\n--o--\n",
		// Names, subjects in parts, file types by extension.
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nSubject: SSN 512-34-5678\nContent-Type: application/octet-stream; name=\"=?utf-8?q?DOB_01/05/1980.csv?=\"\n\nNPI 1234567893\n--b\nContent-Type: application/vnd.ms-excel\nContent-Disposition: attachment; filename*=UTF-8''MRN%201234567.csv\n\n1234567\n--b\nContent-Type: application/octet-stream; name=a.eml\n\nSubject: SSN 512-34-5678\n\n\n--b\nContent-Type: application/octet-stream; name=a.HTM\n\n<b>SSN 512-34-5678</b>\n--b--\n",
		// Preambles and epilogues.
		"Content-Type: multipart/mixed; boundary=b\n\n--b-not\nSSN 512-34-5678\n--b\nContent-Type: text/plain\n\nx\n--b--\nSSN 512-34-5670 epilogue\n",
		"Content-Type: multipart/mixed; boundary=b\n\n" + strings.Repeat("SSN 512-34-5678 padding padding\n", (2<<20)/32) + "--b\nContent-Type: text/plain\n\nx\n--b--\n",
		"Content-Type: multipart/mixed; boundary=b\n\n" + strings.Repeat("SSN 512-34-5678 padding padding\n", (2<<20)/32),
		// UTF-16 with a byte-order mark, as text and as HTML.
		"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/csv\nContent-Transfer-Encoding: base64\n\n" + b64(utf16le("SSN 512-34-5678")) + "\n--b\nContent-Type: text/html\nContent-Transfer-Encoding: base64\n\n" + b64(utf16le("<p>SSN 512-34-5678</p>")) + "\n--b--\n",
	} {
		add(s)
	}
	// Structure bounds: deep multiparts, many parts, deep attached
	// messages, many parts inside attached messages and inside multiparts
	// without a boundary.
	add(deepMultipart(MaxDepth + 5))
	var b strings.Builder
	for _, n := range []int{MaxParts - 2, MaxParts - 1, MaxParts, MaxParts + 1, MaxParts + 10, 2000} {
		b.Reset()
		b.WriteString("Content-Type: multipart/mixed; boundary=b\n\n")
		for range n {
			b.WriteString("--b\nContent-Type: text/plain\n\nSSN 512-34-5678\n")
		}
		b.WriteString("--b--\n")
		many := b.String()
		add(many)
		add("Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: message/rfc822\n\n" + many + "\n--o\nContent-Type: text/plain\n\nSSN 512-34-5670\n--o--\n")
		add("Content-Type: multipart/mixed; boundary=o\n\n--o\nContent-Type: multipart/mixed\n\n" + strings.ReplaceAll(many, "--b", "--") + "\n--o\nContent-Type: text/plain\n\nSSN 512-34-5670\n--o--\n")
	}
	for _, d := range []int{MaxDepth - 1, MaxDepth, MaxDepth + 1, MaxDepth + 3} {
		msg := "Subject: SSN 512-34-5678\nContent-Type: text/plain\n\nx\n"
		for range d {
			msg = "Subject: fwd\nContent-Type: message/rfc822\n\n" + msg
		}
		add(msg)
	}
	// Over the text budget, in one part and over many.
	line := "SSN 512-34-5678\n"
	add("Subject: big\nContent-Type: text/plain\n\n" + strings.Repeat(line, (MaxScanBytes+(2<<20))/len(line)))
	b.Reset()
	b.WriteString("Content-Type: multipart/mixed; boundary=b\n\n")
	chunk := strings.Repeat(line, (1<<20)/len(line))
	for i := range 12 {
		if i == 9 {
			b.WriteString("--b\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\n" + b64(chunk) + "!!\n")
			continue
		}
		b.WriteString("--b\nContent-Type: text/html\n\n<p>" + chunk + "</p>\n")
	}
	b.WriteString("--b--\n")
	add(b.String())

	// Random garbage, alone and after a multipart header (as
	// TestScanMessageGarbageNoPanic).
	r := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("-\r\n:;=\"<>/ abcdefABCDEF0123456789Content-Type: multipart/mixed; boundary=message/rfc822 base64 quoted-printable --b\x00\xff\xfe")
	for range 1500 {
		g := make([]byte, r.IntN(600))
		for i := range g {
			if r.IntN(4) == 0 {
				g[i] = byte(r.IntN(256))
			} else {
				g[i] = alphabet[r.IntN(len(alphabet))]
			}
		}
		out = append(out, g, append(crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n"), g...))
	}
	// Mutations of the structured messages so far.
	seeds := append([][]byte(nil), out[:len(out)-3000]...)
	tokens := [][]byte{[]byte("\r\n--outer\r\n"), []byte("\r\n--alt--\r\n"), []byte("\r\n\r\n"), []byte("Content-Type: message/rfc822\r\n"),
		[]byte("Content-Transfer-Encoding: base64\r\n"), []byte("charset=x-nope"), []byte("=?utf-8?b?U1NO?="), []byte("--b\r\n"), []byte("\x00")}
	for range 3000 {
		s := seeds[r.IntN(len(seeds))]
		if len(s) > 8<<10 {
			continue
		}
		m := append([]byte(nil), s...)
		for range 1 + r.IntN(3) {
			if len(m) == 0 {
				break
			}
			i := r.IntN(len(m))
			switch r.IntN(4) {
			case 0: // cut
				m = append(m[:i], m[min(len(m), i+r.IntN(64)):]...)
			case 1: // duplicate
				j := min(len(m), i+r.IntN(256))
				m = append(m[:j], append(append([]byte(nil), m[i:j]...), m[j:]...)...)
			case 2: // insert a token
				m = append(m[:i], append(append([]byte(nil), tokens[r.IntN(len(tokens))]...), m[i:]...)...)
			default: // flip
				m[i] = byte(r.IntN(256))
			}
		}
		out = append(out, m)
	}
	return out
}

// TestScanSameAsLegacy: the scan of message.Parse's tree finds exactly
// what the walk ScanMessage had before (its own go-message parse) found,
// on every message of scanCorpus, with two configurations; and ScanView
// of a parsed View finds what ScanMessage finds.
func TestScanSameAsLegacy(t *testing.T) {
	corpus := scanCorpus()
	for n, cfg := range []Config{
		{Keywords: []string{"Schizophrénie"}, MRNPattern: `MRN[:# ]*\d{7}`},
		{MRNPattern: `\d{7}`, Keywords: []string{"HIV", "x", "ssn"}},
	} {
		s := newTestScanner(t, cfg)
		differ := 0
		for i, raw := range corpus {
			if n > 0 && len(raw) > 1<<20 {
				continue // the budget's messages: once is enough
			}
			want := s.legacyScanMessageResult(raw)
			got := s.ScanMessageResult(raw)
			if !reflect.DeepEqual(got, want) {
				if differ++; differ <= 10 {
					t.Errorf("corpus[%d] (%d bytes): got %+v, the walk before found %+v\n%.300q", i, len(raw), got, want, raw)
				}
				continue
			}
			if v := s.ScanView(message.Parse(raw)); !reflect.DeepEqual(v, got.Counts) {
				t.Errorf("corpus[%d]: ScanView %v, ScanMessage %v", i, v, got.Counts)
			}
		}
		if differ > 0 {
			t.Errorf("%d of %d messages differ", differ, len(corpus))
		}
	}
}

// FuzzScanSameAsLegacy is TestScanSameAsLegacy on fuzzed input.
func FuzzScanSameAsLegacy(f *testing.F) {
	for _, raw := range scanCorpus()[:60] {
		if len(raw) < 64<<10 {
			f.Add(raw)
		}
	}
	s := newTestScanner(f, Config{MRNPattern: `\d{7}`, Keywords: []string{"HIV"}})
	f.Fuzz(func(t *testing.T, raw []byte) {
		want := s.legacyScanMessageResult(raw)
		if got := s.ScanMessageResult(raw); !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, the walk before found %+v", got, want)
		}
	})
}

// TestBoundsWithinParse: the tree message.Parse reads reaches as deep and
// as far as a scan looks, so a scan finds what it did when it parsed on
// its own.
func TestBoundsWithinParse(t *testing.T) {
	if MaxDepth > message.MaxDepth || MaxParts > message.MaxParts {
		t.Fatalf("detect bounds %d deep, %d parts; message.Parse reads %d, %d", MaxDepth, MaxParts, message.MaxDepth, message.MaxParts)
	}
}
