// Package compliance reports, for each HIPAA Security Rule safeguard that
// phigate serves (the technical safeguards of 164.312 and the related
// administrative ones of 164.308), what phigate does, the setting that
// controls it, its current value, and live checks of the configuration and
// state (issue 14.5). It only reads: building a report changes nothing,
// and writes no audit entry.
package compliance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// Status of one check.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	Info Status = "info" // a fact for the auditor, not a pass/fail rule
)

// Limits the checks hold the gateway to.
const (
	MaxIdle = 15 * time.Minute // automatic logoff: at most 15 minutes idle
	// MaxVerifyAge: the daily audit verification (serve, every 24h) must
	// have passed within two days.
	MaxVerifyAge = 48 * time.Hour
	// MaxDrillAge: a restore drill at least once a year.
	MaxDrillAge = 366 * 24 * time.Hour
	// CertWarn: a listener certificate expiring sooner fails.
	CertWarn = 14 * 24 * time.Hour
	// Argon2id floor (OWASP password storage: m=19 MiB, t=2).
	MinPasswordMemoryKiB = 19 * 1024
	MinPasswordTime      = 2
	MaxLockoutFailures   = 10
)

// Check is one live check.
type Check struct {
	Name   string     `json:"name"`
	Status Status     `json:"status"`
	Detail string     `json:"detail"`
	At     *time.Time `json:"at,omitempty"` // when the checked event happened, if it is one
}

// Safeguard is one HIPAA specification and what serves it.
type Safeguard struct {
	Rule    string  `json:"rule"`    // e.g. "164.312(a)(2)(iii)"
	Title   string  `json:"title"`   // e.g. "Automatic logoff"
	Does    string  `json:"does"`    // what phigate does
	Setting string  `json:"setting"` // the setting(s) that control it, "" if built in
	Value   string  `json:"value"`   // their current values
	Checks  []Check `json:"checks"`
}

// Report is the whole report. OK is false if any check failed.
type Report struct {
	Generated  time.Time   `json:"generated"`
	OK         bool        `json:"ok"`
	Failed     int         `json:"failed"`
	Safeguards []Safeguard `json:"safeguards"`
}

// Users lists accounts (store.Store does).
type Users interface {
	ListUsers(ctx context.Context, roles ...string) ([]store.User, error)
}

// Entries searches the audit trail (audit.Trail does).
type Entries interface {
	Search(ctx context.Context, q audit.Query) ([]audit.Entry, error)
}

// Sources is what a report reads.
type Sources struct {
	Config config.Config
	Users  Users
	Trail  Entries
	// TLS is the configuration the listeners are given (keys.LoadTLS);
	// nil if it could not be loaded (TLSErr says why).
	TLS    *tls.Config
	TLSErr error
	// GatewayKey is the gateway signing key's fingerprint ("" if absent).
	GatewayKey string
	Now        time.Time
	// Retention counts what is overdue for disposal (store.Store does);
	// nil leaves that check out.
	Retention Backlog
}

// Build reads the sources and returns the report. An error means a source
// could not be read (the store or the trail), not a failed check.
func Build(ctx context.Context, src Sources) (*Report, error) {
	if src.Now.IsZero() {
		src.Now = time.Now()
	}
	users, err := src.Users.ListUsers(ctx)
	if err != nil {
		return nil, fmt.Errorf("compliance: accounts: %w", err)
	}
	last := func(action string) (*audit.Entry, error) {
		es, err := src.Trail.Search(ctx, audit.Query{Action: action, Newest: true, Limit: 1})
		if err != nil || len(es) == 0 {
			return nil, err
		}
		return &es[0], nil
	}
	var ev events
	for _, p := range []struct {
		action string
		dst    **audit.Entry
	}{{"audit.verify", &ev.verify}, {"backup.create", &ev.backup}, {"backup.restore", &ev.restore},
		{"backup.drill", &ev.drill}, {"retention.purge", &ev.purge}} {
		if *p.dst, err = last(p.action); err != nil {
			return nil, fmt.Errorf("compliance: audit trail: %w", err)
		}
	}
	if ev.first, err = first(ctx, src.Trail); err != nil {
		return nil, fmt.Errorf("compliance: audit trail: %w", err)
	}
	b := builder{src: src, cfg: src.Config, users: users, ev: ev, ctx: ctx}
	r := &Report{Generated: src.Now.UTC(), Safeguards: b.safeguards()}
	for _, s := range r.Safeguards {
		for _, c := range s.Checks {
			if c.Status == Fail {
				r.Failed++
			}
		}
	}
	r.OK = r.Failed == 0
	return r, nil
}

