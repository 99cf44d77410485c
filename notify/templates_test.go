package notify

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every built-in file passes the checks an admin's file must pass, and
// every file the folder holds is one a notice uses.
func TestBuiltinTemplatesPass(t *testing.T) {
	if _, err := LoadTemplates(""); err != nil {
		t.Fatal(err)
	}
	entries, err := builtin.ReadDir("templates")
	if err != nil {
		t.Fatal(err)
	}
	known := strings.Join(templateFiles(), " ")
	for _, e := range entries {
		if !strings.Contains(" "+known+" ", " "+e.Name()+" ") {
			t.Errorf("templates/%s is used by no notice kind", e.Name())
		}
	}
	if len(entries) != len(templateFiles()) {
		t.Errorf("%d built-in files, %d used", len(entries), len(templateFiles()))
	}
}

func writeTemplates(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A template that reaches for anything but the offered fields and
// functions is refused, naming the file, the line and what it used.
func TestTemplateRefusesOtherData(t *testing.T) {
	for _, c := range []struct {
		file, text string
		want       []string // in the error
	}{
		{"new-message.txt", "Hello\n\nSubject: {{.Subject}}\n", []string{"new-message.txt:3:", "field Subject"}},
		{"new-message.txt", "{{.Org}}\n{{index .Link 0}}\n", []string{"new-message.txt:2:", "function index"}},
		{"new-message.html", "<p>{{.Org}}</p>\n<p>{{.To}}</p>\n", []string{"new-message.html:2:", "field To"}},
		{"new-message.txt", "{{.Org.Secret}}", []string{"new-message.txt:1:", "field Org.Secret"}},
		{"new-message.txt", "{{.}}", []string{"new-message.txt:1:", "uses . (all the data)"}},
		{"new-message.txt", "{{$x := .Link}}{{$x}}", []string{"declares a variable", "variable $x"}},
		{"new-message.txt", "{{$.Body}}", []string{"variable $.Body"}},
		{"new-message.txt", "{{call .Link}}", []string{"function call"}},
		{"new-message.txt", "{{slice .Link 1}}", []string{"function slice"}},
		{"new-message.txt", "{{range .Org}}x{{end}}", []string{"uses range"}},
		{"new-message.txt", "{{with .Org}}{{.}}{{end}}", []string{"uses with"}},
		{"new-message.txt", `{{define "x"}}{{.Body}}{{end}}{{template "x" .}}`, []string{"calls template \"x\"", "defines template"}},
		{"password-reset.subject.txt", "Reset {{.ExpiresAt.Year}}", []string{"password-reset.subject.txt:1:", "field ExpiresAt.Year"}},
		{"new-message.html", "<p>{{.Org}}</p>\n\n<img src=\"https://cdn.example/logo.png\">\n", []string{"new-message.html:3:", "<img", "src="}},
		{"new-message.html", "<p style=\"background:url(https://x.example/p.gif)\">{{.Org}}</p>", []string{"new-message.html:1:", "url("}},
		{"new-message.html", "<p>{{.Org}}</p>\n<p style=\"{{print \"background:URL(https://x.example/p.gif)\"}}\">x</p>", []string{"new-message.html:2:", "string with url("}},
	} {
		dir := writeTemplates(t, map[string]string{c.file: c.text})
		_, err := LoadTemplates(dir)
		if err == nil {
			t.Errorf("%s %q: accepted", c.file, c.text)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s %q: error does not say %q:\n%v", c.file, c.text, w, err)
			}
		}
		if err := CheckTemplates(dir); err == nil {
			t.Errorf("CheckTemplates accepted what LoadTemplates refused: %s", c.file)
		}
	}
}

// A misspelt file name would be ignored silently: it is refused.
func TestTemplateUnknownFileRefused(t *testing.T) {
	dir := writeTemplates(t, map[string]string{"new-mesage.txt": "{{.Org}}"})
	if _, err := LoadTemplates(dir); err == nil || !strings.Contains(err.Error(), "new-mesage.txt is not a notice template") {
		t.Fatalf("got %v", err)
	}
}

// An admin's wording, subject and sender name are what the notice says;
// the built-in HTML part stays where only the text was overridden.
func TestCustomTemplateRenders(t *testing.T) {
	dir := writeTemplates(t, map[string]string{
		"new-message.subject.txt": "{{.Org}}: a message is waiting for you\n",
		"new-message.txt": "Dear patient,\n\n{{if .Claim}}Set a password at{{else}}Sign in at{{end}} {{.Link}}\n" +
			"before {{.ExpiresAt}}. Call {{.Contact}} with questions.\n{{/* no PHI here */}}",
	})
	tmpl, err := LoadTemplates(dir)
	if err != nil {
		t.Fatal(err)
	}
	org := testOrg
	org.NoticeSenderName = "Riverside Patient Services"
	n := Notice{To: "pat@example.net", Link: "https://portal.riverside.example/claim/tok123", Claim: true, ExpiresAt: expires}
	raw, err := tmpl.Render(KindNewMessage, n, org, "gw.riverside.example", "outbox-1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	m := parseNotice(t, raw)
	if got, _ := m.header.Subject(); got != "Riverside Clinic: a message is waiting for you" {
		t.Errorf("subject %q", got)
	}
	from, err := m.header.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Name != "Riverside Patient Services" || from[0].Address != org.NotifyFrom {
		t.Errorf("From %v %v", from, err)
	}
	want := "Dear patient,\r\n\r\nSet a password at https://portal.riverside.example/claim/tok123\r\nbefore " + expiresText +
		". Call privacy@riverside.example with questions.\r\n"
	if got := m.parts["text/plain"]; got != want {
		t.Errorf("text part:\n%q\nwant\n%q", got, want)
	}
	if !strings.Contains(m.parts["text/html"], "Open and set your password") {
		t.Errorf("html part is not the built-in one:\n%s", m.parts["text/html"])
	}
	if strings.Join(m.order, ",") != "text/plain,text/html" {
		t.Errorf("parts %v", m.order)
	}
}
