// Package config holds phigate's settings: embedded defaults, a TOML file,
// and PHIGATE_SECTION_KEY environment overrides, in that order of precedence.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Duration is a time.Duration that reads from TOML/env as "10m", "20s".
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

type Config struct {
	Server    Server    `toml:"server"`
	Org       Org       `toml:"org"`
	TLS       TLS       `toml:"tls"`
	Keys      Keys      `toml:"keys"`
	Database  Database  `toml:"database"`
	Store     Store     `toml:"store"`
	SMTP      SMTP      `toml:"smtp"`
	Smarthost Smarthost `toml:"smarthost"`
	Portal    Portal    `toml:"portal"`
	Session   Session   `toml:"session"`
	Security  Security  `toml:"security"`
	Redis     Redis     `toml:"redis"`
	Metrics   Metrics   `toml:"metrics"`
	Alerts    Alerts    `toml:"alerts"`
	Push      Push      `toml:"push"`
	Notify    Notify    `toml:"notify"`
	DKIM      DKIM      `toml:"dkim"`
	Log       Log       `toml:"log"`
	Backup    Backup    `toml:"backup"`
	Retention Retention `toml:"retention"`
	Runtime   Runtime   `toml:"runtime"`

	// Dev is set by `serve --dev`, never from a file.
	Dev bool `toml:"-"`
}

type Server struct {
	DataDir   string `toml:"data_dir"`
	SMTPAddr  string `toml:"smtp_addr"`
	SMTPSAddr string `toml:"smtps_addr"`
	HTTPAddr  string `toml:"http_addr"`
	PublicURL string `toml:"public_url"`
	Hostname  string `toml:"hostname"`
	// ShutdownGrace bounds a stop (SIGTERM): SMTP transactions in DATA,
	// notice sends and HTTPS requests under way get this long to finish.
	ShutdownGrace Duration `toml:"shutdown_grace"`
	// DrainDelay: at a stop, /readyz answers 503 for this long while
	// everything still serves, so a load balancer stops sending first
	// (issue 11.5); then the stop proceeds. 0: none.
	DrainDelay Duration `toml:"drain_delay"`
}

type Org struct {
	Name       string   `toml:"name"`
	Domains    []string `toml:"domains"`
	Contact    string   `toml:"contact"`
	NotifyFrom string   `toml:"notify_from"`
	// NoticeSenderName is the From display name of notice emails (default:
	// Name); NoticeTemplates a folder of templates overriding the built-in
	// wording (issue 10.5; notify.LoadTemplates checks them at start).
	NoticeSenderName string `toml:"notice_sender_name"`
	NoticeTemplates  string `toml:"notice_templates"`
	// TimeZone is the IANA zone times are shown in, on pages and in
	// notices (issue 13.4); empty is UTC.
	TimeZone string `toml:"time_zone"`
	// VerifyURL and VerifyPhone are where a patient can check that a
	// notice is genuine by its reference (issue 13.9): a page of the
	// organisation's own website and a phone number, named in every
	// notice to a recipient. Either may be empty (then the notice names
	// org.contact).
	VerifyURL   string `toml:"verify_url"`
	VerifyPhone string `toml:"verify_phone"`
}

// Location is org.time_zone loaded; UTC when it is empty (Validate refuses
// a zone that does not load).
func (o Org) Location() *time.Location {
	if loc, err := time.LoadLocation(o.TimeZone); err == nil && o.TimeZone != "Local" {
		return loc
	}
	return time.UTC
}

// DKIM signs notice emails (issue 10.5, RFC 6376 and RFC 8463). The
// records to publish are <selector>-rsa._domainkey.<domain> and
// <selector>-ed25519._domainkey.<domain> (phigate dkim show).
type DKIM struct {
	Selector string `toml:"selector"`
	Domain   string `toml:"domain"` // default: the domain of org.notify_from
}

type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

