package gateway_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/phigate/phigate/internal/e2e"
)

// TestBodyLimits: every route class bounds its body (413 with a page or a
// JSON error), and sign-in, claim and reset take only their form or JSON
// (415 otherwise), over the gateway's real TLS socket.
func TestBodyLimits(t *testing.T) {
	cfg := e2e.Config(t.TempDir())
	cfg.Portal.MaxBodyBytes = 8 << 10
	cfg.Portal.MaxUploadBytes = 32 << 10
	cfg.Portal.MaxReplyBodyBytes = 128 << 10
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	c, id := claimNew(t, h, pass, "bounded@example.net", patientPW)
	anon := h.Client()

	over := func(n int64) string { return strings.Repeat("a", int(n)+1) }
	small, upload, reply := cfg.Portal.MaxBodyBytes, cfg.Portal.MaxUploadBytes, cfg.Portal.MaxReplyBodyBytes
	for _, r := range []struct {
		who          *e2e.Client
		method, path string
		body         any
	}{
		{anon, "POST", "/login", "email=x%40example.net&password=" + over(small)},
		{anon, "POST", "/reset", "email=" + over(small)},
		{anon, "POST", "/claim/sometoken", "password=" + over(small)},
		{anon, "POST", "/api/v1/login", map[string]string{"email": "x@example.net", "password": over(small)}},
		{anon, "POST", "/api/v1/claim", map[string]string{"token": "t", "password": over(small)}},
		{anon, "POST", "/api/v1/reset", map[string]string{"email": over(small)}},
		{c, "POST", "/messages/" + id + "/passcode", "code=" + over(small)},
		{c, "POST", "/account/key", "key=" + over(upload)},
		{c, "PUT", "/api/v1/account/key", map[string]string{"key": over(upload)}},
		{c, "POST", "/messages/" + id + "/reply", "text=" + over(reply)},
		{c, "POST", "/api/v1/messages/" + id + "/reply", map[string]string{"text": over(reply)}},
	} {
		st, hdr, b := r.who.Do(r.method, r.path, r.body, nil)
		if st != http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s over its bound: %d, want 413", r.method, r.path, st)
			continue
		}
		if strings.HasPrefix(r.path, "/api/") != strings.HasPrefix(hdr.Get("Content-Type"), "application/json") ||
			!bytes.Contains(b, []byte("larger than this")) {
			t.Errorf("%s %s: 413 answer does not say why in the route's format: %s %s", r.method, r.path, hdr.Get("Content-Type"), b)
		}
	}
	// The same routes within their bounds are served (and not as 413).
	if st, _, _ := c.Do("POST", "/api/v1/messages/"+id+"/reply", map[string]string{"text": strings.Repeat("a", 64<<10)}, nil); st != http.StatusOK {
		t.Errorf("a 64 KiB reply under a 128 KiB bound: %d", st)
	}

	mp, mpType := multipartForm(t, map[string]string{"email": "x@example.net", "password": "p"}, nil)
	for _, r := range []struct {
		path, ct string
		body     []byte
	}{
		{"/login", "text/plain", []byte("email=x&password=y")},
		{"/login", mpType, mp},
		{"/login", "application/json", []byte(`{"email":"x","password":"y"}`)},
		{"/claim/sometoken", "text/plain", []byte("password=x")},
		{"/reset", mpType, mp},
		{"/reset/sometoken", "application/xml", []byte("<x/>")},
		{"/api/v1/login", "application/x-www-form-urlencoded", []byte("email=x&password=y")},
		{"/api/v1/claim", "text/plain", []byte(`{"token":"t","password":"p"}`)},
		{"/api/v1/reset", mpType, mp},
		{"/api/v1/reset/complete", "application/x-www-form-urlencoded", []byte("token=t&password=p")},
	} {
		if st, _, b := anon.Do("POST", r.path, string(r.body), map[string]string{"Content-Type": r.ct}); st != http.StatusUnsupportedMediaType {
			t.Errorf("POST %s as %s: %d, want 415: %.200s", r.path, r.ct, st, b)
		}
	}
}

// multipartForm builds a multipart/form-data body with fields and files
// (field "files").
func multipartForm(t *testing.T, fields map[string]string, files map[string][]byte) ([]byte, string) {
	return multipartFiles(t, fields, "files", files)
}

func multipartFiles(t *testing.T, fields map[string]string, field string, files map[string][]byte) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	for name, data := range files {
		fw, err := mw.CreateFormFile(field, name)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(data)
	}
	mw.Close()
	return b.Bytes(), mw.FormDataContentType()
}

