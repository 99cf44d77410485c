package notify

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/phigate/phigate/store"
)

func testDKIM(t testing.TB) *DKIMSigner {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, ek, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &DKIMSigner{Domain: "riverside.example", Selector: "phigate", RSA: rk, Ed25519: ek}
}

// VerifyDKIM checks msg's signatures with go-msgauth's verifier, answering
// its DNS queries from records, and returns the verifications.
func verifyDKIM(t *testing.T, msg []byte, records []DKIMRecord) []*dkim.Verification {
	t.Helper()
	lookup := func(name string) ([]string, error) {
		for _, r := range records {
			if r.Name == name {
				return []string{r.Value}, nil
			}
		}
		return nil, errors.New("no such record: " + name)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatal(err)
	}
	return vs
}

// A notice from the dispatcher carries an RSA and an Ed25519 signature
// that verify against the records to publish, over the headers that make
// a notice (From, To, Subject, Date, Message-ID, Auto-Submitted, MIME);
// changing any of them, or the body, breaks both.
func TestDKIMSignedNoticeVerifies(t *testing.T) {
	s := testDKIM(t)
	records, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	d := &Dispatcher{Org: testOrg, Hostname: "gw.riverside.example", DKIM: s,
		Now: func() time.Time { return time.Date(2026, 3, 2, 8, 15, 0, 0, time.UTC) }}
	n := Notice{To: "pat@example.net", Link: "https://portal.riverside.example/claim/tok123", Claim: true, ExpiresAt: expires}
	msg, err := d.render(store.OutboxItem{ID: "outbox-7", Kind: KindNewMessage}, n)
	if err != nil {
		t.Fatal(err)
	}
	vs := verifyDKIM(t, msg, records)
	if len(vs) != 2 {
		t.Fatalf("%d signatures, want 2", len(vs))
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "riverside.example" {
			t.Fatalf("signature for %s: %v", v.Domain, v.Err)
		}
		for _, h := range []string{"from", "to", "subject", "date", "message-id", "auto-submitted", "mime-version", "content-type"} {
			if !slices.ContainsFunc(v.HeaderKeys, func(k string) bool { return strings.EqualFold(k, h) }) {
				t.Errorf("%s not signed (signed: %v)", h, v.HeaderKeys)
			}
		}
	}
	for _, algo := range []string{"a=rsa-sha256", "a=ed25519-sha256"} {
		if !bytes.Contains(msg, []byte(algo)) {
			t.Errorf("no %s signature", algo)
		}
	}
	if bytes.Contains(bytes.ToLower(msg), []byte("list-unsubscribe")) {
		t.Error("a transactional notice carries List-Unsubscribe")
	}

	for what, tamper := range map[string]func([]byte) []byte{
		"subject": func(m []byte) []byte {
			return bytes.Replace(m, []byte("Subject: You have"), []byte("Subject: You had"), 1)
		},
		"added From": func(m []byte) []byte {
			i := bytes.Index(m, []byte("\r\n\r\n"))
			return append(append(append([]byte{}, m[:i]...), "\r\nFrom: evil@example.com"...), m[i:]...)
		},
		"body": func(m []byte) []byte { return bytes.Replace(m, []byte("tok123"), []byte("tok124"), 1) },
	} {
		bad := tamper(msg)
		if bytes.Equal(bad, msg) {
			t.Fatalf("%s: tamper changed nothing", what)
		}
		for _, v := range verifyDKIM(t, bad, records) {
			if v.Err == nil {
				t.Errorf("%s changed, a signature still verifies", what)
			}
		}
	}
}

// The RSA record is longer than one TXT string may be (255 octets): the
// zone line splits it, and the pieces join back to the value.
func TestDKIMZoneLineSplits(t *testing.T) {
	records, err := testDKIM(t).Records()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records {
		line := r.ZoneLine()
		if !strings.HasPrefix(line, r.Name+". IN TXT ( \"") {
			t.Fatalf("zone line %q", line)
		}
		var joined strings.Builder
		for i, piece := range strings.Split(line, "\"") {
			if i%2 == 1 {
				if len(piece) > 255 {
					t.Errorf("%s: a string of %d octets", r.Name, len(piece))
				}
				joined.WriteString(piece)
			}
		}
		if joined.String() != r.Value {
			t.Errorf("%s: the pieces join to %q", r.Name, joined.String())
		}
	}
	if len(records[0].Value) <= 255 || !strings.HasSuffix(records[0].Name, "phigate-rsa._domainkey.riverside.example") {
		t.Errorf("rsa record %s (%d octets)", records[0].Name, len(records[0].Value))
	}
}

// BenchmarkDKIMSign is the CPU the two signatures add to each notice.
func BenchmarkDKIMSign(b *testing.B) {
	s := testDKIM(b)
	msg, err := Render(Notice{To: "pat@example.net", Link: "https://portal.riverside.example/claim/tok123", Claim: true,
		ExpiresAt: expires}, testOrg, "gw.riverside.example", "outbox-1", time.Now())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := s.Sign(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDispatchSigned sends a backlog of b.N notices through the
// dispatcher's workers to a sender that keeps nothing, unsigned and
// DKIM-signed, so the two rates compare on the same machine at the same
// moment (docs/perf.md).
func BenchmarkDispatchSigned(b *testing.B) {
	for _, signed := range []bool{false, true} {
		b.Run(map[bool]string{false: "unsigned", true: "signed"}[signed], func(b *testing.B) {
			f := newFixture(b)
			ctx := context.Background()
			var items []store.OutboxItem
			for range b.N {
				it, err := NewItem(f.ring, KindNewMessage, Notice{To: patient, Link: "https://x/login", ExpiresAt: f.clock.Now().Add(time.Hour)},
					f.user.ID, "", f.clock.Now())
				if err != nil {
					b.Fatal(err)
				}
				items = append(items, it)
			}
			if err := f.st.Deliver(ctx, store.Delivery{Outbox: items}); err != nil {
				b.Fatal(err)
			}
			sender := &scriptedSender{}
			d := f.dispatcher(sender)
			if signed {
				d.DKIM = testDKIM(b)
			}
			b.ResetTimer()
			start := time.Now()
			n, err := d.RunOnce(ctx)
			el := time.Since(start)
			b.StopTimer()
			if err != nil || n != b.N || sender.count() != b.N {
				b.Fatalf("sent %d of %d: %v", n, b.N, err)
			}
			b.ReportMetric(float64(b.N)/el.Seconds(), "notices/s")
		})
	}
}
