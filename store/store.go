// Package store is phigate's durable state behind one interface. The SQL is
// kept portable (positional $N parameters, no dialect functions) so a
// PostgreSQL backend can run the same queries and the same test suite.
package store

import (
	"context"
	"errors"
	"time"
)

var (
	ErrNotFound = errors.New("store: not found")
	ErrExists   = errors.New("store: already exists")
	// ErrKeyChanged means a recipient's key changed between sealing and
	// commit (the account was claimed meanwhile): seal again and retry.
	ErrKeyChanged = errors.New("store: recipient key changed")
	// ErrConflict means the rows a multi-step update was computed from
	// changed meanwhile; recompute and retry.
	ErrConflict   = errors.New("store: concurrent change")
	ErrTokenSpent = errors.New("store: token already used or expired")
)

// Roles and account states.
const (
	RolePatient  = "patient"
	RoleStaff    = "staff"
	RoleAdmin    = "admin"
	RoleSecurity = "security"

	StatusPending  = "pending"
	StatusActive   = "active"
	StatusDisabled = "disabled"

	// KeyWrapMaster: private key sealed under the server master key (pending
	// accounts). KeyWrapPassword: sealed under the user's password-derived key.
	KeyWrapMaster   = "master"
	KeyWrapPassword = "password"
)