// postReply sends a reply form from the message page as a browser would
// (multipart/form-data); chunked hides its length.
func postReply(t *testing.T, c *e2e.Client, id string, body []byte, ct string, chunked bool) (int, string) {
	t.Helper()
	return postForm(t, c, "/messages/"+id+"/reply", body, ct, chunked)
}

// postForm posts a page form. It asks for 100-continue so that a body
// refused by its declared length is never sent (and the answer is not lost
// to a reset while the client is still writing).
func postForm(t *testing.T, c *e2e.Client, path string, body []byte, ct string, chunked bool) (int, string) {
	t.Helper()
	var rd io.Reader = bytes.NewReader(body)
	if chunked {
		rd = io.MultiReader(rd) // unknown length
	}
	req, err := http.NewRequest("POST", c.Base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Expect", "100-continue")
	hc := &http.Client{Jar: c.HTTP.Jar, CheckRedirect: c.HTTP.CheckRedirect, Timeout: time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ExpectContinueTimeout: 30 * time.Second}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestReplyLeavesNothingOnDisk: the gateway's temporary directory (TMPDIR,
// which os.TempDir and net/http's multipart parser use) stays empty after
// secure replies sent from the page as multipart forms: accepted, refused
// for the body bound (declared and chunked), refused by the policy's size
// limit and refused because the policy forbids replies. Each carries a
// canary attachment; the refused ones' canaries are nowhere in the data
// folder either.
func TestReplyLeavesNothingOnDisk(t *testing.T) {
	dir := t.TempDir()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cfg := e2e.Config(dir)
	cfg.Portal.MaxReplyBodyBytes = 1 << 20
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	c, _ := claimNew(t, h, pass, "tmpdir@example.net", patientPW)
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": "[default]\naction = \"portal\"\nreply_max_bytes = 100000\n"}, 200, nil)
	withLimit := sendTo(t, h, c, pass, "tmpdir@example.net", "Size limited")
	admin.JSON("PUT", "/api/v1/admin/policy", map[string]string{"body": "[default]\naction = \"portal\"\nallow_reply = false\n"}, 200, nil)
	noReply := sendTo(t, h, c, pass, "tmpdir@example.net", "No replies")

	canary := func(label string, size int) []byte {
		c := []byte(newCanary(label))
		return bytes.Repeat(c, size/len(c)+1)[:size]
	}
	var refused [][]byte
	reply := func(label string, size int) ([]byte, string) {
		return multipartForm(t, map[string]string{"text": "see attached"}, map[string][]byte{"scan.pdf": canary(label, size)})
	}

	// Accepted (the reply itself goes onward, sealed in the outbox).
	body, ct := reply("OK", 20<<10)
	if st, b := postReply(t, c, withLimit, body, ct, false); st != http.StatusSeeOther {
		t.Fatalf("reply within every limit: %d: %.300s", st, b)
	}
	// Over the portal's body bound, declared: refused before it is read.
	// 12 MiB is past net/http's in-memory share of ParseMultipartForm
	// (11 MiB here before issue 8.2), which spilled it to /tmp.
	body, ct = reply("BIGDECLARED", 12<<20)
	refused = append(refused, body[len(body)/2:len(body)/2+64])
	if st, _ := postReply(t, c, withLimit, body, ct, false); st != http.StatusRequestEntityTooLarge {
		t.Errorf("reply over the body bound (declared): %d, want 413", st)
	}
	// Over the bound, chunked: refused once the bound is read.
	body, ct = reply("BIGCHUNKED", 1<<20+(32<<10))
	refused = append(refused, body[len(body)/2:len(body)/2+64])
	if st, _ := postReply(t, c, withLimit, body, ct, true); st != http.StatusRequestEntityTooLarge {
		t.Errorf("reply over the body bound (chunked): %d, want 413", st)
	}
	// Within the body bound but over the policy's reply_max_bytes.
	body, ct = reply("POLICYSIZE", 200<<10)
	refused = append(refused, body[len(body)/2:len(body)/2+64])
	if st, b := postReply(t, c, withLimit, body, ct, false); st == http.StatusSeeOther || !strings.Contains(b, "too large") {
		t.Errorf("reply over the policy's size limit: %d: %.300s", st, b)
	}
	// The policy forbids replies to this message.
	body, ct = reply("NOREPLY", 20<<10)
	refused = append(refused, body[len(body)/2:len(body)/2+64])
	if st, b := postReply(t, c, noReply, body, ct, false); st == http.StatusSeeOther || !strings.Contains(b, "not allowed") {
		t.Errorf("reply the policy forbids: %d: %.300s", st, b)
	}

	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left in the gateway's temporary directory: %s", e.Name())
	}
	h.Stop()
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range refused {
			if bytes.Contains(data, n) {
				t.Errorf("a refused reply's attachment is in %s", path)
			}
		}
		return nil
	})
}

