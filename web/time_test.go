package web

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Times read the same in pages and notices: the organisation's zone, with
// its name (issue 13.4).
func TestWhenShowsTheZone(t *testing.T) {
	at := time.Date(2026, 12, 6, 17, 5, 0, 0, time.UTC)
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		loc  *time.Location
		want string
	}{
		{nil, "6 Dec 2026, 17:05 UTC"},
		{time.UTC, "6 Dec 2026, 17:05 UTC"},
		{ny, "6 Dec 2026, 12:05 EST"},
	}
	for _, c := range cases {
		if got := When(at, c.loc); got != c.want {
			t.Errorf("When(%v) = %q, want %q", c.loc, got, c.want)
		}
	}
	if When(time.Time{}, ny) != "" {
		t.Error("a zero time should read as nothing")
	}
	// The page templates use the same words, in the zone they were parsed for.
	var b bytes.Buffer
	tm := TemplatesIn(ny)
	if _, err := tm.New("t").Parse(`{{date .}}|{{isotime .}}|{{ref "3f2a91bc00"}}`); err != nil {
		t.Fatal(err)
	}
	if err := tm.ExecuteTemplate(&b, "t", at); err != nil {
		t.Fatal(err)
	}
	if got := b.String(); got != "6 Dec 2026, 12:05 EST|2026-12-06T12:05:00-05:00|3F2A-91BC" {
		t.Errorf("templates: %q", got)
	}
	if !strings.Contains(When(at, ny), "EST") {
		t.Error("zone missing")
	}
}
