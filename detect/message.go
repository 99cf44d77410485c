package detect

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"path"
	"strings"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // non-UTF-8 parts (LIBRARY-NOTES)
	"golang.org/x/net/html"
	"golang.org/x/text/encoding/unicode"
)

// Bounds on what one message can make ScanMessage do. go-message bounds
// neither depth nor part count (LIBRARY-NOTES).
const (
	// MaxScanBytes is the most decoded text scanned per message, summed
	// over subject, bodies and attachments; the rest is not scanned and
	// the result is marked Incomplete.
	MaxScanBytes = 10 << 20
	// MaxDepth is the deepest MIME nesting followed (multipart and
	// message/rfc822 alike).
	MaxDepth = 12
	// MaxParts is the most MIME parts looked at.
	MaxParts = 500
)

// MessageResult is ScanMessage's fuller answer, for policies that want to
// fail closed on what could not be read.
type MessageResult struct {
	Counts Counts
	// Incomplete is set when some content was not scanned: a bound above
	// was reached, the message or a part could not be parsed or decoded
	// (e.g. an unknown Content-Transfer-Encoding), or a body was cut short.
	Incomplete bool
	// Unscanned counts attachments skipped because they are not text-like:
	// images, office documents, archives, and PDFs.
	//
	// PDFs are not scanned: the one maintained pure-Go PDF text extractor
	// (github.com/ledongthuc/pdf) is not safe on hostile input in process
	// — a few hundred bytes with a self-referencing xref /Prev make it loop
	// forever, and a huge xref start index makes it allocate until the Go
	// runtime aborts the whole process, which recover cannot catch.
	// pdfcpu extracts content streams, not text. Extracting PDF text
	// belongs in a sandboxed, time- and memory-limited subprocess.
	Unscanned int
}

// ScanMessage parses a raw RFC 5322 message and scans its decoded Subject,
// text/plain and text/html bodies (HTML as its text: tags dropped, entities
// decoded, script and style skipped, alt and title attributes kept), the
// names of attachments, and text-like attachments: text/*, JSON, XML, CSV,
// YAML, EDI X12/EDIFACT, HL7 and RTF by type or by file name, UTF-16 with a
// byte-order mark included, and attached messages (message/rfc822),
// recursively. The alternatives of a multipart/alternative are all
// scanned, but count as one: per detector the largest count among them,
// since they carry the same content. The preamble of a multipart, which
// clients hide but which is sent, is scanned too. At most MaxScanBytes of
// text are scanned. Malformed input never panics: what cannot be parsed is
// scanned as raw text, as far as the bounds allow. PDF attachments are not
// scanned (see MessageResult.Unscanned for why).
func (s *Scanner) ScanMessage(raw []byte) Counts {
	return s.ScanMessageResult(raw).Counts
}

