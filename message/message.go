// Package message reads an RFC 5322 message for display: headers, text,
// sanitised HTML and attachments. It never fails a message: what it cannot
// parse is shown as raw text with a note, and the raw bytes stay the source
// of truth (they are what is stored, encrypted).
package message

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strconv"
	"strings"
	"time"

	gomessage "github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // non-UTF-8 parts (LIBRARY-NOTES)
)

// Bounds on hostile structure (go-message bounds neither).
const (
	MaxDepth = 12
	MaxParts = 500
)

type Attachment struct {
	ID          string `json:"id"`
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
	Data        []byte `json:"-"`
}

// View is a parsed message ready to render.
type View struct {
	From        string
	To          string
	Cc          string
	Subject     string
	Date        time.Time
	MessageID   string
	References  []string // the References header's message ids, for threading
	Text        string
	HTML        string // raw; sanitise with SanitizeHTML before showing
	Attachments []Attachment
	Problems    []string // what could not be read (shown, never fatal)
	// Root is the MIME tree the View was read from (see Part).
	Root *Part
}

// Summary is the small record sealed separately for the inbox listing.
type Summary struct {
	From        string    `json:"from"`
	Subject     string    `json:"subject"`
	Date        time.Time `json:"date"`
	Attachments int       `json:"attachments"`
	Size        int64     `json:"size"`
}

func (v *View) Summary(size int64) Summary {
	return Summary{From: v.From, Subject: v.Subject, Date: v.Date, Attachments: len(v.Attachments), Size: size}
}

var wordDecoder = &mime.WordDecoder{CharsetReader: gomessage.CharsetReader}

func decodeHeader(s string) string {
	if d, err := wordDecoder.DecodeHeader(s); err == nil {
		return d
	}
	return s
}

// Parse reads raw into a View. It does not return an error: a broken
// message still shows something, with Problems saying what went wrong.
// The View's Root keeps the MIME tree it was read from, for the content
// detectors (package detect), so a message is parsed once.
func Parse(raw []byte) *View {
	return parse(raw, true, nil)
}

// ReadParts reads only raw's MIME tree (Root of Parse, without the View):
// for a message attached to another one. want, when not nil, says which
// leaves' bodies to read (it sees each leaf's header fields); the others
// are skipped and keep a nil Body.
func ReadParts(raw []byte, want func(*Part) bool) *Part {
	return parse(raw, false, want).Root
}

func parse(raw []byte, show bool, want func(*Part) bool) *View {
	v := &View{}
	e, err := gomessage.Read(bytes.NewReader(raw))
	if e == nil {
		v.Root = &Part{NoHeader: true, Err: err, Body: raw}
		if show {
			v.Problems = append(v.Problems, "headers could not be read: "+errText(err))
			v.Text = string(raw)
		}
		return v
	}
	w := walker{want: want}
	if show {
		w.v = v
		if err != nil {
			v.Problems = append(v.Problems, errText(err))
		}
		h := e.Header
		v.From = formatAddrs(h.Get("From"))
		v.To = formatAddrs(h.Get("To"))
		v.Cc = formatAddrs(h.Get("Cc"))
		v.Subject = decodeHeader(h.Get("Subject"))
		v.MessageID = strings.Trim(h.Get("Message-Id"), "<> ")
		for _, ref := range strings.Fields(h.Get("References")) {
			if ref = strings.Trim(ref, "<>"); ref != "" {
				v.References = append(v.References, ref)
			}
		}
		if d, err := mail.ParseDate(h.Get("Date")); err == nil {
			v.Date = d
		}
	}
	v.Root = w.walk(e, err, 0, true)
	return v
}