type User struct {
	ID                string
	EmailIndex        []byte // blind index of the normalised address
	EmailEnc          []byte // the address, sealed under the master field key
	Role              string
	Status            string
	PwParams          string
	PwSalt            []byte
	PwVerifier        []byte
	KeyFpr            string
	PublicKey         []byte
	PrivateKeyWrapped []byte
	KeyWrap           string
	TOTPSecretEnc     []byte // sealed under the master field key; nil = not enrolled
	TOTPLastStep      int64  // last accepted TOTP step (replay protection)
	PwHistory         []byte // JSON of the previous password verifiers (issue #3)
	// Version counts the writes to the row; UpdateUser commits only on the
	// version it was read at (issue 8.8).
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

type AppPassword struct {
	ID        string
	UserID    string
	Name      string
	MAC       []byte
	CreatedAt time.Time
	RevokedAt *time.Time
}

// Message is one recipient's stored copy: OpenPGP key packets and data
// packets kept apart so re-wrapping never rewrites the body.
type Message struct {
	ID          string
	RecipientID string
	SenderID    string
	KeyFpr      string // the recipient key it was sealed to (checked at commit)
	CreatedAt   time.Time
	ExpiresAt   time.Time
	Size        int64
	Policy      string
	KeyPackets  []byte
	Body        []byte
	SummaryKeys []byte
	Summary     []byte
	ReadAt      *time.Time
	Decision    string // JSON: rule, policy version, detector counts
	State       string // StateDelivered (default), StateQuarantined, StateDenied
	ReplyTo     string // for a recipient's own copy of their reply: the message it answers
	// PasscodeHash is set when first access needs a passcode; PasscodeOK
	// once it was given.
	PasscodeHash []byte
	PasscodeOK   *time.Time
	// DisposeAt is when the purge disposes of the content (issue 14.4,
	// retention.go); zero at Deliver means ExpiresAt. PurgedAt is when it
	// did (the row stays, without ciphertext).
	DisposeAt time.Time
	PurgedAt  *time.Time
}

// Message states.
const (
	StateDelivered   = "delivered"
	StateQuarantined = "quarantined"
	StateDenied      = "denied"
	StateRecalled    = "recalled"
)

// BreakGlass records one emergency access; the reason is sealed.
type BreakGlass struct {
	ID        string
	ActorID   string
	MessageID string
	At        time.Time
	IP        string
	ReasonEnc []byte
}

// PolicyVersion is one saved version of the data-sharing policy.
type PolicyVersion struct {
	ID        int64
	AuthorID  string
	CreatedAt time.Time
	Note      string
	Body      string
}

// RecipientKey is an OpenPGP public key registered for an address.
type RecipientKey struct {
	EmailIndex   []byte
	Fingerprint  string
	PublicKeyEnc []byte // sealed: the key's user ids name the address
	AddedBy      string
	CreatedAt    time.Time
}

// MessageKeys are the re-wrappable parts of one message.
type MessageKeys struct {
	MessageID   string
	KeyPackets  []byte
	SummaryKeys []byte
}

// Token kinds.
const (
	TokenClaim = "claim" // first password of a pending account
	TokenReset = "reset" // forgotten password of an active account
)

type ClaimToken struct {
	Kind      string // TokenClaim (default) or TokenReset
	Hash      []byte
	UserID    string
	CreatedAt time.Time
	ExpiresAt time.Time
	UsedAt    *time.Time
}

// OutboxItem is one PHI-free notification waiting to go out. Payload is
// sealed under the master field key (it holds the address and claim link).
type OutboxItem struct {
	ID            string
	Kind          string
	UserID        string
	MessageID     string
	Payload       []byte
	CreatedAt     time.Time
	NextAttemptAt time.Time
	Attempts      int
	SentAt        *time.Time
	LastError     string
	// Batch (recipient and channel, opaque ids) and Window make a notice
	// that covers the recipient's later messages (issue 10.4, prefs.go):
	// written by Deliver only, not read back.
	Batch  string
	Window time.Duration
	// Reference is the notice's short code the recipient can check in the
	// portal (issue 13.9, claimlink.go); "" for rows without one.
	Reference string
}

// Delivery is everything one accepted SMTP transaction commits at once.
type Delivery struct {
	Messages    []Message
	ClaimTokens []ClaimToken
	Outbox      []OutboxItem
	// Audit seals the entries recording this delivery (message.accept
	// ...), committed in its transaction; nil: none.
	Audit AuditFunc
	// Copies are the sender's and reviewers' sealed summaries of the
	// messages (copies.go, issue 13.2/13.3).
	Copies []MessageCopy
}

// Claim turns a pending account into an active one in one transaction.
type Claim struct {
	UserID            string
	TokenHash         []byte
	OldKeyFpr         string
	NewKeyFpr         string
	PublicKey         []byte
	PrivateKeyWrapped []byte
	PwParams          string
	PwSalt            []byte
	PwVerifier        []byte
	Rewrapped         []MessageKeys // must cover every message of the user
	PwHistory         []byte
	At                time.Time
	Audit             AuditFunc // the account.claim entry, committed with it
}

// Reset is a forgotten-password reset.
type Reset struct {
	UserID            string
	TokenHash         []byte
	NewKeyFpr         string
	PublicKey         []byte
	PrivateKeyWrapped []byte
	PwParams          string
	PwSalt            []byte
	PwVerifier        []byte
	PwHistory         []byte
	At                time.Time
	Audit             AuditFunc // the account.reset entry, committed with it
}

type Store interface {
	Close() error

	// Issue 10.3: Web Push subscriptions (push.go).
	PushStore
	// Issue 10.4: notification preferences (prefs.go).
	PrefsStore
	// Issue 13.2/13.3: sender and reviewer copies (copies.go).
	CopyStore
	// Issue 14.3: key epochs, gateway key history, re-sealing (keys.go).
	KeyStore
	// Issue 14.4: retention and disposal (retention.go).
	RetentionStore
	// Issue 13.1, 13.9: new claim links and notice references (claimlink.go).
	ClaimLinkStore

	CreateUser(ctx context.Context, u *User) error
	UserByID(ctx context.Context, id string) (*User, error)
	UserByEmailIndex(ctx context.Context, idx []byte) (*User, error)

	AddAppPassword(ctx context.Context, p AppPassword) error
	RevokeAppPassword(ctx context.Context, userID, name string, at time.Time) error
	// UserByAppPassword returns the active user owning an unrevoked app password.
	UserByAppPassword(ctx context.Context, mac []byte) (*User, *AppPassword, error)

	// Deliver commits messages, claim tokens and notifications together.
	Deliver(ctx context.Context, d Delivery) error

	ListMessages(ctx context.Context, recipientID string, now time.Time) ([]Message, error)
	GetMessage(ctx context.Context, id string) (*Message, error)
	// MessageMeta is GetMessage without the body.
	MessageMeta(ctx context.Context, id string) (*Message, error)
	MarkRead(ctx context.Context, id string, at time.Time) error

	ClaimTokenByHash(ctx context.Context, hash []byte) (*ClaimToken, error)
	MessageKeysForUser(ctx context.Context, userID string) ([]MessageKeys, error)
	Claim(ctx context.Context, c Claim) error

	// Issue #3: account life-cycle, second factor, resets and recovery.
	// UpdateUser writes role and status only, compare-and-set on
	// u.Version: ErrConflict when the row changed since it was read (or the
	// change would leave no active admin); re-read and retry.
	UpdateUser(ctx context.Context, u *User) error
	// SetTOTP stores a new second factor without touching other columns
	// (an enrolment must not undo a disable made meanwhile).
	SetTOTP(ctx context.Context, userID string, secretEnc []byte, step int64, at time.Time) error
	ListUsers(ctx context.Context, roles ...string) ([]User, error)
	RevokeAllAppPasswords(ctx context.Context, userID string, at time.Time) (int, error)
	// AdvanceTOTPStep records step as used if it is newer than the last one;
	// false means a replay (or an older code), atomically across nodes.
	AdvanceTOTPStep(ctx context.Context, userID string, step int64) (bool, error)
	SetRecoveryCodes(ctx context.Context, userID string, hashes [][]byte) error
	UseRecoveryCode(ctx context.Context, userID string, hash []byte, at time.Time) (bool, error)
	CountRecoveryCodes(ctx context.Context, userID string) (int, error)
	AddToken(ctx context.Context, t ClaimToken) error
	// Reset spends a reset token and installs the new password and key in
	// one transaction. Messages keep their key packets (for the lost key)
	// until Recover.
	Reset(ctx context.Context, r Reset) error
	// LockedMessageKeys returns the key packets of a user's messages that are
	// not addressed to fpr (the current key): those waiting for recovery.
	LockedMessageKeys(ctx context.Context, userID, fpr string) ([]MessageKeys, error)
	// Recover replaces those messages' key packets; each must still be
	// addressed to another key than fpr when the update runs.
	Recover(ctx context.Context, userID, fpr string, keys []MessageKeys) (int, error)

	// Issue #4: policy versions and recipient keys.
	AddPolicyVersion(ctx context.Context, v PolicyVersion) (int64, error)
	PolicyVersionByID(ctx context.Context, id int64) (*PolicyVersion, error)
	LatestPolicyVersion(ctx context.Context) (*PolicyVersion, error)
	ListPolicyVersions(ctx context.Context) ([]PolicyVersion, error)
	// Quarantine: held messages, and an admin's decision on one (with the
	// notice to commit when it is released).
	ListQuarantined(ctx context.Context) ([]Message, error)
	// ListSent returns the messages a sender sent (no bodies), newest first.
	ListSent(ctx context.Context, senderID string, limit int) ([]Message, error)
	// Replies returns a recipient's copies of their replies to a message.
	Replies(ctx context.Context, recipientID, messageID string) ([]Message, error)
	// PasscodeGiven records that a message's passcode was given.
	PasscodeGiven(ctx context.Context, id string, at time.Time) error
	// Recall withdraws a message its sender sent, with the entries audit
	// seals in the same transaction; ErrNotFound if it is not theirs or is
	// already recalled, denied or purged.
	Recall(ctx context.Context, id, senderID string, audit AuditFunc) error
	// PurgeCiphertext deletes the encrypted content of recalled and denied
	// messages and of messages expired before now, with the entries
	// audit(ids) seals, in one transaction; it returns how many.
	PurgeCiphertext(ctx context.Context, now time.Time, audit PurgeAudit) (int, error)
	// DecideQuarantine's d.Audit records the decision in its transaction.
	DecideQuarantine(ctx context.Context, id, state string, d Delivery) error
	AddBreakGlass(ctx context.Context, b BreakGlass) error
	SetRecipientKey(ctx context.Context, k RecipientKey) error
	RecipientKeyByIndex(ctx context.Context, idx []byte) (*RecipientKey, error)
	DeleteRecipientKey(ctx context.Context, idx []byte) error

	DueOutbox(ctx context.Context, now time.Time, limit int) ([]OutboxItem, error)
	// LeaseOutbox takes due items for one sender: it moves their next
	// attempt to leaseUntil in the same transaction, so another node polling
	// meanwhile does not send them too. A crash mid-send lets the lease run
	// out and the item is tried again (at least once).
	LeaseOutbox(ctx context.Context, now, leaseUntil time.Time, limit int) ([]OutboxItem, error)
	// OutboxStats counts unsent notices (permanently failed ones excluded)
	// and the creation time of the oldest.
	OutboxStats(ctx context.Context, now time.Time) (depth int, oldest time.Time, err error)
	// OutboxSent marks notices sent (one transaction for all ids).
	OutboxSent(ctx context.Context, at time.Time, ids ...string) error
	OutboxRetry(ctx context.Context, id string, attempts int, next time.Time, lastErr string) error
	// FailedOutbox and RequeueOutbox are the admin's view and retry of
	// failed notices (outbox_admin.go).
	FailedOutbox(ctx context.Context, limit int) ([]OutboxItem, error)
	RequeueOutbox(ctx context.Context, id string, now time.Time) error
	LastOutboxFor(ctx context.Context, messageID, kind string) (time.Time, error)
}
