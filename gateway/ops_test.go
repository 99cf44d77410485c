package gateway_test

import (
	"context"
	"encoding/json"
	"html"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/internal/e2e"
)

// face is one request to one face of an operation: a page form (body a
// url-encoded string) or a JSON API call (body a value).
type face struct {
	method, path string
	body         any
}

// TestPortalOpsOneLayer (issue 13.11): every action a page and the JSON
// API both offer is one portal operation, so the same invalid or
// forbidden input is refused by both faces with the same status, the same
// plain words (the API's message is on the page), and valid input is
// accepted by both; the audit entries and the lock-out count are the same
// whichever face was used.
func TestPortalOpsOneLayer(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	pat, msgID := claimNew(t, h, pass, "twins@example.net", patientPW)
	addAdmin(t, h, "admin@clinic.example")
	now := time.Now()
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, now)
	adminUser, err := h.G.Identity.UserByEmail(context.Background(), "admin@clinic.example")
	if err != nil {
		t.Fatal(err)
	}
	anon := h.Client()

	refusals := []struct {
		name      string
		c         *e2e.Client
		page, api face
		status    int    // both faces; 0: any refusal, the same on both
		code      string // the API's error code
	}{
		{"sign-in, wrong password", anon,
			face{"POST", "/login", "email=twins%40example.net&password=not+the+password+1"},
			face{"POST", "/api/v1/login", map[string]string{"email": "twins@example.net", "password": "not the password 1"}},
			401, "bad_credentials"},
		{"reset, bad link", anon,
			face{"POST", "/reset/not-a-token", "password=a+long+new+password+9&confirm=a+long+new+password+9"},
			face{"POST", "/api/v1/reset/complete", map[string]string{"token": "not-a-token", "password": "a long new password 9"}},
			410, "bad_token"},
		{"open someone else's or no message", pat,
			face{"GET", "/messages/0123456789abcdef0123456789abcdef", nil},
			face{"GET", "/api/v1/messages/0123456789abcdef0123456789abcdef", nil},
			404, "not_found"},
		{"reply to no message", pat,
			face{"POST", "/messages/0123456789abcdef0123456789abcdef/reply", "text=hello"},
			face{"POST", "/api/v1/messages/0123456789abcdef0123456789abcdef/reply", map[string]string{"text": "hello"}},
			404, "not_found"},
		{"passcode of no message", pat,
			face{"POST", "/messages/0123456789abcdef0123456789abcdef/passcode", "code=123456"},
			face{"POST", "/api/v1/messages/0123456789abcdef0123456789abcdef/passcode", map[string]string{"code": "123456"}},
			404, "not_found"},
		{"recall by the recipient", pat,
			face{"POST", "/sent/" + msgID + "/recall", ""},
			face{"POST", "/api/v1/sent/" + msgID + "/recall", nil},
			404, "not_found"},
		{"resend by the recipient", pat,
			face{"POST", "/sent/" + msgID + "/resend", ""},
			face{"POST", "/api/v1/sent/" + msgID + "/resend", nil},
			404, "not_found"},
		{"history of a message one did not send", pat,
			face{"GET", "/messages/" + msgID + "/history", nil},
			face{"GET", "/api/v1/messages/" + msgID + "/history", nil},
			404, "not_found"},
		{"new recovery codes without the password", pat,
			face{"POST", "/account/recovery-codes", "current="},
			face{"POST", "/api/v1/account/recovery-codes", map[string]string{"current": ""}},
			400, "reauth_required"},
		{"own key that is not a key", pat,
			face{"POST", "/account/key", "key=not+a+key"},
			face{"PUT", "/api/v1/account/key", map[string]string{"key": "not a key"}},
			400, "bad_key"},
		{"notification choice that is not one", pat,
			face{"POST", "/account/notifications", "channels=fax"},
			face{"PUT", "/api/v1/account/notifications", map[string]string{"channels": "fax"}},
			400, "bad_channels"},
		{"create a patient account", admin,
			face{"POST", "/admin/users", "email=p1%40example.net&role=patient"},
			face{"POST", "/api/v1/admin/users", map[string]string{"email": "p1@example.net", "role": "patient"}},
			400, "bad_request"},
		{"action on no account", admin,
			face{"POST", "/admin/users/0123456789abcdef0123456789abcdef/disable", ""},
			face{"POST", "/api/v1/admin/users/0123456789abcdef0123456789abcdef/disable", nil},
			404, "not_found"},
		{"disable one's own account", admin,
			face{"POST", "/admin/users/" + adminUser.ID + "/disable", ""},
			face{"POST", "/api/v1/admin/users/" + adminUser.ID + "/disable", nil},
			400, "bad_request"},
		{"recover with a key that is not the escrow key", admin,
			face{"POST", "/admin/recover", "email=twins%40example.net&escrow_key=junk&passphrase=x"},
			face{"POST", "/api/v1/admin/recover", map[string]string{"email": "twins@example.net", "escrow_key": "junk", "passphrase": "x"}},
			400, "bad_escrow_key"},
		{"break-glass with a key that is not the escrow key", admin,
			face{"POST", "/admin/break-glass", "message=" + msgID + "&reason=patient+unconscious+in+ED&escrow_key=junk&passphrase=x"},
			face{"POST", "/api/v1/admin/break-glass", map[string]string{"message_id": msgID, "reason": "patient unconscious in ED", "escrow_key": "junk", "passphrase": "x"}},
			400, "bad_escrow_key"},
		{"audit search with a date that is not one", admin,
			face{"GET", "/admin/audit?from=yesterday", nil},
			face{"GET", "/api/v1/audit?from=yesterday", nil},
			400, "bad_request"},
		{"audit search for an address with no account", admin,
			face{"POST", "/admin/audit", "user=nobody%40example.net"},
			face{"GET", "/api/v1/audit?user=nobody%40example.net", nil},
			400, "bad_request"},
		{"policy that does not parse", admin,
			face{"POST", "/admin/policy", "do=apply&note=x&body=" + url.QueryEscape("[[rule]\nname = ")},
			face{"PUT", "/api/v1/admin/policy", map[string]string{"body": "[[rule]\nname = ", "note": "x"}},
			400, "invalid_policy"},
		{"roll back to no version", admin,
			face{"POST", "/admin/policy", "do=rollback&version=9999"},
			face{"POST", "/api/v1/admin/policy/rollback", map[string]int{"version": 9999}},
			404, "not_found"},
		{"explain for a recipient that is not an address", admin,
			face{"POST", "/admin/policy", "do=explain&from=dr.lee%40clinic.example&to=not+an+address"},
			face{"POST", "/api/v1/admin/policy/explain", map[string]any{"from": "dr.lee@clinic.example", "to": []string{"not an address"}}},
			400, "bad_request"},
		{"recipient key that is not a key", admin,
			face{"POST", "/admin/keys", "email=keyed%40example.net&key=junk"},
			face{"PUT", "/api/v1/admin/recipient-keys", map[string]string{"email": "keyed@example.net", "key": "junk"}},
			400, "bad_key"},
		{"retry a notice that did not fail", admin,
			face{"POST", "/admin/notices/0123456789abcdef/retry", ""},
			face{"POST", "/api/v1/admin/notices/0123456789abcdef/retry", nil},
			404, "not_found"},
		{"quarantine decision on no message", admin,
			face{"POST", "/admin/quarantine/0123456789abcdef0123456789abcdef/approve", "note=looked+at+it+carefully"},
			face{"POST", "/api/v1/admin/quarantine/0123456789abcdef0123456789abcdef/approve", map[string]string{"note": "looked at it carefully"}},
			0, ""},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			pst, _, pb := tc.c.Do(tc.page.method, tc.page.path, tc.page.body, nil)
			ast, _, ab := tc.c.Do(tc.api.method, tc.api.path, tc.api.body, nil)
			var e struct{ Error, Message string }
			if err := json.Unmarshal(ab, &e); err != nil || e.Message == "" {
				t.Fatalf("API %s %s: %d %s", tc.api.method, tc.api.path, ast, ab)
			}
			if pst != ast || (tc.status != 0 && ast != tc.status) || ast < 400 {
				t.Errorf("page %d, API %d (%s), want both %d", pst, ast, e.Error, tc.status)
			}
			if tc.code != "" && e.Error != tc.code {
				t.Errorf("API code %q, want %q", e.Error, tc.code)
			}
			// The same words: the API's message is what the page says.
			if !strings.Contains(string(pb), html.EscapeString(e.Message)) {
				t.Errorf("the page does not say the API's %q:\n%.2000s", e.Message, pb)
			}
		})
	}

	// One refused sign-in through each face: both count towards the
	// account's lock-out (the first case above, once per face).
	if n, _, err := h.G.Limiter.Status(context.Background(), hex32(h.G.Identity.Keys.EmailIndex("twins@example.net"))); err != nil || n != 2 {
		t.Errorf("lock-out count after one wrong password per face: %d %v, want 2", n, err)
	}

	// Valid input: both faces accept it and leave the same audit entries.
	staffC, _ := signInStaff(t, h, staff, staffPortalPW, time.Now())
	ids := []string{sendTo(t, h, pat, pass, "twins@example.net", "First of two"), sendTo(t, h, pat, pass, "twins@example.net", "Second of two")}
	accepted := []struct {
		name      string
		c         *e2e.Client
		page, api face
		pageSt    int
		apiSt     int
	}{
		{"recall", staffC, face{"POST", "/sent/" + ids[0] + "/recall", ""}, face{"POST", "/api/v1/sent/" + ids[1] + "/recall", nil}, 303, 200},
		{"create an account", admin, face{"POST", "/admin/users", "email=n1%40clinic.example&role=staff"},
			face{"POST", "/api/v1/admin/users", map[string]string{"email": "n2@clinic.example", "role": "staff"}}, 303, 201},
		{"notification choice", pat, face{"POST", "/account/notifications", "channels=email"},
			face{"PUT", "/api/v1/account/notifications", map[string]string{"channels": "email"}}, 303, 200},
		{"reply", pat, face{"POST", "/messages/" + msgID + "/reply", "text=thank+you"},
			face{"POST", "/api/v1/messages/" + msgID + "/reply", map[string]string{"text": "thank you"}}, 303, 200},
		{"audit search", admin, face{"GET", "/admin/audit?action=message.recall", nil}, face{"GET", "/api/v1/audit?action=message.recall", nil}, 200, 200},
		{"explain", admin, face{"POST", "/admin/policy", "do=explain&from=dr.lee%40clinic.example&to=pat%40example.net"},
			face{"POST", "/api/v1/admin/policy/explain", map[string]any{"from": "dr.lee@clinic.example", "to": []string{"pat@example.net"}}}, 200, 200},
	}
	for _, tc := range accepted {
		t.Run("accepted/"+tc.name, func(t *testing.T) {
			if st, hdr, b := tc.c.Do(tc.page.method, tc.page.path, tc.page.body, nil); st != tc.pageSt {
				t.Errorf("page: %d %s, want %d: %.500s", st, hdr.Get("Location"), tc.pageSt, b)
			}
			if st, _, b := tc.c.Do(tc.api.method, tc.api.path, tc.api.body, nil); st != tc.apiSt {
				t.Errorf("API: %d, want %d: %.500s", st, tc.apiSt, b)
			}
		})
	}
	for _, id := range ids {
		es, err := h.G.Trail.Search(context.Background(), audit.Query{Action: "message.recall", ObjectType: "message", ObjectID: id})
		if err != nil || len(es) != 1 || es[0].Outcome != "ok" {
			t.Errorf("message.recall entries for %s: %+v %v, want one, whichever face recalled it", id, es, err)
		}
	}
	for _, email := range []string{"n1@clinic.example", "n2@clinic.example"} {
		u, err := h.G.Identity.UserByEmail(context.Background(), email)
		if err != nil {
			t.Fatalf("%s: %v", email, err)
		}
		es, err := h.G.Trail.Search(context.Background(), audit.Query{Action: "user.create", ObjectType: "user", ObjectID: u.ID})
		if err != nil || len(es) != 1 || es[0].Actor != adminUser.ID {
			t.Errorf("user.create entries for %s: %+v %v", email, es, err)
		}
	}
}
