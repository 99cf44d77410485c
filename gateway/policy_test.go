package gateway_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/pgpmime"
)

const testPolicy = `[[rule]]
name = "internal"
when.recipient_domains = ["clinic.example"]
then.action = "relay"

[[rule]]
name = "blocked"
when.recipient_domains = ["badmail.example"]
then.action = "reject"
then.code = 550
then.reason = "Mail to this domain is blocked by Example Clinic policy"

[[rule]]
name = "hold-tagged"
when.subject_tag = "[hold]"
then.action = "quarantine"

[[rule]]
name = "no-exe"
when.attachment_types = [".exe"]
then.action = "reject"
then.reason = "Executable attachments are not allowed"

[default]
action = "portal"
expiry_days = 14
`

func TestPolicyActions(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())

	// A broken policy is refused with the line named.
	var bad struct{ Problems []string }
	admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": "[[rule]]\nname = \"x\"\nthen.action = \"mail\"\n[default]\naction = \"portal\"\n"}, 400, &bad)
	if len(bad.Problems) == 0 || !strings.Contains(bad.Problems[0], "line 1") {
		t.Errorf("problems: %v", bad.Problems)
	}
	var applied struct{ Version int64 }
	admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": testPolicy, "note": "test"}, 200, &applied)
	if applied.Version != 2 {
		t.Fatalf("version %d, want 2 (1 is the shipped default)", applied.Version)
	}

	send := func(to, subject, attName string) error {
		msg := e2e.Multipart(staff, "Dr Lee", to, subject, "hello", "<p>hello</p>", attName, []byte("data"))
		return e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{to}, Msg: msg})
	}
	// Envelope reject at RCPT, with the rule's reason.
	err := send("someone@badmail.example", "x", "a.txt")
	if e2e.Code(err) != 550 || !strings.Contains(err.Error(), "blocked by Example Clinic policy") {
		t.Errorf("blocked domain: %v", err)
	}
	// Content reject at DATA.
	err = send("p@example.net", "x", "setup.exe")
	if e2e.Code(err) != 550 || !strings.Contains(err.Error(), "Executable attachments") {
		t.Errorf("exe attachment: %v", err)
	}
	// Quarantine: held without a notice until an admin approves.
	before := len(h.Notices())
	if err := send("held@example.net", "Results [HOLD]", "a.txt"); err != nil {
		t.Fatal(err)
	}
	var q struct {
		Messages []struct {
			ID, Recipient string
			Decision      struct {
				Rule    string
				Version int64
			}
		}
	}
	admin.JSON("GET", "/api/v1/admin/quarantine", nil, 200, &q)
	if len(q.Messages) != 1 || q.Messages[0].Recipient != "held@example.net" || q.Messages[0].Decision.Rule != "hold-tagged" || q.Messages[0].Decision.Version != 2 {
		t.Fatalf("quarantine: %+v", q)
	}
	// Only the sender hears of it (issue 13.2: "held for review").
	time.Sleep(300 * time.Millisecond)
	for _, f := range h.WaitNotices(before + 1)[before:] {
		if b, _ := os.ReadFile(f); !bytes.Contains(b, []byte("To: <"+staff+">")) || !bytes.Contains(b, []byte("held for review")) {
			t.Fatalf("a held message sent a notice other than the sender's note: %s", b)
		}
	}
	before = len(h.Notices())
	id := q.Messages[0].ID
	admin.JSON("POST", "/api/v1/admin/quarantine/"+id+"/approve", map[string]string{"note": "checked"}, 200, nil)
	admin.JSON("POST", "/api/v1/admin/quarantine/"+id+"/deny", map[string]string{"note": "too late"}, 409, nil)
	// The recipient's notice and a note to the sender about the decision.
	var token string
	senderTold := false
	for _, f := range h.WaitNotices(before + 2)[before:] {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("/claim/")) {
			token = e2e.ClaimToken(t, f)
		}
		if bytes.Contains(b, []byte("To: <"+staff+">")) && bytes.Contains(b, []byte("approved")) {
			senderTold = true
		}
	}
	if token == "" || !senderTold {
		t.Fatalf("after approval: claim link %v, sender told %v", token != "", senderTold)
	}
	c := h.Client()
	c.JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": patientPW}, 200, nil)
	var list listJSON
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != 1 || list.Messages[0].ID != id {
		t.Fatalf("released message: %+v", list)
	}

	// Explain says which rule decides and why earlier ones did not.
	var ex struct {
		Recipients []struct {
			Recipient string
			Decision  struct{ Action, Rule string }
			Steps     []struct {
				Rule    string
				Matched bool
				Why     string
			}
		}
	}
	admin.JSON("POST", "/api/v1/admin/policy/explain", map[string]any{"from": staff,
		"to": []string{"a@clinic.example", "b@badmail.example", "c@example.net"}, "message": "Subject: [hold] x\r\n\r\nbody\r\n"}, 200, &ex)
	got := map[string]string{}
	for _, r := range ex.Recipients {
		got[r.Recipient] = r.Decision.Action + "/" + r.Decision.Rule
	}
	if got["a@clinic.example"] != "relay/internal" || got["b@badmail.example"] != "reject/blocked" || got["c@example.net"] != "quarantine/hold-tagged" {
		t.Errorf("explain: %v", got)
	}

	// The admin pages show the policy and its history.
	if st, _, b := admin.Do("GET", "/admin/policy", nil, nil); st != 200 || !strings.Contains(string(b), "hold-tagged") || !strings.Contains(string(b), "History") {
		t.Errorf("policy page: %d", st)
	}
	if st, _, b := admin.Do("GET", "/admin/quarantine", nil, nil); st != 200 || !strings.Contains(string(b), "Nothing is held") {
		t.Errorf("quarantine page: %d", st)
	}
	// Versions, diff and rollback.
	var vers struct{ Versions []struct{ Version int64 } }
	admin.JSON("GET", "/api/v1/admin/policy/versions", nil, 200, &vers)
	if len(vers.Versions) != 2 {
		t.Errorf("versions: %+v", vers)
	}
	var diff struct{ Diff string }
	admin.JSON("GET", "/api/v1/admin/policy/diff?from=1&to=2", nil, 200, &diff)
	if !strings.Contains(diff.Diff, "+name = \"blocked\"") {
		t.Errorf("diff: %s", diff.Diff)
	}
	admin.JSON("POST", "/api/v1/admin/policy/rollback", map[string]int64{"version": 1}, 200, &applied)
	if err := send("someone@badmail.example", "x", "a.txt"); err != nil {
		t.Errorf("after rollback to the shipped policy, badmail is allowed again: %v", err)
	}
	// Staff may not change the policy.
	s, _ := signInStaff(t, h, staff, "staff portal password 123", time.Now())
	s.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": testPolicy}, 403, nil)
}

