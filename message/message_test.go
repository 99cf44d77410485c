package message

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"
)

// crlf turns a readable "\n" message into wire form.
func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// nested returns a message whose text part sits depth multiparts deep.
func nested(depth int) []byte {
	body := "Content-Type: text/plain\r\n\r\ninnermost text\r\n"
	for i := depth; i > 0; i-- {
		b := fmt.Sprintf("bnd-%04d", i)
		body = fmt.Sprintf("Content-Type: multipart/mixed; boundary=%q\r\n\r\n--%s\r\n%s\r\n--%s--\r\n", b, b, body, b)
	}
	return []byte("From: a@clinic.example\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + body)
}

// manyParts returns a multipart/mixed message with n attachments.
func manyParts(n int) []byte {
	var b strings.Builder
	b.WriteString("From: a@clinic.example\r\nSubject: many\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=MANY\r\n\r\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "--MANY\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"f%d.bin\"\r\n\r\npart %d\r\n", i, i)
	}
	b.WriteString("--MANY--\r\n")
	return []byte(b.String())
}

// malformed is the set of hostile or broken inputs Parse must survive; the
// fuzz test is seeded with it too.
var malformed = []struct {
	name string
	raw  []byte
}{
	{"missing final boundary", crlf("From: a@clinic.example\nSubject: s\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\nhello there\n--XX\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\n\nPDFDATA\n")},
	{"unknown transfer encoding", crlf("From: a@clinic.example\nContent-Transfer-Encoding: x-weird\n\nbody text\n")},
	{"unknown transfer encoding in a part", crlf("From: a@clinic.example\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\nContent-Transfer-Encoding: x-weird\n\nhello there\n--XX\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\n\nPDFDATA\n--XX--\n")},
	{"broken base64", crlf("From: a@clinic.example\nContent-Transfer-Encoding: base64\n\n!!!not*base64@@@\n")},
	{"base64 broken half way", crlf("From: a@clinic.example\nContent-Transfer-Encoding: base64\n\naGVsbG8gd29ybGQ=\n!!!\n")},
	{"bad charset label", crlf("From: a@clinic.example\nContent-Type: text/plain; charset=x-no-such-charset\n\nbody text\n")},
	{"bad charset label in a part", crlf("From: a@clinic.example\nContent-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain; charset=x-nope\n\nhello there\n--XX\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=a.pdf\n\nPDFDATA\n--XX--\n")},
	{"headers without body", crlf("From: a@clinic.example\nSubject: only headers")},
	{"headers and blank line, no body", crlf("From: a@clinic.example\nSubject: only headers\n\n")},
	{"body without headers", crlf("just a body line\nand another\n")},
	{"binary garbage", []byte{0, 1, 2, 0xff, 0xfe, '\n', ':', 0, '\r', '\n', 0x80, 0xc3, 0x28}},
	{"multipart without boundary", crlf("From: a@clinic.example\nContent-Type: multipart/mixed\n\n--\nxx\n")},
	{"bad content type", crlf("From: a@clinic.example\nContent-Type: ;;;===\n\nhello\n")},
	{"bad address header", crlf("From: <<<@@@>>> =?utf-8?q?broken\nTo: ,,,\nDate: yesterday\n\nhello\n")},
	{"deep nesting", nested(200)},
	{"many parts", manyParts(2000)},
}

func TestParseMalformed(t *testing.T) {
	for _, c := range malformed {
		t.Run(c.name, func(t *testing.T) {
			var v *View
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("Parse panicked: %v", r)
					}
				}()
				v = Parse(c.raw)
			}()
			if v == nil {
				t.Fatal("Parse returned nil")
			}
			shown := v.Text != "" || v.HTML != "" || len(v.Attachments) > 0
			if !shown && len(v.Problems) == 0 && v.From == "" && v.Subject == "" {
				t.Fatalf("nothing shown and no problem reported: %+v", v)
			}
			_ = v.Summary(int64(len(c.raw)))
		})
	}
}

