package detect

import (
	"bytes"
	"path"
	"strings"

	"github.com/phigate/phigate/message"
	"golang.org/x/net/html"
	"golang.org/x/text/encoding/unicode"
)

// Bounds on what one message can make ScanMessage do. go-message bounds
// neither depth nor part count (LIBRARY-NOTES). The tree message.Parse
// reads stops at its own MaxDepth and MaxParts, which are no lower
// (TestBoundsWithinParse): past them a scan sees Cut parts.
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
//
// The message is read by message.ReadParts; a caller that has parsed it
// with message.Parse already scans the View with ScanView instead.
func (s *Scanner) ScanMessage(raw []byte) Counts {
	return s.ScanMessageResult(raw).Counts
}

// ScanMessageResult is ScanMessage, also saying what was not scanned.
func (s *Scanner) ScanMessageResult(raw []byte) MessageResult {
	return s.ScanPartsResult(message.ReadParts(raw, scanned))
}

// scanned says which leaves' bodies a scan reads: the others only count
// as Unscanned.
func scanned(p *message.Part) bool { return kind(p.ContentType, p.Filename) != kindNone }

// ScanView is ScanMessage for a message already parsed by message.Parse:
// it scans the MIME tree the View was read from (v.Root), so the message
// is not parsed again.
func (s *Scanner) ScanView(v *message.View) Counts {
	return s.ScanPartsResult(v.Root).Counts
}

// ScanPartsResult scans a message's MIME tree (message.Parse's View.Root
// or message.ReadParts) as ScanMessageResult does. A nil tree has nothing
// to scan.
func (s *Scanner) ScanPartsResult(root *message.Part) (res MessageResult) {
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
	m.message(root, 0, c)
	return MessageResult{Counts: c, Incomplete: m.incomplete, Unscanned: m.unscanned}
}

type msgScan struct {
	s          *Scanner
	budget     int // text bytes left to scan
	parts      int
	incomplete bool
	unscanned  int
}

// message scans a message's root entity into c.
func (m *msgScan) message(root *message.Part, depth int, c Counts) {
	switch {
	case root == nil:
	case root.NoHeader:
		// Not even a header block: scan the bytes as text.
		m.incomplete = true
		m.scanBytes(root.Body, c)
	default:
		m.noteErr(root.Err)
		c.add(m.entity(root, depth))
	}
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
	if !message.IsUnknownCharset(err) {
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

// body is a part's body, at most the remaining budget (and one byte
// more, to tell a cut).
func (m *msgScan) body(p *message.Part) []byte {
	if m.budget <= 0 {
		m.incomplete = true
		return nil
	}
	b := p.Body
	if len(b) > m.budget+1 {
		b = b[:m.budget+1]
	} else if p.BodyErr != nil && len(b) <= m.budget {
		m.incomplete = true // bad base64 and the like: scan what decoded
	}
	return b
}

// entity scans a message or part and returns its counts.
func (m *msgScan) entity(p *message.Part, depth int) Counts {
	c := Counts{}
	m.parts++
	if p.Cut || m.parts > MaxParts || depth > MaxDepth {
		m.incomplete = true
		return c
	}
	m.scan(p.Subject, c)
	// A Content-Type that does not parse has ContentType "": RFC 2045
	// 5.2 has it taken as text/plain, so the body is scanned as text.
	ct := p.ContentType
	if p.Multipart() {
		return m.multipart(p, c, ct == "multipart/alternative", depth)
	}
	name := p.Filename
	m.scan(name, c) // "Smith_John_DOB_01-05-1980.pdf"
	switch kind(ct, name) {
	case kindMessage:
		// Read whole (within message.MaxBodyBytes): it is parsed, not
		// scanned, so the text budget does not apply.
		if p.BodyErr != nil || p.Truncated {
			m.incomplete = true
		}
		m.message(message.ReadParts(p.Body, scanned), depth+1, c)
	case kindHTML:
		// Charged by the HTML's size, not its text's, so markup counts
		// against the bound too.
		b := m.body(p)
		if len(b) > m.budget {
			b = b[:m.budget]
			m.incomplete = true
		}
		m.budget -= len(b)
		m.s.scanInto(htmlText(b), c)
	case kindText:
		m.scan(textOf(m.body(p)), c)
	default:
		m.unscanned++
	}
	return c
}

// multipart scans the parts of p into c. The parts of a
// multipart/alternative are all scanned but count once (per detector, the
// largest count), since they carry the same content. The preamble, which
// clients do not show but which is sent all the same, is scanned too; a
// body in which no part can be found is scanned as text.
func (m *msgScan) multipart(p *message.Part, c Counts, alternative bool, depth int) Counts {
	alt := Counts{}
	if p.Broken {
		m.incomplete = true // a broken boundary: the rest is unreadable
	}
	for i, part := range p.Parts {
		if i == 0 {
			if p.PreambleCut {
				m.incomplete = true // preamble longer than the parse keeps
			}
			m.scan(string(p.Preamble), c)
		}
		m.noteErr(part.Err)
		pc := m.entity(part, depth+1)
		if alternative {
			alt.max(pc)
		} else {
			c.add(pc)
		}
		if m.parts > MaxParts {
			break
		}
	}
	if len(p.Parts) == 0 {
		m.incomplete = true
		m.scanBytes(p.Preamble, c)
	}
	c.add(alt)
	return c
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