type Keys struct {
	MasterKeyFile         string `toml:"master_key_file"`
	MasterKey             string `toml:"master_key"`
	EscrowPublicKeyFile   string `toml:"escrow_public_key_file"`
	EscrowPrivateKeyFile  string `toml:"escrow_private_key_file"`
	GatewayKeyFile        string `toml:"gateway_key_file"`
	PasswordTime          uint32 `toml:"password_time"`
	PasswordMemoryKiB     uint32 `toml:"password_memory_kib"`
	PasswordThreads       uint8  `toml:"password_threads"`
	MaxConcurrentPassword int    `toml:"max_concurrent_password_hashes"`
	// The hash queue (issue 8.1): callers waiting for one of the
	// max_concurrent_password_hashes slots are served round-robin per
	// client address; past the wait, or a full queue, they get HTTP 429.
	PasswordQueueWait      Duration `toml:"password_queue_wait"`
	PasswordQueuePerClient int      `toml:"password_queue_per_client"`
	PasswordQueueTotal     int      `toml:"password_queue_total"`
	// VAPIDKeyFile holds the Web Push (RFC 8292) signing key, wrapped
	// under the master key; created at first start.
	VAPIDKeyFile string `toml:"vapid_key_file"`
	// DKIMKeyFile holds the DKIM keys that sign notices (RSA-2048 and
	// Ed25519), wrapped under the master key; created at first start.
	DKIMKeyFile string `toml:"dkim_key_file"`
}

type Database struct {
	Driver string `toml:"driver"`
	DSN    string `toml:"dsn"`
}

// Store selects a server database for several nodes (issue 11).
type Store struct {
	// URL is postgres://... (PostgreSQL); empty: the embedded SQLite file
	// at database.dsn.
	URL string `toml:"url"`
}

type SMTP struct {
	MaxMessageBytes int64    `toml:"max_message_bytes"`
	MaxRecipients   int      `toml:"max_recipients"`
	MaxLineLength   int      `toml:"max_line_length"`
	ReadTimeout     Duration `toml:"read_timeout"`
	WriteTimeout    Duration `toml:"write_timeout"`
	Senders         Senders  `toml:"senders"`
	// Abuse controls (issue 8.4): connection caps, the short timeouts
	// outside an authenticated transaction, AUTH failure throttling.
	MaxConnections      int      `toml:"max_connections"`        // all SMTP listeners together; lowered to fit the fd limit
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"` // per address (IPv6: /64)
	HandshakeTimeout    Duration `toml:"handshake_timeout"`      // TLS handshake and first command
	CommandTimeout      Duration `toml:"command_timeout"`        // each command outside an authenticated transaction
	DrainTimeout        Duration `toml:"drain_timeout"`          // reading what a client still sends after our last reply
	AuthFailureDelay    Duration `toml:"auth_failure_delay"`     // wait before each 535
	AuthMaxFailures     int      `toml:"auth_max_failures"`      // failures that drop one connection
}

// Senders are the per-account sending limits and header From allowances
// (issue 8.5, 8.6). A count of 0 means no limit.
type Senders struct {
	MessagesPerHour     int   `toml:"messages_per_hour"`
	ConcurrentTxns      int   `toml:"concurrent_transactions"`
	MaxTransactionBytes int64 `toml:"max_transaction_bytes"` // message size x recipients
	MaxStoredBytes      int64 `toml:"max_stored_bytes"`      // portal copies an account has stored
	CommitBatchBytes    int64 `toml:"commit_batch_bytes"`    // sealed portal copies committed per step of a transaction
	// AllowFrom maps an account's address to the other header From
	// addresses it may use (a shared mailbox, a department alias).
	AllowFrom map[string][]string `toml:"allow_from"`
}

type Smarthost struct {
	Addr         string `toml:"addr"`
	ImplicitTLS  bool   `toml:"implicit_tls"`
	Username     string `toml:"username"`
	PasswordFile string `toml:"password_file"`
	CAFile       string `toml:"ca_file"`
	// MaxRetry is how long onward mail is retried before its sender gets
	// a delivery-failure report.
	MaxRetry Duration `toml:"max_retry"`
	// Connections is how many notices go out at once, each over its own
	// connection kept open across messages.
	Connections int `toml:"connections"`
	// ProbeInterval: while notices wait because the smarthost could not
	// be reached, how often to check whether it is back.
	ProbeInterval Duration `toml:"probe_interval"`
}