// A part that cannot be decoded must not hide the parts after it.
func TestParseBrokenPartKeepsTheRest(t *testing.T) {
	for _, name := range []string{"unknown transfer encoding in a part", "bad charset label in a part", "missing final boundary"} {
		t.Run(name, func(t *testing.T) {
			var raw []byte
			for _, c := range malformed {
				if c.name == name {
					raw = c.raw
				}
			}
			v := Parse(raw)
			if len(v.Problems) == 0 {
				t.Error("no problem reported")
			}
			if !strings.Contains(v.Text, "hello there") {
				t.Errorf("text %q: the readable part was lost", v.Text)
			}
			if len(v.Attachments) != 1 || v.Attachments[0].Filename != "a.pdf" || string(v.Attachments[0].Data) != "PDFDATA" {
				t.Errorf("attachments %+v: the part after the broken one was lost", v.Attachments)
			}
		})
	}
}

func TestParseUnreadableShowsRaw(t *testing.T) {
	for _, raw := range [][]byte{crlf("just a body line\nand another\n"), {0, 1, 2, 0xff, '\n', 0}} {
		v := Parse(raw)
		if v.Text != string(raw) {
			t.Errorf("text %q, want the raw bytes %q", v.Text, raw)
		}
		if len(v.Problems) == 0 || !strings.Contains(v.Problems[0], "headers could not be read") {
			t.Errorf("problems %q", v.Problems)
		}
	}
	// Unknown encoding and charset: the undecoded body is shown, with a note.
	for _, raw := range [][]byte{
		crlf("From: a@clinic.example\nContent-Transfer-Encoding: x-weird\n\nbody text\n"),
		crlf("From: a@clinic.example\nContent-Type: text/plain; charset=x-nope\n\nbody text\n"),
	} {
		v := Parse(raw)
		if v.Text != "body text\r\n" || len(v.Problems) == 0 {
			t.Errorf("%q: text %q problems %q", raw, v.Text, v.Problems)
		}
	}
	v := Parse(crlf("From: a@clinic.example\nSubject: only headers"))
	if v.From != "a@clinic.example" || v.Subject != "only headers" || v.Text != "" {
		t.Errorf("headers only: %+v", v)
	}
}

func TestParseMaxDepth(t *testing.T) {
	v := Parse(nested(MaxDepth))
	if v.Text != "innermost text\r\n" || len(v.Problems) != 0 {
		t.Errorf("depth %d (allowed): text %q problems %q", MaxDepth, v.Text, v.Problems)
	}
	for _, d := range []int{MaxDepth + 1, 200} {
		v := Parse(nested(d))
		if strings.Contains(v.Text, "innermost") {
			t.Errorf("depth %d: part beyond MaxDepth shown", d)
		}
		if !hasProblem(v, "nested too deep") {
			t.Errorf("depth %d: problems %q", d, v.Problems)
		}
	}
}

func TestParseMaxParts(t *testing.T) {
	// The root entity counts as one part.
	v := Parse(manyParts(MaxParts - 1))
	if len(v.Attachments) != MaxParts-1 || len(v.Problems) != 0 {
		t.Fatalf("%d parts (allowed): %d attachments, problems %q", MaxParts-1, len(v.Attachments), v.Problems)
	}
	v = Parse(manyParts(2000))
	if len(v.Attachments) != MaxParts-1 {
		t.Errorf("2000 parts: %d attachments shown, want %d", len(v.Attachments), MaxParts-1)
	}
	if !hasProblem(v, fmt.Sprintf("more than %d parts", MaxParts)) {
		t.Errorf("problems %q", v.Problems)
	}
	n := 0
	for _, p := range v.Problems {
		if strings.Contains(p, "more than") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("part-limit problem reported %d times", n)
	}
	for i, a := range v.Attachments {
		if a.ID != fmt.Sprint(i) || a.Filename != fmt.Sprintf("f%d.bin", i) {
			t.Fatalf("attachment %d: %+v", i, a)
		}
	}
}