// events are the newest audit entries the checks read.
type events struct{ verify, backup, restore, drill, purge, first *audit.Entry }

type builder struct {
	src   Sources
	cfg   config.Config
	users []store.User
	ev    events
	ctx   context.Context
}

func check(name string, ok bool, detail string) Check {
	if ok {
		return Check{Name: name, Status: Pass, Detail: detail}
	}
	return Check{Name: name, Status: Fail, Detail: detail}
}

func info(name, detail string) Check { return Check{Name: name, Status: Info, Detail: detail} }

func (b *builder) safeguards() []Safeguard {
	c := b.cfg
	return []Safeguard{
		{Rule: "164.312(a)(2)(i)", Title: "Unique user identification",
			Does:   "Every person has their own account (random id, address found by a keyed index); SMTP submission authenticates each sender with their own app passwords; every audit entry names the account.",
			Checks: []Check{b.accounts()}},
		{Rule: "164.312(a)(2)(ii)", Title: "Emergency access procedure",
			Does:    "Break-glass access by an admin or security officer with the organisation's escrow key and passphrase, which the gateway never stores; every access is audited and alerts the security officer.",
			Setting: "keys.escrow_public_key_file, keys.escrow_private_key_file", Value: c.Keys.EscrowPublicKeyFile + ", " + orNone(c.Keys.EscrowPrivateKeyFile),
			Checks: b.escrow()},
		{Rule: "164.312(a)(2)(iii)", Title: "Automatic logoff",
			Does:    "Sessions end after the idle timeout and after the absolute lifetime however active; open pages are wiped when their session ends.",
			Setting: "session.idle_timeout, session.absolute_lifetime", Value: c.Session.IdleTimeout.String() + ", " + c.Session.AbsoluteLifetime.String(),
			Checks: []Check{check("idle timeout at most "+MaxIdle.String(), c.Session.IdleTimeout.Duration > 0 && c.Session.IdleTimeout.Duration <= MaxIdle,
				"idle timeout "+c.Session.IdleTimeout.String())}},
		{Rule: "164.312(a)(2)(iv)", Title: "Encryption and decryption",
			Does:    "Every stored message is OpenPGP-encrypted to its recipient's key and to the escrow key; an active recipient's private key is wrapped under a key derived from their password; server-held secrets are wrapped under the master key, kept outside the database.",
			Setting: "keys.master_key_file (or keys.master_key)", Value: masterKeyValue(c),
			Checks: []Check{b.masterKey()}},
		{Rule: "164.312(b)", Title: "Audit controls",
			Does:   "An append-only audit trail of sign-ins, reads, changes and SMTP decisions, HMAC-chained with checkpoints; serve verifies the chain every 24 hours, phigate audit verify on demand, and each verification is audited (audit.verify). Built in: no setting turns it off.",
			Checks: []Check{b.auditVerified()}},
		{Rule: "164.312(c)(1)", Title: "Integrity",
			Does:    "The gateway key signs every stored message, and readers verify the signature; the audit chain detects altered entries.",
			Setting: "keys.gateway_key_file", Value: c.Keys.GatewayKeyFile,
			Checks: []Check{check("gateway signing key loaded", b.src.GatewayKey != "", "fingerprint "+orNone(b.src.GatewayKey))}},
		{Rule: "164.312(d)", Title: "Person or entity authentication",
			Does:    "Passwords checked against Argon2id verifiers; a second factor (TOTP or recovery code) is mandatory for staff, admin and security accounts, and for patients when required; SMTP AUTH only after TLS, with app passwords.",
			Setting: "security.require_patient_2fa", Value: fmt.Sprint(c.Security.RequirePatient2FA),
			Checks: b.secondFactor()},
		{Rule: "164.312(e)(1)", Title: "Transmission security",
			Does:    "TLS 1.2 or later on every listener (HTTPS, SMTP submission with STARTTLS and implicit TLS); AUTH refused before TLS; onward relay over TLS; Redis over TLS or a private network.",
			Setting: "tls.cert_file, tls.key_file, redis.url", Value: c.TLS.CertFile + ", " + c.TLS.KeyFile + ", " + redactURL(c.Redis.URL),
			Checks: b.transport()},
		{Rule: "164.308(a)(1)(ii)(D)", Title: "Information system activity review",
			Does:    "Audit search and export for admins and the security officer; PHI-free alerts (lock-outs, break-glass, admin grants, unusual reading, a broken audit chain) mailed to the security officer.",
			Setting: "security.officer_email", Value: orNone(c.Security.OfficerEmail),
			Checks: []Check{check("alerts have a recipient", c.Security.OfficerEmail != "", "security.officer_email "+setOrNot(c.Security.OfficerEmail))}},
		{Rule: "164.308(a)(5)(ii)(C)", Title: "Log-in monitoring",
			Does:    "Sign-ins, failures and lock-outs are audited; an account locks after repeated failures and an address is throttled; the security officer is alerted.",
			Setting: "security.lockout_failures, security.lockout_duration", Value: fmt.Sprintf("%d, %s", c.Security.LockoutFailures, c.Security.LockoutDuration),
			Checks: []Check{check(fmt.Sprintf("lock-out after 1 to %d failures", MaxLockoutFailures),
				c.Security.LockoutFailures > 0 && c.Security.LockoutFailures <= MaxLockoutFailures && c.Security.LockoutDuration.Duration > 0,
				fmt.Sprintf("%d failures lock for %s", c.Security.LockoutFailures, c.Security.LockoutDuration))}},
		{Rule: "164.308(a)(5)(ii)(D)", Title: "Password management",
			Does:    "Passwords of at least 12 characters, checked for strength and against the 3 previous ones; stored only as Argon2id verifiers; reset by a single-use link.",
			Setting: "keys.password_memory_kib, keys.password_time, security.reset_ttl", Value: fmt.Sprintf("%d, %d, %s", c.Keys.PasswordMemoryKiB, c.Keys.PasswordTime, c.Security.ResetTTL),
			Checks: []Check{check(fmt.Sprintf("Argon2id at least %d KiB and %d passes", MinPasswordMemoryKiB, MinPasswordTime),
				c.Keys.PasswordMemoryKiB >= MinPasswordMemoryKiB && c.Keys.PasswordTime >= MinPasswordTime,
				fmt.Sprintf("%d KiB, %d passes", c.Keys.PasswordMemoryKiB, c.Keys.PasswordTime))}},
		{Rule: "164.308(a)(7)", Title: "Contingency plan (data backup, disaster recovery, testing)",
			Does:    "serve takes an encrypted, signed backup every backup.interval and keeps the last backup.keep; phigate backup restore brings a data folder back and verifies it; both are audited (backup.create, backup.restore).",
			Setting: "backup.interval, backup.keep, backup.dir", Value: fmt.Sprintf("%s, %d, %s", c.Backup.Interval, c.Backup.Keep, orNone(c.Backup.Dir)),
			Checks: []Check{b.lastBackup(), b.lastDrill()}},
		b.disposal(),
		b.documentation(),
	}
}

