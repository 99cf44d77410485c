package gateway_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/portal"
	"github.com/phigate/phigate/store"
)

// TestRouteTable walks every route of the portal with every role and checks
// that exactly the roles its permission names get through (issue #3, 6).
func TestRouteTable(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	patient, msgID := claimNew(t, h, pass, "routes@example.net", patientPW)
	_ = patient
	ctx := t.Context()
	for email, role := range map[string]string{"admin@clinic.example": store.RoleAdmin, "so@clinic.example": store.RoleSecurity} {
		if _, err := h.G.Identity.AddUser(ctx, email, role, adminPW); err != nil {
			t.Fatal(err)
		}
	}
	staffUser, _ := h.G.Identity.UserByEmail(ctx, staff)

	// A fake clock for the second factor: each sign-in uses a fresh step.
	clock := time.Now()
	h.G.Identity.Now = func() time.Time { return clock }
	secrets := map[string]string{}
	type who struct{ email, pw string }
	people := map[string]who{
		store.RolePatient:  {"routes@example.net", patientPW},
		store.RoleStaff:    {staff, "staff portal password 123"},
		store.RoleAdmin:    {"admin@clinic.example", adminPW},
		store.RoleSecurity: {"so@clinic.example", adminPW},
	}
	signIn := func(role string) *e2e.Client {
		p := people[role]
		c := h.Client()
		var in struct{ Next string }
		c.JSON("POST", "/api/v1/login", map[string]string{"email": p.email, "password": p.pw}, 200, &in)
		clock = clock.Add(30 * time.Second)
		switch in.Next {
		case "enrol":
			secrets[role], _ = c.EnrolTOTP(clock)
		case "2fa":
			c.JSON("POST", "/api/v1/login/2fa", map[string]string{"code": e2e.TOTPCode(t, secrets[role], clock)}, 200, nil)
		}
		return c
	}
	clients := map[string]*e2e.Client{}
	for role := range people {
		clients[role] = signIn(role)
	}
	allows := func(p portal.Perm, role string) bool {
		switch p {
		case portal.PermPublic, portal.PermSession, portal.PermOwn:
			return role != ""
		case portal.PermAdmin:
			return role == store.RoleAdmin
		case portal.PermBreakGlass, portal.PermReview:
			return role == store.RoleAdmin || role == store.RoleSecurity
		}
		return false
	}
	fill := func(pattern string) string {
		r := strings.NewReplacer("{id}", msgID, "{aid}", "0", "{token}", "not-a-token", "{action}", "noop", "{$}", "")
		if strings.HasPrefix(pattern, "/admin/users/") || strings.HasPrefix(pattern, "/api/v1/admin/users/") {
			r = strings.NewReplacer("{id}", staffUser.ID, "{action}", "noop")
		}
		return r.Replace(pattern)
	}
	routes := h.G.Portal.Routes()
	if len(routes) < 40 {
		t.Fatalf("only %d routes", len(routes))
	}
	for _, rt := range routes {
		if rt.Perm == portal.PermNone {
			t.Errorf("%s %s has no permission", rt.Method, rt.Pattern)
		}
		path := fill(rt.Pattern)
		for _, role := range []string{"", store.RolePatient, store.RoleStaff, store.RoleAdmin, store.RoleSecurity} {
			c := h.Client()
			if role != "" {
				c = clients[role]
			}
			var body any
			if rt.Method == "POST" {
				body = map[string]string{}
				if !strings.HasPrefix(path, "/api/") {
					body = ""
				}
			}
			st, hdr, _ := c.Do(rt.Method, path, body, nil)
			loc := hdr.Get("Location")
			// Signing out sends the browser to the sign-in page with the
			// reason; that is the route doing its job, not a refusal.
			signedOut := strings.HasPrefix(loc, "/login?ended=user") || strings.HasPrefix(loc, "/login?ended=everywhere")
			refused := st == http.StatusUnauthorized || st == http.StatusForbidden ||
				(st == http.StatusSeeOther && !signedOut && (strings.HasPrefix(loc, "/login") || strings.HasPrefix(loc, "/account/2fa")))
			switch {
			case rt.Perm == portal.PermPublic:
				if st == http.StatusForbidden {
					t.Errorf("%s %s as %q: 403 on a public route", rt.Method, path, role)
				}
			case allows(rt.Perm, role) && refused:
				t.Errorf("%s %s as %q: refused (%d %s), but %s allows it", rt.Method, path, role, st, loc, rt.Perm)
			case !allows(rt.Perm, role) && !refused:
				t.Errorf("%s %s as %q: got %d, but %s does not allow it", rt.Method, path, role, st, rt.Perm)
			}
			// Routes that end the session (sign out) need a fresh one.
			if role != "" {
				if st, _, _ := clients[role].Do("GET", "/api/v1/account", nil, nil); st != 200 {
					clients[role] = signIn(role)
				}
			}
		}
	}
}