func hasProblem(v *View, sub string) bool {
	for _, p := range v.Problems {
		if strings.Contains(p, sub) {
			return true
		}
	}
	return false
}

func TestParseCharsets(t *testing.T) {
	sjis := []byte{0x82, 0xb1, 0x82, 0xf1, 0x82, 0xc9, 0x82, 0xbf, 0x82, 0xcd} // こんにちは
	cases := []struct {
		name, charset, cte string
		body               []byte
		want               string
	}{
		{"iso-8859-1 8bit", "ISO-8859-1", "8bit", []byte("Caf\xe9 cr\xe8me br\xfbl\xe9e"), "Café crème brûlée"},
		{"iso-8859-1 quoted-printable", "iso-8859-1", "quoted-printable", []byte("Caf=E9 na=EFve"), "Café naïve"},
		{"latin1 alias", "latin1", "8bit", []byte("\xc5ngstr\xf6m"), "Ångström"},
		{"windows-1252", "windows-1252", "8bit", []byte("\x93quoted\x94 \x80 5 \x96 \x85"), "“quoted” € 5 – …"},
		{"cp1252 base64", "Windows-1252", "base64", []byte(base64.StdEncoding.EncodeToString([]byte("\x80100 \x99"))), "€100 ™"},
		{"shift_jis", "Shift_JIS", "8bit", sjis, "こんにちは"},
		{"shift_jis base64", "shift_jis", "base64", []byte(base64.StdEncoding.EncodeToString(sjis)), "こんにちは"},
		{"utf-8", "utf-8", "8bit", []byte("Grüße"), "Grüße"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := []byte("From: a@clinic.example\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=" + c.charset +
				"\r\nContent-Transfer-Encoding: " + c.cte + "\r\n\r\n")
			raw = append(raw, c.body...)
			v := Parse(raw)
			if strings.TrimSpace(v.Text) != c.want || len(v.Problems) != 0 {
				t.Errorf("text %q (problems %q), want %q", v.Text, v.Problems, c.want)
			}
			// The same inside a multipart.
			mp := []byte("From: a@clinic.example\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n--B\r\nContent-Type: text/plain; charset=" +
				c.charset + "\r\nContent-Transfer-Encoding: " + c.cte + "\r\n\r\n")
			mp = append(mp, c.body...)
			mp = append(mp, "\r\n--B--\r\n"...)
			v = Parse(mp)
			if strings.TrimSpace(v.Text) != c.want || len(v.Problems) != 0 {
				t.Errorf("in multipart: text %q (problems %q), want %q", v.Text, v.Problems, c.want)
			}
		})
	}
}

func TestParseEncodedHeaders(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	sjis := base64.StdEncoding.EncodeToString([]byte{0x82, 0xb1, 0x82, 0xf1, 0x82, 0xc9, 0x82, 0xbf, 0x82, 0xcd})
	cases := []struct {
		name, from, subject, wantFrom, wantSubject string
	}{
		{"utf-8 B", "=?UTF-8?B?" + b64("Dr. Zoë Ångström") + "?= <zoe@clinic.example>", "=?UTF-8?B?" + b64("Résultats d’analyse ✓") + "?=",
			"Dr. Zoë Ångström <zoe@clinic.example>", "Résultats d’analyse ✓"},
		{"utf-8 Q", "=?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <jm@clinic.example>", "=?utf-8?q?Ihre_Befunde_f=C3=BCr_M=C3=A4rz?=",
			"Jürgen Müller <jm@clinic.example>", "Ihre Befunde für März"},
		{"iso-8859-1 Q", "=?ISO-8859-1?Q?Andr=E9?= <andre@clinic.example>", "=?ISO-8859-1?Q?Caf=E9_cr=E8me?=",
			"André <andre@clinic.example>", "Café crème"},
		{"shift_jis B", "=?Shift_JIS?B?" + sjis + "?= <jp@clinic.example>", "=?Shift_JIS?B?" + sjis + "?=",
			"こんにちは <jp@clinic.example>", "こんにちは"},
		{"mixed words", "plain@clinic.example", "Re: =?UTF-8?Q?caf=C3=A9?= =?UTF-8?Q?_ol=C3=A9?= end",
			"plain@clinic.example", "Re: café olé end"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Parse([]byte("From: " + c.from + "\r\nSubject: " + c.subject + "\r\nTo: a@example.net, \"B\" <b@example.net>\r\nDate: Mon, 2 Mar 2026 10:04:05 +0100\r\nMessage-ID: <abc@x.example>\r\n\r\nbody\r\n"))
			if v.From != c.wantFrom {
				t.Errorf("From %q, want %q", v.From, c.wantFrom)
			}
			if v.Subject != c.wantSubject {
				t.Errorf("Subject %q, want %q", v.Subject, c.wantSubject)
			}
			if v.To != "a@example.net, B <b@example.net>" {
				t.Errorf("To %q", v.To)
			}
			if v.MessageID != "abc@x.example" {
				t.Errorf("MessageID %q", v.MessageID)
			}
			if want := time.Date(2026, 3, 2, 9, 4, 5, 0, time.UTC); !v.Date.Equal(want) {
				t.Errorf("Date %v, want %v", v.Date, want)
			}
		})
	}
}

