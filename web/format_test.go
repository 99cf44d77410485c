package web

import (
	"strings"
	"testing"
)

func TestCount(t *testing.T) {
	cases := []struct {
		n      int
		noun   string
		plural []string
		want   string
	}{
		{0, "message", nil, "0 messages"},
		{1, "message", nil, "1 message"},
		{2, "message", nil, "2 messages"},
		{1, "entry", []string{"entries"}, "1 entry"},
		{7, "entry", []string{"entries"}, "7 entries"},
	}
	for _, c := range cases {
		if got := Count(c.n, c.noun, c.plural...); got != c.want {
			t.Errorf("Count(%d, %q) = %q, want %q", c.n, c.noun, got, c.want)
		}
	}
}

// The inbox's locked-message notice and the attachment count read as
// English for one and for several, never "message(s)".
func TestTemplatesSayOneOrMany(t *testing.T) {
	type item struct {
		ID, From, Subject           string
		Read, Recalled, Locked      bool
		Attachments                 int
		Date, ReceivedAt, ExpiresAt fakeTime
	}
	render := func(locked, attachments int) string {
		var b strings.Builder
		d := map[string]any{"Org": "Clinic", "Contact": "help@clinic.example", "Locked": locked,
			"Messages": []item{{ID: "m1", From: "dr@clinic.example", Subject: "s", Attachments: attachments}}}
		if err := Templates().ExecuteTemplate(&b, "inbox.html", d); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	one, two := render(1, 1), render(2, 3)
	for _, w := range []string{"1 message arrived", "and is locked", "access to it:", "· 1 attachment ·"} {
		if !strings.Contains(one, w) {
			t.Errorf("one locked message: page lacks %q", w)
		}
	}
	for _, w := range []string{"2 messages arrived", "and are locked", "access to them:", "· 3 attachments ·"} {
		if !strings.Contains(two, w) {
			t.Errorf("two locked messages: page lacks %q", w)
		}
	}
	for _, page := range []string{one, two} {
		if strings.Contains(page, "(s)") {
			t.Errorf("page still says (s): %s", page)
		}
	}
}

// fakeTime stands in for time.Time in the inbox row (Format only).
type fakeTime struct{}

func (fakeTime) Format(string) string { return "2026-12-06T10:00:00Z" }

// A time-ordered id's reference comes from its random part (ids made in
// the same minute share their first 8 digits); an older random id keeps
// its reference.
func TestRef(t *testing.T) {
	cases := map[string]string{
		"019af3c2b1d43f2a91bc0d1e2f30415263748596a7b8": "3F2A-91BC", // store.NewID: 12 digits of time, then random
		"3f2a91bc0d1e2f30415263748596a7b8":             "3F2A-91BC", // before store.NewID
		"abc":                                          "ABC",
	}
	for id, want := range cases {
		if got := Ref(id); got != want {
			t.Errorf("Ref(%q) = %q, want %q", id, got, want)
		}
	}
}
