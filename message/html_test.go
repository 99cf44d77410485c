package message

import (
	"strings"
	"testing"

	"golang.org/x/net/html"
)

const pngData = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="

func TestSanitizeHTMLStrips(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		never []string // case-insensitive substrings that must be gone
		keep  []string // substrings that must survive
	}{
		{"script", `<p>hi</p><script>alert(1)</script>`, []string{"<script", "alert"}, []string{"<p>hi</p>"}},
		{"script uppercase and split", `<SCRIPT SRC=//t.example/x.js></SCRIPT><scr<script>ipt>alert(2)</script>`, []string{"<script", "t.example"}, nil},
		{"event handlers", `<p onclick="steal()" onmouseover=steal()>x</p><img src="` + pngData + `" onerror="steal()"><body onload=steal()>`, []string{"onclick", "onmouseover", "onerror", "onload", "steal"}, []string{"<p>x</p>", pngData}},
		{"javascript link", `<a href="javascript:alert(1)">a</a><a href="JaVaScRiPt:alert(1)">b</a><a href="jav&#x09;ascript:alert(1)">c</a><a href=" javascript:alert(1)">d</a>`, []string{"javascript", "alert", "href"}, []string{"a", "b", "c", "d"}},
		{"vbscript and data html links", `<a href="vbscript:msgbox(1)">v</a><a href="data:text/html;base64,PHNjcmlwdD4=">d</a>`, []string{"vbscript", "text/html", "href"}, nil},
		{"iframe", `<iframe src="https://t.example/f"></iframe><iframe srcdoc="<script>x</script>"></iframe>`, []string{"<iframe", "t.example", "srcdoc"}, nil},
		{"form", `<form action="https://t.example/post" method=post><input name=pw type=password><button formaction="https://t.example/b">go</button><textarea>t</textarea></form>`, []string{"<form", "<input", "<button", "<textarea", "t.example"}, nil},
		{"style element", `<style>body{background:url(https://t.example/s.gif)}</style><p>x</p>`, []string{"<style", "t.example", "url("}, []string{"<p>x</p>"}},
		{"style attribute with url", `<div style="background-image:url('https://t.example/bg.gif')">x</div><p style="color:red">y</p>`, []string{"style", "t.example", "url("}, []string{"<div>x</div>", "<p>y</p>"}},
		{"remote img http", `<img src="http://t.example/pixel.gif" width=1 height=1>`, []string{"<img", "t.example"}, nil},
		{"remote img https", `<p>a<img src="https://t.example/pixel.gif" alt="x">b</p>`, []string{"<img", "t.example"}, []string{"<p>ab</p>"}},
		{"protocol-relative img", `<img src="//t.example/pixel.gif">`, []string{"<img", "t.example"}, nil},
		{"relative and cid img", `<img src="/pixel.gif"><img src="pixel.gif"><img src="cid:part1@x">`, []string{"<img", "pixel", "cid:"}, nil},
		{"img without src", `<img alt="x">`, []string{"<img"}, nil},
		{"img srcset", `<img srcset="https://t.example/a.png 1x, https://t.example/b.png 2x" src="` + pngData + `">`, []string{"srcset", "t.example"}, []string{pngData}},
		{"img remote srcset only", `<img srcset="https://t.example/a.png 1x">`, []string{"<img", "t.example"}, nil},
		{"picture source", `<picture><source srcset="https://t.example/a.webp"><img src="` + pngData + `"></picture>`, []string{"<source", "<picture", "t.example"}, []string{pngData}},
		{"video poster", `<video poster="https://t.example/p.png" src="https://t.example/v.mp4" autoplay></video>`, []string{"<video", "poster", "t.example"}, nil},
		{"audio", `<audio src="https://t.example/a.mp3" autoplay></audio>`, []string{"<audio", "t.example"}, nil},
		{"link stylesheet", `<link rel=stylesheet href="https://t.example/s.css"><p>x</p>`, []string{"<link", "t.example"}, []string{"<p>x</p>"}},
		{"meta refresh", `<meta http-equiv="refresh" content="0;url=https://t.example/">x`, []string{"<meta", "refresh", "t.example"}, []string{"x"}},
		{"base href", `<base href="https://t.example/"><a href="x">l</a>`, []string{"<base", "t.example"}, nil},
		{"svg with script", `<svg xmlns="http://www.w3.org/2000/svg" onload="steal()"><script>alert(1)</script><image href="https://t.example/i.png"/><a xlink:href="javascript:alert(1)"><text>t</text></a></svg>`, []string{"<svg", "<script", "onload", "alert", "t.example", "javascript"}, nil},
		{"math with script", `<math><mtext><script>alert(1)</script></mtext></math>`, []string{"<math", "<script", "alert"}, nil},
		{"object and embed", `<object data="https://t.example/o.swf"></object><embed src="https://t.example/e.swf">`, []string{"<object", "<embed", "t.example"}, nil},
		{"table background attribute", `<table background="https://t.example/t.gif"><tr><td background="https://t.example/d.gif">x</td></tr></table>`, []string{"background", "t.example"}, []string{"<td>x</td>"}},
		{"body background", `<body background="https://t.example/b.gif">x</body>`, []string{"background", "t.example"}, []string{"x"}},
		{"input image", `<input type="image" src="https://t.example/i.gif">`, []string{"<input", "t.example"}, nil},
		{"link ping", `<a href="https://ok.example/" ping="https://t.example/ping">l</a>`, []string{"ping", "t.example"}, []string{"https://ok.example/"}},
		{"remote img with data url in fragment", `<img src="https://t.example/x.svg#` + pngData + `">`, []string{"<img", "t.example"}, nil},
		{"comment conditional", `<!--[if IE]><img src="https://t.example/ie.gif"><![endif]-->x`, []string{"t.example", "<img"}, []string{"x"}},
		{"noscript", `<noscript><img src="https://t.example/n.gif"></noscript>`, []string{"t.example"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := SanitizeHTML(c.in)
			lo := strings.ToLower(out)
			for _, bad := range c.never {
				if strings.Contains(lo, strings.ToLower(bad)) {
					t.Errorf("%q survived:\n in: %s\nout: %s", bad, c.in, out)
				}
			}
			for _, good := range c.keep {
				if !strings.Contains(out, good) {
					t.Errorf("%q was lost:\n in: %s\nout: %s", good, c.in, out)
				}
			}
			assertNoRemoteLoads(t, out)
		})
	}
}