type Portal struct {
	ClaimTTL      Duration `toml:"claim_ttl"`
	MessageExpiry Duration `toml:"message_expiry"`

	// Request bodies are bounded before they are read: every route by
	// MaxBodyBytes, the secure reply and the key/policy uploads by their
	// own bounds.
	MaxBodyBytes      int64 `toml:"max_body_bytes"`
	MaxReplyBodyBytes int64 `toml:"max_reply_body_bytes"`
	MaxUploadBytes    int64 `toml:"max_upload_bytes"`

	// The HTTPS listener's bounds against slow and idle clients.
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	ReadTimeout       Duration `toml:"read_timeout"`
	WriteTimeout      Duration `toml:"write_timeout"`
	ConnIdleTimeout   Duration `toml:"conn_idle_timeout"`
	MaxHeaderBytes    int      `toml:"max_header_bytes"`
	MaxConns          int      `toml:"max_conns"`
	MaxConnsPerIP     int      `toml:"max_conns_per_ip"`
}

// Session settings (HIPAA 164.312(a)(2)(iii) automatic logoff).
type Session struct {
	IdleTimeout      Duration `toml:"idle_timeout"`
	AbsoluteLifetime Duration `toml:"absolute_lifetime"`
}

// Security holds sign-in protection and account recovery settings.
type Security struct {
	LockoutFailures   int      `toml:"lockout_failures"`
	LockoutDuration   Duration `toml:"lockout_duration"`
	IPMaxFailures     int      `toml:"ip_max_failures"`
	IPWindow          Duration `toml:"ip_window"`
	RequirePatient2FA bool     `toml:"require_patient_2fa"`
	ResetTTL          Duration `toml:"reset_ttl"`
	OfficerEmail      string   `toml:"officer_email"`
}

// Redis, when URL is set, holds sessions, lock-out counters and live events
// shared by every node; without it they live in this process.
type Redis struct {
	URL    string `toml:"url"`
	Prefix string `toml:"prefix"`
	// Timeout bounds one Redis operation (connecting and retries
	// included); past it Redis counts as down and the portal answers 503.
	Timeout Duration `toml:"timeout"`
	// ProbeInterval is how often a Redis counted as down is pinged.
	ProbeInterval Duration `toml:"probe_interval"`
	// PasswordFile holds the Redis password (overrides one in the URL);
	// CAFile the CA that signed a rediss:// server's certificate (else
	// the system roots). Both for container secrets (docs/deploy.md).
	PasswordFile string `toml:"password_file"`
	CAFile       string `toml:"ca_file"`
}

// Alerts are the security officer's alert thresholds (issue #5).
type Alerts struct {
	IPFailures   int      `toml:"ip_failures"`
	OpensPerUser int      `toml:"opens_per_user"`
	Window       Duration `toml:"window"`
	MaxPerWindow int      `toml:"max_per_window"`
}

// Push is the Web Push channel (issue 10.3, docs/notifications.md).
type Push struct {
	// AllowedHosts are the push services' hosts a subscription's endpoint
	// may name ("*.push.apple.com" matches any subdomain): the gateway
	// posts only to these, over https.
	AllowedHosts []string `toml:"allowed_hosts"`
	// MaxDevices bounds the subscriptions of one account.
	MaxDevices int `toml:"max_devices"`
	// TTL is how long a push service keeps a push for an offline device
	// (RFC 8030 5.2).
	TTL Duration `toml:"ttl"`
}

// Notify is how accounts hear of new messages (issue 10.4,
// docs/notifications.md).
type Notify struct {
	// DefaultChannels is the choice of accounts that made none: "email",
	// "push" or "both".
	DefaultChannels string `toml:"default_channels"`
	// RequireEmail keeps email notices on whatever an account chooses.
	RequireEmail bool `toml:"require_email"`
	// BatchWindow: after a notice, a recipient's further messages within
	// this long are announced by one more notice at its end (0: every
	// message its own notice).
	BatchWindow Duration `toml:"batch_window"`
}

// Metrics is the Prometheus listener (plain HTTP, loopback unless
// allow_remote: put a TLS proxy in front to expose it).
type Metrics struct {
	Addr        string `toml:"addr"`
	AllowRemote bool   `toml:"allow_remote"`
	// Pprof mounts Go's profiler on this listener (serve --debug-pprof
	// only, never from a file or the environment; loopback addresses only).
	Pprof bool `toml:"-"`
}

