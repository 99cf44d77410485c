package message

import (
	"regexp"
	"strings"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"
)

// FuzzSanitizeHTML: whatever HTML a sender writes, the sanitised output,
// parsed as a browser parses a body fragment, has no script execution path
// (script-hosting or plugin elements, event handlers, styles, javascript:,
// vbscript: or data: URLs outside inline images) and loads nothing remote
// (every image is inline). Seeds: testdata/fuzz/FuzzSanitizeHTML and below.
func FuzzSanitizeHTML(f *testing.F) {
	for _, s := range []string{
		`<p>hi</p><script>alert(1)</script>`,
		`<scr<script>ipt>alert(2)</script>`,
		`<a href="jav&#x09;ascript:alert(1)">c</a>`,
		`<img src="` + pngData + `" onerror="x()">`,
		`<svg><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>`,
		`<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>`,
		`<div style="width:expression(alert(1))">x</div>`,
		`<a href="https://clinic.example/a" target=_self>ok</a>`,
		`<noscript><p title="</noscript><img src=x onerror=alert(1)>">`,
		`<iframe srcdoc="<script>x</script>"></iframe><object data="x.swf"></object><embed src="x.swf">`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := SanitizeHTML(in)
		if strings.Contains(strings.ToLower(out), "<script") {
			t.Fatalf("output contains <script\nin:  %q\nout: %q", in, out)
		}
		body := &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body}
		nodes, err := html.ParseFragment(strings.NewReader(out), body)
		if err != nil {
			t.Fatalf("output does not parse: %v\nout: %q", err, out)
		}
		for _, n := range nodes {
			if why := unsafeNode(n); why != "" {
				t.Fatalf("%s\nin:  %q\nout: %q", why, in, out)
			}
		}
	})
}

// activeElements run script, embed plugins or documents, load remote
// resources or change how the page's URLs and styles are read.
var activeElements = map[string]bool{
	"script": true, "iframe": true, "frame": true, "frameset": true, "object": true, "embed": true,
	"applet": true, "style": true, "link": true, "meta": true, "base": true, "svg": true, "math": true,
	"template": true, "form": true, "portal": true,
}

// urlAttrs are the attributes a browser resolves as URLs.
var urlAttrs = map[string]bool{
	"href": true, "src": true, "action": true, "formaction": true, "background": true, "poster": true,
	"cite": true, "longdesc": true, "lowsrc": true, "dynsrc": true, "data": true, "codebase": true,
	"srcset": true, "xlink:href": true, "ping": true, "manifest": true,
}

// unsafeNode returns why the tree under n could run script or load
// something remote, or "".
func unsafeNode(n *html.Node) string {
	if n.Type == html.ElementNode {
		if activeElements[n.Data] || n.Namespace != "" {
			return "active element <" + n.Namespace + " " + n.Data + ">"
		}
		for _, a := range n.Attr {
			if why := unsafeAttr(n.Data, a); why != "" {
				return why
			}
		}
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if why := unsafeNode(c); why != "" {
			return why
		}
	}
	return ""
}

func unsafeAttr(elem string, a html.Attribute) string {
	key := strings.ToLower(a.Key)
	if a.Namespace != "" {
		key = strings.ToLower(a.Namespace) + ":" + key
	}
	switch {
	case strings.HasPrefix(key, "on"):
		return "event handler " + key + " on <" + elem + ">"
	case key == "style" || key == "srcdoc":
		return key + " attribute on <" + elem + ">"
	case !urlAttrs[key]:
		return ""
	}
	u := browserURL(a.Val)
	if elem == "img" && key == "src" {
		if !strings.HasPrefix(u, "data:image/") {
			return "remote or non-image img src " + a.Val
		}
		return ""
	}
	if elem == "a" && key == "href" {
		switch scheme(u) {
		case "", "https", "http", "mailto": // "": relative, "#x:y" included
			return ""
		}
	}
	return key + "=" + a.Val + " on <" + elem + ">"
}

// urlScheme is a URL's scheme as the WHATWG URL parser finds it: letters,
// digits, "+", "-" and "." before the first ":", starting with a letter.
var urlScheme = regexp.MustCompile(`^([a-z][a-z0-9+.\-]*):`)

// scheme returns u's scheme, or "" for a relative URL.
func scheme(u string) string {
	if m := urlScheme.FindStringSubmatch(u); m != nil {
		return m[1]
	}
	return ""
}

// browserURL is the value as a browser reads its scheme: ASCII tab and
// newlines removed anywhere, leading and trailing spaces and controls
// trimmed, lower case (the WHATWG URL parser's leniency that
// "jav&#x09;ascript:" exploits).
func browserURL(v string) string {
	v = strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return -1
		}
		return r
	}, v)
	return strings.ToLower(strings.TrimFunc(v, func(r rune) bool { return r <= ' ' }))
}
