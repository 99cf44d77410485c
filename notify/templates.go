package notify

import (
	"embed"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	texttemplate "text/template"
	"text/template/parse"
	"time"
)

// The built-in notice wording. An admin overrides any of these files by
// putting one of the same name in org.notice_templates (issue 10.5).
//
//go:embed templates/*
var builtin embed.FS

// kinds maps each notice kind to the name of its body templates
// (<name>.txt and <name>.html); its subject is <kind>.subject.txt. The
// reports to an internal sender share one body: their Alert says it all.
var kinds = map[string]string{
	KindNewMessage:      "new-message",
	KindPasswordReset:   "password-reset",
	KindSecurityAlert:   "security-alert",
	KindClaimLink:       "claim-link",
	KindDeliveryFailure: "sender-report",
	KindPasscode:        "sender-report",
	KindSenderNote:      "sender-report",
}

// OfferedFields are the only data a notice template may use: none of them
// can carry PHI (Alert is a fixed event text with ids and counts only).
var OfferedFields = []string{"Org", "Link", "Claim", "ExpiresAt", "LinkExpiresAt", "Contact", "Alert",
	"Reference", "VerifyURL", "VerifyPhone"}

// offeredFuncs are the built-in functions a template may call: they work
// on their arguments only. index, slice, call and len would reach into
// values, template/define/block into other templates: refused.
var offeredFuncs = []string{"and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "print", "printf", "println"}

// remoteMarkup would make a mail reader fetch something (a tracking pixel,
// a remote logo or style) or run something: an HTML notice has none.
var remoteMarkup = []string{"<img", "<picture", "<svg", "<video", "<audio", "<iframe", "<frame", "<object",
	"<embed", "<link", "<script", "<form", "<base", "<meta http-equiv", "src=", "srcset=", "background=",
	"url(", "@import"}

// kindTemplates are the subject, text and HTML of one kind of notice.
type kindTemplates struct {
	subject *texttemplate.Template
	text    *texttemplate.Template
	html    *htmltemplate.Template
}

// Templates are the notice templates in use.
type Templates struct {
	kinds map[string]kindTemplates
}

var defaultTemplates = func() *Templates {
	t, err := LoadTemplates("")
	if err != nil {
		panic(err) // the built-in templates are checked by TestBuiltinTemplatesPass
	}
	return t
}()

// templateFiles lists the file names a template folder may hold.
func templateFiles() []string {
	var names []string
	for kind, body := range kinds {
		names = append(names, kind+".subject.txt", body+".txt", body+".html")
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// LoadTemplates reads the built-in templates, overridden by the files of
// dir (none if dir is empty), and checks every one: a template that uses
// anything but the offered fields and functions, or HTML that would load
// something remote, is refused with its file, line and what it used.
func LoadTemplates(dir string) (*Templates, error) {
	src := map[string]string{}
	for _, name := range templateFiles() {
		b, err := builtin.ReadFile("templates/" + name)
		if err != nil {
			return nil, err
		}
		src[name] = string(b)
	}
	if dir != "" {
		if err := readOverrides(dir, src); err != nil {
			return nil, err
		}
	}
	var errs []error
	for _, name := range templateFiles() {
		errs = append(errs, CheckTemplate(name, src[name]))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	t := &Templates{kinds: map[string]kindTemplates{}}
	for kind, body := range kinds {
		var kt kindTemplates
		var err error
		if kt.subject, err = texttemplate.New(kind + ".subject.txt").Parse(src[kind+".subject.txt"]); err != nil {
			return nil, err
		}
		if kt.text, err = texttemplate.New(body + ".txt").Parse(src[body+".txt"]); err != nil {
			return nil, err
		}
		if kt.html, err = htmltemplate.New(body + ".html").Parse(src[body+".html"]); err != nil {
			return nil, err
		}
		t.kinds[kind] = kt
	}
	return t, t.trial()
}

// readOverrides puts the files of dir over src. A file of another name is
// refused: a misspelt override would otherwise be ignored silently.
func readOverrides(dir string, src map[string]string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("org.notice_templates: %w", err)
	}
	for _, e := range entries {
		if _, known := src[e.Name()]; !known || !e.Type().IsRegular() {
			return fmt.Errorf("org.notice_templates: %s is not a notice template (known files: %s)",
				filepath.Join(dir, e.Name()), strings.Join(templateFiles(), ", "))
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return fmt.Errorf("org.notice_templates: %w", err)
		}
		src[e.Name()] = string(b)
	}
	return nil
}

// trial renders every kind once, so that what only shows at execution
// (html/template's escaping of a bad context) fails at start, not at the
// first notice.
func (t *Templates) trial() error {
	d := noticeData{Org: "Org", Link: "https://portal.example/x", Claim: true, ExpiresAt: time.Now().String(), LinkExpiresAt: time.Now().String(),
		Contact: "contact", Alert: "alert", Reference: "K7P-4QX", VerifyURL: "https://clinic.example/verify", VerifyPhone: "+1 555 0100"}
	for kind, kt := range t.kinds {
		for _, run := range []func() error{
			func() error { return kt.subject.Execute(io.Discard, d) },
			func() error { return kt.text.Execute(io.Discard, d) },
			func() error { return kt.html.Execute(io.Discard, d) },
		} {
			if err := run(); err != nil {
				return fmt.Errorf("notice templates (%s): %w", kind, err)
			}
		}
	}
	return nil
}

// CheckTemplates checks the template folder dir as LoadTemplates does at
// start (phigate notices check-templates).
func CheckTemplates(dir string) error {
	_, err := LoadTemplates(dir)
	return err
}

// CheckTemplate walks the parse tree of one template and refuses every use
// of data other than the offered fields and every function call other than
// the offered ones, naming the file, line and column.
func CheckTemplate(name, text string) error {
	tree := parse.New(name)
	tree.Mode = parse.SkipFuncCheck | parse.ParseComments
	set := map[string]*parse.Tree{}
	if _, err := tree.Parse(text, "", "", set); err != nil {
		return err
	}
	c := &checker{tree: tree, html: strings.HasSuffix(name, ".html")}
	for n := range set {
		if n != name {
			c.refuse(tree.Root, fmt.Sprintf("defines template %q (define and block are not allowed)", n))
		}
	}
	c.list(tree.Root)
	return errors.Join(c.errs...)
}

type checker struct {
	tree *parse.Tree
	html bool
	errs []error
}

func (c *checker) refuse(n parse.Node, what string) {
	loc, _ := c.tree.ErrorContext(n)
	c.errs = append(c.errs, fmt.Errorf("%s: %s; a notice template may use only the fields %s and the functions %s",
		loc, what, strings.Join(OfferedFields, ", "), strings.Join(offeredFuncs, ", ")))
}

func (c *checker) list(l *parse.ListNode) {
	if l == nil {
		return
	}
	for _, n := range l.Nodes {
		c.node(n)
	}
}

func (c *checker) node(n parse.Node) {
	switch n := n.(type) {
	case *parse.TextNode:
		c.text(n)
	case *parse.CommentNode:
	case *parse.ActionNode:
		c.pipe(n.Pipe)
	case *parse.IfNode:
		c.pipe(n.Pipe)
		c.list(n.List)
		c.list(n.ElseList)
	case *parse.RangeNode:
		c.refuse(n, "uses range")
	case *parse.WithNode:
		c.refuse(n, "uses with")
	case *parse.TemplateNode:
		c.refuse(n, fmt.Sprintf("calls template %q", n.Name))
	default:
		c.refuse(n, "uses "+n.String())
	}
}

func (c *checker) pipe(p *parse.PipeNode) {
	if p == nil {
		return
	}
	if len(p.Decl) > 0 {
		c.refuse(p, "declares a variable")
	}
	for _, cmd := range p.Cmds {
		for _, arg := range cmd.Args {
			c.arg(arg)
		}
	}
}

func (c *checker) arg(n parse.Node) {
	switch n := n.(type) {
	case *parse.FieldNode:
		if len(n.Ident) != 1 || !slices.Contains(OfferedFields, n.Ident[0]) {
			c.refuse(n, "uses field "+strings.Join(n.Ident, "."))
		}
	case *parse.VariableNode:
		// $.Org is .Org; any other variable is refused.
		if len(n.Ident) != 2 || n.Ident[0] != "$" || !slices.Contains(OfferedFields, n.Ident[1]) {
			c.refuse(n, "uses variable "+strings.Join(n.Ident, "."))
		}
	case *parse.IdentifierNode:
		if !slices.Contains(offeredFuncs, n.Ident) {
			c.refuse(n, "calls function "+n.Ident)
		}
	case *parse.DotNode:
		c.refuse(n, "uses . (all the data): name a field")
	case *parse.ChainNode:
		c.refuse(n, "uses field "+n.String())
	case *parse.PipeNode:
		c.pipe(n)
	case *parse.StringNode:
		// A literal lands in the page like text (an attribute, a style):
		// it may not bring in what the text may not.
		c.remote(n, n.Text)
	case *parse.NumberNode, *parse.BoolNode, *parse.NilNode:
	default:
		c.refuse(n, "uses "+n.String())
	}
}

// text refuses HTML that would load something: a remote image is a
// tracking pixel and a phishing look-alike, and no notice needs one (the
// organisation's name as styled text stands in for a logo).
func (c *checker) text(n *parse.TextNode) {
	if !c.html {
		return
	}
	low := strings.ToLower(string(n.Text))
	for _, m := range remoteMarkup {
		if i := strings.Index(low, m); i >= 0 {
			c.refuseAt(n, i, "contains "+m+" (no images or other remote content in notices)")
		}
	}
}

// remote refuses a string literal of an HTML template that holds what
// text refuses.
func (c *checker) remote(n parse.Node, s string) {
	if !c.html {
		return
	}
	low := strings.ToLower(s)
	for _, m := range remoteMarkup {
		if strings.Contains(low, m) {
			c.refuse(n, "has a string with "+m+" (no images or other remote content in notices)")
		}
	}
}

// refuseAt reports offset i inside text node n by its own line.
func (c *checker) refuseAt(n *parse.TextNode, i int, what string) {
	at := &parse.TextNode{NodeType: parse.NodeText, Pos: n.Pos + parse.Pos(i), Text: n.Text[i:]}
	c.refuse(at, what)
}
