package gateway_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/store"
)

// A password strong enough for the policy, distinct per use.
const (
	patientPW = "maple river lantern 42"
	adminPW   = "quiet orbit pebble stove"
)

// signInStaff signs a staff/admin account in through the API with its
// second factor (enrolling on first sign-in) and returns the client.
func signInStaff(t *testing.T, h *e2e.Harness, email, pw string, at time.Time) (*e2e.Client, string) {
	c, secret, _ := signInStaffCodes(t, h, email, pw, at)
	return c, secret
}

func signInStaffCodes(t *testing.T, h *e2e.Harness, email, pw string, at time.Time) (*e2e.Client, string, []string) {
	t.Helper()
	c := h.Client()
	var in struct{ Next string }
	c.JSON("POST", "/api/v1/login", map[string]string{"email": email, "password": pw}, 200, &in)
	if in.Next != "enrol" {
		t.Fatalf("first sign-in of %s: next=%q, want enrol", email, in.Next)
	}
	// Until enrolled, nothing but the enrolment is open.
	if st, _, b := c.Do("GET", "/api/v1/messages", nil, nil); st != 403 || !bytes.Contains(b, []byte("mfa_enrolment_required")) {
		t.Fatalf("before enrolment: %d %s", st, b)
	}
	secret, codes := c.EnrolTOTP(at)
	if len(codes) != 10 {
		t.Fatalf("%d recovery codes, want 10", len(codes))
	}
	c.JSON("GET", "/api/v1/messages", nil, 200, nil)
	return c, secret, codes
}

func addAdmin(t *testing.T, h *e2e.Harness, email string) {
	t.Helper()
	if _, err := h.G.Identity.AddUser(context.Background(), email, store.RoleAdmin, adminPW); err != nil {
		t.Fatal(err)
	}
}

func TestSecondFactor(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	addAdmin(t, h, "admin@clinic.example")
	now := time.Now()
	_, secret, codes := signInStaffCodes(t, h, "admin@clinic.example", adminPW, now)

	c := h.Client()
	var in struct{ Next string }
	c.JSON("POST", "/api/v1/login", map[string]string{"email": "admin@clinic.example", "password": adminPW}, 200, &in)
	if in.Next != "2fa" {
		t.Fatalf("next=%q, want 2fa", in.Next)
	}
	if st, _, _ := c.Do("GET", "/api/v1/messages", nil, nil); st != 403 {
		t.Fatalf("password alone opened messages: %d", st)
	}
	// The enrolment used the current step: the same code is a replay.
	c.JSON("POST", "/api/v1/login/2fa", map[string]string{"code": e2e.TOTPCode(t, secret, now)}, 401, nil)
	next := e2e.TOTPCode(t, secret, now.Add(30*time.Second))
	c.JSON("POST", "/api/v1/login/2fa", map[string]string{"code": next}, 200, nil)
	c.JSON("GET", "/api/v1/messages", nil, 200, nil)

	// Replay on another client: refused.
	c2 := h.Client()
	c2.JSON("POST", "/api/v1/login", map[string]string{"email": "admin@clinic.example", "password": adminPW}, 200, nil)
	c2.JSON("POST", "/api/v1/login/2fa", map[string]string{"code": next}, 401, nil)
	// A recovery code works once.
	c2.JSON("POST", "/api/v1/login/2fa", map[string]string{"code": codes[0]}, 200, nil)
	c2.JSON("GET", "/api/v1/messages", nil, 200, nil)
	c3 := h.Client()
	c3.JSON("POST", "/api/v1/login", map[string]string{"email": "admin@clinic.example", "password": adminPW}, 200, nil)
	c3.JSON("POST", "/api/v1/login/2fa", map[string]string{"code": codes[0]}, 401, nil)
	c3.JSON("POST", "/api/v1/login/2fa", map[string]string{"code": strings.ToUpper(codes[1])}, 200, nil)
	// c3's sign-in replaced c2's session.
	var e struct{ Error, Reason string }
	c2.JSON("GET", "/api/v1/messages", nil, 401, &e)
	if e.Reason != "replaced" {
		t.Errorf("older session: %+v, want reason replaced", e)
	}
}

