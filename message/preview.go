package message

import (
	"html"
	"regexp"
	"strings"
	"unicode"

	"github.com/microcosm-cc/bluemonday"
)

// strictText keeps no markup at all: what is left is text.
var strictText = bluemonday.StrictPolicy()

// blockTag finds the tags that end a line or a cell, so that the words on
// either side stay apart once the tags are gone.
var blockTag = regexp.MustCompile(`(?i)<(/?(?:p|div|br|li|tr|td|th|h[1-6]|ul|ol|table|blockquote|section|article|header|footer|hr)\b)`)

// Preview is the start of a message's text for a reviewer (issue 13.2):
// the text part, or the HTML part with every tag removed, whitespace and
// control characters folded to single spaces, cut at max characters with
// "…". It is plain text: the page escapes it like any other text, and no
// link, image or style of the message survives.
func (v *View) Preview(max int) string {
	src := v.Text
	if strings.TrimSpace(src) == "" && v.HTML != "" {
		src = html.UnescapeString(strictText.Sanitize(blockTag.ReplaceAllString(v.HTML, " <$1")))
	}
	var b strings.Builder
	n, space := 0, false
	for _, r := range src {
		if unicode.IsSpace(r) || unicode.IsControl(r) || r == '\uFFFD' || unicode.In(r, unicode.Cf) {
			space = b.Len() > 0
			continue
		}
		if n >= max {
			b.WriteString("…")
			break
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// CopySummary is what a sender's or a reviewer's copy holds (sealed):
// the subject, and for reviewers a preview of the text.
type CopySummary struct {
	Subject string `json:"subject"`
	Preview string `json:"preview,omitempty"`
}
