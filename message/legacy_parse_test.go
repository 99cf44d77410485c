package message

// Parse as it was before it also kept the MIME tree for the detectors
// (issue 12): the reference TestParseSameAsLegacy compares the View with.
// Test code only.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/mail"
	"reflect"
	"strconv"
	"strings"
	"testing"

	gomessage "github.com/emersion/go-message"
)

// legacyParse reads raw into a View. It does not return an error: a broken
// message still shows something, with Problems saying what went wrong.
func legacyParse(raw []byte) *View {
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
	w := legacyWalker{v: v}
	w.walk(e, 0, "")
	return v
}

type legacyWalker struct {
	v     *View
	parts int
}

func (w *legacyWalker) walk(e *gomessage.Entity, depth int, path string) {
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

// parseCorpus is the messages of this package's tests, more broken and
// hostile ones, and random mutations of them.
func parseCorpus() [][]byte {
	var out [][]byte
	for _, c := range malformed {
		out = append(out, c.raw)
	}
	for _, d := range []int{MaxDepth - 1, MaxDepth, MaxDepth + 1, MaxDepth + 2} {
		out = append(out, nested(d))
	}
	for _, n := range []int{MaxParts - 2, MaxParts - 1, MaxParts, MaxParts + 1} {
		out = append(out, manyParts(n))
	}
	var opaque strings.Builder
	opaque.WriteString("Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\nContent-Type: multipart/mixed\r\n\r\n")
	for i := range MaxParts {
		fmt.Fprintf(&opaque, "--\r\nContent-Type: text/plain\r\n\r\npart %d\r\n", i)
	}
	opaque.WriteString("\r\n--o\r\nContent-Type: text/plain\r\n\r\nafter\r\n--o\r\nContent-Type: application/pdf\r\n\r\nPDF\r\n--o--\r\n")
	out = append(out, []byte(opaque.String()))
	for _, s := range []string{
		"From: =?UTF-8?Q?J=C3=BCrgen?= <j@x.example>\nSubject: =?ISO-8859-1?Q?Caf=E9?=\nContent-Type: multipart/alternative; boundary=A\n\n--A\nContent-Type: text/plain; charset=windows-1252\n\n\x93hi\x94\n--A\nContent-Type: text/html\n\n<p>hi</p>\n--A--\n",
		"From: a@x.example\nContent-Type: multipart/mixed; boundary=X\n\n--X\nContent-Type: application/pdf\nContent-Disposition: attachment; filename*=UTF-8''r%C3%A9.pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n--X--\n",
		"From: a@x.example\nSubject: fwd\nReferences: <a@b> <c@d>\nMessage-Id: <m@x>\nContent-Type: multipart/mixed; boundary=X\n\npreamble\n--X\nContent-Type: message/rfc822\n\nSubject: inner\n\nbody\n--X\nContent-Type: message/delivery-status\n\nStatus: 5.0.0\n--X\nContent-Type: text/plain; charset=x-nope\nContent-Transfer-Encoding: x-weird\n\nodd\n--X\nContent-Type: text/csv; name=a.csv\nContent-Transfer-Encoding: base64\n\nYSxiCg==\n!!\n--X\nContent-Type: image/png\n\n\x89PNG\n--X--\nepilogue\n",
		"Content-Type: multipart/mixed; boundary=\"\"\n\n--\nx\n--\ny\n----\n",
		"Content-Type: multipart/mixed; boundary=b; ;;\n\n--b\nContent-Type: text/plain\n\nx\n--b--\n",
		"Content-Type: multipart/mixed; boundary=b\n\nno part here\n",
		"Content-Type: multipart/alternative; boundary=a\n\n--a\nContent-Type: text/html\n\n<p>1</p>\n--a\nContent-Type: text/plain\n\n1\n--a\nContent-Type: text/plain\n\n2\n--a--\n",
	} {
		out = append(out, crlf(s))
	}
	r := rand.New(rand.NewPCG(3, 4))
	seeds := append([][]byte(nil), out...)
	for range 1500 {
		g := make([]byte, r.IntN(400))
		for i := range g {
			g[i] = "-\r\n:;=\"ab01 Content-Type: multipart/mixed; boundary=--X\x00\xff"[r.IntN(56)]
		}
		out = append(out, g)
	}
	tokens := []string{"\r\n--X\r\n", "\r\n--XX--\r\n", "\r\n\r\n", "Content-Type: message/rfc822\r\n", "Content-Transfer-Encoding: base64\r\n", "charset=x-nope", "\x00"}
	for range 2000 {
		m := append([]byte(nil), seeds[r.IntN(len(seeds))]...)
		if len(m) > 8<<10 || len(m) == 0 {
			continue
		}
		i := r.IntN(len(m))
		switch r.IntN(3) {
		case 0:
			m = append(m[:i], m[min(len(m), i+r.IntN(64)):]...)
		case 1:
			m = append(m[:i], append([]byte(tokens[r.IntN(len(tokens))]), m[i:]...)...)
		default:
			m[i] = byte(r.IntN(256))
		}
		out = append(out, m)
	}
	return out
}

// TestParseSameAsLegacy: Parse shows exactly what it showed before it
// kept the tree, and ReadParts reads the same tree as Parse.
func TestParseSameAsLegacy(t *testing.T) {
	for i, raw := range parseCorpus() {
		want := legacyParse(raw)
		got := Parse(raw)
		root := got.Root
		got.Root = nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("corpus[%d]: got %+v\nbefore     %+v\n%.300q", i, got, want, raw)
			continue
		}
		if root == nil {
			t.Fatalf("corpus[%d]: no tree", i)
		}
		if tree := ReadParts(raw, nil); !reflect.DeepEqual(tree, root) {
			t.Errorf("corpus[%d]: ReadParts differs from Parse's Root", i)
		}
	}
}

// FuzzParseSameAsLegacy is TestParseSameAsLegacy on fuzzed input.
func FuzzParseSameAsLegacy(f *testing.F) {
	for _, raw := range parseCorpus()[:30] {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		want := legacyParse(raw)
		got := Parse(raw)
		got.Root = nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v\nbefore %+v", got, want)
		}
	})
}