// Backup is the periodic encrypted backup that serve takes (issue 14.1;
// phigate backup create takes one on demand).
type Backup struct {
	// Interval between backups; 0 turns the periodic backup off.
	Interval Duration `toml:"interval"`
	// Dir receives the backup files (default DATA/backups).
	Dir string `toml:"dir"`
	// Keep is how many backups Dir keeps; older ones are removed.
	Keep int `toml:"keep"`
	// RecipientKey is an OpenPGP public key file the backups are encrypted
	// to (default: the escrow public key).
	RecipientKey string `toml:"recipient_key"`
}

type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
	File   string `toml:"file"`
}

// Default returns the embedded defaults (the values docs/configuration.md lists).
func Default() Config {
	return Config{
		Server: Server{
			DataDir:   "./phigate-data",
			SMTPAddr:  "127.0.0.1:2587",
			SMTPSAddr: "127.0.0.1:2465",
			HTTPAddr:  "127.0.0.1:8443",
			Hostname:  "localhost",
			// Long enough for a large message on a slow link to finish
			// DATA, short of typical service-manager kill timeouts (90 s).
			ShutdownGrace: Duration{30 * time.Second},
		},
		Org: Org{
			Name:       "Example Clinic",
			Domains:    []string{"clinic.example"},
			Contact:    "privacy@clinic.example",
			NotifyFrom: "no-reply@clinic.example",
		},
		DKIM: DKIM{Selector: "phigate"},
		Keys: Keys{
			PasswordTime:          3,
			PasswordMemoryKiB:     64 * 1024,
			PasswordThreads:       2,
			MaxConcurrentPassword: 4,

			PasswordQueueWait:      Duration{10 * time.Second},
			PasswordQueuePerClient: 4,
			PasswordQueueTotal:     256,
		},
		Database:  Database{Driver: "sqlite"},
		Smarthost: Smarthost{MaxRetry: Duration{48 * time.Hour}, Connections: 16, ProbeInterval: Duration{10 * time.Second}},
		SMTP: SMTP{
			MaxMessageBytes: 25 << 20,
			MaxRecipients:   100,
			// RFC 5321 4.5.3.1.6: 1000 octets including CRLF.
			MaxLineLength: 1000,
			ReadTimeout:   Duration{5 * time.Minute},
			WriteTimeout:  Duration{time.Minute},

			MaxConnections: 1000, MaxConnectionsPerIP: 20, HandshakeTimeout: Duration{10 * time.Second},
			CommandTimeout: Duration{time.Minute}, DrainTimeout: Duration{5 * time.Second},
			AuthFailureDelay: Duration{time.Second}, AuthMaxFailures: 3,
			Senders: Senders{MessagesPerHour: 300, ConcurrentTxns: 4, MaxTransactionBytes: 250 << 20,
				MaxStoredBytes: 5 << 30, CommitBatchBytes: 32 << 20},
		},
		Session: Session{
			IdleTimeout:      Duration{10 * time.Minute},
			AbsoluteLifetime: Duration{12 * time.Hour},
		},
		Security: Security{
			LockoutFailures: 5,
			LockoutDuration: Duration{15 * time.Minute},
			IPMaxFailures:   20,
			IPWindow:        Duration{15 * time.Minute},
			ResetTTL:        Duration{30 * time.Minute},
			OfficerEmail:    "",
		},
		Redis:   Redis{Prefix: "phigate:", Timeout: Duration{time.Second}, ProbeInterval: Duration{time.Second}},
		Metrics: Metrics{Addr: "127.0.0.1:9464"},
		Alerts:  Alerts{IPFailures: 20, OpensPerUser: 100, Window: Duration{15 * time.Minute}, MaxPerWindow: 10},
		Push: Push{AllowedHosts: []string{"fcm.googleapis.com", "updates.push.services.mozilla.com", "*.push.apple.com", "*.notify.windows.com"},
			MaxDevices: 10, TTL: Duration{24 * time.Hour}},
		Notify: Notify{DefaultChannels: "both", BatchWindow: Duration{10 * time.Minute}},
		Portal: Portal{
			ClaimTTL:      Duration{7 * 24 * time.Hour},
			MessageExpiry: Duration{30 * 24 * time.Hour},
			MaxBodyBytes:  64 << 10,
			// A 10 MB reply (the policy's default), base64 in JSON.
			MaxReplyBodyBytes: 14 << 20,
			MaxUploadBytes:    1 << 20,
			ReadHeaderTimeout: Duration{10 * time.Second},
			ReadTimeout:       Duration{2 * time.Minute},
			WriteTimeout:      Duration{5 * time.Minute},
			ConnIdleTimeout:   Duration{2 * time.Minute},
			MaxHeaderBytes:    64 << 10,
			MaxConns:          4096,
			MaxConnsPerIP:     256,
		},
		// Format "" picks json in production and text in --dev.
		Log:       Log{Level: "info"},
		Backup:    Backup{Interval: Duration{24 * time.Hour}, Keep: 7},
		Retention: DefaultRetention(),
		Runtime:   DefaultRuntime(),
	}
}

