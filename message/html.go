package message

import (
	"bytes"
	"strings"

	"github.com/microcosm-cc/bluemonday"
	"golang.org/x/net/html"
)

var htmlPolicy = func() *bluemonday.Policy {
	p := bluemonday.UGCPolicy()
	p.AllowURLSchemes("https", "mailto")
	p.AllowDataURIImages()
	p.RequireNoReferrerOnLinks(true)
	p.AddTargetBlankToFullyQualifiedLinks(true)
	return p
}()

// SanitizeHTML returns html that is safe to render in a sandboxed frame: no
// scripts, event handlers or styles (bluemonday's UGC allowlist), and no
// remote images. Remote content is stripped, not merely blocked, so opening
// a message never tells a tracker it was read; the frame's CSP is a second
// line of defence, not the only one.
func SanitizeHTML(s string) string {
	return stripRemoteImages(htmlPolicy.Sanitize(s))
}

// stripRemoteImages drops every <img> whose src is not an inline data: URL.
// It works on tokens of bluemonday's already well-formed output.
func stripRemoteImages(s string) string {
	var out bytes.Buffer
	z := html.NewTokenizer(strings.NewReader(s))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return out.String()
		}
		// Raw is only valid until Token is called: copy it first.
		raw := append([]byte(nil), z.Raw()...)
		if tt == html.StartTagToken || tt == html.SelfClosingTagToken {
			t := z.Token()
			if t.Data == "img" && !inlineSrc(t) {
				continue
			}
		}
		out.Write(raw)
	}
}

func inlineSrc(t html.Token) bool {
	for _, a := range t.Attr {
		if a.Key == "src" {
			return strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "data:image/")
		}
	}
	return false
}
