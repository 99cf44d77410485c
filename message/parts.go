package message

import (
	"bytes"
	"io"
	"strings"
	"sync"

	gomessage "github.com/emersion/go-message"
)

// MaxBodyBytes is the most of one part's decoded body that is read.
const MaxBodyBytes = 64 << 20

// Part is one MIME entity of a message as Parse read it: the tree behind
// the View, for code that must look at everything that was sent and not
// only at what a reader is shown (the content detectors, package detect).
// It is read within the View's bounds (MaxDepth, MaxParts), so walking it
// costs no more parsing.
type Part struct {
	// Cut marks an entity past MaxDepth or MaxParts: nothing of it was
	// read. The tree stops after the first one past MaxParts.
	Cut bool
	// NoHeader: the message's header block could not be read (Err says
	// why); Body is then the raw message. Only ever set on a root.
	NoHeader bool
	// Err is what reading the entity's header reported: an unknown
	// transfer encoding (Body is then as sent) or charset (Body is then
	// in it, undecoded); see IsUnknownCharset.
	Err error

	// Subject is the entity's Subject field, decoded ("" without one).
	Subject string
	// ContentType is the media type in lower case with its Params:
	// "text/plain" without the field, "" and nil when the field does not
	// parse (RFC 2045 5.2 then has the body read as text/plain).
	ContentType string
	Params      map[string]string
	// Filename is the decoded Content-Disposition filename, else the
	// Content-Type name.
	Filename string

	// Body is a leaf's content with its transfer encoding and (text/*)
	// charset decoded, at most MaxBodyBytes; Truncated says it was longer.
	// A multipart without a usable boundary (not Multipart) is a leaf
	// too, its Body as sent. BodyErr is the error that ended the body
	// early (bad base64 and the like), Body holding what came before.
	Body      []byte
	Truncated bool
	BodyErr   error

	// Parts are a multipart's parts, in order. Preamble is the text before
	// the first one, which clients hide but which is sent; when no part
	// could be found, all of the body that was read (at most 1 MiB).
	// PreambleCut: the preamble was longer than that and is not kept.
	// Broken: a part could not be read (a broken boundary), and neither
	// could the rest.
	Parts       []*Part
	Preamble    []byte
	PreambleCut bool
	Broken      bool
}

// Multipart reports whether p is split into Parts: a multipart media type
// with a boundary.
func (p *Part) Multipart() bool {
	return strings.HasPrefix(p.ContentType, "multipart/") && p.Params["boundary"] != ""
}

// IsUnknownCharset reports whether a Part's Err is only an unknown
// charset: the body was still read, in its own charset.
func IsUnknownCharset(err error) bool { return gomessage.IsUnknownCharset(err) }

// captureLimit bounds how much of a multipart body is kept for its
// preamble, or for the whole body when no part can be found in it.
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

// errReader returns err once what came before it is read.
type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// bodyBufs are scratch buffers to read bodies into: each body is then
// copied out once, at its size, instead of in growing pieces.
var bodyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuf is the largest scratch buffer put back for reuse.
const maxPooledBuf = 1 << 20

// readBody reads r, at most limit bytes (truncated: there was more). An
// error after limit bytes is not seen.
func readBody(r io.Reader, limit int64) (body []byte, truncated bool, err error) {
	buf := bodyBufs.Get().(*bytes.Buffer)
	buf.Reset()
	_, err = buf.ReadFrom(io.LimitReader(r, limit+1))
	b := buf.Bytes()
	if int64(len(b)) > limit {
		b, truncated, err = b[:limit], true, nil
	}
	body = append(make([]byte, 0, len(b)), b...)
	if buf.Cap() <= maxPooledBuf {
		bodyBufs.Put(buf)
	}
	return body, truncated, err
}