// Load reads defaults, then file (if not empty), then environment overrides.
func Load(file string, environ []string) (Config, error) {
	c := Default()
	if file != "" {
		md, err := toml.DecodeFile(file, &c)
		if err != nil {
			return c, fmt.Errorf("config %s: %w", file, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			return c, fmt.Errorf("config %s: unknown setting %s", file, und[0])
		}
	}
	if err := applyEnv(&c, environ); err != nil {
		return c, err
	}
	return c, nil
}

// applyEnv sets fields from PHIGATE_<SECTION>_<KEY> variables, where SECTION
// and KEY are the upper-cased TOML names.
func applyEnv(c *Config, environ []string) error {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, "PHIGATE_") {
			env[k] = v
		}
	}
	if len(env) == 0 {
		return nil
	}
	known := map[string]bool{}
	root := reflect.ValueOf(c).Elem()
	for i := 0; i < root.NumField(); i++ {
		sec := root.Type().Field(i)
		secName := tagName(sec)
		if secName == "-" || sec.Type.Kind() != reflect.Struct {
			continue
		}
		sv := root.Field(i)
		for j := 0; j < sv.NumField(); j++ {
			f := sv.Type().Field(j)
			name := "PHIGATE_" + strings.ToUpper(secName) + "_" + strings.ToUpper(tagName(f))
			known[name] = true
			v, ok := env[name]
			if !ok {
				continue
			}
			if err := setField(sv.Field(j), v); err != nil {
				return fmt.Errorf("environment %s: %w", name, err)
			}
		}
	}
	for k := range env {
		if !known[k] && k != "PHIGATE_CONFIG" {
			return fmt.Errorf("environment %s: no such setting", k)
		}
	}
	return nil
}

func tagName(f reflect.StructField) string {
	t := f.Tag.Get("toml")
	if t == "" {
		return f.Name
	}
	return strings.Split(t, ",")[0]
}

