package portal

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// twins names, for every API route that has a page doing the same thing,
// that page's route (issue 13.11). Both faces must reach the same portal
// operation; see TestFacesAreThin.
var twins = map[string]string{
	"POST /api/v1/login":                          "POST /login",
	"POST /api/v1/login/2fa":                      "POST /login/2fa",
	"POST /api/v1/claim":                          "POST /claim/{token}",
	"POST /api/v1/claim/status":                   "GET /claim/{token}",
	"POST /api/v1/claim/new-link":                 "POST /claim/{token}/new-link",
	"POST /api/v1/reset":                          "POST /reset",
	"POST /api/v1/reset/complete":                 "POST /reset/{token}",
	"POST /api/v1/logout":                         "POST /logout",
	"GET /api/v1/messages":                        "GET /inbox",
	"GET /api/v1/messages/{id}":                   "GET /messages/{id}",
	"POST /api/v1/messages/{id}/reply":            "POST /messages/{id}/reply",
	"POST /api/v1/messages/{id}/passcode":         "POST /messages/{id}/passcode",
	"GET /api/v1/account":                         "GET /account",
	"POST /api/v1/account/2fa/setup":              "GET /account/2fa",
	"POST /api/v1/account/2fa/confirm":            "POST /account/2fa",
	"POST /api/v1/account/recovery-codes":         "POST /account/recovery-codes",
	"POST /api/v1/account/signout-all":            "POST /account/signout-all",
	"GET /api/v1/admin/users":                     "GET /admin/users",
	"POST /api/v1/admin/users":                    "POST /admin/users",
	"POST /api/v1/admin/users/{id}/{action}":      "POST /admin/users/{id}/{action}",
	"POST /api/v1/admin/recover":                  "POST /admin/recover",
	"POST /api/v1/admin/break-glass":              "POST /admin/break-glass",
	"GET /api/v1/audit":                           "GET /admin/audit",
	"POST /api/v1/audit/verify":                   "GET /admin/audit",
	"GET /api/v1/alerts":                          "GET /admin/alerts",
	"GET /api/v1/messages/{id}/history":           "GET /messages/{id}/history",
	"GET /api/v1/sent":                            "GET /sent",
	"POST /api/v1/sent/{id}/recall":               "POST /sent/{id}/recall",
	"GET /api/v1/admin/policy":                    "GET /admin/policy",
	"PUT /api/v1/admin/policy":                    "POST /admin/policy",
	"GET /api/v1/admin/policy/versions":           "GET /admin/policy",
	"POST /api/v1/admin/policy/rollback":          "POST /admin/policy",
	"POST /api/v1/admin/policy/explain":           "POST /admin/policy",
	"GET /api/v1/admin/quarantine":                "GET /admin/quarantine",
	"POST /api/v1/admin/quarantine/{id}/{action}": "POST /admin/quarantine/{id}/{action}",
	"PUT /api/v1/admin/recipient-keys":            "POST /admin/keys",
	"PUT /api/v1/account/key":                     "POST /account/key",
	"GET /api/v1/push":                            "GET /account",
	"POST /api/v1/push/devices":                   "POST /account/push",
	"DELETE /api/v1/push/devices/{id}":            "POST /account/push/{id}/delete",
	"GET /api/v1/account/notifications":           "GET /account",
	"PUT /api/v1/account/notifications":           "POST /account/notifications",
	"GET /api/v1/admin/notices":                   "GET /admin/notices",
	"POST /api/v1/admin/notices/{id}/retry":       "POST /admin/notices/{id}/retry",
	"POST /api/v1/sent/{id}/resend":               "POST /sent/{id}/resend",
	"GET /api/v1/admin/compliance":                "GET /admin/compliance",
}

// apiOnly are API routes with no page twin, or served by the very same
// handler as their page (so nothing can drift apart).
var apiOnly = map[string]string{
	"POST /api/v1/session/keepalive":              "the page's keep-alive is the same handler",
	"GET /api/v1/messages/{id}/attachments/{aid}": "the page's download is the same handler",
	"GET /api/v1/audit/export":                    "the page's export is the same handler",
	"GET /api/v1/admin/policy/diff":               "no page shows a diff yet",
}

// faceForbidden are what only operations may touch: a face that reaches
// for them is doing an operation's work (a check, a change, an audit
// entry) that its twin would then lack.
var faceForbidden = map[string]bool{"Store": true, "Identity": true, "Limiter": true, "Trail": true, "Intake": true,
	"PolicyVersions": true, "Push": true, "Sessions": true, "Audit": true, "audit": true, "auditAs": true}

