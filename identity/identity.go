// Package identity owns accounts: staff and admins created by an admin,
// recipients created pending on their first message, app passwords for SMTP,
// portal passwords, and claiming a pending account.
package identity

import (
	"context"
	"encoding/base32"
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/audit"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/password"
	"github.com/phigate/phigate/store"
)

var (
	ErrBadCredentials = errors.New("identity: wrong email or password")
	ErrBadToken       = errors.New("identity: this link is not valid: it was already used, has expired, or was mistyped")
	ErrWeakPassword   = errors.New("identity: password too weak")
	ErrNotPending     = errors.New("identity: account already claimed")
)

// MinPasswordLength is the shortest password the default policy accepts
// (shown on forms before the full check runs).
const MinPasswordLength = 12

type Service struct {
	Store    store.Store
	Keys     *keys.Ring
	Password pcrypto.PasswordParams
	Policy   password.Policy
	OrgName  string // a user input to the strength check
	// PublicURL and ResetTTL shape password-reset links.
	PublicURL string
	ResetTTL  time.Duration
	CheckKey  KeyChecker // recipient key checks; nil: parse only
	// Audit receives the entries identity commits with its changes
	// (account.claim); nil: none (tests of this package).
	Audit audit.Recorder
	Now   func() time.Time

	pubCache  sync.Map // fingerprint -> *pcrypto.Key
	pubCacheN atomic.Int64
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ParseAddr validates one address and returns its bare form.
func ParseAddr(s string) (string, error) {
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || !strings.Contains(a.Address, "@") {
		return "", fmt.Errorf("not a valid email address")
	}
	return keys.NormalizeAddr(a.Address), nil
}

// ValidRole reports whether r is a role accounts can have.
func ValidRole(r string) bool {
	switch r {
	case store.RolePatient, store.RoleStaff, store.RoleAdmin, store.RoleSecurity:
		return true
	}
	return false
}

// PasswordProblem returns the plain-language reason a password was refused.
func PasswordProblem(err error) (string, bool) {
	var re *password.RuleError
	if errors.As(err, &re) {
		return re.Message, true
	}
	return "", false
}

// weak wraps a policy refusal so callers can test errors.Is(err, ErrWeakPassword).
func weak(re error) error { return fmt.Errorf("%w: %w", ErrWeakPassword, re) }

func userKeyAAD(userID string) []byte { return []byte("user-key:" + userID) }

func pendingKeyPurpose(userID string) string { return "pending-key:" + userID }

func emailPurpose(userID string) string { return "email:" + userID }

// Email returns the user's address (decrypting the sealed column).
func (s *Service) Email(u *store.User) (string, error) {
	b, err := s.Keys.OpenField(emailPurpose(u.ID), u.EmailEnc)
	return string(b), err
}

// passwordKey runs the one Argon2id derivation for a password.
func (s *Service) passwordKey(ctx context.Context, pw string, salt []byte, params pcrypto.PasswordParams) (pcrypto.Derived, error) {
	return pcrypto.DerivePassword(ctx, []byte(pw), salt, params)
}

// sealWithPassword produces the stored password fields and wraps priv under
// the password-derived key.
func (s *Service) sealWithPassword(ctx context.Context, userID, pw string, priv []byte) (params string, salt, verifier, wrapped []byte, err error) {
	salt = pcrypto.RandomBytes(16)
	d, err := s.passwordKey(ctx, pw, salt, s.Password)
	if err != nil {
		return "", nil, nil, nil, err
	}
	wrapped, err = pcrypto.Wrap(d.KEK, priv, userKeyAAD(userID))
	if err != nil {
		return "", nil, nil, nil, err
	}
	return s.Password.String(), salt, d.Verifier, wrapped, nil
}

// AddUser creates an active account with its own key (staff, admins).
func (s *Service) AddUser(ctx context.Context, email, role, password string) (*store.User, error) {
	addr, err := ParseAddr(email)
	if err != nil {
		return nil, err
	}
	if !ValidRole(role) {
		return nil, fmt.Errorf("unknown role %q (patient, staff, admin, security)", role)
	}
	if err := s.checkNewPassword(ctx, nil, addr, password); err != nil {
		return nil, err
	}
	id := store.NewID()
	k, priv, err := newAccountKey(id)
	if err != nil {
		return nil, err
	}
	params, salt, verifier, wrapped, err := s.sealWithPassword(ctx, id, password, priv)
	if err != nil {
		return nil, err
	}
	u, err := s.newUser(id, addr, role, store.StatusActive, k)
	if err != nil {
		return nil, err
	}
	u.PwParams, u.PwSalt, u.PwVerifier, u.PrivateKeyWrapped, u.KeyWrap = params, salt, verifier, wrapped, store.KeyWrapPassword
	if err := s.Store.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, fmt.Errorf("an account for that address already exists")
		}
		return nil, err
	}
	return u, nil
}

