package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/phigate/phigate/audit"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/password"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/totp"
)

var (
	ErrBadCode      = errors.New("identity: that code is not right, or was already used")
	ErrNoTOTP       = errors.New("identity: no authenticator app is set up for this account")
	ErrNotActive    = errors.New("identity: the account is not active")
	ErrLastAdmin    = errors.New("identity: this is the last active admin; create another admin first")
	ErrUnknownRole  = errors.New("identity: unknown role")
	ErrEscrowLocked = errors.New("identity: the escrow key could not be unlocked with that passphrase")
)

// histEntry is one earlier password, kept to refuse its reuse.
type histEntry struct {
	Params   string `json:"p"`
	Salt     []byte `json:"s"`
	Verifier []byte `json:"v"`
}

func history(u *store.User) []histEntry {
	var h []histEntry
	if u != nil && len(u.PwHistory) > 0 {
		_ = json.Unmarshal(u.PwHistory, &h)
	}
	return h
}

// nextHistory is u's history after its current password is replaced: the
// current one first, keeping password.HistorySize-1 earlier ones, so the
// new password plus these are "the last 4".
func nextHistory(u *store.User) []byte {
	if u == nil || len(u.PwVerifier) == 0 {
		return nil
	}
	h := append([]histEntry{{u.PwParams, u.PwSalt, u.PwVerifier}}, history(u)...)
	if len(h) > password.HistorySize-1 {
		h = h[:password.HistorySize-1]
	}
	b, _ := json.Marshal(h)
	return b
}

// checkNewPassword applies the password policy: length, strength, not the
// email's name, and (for an existing account u) none of the last
// password.HistorySize passwords.
func (s *Service) checkNewPassword(ctx context.Context, u *store.User, email, pw string) error {
	if err := s.Policy.Check(pw, email, s.OrgName); err != nil {
		return weak(err)
	}
	if u == nil || len(u.PwVerifier) == 0 {
		return nil
	}
	for _, h := range append([]histEntry{{u.PwParams, u.PwSalt, u.PwVerifier}}, history(u)...) {
		params, err := pcrypto.ParsePasswordParams(h.Params)
		if err != nil {
			continue
		}
		d, err := s.passwordKey(ctx, pw, h.Salt, params)
		if err != nil {
			return err
		}
		if pcrypto.VerifierEqual(d.Verifier, h.Verifier) {
			return weak(password.Reused(password.HistorySize))
		}
	}
	return nil
}

// maxUpdateAttempts bounds the re-reads when an account row keeps changing
// under a status or role change.
const maxUpdateAttempts = 20

// ErrBusy means an account kept changing while a change was applied.
var ErrBusy = errors.New("identity: the account kept changing; try again")

// updateUser applies change to a fresh read of userID and writes it with
// the store's compare-and-set: when another change (a password reset, a
// second factor, another admin) committed in between, it reads again and
// re-applies, so no change reverts another (issue 8.8). change validates
// against the row it is given.
func (s *Service) updateUser(ctx context.Context, userID string, change func(*store.User) error) (*store.User, error) {
	for attempt := 0; attempt < maxUpdateAttempts; attempt++ {
		u, err := s.Store.UserByID(ctx, userID)
		if err != nil {
			return nil, err
		}
		if err := change(u); err != nil {
			return nil, err
		}
		u.UpdatedAt = s.now()
		err = s.Store.UpdateUser(ctx, u)
		if errors.Is(err, store.ErrConflict) {
			continue // changed meanwhile, or the last-admin check failed: re-read and re-check
		}
		return u, err
	}
	return nil, ErrBusy
}