// portalSource parses the package's own (non-test) files.
func portalSource(t *testing.T) (map[string]*ast.FuncDecl, map[string]string) {
	t.Helper()
	fset := token.NewFileSet()
	files, _ := filepath.Glob("*.go")
	methods := map[string]*ast.FuncDecl{}
	routes := map[string]string{} // "METHOD /path" -> handler method name
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
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv != nil {
				methods[fd.Name.Name] = fd
			}
		}
		// Route registrations: h("METHOD /path", perm, s.handler) and
		// hb("METHOD /path", perm, body, s.handler).
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) < 3 {
				return true
			}
			fn, ok := call.Fun.(*ast.Ident)
			if !ok || (fn.Name != "h" && fn.Name != "hb") {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			sel, ok2 := call.Args[len(call.Args)-1].(*ast.SelectorExpr)
			if !ok || !ok2 || lit.Kind != token.STRING {
				return true
			}
			pattern, _ := strconv.Unquote(lit.Value)
			routes[pattern] = sel.Sel.Name
			return true
		})
	}
	return methods, routes
}

// calledOn lists the s.<name> selectors used in fd's body (calls and
// fields alike).
func calledOn(fd *ast.FuncDecl) []string {
	recv := ""
	if len(fd.Recv.List) > 0 && len(fd.Recv.List[0].Names) > 0 {
		recv = fd.Recv.List[0].Names[0].Name
	}
	var out []string
	ast.Inspect(fd.Body, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == recv {
				out = append(out, sel.Sel.Name)
			}
		}
		return true
	})
	return out
}

func isOp(name string) bool {
	return strings.HasPrefix(name, "op") && len(name) > 2 && name[2] >= 'A' && name[2] <= 'Z'
}

// opsReached is every operation fd calls, directly or through the
// package's own methods (render helpers, page data builders).
func opsReached(methods map[string]*ast.FuncDecl, fd *ast.FuncDecl) map[string]bool {
	ops, seen := map[string]bool{}, map[string]bool{}
	var walk func(fd *ast.FuncDecl, depth int)
	walk = func(fd *ast.FuncDecl, depth int) {
		for _, name := range calledOn(fd) {
			if isOp(name) {
				ops[name] = true
				continue
			}
			if m, ok := methods[name]; ok && !seen[name] && depth < 4 {
				seen[name] = true
				walk(m, depth+1)
			}
		}
	}
	walk(fd, 0)
	return ops
}

// TestFacesAreThin is the guard of issue 13.11: every API route either
// has a page twin (twins) or is listed as API-only; an API face calls
// exactly one operation and its page twin reaches the same one; neither
// face touches the store, identity, limiter, trail, sessions or audit
// itself, so no check can live in one face only.
func TestFacesAreThin(t *testing.T) {
	methods, routes := portalSource(t)
	if len(routes) < 60 {
		t.Fatalf("found only %d route registrations; has the route table's shape changed?", len(routes))
	}
	var apis []string
	for pattern := range routes {
		if strings.Contains(pattern, " /api/") {
			apis = append(apis, pattern)
		}
	}
	sort.Strings(apis)
	for _, api := range apis {
		if _, ok := apiOnly[api]; ok {
			continue
		}
		page, ok := twins[api]
		if !ok {
			t.Errorf("%s: no page twin named in twins and not in apiOnly (ops_test.go): "+
				"if a page does the same, both must call one operation (ops.go)", api)
			continue
		}
		pageH, ok := routes[page]
		if !ok {
			t.Errorf("%s: its twin %s is not registered", api, page)
			continue
		}
		apiFn, pageFn := methods[routes[api]], methods[pageH]
		if apiFn == nil || pageFn == nil {
			t.Errorf("%s / %s: handler not found", api, page)
			continue
		}
		var apiOps []string
		for _, name := range calledOn(apiFn) {
			if isOp(name) {
				apiOps = append(apiOps, name)
			}
		}
		if len(apiOps) != 1 {
			t.Errorf("%s (%s) calls %d operations %v, want exactly one", api, apiFn.Name.Name, len(apiOps), apiOps)
			continue
		}
		if !opsReached(methods, pageFn)[apiOps[0]] {
			t.Errorf("%s (%s) calls %s, but its page twin %s (%s) does not reach it", api, apiFn.Name.Name, apiOps[0], page, pageH)
		}
		for _, fn := range []*ast.FuncDecl{apiFn, pageFn} {
			for _, name := range calledOn(fn) {
				if faceForbidden[name] {
					t.Errorf("%s uses s.%s itself: that belongs in an operation", fn.Name.Name, name)
				}
			}
		}
	}
	for api := range twins {
		if _, ok := routes[api]; !ok {
			t.Errorf("twins names %s, which is not registered", api)
		}
	}
}
