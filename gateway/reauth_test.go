package gateway_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/e2e"
)

// TestFactorChangeAsksCurrentFactor (issue 8.9): a signed-in session, say
// one left open or a stolen cookie, cannot replace the second factor or
// the recovery codes without a current factor: through the API or the
// pages, with nothing, or a wrong one, the change is refused and nothing
// changes; with the current code or a recovery code it goes through. A
// signed-in patient without a factor gives the password to add one.
func TestFactorChangeAsksCurrentFactor(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	addAdmin(t, h, "admin@clinic.example")
	now := time.Now()
	c, secret, codes := signInStaffCodes(t, h, "admin@clinic.example", adminPW, now)
	var e struct{ Error string }
	var got struct {
		Codes []string `json:"recovery_codes"`
	}

	t.Run("API recovery codes", func(t *testing.T) {
		c.JSON("POST", "/api/v1/account/recovery-codes", map[string]string{}, 400, &e)
		if e.Error != "reauth_required" {
			t.Errorf("without a current factor: %+v", e)
		}
		c.JSON("POST", "/api/v1/account/recovery-codes", map[string]string{"current": "123456"}, 401, &e)
		if e.Error != "bad_current_factor" {
			t.Errorf("with a wrong code: %+v", e)
		}
		c.JSON("POST", "/api/v1/account/recovery-codes", map[string]string{"current": codes[0]}, 200, &got)
		if len(got.Codes) != 10 {
			t.Fatalf("%d new codes", len(got.Codes))
		}
		// The old codes are gone, the recovery code used is spent.
		c.JSON("POST", "/api/v1/account/recovery-codes", map[string]string{"current": codes[1]}, 401, nil)
		codes = got.Codes
	})

	t.Run("API re-enrolment", func(t *testing.T) {
		var setup struct{ Secret, Pending string }
		c.JSON("POST", "/api/v1/account/2fa/setup", nil, 200, &setup)
		confirm := func(current string) map[string]string {
			return map[string]string{"pending": setup.Pending, "code": e2e.TOTPCode(t, setup.Secret, now), "current": current}
		}
		c.JSON("POST", "/api/v1/account/2fa/confirm", confirm(""), 400, &e)
		if e.Error != "reauth_required" {
			t.Errorf("without a current factor: %+v", e)
		}
		c.JSON("POST", "/api/v1/account/2fa/confirm", confirm("000000"), 401, &e)
		// Still the old factor: a sign-in asks for its code.
		c.JSON("POST", "/api/v1/account/2fa/confirm", confirm(e2e.TOTPCode(t, secret, now.Add(30*time.Second))), 200, &got)
		if len(got.Codes) != 10 {
			t.Fatalf("%d recovery codes after re-enrolment", len(got.Codes))
		}
		secret, codes = setup.Secret, got.Codes
	})

	t.Run("pages", func(t *testing.T) {
		st, _, b := c.Do("POST", "/account/recovery-codes", "current=", nil)
		if st != 400 || !strings.Contains(string(b), "confirm it is you") {
			t.Errorf("recovery codes page without a current factor: %d %.300s", st, b)
		}
		st, _, b = c.Do("POST", "/account/recovery-codes", "current=not-a-code", nil)
		if st != 401 || !strings.Contains(string(b), "not right") {
			t.Errorf("recovery codes page with a wrong factor: %d", st)
		}
		st, _, b = c.Do("POST", "/account/recovery-codes", "current="+url.QueryEscape(codes[0]), nil)
		if st != 200 || !strings.Contains(string(b), "Save your recovery codes") {
			t.Errorf("recovery codes page with a recovery code: %d", st)
		}
		st, _, page := c.Do("GET", "/account/2fa?again=1", nil, nil)
		if st != 200 || !strings.Contains(string(page), `name="current"`) {
			t.Fatalf("re-enrolment page does not ask for the current factor: %d", st)
		}
		pending := regexpFind(t, page, `name="pending" value="([^"]+)"`)
		// The key is shown in groups of four (issue 13.6).
		newSecret := strings.ReplaceAll(regexpFind(t, page, `<code class="secret">([A-Z2-7 ]+)</code>`), " ", "")
		form := url.Values{"pending": {pending}, "code": {e2e.TOTPCode(t, newSecret, now)}}
		st, _, b = c.Do("POST", "/account/2fa", form.Encode(), nil)
		if st != 400 || !strings.Contains(string(b), "confirm it is you") {
			t.Errorf("re-enrolment without a current factor: %d", st)
		}
		form.Set("current", e2e.TOTPCode(t, secret, now.Add(30*time.Second))) // the API re-enrolment used step(now)
		st, _, b = c.Do("POST", "/account/2fa", form.Encode(), nil)
		if st != 200 || !strings.Contains(string(b), "Save your recovery codes") {
			t.Errorf("re-enrolment with the current code: %d %.300s", st, b)
		}
	})

	t.Run("patient adding a factor gives the password", func(t *testing.T) {
		pass := h.AddStaff(staff)
		p, _ := claimNew(t, h, pass, "pat@example.net", patientPW)
		var setup struct{ Secret, Pending string }
		p.JSON("POST", "/api/v1/account/2fa/setup", nil, 200, &setup)
		body := map[string]string{"pending": setup.Pending, "code": e2e.TOTPCode(t, setup.Secret, now)}
		p.JSON("POST", "/api/v1/account/2fa/confirm", body, 400, &e)
		body["current"] = "not the password"
		p.JSON("POST", "/api/v1/account/2fa/confirm", body, 401, &e)
		body["current"] = patientPW
		p.JSON("POST", "/api/v1/account/2fa/confirm", body, 200, nil)
	})
}
