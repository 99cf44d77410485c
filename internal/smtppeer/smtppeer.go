// Package smtppeer is a real SMTP server on loopback for tests that need a
// smarthost: STARTTLS with a self-signed certificate the client is given,
// deliveries and sessions counted, and an outage switch (Down/Up) that
// closes the listening socket and opens it again on the same address.
package smtppeer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/outbound"
)

// Delivery is one message the peer accepted.
type Delivery struct {
	From string
	To   []string
	Data []byte
}

// Peer is the running server.
type Peer struct {
	t    testing.TB
	Addr string
	Pool *x509.CertPool // trusts the peer's certificate
	tls  *tls.Config
	der  []byte

	mu         sync.Mutex
	srv        *smtp.Server
	ln         net.Listener
	deliveries []Delivery
	sessions   int
	onData     func(Delivery) error
}

// Start runs a peer on 127.0.0.1:0 until the test ends.
func Start(t testing.TB) *Peer {
	t.Helper()
	p := &Peer{t: t}
	p.tls, p.Pool = selfSigned(t)
	p.der = p.tls.Certificates[0].Certificate[0]
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.Down)
	return p
}

// Smarthost returns an outbound sender for the peer.
func (p *Peer) Smarthost() *outbound.Smarthost {
	s, err := outbound.NewSmarthost(config.Smarthost{Addr: p.Addr}, "gw.test")
	if err != nil {
		p.t.Fatal(err)
	}
	s.TLS.RootCAs = p.Pool
	return s
}

// CAFile writes the peer's certificate as PEM, for smarthost.ca_file.
func (p *Peer) CAFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "smarthost-ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// OnData, if set, decides the reply to each message (nil: 250).
func (p *Peer) OnData(f func(Delivery) error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onData = f
}

func (p *Peer) serve(ln net.Listener) {
	s := smtp.NewServer(backend{p})
	s.Domain = "smarthost.test"
	s.TLSConfig = p.tls
	s.ReadTimeout, s.WriteTimeout = time.Minute, time.Minute
	s.ErrorLog = log.New(io.Discard, "", 0)
	p.mu.Lock()
	p.srv, p.ln = s, ln
	p.mu.Unlock()
	go s.Serve(ln)
}

// Down closes the peer: connections are refused until Up.
func (p *Peer) Down() {
	p.mu.Lock()
	s, ln := p.srv, p.ln
	p.srv, p.ln = nil, nil
	p.mu.Unlock()
	if s != nil {
		// Serve may not have registered the listener yet: close it here
		// too, or the peer would go on accepting.
		ln.Close()
		s.Close()
	}
}

// Up listens again on the same address.
func (p *Peer) Up() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.Addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(ln)
}

// Deliveries returns what was accepted so far.
func (p *Peer) Deliveries() []Delivery {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Delivery(nil), p.deliveries...)
}

// Sessions counts SMTP sessions opened (one per EHLO after STARTTLS too).
func (p *Peer) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sessions
}

type backend struct{ p *Peer }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.p.mu.Lock()
	b.p.sessions++
	b.p.mu.Unlock()
	return &session{p: b.p}, nil
}

type session struct {
	p   *Peer
	cur Delivery
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.cur = Delivery{From: from}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.To = append(s.cur.To, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = b
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.p.onData != nil {
		if err := s.p.onData(s.cur); err != nil {
			return err
		}
	}
	s.p.deliveries = append(s.p.deliveries, s.cur)
	return nil
}

func (s *session) Reset()        { s.cur = Delivery{} }
func (s *session) Logout() error { return nil }

// selfSigned makes a certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smarthost.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion: tls.VersionTLS12}, pool
}
