package alert

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"
)

// everyRule raises at least one alert of every kind (and a summary) from
// the given values and returns all alert texts.
func everyRule(t *testing.T, actor, object, ip string) []Alert {
	t.Helper()
	f := newFixture(t, Config{IPFailures: 2, OpensPerUser: 2, MaxPerWindow: 3})
	events := []Event{
		{Action: ActionLockout, ObjectType: "user", ObjectID: object, IP: ip, Outcome: OutcomeFailed},
		{Action: ActionLockout, Actor: actor, IP: ip},
		{Action: ActionLogin, Actor: actor, ObjectID: object, IP: ip, Outcome: OutcomeFailed},
		{Action: ActionLogin, Actor: actor, ObjectID: object, IP: ip, Outcome: OutcomeFailed},
		{Action: ActionBreakGlass, Actor: actor, ObjectType: "message", ObjectID: object, IP: ip, Outcome: OutcomeOK},
		{Action: ActionAdminGrant, Actor: actor, ObjectType: "user", ObjectID: object, IP: ip, Outcome: OutcomeOK},
		{Action: ActionMessageRead, Actor: actor, ObjectType: "message", ObjectID: object, IP: ip, Outcome: OutcomeOK},
		{Action: ActionAttachment, Actor: actor, ObjectType: "message", ObjectID: object, IP: ip, Outcome: OutcomeOK},
		{Action: ActionAuditVerify, Actor: actor, ObjectType: "audit", ObjectID: object, IP: ip, Outcome: OutcomeFailed},
		{Action: ActionAuditVerify, Outcome: OutcomeFailed},
		{Action: ActionRedis, Actor: actor, ObjectType: "redis", ObjectID: object, IP: ip, Outcome: OutcomeFailed},
		{Action: ActionBreakGlass},
		{Action: ActionAdminGrant},
	}
	for _, e := range events {
		f.observe(e)
		f.clk.Add(time.Second)
	}
	f.clk.Add(time.Hour)
	f.a.flush(t.Context())
	all := f.a.Recent(0)
	kinds := map[string]bool{}
	for _, a := range all {
		kinds[a.Kind] = true
	}
	for _, k := range append(kindNames[:], KindSummary) {
		if !kinds[k] {
			t.Fatalf("no %s alert raised", k)
		}
	}
	return all
}

// vocabulary is every fixed word the templates may use. A new word in a
// template must be added here — on purpose, after checking it is not data.
var vocabulary = strings.Fields(`
	Account was locked out after repeated failed sign-ins at the last attempt came from
	within to Break-glass access message by user User given admin role
	opened or downloaded messages times latest Audit trail verification first failing record check run
	more alert alerts in The full list is pages
	second seconds minute minutes hour hours unknown
	Redis stopped answering portal sign-in and sessions answer until it returns SMTP intake continues
	lockout ip-failures break-glass admin-grant open-volume audit-verify redis-outage`)

var (
	reInt   = regexp.MustCompile(`^[0-9]+$`)
	reStamp = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$`)
	reRef   = regexp.MustCompile(`^ref#[0-9a-f]{12}$`)
)

