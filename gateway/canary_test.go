package gateway_test

import (
	"bytes"
	"context"
	"fmt"
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

	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/internal/e2e"
	"github.com/phigate/phigate/internal/pushtest"
	"github.com/phigate/phigate/internal/redistest"
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

	cm := newCanaryMail()
	subject, body, attName, attBody := cm.Subject, cm.Body, cm.AttName, cm.AttBody
	cm.send(t, h, pass)
	token := e2e.ClaimToken(t, h.WaitNotices(1)[0])
	// The notice scanned below is the one that leaves: DKIM-signed (issue
	// 10.5), its signature fields included.
	if n, err := os.ReadFile(h.WaitNotices(1)[0]); err != nil || bytes.Count(n, []byte("DKIM-Signature:")) != 2 {
		t.Fatalf("the notice in the maildrop is not the signed one (%v)", err)
	}

	scan := func(where string, data []byte, withAddr bool) { scanCanaries(t, where, data, cm.needles(withAddr)) }
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

// TestCanaryEveryChannel is issue 10's judge of the live channels: one
// flow with Redis, a push device and open pages (the canary message to a
// new recipient, its claim, the same message again to the account, both
// read) and then every notice email, every push payload as the push
// service received it (decrypted here), every websocket frame and every
// Redis pub/sub message is scanned for the canaries: zero hits, and each
// channel carried something.
func TestCanaryEveryChannel(t *testing.T) {
	srv := redistest.Start(t) // skips without redis-server (fails in CI)
	svc := pushtest.Start(t)
	cfg := e2e.Config(t.TempDir())
	cfg.Redis.URL = "redis://" + srv.Addr + "/0"
	cfg.Redis.Prefix = nodesPrefix
	cfg.Push.AllowedHosts = []string{pushtest.Host}
	h := e2e.StartWith(t, cfg, func(g *gateway.Gateway) { g.PushClient = svc.Client() })
	if h.G.Redis == nil {
		t.Fatal("redis.url set but the node is not using Redis")
	}
	pass := h.AddStaff(staff)
	pubsub := tapRedis(t, nodePair{A: h, B: h, RDB: srv.Client(t)}, nodesPrefix+"events")
	staffC, _ := signInStaff(t, h, staff, staffPortalPW, time.Now())
	staffWS := dialLive(t, h, "staff", nodeCookie(t, staffC))

	// The first message invites the new recipient, who claims it and
	// subscribes a device and opens the inbox.
	cm := newCanaryMail()
	cm.send(t, h, pass)
	pat := h.Client()
	pat.JSON("POST", "/api/v1/claim", map[string]string{"token": e2e.ClaimToken(t, h.WaitNotices(1)[0]), "password": patientPW}, 200, nil)
	phone := pushtest.NewDevice(t)
	pat.JSON("POST", "/api/v1/push/devices", subscription(phone), 201, nil)
	patWS := dialLive(t, h, "recipient", nodeCookie(t, pat))

	// The second reaches the account: a push, frames on both pages.
	cm.send(t, h, pass)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pushes := svc.Wait(ctx, t, 1)
	second := patWS.next(t)
	if second.Event != "new-message" || second.MessageID == "" {
		t.Fatalf("recipient: frame %+v, want new-message", second)
	}
	var list listJSON
	pat.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != 2 {
		t.Fatalf("%d messages, want 2", len(list.Messages))
	}
	// Both are read: each reading is a frame on the sender's Sent page.
	for _, m := range list.Messages {
		var got msgJSON
		pat.JSON("GET", "/api/v1/messages/"+m.ID, nil, 200, &got)
		if got.Headers.Subject != cm.Subject {
			t.Fatalf("the authenticated view should show the subject canary: %+v", got.Headers)
		}
	}
	reads := map[string]bool{}
	for len(reads) < 2 {
		if f := staffWS.next(t); f.Event == "message-read" {
			reads[f.MessageID] = true
		}
	}
	patWS.want(t, "message-read", "inbox", second.MessageID)
	bus := pubsub.stop(t)
	h.Stop()

	needles := cm.needles(true)
	notices := h.Notices()
	for _, f := range notices {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A notice goes to the recipient, so it may name that address.
		scanCanaries(t, "notice "+filepath.Base(f), b, cm.needles(false))
	}
	for i, p := range pushes {
		plain, err := phone.Decrypt(p.Body)
		if err != nil {
			t.Fatalf("push %d: decrypt: %v", i, err)
		}
		scanCanaries(t, fmt.Sprintf("push %d (decrypted)", i), plain, needles)
		scanCanaries(t, fmt.Sprintf("push %d (as sent)", i), p.Body, needles)
	}
	var frames int
	for _, c := range []*liveConn{staffWS, patWS} {
		for i, raw := range c.raw {
			frames++
			scanCanaries(t, fmt.Sprintf("%s frame %d", c.name, i), raw, needles)
		}
	}
	for i, m := range bus {
		scanCanaries(t, fmt.Sprintf("pub/sub message %d", i), []byte(m), needles)
	}
	t.Logf("scanned %d notices, %d pushes, %d frames, %d pub/sub messages", len(notices), len(pushes), frames, len(bus))
	// Not vacuous: every channel carried the flow (two notices: the
	// invitation and the new-message notice; each page's first frame and
	// one per arrival and reading; two arrivals and two readings on Redis).
	if len(notices) < 2 || len(pushes) < 1 || frames < 8 || len(bus) < 4 {
		t.Fatalf("the channels carried too little to judge: %d notices, %d pushes, %d frames, %d pub/sub messages",
			len(notices), len(pushes), frames, len(bus))
	}
}

// canaryMail is a message with a unique canary in each PHI field: the
// subject, the From display name, the body (text and HTML), the
// attachment's name and content, and the recipient's address.
type canaryMail struct {
	Subject, Name, Body, HTML, AttName, AttBody, Rcpt string
}

func newCanaryMail() canaryMail {
	return canaryMail{
		Subject: newCanary("SUBJ"), Name: newCanary("NAME"), Body: newCanary("BODY"), HTML: newCanary("HTML"),
		AttName: newCanary("ATTNAME") + ".pdf", AttBody: newCanary("ATTDATA"),
		// Lower case: addresses are normalised before use.
		Rcpt: strings.ToLower("canary.patient." + newCanary("RCPT") + "@example.net"),
	}
}

// send submits the message over SMTP as staff (a fresh Message-ID each
// time, so it can be sent more than once).
func (cm canaryMail) send(t *testing.T, h *e2e.Harness, pass string) {
	t.Helper()
	msg := e2e.Multipart(staff, cm.Name, cm.Rcpt, cm.Subject, "Hello "+cm.Body, "<p>"+cm.HTML+"</p>", cm.AttName, []byte(cm.AttBody))
	if err := e2e.Send(e2e.SendOptions{Addr: h.SMTP, User: staff, Pass: pass, From: staff, To: []string{cm.Rcpt}, Msg: msg}); err != nil {
		t.Fatal(err)
	}
}

// needles are the strings no output may carry; withAddr adds the
// recipient's address (left out only for the notice sent to it).
func (cm canaryMail) needles(withAddr bool) []string {
	n := []string{cm.Subject, cm.Name, cm.Body, cm.HTML, cm.AttName, cm.AttBody, base64.StdEncoding.EncodeToString([]byte(cm.AttBody))}
	if withAddr {
		n = append(n, cm.Rcpt)
	}
	return n
}

// scanCanaries reports each needle found in data. Armored OpenPGP blocks
// (stored public keys) are base64: they are decoded and looked inside too,
// since an address in a key's user id is a leak.
func scanCanaries(t *testing.T, where string, data []byte, needles []string) {
	t.Helper()
	for _, blob := range append([][]byte{data}, dearmorAll(data)...) {
		for _, n := range needles {
			if bytes.Contains(blob, []byte(n)) {
				t.Errorf("canary %q found in %s", n, where)
			}
		}
	}
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
