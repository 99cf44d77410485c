package outbound

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/phigate/phigate/config"
)

func smarthostFor(t *testing.T, c config.Smarthost) *Smarthost {
	t.Helper()
	s, err := NewSmarthost(c, "gw.clinic.example")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSmarthostConnReuse: one Conn carries several messages over one
// connection (one TLS handshake and AUTH), and when the smarthost has
// dropped it, the next message goes over a new one, delivered once.
func TestSmarthostConnReuse(t *testing.T) {
	cert := localCert(t)
	be := &backend{user: "gateway", pass: "pw"}
	addr, _ := startServer(t, be, modeSTARTTLS, cert)
	s := smarthostFor(t, config.Smarthost{Addr: addr, CAFile: cert.caFile, Username: "gateway", PasswordFile: passwordFile(t, "pw")})
	ctx := context.Background()
	c := s.NewConn()
	defer c.Close()
	for i := 0; i < 3; i++ {
		if err := c.Send(ctx, "no-reply@clinic.example", []string{"pat@example.net"}, testMsg); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	_, ds, auths := be.snapshot()
	if len(ds) != 3 || len(auths) != 1 {
		t.Fatalf("%d deliveries, %d AUTHs; want 3 over one authenticated connection", len(ds), len(auths))
	}
	for i, d := range ds {
		if !d.tls || !d.authed {
			t.Errorf("delivery %d: tls=%v authed=%v", i, d.tls, d.authed)
		}
	}
	// The smarthost drops the idle connection.
	c.(*smarthostConn).conn.Close()
	if err := c.Send(ctx, "no-reply@clinic.example", []string{"pat@example.net"}, testMsg); err != nil {
		t.Fatalf("send after the connection was dropped: %v", err)
	}
	_, ds, auths = be.snapshot()
	if len(ds) != 4 || len(auths) != 2 {
		t.Errorf("%d deliveries, %d AUTHs; want 4 (none twice) over a second connection", len(ds), len(auths))
	}
}

// TestSmarthostProbe: a probe opens a session (TLS, AUTH) and sends
// nothing; an unreachable or clear-text smarthost fails it in a way
// Unreachable recognises, a refused AUTH does not.
func TestSmarthostProbe(t *testing.T) {
	cert := localCert(t)
	be := &backend{user: "gateway", pass: "pw"}
	addr, _ := startServer(t, be, modeSTARTTLS, cert)
	ctx := context.Background()
	good := config.Smarthost{Addr: addr, CAFile: cert.caFile, Username: "gateway", PasswordFile: passwordFile(t, "pw")}
	if err := smarthostFor(t, good).Probe(ctx); err != nil {
		t.Fatalf("probe: %v", err)
	}
	mails, ds, auths := be.snapshot()
	if mails != 0 || len(ds) != 0 || len(auths) != 1 {
		t.Errorf("probe: %d MAIL, %d deliveries, %d AUTH; want only the AUTH", mails, len(ds), len(auths))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	err = smarthostFor(t, config.Smarthost{Addr: closed}).Probe(ctx)
	if err == nil || !Unreachable(err) {
		t.Errorf("closed port: %v, unreachable=%v", err, Unreachable(err))
	}

	plainAddr, _ := startServer(t, &backend{}, modePlain, nil)
	err = smarthostFor(t, config.Smarthost{Addr: plainAddr}).Probe(ctx)
	if !errors.Is(err, ErrNoSTARTTLS) || !Unreachable(err) {
		t.Errorf("no STARTTLS: %v, unreachable=%v", err, Unreachable(err))
	}

	bad := good
	bad.PasswordFile = passwordFile(t, "wrong")
	err = smarthostFor(t, bad).Probe(ctx)
	var perm *PermanentError
	if !errors.As(err, &perm) || Unreachable(err) {
		t.Errorf("refused AUTH: %v, unreachable=%v; want permanent, reachable", err, Unreachable(err))
	}
}