func TestPolicyDetectors(t *testing.T) {
	dir := t.TempDir()
	h := e2e.Start(t, e2e.Config(dir))
	pass := h.AddStaff(staff)
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": `[detectors]
keywords = ["oncology"]

[[rule]]
name = "ssn-hold"
when.detectors = { ssn = 1 }
then.action = "quarantine"

[[rule]]
name = "no-oncology-outside"
when.detectors = { keyword = 1 }
then.action = "reject"
then.reason = "Oncology details may not be sent this way; use the referral system"

[default]
action = "portal"
`}, 200, nil)
	ssn := "SSN 123-45-6789"
	msg := e2e.Multipart(staff, "Dr Lee", "p@example.net", "Forms", "Patient "+ssn+" needs the form.", "<p>x</p>", "f.txt", []byte("x"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"p@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	var q struct {
		Messages []struct {
			Decision struct {
				Rule      string
				Detectors map[string]int
			}
		}
	}
	admin.JSON("GET", "/api/v1/admin/quarantine", nil, 200, &q)
	if len(q.Messages) != 1 || q.Messages[0].Decision.Rule != "ssn-hold" || q.Messages[0].Decision.Detectors["ssn"] != 1 {
		t.Fatalf("quarantine: %+v", q)
	}
	msg = e2e.Multipart(staff, "Dr Lee", "p@example.net", "Update", "The oncology team agrees.", "<p>x</p>", "f.txt", []byte("x"))
	err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"p@example.net"}, Msg: msg})
	if e2e.Code(err) != 550 || !strings.Contains(err.Error(), "referral system") {
		t.Errorf("keyword reject: %v", err)
	}
	// The decision keeps counts, never the values: the SSN is nowhere in
	// the database or logs in the clear.
	h.Stop()
	if strings.Contains(string(h.StoreBytes()), "123-45-6789") {
		t.Error("the SSN value is in the database")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "logs/phigate.log")); strings.Contains(string(b), "123-45-6789") {
		t.Error("the SSN value is in the log file")
	}
	if strings.Contains(string(h.Logs.Bytes()), "123-45-6789") {
		t.Error("the SSN value is in the logs")
	}
}

// TestPGPDelivery: with the shipped policy, a recipient whose key is
// registered gets PGP/MIME through the smarthost (the maildrop in dev):
// decryptable with their key, signed by the gateway, outer headers PHI-free.
func TestPGPDelivery(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	k, err := pcrypto.GenerateKey(pcrypto.KeyOptions{Name: "Pat Key", Email: "keyed@example.net"})
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := k.PublicArmored()
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	admin.JSON("PUT", "/api/v1/admin/recipient-keys", map[string]string{"email": "keyed@example.net", "key": "not a key"}, 400, nil)
	priv, _ := pcrypto.LockArmored(k, []byte("x"))
	admin.JSON("PUT", "/api/v1/admin/recipient-keys", map[string]string{"email": "keyed@example.net", "key": string(priv)}, 400, nil)
	admin.JSON("PUT", "/api/v1/admin/recipient-keys", map[string]string{"email": "someone.else@example.net", "key": string(pub)}, 400, nil)
	admin.JSON("PUT", "/api/v1/admin/recipient-keys", map[string]string{"email": "keyed@example.net", "key": string(pub)}, 200, nil)

	before := len(h.Notices())
	msg := e2e.Multipart(staff, "Dr Lee", "keyed@example.net", "Biopsy result CANARYSUBJ", "The result is benign.", "<p>benign</p>", "report.pdf", []byte("%PDF"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"keyed@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(h.WaitNotices(before + 1)[before])
	for _, leak := range []string{"CANARYSUBJ", "Dr Lee", "benign", "report.pdf"} {
		if strings.Contains(string(out), leak) {
			t.Errorf("PGP/MIME outer part shows %q", leak)
		}
	}
	if !strings.Contains(string(out), "multipart/encrypted") {
		t.Fatalf("not PGP/MIME:\n%s", out)
	}
	inner, sig, err := pgpmime.Decrypt(out, k, h.G.Keys.Gateway.Public())
	if err != nil || sig != pcrypto.SigVerified {
		t.Fatalf("decrypt: %v %v", err, sig)
	}
	if !strings.Contains(string(inner), "The result is benign.") || !strings.Contains(string(inner), "CANARYSUBJ") {
		t.Errorf("inner entity lacks the message:\n%s", inner)
	}
	// Nothing was stored for the portal.
	if u, err := h.G.Identity.UserByEmail(context.Background(), "keyed@example.net"); err == nil {
		t.Errorf("a portal account was created for a PGP recipient: %s", u.ID)
	}
}

// TestSecureReply: the recipient replies from the portal; the reply reaches
// the staff member's mailbox (the dev maildrop stands in for the smarthost),
// threaded, and shows in the recipient's own thread; a rule can forbid it.
func TestSecureReply(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	c, id := claimNew(t, h, pass, "replier@example.net", patientPW)
	var orig msgJSON
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, &orig)
	before := len(h.Notices())
	var out struct {
		ReplyID string `json:"reply_id"`
	}
	c.JSON("POST", "/api/v1/messages/"+id+"/reply", map[string]any{"text": "Thank you, see you Tuesday.",
		"attachments": []map[string]string{{"filename": "insurance.txt", "content_type": "text/plain", "data": "aW5zdXJlZA=="}}}, 200, &out)
	mail, _ := os.ReadFile(h.WaitNotices(before + 1)[before])
	for _, want := range []string{"To: <" + staff + ">", "From: <replier@example.net>", "Subject: Re: For replier@example.net",
		"In-Reply-To: <", "References: <", "Thank you, see you Tuesday.", "insurance.txt"} {
		if !strings.Contains(string(mail), want) {
			t.Errorf("reply mail lacks %q:\n%s", want, mail)
		}
	}
	st, _, page := c.Do("GET", "/messages/"+id, nil, nil)
	if st != 200 || !strings.Contains(string(page), "Your replies") || !strings.Contains(string(page), "see you Tuesday") {
		t.Errorf("thread page: %d", st)
	}
	var list listJSON
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != 1 {
		t.Errorf("the reply copy shows as a separate inbox message: %+v", list)
	}
	c.JSON("POST", "/api/v1/messages/"+id+"/reply", map[string]string{"text": "  "}, 400, nil)

	// A rule that forbids replies.
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": "[default]\naction = \"portal\"\nallow_reply = false\n"}, 200, nil)
	msg := e2e.Multipart(staff, "Dr Lee", "replier@example.net", "No replies", "x", "<p>x</p>", "a.txt", []byte("x"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"replier@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	var noReplyID string
	for _, m := range list.Messages {
		if m.Subject == "No replies" {
			noReplyID = m.ID
		}
	}
	var e struct{ Error, Message string }
	c.JSON("POST", "/api/v1/messages/"+noReplyID+"/reply", map[string]string{"text": "hello"}, 400, &e)
	if !strings.Contains(e.Message, "not allowed") {
		t.Errorf("reply to a no-reply message: %+v", e)
	}
}

// TestPortalOptions: a rule can forbid downloading attachments and can ask
// for a second factor before a message is shown.
func TestPortalOptions(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": `[[rule]]
name = "view-only"
when.subject_tag = "[view]"
then.action = "portal"
then.allow_download = false

[[rule]]
name = "strong"
when.subject_tag = "[2fa]"
then.action = "portal"
then.require_2fa = true

[default]
action = "portal"
`}, 200, nil)
	send := func(subject string) {
		msg := e2e.Multipart(staff, "Dr Lee", "opts@example.net", subject, "body", "<p>x</p>", "scan.pdf", []byte("%PDF"))
		if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"opts@example.net"}, Msg: msg}); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := claimNew(t, h, pass, "opts@example.net", patientPW)
	send("Scan [view]")
	send("Results [2fa]")
	var list listJSON
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	ids := map[string]string{}
	for _, m := range list.Messages {
		ids[m.Subject] = m.ID
	}
	c.JSON("GET", "/api/v1/messages/"+ids["Scan [view]"], nil, 200, nil)
	var e struct{ Error string }
	c.JSON("GET", "/api/v1/messages/"+ids["Scan [view]"]+"/attachments/0", nil, 403, &e)
	if e.Error != "download_not_allowed" {
		t.Errorf("download: %+v", e)
	}
	c.JSON("GET", "/api/v1/messages/"+ids["Results [2fa]"], nil, 403, &e)
	if e.Error != "mfa_enrolment_required" {
		t.Errorf("2fa message without a second factor: %+v", e)
	}
	c.EnrolTOTP(time.Now(), patientPW) // a signed-in patient adds a factor: password again (issue 8.9)
	c.JSON("GET", "/api/v1/messages/"+ids["Results [2fa]"], nil, 200, nil)
}

// TestPasscode: a rule with passcode = true holds the message behind a code
// that only the sender learns (in a note to them); the recipient enters it
// once; wrong guesses lock it after five tries.
func TestPasscode(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	pass := h.AddStaff(staff)
	c, _ := claimNew(t, h, pass, "coded@example.net", patientPW)
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": "[[rule]]\nname = \"coded\"\nwhen.subject_tag = \"[code]\"\nthen.action = \"portal\"\nthen.passcode = true\n[default]\naction = \"portal\"\n"}, 200, nil)
	before := len(h.Notices())
	msg := e2e.Multipart(staff, "Dr Lee", "coded@example.net", "Genetics [code]", "genetic result", "<p>x</p>", "a.txt", []byte("x"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{"coded@example.net"}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	files := h.WaitNotices(before + 2)
	var code string
	for _, f := range files[before:] {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("To: <"+staff+">")) {
			// Quoted-printable may fold the line: read the decoded text.
			code = regexpFind(t, bytes.ReplaceAll(b, []byte("=\r\n"), nil), `first opening: ([0-9a-z]{5}-[0-9a-z]{5})`)
			if bytes.Contains(b, []byte("Genetics")) || bytes.Contains(b, []byte("coded@example.net")) {
				t.Errorf("the passcode note shows PHI:\n%s", b)
			}
		}
	}
	if code == "" {
		t.Fatal("the sender got no passcode")
	}
	var list listJSON
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	var id string
	for _, m := range list.Messages {
		if m.Subject == "Genetics [code]" {
			id = m.ID
		}
	}
	var e struct{ Error string }
	c.JSON("GET", "/api/v1/messages/"+id, nil, 403, &e)
	if e.Error != "passcode_required" {
		t.Fatalf("without the passcode: %+v", e)
	}
	c.JSON("POST", "/api/v1/messages/"+id+"/passcode", map[string]string{"code": "00000-00000"}, 401, nil)
	c.JSON("POST", "/api/v1/messages/"+id+"/passcode", map[string]string{"code": strings.ToUpper(code)}, 204, nil)
	var m msgJSON
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, &m)
	if !strings.Contains(m.Text, "genetic result") {
		t.Errorf("after the passcode: %+v", m)
	}
}