func setField(v reflect.Value, s string) error {
	if u, ok := v.Addr().Interface().(interface{ UnmarshalText([]byte) error }); ok {
		return u.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Uint8, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, v.Type().Bits())
		if err != nil {
			return err
		}
		v.SetUint(n)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

// ApplyDev fills in what dev mode generates inside the data folder.
func (c *Config) ApplyDev() {
	c.Dev = true
	d := c.Server.DataDir
	if c.Keys.MasterKeyFile == "" {
		c.Keys.MasterKeyFile = filepath.Join(d, "master.key")
	}
	if c.Security.OfficerEmail == "" {
		c.Security.OfficerEmail = "security@clinic.example"
	}
	if c.Keys.EscrowPublicKeyFile == "" {
		c.Keys.EscrowPublicKeyFile = filepath.Join(d, "escrow-public.asc")
	}
	if c.Keys.GatewayKeyFile == "" {
		c.Keys.GatewayKeyFile = filepath.Join(d, "gateway-key.wrapped")
	}
	if c.TLS.CertFile == "" {
		c.TLS.CertFile = filepath.Join(d, "tls-cert.pem")
		c.TLS.KeyFile = filepath.Join(d, "tls-key.pem")
	}
	if c.Log.Format == "" {
		c.Log.Format = "text"
	}
}

// Fill derives settings that default from others.
func (c *Config) Fill() {
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Database.DSN == "" && c.Database.Driver == "sqlite" {
		c.Database.DSN = filepath.Join(c.Server.DataDir, "phigate.db")
	}
	if c.Keys.GatewayKeyFile == "" {
		c.Keys.GatewayKeyFile = filepath.Join(c.Server.DataDir, "gateway-key.wrapped")
	}
	if c.Keys.VAPIDKeyFile == "" {
		c.Keys.VAPIDKeyFile = filepath.Join(c.Server.DataDir, "vapid-key.wrapped")
	}
	if c.Backup.Dir == "" {
		c.Backup.Dir = filepath.Join(c.Server.DataDir, "backups")
	}
	if c.Keys.DKIMKeyFile == "" {
		c.Keys.DKIMKeyFile = filepath.Join(c.Server.DataDir, "dkim-key.wrapped")
	}
	if c.DKIM.Domain == "" {
		if at := strings.LastIndexByte(c.Org.NotifyFrom, '@'); at >= 0 {
			c.DKIM.Domain = strings.ToLower(c.Org.NotifyFrom[at+1:])
		}
	}
	if c.Server.PublicURL == "" {
		host, port, err := net.SplitHostPort(c.Server.HTTPAddr)
		if err != nil || host == "" || host == "0.0.0.0" || host == "::" {
			host = c.Server.Hostname
		}
		if port == "443" {
			c.Server.PublicURL = "https://" + host
		} else {
			c.Server.PublicURL = "https://" + net.JoinHostPort(host, port)
		}
	}
	c.Server.PublicURL = strings.TrimRight(c.Server.PublicURL, "/")
	for i, d := range c.Org.Domains {
		c.Org.Domains[i] = strings.ToLower(strings.TrimSpace(d))
	}
}

// passwordParamsValid bounds the Argon2id settings the same way stored
// parameters are bounded, so a typo fails at start, not at first sign-in.
func (k Keys) passwordParamsValid() error {
	switch {
	case k.PasswordTime < 1 || k.PasswordTime > 64:
		return fmt.Errorf("keys.password_time %d: use 1 to 64", k.PasswordTime)
	case k.PasswordThreads < 1:
		return errors.New("keys.password_threads must be at least 1")
	case k.PasswordMemoryKiB < 8*uint32(k.PasswordThreads) || k.PasswordMemoryKiB > 1<<20:
		return fmt.Errorf("keys.password_memory_kib %d: use %d to 1048576", k.PasswordMemoryKiB, 8*uint32(k.PasswordThreads))
	case k.MaxConcurrentPassword < 1:
		return errors.New("keys.max_concurrent_password_hashes must be at least 1")
	case k.PasswordQueueWait.Duration <= 0 || k.PasswordQueuePerClient < 1 || k.PasswordQueueTotal < 1:
		return errors.New("keys.password_queue_wait must be positive, password_queue_per_client and password_queue_total at least 1")
	}
	return nil
}

// MaxIdleTimeout is the ceiling DESIGN.md sets for session idle time.
const MaxIdleTimeout = 30 * time.Minute

// Validate checks settings every mode needs; ValidateProduction adds the
// refusals that keep a production gateway from starting unsafe.
func (c *Config) Validate() error {
	var errs []error
	if c.Server.DataDir == "" {
		errs = append(errs, errors.New("server.data_dir is empty"))
	}
	if len(c.Org.Domains) == 0 {
		errs = append(errs, errors.New("org.domains: at least one organisation domain is needed"))
	}
	if _, err := time.LoadLocation(c.Org.TimeZone); err != nil || c.Org.TimeZone == "Local" {
		errs = append(errs, fmt.Errorf("org.time_zone %q: an IANA zone name is needed, e.g. Europe/London or America/New_York", c.Org.TimeZone))
	}
	// Notices print it and link to it: only a web page will do (issue 13.9).
	if v := c.Org.VerifyURL; v != "" {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("org.verify_url %q: a web address is needed, e.g. https://clinic.example/secure-messages", v))
		}
	}
	if c.DKIM.Selector == "" || strings.ContainsAny(c.DKIM.Selector, "; \t") {
		errs = append(errs, errors.New("dkim.selector: a DNS label is needed (default phigate)"))
	}
	if ch := c.Notify.DefaultChannels; ch != "email" && ch != "push" && ch != "both" {
		errs = append(errs, fmt.Errorf("notify.default_channels %q: must be email, push or both", ch))
	}
	if c.Notify.BatchWindow.Duration < 0 {
		errs = append(errs, errors.New("notify.batch_window must not be negative"))
	}
	if c.Push.MaxDevices < 1 || c.Push.TTL.Duration < 0 {
		errs = append(errs, errors.New("push: max_devices must be at least 1 and ttl not negative"))
	}
	if it := c.Session.IdleTimeout.Duration; it <= 0 || it > MaxIdleTimeout {
		errs = append(errs, fmt.Errorf("session.idle_timeout %s: must be > 0 and at most %s", it, MaxIdleTimeout))
	}
	if al := c.Session.AbsoluteLifetime.Duration; al < c.Session.IdleTimeout.Duration || al > 24*time.Hour {
		errs = append(errs, fmt.Errorf("session.absolute_lifetime %s: must be at least the idle timeout and at most 24h", al))
	}
	if s := c.Security; s.LockoutFailures < 1 || s.LockoutDuration.Duration <= 0 || s.IPMaxFailures < 1 || s.IPWindow.Duration <= 0 || s.ResetTTL.Duration <= 0 {
		errs = append(errs, errors.New("security: lockout_failures and ip_max_failures must be at least 1; lockout_duration, ip_window and reset_ttl positive"))
	}
	if u := c.Store.URL; u != "" && !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
		// Not quoted: the URL may hold a password.
		errs = append(errs, errors.New("store.url: use postgres:// or postgresql:// (empty: the embedded SQLite database)"))
	}
	if c.Redis.URL != "" && !strings.HasPrefix(c.Redis.URL, "redis://") && !strings.HasPrefix(c.Redis.URL, "rediss://") && !strings.HasPrefix(c.Redis.URL, "unix://") {
		errs = append(errs, fmt.Errorf("redis.url %q: use redis://, rediss:// or unix://", c.Redis.URL))
	}
	if g := c.Server.ShutdownGrace.Duration; g <= 0 || g > 10*time.Minute {
		errs = append(errs, fmt.Errorf("server.shutdown_grace %s: must be positive and at most 10m", g))
	}
	if d := c.Server.DrainDelay.Duration; d < 0 || d > 5*time.Minute {
		errs = append(errs, fmt.Errorf("server.drain_delay %s: must be 0 to 5m", d))
	}
	if c.Smarthost.Connections < 1 || c.Smarthost.Connections > 64 || c.Smarthost.ProbeInterval.Duration <= 0 {
		errs = append(errs, errors.New("smarthost.connections must be 1 to 64 and smarthost.probe_interval positive"))
	}
	if c.Redis.Timeout.Duration <= 0 || c.Redis.ProbeInterval.Duration <= 0 {
		errs = append(errs, errors.New("redis.timeout and redis.probe_interval must be positive"))
	}
	if c.Backup.Interval.Duration < 0 || c.Backup.Keep < 1 {
		errs = append(errs, errors.New("backup: interval must not be negative (0: off) and keep at least 1"))
	}
	if err := c.Retention.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Runtime.validate(c.Keys); err != nil {
		errs = append(errs, err)
	}
	if c.SMTP.MaxRecipients < 1 {
		errs = append(errs, errors.New("smtp.max_recipients must be at least 1"))
	}
	if c.SMTP.MaxMessageBytes < 1024 {
		errs = append(errs, errors.New("smtp.max_message_bytes must be at least 1024"))
	}
	if sd := c.SMTP.Senders; sd.MessagesPerHour < 0 || sd.ConcurrentTxns < 0 || sd.MaxTransactionBytes < 0 || sd.MaxStoredBytes < 0 ||
		sd.CommitBatchBytes < 1<<20 {
		errs = append(errs, errors.New("smtp.senders: limits must not be negative, and commit_batch_bytes at least 1 MiB"))
	}
	if c.Database.Driver != "sqlite" {
		errs = append(errs, fmt.Errorf("database.driver %q: only \"sqlite\" is supported in this version", c.Database.Driver))
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: use json or text", c.Log.Format))
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: use debug, info, warn or error", c.Log.Level))
	}
	if c.Server.HTTPAddr == "" {
		errs = append(errs, errors.New("server.http_addr is empty: the portal is required"))
	}
	if c.Server.SMTPAddr == "" && c.Server.SMTPSAddr == "" {
		errs = append(errs, errors.New("server.smtp_addr and server.smtps_addr are both empty: nothing could submit mail"))
	}
	if c.Portal.ClaimTTL.Duration <= 0 || c.Portal.MessageExpiry.Duration <= 0 {
		errs = append(errs, errors.New("portal.claim_ttl and portal.message_expiry must be positive"))
	}
	if err := c.Portal.boundsValid(); err != nil {
		errs = append(errs, err)
	}
	if m := c.SMTP; m.MaxConnections < 1 || m.MaxConnectionsPerIP < 1 || m.AuthMaxFailures < 1 || m.AuthFailureDelay.Duration < 0 ||
		m.HandshakeTimeout.Duration <= 0 || m.CommandTimeout.Duration <= 0 || m.DrainTimeout.Duration < 0 || m.ReadTimeout.Duration <= 0 {
		errs = append(errs, errors.New("smtp: max_connections, max_connections_per_ip and auth_max_failures must be at least 1; handshake_timeout, command_timeout and read_timeout positive; drain_timeout and auth_failure_delay not negative"))
	}
	if c.SMTP.MaxLineLength < 1000 {
		// RFC 5321 4.5.3.1.6: receivers must accept 1000-octet lines.
		errs = append(errs, fmt.Errorf("smtp.max_line_length %d: must be at least 1000 (RFC 5321 4.5.3.1.6)", c.SMTP.MaxLineLength))
	}
	if err := c.Keys.passwordParamsValid(); err != nil {
		errs = append(errs, err)
	}
	if !strings.HasPrefix(c.Server.PublicURL, "https://") {
		errs = append(errs, fmt.Errorf("server.public_url %q must start with https://", c.Server.PublicURL))
	}
	return errors.Join(errs...)
}

