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
func Parse(raw []byte) *View {
	v := &View{}
	e, err := gomessage.Read(bytes.NewReader(raw))
	if e == nil {
		v.Problems = append(v.Problems, "headers could not be read: "+errText(err))
		v.Text = string(raw)
		return v
	}
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
	w := walker{v: v}
	w.walk(e, 0, "")
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

type walker struct {
	v     *View
	parts int
}

func (w *walker) walk(e *gomessage.Entity, depth int, path string) {
	w.parts++
	if w.parts > MaxParts {
		if w.parts == MaxParts+1 {
			w.v.Problems = append(w.v.Problems, fmt.Sprintf("more than %d parts; the rest are not shown", MaxParts))
		}
		return
	}
	if depth > MaxDepth {
		w.v.Problems = append(w.v.Problems, "parts nested too deep are not shown")
		return
	}
	if mr := e.MultipartReader(); mr != nil {
		for i := 0; ; i++ {
			p, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil && p == nil {
				w.v.Problems = append(w.v.Problems, "a part could not be read: "+err.Error())
				return
			}
			if err != nil {
				// Unknown transfer encoding or charset: go-message still
				// hands back the part, undecoded. Show it and go on, so the
				// parts after it are not lost.
				w.v.Problems = append(w.v.Problems, "a part is shown undecoded: "+err.Error())
			}
			w.walk(p, depth+1, path+strconv.Itoa(i)+".")
		}
	}
	ct, params, _ := e.Header.ContentType()
	if ct == "" {
		ct = "text/plain"
	}
	disp, dparams, _ := e.Header.ContentDisposition()
	filename := decodeHeader(dparams["filename"])
	if filename == "" {
		filename = decodeHeader(params["name"])
	}
	body, err := io.ReadAll(io.LimitReader(e.Body, 64<<20))
	if err != nil {
		w.v.Problems = append(w.v.Problems, "a part could not be decoded: "+err.Error())
		if len(body) == 0 {
			return
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
}

// PreviewSummary builds the inbox summary of raw; used at intake.
func PreviewSummary(raw []byte) Summary {
	return Parse(raw).Summary(int64(len(raw)))
}