// TestEscrowKeyFileUpload: the break-glass page uploads the escrow private
// key as a file (multipart); it is read in memory and works, a file over
// portal.max_upload_bytes is refused with 413, and neither leaves anything
// in the temporary directory.
func TestEscrowKeyFileUpload(t *testing.T) {
	dir := t.TempDir()
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	cfg := e2e.Config(dir)
	cfg.Portal.MaxUploadBytes = 64 << 10
	h := e2e.Start(t, cfg)
	pass := h.AddStaff(staff)
	_, id := claimNew(t, h, pass, "bgfile@example.net", patientPW)
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	key, _ := os.ReadFile(filepath.Join(dir, "escrow-private.asc"))
	pp, _ := os.ReadFile(filepath.Join(dir, "escrow-passphrase.txt"))
	fields := map[string]string{"message": id, "reason": "Patient unconscious in ED, need the referral letter",
		"passphrase": strings.TrimSpace(string(pp))}

	body, ct := multipartFiles(t, fields, "escrow_key_file", map[string][]byte{"escrow.asc": key})
	if st, b := postForm(t, admin, "/admin/break-glass", body, ct, false); st != http.StatusOK || !strings.Contains(b, "body for bgfile@example.net") {
		t.Errorf("break-glass with the key file: %d: %.300s", st, b)
	}
	padded := append(append([]byte{}, key...), bytes.Repeat([]byte("\n"), int(cfg.Portal.MaxUploadBytes))...)
	body, ct = multipartFiles(t, fields, "escrow_key_file", map[string][]byte{"escrow.asc": padded})
	if st, _ := postForm(t, admin, "/admin/break-glass", body, ct, true); st != http.StatusRequestEntityTooLarge {
		t.Errorf("break-glass with a key file over the upload bound: %d, want 413", st)
	}
	entries, _ := os.ReadDir(tmp)
	for _, e := range entries {
		t.Errorf("left in the gateway's temporary directory: %s", e.Name())
	}
}

// TestEveryRouteBoundsItsBody walks the portal's route table: every route,
// pages and API alike, refuses a body declared larger than the largest
// bound with 413 before its handler runs (signed in as an admin, so that
// no route stops the request at authorization first).
func TestEveryRouteBoundsItsBody(t *testing.T) {
	h := e2e.Start(t, e2e.Config(t.TempDir()))
	addAdmin(t, h, "admin@clinic.example")
	admin, _ := signInStaff(t, h, "admin@clinic.example", adminPW, time.Now())
	p := h.Cfg.Portal
	over := max(p.MaxBodyBytes, p.MaxReplyBodyBytes, p.MaxUploadBytes) + 1
	hc := &http.Client{Jar: admin.HTTP.Jar, CheckRedirect: admin.HTTP.CheckRedirect, Timeout: time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ExpectContinueTimeout: 30 * time.Second}}
	param := regexp.MustCompile(`\{[^}]*\}`)
	routes := 0
	for _, r := range h.G.Portal.Routes() {
		if r.Pattern == "/static/" {
			continue // files only, never reads a body
		}
		path := strings.ReplaceAll(param.ReplaceAllString(strings.ReplaceAll(r.Pattern, "{$}", ""), "x"), "//", "/")
		// Declared, never sent: the 100-continue is not given.
		req, err := http.NewRequest(r.Method, h.BaseURL+path, io.LimitReader(zeros{}, over))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = over
		req.Header.Set("Expect", "100-continue")
		req.Header.Set("Content-Type", "application/json")
		if !strings.HasPrefix(path, "/api/") {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", r.Method, path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s with a %d-byte body: %d, want 413", r.Method, path, over, resp.StatusCode)
		}
		routes++
	}
	if routes < 80 {
		t.Fatalf("only %d routes walked", routes)
	}
}

type zeros struct{}

func (zeros) Read(b []byte) (int, error) { clear(b); return len(b), nil }

// sendTo submits one message to rcpt with subject and returns its id from
// the recipient's own list (c is rcpt's signed-in client).
func sendTo(t *testing.T, h *e2e.Harness, c *e2e.Client, pass, rcpt, subject string) string {
	t.Helper()
	msg := e2e.Multipart(staff, "Dr Lee", rcpt, subject, "x", "<p>x</p>", "a.txt", []byte("x"))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{rcpt}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	var list listJSON
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	for _, m := range list.Messages {
		if m.Subject == subject {
			return m.ID
		}
	}
	t.Fatalf("%q is not in %s's list", subject, rcpt)
	return ""
}