func (b *builder) accounts() Check {
	byRole := map[string]int{}
	active := 0
	for _, u := range b.users {
		if u.Status == store.StatusActive {
			active++
			byRole[u.Role]++
		}
	}
	return info("accounts", fmt.Sprintf("%s, %d active (admin %d, security %d, staff %d, patient %d)", web.Count(len(b.users), "account"), active,
		byRole[store.RoleAdmin], byRole[store.RoleSecurity], byRole[store.RoleStaff], byRole[store.RolePatient]))
}

func (b *builder) escrow() []Check {
	k := b.cfg.Keys
	_, err := os.Stat(k.EscrowPublicKeyFile)
	pub := check("escrow public key present", err == nil, "keys.escrow_public_key_file "+present(err))
	priv := check("no escrow private key on the gateway", k.EscrowPrivateKeyFile == "",
		"keys.escrow_private_key_file "+setOrNot(k.EscrowPrivateKeyFile)+" (the security officer holds it)")
	return []Check{pub, priv}
}

func (b *builder) masterKey() Check {
	k := b.cfg.Keys
	if k.MasterKeyFile == "" || k.MasterKey != "" {
		return info("master key file", "given in the configuration or environment, not a file")
	}
	st, err := os.Stat(k.MasterKeyFile)
	if err != nil {
		return check("master key file owner-only", false, "keys.master_key_file "+present(err))
	}
	mode := st.Mode().Perm()
	return check("master key file owner-only", mode&0o077 == 0, fmt.Sprintf("mode %04o", mode))
}

func (b *builder) auditVerified() Check {
	const name = "last audit verification passed within 48 hours"
	e := b.ev.verify
	if e == nil {
		return check(name, false, "no audit verification recorded")
	}
	return b.recent(name, e, MaxVerifyAge, fmt.Sprintf("outcome %s, entries checked: %s", e.Outcome, orNone(e.Details["checked"])))
}