// ScanMessageResult is ScanMessage, also saying what was not scanned.
func (s *Scanner) ScanMessageResult(raw []byte) (res MessageResult) {
	m := &msgScan{s: s, budget: MaxScanBytes}
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

type msgScan struct {
	s          *Scanner
	budget     int // text bytes left to scan
	parts      int
	incomplete bool
	unscanned  int
}

func (m *msgScan) noteErr(err error) {
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
func (m *msgScan) scan(text string, c Counts) {
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
func (m *msgScan) scanBytes(b []byte, c Counts) {
	if len(b) > m.budget+1 {
		b = b[:max(m.budget+1, 0)]
	}
	m.scan(string(b), c)
}

// read reads a body, at most the remaining budget (and one byte more, to
// tell a cut).
func (m *msgScan) read(r io.Reader) []byte {
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

var wordDecoder = &mime.WordDecoder{CharsetReader: gomessage.CharsetReader}

func decodeWords(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// entity scans a message or part and returns its counts.
func (m *msgScan) entity(e *gomessage.Entity, depth int) Counts {
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

// captureLimit bounds how much of a multipart body is kept to scan its
// preamble, or the whole body when no part can be found in it.
const captureLimit = 1 << 20

// capture keeps the first captureLimit bytes read through it, until
// stopped.
type capture struct {
	r       io.Reader
	buf     []byte
	stopped bool
}

func (c *capture) stop() { c.buf, c.stopped = nil, true }

func (c *capture) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if room := captureLimit - len(c.buf); room > 0 && !c.stopped {
		c.buf = append(c.buf, p[:min(n, room)]...)
	}
	return n, err
}

// multipart scans the parts of e into c. The parts of a
// multipart/alternative are all scanned but count once (per detector, the
// largest count), since they carry the same content. The preamble, which
// clients do not show but which is sent all the same, is scanned too; a
// body in which no part can be found is scanned as text.
func (m *msgScan) multipart(e *gomessage.Entity, c Counts, alternative bool, boundary string, depth int) Counts {
	rec := &capture{r: e.Body}
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
				m.incomplete = true // preamble longer than captureLimit
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
func (m *msgScan) readAll(r io.Reader) []byte {
	b, err := io.ReadAll(r)
	if err != nil {
		m.incomplete = true
	}
	return b
}

type partKind int

const (
	kindNone partKind = iota
	kindText
	kindHTML
	kindMessage
)

// textExt are file extensions of text formats, for attachments sent as
// application/octet-stream or (CSV from Windows) application/vnd.ms-excel.
var textExt = map[string]partKind{
	".txt": kindText, ".csv": kindText, ".tsv": kindText, ".json": kindText,
	".xml": kindText, ".hl7": kindText, ".x12": kindText, ".edi": kindText,
	".837": kindText, ".835": kindText, ".270": kindText, ".271": kindText,
	".log": kindText, ".md": kindText, ".ics": kindText, ".vcf": kindText,
	".yaml": kindText, ".yml": kindText, ".rtf": kindText, ".ccd": kindText,
	".cda": kindText, ".htm": kindHTML, ".html": kindHTML, ".eml": kindMessage,
}

// kind classifies a leaf part by media type, then by file name.
func kind(ct, name string) partKind {
	ct = strings.ToLower(ct)
	switch {
	case ct == "" || ct == "text/plain": // RFC 2045 default
		return kindText
	case ct == "text/html" || ct == "application/xhtml+xml":
		return kindHTML
	case ct == "message/rfc822" || ct == "message/global":
		return kindMessage
	case strings.HasPrefix(ct, "text/"), strings.HasPrefix(ct, "message/"),
		strings.HasPrefix(ct, "multipart/"), // no boundary: read as text
		strings.HasSuffix(ct, "+json"), strings.HasSuffix(ct, "+xml"):
		return kindText
	}
	switch ct {
	case "application/json", "application/x-ndjson", "application/xml",
		"application/csv", "application/x-csv", "application/yaml",
		"application/x-yaml", "application/rtf", "application/edi-x12",
		"application/edifact", "application/hl7-v2", "application/x-hl7":
		return kindText
	}
	if k, ok := textExt[strings.ToLower(path.Ext(name))]; ok {
		return k
	}
	return kindNone
}

// textOf turns a text attachment into a string: UTF-16 with a byte-order
// mark (Windows exports) is decoded; anything else is taken as it is
// (go-message has already converted declared text/* charsets to UTF-8).
func textOf(b []byte) string {
	if len(b) >= 2 && (b[0] == 0xff && b[1] == 0xfe || b[0] == 0xfe && b[1] == 0xff) {
		dec := unicode.UTF16(unicode.LittleEndian, unicode.ExpectBOM).NewDecoder()
		if out, err := dec.Bytes(b); err == nil {
			return string(out)
		}
	}
	return string(b)
}

// blockTags end a line of text: without a break there, "<td>123</td>
// <td>45</td>" would read as one number. Inline tags (b, i, span, a, font)
// add nothing, so "123-<b>45</b>-6789" reads as it renders.
var blockTags = map[string]bool{
	"address": true, "article": true, "aside": true, "blockquote": true,
	"br": true, "dd": true, "div": true, "dl": true, "dt": true,
	"fieldset": true, "figcaption": true, "figure": true, "footer": true,
	"form": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true,
	"h6": true, "header": true, "hr": true, "li": true, "main": true,
	"nav": true, "ol": true, "p": true, "pre": true, "section": true,
	"table": true, "tbody": true, "td": true, "tfoot": true, "th": true,
	"thead": true, "tr": true, "ul": true, "img": true, "input": true,
	"option": true, "select": true, "textarea": true, "title": true,
	"caption": true, "body": true, "head": true, "html": true,
}

// htmlText returns the text of an HTML document: text nodes with entities
// decoded, alt and title attributes, and line breaks at block elements.
// Script and style contents are skipped.
func htmlText(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) >= 2 && (b[0] == 0xff && b[1] == 0xfe || b[0] == 0xfe && b[1] == 0xff) {
		b = []byte(textOf(b))
	}
	var out strings.Builder
	out.Grow(len(b) / 2)
	z := html.NewTokenizer(bytes.NewReader(b))
	skip := ""
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return out.String()
		case html.TextToken:
			if skip == "" {
				out.Write(z.Text())
			}
		case html.StartTagToken, html.SelfClosingTagToken, html.EndTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			if tt == html.StartTagToken && (tag == "script" || tag == "style") {
				skip = tag
			} else if tt == html.EndTagToken && tag == skip {
				skip = ""
			}
			if blockTags[tag] {
				out.WriteByte('\n')
			}
			for hasAttr && tt != html.EndTagToken {
				var k, v []byte
				k, v, hasAttr = z.TagAttr()
				if ks := string(k); ks == "alt" || ks == "title" {
					out.WriteByte('\n')
					out.Write(v)
					out.WriteByte('\n')
				}
			}
		}
	}
}
