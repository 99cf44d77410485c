package message

import (
	"strings"

	"golang.org/x/net/html"
)

// BlockedImages counts the images of s that SanitizeHTML leaves out: every
// <img> not inline as a data: URL, chiefly those that would load from
// elsewhere (a tracker would learn the message was read). The portal says
// so above the message (issue 13.7), so a missing picture is no mystery.
// It reads s as a browser would (an <img> inside a script is text).
func BlockedImages(s string) int {
	n := 0
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return n
		case html.StartTagToken, html.SelfClosingTagToken:
			if t := z.Token(); t.Data == "img" && !inlineSrc(t) {
				n++
			}
		}
	}
}