func errText(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// formatAddrs decodes an address header for display; on syntax errors the
// decoded raw text is shown.
func formatAddrs(s string) string {
	if s == "" {
		return ""
	}
	list, err := (&mail.AddressParser{WordDecoder: wordDecoder}).ParseList(s)
	if err != nil {
		return decodeHeader(s)
	}
	out := make([]string, len(list))
	for i, a := range list {
		if a.Name != "" {
			out[i] = a.Name + " <" + a.Address + ">"
		} else {
			out[i] = a.Address
		}
	}
	return strings.Join(out, ", ")
}

// walker reads a message's entities, depth first, into the View (what
// a reader is shown) and into the tree of Parts (every entity, for the
// detectors). Each has its bounds: the View counts every entity it meets
// against MaxParts; the tree counts the entities outside multiparts
// without a usable boundary (which the tree keeps whole, as text) and
// keeps the first one past MaxParts as a Cut placeholder. An entity past
// MaxDepth is not read for either.
type walker struct {
	v     *View // nil: the tree only (ReadParts)
	parts int   // entities met, for the View's bound
	kept  int   // entities met inside the tree, for its bound
	want  func(*Part) bool
}

// walk reads e, whose reading gave entErr; inTree says whether its parent
// keeps it in the tree. It returns e's node, or nil when the tree does
// not keep e.
func (w *walker) walk(e *gomessage.Entity, entErr error, depth int, inTree bool) *Part {
	w.parts++
	show := w.v != nil && w.parts <= MaxParts
	if w.v != nil && w.parts == MaxParts+1 {
		w.v.Problems = append(w.v.Problems, fmt.Sprintf("more than %d parts; the rest are not shown", MaxParts))
	}
	var p *Part
	if inTree {
		w.kept++
		switch {
		case w.kept > MaxParts+1:
			// The tree's reader stopped at the placeholder before.
		case w.kept > MaxParts || depth > MaxDepth:
			p = &Part{Cut: true}
		default:
			p = &Part{Err: entErr}
		}
	}
	if depth > MaxDepth {
		if show {
			w.v.Problems = append(w.v.Problems, "parts nested too deep are not shown")
		}
		return p
	}
	node := p // e's node when the tree reads into it
	if p != nil && p.Cut {
		node = nil
	}
	if !show && node == nil {
		return p
	}
	// As go-message's own: the raw field when it does not parse.
	ct, params, ctErr := e.Header.ContentType()
	disp, dparams, _ := e.Header.ContentDisposition()
	filename := decodeHeader(dparams["filename"])
	if filename == "" {
		filename = decodeHeader(params["name"])
	}
	if node != nil {
		node.Subject, _ = e.Header.Text("Subject") // the raw field when it does not decode
		if ctErr == nil {
			node.ContentType, node.Params = ct, params
		}
		node.Filename = filename
	}
	if strings.HasPrefix(ct, "multipart/") { // go-message's test for MultipartReader
		w.multipart(e, node, show, depth)
		return p
	}
	if ct == "" {
		ct = "text/plain"
	}
	if !show && w.want != nil && !w.want(node) {
		return p
	}
	body, truncated, err := readBody(e.Body, MaxBodyBytes)
	if node != nil {
		node.Body, node.BodyErr, node.Truncated = body, err, truncated
	}
	if !show {
		return p
	}
	if err != nil {
		w.v.Problems = append(w.v.Problems, "a part could not be decoded: "+err.Error())
		if len(body) == 0 {
			return p
		}
	}
	isAttachment := disp == "attachment" || filename != "" ||
		!(strings.HasPrefix(ct, "text/plain") || strings.HasPrefix(ct, "text/html") || strings.HasPrefix(ct, "message/"))
	switch {
	case !isAttachment && ct == "text/plain" && w.v.Text == "":
		w.v.Text = string(body)
	case !isAttachment && ct == "text/html" && w.v.HTML == "":
		w.v.HTML = string(body)
	case !isAttachment && strings.HasPrefix(ct, "message/") && ct != "message/rfc822":
		w.v.Text += "\n" + string(body)
	default:
		if filename == "" {
			filename = "attachment-" + strconv.Itoa(len(w.v.Attachments)+1)
		}
		w.v.Attachments = append(w.v.Attachments, Attachment{
			ID: strconv.Itoa(len(w.v.Attachments)), Filename: filename, ContentType: ct,
			Size: int64(len(body)), Data: body,
		})
	}
	return p
}

// multipart reads the parts of e. p (nil: not in the tree) is e's node:
// with a usable boundary it gets the parts and the preamble; without one
// the tree keeps e's body whole, as text, while the View still shows
// what go-message finds in it.
func (w *walker) multipart(e *gomessage.Entity, p *Part, show bool, depth int) {
	var rec *capture
	if p != nil {
		if !p.Multipart() {
			// The body as sent (go-message decodes no multipart), within
			// the raw message's size.
			body, err := io.ReadAll(e.Body)
			p.Body, p.BodyErr = body, err
			if !show {
				return
			}
			e.Body = bytes.NewReader(body)
			if err != nil {
				e.Body = io.MultiReader(e.Body, errReader{err})
			}
			p = nil // its parts are the View's only
		} else {
			rec = &capture{r: e.Body}
			e.Body = rec
		}
	}
	mr := e.MultipartReader()
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && part == nil {
			if show {
				w.v.Problems = append(w.v.Problems, "a part could not be read: "+err.Error())
			}
			if p != nil {
				p.Broken = true
			}
			break
		}
		if rec != nil && !rec.stopped {
			if i := bytes.Index(rec.buf, []byte("--"+p.Params["boundary"])); i > 0 {
				p.Preamble = rec.buf[:i]
			} else if i < 0 {
				p.PreambleCut = true // longer than captureLimit
			}
			rec.stop()
		}
		if err != nil && show {
			// Unknown transfer encoding or charset: go-message still
			// hands back the part, undecoded. Show it and go on, so the
			// parts after it are not lost.
			w.v.Problems = append(w.v.Problems, "a part is shown undecoded: "+err.Error())
		}
		if c := w.walk(part, err, depth+1, p != nil); c != nil {
			p.Parts = append(p.Parts, c)
		}
	}
	if rec != nil && !rec.stopped {
		p.Preamble = rec.buf // no part found: all that was read
	}
}

// PreviewSummary builds the inbox summary of raw; used at intake.
func PreviewSummary(raw []byte) Summary {
	return Parse(raw).Summary(int64(len(raw)))
}
