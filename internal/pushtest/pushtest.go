// Package pushtest is a local stand-in for a Web Push service (RFC 8030)
// and for the browsers subscribed to it: an httptest TLS server that
// records every push, devices whose keys the test made, and the receiving
// side of RFC 8291 (aes128gcm) so a test reads what a browser would.
package pushtest

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Host is the push service's name in endpoints: the certificate of
// httptest's TLS server covers it, and Client dials the server for it.
const Host = "example.com"

// Push is one request the service received.
type Push struct {
	Path   string
	Header http.Header
	Body   []byte
}

// Service records pushes and answers each device's path with the status
// set for it (201 Created by default, RFC 8030 5).
type Service struct {
	srv    *httptest.Server
	mu     sync.Mutex
	pushes []Push
	status map[string]int
	got    chan struct{}
}

// Start runs a service until the test ends.
func Start(t testing.TB) *Service {
	s := &Service{status: map[string]int{}, got: make(chan struct{}, 1024)}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *Service) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.pushes = append(s.pushes, Push{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
	code, ok := s.status[r.URL.Path]
	s.mu.Unlock()
	if !ok {
		code = http.StatusCreated
	}
	w.WriteHeader(code)
	select {
	case s.got <- struct{}{}:
	default:
	}
}

// Answer makes the service answer pushes to d with status.
func (s *Service) Answer(d *Device, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[d.path] = status
}

// Pushes returns what was received so far.
func (s *Service) Pushes() []Push {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Push(nil), s.pushes...)
}

// Wait returns once n pushes in all have arrived, or fails the test when
// ctx ends first.
func (s *Service) Wait(ctx context.Context, t testing.TB, n int) []Push {
	t.Helper()
	for {
		if p := s.Pushes(); len(p) >= n {
			return p
		}
		select {
		case <-s.got:
		case <-ctx.Done():
			t.Fatalf("the push service received %d pushes, want %d", len(s.Pushes()), n)
		}
	}
}

// Client reaches the service for any https://example.com URL and follows
// no redirect (as the gateway's own client).
func (s *Service) Client() *http.Client {
	c := s.srv.Client()
	tr := c.Transport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	addr := s.srv.Listener.Addr().String()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Device is a browser's subscription: its private key stays here.
type Device struct {
	path string
	priv *ecdh.PrivateKey
	auth []byte
}

// NewDevice makes a subscription with fresh RFC 8291 keys.
func NewDevice(t testing.TB) *Device {
	priv, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	rand.Read(auth)
	tok := make([]byte, 24)
	rand.Read(tok)
	return &Device{path: "/wpush/v2/" + base64.RawURLEncoding.EncodeToString(tok), priv: priv, auth: auth}
}

// Endpoint is the device's push URL on the service.
func (d *Device) Endpoint() string { return "https://" + Host + d.path }

// Path is the endpoint's path, to find the device's pushes.
func (d *Device) Path() string { return d.path }

// P256dh and Auth are the subscription's keys as a browser gives them.
func (d *Device) P256dh() string {
	return base64.RawURLEncoding.EncodeToString(d.priv.PublicKey().Bytes())
}

func (d *Device) Auth() string { return base64.RawURLEncoding.EncodeToString(d.auth) }

// JSON is the subscription as PushSubscription.toJSON() gives it.
func (d *Device) JSON() map[string]any {
	return map[string]any{"endpoint": d.Endpoint(), "expirationTime": nil,
		"keys": map[string]string{"p256dh": d.P256dh(), "auth": d.Auth()}}
}

// Decrypt opens an aes128gcm body (RFC 8188 2.1 header, RFC 8291 3.3/3.4
// key derivation) as the browser does, and removes the padding.
func (d *Device) Decrypt(body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("body shorter than the aes128gcm header")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if len(body) < 21+idlen || idlen != 65 {
		return nil, fmt.Errorf("keyid of %d bytes, want the sender's 65-byte public key", idlen)
	}
	asPub, ct := body[21:21+idlen], body[21+idlen:]
	if uint32(len(ct)) > rs {
		return nil, errors.New("more than one record")
	}
	as, err := ecdh.P256().NewPublicKey(asPub)
	if err != nil {
		return nil, err
	}
	secret, err := d.priv.ECDH(as)
	if err != nil {
		return nil, err
	}
	keyInfo := append(append([]byte("WebPush: info\x00"), d.priv.PublicKey().Bytes()...), asPub...)
	ikm, err := hkdf.Key(sha256.New, secret, d.auth, string(keyInfo), 32)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil {
		return nil, err
	}
	// RFC 8188 2: the last record ends with the delimiter 0x02, then zeros.
	plain = bytes.TrimRight(plain, "\x00")
	if len(plain) == 0 || plain[len(plain)-1] != 2 {
		return nil, errors.New("no last-record delimiter")
	}
	return plain[:len(plain)-1], nil
}

// CheckVAPID verifies a push's Authorization header (RFC 8292 2, 3): the
// JWT is signed (ES256) by the key named in k=, which must be
// wantPublic, for the endpoint's origin, and expires within 24 hours.
func CheckVAPID(h http.Header, wantPublic string, now time.Time) error {
	v, ok := strings.CutPrefix(h.Get("Authorization"), "vapid ")
	if !ok {
		return errors.New("no vapid authorization")
	}
	var tok, k string
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if s, ok := strings.CutPrefix(part, "t="); ok {
			tok = s
		} else if s, ok := strings.CutPrefix(part, "k="); ok {
			k = s
		}
	}
	if k != wantPublic {
		return fmt.Errorf("k=%q, want the gateway's VAPID key", k)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return errors.New("t is not a JWT")
	}
	pub, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil {
		return err
	}
	x, y := elliptic.Unmarshal(elliptic.P256(), pub) //nolint:staticcheck // the key arrives as an uncompressed point
	if x == nil {
		return errors.New("k is not a P-256 point")
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return errors.New("signature is not ES256")
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(&ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return errors.New("JWT signature does not verify")
	}
	claims, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return err
	}
	var c struct {
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
		Sub string `json:"sub"`
	}
	if err := json.Unmarshal(claims, &c); err != nil {
		return err
	}
	if c.Aud != "https://"+Host {
		return fmt.Errorf("aud %q, want the push service's origin", c.Aud)
	}
	if exp := time.Unix(c.Exp, 0); exp.Before(now) || exp.After(now.Add(24*time.Hour)) {
		return fmt.Errorf("exp %s is not within 24 hours of %s", exp, now)
	}
	if !strings.HasPrefix(c.Sub, "mailto:") && !strings.HasPrefix(c.Sub, "https:") {
		return fmt.Errorf("sub %q is not a contact URI", c.Sub)
	}
	return nil
}
