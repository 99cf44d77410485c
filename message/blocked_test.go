package message

import "testing"

func TestBlockedImages(t *testing.T) {
	for _, c := range []struct {
		html string
		want int
	}{
		{`<p>no images</p>`, 0},
		{`<img src="https://tracker.example/p.gif"><img src="http://x.example/a.png" alt="a">`, 2},
		{`<img src="data:image/png;base64,iVBORw0KGgo=" alt="inline">`, 0},
		{`<img src="cid:logo@x"><img src="data:image/gif;base64,R0lGOD=">`, 1},
		{`<script>document.write('<img src=https://t.example/x>')</script>`, 0},
	} {
		if got := BlockedImages(c.html); got != c.want {
			t.Errorf("BlockedImages(%q) = %d, want %d", c.html, got, c.want)
		}
		// Whatever it counts is what the sanitiser removed.
		if kept := SanitizeHTML(c.html); BlockedImages(kept) != 0 {
			t.Errorf("SanitizeHTML(%q) kept a remote image: %q", c.html, kept)
		}
	}
}
