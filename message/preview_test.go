package message

import (
	"strings"
	"testing"
)

// A reviewer's preview is plain text: no markup, script, style, link or
// control character of the message survives, and it is cut to its length.
func TestPreviewIsPlainText(t *testing.T) {
	html := `<style>p{color:red}</style><script>alert("x")</script><p>Dear   <b>patient</b>,</p>` +
		`<p>see <a href="https://evil.example/x">this</a> <img src="https://tracker.example/p.gif"> &amp; call us.` + "\u202e\u0007</p>"
	got := (&View{HTML: html}).Preview(200)
	if got != "Dear patient, see this & call us." {
		t.Errorf("HTML preview = %q", got)
	}
	for _, bad := range []string{"<", "alert", "color", "evil.example", "tracker", "\u202e", "\u0007"} {
		if strings.Contains(got, bad) {
			t.Errorf("preview keeps %q", bad)
		}
	}
	// The text part wins; whitespace folds; the cut is marked.
	v := &View{Text: "Line one\r\n\r\n\tline two  " + strings.Repeat("x", 50), HTML: "<p>ignored</p>"}
	if got := v.Preview(20); got != "Line one line two xx…" {
		t.Errorf("text preview = %q", got)
	}
	if got := (&View{}).Preview(10); got != "" {
		t.Errorf("empty preview = %q", got)
	}
}