func TestParseAttachmentNames(t *testing.T) {
	raw := crlf(`From: a@clinic.example
Content-Type: multipart/mixed; boundary=XX

--XX
Content-Type: text/plain

the text
--XX
Content-Type: application/pdf
Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sultats%20%E2%9C%93.pdf

PDF
--XX
Content-Type: application/pdf
Content-Disposition: attachment; filename*0*=UTF-8''Bef%C3%BCnde-; filename*1=teil2.pdf

PDF2
--XX
Content-Type: image/png; name="=?UTF-8?Q?R=C3=B6ntgen.png?="
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--XX
Content-Type: application/octet-stream

nameless
--XX--
`)
	want := []struct{ name, ct, data string }{
		{"résultats ✓.pdf", "application/pdf", "PDF"},
		{"Befünde-teil2.pdf", "application/pdf", "PDF2"},
		{"Röntgen.png", "image/png", "\x89PNG\r\n\x1a\n"},
		{"attachment-4", "application/octet-stream", "nameless"},
	}
	for round := 0; round < 2; round++ { // ids are stable across parses
		v := Parse(raw)
		if v.Text != "the text" || len(v.Problems) != 0 {
			t.Fatalf("text %q problems %q", v.Text, v.Problems)
		}
		if len(v.Attachments) != len(want) {
			t.Fatalf("%d attachments: %+v", len(v.Attachments), v.Attachments)
		}
		for i, w := range want {
			a := v.Attachments[i]
			if a.ID != fmt.Sprint(i) || a.Filename != w.name || a.ContentType != w.ct || string(a.Data) != w.data || a.Size != int64(len(w.data)) {
				t.Errorf("attachment %d: id %q name %q ct %q data %q size %d; want %q %q %q", i, a.ID, a.Filename, a.ContentType, a.Data, a.Size, w.name, w.ct, w.data)
			}
		}
		if s := v.Summary(int64(len(raw))); s.Attachments != len(want) || s.Size != int64(len(raw)) || s.From != "a@clinic.example" {
			t.Errorf("summary %+v", s)
		}
	}
}

