package notify

import (
	"encoding/json"
	"html"
	"regexp"
	"strings"
	"testing"
	"time"
)

var referenceRe = regexp.MustCompile(`^[` + referenceAlphabet + `]{3}-[` + referenceAlphabet + `]{3}$`)

// Issue 13.9: a reference is six characters of the unambiguous alphabet in
// two groups, and random: 2,000 draws bring no repeat worth speaking of
// and use every character.
func TestNewReference(t *testing.T) {
	seen, chars := map[string]bool{}, map[rune]bool{}
	for range 2000 {
		r := NewReference()
		if !referenceRe.MatchString(r) {
			t.Fatalf("reference %q is not XXX-XXX from %s", r, referenceAlphabet)
		}
		seen[r] = true
		for _, c := range strings.ReplaceAll(r, "-", "") {
			chars[c] = true
		}
	}
	// 2,000 draws from 25^6: a repeat has probability about 1 in 100.
	if len(seen) < 1998 {
		t.Errorf("%d distinct references in 2000 draws", len(seen))
	}
	if len(chars) != len(referenceAlphabet) {
		t.Errorf("%d of %d characters used", len(chars), len(referenceAlphabet))
	}
	for _, c := range "01IOLSBUV58" {
		if strings.ContainsRune(referenceAlphabet, c) {
			t.Errorf("alphabet holds the look-alike %q", c)
		}
	}
}

type plainSealer struct{}

func (plainSealer) SealField(_ string, b []byte) ([]byte, error) { return b, nil }
func (plainSealer) OpenField(_ string, b []byte) ([]byte, error) { return b, nil }

