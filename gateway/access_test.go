package gateway_test

import (
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/e2e"
)

// claimNew sends one message to rcpt and claims the account; it returns a
// signed-in client and the message id.
func claimNew(t *testing.T, h *e2e.Harness, pass, rcpt, password string) (*e2e.Client, string) {
	t.Helper()
	before := len(h.Notices())
	msg := e2e.Multipart(staff, "Dr Lee", rcpt, "For "+rcpt, "body for "+rcpt, "<p>x</p>", "f.txt", []byte("data"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{rcpt}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	files := h.WaitNotices(before + 1)
	c := h.Client()
	c.JSON("POST", "/api/v1/claim", map[string]string{"token": e2e.ClaimToken(t, files[before]), "password": password}, 200, nil)
	var list listJSON
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != 1 {
		t.Fatalf("%s has %d messages", rcpt, len(list.Messages))
	}
	return c, list.Messages[0].ID
}

func TestAccessControl(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	alice, aliceMsg := claimNew(t, h, pass, "alice@example.net", "violet canyon ember 31")
	bob, bobMsg := claimNew(t, h, pass, "bob@example.org", "orchid tundra signal 58")

	t.Run("one recipient's cookie cannot read another's message", func(t *testing.T) {
		for _, p := range []string{"/api/v1/messages/" + bobMsg, "/api/v1/messages/" + bobMsg + "/attachments/0"} {
			if st, _, b := alice.Do("GET", p, nil, nil); st != 404 || strings.Contains(string(b), "bob") {
				t.Errorf("alice GET %s: %d %s", p, st, b)
			}
		}
		for _, p := range []string{"/messages/" + bobMsg, "/messages/" + bobMsg + "/content"} {
			if st, _, b := alice.Do("GET", p, nil, nil); st != 404 || strings.Contains(string(b), "body for bob") {
				t.Errorf("alice GET %s: %d", p, st)
			}
		}
		if st, _, _ := bob.Do("GET", "/api/v1/messages/"+aliceMsg, nil, nil); st != 404 {
			t.Errorf("bob reads alice's message: %d", st)
		}
		// Staff have no access to patients' messages through the portal.
		s, _ := signInStaff(t, h, staff, "staff portal password 123", time.Now())
		if st, _, _ := s.Do("GET", "/api/v1/messages/"+aliceMsg, nil, nil); st != 404 {
			t.Errorf("staff reads a patient's message: %d", st)
		}
	})
	t.Run("no session, no data", func(t *testing.T) {
		anon := h.Client()
		for _, p := range []string{"/api/v1/messages", "/api/v1/messages/" + aliceMsg} {
			if st, _, _ := anon.Do("GET", p, nil, nil); st != 401 {
				t.Errorf("anonymous GET %s: %d", p, st)
			}
		}
		if st, hdr, _ := anon.Do("GET", "/messages/"+aliceMsg, nil, nil); st != 303 || !strings.HasPrefix(hdr.Get("Location"), "/login") {
			t.Errorf("anonymous page: %d %s", st, hdr.Get("Location"))
		}
		forged := h.Client()
		forged.HTTP.Jar.SetCookies(mustURL(h.BaseURL), nil)
		st, _, _ := forged.Do("GET", "/api/v1/messages", nil, map[string]string{"Cookie": "__Host-phigate=abc.AAAA"})
		if st != 401 {
			t.Errorf("forged cookie: %d", st)
		}
	})
	t.Run("used claim token fails", func(t *testing.T) {
		before := len(h.Notices())
		msg := e2e.Multipart(staff, "Dr Lee", "carol@example.net", "s", "b", "<p>h</p>", "f", []byte("d"))
		if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"carol@example.net"}, Msg: msg}); err != nil {
			t.Fatal(err)
		}
		token := e2e.ClaimToken(t, h.WaitNotices(before + 1)[before])
		c := h.Client()
		c.JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": "copper meadow violin 12"}, 200, nil)
		again := h.Client()
		again.JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": "attacker's password!"}, 410, nil)
		if st, _, _ := again.Do("GET", "/claim/"+token, nil, nil); st != 410 {
			t.Errorf("claim page for a used token: %d", st)
		}
		again.JSON("POST", "/api/v1/claim", map[string]string{"token": "not-a-real-token-at-all-xxxxxxxx", "password": "attacker's password!"}, 410, nil)
		again.JSON("POST", "/api/v1/login", map[string]string{"email": "carol@example.net", "password": "attacker's password!"}, 401, nil)
	})
	t.Run("cross-origin requests are refused", func(t *testing.T) {
		c := h.Client()
		st, _, _ := c.Do("POST", "/api/v1/login", map[string]string{"email": "alice@example.net", "password": "violet canyon ember 31"},
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
		if st != 403 {
			t.Errorf("cross-site login: %d", st)
		}
		st, _, _ = alice.Do("POST", "/logout", "", map[string]string{"Origin": "https://evil.example"})
		if st != 403 {
			t.Errorf("cross-origin logout: %d", st)
		}
	})
	t.Run("one session per user", func(t *testing.T) {
		second := h.Client()
		second.JSON("POST", "/api/v1/login", map[string]string{"email": "alice@example.net", "password": "violet canyon ember 31"}, 200, nil)
		if st, _, _ := alice.Do("GET", "/api/v1/messages", nil, nil); st != 401 {
			t.Errorf("older session still works: %d", st)
		}
		second.JSON("GET", "/api/v1/messages", nil, 200, nil)
	})
	t.Run("wrong password", func(t *testing.T) {
		h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "bob@example.org", "password": "not bob's password"}, 401, nil)
		h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "nobody@example.org", "password": "whatever password"}, 401, nil)
	})
}