func TestLockout(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Security.IPMaxFailures = 1000
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	c, _ := claimNew(t, h, pass, "lock@example.net", patientPW)
	c.JSON("POST", "/api/v1/logout", nil, 204, nil)
	for i := 0; i < 4; i++ {
		h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "lock@example.net", "password": "wrong password " + strings.Repeat("x", i)}, 401, nil)
	}
	// The fifth failure locks; then even the right password is refused.
	h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "lock@example.net", "password": "still wrong password"}, 401, nil)
	var e struct{ Error, Message string }
	h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "LOCK@example.net", "password": patientPW}, 423, &e)
	if e.Error != "locked" || !strings.Contains(e.Message, "locked") {
		t.Errorf("locked answer: %+v", e)
	}
	if !bytes.Contains(h.Logs.Bytes(), []byte(`msg="account locked"`)) {
		t.Error("lock-out not logged")
	}
	// An admin unlocks it.
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	u, err := h.G.Identity.UserByEmail(context.Background(), "lock@example.net")
	if err != nil {
		t.Fatal(err)
	}
	admin.JSON("POST", "/api/v1/admin/users/"+u.ID+"/unlock", nil, 200, nil)
	h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "lock@example.net", "password": patientPW}, 200, nil)
}

func TestIPThrottle(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Security.IPMaxFailures = 6
	h := e2e.Start(t, cfg)
	// Many accounts from one address: throttled after the budget.
	for i := 0; i < 6; i++ {
		h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "user" + string(rune('a'+i)) + "@example.net", "password": "guess guess guess"}, 401, nil)
	}
	st, hdr, _ := h.Client().Do("POST", "/api/v1/login", map[string]string{"email": "another@example.net", "password": "guess guess guess"}, nil)
	if st != 429 || hdr.Get("Retry-After") == "" {
		t.Errorf("after the per-IP budget: %d, Retry-After %q", st, hdr.Get("Retry-After"))
	}
}

func TestPasswordPolicy(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	msg := e2e.Multipart(staff, "Dr Lee", "jane.doe@example.net", "s", "b", "<p>h</p>", "f", []byte("d"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"jane.doe@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	token := e2e.ClaimToken(t, h.WaitNotices(1)[0])
	c := h.Client()
	for pw, want := range map[string]string{
		"short pw":              "at least 12",
		"password1234":          "guess",
		"janedoe-springtime-77": "email",
	} {
		var e struct{ Error, Message string }
		c.JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": pw}, 400, &e)
		if e.Error != "weak_password" || !strings.Contains(strings.ToLower(e.Message), want) {
			t.Errorf("%q: %+v, want a message about %q", pw, e, want)
		}
	}
	c.JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": patientPW}, 200, nil)
}

// TestResetAndRecovery: a forgotten password gets a new key; messages sent
// before stay locked (never lost) until an admin recovers them with the
// escrow key; then they read again.
func TestResetAndRecovery(t *testing.T) {
	dir := t.TempDir()
	h := e2e.Start(t, e2e.Config(dir))
	pass := h.AddStaff(staff)
	c, id := claimNew(t, h, pass, "rita@example.net", patientPW)
	c.JSON("POST", "/api/v1/logout", nil, 204, nil)

	before := len(h.Notices())
	var ack struct{ Message string }
	h.Client().JSON("POST", "/api/v1/reset", map[string]string{"email": "rita@example.net"}, 202, &ack)
	h.Client().JSON("POST", "/api/v1/reset", map[string]string{"email": "nobody@example.net"}, 202, &ack)
	notice := h.WaitNotices(before + 1)[before]
	raw, _ := os.ReadFile(notice)
	tok := regexpFind(t, raw, `/reset/([A-Za-z0-9_-]{20,})`)
	if n := len(h.Notices()); n != before+1 {
		t.Errorf("%d reset notices, want 1 (none for an unknown address)", n-before)
	}
	// None of the last passwords again.
	h.Client().JSON("POST", "/api/v1/reset/complete", map[string]string{"token": tok, "password": patientPW}, 400, nil)
	h.Client().JSON("POST", "/api/v1/reset/complete", map[string]string{"token": tok, "password": "brand new harbor kite 7"}, 204, nil)
	h.Client().JSON("POST", "/api/v1/reset/complete", map[string]string{"token": tok, "password": "another harbor kite 8"}, 410, nil)

	c = h.Client()
	c.JSON("POST", "/api/v1/login", map[string]string{"email": "rita@example.net", "password": "brand new harbor kite 7"}, 200, nil)
	var list struct {
		Messages []struct {
			ID     string
			Locked bool
		}
	}
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != 1 || !list.Messages[0].Locked {
		t.Fatalf("after reset: %+v", list)
	}
	c.JSON("GET", "/api/v1/messages/"+id, nil, 409, nil)

	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	key, _ := os.ReadFile(filepath.Join(dir, "escrow-private.asc"))
	pp, _ := os.ReadFile(filepath.Join(dir, "escrow-passphrase.txt"))
	admin.JSON("POST", "/api/v1/admin/recover", map[string]string{"email": "rita@example.net", "escrow_key": string(key), "passphrase": "wrong"}, 400, nil)
	var rec struct{ Recovered int }
	admin.JSON("POST", "/api/v1/admin/recover", map[string]string{"email": "rita@example.net", "escrow_key": string(key),
		"passphrase": strings.TrimSpace(string(pp))}, 200, &rec)
	if rec.Recovered != 1 {
		t.Fatalf("recovered %d", rec.Recovered)
	}
	var m msgJSON
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, &m)
	if m.Signature != "verified" || !strings.Contains(m.Text, "body for rita@example.net") {
		t.Errorf("after recovery: %+v", m)
	}
}

func TestDisableEndsEverything(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	addAdmin(t, h, "admin@clinic.example")
	now := time.Now()
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, now)
	staffClient, _ := signInStaff(t, h, staff, "staff portal password 123", now)
	u, _ := h.G.Identity.UserByEmail(context.Background(), staff)
	admin.JSON("POST", "/api/v1/admin/users/"+u.ID+"/disable", nil, 200, nil)
	var e struct{ Error, Reason string }
	staffClient.JSON("GET", "/api/v1/messages", nil, 401, &e)
	if e.Reason != "disabled" {
		t.Errorf("disabled session: %+v", e)
	}
	err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"x@example.net"}, Msg: []byte("Subject: x\r\n\r\nx\r\n")})
	if e2e.Code(err) != 535 {
		t.Errorf("app password of a disabled account: %v", err)
	}
	h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": staff, "password": "staff portal password 123"}, 401, nil)
	admin.JSON("POST", "/api/v1/admin/users/"+u.ID+"/enable", nil, 200, nil)
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"x@example.net"}, Msg: []byte("Subject: x\r\n\r\nx\r\n")}); e2e.Code(err) != 535 {
		t.Errorf("revoked app password came back with enable: %v", err)
	}
	// The last admin cannot be disabled.
	me, _ := h.G.Identity.UserByEmail(context.Background(), "admin@clinic.example")
	admin.JSON("POST", "/api/v1/admin/users/"+me.ID+"/disable", nil, 400, nil)
}

