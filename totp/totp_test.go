package totp

import (
	"bytes"
	"encoding/base32"
	"image/png"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	ptotp "github.com/pquerna/otp/totp"
)

func codeAt(t *testing.T, secret string, step int64) string {
	t.Helper()
	c, err := ptotp.GenerateCodeCustom(secret, time.Unix(step*Period, 0), ptotp.ValidateOpts{
		Period: Period, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newSecret(t *testing.T) string {
	t.Helper()
	e, err := New("Riverside Family Practice", "jane.doe@example.org")
	if err != nil {
		t.Fatal(err)
	}
	return e.Secret
}

// RFC 6238 appendix B, SHA1 secret "12345678901234567890": 8-digit codes;
// the 6-digit code is their last six digits.
func TestRFC6238Vector(t *testing.T) {
	secret := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString([]byte("12345678901234567890"))
	for unix, want := range map[int64]string{59: "287082", 1111111109: "081804", 1234567890: "005924", 2000000000: "279037"} {
		now := time.Unix(unix, 0)
		step, ok := Verify(secret, want, now, 0)
		if !ok || step != unix/30 {
			t.Errorf("Verify(RFC vector at %d) = %d, %v", unix, step, ok)
		}
	}
}

func TestVerifyWindow(t *testing.T) {
	secret := newSecret(t)
	now := time.Date(2026, 11, 3, 9, 15, 40, 0, time.UTC)
	cur := Step(now)
	if cur != now.Unix()/30 {
		t.Fatalf("Step = %d", cur)
	}
	for _, tt := range []struct {
		name   string
		offset int64
		ok     bool
	}{
		{"current", 0, true},
		{"previous step", -1, true},
		{"next step", 1, true},
		{"two steps ago", -2, false},
		{"two steps ahead", 2, false},
		{"an hour ago", -120, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code := codeAt(t, secret, cur+tt.offset)
			// Skip the rare case where the code of another step in the
			// window happens to be the same.
			for d := int64(-1); d <= 1; d++ {
				if !tt.ok && codeAt(t, secret, cur+d) == code {
					t.Skip("code collision")
				}
			}
			step, ok := Verify(secret, code, now, 0)
			if ok != tt.ok {
				t.Fatalf("Verify(offset %d) ok = %v, want %v", tt.offset, ok, tt.ok)
			}
			if ok && step != cur+tt.offset {
				t.Fatalf("Verify(offset %d) step = %d, want %d", tt.offset, step, cur+tt.offset)
			}
			if !ok && step != 0 {
				t.Fatalf("refused with step %d", step)
			}
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	secret := newSecret(t)
	now := time.Date(2026, 11, 3, 9, 15, 40, 0, time.UTC)
	cur := Step(now)
	code := codeAt(t, secret, cur)

	last, ok := Verify(secret, code, now, 0)
	if !ok || last != cur {
		t.Fatalf("first use: %d, %v", last, ok)
	}
	// The same code again, now and 20 s later (still inside the window).
	if _, ok := Verify(secret, code, now, last); ok {
		t.Fatal("replay of the same code accepted")
	}
	if _, ok := Verify(secret, code, now.Add(20*time.Second), last); ok {
		t.Fatal("replay of the same code 20 s later accepted")
	}
	// After the next step's code was used, the current (older) one is refused.
	next := codeAt(t, secret, cur+1)
	if next == code {
		t.Skip("code collision")
	}
	last2, ok := Verify(secret, next, now, 0)
	if !ok || last2 != cur+1 {
		t.Fatalf("next-step code: %d, %v", last2, ok)
	}
	if _, ok := Verify(secret, code, now, last2); ok {
		t.Fatal("older code accepted after a newer one was used")
	}
	prev := codeAt(t, secret, cur-1)
	if _, ok := Verify(secret, prev, now, last); ok && prev != code && prev != next {
		t.Fatal("previous-step code accepted after the current one was used")
	}
	// A later step is fine.
	later := now.Add(30 * time.Second)
	if step, ok := Verify(secret, codeAt(t, secret, cur+1), later, last); !ok || step != cur+1 {
		t.Fatalf("next step after use: %d, %v", step, ok)
	}
}

func TestVerifyFormat(t *testing.T) {
	secret := newSecret(t)
	now := time.Now()
	code := codeAt(t, secret, Step(now))
	if _, ok := Verify(secret, code[:3]+" "+code[3:], now, 0); !ok {
		t.Error("code with a space refused")
	}
	if _, ok := Verify(secret, " "+code+"\n", now, 0); !ok {
		t.Error("code with surrounding space refused")
	}
	for _, bad := range []string{
		"", "12345", "1234567", code + "0", "0" + code, code[:5],
		"12a456", "abcdef", "------", "١٢٣٤٥٦", // Arabic-Indic digits
		"１２３４５６", // full-width digits
		code[:5] + "x", "+" + code[1:], "-" + code[1:],
	} {
		if _, ok := Verify(secret, bad, now, 0); ok {
			t.Errorf("Verify(%q) accepted", bad)
		}
	}
	if _, ok := Verify("not base32!", code, now, 0); ok {
		t.Error("invalid secret accepted")
	}
	if _, ok := Verify("", code, now, 0); ok {
		t.Error("empty secret accepted")
	}
}

func TestStep(t *testing.T) {
	for unix, want := range map[int64]int64{0: 0, 29: 0, 30: 1, 59: 1, -1: -1, -30: -1, -31: -2} {
		if got := Step(time.Unix(unix, 0)); got != want {
			t.Errorf("Step(%d) = %d, want %d", unix, got, want)
		}
	}
}

func TestNew(t *testing.T) {
	e, err := New("Riverside Family Practice", "jane.doe+x@example.org")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(e.Secret)
	if err != nil || len(raw) != SecretSize || strings.Contains(e.Secret, "=") {
		t.Fatalf("secret %q: %d bytes, %v", e.Secret, len(raw), err)
	}
	u, err := url.Parse(e.URI)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "otpauth" || u.Host != "totp" {
		t.Errorf("URI %q: scheme/type", e.URI)
	}
	if u.Path != "/Riverside Family Practice:jane.doe+x@example.org" {
		t.Errorf("URI label = %q", u.Path)
	}
	if strings.Contains(e.URI, " ") {
		t.Errorf("URI has a raw space: %q", e.URI)
	}
	q := u.Query()
	for k, want := range map[string]string{
		"secret": e.Secret, "issuer": "Riverside Family Practice",
		"algorithm": "SHA1", "digits": "6", "period": "30",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("URI %s = %q, want %q", k, got, want)
		}
	}
	img, err := png.Decode(bytes.NewReader(e.QRPNG))
	if err != nil {
		t.Fatalf("QRPNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != QRSize || b.Dy() != QRSize {
		t.Errorf("QR size %v", b)
	}
	// Quiet zone: the margin is white.
	for _, p := range [][2]int{{0, 0}, {QRMargin - 1, QRMargin - 1}, {QRSize - 1, QRSize / 2}} {
		if r, g, b, _ := img.At(p[0], p[1]).RGBA(); r != 0xffff || g != 0xffff || b != 0xffff {
			t.Errorf("pixel %v is not white", p)
		}
	}
	// The code verifies against the enrolled secret.
	now := time.Now()
	if _, ok := Verify(e.Secret, codeAt(t, e.Secret, Step(now)), now, 0); !ok {
		t.Error("code from the new secret refused")
	}
	// Secrets are random.
	e2, err := New("Riverside Family Practice", "jane.doe+x@example.org")
	if err != nil || e2.Secret == e.Secret {
		t.Fatalf("second secret: %v, same=%v", err, e2 != nil && e2.Secret == e.Secret)
	}
}

func TestNewNames(t *testing.T) {
	if _, err := New("", "a@example.org"); err != ErrMissingName {
		t.Errorf("empty issuer: %v", err)
	}
	if _, err := New("Clinic", " "); err != ErrMissingName {
		t.Errorf("empty account: %v", err)
	}
	e, err := New("St Mary's: Cardiology", "a@example.org")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(e.URI)
	if u.Path != "/St Mary's Cardiology:a@example.org" || u.Query().Get("issuer") != "St Mary's Cardiology" {
		t.Errorf("colon in issuer: %q", e.URI)
	}
	// A long label still fits in the QR code.
	long := strings.Repeat("Riverside Family Practice ", 8)
	if _, err := New(long, strings.Repeat("x", 64)+"@example.org"); err != nil {
		t.Errorf("long names: %v", err)
	}
}

func TestRecoveryCodes(t *testing.T) {
	codes := RecoveryCodes(RecoveryCodeCount)
	if len(codes) != 10 {
		t.Fatalf("%d codes", len(codes))
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) != 11 || c[5] != '-' {
			t.Errorf("code %q: want xxxxx-xxxxx", c)
		}
		for i := 0; i < len(c); i++ {
			if i != 5 && !strings.ContainsRune(recoveryAlphabet, rune(c[i])) {
				t.Errorf("code %q has %q", c, c[i])
			}
		}
		n := Normalize(c)
		if seen[n] {
			t.Errorf("duplicate %q", c)
		}
		seen[n] = true
		if len(n) != 10 || n != strings.ReplaceAll(c, "-", "") {
			t.Errorf("Normalize(%q) = %q", c, n)
		}
		// Round trip from what people type.
		for _, typed := range []string{
			strings.ToUpper(c),
			" " + c[:3] + " " + c[3:5] + c[6:] + " ",
			strings.ReplaceAll(c, "-", ""),
			c[:5] + " – " + c[6:],
			strings.NewReplacer("0", "O", "1", "l").Replace(c),
			strings.NewReplacer("0", "o", "1", "I").Replace(strings.ToUpper(c)),
		} {
			if got := Normalize(typed); got != n {
				t.Errorf("Normalize(%q) = %q, want %q", typed, got, n)
			}
		}
	}
	if len(RecoveryCodes(0)) != 0 || len(RecoveryCodes(-1)) != 0 {
		t.Error("n <= 0 should give no codes")
	}
	// Many codes: all different, every symbol used.
	many := RecoveryCodes(2000)
	all := map[string]bool{}
	used := map[byte]bool{}
	for _, c := range many {
		all[c] = true
		for i := 0; i < len(c); i++ {
			used[c[i]] = true
		}
	}
	if len(all) != 2000 {
		t.Errorf("%d distinct of 2000", len(all))
	}
	if len(used) != 33 { // 32 symbols and the dash
		t.Errorf("%d symbols used", len(used))
	}
}

func TestNormalizeOther(t *testing.T) {
	for in, want := range map[string]string{
		"":            "",
		"ABCDE-FGHJK": "abcdefghjk",
		"u":           "u", // not in the alphabet; left for the hash to fail
		"é1":          "é1",
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}