func TestIdleTimeout(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Session.IdleTimeout.Duration = 700 * time.Millisecond
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	c, id := claimNew(t, h, pass, "idle@example.net", "silver walrus pantry 9")
	// Activity slides the window.
	for i := 0; i < 3; i++ {
		time.Sleep(300 * time.Millisecond)
		c.JSON("GET", "/api/v1/messages/"+id, nil, 200, nil)
	}
	time.Sleep(900 * time.Millisecond)
	var e struct{ Error string }
	c.JSON("GET", "/api/v1/messages", nil, 401, &e)
	if e.Error != "session_expired" {
		t.Errorf("error %q", e.Error)
	}
	if st, hdr, _ := c.Do("GET", "/inbox", nil, nil); st != 303 || !strings.HasPrefix(hdr.Get("Location"), "/login") {
		t.Errorf("page after idle: %d %s", st, hdr.Get("Location"))
	}
}

// TestRestart: a stored message, the account and the password survive a
// restart of the server on the same data folder.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	h := e2e.Start(t, e2e.Config(dir))
	pass := h.AddStaff(staff)
	_, id := claimNew(t, h, pass, "dave@example.net", "granite pelican moss 64")
	// A second message stays pending in the portal across the restart.
	msg := e2e.Multipart(staff, "Dr Lee", "dave@example.net", "second", "second body", "<p>2</p>", "g.txt", []byte("more"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"dave@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	h.Stop()

	h2 := e2e.Start(t, e2e.Config(dir))
	c := h2.Client()
	c.JSON("POST", "/api/v1/login", map[string]string{"email": "dave@example.net", "password": "granite pelican moss 64"}, 200, nil)
	var list listJSON
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != 2 {
		t.Fatalf("after restart: %d messages", len(list.Messages))
	}
	var m msgJSON
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, &m)
	if m.Text != "body for dave@example.net" || m.Signature != "verified" {
		t.Errorf("after restart: %q %s", m.Text, m.Signature)
	}
	// The old app password still works against the new process.
	if err := e2e.Send(e2e.SendOptions{Addr: h2.SMTP, User: staff, Pass: pass, From: staff, To: []string{"dave@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
}

// TestLogoffReasonsLogged: every way a session ends leaves a "logoff" line
// with its reason (issue #3, 9).
func TestLogoffReasonsLogged(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Session.IdleTimeout.Duration = 500 * time.Millisecond
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	c, _ := claimNew(t, h, pass, "logs@example.net", patientPW)
	h.Client().JSON("POST", "/api/v1/login", map[string]string{"email": "logs@example.net", "password": patientPW}, 200, nil)
	c2 := h.Client()
	c2.JSON("POST", "/api/v1/login", map[string]string{"email": "logs@example.net", "password": patientPW}, 200, nil)
	c2.JSON("POST", "/api/v1/logout", nil, 204, nil)
	c3 := h.Client()
	c3.JSON("POST", "/api/v1/login", map[string]string{"email": "logs@example.net", "password": patientPW}, 200, nil)
	time.Sleep(700 * time.Millisecond)
	c3.JSON("GET", "/api/v1/messages", nil, 401, nil)
	_ = c
	for _, reason := range []string{"replaced", "user", "idle"} {
		if !strings.Contains(string(h.Logs.Bytes()), `msg=logoff reason=`+reason) {
			t.Errorf("no logoff line with reason %s", reason)
		}
	}
}