func TestSanitizeHTMLKeeps(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want []string
	}{
		{"inline png", `<p><img src="` + pngData + `" alt="logo" width="10" height="10"></p>`,
			[]string{`<img src="` + pngData + `"`, `alt="logo"`, `width="10"`}},
		{"inline jpeg and gif", `<img src="data:image/jpeg;base64,/9j/4AAQ"><img src="data:image/gif;base64,R0lGODlh">`,
			[]string{`src="data:image/jpeg;base64,/9j/4AAQ"`, `src="data:image/gif;base64,R0lGODlh"`}},
		{"formatting", `<p><b>bold</b> <i>it</i> <u>u</u> <em>em</em> <strong>s</strong></p><h2>head</h2><ul><li>one</li></ul><ol><li>two</li></ol><blockquote>q</blockquote><pre>pre</pre><br><hr>`,
			[]string{"<b>bold</b>", "<i>it</i>", "<u>u</u>", "<em>em</em>", "<strong>s</strong>", "<h2>head</h2>", "<ul><li>one</li></ul>", "<ol><li>two</li></ol>", "<blockquote>q</blockquote>", "<pre>pre</pre>", "<br>", "<hr>"}},
		{"table", `<table><thead><tr><th>h</th></tr></thead><tbody><tr><td>d</td></tr></tbody></table>`,
			[]string{"<table>", "<th>h</th>", "<td>d</td>"}},
		{"text and entities", `a &lt;b&gt; &amp; c`, []string{"a &lt;b&gt; &amp; c"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := SanitizeHTML(c.in)
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("%q lost:\n in: %s\nout: %s", w, c.in, out)
				}
			}
		})
	}
}

func TestSanitizeHTMLLinks(t *testing.T) {
	out := SanitizeHTML(`<a href="https://portal.clinic.example/x?a=1&amp;b=2">site</a> <a href="mailto:front.desk@clinic.example">mail</a> <a href="http://plain.example/">old</a>`)
	links := map[string]map[string]string{}
	z := html.NewTokenizer(strings.NewReader(out))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		if tok := z.Token(); tok.Data == "a" && tt == html.StartTagToken {
			attrs := map[string]string{}
			for _, a := range tok.Attr {
				attrs[a.Key] = a.Val
			}
			links[attrs["href"]] = attrs
		}
	}
	https := links["https://portal.clinic.example/x?a=1&b=2"]
	if https == nil {
		t.Fatalf("https link lost: %s", out)
	}
	if !strings.Contains(https["rel"], "noreferrer") || https["target"] != "_blank" {
		t.Errorf("https link attributes %v, want rel noreferrer and target _blank", https)
	}
	mailto := links["mailto:front.desk@clinic.example"]
	if mailto == nil {
		t.Fatalf("mailto link lost: %s", out)
	}
	if !strings.Contains(mailto["rel"], "noreferrer") {
		t.Errorf("mailto link attributes %v, want rel noreferrer", mailto)
	}
	for href, attrs := range links {
		if !strings.Contains(attrs["rel"], "noreferrer") {
			t.Errorf("link %s without noreferrer: %v", href, attrs)
		}
	}
}

// assertNoRemoteLoads walks the output and fails on any attribute a browser
// would fetch on its own (without a click).
func assertNoRemoteLoads(t *testing.T, out string) {
	t.Helper()
	z := html.NewTokenizer(strings.NewReader(out))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		tok := z.Token()
		for _, a := range tok.Attr {
			switch a.Key {
			case "src":
				if !strings.HasPrefix(a.Val, "data:image/") {
					t.Errorf("<%s src=%q> survived", tok.Data, a.Val)
				}
			case "srcset", "poster", "background", "style", "action", "formaction", "ping", "data", "xlink:href", "srcdoc":
				t.Errorf("<%s %s=%q> survived", tok.Data, a.Key, a.Val)
			case "href":
				if tok.Data != "a" && tok.Data != "area" {
					t.Errorf("<%s href=%q> survived", tok.Data, a.Val)
				}
			}
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("<%s %s> handler survived", tok.Data, a.Key)
			}
		}
		switch tok.Data {
		case "script", "style", "iframe", "frame", "object", "embed", "form", "link", "meta", "base", "svg", "video", "audio", "source", "input":
			t.Errorf("<%s> survived", tok.Data)
		}
	}
}