// NewItem gives a reference to the notices that reach a recipient (new
// message, new claim link, password reset), the same in the sealed payload
// and on the row, and none to staff reports and alerts.
func TestNewItemReference(t *testing.T) {
	for kind, want := range map[string]bool{KindNewMessage: true, KindClaimLink: true, KindPasswordReset: true,
		KindSecurityAlert: false, KindSenderNote: false, KindDeliveryFailure: false, KindPasscode: false} {
		it, err := NewItem(plainSealer{}, kind, Notice{To: "p@example.net", Link: "https://x/"}, "u1", "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var n Notice
		if err := json.Unmarshal(it.Payload, &n); err != nil {
			t.Fatal(err)
		}
		if got := it.Reference != ""; got != want {
			t.Errorf("%s: reference %q, want one: %v", kind, it.Reference, want)
		}
		if n.Reference != it.Reference {
			t.Errorf("%s: payload reference %q, row %q", kind, n.Reference, it.Reference)
		}
	}
	a, _ := NewItem(plainSealer{}, KindNewMessage, Notice{}, "u1", "", time.Now())
	b, _ := NewItem(plainSealer{}, KindNewMessage, Notice{}, "u1", "", time.Now())
	if a.Reference == b.Reference {
		t.Errorf("two notices share the reference %s", a.Reference)
	}
}

// Both parts of every referenced notice show the reference and where to
// check it (phone, website, or the contact when neither is set), and say
// the portal shows it again.
func TestRenderShowsReference(t *testing.T) {
	org := testOrg
	org.VerifyURL, org.VerifyPhone = "https://riverside.example/check", "+1 555 0100"
	n := Notice{To: "pat@example.net", Link: "https://portal.riverside.example/claim/tok", Claim: true,
		ExpiresAt: expires, Reference: "K7P-4QX"}
	for _, kind := range []string{KindNewMessage, KindClaimLink, KindPasswordReset} {
		raw, err := RenderKind(kind, n, org, "gw.riverside.example", "ob1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		m := parseNotice(t, raw)
		for part, body := range m.parts {
			body = html.UnescapeString(body) // html/template writes + as &#43;
			for _, must := range []string{"Reference: ", "K7P-4QX", "call +1 555 0100", "https://riverside.example/check",
				"the portal shows the same reference"} {
				if !strings.Contains(body, must) {
					t.Errorf("%s %s part lacks %q:\n%s", kind, part, must, body)
				}
			}
		}
		raw, err = RenderKind(kind, n, testOrg, "gw.riverside.example", "ob1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		text := parseNotice(t, raw).parts["text/plain"]
		if !strings.Contains(text, "really comes from Riverside Clinic, contact "+testOrg.Contact+".") {
			t.Errorf("%s without verify settings: no contact to check with:\n%s", kind, text)
		}
	}
	// A row made before references existed says nothing of one.
	n.Reference = ""
	raw, err := RenderKind(KindNewMessage, n, org, "gw.riverside.example", "ob1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "Reference") {
		t.Errorf("a notice without a reference mentions one:\n%s", raw)
	}
}

// The new claim link's notice: the link, its end, that older links are
// dead; and its HTML lays out for a phone (a max-width column, the raw
// link allowed to break anywhere) like every recipient notice.
func TestClaimLinkNotice(t *testing.T) {
	n := Notice{To: "pat@example.net", Link: "https://portal.riverside.example/claim/" + strings.Repeat("x", 43), Claim: true,
		ExpiresAt: expires, Reference: "K7P-4QX"}
	raw, err := RenderKind(KindClaimLink, n, testOrg, "gw.riverside.example", "ob1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := parseNotice(t, raw)
	if subj := m.header.Get("Subject"); subj != "Your new link for secure messages from Riverside Clinic" {
		t.Errorf("subject %q", subj)
	}
	for part, body := range m.parts {
		for _, must := range []string{n.Link, "This link works until", expiresText, "Only this newest link works"} {
			if !strings.Contains(strings.ReplaceAll(body, "\r\n", "\n"), must) {
				t.Errorf("%s part lacks %q:\n%s", part, must, body)
			}
		}
	}
	for _, kind := range []string{KindNewMessage, KindClaimLink, KindPasswordReset} {
		raw, err := RenderKind(kind, n, testOrg, "gw.riverside.example", "ob1", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		html := parseNotice(t, raw).parts["text/html"]
		for _, must := range []string{"max-width:560px", "word-break:break-all", `name="viewport"`, "display:inline-block"} {
			if !strings.Contains(html, must) {
				t.Errorf("%s html lacks %q", kind, must)
			}
		}
	}
}

// The admin's check covers the new kind and fields: claim-link files are
// known overrides, may use Reference, VerifyURL and VerifyPhone, and are
// refused for anything else.
func TestCheckTemplatesCoversClaimLink(t *testing.T) {
	ok := writeTemplates(t, map[string]string{
		"claim-link.txt":  "{{.Org}} {{.Link}} {{.Reference}} {{.VerifyURL}} {{.VerifyPhone}}\n",
		"claim-link.html": `<p><a href="{{.Link}}">{{.Org}}</a> {{.Reference}} <a href="{{.VerifyURL}}">{{.VerifyPhone}}</a></p>`,
	})
	if err := CheckTemplates(ok); err != nil {
		t.Fatalf("claim-link override with the offered fields: %v", err)
	}
	for file, text := range map[string]string{
		"claim-link.txt":         "{{.Org}}\n{{.To}}\n",
		"claim-link.html":        "<p>{{.Org}}</p>\n<img src=\"https://tracker.example/p.gif\">",
		"claim-link.subject.txt": "{{.Reference.X}}",
	} {
		err := CheckTemplates(writeTemplates(t, map[string]string{file: text}))
		if err == nil || !strings.Contains(err.Error(), file+":") {
			t.Errorf("%s %q: %v, want a refusal naming the file", file, text, err)
		}
	}
	if err := CheckTemplates(writeTemplates(t, map[string]string{"claim-links.txt": "x"})); err == nil {
		t.Error("a misspelt claim-link override was accepted")
	}
}