func (s *Service) newUser(id, addr, role, status string, k *pcrypto.Key) (*store.User, error) {
	enc, err := s.Keys.SealField(emailPurpose(id), []byte(addr))
	if err != nil {
		return nil, err
	}
	pub, err := k.PublicArmored()
	if err != nil {
		return nil, err
	}
	now := s.now()
	return &store.User{
		ID: id, EmailIndex: s.Keys.EmailIndex(addr), EmailEnc: enc, Role: role, Status: status,
		KeyFpr: k.Fingerprint(), PublicKey: pub, CreatedAt: now, UpdatedAt: now,
	}, nil
}

// EnsureRecipient returns the account for addr, creating a pending one with
// a server-wrapped pending key on first contact (DESIGN.md "Keys").
func (s *Service) EnsureRecipient(ctx context.Context, addr string) (*store.User, error) {
	addr = keys.NormalizeAddr(addr)
	u, err := s.Store.UserByEmailIndex(ctx, s.Keys.EmailIndex(addr))
	if err == nil || !errors.Is(err, store.ErrNotFound) {
		return u, err
	}
	id := store.NewID()
	k, priv, err := newAccountKey(id)
	if err != nil {
		return nil, err
	}
	u, err = s.newUser(id, addr, store.RolePatient, store.StatusPending, k)
	if err != nil {
		return nil, err
	}
	if u.PrivateKeyWrapped, err = s.Keys.WrapPrivate(pendingKeyPurpose(id), priv); err != nil {
		return nil, err
	}
	u.KeyWrap = store.KeyWrapMaster
	err = s.Store.CreateUser(ctx, u)
	if errors.Is(err, store.ErrExists) {
		// Another session created it first; use theirs.
		return s.Store.UserByEmailIndex(ctx, s.Keys.EmailIndex(addr))
	}
	return u, err
}

// accountKeyOptions names an account key by its opaque id only: the stored
// public key is readable to anyone with the database, so it must not carry
// the address (DESIGN.md invariant 1).
func accountKeyOptions(userID string) pcrypto.KeyOptions {
	return pcrypto.KeyOptions{Name: "phigate account " + userID}
}

// newAccountKey generates an account key and its unlocked private bytes.
func newAccountKey(userID string) (*pcrypto.Key, []byte, error) {
	k, err := pcrypto.GenerateKey(accountKeyOptions(userID))
	if err != nil {
		return nil, nil, err
	}
	priv, err := k.PrivateBytes()
	return k, priv, err
}

// PublicKey returns the user's current encryption key. Parsed keys are
// cached by fingerprint (a key's bytes never change under one fingerprint):
// parsing costs as much as a third of sealing a small message.
func (s *Service) PublicKey(u *store.User) (*pcrypto.Key, error) {
	if k, ok := s.pubCache.Load(u.KeyFpr); ok {
		return k.(*pcrypto.Key), nil
	}
	k, err := pcrypto.ReadKey(u.PublicKey)
	if err != nil {
		return nil, err
	}
	if k.Fingerprint() != u.KeyFpr {
		return nil, fmt.Errorf("account %s: stored key does not match its fingerprint", u.ID)
	}
	if s.pubCacheN.Add(1) > maxCachedKeys {
		// Crude bound: start over rather than track recency.
		s.pubCache.Clear()
		s.pubCacheN.Store(1)
	}
	s.pubCache.Store(u.KeyFpr, k)
	return k, nil
}