func TestParseAlternative(t *testing.T) {
	plain := "Content-Type: text/plain; charset=utf-8\n\nplain version\n"
	html := "Content-Type: text/html; charset=utf-8\n\n<p>html version</p>\n"
	alt := func(parts ...string) string {
		s := "Content-Type: multipart/alternative; boundary=ALT\n\n"
		for _, p := range parts {
			s += "--ALT\n" + p
		}
		return s + "--ALT--\n"
	}
	cases := []struct {
		name, msg, text, html string
		atts                  int
	}{
		{"plain then html", "From: a@clinic.example\n" + alt(plain, html), "plain version", "<p>html version</p>", 0},
		{"html then plain", "From: a@clinic.example\n" + alt(html, plain), "plain version", "<p>html version</p>", 0},
		{"html only", "From: a@clinic.example\n" + html, "", "<p>html version</p>\r\n", 0},
		{"plain only", "From: a@clinic.example\n" + plain, "plain version\r\n", "", 0},
		{"no content type is plain", "From: a@clinic.example\n\nbare body\n", "bare body\r\n", "", 0},
		{"alternative inside mixed with attachment", "From: a@clinic.example\nContent-Type: multipart/mixed; boundary=MIX\n\n--MIX\n" +
			alt(plain, html) + "--MIX\nContent-Type: application/pdf\nContent-Disposition: attachment; filename=r.pdf\n\nPDF\n--MIX--\n",
			"plain version", "<p>html version</p>", 1},
		{"html attachment is not the body", "From: a@clinic.example\nContent-Type: multipart/mixed; boundary=MIX\n\n--MIX\n" + plain +
			"--MIX\nContent-Type: text/html\nContent-Disposition: attachment; filename=page.html\n\n<script>x</script>\n--MIX--\n",
			"plain version", "", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := Parse(crlf(c.msg))
			if v.Text != c.text || v.HTML != c.html || len(v.Attachments) != c.atts || len(v.Problems) != 0 {
				t.Errorf("text %q html %q attachments %d problems %q; want %q %q %d", v.Text, v.HTML, len(v.Attachments), v.Problems, c.text, c.html, c.atts)
			}
		})
	}
}

func TestPreviewSummary(t *testing.T) {
	raw := crlf("From: =?UTF-8?Q?Dr_L=C3=A9e?= <lee@clinic.example>\nSubject: Results\nDate: Tue, 3 Mar 2026 08:00:00 +0000\n\nbody\n")
	s := PreviewSummary(raw)
	if s.From != "Dr Lée <lee@clinic.example>" || s.Subject != "Results" || s.Size != int64(len(raw)) || s.Attachments != 0 ||
		!s.Date.Equal(time.Date(2026, 3, 3, 8, 0, 0, 0, time.UTC)) {
		t.Errorf("summary %+v", s)
	}
}

func FuzzParse(f *testing.F) {
	for _, c := range malformed {
		if len(c.raw) < 64<<10 {
			f.Add(c.raw)
		}
	}
	f.Add(nested(MaxDepth + 2))
	f.Add(manyParts(5))
	f.Add(crlf("From: =?UTF-8?Q?J=C3=BCrgen?= <j@x.example>\nSubject: =?ISO-8859-1?Q?Caf=E9?=\nContent-Type: multipart/alternative; boundary=A\n\n--A\nContent-Type: text/plain; charset=windows-1252\n\n\x93hi\x94\n--A\nContent-Type: text/html\n\n<p>hi</p>\n--A--\n"))
	f.Add(crlf("From: a@x.example\nContent-Type: multipart/mixed; boundary=X\n\n--X\nContent-Type: application/pdf\nContent-Disposition: attachment; filename*=UTF-8''r%C3%A9.pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0=\n--X--\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		v := Parse(raw)
		if v == nil {
			t.Fatal("nil view")
		}
		s := v.Summary(int64(len(raw)))
		if s.Attachments != len(v.Attachments) || s.Size != int64(len(raw)) {
			t.Fatalf("summary %+v", s)
		}
		if len(v.Attachments) >= MaxParts {
			t.Fatalf("%d attachments, limit %d", len(v.Attachments), MaxParts)
		}
		for i, a := range v.Attachments {
			if a.ID != fmt.Sprint(i) || a.Filename == "" || a.Size != int64(len(a.Data)) {
				t.Fatalf("attachment %d: %+v", i, a)
			}
		}
		// A message whose headers cannot be read is shown whole as text.
		if v.From == "" && v.Text == "" && len(v.Problems) > 0 && strings.HasPrefix(v.Problems[0], "headers could not be read") && len(raw) > 0 {
			t.Fatalf("unreadable message not shown as raw text")
		}
		_ = bytes.Clone(raw)
	})
}