func TestBreakGlass(t *testing.T) {
	dir := t.TempDir()
	h := e2e.Start(t, e2e.Config(dir))
	pass := h.AddStaff(staff)
	_, id := claimNew(t, h, pass, "bg@example.net", patientPW)
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	key, _ := os.ReadFile(filepath.Join(dir, "escrow-private.asc"))
	pp, _ := os.ReadFile(filepath.Join(dir, "escrow-passphrase.txt"))
	req := map[string]string{"message_id": id, "reason": "short", "escrow_key": string(key), "passphrase": strings.TrimSpace(string(pp))}
	admin.JSON("POST", "/api/v1/admin/break-glass", req, 400, nil)
	before := len(h.Notices())
	req["reason"] = "Patient unconscious in ED, need the referral letter"
	var out struct {
		BreakGlass bool    `json:"break_glass"`
		Message    msgJSON `json:"message"`
	}
	admin.JSON("POST", "/api/v1/admin/break-glass", req, 200, &out)
	if !out.BreakGlass || !strings.Contains(out.Message.Text, "body for bg@example.net") {
		t.Fatalf("break-glass view: %+v", out)
	}
	alert, _ := os.ReadFile(h.WaitNotices(before + 1)[before])
	for _, must := range []string{"security@clinic.example", "Break-glass access", id} {
		if !bytes.Contains(alert, []byte(must)) {
			t.Errorf("alert lacks %q", must)
		}
	}
	for _, never := range []string{"bg@example.net", "unconscious", "body for"} {
		if bytes.Contains(alert, []byte(never)) {
			t.Errorf("alert leaks %q", never)
		}
	}
	// Staff and patients have no break-glass.
	staffClient, _ := signInStaff(t, h, staff, "staff portal password 123", time.Now())
	staffClient.JSON("POST", "/api/v1/admin/break-glass", req, 403, nil)
}