const maxCachedKeys = 10000

// UserByEmail finds an account by address.
func (s *Service) UserByEmail(ctx context.Context, email string) (*store.User, error) {
	return s.Store.UserByEmailIndex(ctx, s.Keys.EmailIndex(email))
}

var appPwEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// AddAppPassword generates a new SMTP app password and returns it once.
// 160 random bits: a keyed hash stores it safely, so AUTH stays cheap.
func (s *Service) AddAppPassword(ctx context.Context, email, name string) (string, error) {
	if name = strings.TrimSpace(name); name == "" || len(name) > 64 {
		return "", errors.New("app password name must be 1 to 64 characters")
	}
	u, err := s.UserByEmail(ctx, email)
	if err != nil {
		return "", fmt.Errorf("no account for that address")
	}
	if u.Role == store.RolePatient || u.Status != store.StatusActive {
		return "", errors.New("app passwords are for active staff and admin accounts")
	}
	raw := strings.ToLower(appPwEncoding.EncodeToString(pcrypto.RandomBytes(20)))
	// Group in fours so a person can read it off a screen.
	var b strings.Builder
	for i := 0; i < len(raw); i += 4 {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(raw[i:min(i+4, len(raw))])
	}
	secret := b.String()
	err = s.Store.AddAppPassword(ctx, store.AppPassword{
		ID: store.NewID(), UserID: u.ID, Name: name, MAC: s.Keys.AppPasswordMAC(secret), CreatedAt: s.now(),
	})
	if errors.Is(err, store.ErrExists) {
		return "", fmt.Errorf("an app password named %q already exists; revoke it first", name)
	}
	return secret, err
}

func (s *Service) RevokeAppPassword(ctx context.Context, email, name string) error {
	u, err := s.UserByEmail(ctx, email)
	if err != nil {
		return fmt.Errorf("no account for that address")
	}
	if err := s.Store.RevokeAppPassword(ctx, u.ID, name, s.now()); errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("no active app password named %q", name)
	} else {
		return err
	}
}

// CheckAppPassword authenticates SMTP AUTH: username must be the address of
// the account that owns the app password. Portal passwords never work here.
func (s *Service) CheckAppPassword(ctx context.Context, username, secret string) (*store.User, error) {
	u, _, err := s.Store.UserByAppPassword(ctx, s.Keys.AppPasswordMAC(strings.TrimSpace(secret)))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrBadCredentials
	}
	if err != nil {
		return nil, err
	}
	if !pcrypto.VerifierEqual(u.EmailIndex, s.Keys.EmailIndex(username)) {
		return nil, ErrBadCredentials
	}
	return u, nil
}

// Login checks a portal password and returns the user with their unlocked
// private key (binary), which the caller keeps only inside the session.
func (s *Service) Login(ctx context.Context, email, password string) (*store.User, []byte, error) {
	u, err := s.UserByEmail(ctx, email)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, nil, err
	}
	if u == nil || u.Status != store.StatusActive || u.KeyWrap != store.KeyWrapPassword {
		// Spend the same work, through the same hash queue, as a real
		// check so timing doesn't reveal which addresses have accounts; a
		// hash that could not be queued is reported as for a real account.
		if _, err := s.passwordKey(ctx, password, make([]byte, 16), s.Password); err != nil {
			return nil, nil, err
		}
		return nil, nil, ErrBadCredentials
	}
	params, err := pcrypto.ParsePasswordParams(u.PwParams)
	if err != nil {
		return nil, nil, err
	}
	d, err := s.passwordKey(ctx, password, u.PwSalt, params)
	if err != nil {
		return nil, nil, err
	}
	if !pcrypto.VerifierEqual(d.Verifier, u.PwVerifier) {
		return nil, nil, ErrBadCredentials
	}
	priv, err := pcrypto.Unwrap(d.KEK, u.PrivateKeyWrapped, userKeyAAD(u.ID))
	if err != nil {
		return nil, nil, fmt.Errorf("unlock key of %s: %w", u.ID, err)
	}
	return u, priv, nil
}