// boundsValid refuses request and connection bounds that would leave the
// portal unbounded (0 or negative); max_conns_per_ip may be 0 (off, for a
// portal behind a proxy that every client shares).
func (p Portal) boundsValid() error {
	if p.MaxBodyBytes <= 0 || p.MaxReplyBodyBytes <= 0 || p.MaxUploadBytes <= 0 || p.MaxHeaderBytes <= 0 {
		return errors.New("portal.max_body_bytes, max_reply_body_bytes, max_upload_bytes and max_header_bytes must be positive")
	}
	if p.ReadHeaderTimeout.Duration <= 0 || p.ReadTimeout.Duration <= 0 || p.WriteTimeout.Duration <= 0 || p.ConnIdleTimeout.Duration <= 0 {
		return errors.New("portal.read_header_timeout, read_timeout, write_timeout and conn_idle_timeout must be positive")
	}
	if p.MaxConns <= 0 || p.MaxConnsPerIP < 0 {
		return errors.New("portal.max_conns must be positive and portal.max_conns_per_ip 0 (off) or positive")
	}
	return nil
}

// ValidateProduction names every unsafe setting; serve without --dev refuses
// to start when any is found.
func (c *Config) ValidateProduction(fileExists func(string) bool) error {
	var errs []error
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		errs = append(errs, errors.New("tls.cert_file and tls.key_file: a TLS certificate is required (no self-signed certificates outside --dev)"))
	} else {
		for _, f := range []string{c.TLS.CertFile, c.TLS.KeyFile} {
			if !fileExists(f) {
				errs = append(errs, fmt.Errorf("tls: %s does not exist", f))
			}
		}
	}
	if c.Smarthost.Addr == "" {
		errs = append(errs, errors.New("smarthost.addr: a smarthost is required for onward mail and notifications (the maildrop folder is for --dev only)"))
	}
	if c.Keys.EscrowPrivateKeyFile != "" {
		errs = append(errs, errors.New("keys.escrow_private_key_file: the escrow private key must not be on the gateway; the security officer keeps it offline"))
	}
	if c.Keys.EscrowPublicKeyFile == "" {
		errs = append(errs, errors.New("keys.escrow_public_key_file: the escrow public key is required"))
	}
	if u, err := url.Parse(c.Server.PublicURL); err == nil {
		if h := u.Hostname(); h == "localhost" || strings.HasPrefix(h, "127.") || h == "::1" {
			errs = append(errs, fmt.Errorf("server.public_url %q: notices would send recipients to a loopback address; set the portal's public https URL", c.Server.PublicURL))
		}
	}
	if c.Security.OfficerEmail == "" {
		errs = append(errs, errors.New("security.officer_email: break-glass and security alerts need the security officer's address"))
	}
	if c.Keys.MasterKeyFile == "" && c.Keys.MasterKey == "" {
		errs = append(errs, errors.New("keys.master_key_file (or PHIGATE_KEYS_MASTER_KEY): the master key is required"))
	}
	return errors.Join(errs...)
}
