package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/internal/e2e"
)

// Read-path benchmarks (issue 12, goal 2; figures in docs/perf.md,
// "Reading"). They drive the real portal handlers over loopback HTTPS
// against the harness's real store (SQLite, or PostgreSQL with
// PHIGATE_TEST_STORE=postgres) and report percentiles of the server time
// of each request (handler start to return, gateway.TimeHTTPS), plus the
// client's round trip. Requests are made one at a time: the figures are
// the cost of one request, not throughput.

const benchHeader = "X-Phigate-Bench"

// srvTimer hands the server time of each benchmark request to the client
// that made it (requests without benchHeader, if any, are ignored).
type srvTimer struct{ ch chan time.Duration }

func (t *srvTimer) observe(r *http.Request, d time.Duration) {
	if r.Header.Get(benchHeader) != "" {
		t.ch <- d
	}
}

// next returns the server time of the request just answered.
func (t *srvTimer) next(b *testing.B) time.Duration {
	select {
	case d := <-t.ch:
		return d
	case <-time.After(10 * time.Second):
		b.Fatal("no server time observed")
		return 0
	}
}

// samples collects durations and reports nearest-rank percentiles.
type samples map[string][]time.Duration

func (s samples) add(name string, d time.Duration) { s[name] = append(s[name], d) }

func pct(ds []time.Duration, p float64) time.Duration {
	ds = slices.Clone(ds)
	slices.Sort(ds)
	i := int(float64(len(ds))*p+0.999999) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

func (s samples) report(b *testing.B) {
	for name, ds := range s {
		if len(ds) == 0 {
			continue
		}
		if strings.HasSuffix(name, "-cpu") { // a cost: the mean
			var sum time.Duration
			for _, d := range ds {
				sum += d
			}
			b.ReportMetric(float64((sum/time.Duration(len(ds))).Microseconds())/1000, name+"-ms")
			continue
		}
		b.ReportMetric(float64(pct(ds, 0.50).Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(pct(ds, 0.99).Microseconds())/1000, name+"-p99-ms")
	}
}

// bigMessage is a ~100 KB message with two attachments: a text part, an
// HTML part with markup for the sanitiser, and two base64 PDFs.
func bigMessage(to string) []byte {
	words := strings.Fields("the patient was seen today for follow up of blood pressure and reports no chest pain " +
		"results of the lipid panel are attached please continue the current dose and book a visit in three months")
	var text, html strings.Builder
	for i := 0; text.Len() < 36<<10; i++ {
		text.WriteString(words[i%len(words)])
		if i%12 == 11 {
			text.WriteString("\r\n")
		} else {
			text.WriteByte(' ')
		}
	}
	html.WriteString(`<div style="font-family:Arial"><h2>Visit summary</h2><table border="1">`)
	for i := 0; html.Len() < 20<<10; i++ {
		fmt.Fprintf(&html, `<tr><td class="k">%s</td><td><b>%d</b> <a href="https://clinic.example/r/%d">details</a>`+
			`<img src="https://tracker.example/p%d.gif"></td></tr>`+"\r\n", words[i%len(words)], i, i, i)
	}
	html.WriteString(`</table><p onclick="x()">Regards<script>alert(1)</script></p></div>`)
	att := func(n int, seed byte) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*31) ^ seed
		}
		enc := base64.StdEncoding.EncodeToString(b)
		var out strings.Builder
		for i := 0; i < len(enc); i += 76 {
			out.WriteString(enc[i:min(i+76, len(enc))] + "\r\n")
		}
		return out.String()
	}
	var m bytes.Buffer
	fmt.Fprintf(&m, "From: Dr Lee <%s>\r\nTo: %s\r\nSubject: Lab results\r\nDate: %s\r\nMessage-ID: <%d@bench>\r\nMIME-Version: 1.0\r\n",
		staff, to, time.Now().Format(time.RFC1123Z), time.Now().UnixNano())
	m.WriteString("Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n")
	m.WriteString("--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n")
	fmt.Fprintf(&m, "--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n", text.String())
	fmt.Fprintf(&m, "--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n%s\r\n--alt--\r\n", html.String())
	for i, name := range []string{"lipid-panel.pdf", "referral.pdf"} {
		fmt.Fprintf(&m, "--outer\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"%s\"\r\nContent-Transfer-Encoding: base64\r\n\r\n%s",
			name, att(15<<10, byte(i)))
	}
	m.WriteString("--outer--\r\n")
	return m.Bytes()
}