// recent passes if e succeeded no longer than maxAge before now.
func (b *builder) recent(name string, e *audit.Entry, maxAge time.Duration, detail string) Check {
	at := e.Time.UTC()
	age := b.src.Now.Sub(at)
	c := check(name, e.Outcome == audit.OK && age <= maxAge, fmt.Sprintf("%s; %s ago", detail, age.Round(time.Minute)))
	c.At = &at
	return c
}

func (b *builder) secondFactor() []Check {
	staff, patients := 0, 0
	for _, u := range b.users {
		if u.Status != store.StatusActive || u.TOTPSecretEnc != nil {
			continue
		}
		if u.Role == store.RolePatient {
			patients++
		} else {
			staff++
		}
	}
	cs := []Check{check("staff, admin and security accounts have a second factor", staff == 0,
		fmt.Sprintf("%d active without one (they must enrol at their next sign-in)", staff))}
	pd := fmt.Sprintf("%d active patients without one", patients)
	if b.cfg.Security.RequirePatient2FA {
		return append(cs, check("patients have a second factor", patients == 0, pd))
	}
	return append(cs, info("patients without a second factor (not required)", pd))
}

func (b *builder) transport() []Check {
	if b.src.TLS == nil {
		return []Check{check("listeners' TLS configuration loads", false, fmt.Sprint(b.src.TLSErr))}
	}
	cs := []Check{check("TLS 1.2 or later only", b.src.TLS.MinVersion >= tls.VersionTLS12,
		"minimum "+tls.VersionName(b.src.TLS.MinVersion))}
	cs = append(cs, b.certificate())
	if u := b.cfg.Redis.URL; u != "" {
		cs = append(cs, redisTLS(u))
	}
	return cs
}

func (b *builder) certificate() Check {
	const name = "listener certificate valid for 14 days or more"
	if len(b.src.TLS.Certificates) == 0 || len(b.src.TLS.Certificates[0].Certificate) == 0 {
		return check(name, false, "no certificate")
	}
	leaf, err := x509.ParseCertificate(b.src.TLS.Certificates[0].Certificate[0])
	if err != nil {
		return check(name, false, err.Error())
	}
	left := leaf.NotAfter.Sub(b.src.Now)
	c := check(name, left >= CertWarn && !b.src.Now.Before(leaf.NotBefore),
		fmt.Sprintf("expires %s (%s)", leaf.NotAfter.UTC().Format(time.DateOnly), web.Count(int(left.Hours()/24), "day")))
	if leaf.Issuer.String() == leaf.Subject.String() {
		c.Detail += "; self-signed"
	}
	return c
}

// redisTLS passes for rediss://, or redis:// to a loopback address.
func redisTLS(raw string) Check {
	const name = "Redis over TLS or on this host"
	u, err := url.Parse(raw)
	if err != nil {
		return check(name, false, "redis.url does not parse")
	}
	ip := net.ParseIP(u.Hostname())
	loop := u.Hostname() == "localhost" || (ip != nil && ip.IsLoopback())
	return check(name, u.Scheme == "rediss" || loop, "scheme "+u.Scheme+", host "+u.Hostname())
}

func (b *builder) lastBackup() Check {
	const name = "last backup succeeded within twice backup.interval"
	e := b.ev.backup
	if e == nil {
		return check(name, false, "no backup recorded")
	}
	iv := b.cfg.Backup.Interval.Duration
	if iv <= 0 {
		iv = 24 * time.Hour // periodic backups off: hold on-demand ones to a day
	}
	return b.recent(name, e, 2*iv, "backup "+orNone(e.ObjectID)+", outcome "+e.Outcome)
}

func (b *builder) lastDrill() Check {
	const name = "last restore drill succeeded within a year"
	e := newest(b.ev.restore, b.ev.drill) // phigate backup drill records in the live trail
	if e == nil {
		return check(name, false, "no restore recorded")
	}
	return b.recent(name, e, MaxDrillAge, "backup "+orNone(e.ObjectID)+" taken "+orNone(e.Details["taken"])+", outcome "+e.Outcome)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func setOrNot(s string) string {
	if s == "" {
		return "not set"
	}
	return "set"
}

func present(err error) string {
	if err == nil {
		return "present"
	}
	if os.IsNotExist(err) {
		return "missing"
	}
	return "unreadable"
}

func masterKeyValue(c config.Config) string {
	if c.Keys.MasterKey != "" {
		return "(given inline or in the environment)"
	}
	return c.Keys.MasterKeyFile
}

// redactURL drops a password from a URL.
func redactURL(raw string) string {
	if raw == "" {
		return "(none)"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}