// tokens splits an alert text into words, stripping punctuation around them.
func tokens(s string) []string {
	var out []string
	for _, w := range strings.Fields(s) {
		w = strings.TrimLeft(w, "(")
		w = strings.TrimRight(w, ").,;:")
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

// TestTextsCarryOnlyIDsIPsCountsTimes: fed only ids and IPs, every alert
// text consists of the template words, those ids and IPs, integers and
// times — nothing else.
func TestTextsCarryOnlyIDsIPsCountsTimes(t *testing.T) {
	for _, c := range []struct{ actor, object, ip string }{
		{"0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", "192.0.2.33"},
		{"addr#1a2b3c4d5e6f", "550e8400-e29b-41d4-a716-446655440000", "2001:db8::7"},
	} {
		allowed := map[string]bool{c.actor: true, c.object: true, c.ip: true, "2001:db8::/64": true}
		for _, w := range vocabulary {
			allowed[w] = true
		}
		for _, a := range everyRule(t, c.actor, c.object, c.ip) {
			for _, w := range tokens(a.Text) {
				if !allowed[w] && !reInt.MatchString(w) && !reStamp.MatchString(w) {
					t.Errorf("%s alert text %q has %q, which is no id, IP, count, time or template word", a.Kind, a.Text, w)
				}
			}
		}
	}
}

// TestCanaryValuesNeverReachTexts: if PHI reaches an Event by mistake
// (an address as the actor, a subject as the object id, a name as the IP),
// no alert text contains it; it shows as a pseudonym.
func TestCanaryValuesNeverReachTexts(t *testing.T) {
	actor := "jane.canary-7731@patient.example"
	object := "Re: CANARY-HIV results for Jane Canary"
	ip := "Jane Canary's laptop"
	canaries := []string{"canary", "7731", "patient", "example", "jane", "hiv", "results", "laptop", "@", "re:"}
	sawRef := false
	for _, a := range everyRule(t, actor, object, ip) {
		low := strings.ToLower(a.Text)
		for _, c := range canaries {
			if strings.Contains(low, c) {
				t.Errorf("%s alert text %q contains canary %q", a.Kind, a.Text, c)
			}
		}
		for _, w := range tokens(a.Text) {
			if strings.HasPrefix(w, "ref#") {
				sawRef = true
				if !reRef.MatchString(w) {
					t.Errorf("bad pseudonym %q", w)
				}
			} else if !reInt.MatchString(w) && !reStamp.MatchString(w) && !contains(vocabulary, w) {
				t.Errorf("%s alert text %q has %q", a.Kind, a.Text, w)
			}
		}
	}
	if !sawRef {
		t.Error("no pseudonym shown for the non-id values")
	}
}

func contains(list []string, w string) bool {
	for _, v := range list {
		if v == w {
			return true
		}
	}
	return false
}

func TestVetting(t *testing.T) {
	for in, want := range map[string]string{
		"":                                     "",
		"0123456789abcdef0123456789abcdef":     "0123456789abcdef0123456789abcdef",
		"addr#1a2b3c4d5e6f":                    "addr#1a2b3c4d5e6f",
		"550e8400-e29b-41d4-a716-446655440000": "550e8400-e29b-41d4-a716-446655440000",
	} {
		if got := idOf(in).s; got != want {
			t.Errorf("idOf(%q) = %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"a@b", "jane.doe", "two words", "line\nbreak", strings.Repeat("a", maxIDLen+1), "ünï"} {
		if got := idOf(in).s; !reRef.MatchString(got) {
			t.Errorf("idOf(%q) = %q, want a pseudonym", in, got)
		}
	}
	for in, want := range map[string]string{
		"192.0.2.1":         "192.0.2.1",
		"192.0.2.1:5555":    "192.0.2.1",
		"::ffff:192.0.2.1":  "192.0.2.1",
		"[2001:DB8::1]:443": "2001:db8::1",
		"fe80::1%eth0":      "fe80::1",
		"":                  "",
	} {
		if got := addrOf(in).s; got != want {
			t.Errorf("addrOf(%q) = %q, want %q", in, got, want)
		}
	}
	for _, in := range []string{"localhost", "jane's phone", "192.0.2.300"} {
		if got := addrOf(in).s; !reRef.MatchString(got) {
			t.Errorf("addrOf(%q) = %q, want a pseudonym", in, got)
		}
	}
	if got := ipKey("2001:db8:a:b:c:d:e:f").s; got != "2001:db8:a:b::/64" {
		t.Errorf("ipKey v6 = %q", got)
	}
	for d, want := range map[time.Duration]string{
		15 * time.Minute: "15 minutes", time.Minute: "1 minute", 2 * time.Hour: "2 hours",
		90 * time.Second: "90 seconds", 1500 * time.Millisecond: "2 seconds", 0: "0 seconds",
	} {
		if got := span(d); got != want {
			t.Errorf("span(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestTextBuildersTakeNoFreeText checks the source: every *Text builder
// takes only vetted ids and addresses, counts, times and durations; and
// id and addr values are made only by their vetting constructors.
func TestTextBuildersTakeNoFreeText(t *testing.T) {
	allowedParam := map[string]bool{
		"id": true, "addr": true, "int": true, "time.Time": true, "time.Duration": true, "[numKinds]int": true,
	}
	constructors := map[string]bool{"idOf": true, "addrOf": true, "ipKey": true}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	builders := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			if strings.HasSuffix(fd.Name.Name, "Text") && fd.Recv == nil {
				builders++
				for _, p := range fd.Type.Params.List {
					typ := string(src[fset.Position(p.Type.Pos()).Offset:fset.Position(p.Type.End()).Offset])
					if !allowedParam[typ] {
						t.Errorf("%s: text builder %s takes a %s; builders may take only %v", name, fd.Name.Name, typ, keys(allowedParam))
					}
				}
			}
			// id{...} and addr{...} only inside the vetting constructors.
			ast.Inspect(fd, func(n ast.Node) bool {
				cl, ok := n.(*ast.CompositeLit)
				if !ok {
					return true
				}
				if ident, ok := cl.Type.(*ast.Ident); ok && (ident.Name == "id" || ident.Name == "addr") && len(cl.Elts) > 0 && !constructors[fd.Name.Name] {
					t.Errorf("%s: %s builds %s{…} directly; use idOf/addrOf", fset.Position(cl.Pos()), fd.Name.Name, ident.Name)
				}
				return true
			})
		}
	}
	if builders != 8 {
		t.Errorf("found %d text builders, want 8 (update this test when adding one)", builders)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTextsAreOneLine: every alert text is one non-empty line of printable
// characters (go test -v shows them, for review).
func TestTextsAreOneLine(t *testing.T) {
	for _, a := range everyRule(t, "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", "192.0.2.33") {
		t.Logf("%-12s %s", a.Kind, a.Text)
		if strings.TrimSpace(a.Text) == "" || strings.IndexFunc(a.Text, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
			t.Errorf("%s: text is not one printable line: %q", a.Kind, a.Text)
		}
	}
}