// reader is a gateway holding one patient's messages: the 100 KB one and
// `others` messages of ~20 KB, claimed and signed in.
type reader struct {
	h     *e2e.Harness
	c     *e2e.Client
	timer *srvTimer
	bigID string
	pass  string
	cpu   time.Duration // of the last get
}

// cpuTime is the user + system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const (
	benchPatient = "pat@example.net"
	benchPatPW   = "a very good passphrase"
)

func newReader(b *testing.B, others int) *reader {
	b.Helper()
	e2e.Silence()
	cfg := e2e.Config(b.TempDir())
	cfg.Log.Level = "info" // production's level: each open logs its INFO line
	t := &srvTimer{ch: make(chan time.Duration, 64)}
	h := e2e.Start(b, cfg)
	gateway.TimeHTTPS(h.G, t.observe)
	h.AddStaff(staff)
	ctx := context.Background()
	sender, err := h.G.Identity.UserByEmail(ctx, staff)
	if err != nil {
		b.Fatal(err)
	}
	env := intake.Envelope{Sender: sender, From: staff, To: []string{benchPatient}}
	if _, err := h.G.Intake.Accept(ctx, env, bigMessage(benchPatient)); err != nil {
		b.Fatal(err)
	}
	token := e2e.ClaimToken(b, h.WaitNotices(1)[0])
	for i := range others {
		raw := e2e.Multipart(staff, "Dr Lee", benchPatient, fmt.Sprintf("Note %d", i), string(bytes.Repeat([]byte("follow-up text \r\n"), 900)),
			"<p>follow-up</p>", "note.pdf", bytes.Repeat([]byte{byte(i)}, 3000))
		if _, err := h.G.Intake.Accept(ctx, env, raw); err != nil {
			b.Fatal(err)
		}
	}
	r := &reader{h: h, c: h.Client(), timer: t, pass: benchPatPW}
	r.c.JSON("POST", "/api/v1/claim", map[string]string{"token": token, "password": benchPatPW}, 200, nil)
	var list listJSON
	r.c.JSON("GET", "/api/v1/messages", nil, 200, &list)
	if len(list.Messages) != others+1 {
		b.Fatalf("inbox holds %d messages, want %d", len(list.Messages), others+1)
	}
	for _, m := range list.Messages {
		if m.Subject == "Lab results" {
			r.bigID = m.ID
		}
	}
	if r.bigID == "" {
		b.Fatal("the 100 KB message is not in the inbox")
	}
	return r
}

// get makes one timed request and checks its status; it returns the
// server time and the client's round trip, and adds the CPU time this
// process spent meanwhile (server and client: the load-independent cost,
// where the shared machine's load inflates the times) to cpu[name].
func (r *reader) get(b *testing.B, c *e2e.Client, method, path, body string, want int, mustHave string) (srv, rtt time.Duration) {
	b.Helper()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.Base+path, nil)
	if rd != nil {
		req, err = http.NewRequest(method, c.Base+path, rd)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set(benchHeader, "1")
	c0 := cpuTime()
	t0 := time.Now()
	resp, err := c.HTTP.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	_, err = out.ReadFrom(resp.Body)
	resp.Body.Close()
	rtt = time.Since(t0)
	srv = r.timer.next(b)
	r.cpu = cpuTime() - c0
	if err != nil || resp.StatusCode != want {
		b.Fatalf("%s %s: %d (%v), want %d: %.300s", method, path, resp.StatusCode, err, want, out.String())
	}
	if mustHave != "" && !strings.Contains(out.String(), mustHave) {
		b.Fatalf("%s %s: answer lacks %q", method, path, mustHave)
	}
	return srv, rtt
}

