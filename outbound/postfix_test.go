package outbound

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/internal/postfixtest"
	"github.com/phigate/phigate/internal/testtool"
)

// TestSmarthostPostfix: the smarthost client against a real MTA. A private
// Postfix plays the organisation's smarthost: STARTTLS required, AUTH PLAIN
// (Cyrus SASL with its own sasldb) only over TLS, relaying only for
// authenticated clients, to a recording server on 127.0.0.1:0. Two messages
// go over one connection and arrive intact; Postfix's 5xx replies (wrong
// password, refused recipient) are permanent, its 4xx reply temporary; a
// smarthost whose certificate is not trusted gets nothing; a probe logs in
// and sends nothing.
func TestSmarthostPostfix(t *testing.T) {
	testtool.Need(t, "saslpasswd2")
	sink := &backend{}
	sinkAddr, _ := startServer(t, sink, modePlain, nil)
	cert := localCert(t)
	pf, addr := startPostfixSmarthost(t, sinkAddr, cert, "gateway", "correct horse battery")
	good := config.Smarthost{Addr: addr, Username: "gateway", PasswordFile: passwordFile(t, "correct horse battery"), CAFile: cert.caFile}
	ctx := context.Background()

	t.Run("two messages over one connection", func(t *testing.T) {
		s := smarthostFor(t, good)
		conn := s.NewConn()
		msg2 := bytes.Replace(testMsg, []byte("Subject: notice"), []byte("Subject: second notice"), 1)
		if err := conn.Send(ctx, "no-reply@clinic.example", []string{"pat@example.net", "other@example.net"}, testMsg); err != nil {
			t.Fatalf("first message: %v", err)
		}
		if err := conn.Send(ctx, "no-reply@clinic.example", []string{"third@example.net"}, msg2); err != nil {
			t.Fatalf("second message on the same connection: %v", err)
		}
		conn.Close()
		got := waitDeliveries(t, pf, sink, 2)
		want := map[string]struct {
			to   string
			subj string
		}{"other@example.net,pat@example.net": {subj: "Subject: notice\r\n"}, "third@example.net": {subj: "Subject: second notice\r\n"}}
		for _, d := range got {
			to := slices.Sorted(slices.Values(d.to))
			w, ok := want[strings.Join(to, ",")]
			if !ok || d.from != "no-reply@clinic.example" || !bytes.Contains(d.data, []byte(w.subj)) ||
				!bytes.HasSuffix(d.data, []byte("\r\n\r\n"+canary+"\r\n")) {
				t.Errorf("relayed by Postfix: from %s to %v\n%s", d.from, d.to, d.data)
			}
		}
		log := pf.ReadLog()
		for _, re := range []string{
			`Anonymous TLS connection established from|TLS connection established from`,
			`sasl_method=PLAIN, sasl_username=gateway`,
			`to=<third@example\.net>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:\d+, .*status=sent`,
		} {
			if !regexp.MustCompile(re).MatchString(log) {
				t.Errorf("Postfix log lacks %s", re)
			}
		}
		// Postfix logs each session's commands when it ends: both
		// messages came in one session.
		if !regexp.MustCompile(`disconnect from \S+ ehlo=\d+ starttls=1 auth=1 mail=2 rcpt=3 data=2 rset=1 quit=1`).MatchString(log) {
			t.Errorf("Postfix log shows no single session with both messages")
		}
	})

	// Replies that are about the message or the account: the dispatcher
	// must stop on 5xx and retry on 4xx.
	replies := []struct {
		name      string
		cfg       config.Smarthost
		to        string
		code      int
		permanent bool
	}{
		{"wrong password", config.Smarthost{Addr: addr, Username: "gateway", PasswordFile: passwordFile(t, "wrong"), CAFile: cert.caFile},
			"pat@example.net", 535, true},
		{"refused recipient", good, "refused@example.net", 550, true},
		{"deferred recipient", good, "later@example.net", 450, false},
	}
	for _, r := range replies {
		t.Run(r.name, func(t *testing.T) {
			err := smarthostFor(t, r.cfg).Send(ctx, "no-reply@clinic.example", []string{r.to}, testMsg)
			var se *smtp.SMTPError
			var perm *PermanentError
			if !errors.As(err, &se) || se.Code != r.code || errors.As(err, &perm) != r.permanent {
				t.Fatalf("Send = %v, want SMTP %d (permanent %v)", err, r.code, r.permanent)
			}
		})
	}

	t.Run("untrusted certificate", func(t *testing.T) {
		c := good
		c.CAFile = ""
		err := smarthostFor(t, c).Send(ctx, "no-reply@clinic.example", []string{"pat@example.net"}, testMsg)
		var uerr x509.UnknownAuthorityError
		if !errors.As(err, &uerr) || !Unreachable(err) {
			t.Fatalf("Send with an unknown CA = %v, want a certificate error (temporary)", err)
		}
	})

	t.Run("probe", func(t *testing.T) {
		quits := regexp.MustCompile(`disconnect from .* ehlo=2 starttls=1 auth=1 quit=1 commands=5`)
		before := len(quits.FindAllString(pf.ReadLog(), -1))
		if err := smarthostFor(t, good).Probe(ctx); err != nil {
			t.Fatalf("Probe: %v", err)
		}
		// Postfix logs a session's commands when it ends: EHLO, STARTTLS,
		// EHLO, AUTH, QUIT and nothing else.
		waitLog(t, pf, quits, before+1)
	})

	// Nothing but the two messages reached the next hop.
	if mails, ds, _ := sink.snapshot(); mails != 2 || len(ds) != 2 {
		t.Errorf("the next hop got %d MAIL and %d messages, want 2 and 2", mails, len(ds))
	}
}