// SetStatus disables or re-enables an account. Disabling also revokes every
// app password at once (termination procedure); the caller ends sessions.
func (s *Service) SetStatus(ctx context.Context, userID, status string) (*store.User, error) {
	if status != store.StatusActive && status != store.StatusDisabled {
		return nil, fmt.Errorf("identity: status must be active or disabled")
	}
	u, err := s.updateUser(ctx, userID, func(u *store.User) error {
		if u.Status == store.StatusPending {
			return fmt.Errorf("identity: a pending account is activated by its claim link")
		}
		if status == store.StatusDisabled && u.Role == store.RoleAdmin && u.Status == store.StatusActive {
			if err := s.notLastAdmin(ctx, u.ID); err != nil {
				return err
			}
		}
		u.Status = status
		return nil
	})
	if err != nil {
		return nil, err
	}
	if status == store.StatusDisabled {
		if _, err := s.Store.RevokeAllAppPasswords(ctx, u.ID, s.now()); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func (s *Service) notLastAdmin(ctx context.Context, exceptID string) error {
	admins, err := s.Store.ListUsers(ctx, store.RoleAdmin)
	if err != nil {
		return err
	}
	for _, a := range admins {
		if a.ID != exceptID && a.Status == store.StatusActive {
			return nil
		}
	}
	return ErrLastAdmin
}

// SetRole changes an account's role; the caller ends its sessions so the
// new rights take effect with a new session id.
func (s *Service) SetRole(ctx context.Context, userID, role string) (*store.User, error) {
	if !ValidRole(role) {
		return nil, ErrUnknownRole
	}
	return s.updateUser(ctx, userID, func(u *store.User) error {
		if u.Role == store.RoleAdmin && role != store.RoleAdmin {
			if err := s.notLastAdmin(ctx, u.ID); err != nil {
				return err
			}
		}
		u.Role = role
		return nil
	})
}

// NeedsMFA says whether u must use a second factor: staff, admins and
// security officers always; patients when the organisation requires it or
// when they chose to enrol.
func NeedsMFA(u *store.User, requirePatients bool) bool {
	return u.Role != store.RolePatient || requirePatients || len(u.TOTPSecretEnc) > 0
}

func totpPurpose(userID string) string       { return "totp:" + userID }
func totpEnrolPurpose(userID string) string  { return "totp-enrol:" + userID }
func recoveryCodeMessage(code string) []byte { return []byte("recovery:" + totp.Normalize(code)) }

// Enrolment is a started TOTP enrolment: the QR code and secret to show,
// and Pending, the sealed secret the form carries back (stateless, bound to
// the user, unreadable to the browser).
type Enrolment struct {
	*totp.Enrolment
	Pending []byte
}

// StartTOTP makes a new secret for u to scan.
func (s *Service) StartTOTP(ctx context.Context, u *store.User) (*Enrolment, error) {
	email, err := s.Email(u)
	if err != nil {
		return nil, err
	}
	e, err := totp.New(s.OrgName, email)
	if err != nil {
		return nil, err
	}
	sealed, err := s.Keys.SealField(totpEnrolPurpose(u.ID), []byte(e.Secret))
	if err != nil {
		return nil, err
	}
	return &Enrolment{Enrolment: e, Pending: sealed}, nil
}

// FinishTOTP checks the first code against the pending secret, stores the
// secret and returns ten fresh recovery codes (shown once, stored hashed).
func (s *Service) FinishTOTP(ctx context.Context, u *store.User, pending []byte, code string) ([]string, error) {
	secret, err := s.Keys.OpenField(totpEnrolPurpose(u.ID), pending)
	if err != nil {
		return nil, ErrBadCode
	}
	step, ok := totp.Verify(string(secret), code, s.now(), 0)
	if !ok {
		return nil, ErrBadCode
	}
	sealed, err := s.Keys.SealField(totpPurpose(u.ID), secret)
	if err != nil {
		return nil, err
	}
	if err := s.Store.SetTOTP(ctx, u.ID, sealed, step, s.now()); err != nil {
		return nil, err
	}
	u.TOTPSecretEnc, u.TOTPLastStep = sealed, step
	return s.NewRecoveryCodes(ctx, u)
}

// NewRecoveryCodes replaces u's recovery codes with ten new ones.
func (s *Service) NewRecoveryCodes(ctx context.Context, u *store.User) ([]string, error) {
	codes := totp.RecoveryCodes(10)
	hashes := make([][]byte, len(codes))
	for i, c := range codes {
		hashes[i] = s.Keys.RecoveryCodeMAC(recoveryCodeMessage(c))
	}
	return codes, s.Store.SetRecoveryCodes(ctx, u.ID, hashes)
}

// VerifySecondFactor accepts a current TOTP code (each step once, across
// nodes) or an unused recovery code.
func (s *Service) VerifySecondFactor(ctx context.Context, u *store.User, code string) (usedRecovery bool, err error) {
	if len(u.TOTPSecretEnc) == 0 {
		return false, ErrNoTOTP
	}
	secret, err := s.Keys.OpenField(totpPurpose(u.ID), u.TOTPSecretEnc)
	if err != nil {
		return false, err
	}
	if step, ok := totp.Verify(string(secret), code, s.now(), u.TOTPLastStep); ok {
		fresh, err := s.Store.AdvanceTOTPStep(ctx, u.ID, step)
		if err != nil {
			return false, err
		}
		if fresh {
			return false, nil
		}
		return false, ErrBadCode // replayed on another node meanwhile
	}
	ok, err := s.Store.UseRecoveryCode(ctx, u.ID, s.Keys.RecoveryCodeMAC(recoveryCodeMessage(code)), s.now())
	if err != nil {
		return false, err
	}
	if !ok {
		return false, ErrBadCode
	}
	return true, nil
}

// RequestReset emails a single-use reset link if email belongs to an active
// account with a password. It says nothing either way (no account
// enumeration); the caller always shows the same answer.
func (s *Service) RequestReset(ctx context.Context, email string) error {
	u, err := s.UserByEmail(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if u.Status != store.StatusActive || u.KeyWrap != store.KeyWrapPassword {
		return nil
	}
	addr, err := s.Email(u)
	if err != nil {
		return err
	}
	raw, tok := s.NewClaimToken(u.ID, s.ResetTTL)
	tok.Kind = store.TokenReset
	item, err := notify.NewItem(s.Keys, notify.KindPasswordReset,
		notify.Notice{To: addr, Link: s.PublicURL + "/reset/" + raw, ExpiresAt: tok.ExpiresAt}, u.ID, "", s.now())
	if err != nil {
		return err
	}
	return s.Store.Deliver(ctx, store.Delivery{ClaimTokens: []store.ClaimToken{tok}, Outbox: []store.OutboxItem{item}})
}

// CheckResetToken tells whether a reset link is still good.
func (s *Service) CheckResetToken(ctx context.Context, raw string) (*store.User, error) {
	t, err := s.Store.ClaimTokenByHash(ctx, hashToken(raw))
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrBadToken
	}
	if err != nil {
		return nil, err
	}
	if t.Kind != store.TokenReset || t.UsedAt != nil || !s.now().Before(t.ExpiresAt) {
		return nil, ErrBadToken
	}
	u, err := s.Store.UserByID(ctx, t.UserID)
	if err != nil {
		return nil, err
	}
	if u.Status != store.StatusActive {
		return nil, ErrBadToken
	}
	return u, nil
}

// CompleteReset sets a new password with a new key. The old key was
// sealed under the forgotten password, so messages addressed to it stay
// locked until an admin recovers them with the escrow key (Recover); they
// are never silently lost. The second factor stays as it was. The
// account.reset entry (the person's IP) commits with the new key.
func (s *Service) CompleteReset(ctx context.Context, raw, pw, ip string) (*store.User, error) {
	u, err := s.CheckResetToken(ctx, raw)
	if err != nil {
		return nil, err
	}
	email, err := s.Email(u)
	if err != nil {
		return nil, err
	}
	if err := s.checkNewPassword(ctx, u, email, pw); err != nil {
		return nil, err
	}
	k, priv, err := newAccountKey(u.ID)
	if err != nil {
		return nil, err
	}
	params, salt, verifier, wrapped, err := s.sealWithPassword(ctx, u.ID, pw, priv)
	if err != nil {
		return nil, err
	}
	pub, err := k.PublicArmored()
	if err != nil {
		return nil, err
	}
	b, err := audit.Prepare(ctx, s.Audit, audit.Entry{Actor: u.ID, IP: ip, Action: "account.reset",
		ObjectType: "user", ObjectID: u.ID, Outcome: audit.OK})
	if err != nil {
		return nil, err
	}
	err = s.Store.Reset(ctx, store.Reset{UserID: u.ID, TokenHash: hashToken(raw), NewKeyFpr: k.Fingerprint(),
		PublicKey: pub, PrivateKeyWrapped: wrapped, PwParams: params, PwSalt: salt, PwVerifier: verifier,
		PwHistory: nextHistory(u), At: s.now(), Audit: b.Func()})
	if errors.Is(err, store.ErrTokenSpent) {
		return nil, ErrBadToken
	}
	if err != nil {
		return nil, err
	}
	_ = b.Committed(ctx) // as in Claim: only a recorder that cannot seal records now
	return s.Store.UserByID(ctx, u.ID)
}

// LockedMessages counts u's messages still addressed to an earlier key.
func (s *Service) LockedMessages(ctx context.Context, u *store.User) (int, error) {
	k, err := s.Store.LockedMessageKeys(ctx, u.ID, u.KeyFpr)
	return len(k), err
}

// UnlockEscrow opens the escrow private key an admin supplies for a
// recovery or a break-glass access; it must match the gateway's escrow key.
func (s *Service) UnlockEscrow(armored, passphrase []byte) (*pcrypto.Key, error) {
	k, err := pcrypto.UnlockArmored(armored, passphrase)
	if err != nil {
		return nil, ErrEscrowLocked
	}
	if k.Fingerprint() != s.Keys.Escrow.Fingerprint() {
		return nil, fmt.Errorf("identity: that is not this gateway's escrow key")
	}
	return k, nil
}

// Recover re-addresses every locked message of userID to the account's
// current key, using the escrow key (escrow-assisted recovery).
func (s *Service) Recover(ctx context.Context, userID string, escrow *pcrypto.Key) (int, error) {
	u, err := s.Store.UserByID(ctx, userID)
	if err != nil {
		return 0, err
	}
	pub, err := s.PublicKey(u)
	if err != nil {
		return 0, err
	}
	locked, err := s.Store.LockedMessageKeys(ctx, u.ID, u.KeyFpr)
	if err != nil {
		return 0, err
	}
	out := make([]store.MessageKeys, 0, len(locked))
	for _, m := range locked {
		kp, err := pcrypto.Recover(m.KeyPackets, escrow, pub)
		if err != nil {
			return 0, fmt.Errorf("recover message %s: %w", m.MessageID, err)
		}
		sk, err := pcrypto.Recover(m.SummaryKeys, escrow, pub)
		if err != nil {
			return 0, fmt.Errorf("recover summary %s: %w", m.MessageID, err)
		}
		out = append(out, store.MessageKeys{MessageID: m.MessageID, KeyPackets: kp, SummaryKeys: sk})
	}
	return s.Store.Recover(ctx, u.ID, u.KeyFpr, out)
}