// BenchmarkOpenMessage100KB opens a ~100 KB message with two attachments
// as a browser does: the message page (decrypt, verify, parse, render the
// template, audit the read) and the sandboxed frame with its HTML (the
// same again, then the sanitiser). "open" is the two together; "api" is
// GET /api/v1/messages/{id} (decrypt, verify, parse, sanitise, JSON).
func BenchmarkOpenMessage100KB(b *testing.B) {
	r := newReader(b, 0)
	page, content, api := "/messages/"+r.bigID, "/messages/"+r.bigID+"/content", "/api/v1/messages/"+r.bigID
	// The first read (mark read, live event) once outside the timing.
	r.get(b, r.c, "GET", page, "", 200, "lipid-panel.pdf")
	s := samples{}
	b.ResetTimer()
	for range b.N {
		sp, cp := r.get(b, r.c, "GET", page, "", 200, "lipid-panel.pdf")
		cpuPage := r.cpu
		sc, cc := r.get(b, r.c, "GET", content, "", 200, "Visit summary")
		s.add("open-cpu", cpuPage+r.cpu)
		sa, _ := r.get(b, r.c, "GET", api, "", 200, "referral.pdf")
		s.add("api-cpu", r.cpu)
		s.add("page", sp)
		s.add("content", sc)
		s.add("open", sp+sc)
		s.add("open-client", cp+cc)
		s.add("api", sa)
	}
	b.StopTimer()
	s.report(b)
}

// BenchmarkInbox200 lists an inbox of 200 messages: the page and the API.
// Each row's sealed summary is opened (decrypt + verify); bodies are not.
func BenchmarkInbox200(b *testing.B) { benchInbox200(b, false) }

// BenchmarkInbox200Cold is BenchmarkInbox200 with the portal's memo of
// verified summaries emptied before each request (crypto.VerifiedMemo):
// the first listing after start-up, every signature checked.
func BenchmarkInbox200Cold(b *testing.B) { benchInbox200(b, true) }

func benchInbox200(b *testing.B, cold bool) {
	r := newReader(b, 199)
	r.get(b, r.c, "GET", "/inbox", "", 200, "Lab results")
	forget := func() {
		if cold {
			r.h.G.Portal.ForgetVerifiedSummaries()
		}
	}
	s := samples{}
	b.ResetTimer()
	for range b.N {
		forget()
		sp, cp := r.get(b, r.c, "GET", "/inbox", "", 200, "Note 198")
		s.add("page-cpu", r.cpu)
		forget()
		sa, _ := r.get(b, r.c, "GET", "/api/v1/messages", "", 200, "Note 198")
		s.add("api-cpu", r.cpu)
		s.add("page", sp)
		s.add("page-client", cp)
		s.add("api", sa)
	}
	b.StopTimer()
	s.report(b)
}

// BenchmarkFirstPageAfterSignIn signs in through the form (POST /login,
// which answers 303 to /inbox) and loads the inbox it leads to, with a
// fresh browser each time (its TLS connection opened by GET /login first,
// outside the figure). The inbox holds 200 messages (the 30 ms case). The
// password hash is measured on its own right after each sign-in, with the
// same parameters, in this process: "beyond-hash" is the sign-in plus the
// inbox minus that. The harness's cheap Argon2 parameters keep the hash
// small, so the subtraction is not lost in the noise of a 0.3-1 s
// production hash.
func BenchmarkFirstPageAfterSignIn(b *testing.B) {
	r := newReader(b, 199)
	k := r.h.Cfg.Keys
	params := pcrypto.PasswordParams{Time: k.PasswordTime, MemoryKiB: k.PasswordMemoryKiB, Threads: k.PasswordThreads}
	form := "email=" + url.QueryEscape(benchPatient) + "&password=" + url.QueryEscape(r.pass)
	salt := pcrypto.NewSalt()
	s := samples{}
	b.ResetTimer()
	for range b.N {
		c := r.h.Client()
		b.StopTimer()
		c.Do("GET", "/login", nil, nil)
		b.StartTimer()
		sl, _ := r.get(b, c, "POST", "/login", form, http.StatusSeeOther, "")
		cpuLogin := r.cpu
		si, _ := r.get(b, c, "GET", "/inbox", "", 200, "Note 198")
		s.add("signin-inbox-cpu", cpuLogin+r.cpu)
		t0 := time.Now()
		if _, err := pcrypto.DerivePassword(context.Background(), []byte(r.pass), salt, params); err != nil {
			b.Fatal(err)
		}
		hash := time.Since(t0)
		s.add("signin", sl)
		s.add("inbox", si)
		s.add("hash", hash)
		s.add("beyond-hash", sl+si-hash)
		c.HTTP.CloseIdleConnections()
	}
	b.StopTimer()
	s.report(b)
}
