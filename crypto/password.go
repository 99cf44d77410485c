package crypto

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

type PasswordParams struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

var (
	DefaultPasswordParams = PasswordParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 2}
	TestPasswordParams    = PasswordParams{Time: 1, MemoryKiB: 8 * 1024, Threads: 1} // fast, for tests only
)

// Bounds on accepted parameters: stored params come from the database, and
// a tampered row must not be able to make every login allocate gigabytes.
const (
	maxPasswordTime      = 64
	maxPasswordMemoryKiB = 1 << 20 // 1 GiB
	minSaltLen           = 8       // RFC 9106 minimum; 16 recommended
	// PasswordSaltSize is the recommended salt length (see NewSalt).
	PasswordSaltSize = 16
)

const (
	infoVerifier = "phigate password verifier v1"
	infoKEK      = "phigate key wrap v1"
)

// Derived holds the two keys derived from one Argon2id run.
type Derived struct{ Verifier, KEK []byte }

// NewSalt returns a fresh random password salt of PasswordSaltSize bytes.
func NewSalt() []byte { return RandomBytes(PasswordSaltSize) }

func (p PasswordParams) validate() error {
	switch {
	case p.Time < 1 || p.Time > maxPasswordTime:
		return fmt.Errorf("crypto: argon2 time %d out of range 1..%d", p.Time, maxPasswordTime)
	case p.Threads < 1:
		return errors.New("crypto: argon2 threads must be at least 1")
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxPasswordMemoryKiB:
		return fmt.Errorf("crypto: argon2 memory %d KiB out of range %d..%d", p.MemoryKiB, 8*uint32(p.Threads), maxPasswordMemoryKiB)
	}
	return nil
}

// DerivePassword runs Argon2id(password, salt, p) -> 32-byte root once, then
// HKDF-SHA256(root) with two infos -> Verifier (stored, compare with
// VerifierEqual) and KEK (wraps the user's private key; never stored).
// It waits for a hash slot (see SetMaxConcurrentHashes) honouring ctx.
func DerivePassword(ctx context.Context, password, salt []byte, p PasswordParams) (Derived, error) {
	if err := p.validate(); err != nil {
		return Derived{}, err
	}
	if len(salt) < minSaltLen {
		return Derived{}, fmt.Errorf("crypto: salt must be at least %d bytes", minSaltLen)
	}
	var root []byte
	if err := withHashSlot(ctx, func() error {
		root = argon2.IDKey(password, salt, p.Time, p.MemoryKiB, p.Threads, 32)
		return nil
	}); err != nil {
		return Derived{}, err
	}
	defer clear(root)
	v, err := hkdf.Key(sha256.New, root, nil, infoVerifier, 32)
	if err != nil {
		return Derived{}, err
	}
	k, err := hkdf.Key(sha256.New, root, nil, infoKEK, KEKSize)
	if err != nil {
		return Derived{}, err
	}
	return Derived{Verifier: v, KEK: k}, nil
}

// VerifierEqual compares in constant time; empty verifiers never match.
func VerifierEqual(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(a, b) == 1
}

// String gives the "argon2id$t=3$m=65536$p=2" form read by ParsePasswordParams.
func (p PasswordParams) String() string {
	return fmt.Sprintf("argon2id$t=%d$m=%d$p=%d", p.Time, p.MemoryKiB, p.Threads)
}

func ParsePasswordParams(s string) (PasswordParams, error) {
	parts := strings.Split(s, "$")
	if len(parts) != 4 || parts[0] != "argon2id" {
		return PasswordParams{}, fmt.Errorf("crypto: bad password params %q", s)
	}
	field := func(part, name string, bits int) (uint64, error) {
		v, ok := strings.CutPrefix(part, name+"=")
		if !ok {
			return 0, fmt.Errorf("crypto: bad password params %q: want %s=", s, name)
		}
		n, err := strconv.ParseUint(v, 10, bits)
		if err != nil {
			return 0, fmt.Errorf("crypto: bad password params %q: %w", s, err)
		}
		return n, nil
	}
	t, err := field(parts[1], "t", 32)
	if err != nil {
		return PasswordParams{}, err
	}
	m, err := field(parts[2], "m", 32)
	if err != nil {
		return PasswordParams{}, err
	}
	th, err := field(parts[3], "p", 8)
	if err != nil {
		return PasswordParams{}, err
	}
	p := PasswordParams{Time: uint32(t), MemoryKiB: uint32(m), Threads: uint8(th)}
	if err := p.validate(); err != nil {
		return PasswordParams{}, err
	}
	return p, nil
}

func withHashSlot(ctx context.Context, f func() error) error {
	if err := hashes.acquire(ctx); err != nil {
		return err
	}
	defer hashes.release()
	if testHookHashing != nil {
		testHookHashing()
	}
	return f()
}
