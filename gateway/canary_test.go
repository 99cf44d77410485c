package gateway_test

import (
	"bytes"
	"io"
	"regexp"
	"strings"

	"encoding/base64"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp/armor"

	"github.com/phigate/phigate/internal/e2e"
)

// TestCanary is DESIGN.md invariant 1's judge: unique strings planted in the
// subject, the From display name, the body (text and HTML) and the
// attachment's name and content must appear nowhere in what phigate wrote
// (database files including the WAL, logs at debug level, maildrop and
// notices) nor in any HTTP response other than the authenticated views of
// the message itself, after the whole flow has run.
func TestCanary(t *testing.T) {
	dir := t.TempDir()
	h := e2e.Start(t, e2e.Config(dir))
	pass := h.AddStaff(staff)

	subject, name, body, html := newCanary("SUBJ"), newCanary("NAME"), newCanary("BODY"), newCanary("HTML")
	attName, attBody := newCanary("ATTNAME")+".pdf", newCanary("ATTDATA")
	// Lower case: addresses are normalised before use.
	rcpt := strings.ToLower("canary.patient." + newCanary("RCPT") + "@example.net")
	canaries := []string{subject, name, body, html, attName, attBody, base64.StdEncoding.EncodeToString([]byte(attBody))}

	msg := e2e.Multipart(staff, name, rcpt, subject, "Hello "+body, "<p>"+html+"</p>", attName, []byte(attBody))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{rcpt}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
	token := e2e.ClaimToken(t, h.WaitNotices(1)[0])
	// The notice scanned below is the one that leaves: DKIM-signed (issue
	// 10.5), its signature fields included.
	if n, err := os.ReadFile(h.WaitNotices(1)[0]); err != nil || bytes.Count(n, []byte("DKIM-Signature:")) != 2 {
		t.Fatalf("the notice in the maildrop is not the signed one (%v)", err)
	}

	// Armored OpenPGP blocks (stored public keys) are base64: decode them
	// and look inside too, since an address in a key's user id is a leak.
	scan := func(where string, data []byte, withAddr bool) {
		needles := canaries
		if withAddr {
			needles = append(append([]string{}, canaries...), rcpt)
		}
		for _, blob := range append([][]byte{data}, dearmorAll(data)...) {
			for _, n := range needles {
				if bytes.Contains(blob, []byte(n)) {
					t.Errorf("canary %q found in %s", n, where)
				}
			}
		}
	}
	scanDir := func(stage string) {
		files := 0
		filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			files++
			rel, _ := filepath.Rel(dir, path)
			scan(stage+": "+rel, data, filepath.Dir(rel) != "maildrop")
			return nil
		})
		if files < 8 {
			t.Fatalf("scanned only %d files", files)
		}
	}
	// While the account is pending (live database and WAL), and again at
	// the end after claim, reads and shutdown.
	scanDir("pending")

	// Every response outside the authenticated message views is collected.
	var public [][]byte
	keep := func(st int, _ any, b []byte) { public = append(public, b) }
	c := h.Client()
	st, _, b := c.Do("GET", "/claim/"+token, nil, nil)
	keep(st, nil, b)
	st, hdr, b := c.Do("POST", "/api/v1/claim", map[string]string{"token": token, "password": "juniper falcon static 77"}, nil)
	if st != 200 {
		t.Fatalf("claim %d %s", st, b)
	}
	public = append(public, b, []byte(hdr.Get("Set-Cookie")))
	var list listJSON
	c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	id := list.Messages[0].ID
	var m msgJSON
	c.JSON("GET", "/api/v1/messages/"+id, nil, 200, &m)
	if m.Headers.Subject != subject || !bytes.Contains([]byte(m.Text), []byte(body)) || m.Attachments[0].Filename != attName {
		t.Fatalf("the authenticated view should show the canaries: %+v", m)
	}
	_, _, att := c.Do("GET", "/api/v1/messages/"+id+"/attachments/0", nil, nil)
	if string(att) != attBody {
		t.Fatal("attachment content differs")
	}
	for _, p := range []string{"/messages/" + id, "/inbox", "/messages/" + id + "/content"} {
		if st, _, _ := c.Do("GET", p, nil, nil); st != 200 {
			t.Fatalf("%s: %d", p, st)
		}
	}
	// Error and refusal pages.
	st, _, b = h.Client().Do("GET", "/api/v1/messages/"+id, nil, nil)
	keep(st, nil, b)
	other, _ := signInStaff(t, h, staff, "staff portal password 123", time.Now())
	for _, p := range []string{"/api/v1/messages/" + id, "/messages/" + id, "/messages/" + id + "/attachments/0", "/api/v1/messages", "/inbox", "/login", "/claim/" + token} {
		st, _, b := other.Do("GET", p, nil, nil)
		keep(st, nil, b)
	}
	st, _, b = c.Do("POST", "/api/v1/logout", nil, nil)
	keep(st, nil, b)
	st, _, b = c.Do("GET", "/messages/"+id, nil, nil)
	keep(st, nil, b)
	h.Stop()

	// The recipient's address may appear only in the notice sent to it.
	scanDir("end")
	if len(h.Logs.Bytes()) < 1000 || !bytes.Contains(h.Logs.Bytes(), []byte("level=DEBUG")) {
		t.Fatalf("expected debug logs to scan, got %d bytes", len(h.Logs.Bytes()))
	}
	scan("logs", h.Logs.Bytes(), true)
	for i, p := range public {
		scan("HTTP response "+string(rune('A'+i)), p, true)
	}
	// The database itself: its files were in the scan above on SQLite;
	// every stored value on PostgreSQL (e2e.EnvStore).
	db := h.StoreBytes()
	if len(db) == 0 {
		t.Fatal("the database holds nothing to scan")
	}
	scan("database", db, true)
}

var armorRe = regexp.MustCompile(`(?s)-----BEGIN PGP [A-Z ]+-----.*?-----END PGP [A-Z ]+-----`)

func dearmorAll(data []byte) [][]byte {
	var out [][]byte
	for _, blk := range armorRe.FindAll(data, -1) {
		b, err := armor.Decode(bytes.NewReader(blk))
		if err != nil {
			continue
		}
		if d, err := io.ReadAll(b.Body); err == nil {
			out = append(out, d)
		}
	}
	return out
}