// startPostfixSmarthost runs a Postfix that listens on a free loopback port
// as the organisation's smarthost, with one SASL account user/pass, and
// relays to next; it returns the instance and its address.
func startPostfixSmarthost(t *testing.T, next string, cert *testCert, user, pass string) (*postfixtest.Instance, string) {
	t.Helper()
	pf := postfixtest.New(t)
	// Debian's Postfix reads Cyrus's smtpd.conf from config_directory/sasl
	// (it ignores cyrus_sasl_config_path); smtpd reads sasldb2 as postfix.
	const realm = "smarthost.clinic.example"
	sasl := filepath.Join(pf.Dir, "sasl")
	pf.Run("mkdir", "-m", "0755", sasl)
	cmd := exec.Command("saslpasswd2", "-f", filepath.Join(sasl, "sasldb2"), "-c", "-p", "-u", realm, user)
	cmd.Stdin = strings.NewReader(pass)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("saslpasswd2: %v\n%s", err, out)
	}
	pf.Run("chmod", "0644", filepath.Join(sasl, "sasldb2"))
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.tls.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", postfixtest.FreePort(t))
	host, port, err := net.SplitHostPort(next)
	if err != nil {
		t.Fatal(err)
	}
	relayhost := "[" + host + "]:" + port // brackets: no MX lookup
	pf.Start(postfixtest.Options{
		Files: map[string]string{
			"cert.pem": string(cert.pem),
			"key.pem":  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
			"etc/sasl/smtpd.conf": fmt.Sprintf("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: %s\n",
				filepath.Join(sasl, "sasldb2")),
			"recipient_access": "refused@example.net 550 5.1.1 no such mailbox\nlater@example.net 450 4.2.1 mailbox busy, try later\n",
		},
		MainCF: fmt.Sprintf(smarthostMainCF, realm, relayhost, filepath.Join(pf.Base, "cert.pem"), filepath.Join(pf.Base, "key.pem"),
			sasl, realm, filepath.Join(pf.Base, "recipient_access")),
		MasterCF: addr + " inet n - n - - smtpd\n",
	})
	pf.WaitListening(addr, 30*time.Second)
	return pf, addr
}

// smarthostMainCF: myhostname, relayhost, TLS certificate and key, Cyrus
// config folder, SASL realm, recipient access table. Only authenticated
// clients may relay, and AUTH is offered only after STARTTLS.
const smarthostMainCF = `myhostname = %s
mynetworks = 127.0.0.1/32
relayhost = %s
smtp_tls_security_level = none
smtpd_tls_security_level = encrypt
smtpd_tls_cert_file = %s
smtpd_tls_key_file = %s
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_loglevel = 1
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
smtpd_sasl_path = smtpd
cyrus_sasl_config_path = %s
smtpd_sasl_local_domain = %s
smtpd_sasl_security_options = noanonymous
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = check_recipient_access texthash:%s, permit_sasl_authenticated, reject
`

// waitDeliveries waits (bounded) until the next hop has n messages,
// flushing Postfix's queue now and then.
func waitDeliveries(t *testing.T, pf *postfixtest.Instance, sink *backend, n int) []delivery {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	nextFlush := time.Now().Add(5 * time.Second)
	for {
		if _, ds, _ := sink.snapshot(); len(ds) >= n {
			return ds
		}
		if time.Now().After(deadline) {
			t.Fatalf("the next hop did not get %d messages from Postfix within a minute\nqueue:\n%s", n, pf.Queue())
		}
		if time.Now().After(nextFlush) {
			pf.Cmd(nil, "postqueue", "-c", pf.Dir, "-f")
			nextFlush = time.Now().Add(5 * time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLog waits (bounded) until re matches at least n times in Postfix's log.
func waitLog(t *testing.T, pf *postfixtest.Instance, re *regexp.Regexp, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(re.FindAllString(pf.ReadLog(), -1)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("Postfix log has fewer than %d matches of %s", n, re)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
