package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func writeTOML(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "phigate.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefault(t *testing.T) {
	c := Default()
	checks := []struct {
		name      string
		got, want any
	}{
		{"smtp.max_message_bytes", c.SMTP.MaxMessageBytes, int64(25 * 1024 * 1024)},
		{"smtp.max_recipients", c.SMTP.MaxRecipients, 100},
		{"smtp.max_line_length", c.SMTP.MaxLineLength, 1000},
		{"smtp.read_timeout", c.SMTP.ReadTimeout.Duration, 5 * time.Minute},
		{"smtp.write_timeout", c.SMTP.WriteTimeout.Duration, time.Minute},
		{"session.idle_timeout", c.Session.IdleTimeout.Duration, 10 * time.Minute},
		{"portal.claim_ttl", c.Portal.ClaimTTL.Duration, 7 * 24 * time.Hour},
		{"portal.message_expiry", c.Portal.MessageExpiry.Duration, 30 * 24 * time.Hour},
		{"server.smtp_addr", c.Server.SMTPAddr, "127.0.0.1:2587"},
		{"server.smtps_addr", c.Server.SMTPSAddr, "127.0.0.1:2465"},
		{"server.http_addr", c.Server.HTTPAddr, "127.0.0.1:8443"},
		{"server.public_url", c.Server.PublicURL, ""},
		{"database.driver", c.Database.Driver, "sqlite"},
		{"keys.escrow_private_key_file", c.Keys.EscrowPrivateKeyFile, ""},
		{"log.level", c.Log.Level, "info"},
		{"dev", c.Dev, false},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	// Defaults must pass Validate once derived values are filled.
	c.Fill()
	if c.Log.Format != "json" {
		t.Errorf("log.format after Fill = %q, want json", c.Log.Format)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	// Default() hands out fresh slices: changing one config's domains must
	// not change the next Default().
	c.Org.Domains[0] = "changed.example"
	if Default().Org.Domains[0] != "clinic.example" {
		t.Error("Default shares its Domains slice")
	}
}

func TestLoadFile(t *testing.T) {
	p := writeTOML(t, `
[server]
data_dir = "/var/lib/phigate"
http_addr = "0.0.0.0:443"
hostname = "mail.clinic.example"

[org]
name = "Riverside Clinic"
domains = ["Riverside.Example", "lab.riverside.example"]

[smtp]
max_recipients = 50
read_timeout = "90s"

[smarthost]
addr = "relay.riverside.example:587"
implicit_tls = true

[session]
idle_timeout = "15m"

[keys]
password_threads = 4
`)
	c, err := Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server.DataDir != "/var/lib/phigate" || c.Org.Name != "Riverside Clinic" || c.SMTP.MaxRecipients != 50 ||
		c.SMTP.ReadTimeout.Duration != 90*time.Second || !c.Smarthost.ImplicitTLS || c.Smarthost.Addr != "relay.riverside.example:587" ||
		c.Session.IdleTimeout.Duration != 15*time.Minute || c.Keys.PasswordThreads != 4 {
		t.Errorf("loaded %+v", c)
	}
	if !reflect.DeepEqual(c.Org.Domains, []string{"Riverside.Example", "lab.riverside.example"}) {
		t.Errorf("domains %v", c.Org.Domains)
	}
	// Settings the file does not name keep their defaults.
	if c.SMTP.MaxMessageBytes != 25<<20 || c.SMTP.MaxLineLength != 1000 || c.Server.SMTPAddr != "127.0.0.1:2587" || c.Keys.PasswordTime != 3 {
		t.Errorf("defaults lost: %+v", c.SMTP)
	}
	c.Fill()
	if c.Server.PublicURL != "https://mail.clinic.example" {
		t.Errorf("public_url %q", c.Server.PublicURL)
	}
	if !reflect.DeepEqual(c.Org.Domains, []string{"riverside.example", "lab.riverside.example"}) {
		t.Errorf("Fill did not normalise domains: %v", c.Org.Domains)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	cases := []struct {
		name, body string
		want       []string
	}{
		{"unknown key", "[smtp]\nmax_recipients = 5\nmax_recipientz = 7\n", []string{"unknown setting", "smtp.max_recipientz"}},
		{"unknown section", "[smpt]\nmax_recipients = 5\n", []string{"unknown setting", "smpt"}},
		{"unknown top-level key", "dev = true\n", []string{"unknown setting", "dev"}},
		{"bad duration", "[session]\nidle_timeout = \"ten minutes\"\n", []string{"idle_timeout"}},
		{"wrong type", "[smtp]\nmax_recipients = \"many\"\n", []string{"max_recipients"}},
		{"syntax", "[smtp\n", []string{"phigate.toml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(writeTOML(t, c.body), nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml"), nil); err == nil {
		t.Error("missing file: no error")
	}
}

func TestEnvOverrides(t *testing.T) {
	env := []string{
		"PATH=/usr/bin",
		"HOME=/root",
		"PHIGATE_CONFIG=/etc/phigate.toml",                               // names the file; not a setting
		"PHIGATE_ORG_NAME=Lakeside Health",                               // string
		"PHIGATE_SMTP_MAX_RECIPIENTS=7",                                  // int
		"PHIGATE_SMTP_MAX_MESSAGE_BYTES=1048576",                         // int64
		"PHIGATE_KEYS_PASSWORD_THREADS=3",                                // uint8
		"PHIGATE_KEYS_PASSWORD_MEMORY_KIB=32768",                         // uint32
		"PHIGATE_SMARTHOST_IMPLICIT_TLS=true",                            // bool
		"PHIGATE_SESSION_IDLE_TIMEOUT=20m",                               // duration
		"PHIGATE_ORG_DOMAINS= lakeside.example, ,lab.example ,x.example", // list
		"PHIGATE_KEYS_MASTER_KEY=c2VjcmV0",                               // value containing '='-free base64
		"PHIGATE_SERVER_PUBLIC_URL=https://a.example/x?y=z",              // value containing '='
		"PHIGATE_STORE_URL=postgres://phigate@db.example/phigate",        // issue 11: the server database
	}
	c, err := Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Org.Name != "Lakeside Health" || c.SMTP.MaxRecipients != 7 || c.SMTP.MaxMessageBytes != 1<<20 ||
		c.Keys.PasswordThreads != 3 || c.Keys.PasswordMemoryKiB != 32768 || !c.Smarthost.ImplicitTLS ||
		c.Session.IdleTimeout.Duration != 20*time.Minute || c.Keys.MasterKey != "c2VjcmV0" || c.Server.PublicURL != "https://a.example/x?y=z" {
		t.Errorf("env not applied: %+v", c)
	}
	if c.Store.URL != "postgres://phigate@db.example/phigate" {
		t.Errorf("store.url %q", c.Store.URL)
	}
	if !reflect.DeepEqual(c.Org.Domains, []string{"lakeside.example", "lab.example", "x.example"}) {
		t.Errorf("domains %q", c.Org.Domains)
	}
	// Untouched settings keep their defaults.
	if c.SMTP.MaxLineLength != 1000 || c.Server.HTTPAddr != "127.0.0.1:8443" {
		t.Errorf("defaults lost")
	}
}

// Issue 10.4: the [notify] defaults and their environment names.
func TestNotifySettings(t *testing.T) {
	d := Default().Notify
	if d.DefaultChannels != "both" || d.RequireEmail || d.BatchWindow.Duration != 10*time.Minute {
		t.Errorf("defaults: %+v", d)
	}
	c, err := Load("", []string{"PHIGATE_NOTIFY_DEFAULT_CHANNELS=push", "PHIGATE_NOTIFY_REQUIRE_EMAIL=true", "PHIGATE_NOTIFY_BATCH_WINDOW=90s"})
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Notify; n.DefaultChannels != "push" || !n.RequireEmail || n.BatchWindow.Duration != 90*time.Second {
		t.Errorf("env not applied: %+v", n)
	}
}

func TestBackupSettings(t *testing.T) {
	d := Default()
	if b := d.Backup; b.Interval.Duration != 24*time.Hour || b.Keep != 7 || b.Dir != "" || b.RecipientKey != "" {
		t.Errorf("defaults: %+v", b)
	}
	d.Server.DataDir = "/var/lib/phigate"
	d.Fill()
	if d.Backup.Dir != filepath.Join("/var/lib/phigate", "backups") {
		t.Errorf("backup.dir filled as %q, want DATA/backups", d.Backup.Dir)
	}
	c, err := Load("", []string{"PHIGATE_BACKUP_INTERVAL=6h", "PHIGATE_BACKUP_KEEP=30", "PHIGATE_BACKUP_DIR=/mnt/b", "PHIGATE_BACKUP_RECIPIENT_KEY=/etc/b.asc"})
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Backup; b.Interval.Duration != 6*time.Hour || b.Keep != 30 || b.Dir != "/mnt/b" || b.RecipientKey != "/etc/b.asc" {
		t.Errorf("env not applied: %+v", b)
	}
	for _, tc := range []struct {
		interval time.Duration
		keep     int
		bad      bool
	}{{0, 1, false}, {time.Hour, 7, false}, {-time.Second, 7, true}, {time.Hour, 0, true}} {
		c := Default()
		c.Backup.Interval.Duration, c.Backup.Keep = tc.interval, tc.keep
		err := c.Validate()
		if got := err != nil && strings.Contains(err.Error(), "backup:"); got != tc.bad {
			t.Errorf("interval %s keep %d: error %v, want refused=%v", tc.interval, tc.keep, err, tc.bad)
		}
	}
}

// Issue 10.3: the push channel's allowlist, device bound and TTL.
func TestPushSettings(t *testing.T) {
	d := Default()
	want := []string{"fcm.googleapis.com", "updates.push.services.mozilla.com", "*.push.apple.com", "*.notify.windows.com"}
	if p := d.Push; strings.Join(p.AllowedHosts, " ") != strings.Join(want, " ") || p.MaxDevices != 10 || p.TTL.Duration != 24*time.Hour {
		t.Errorf("defaults: %+v", p)
	}
	d.Server.DataDir = "/var/lib/phigate"
	d.Fill()
	if d.Keys.VAPIDKeyFile != filepath.Join("/var/lib/phigate", "vapid-key.wrapped") {
		t.Errorf("keys.vapid_key_file filled as %q", d.Keys.VAPIDKeyFile)
	}
	c, err := Load("", []string{"PHIGATE_PUSH_ALLOWED_HOSTS=push.example.net, *.push.example.org", "PHIGATE_PUSH_MAX_DEVICES=3", "PHIGATE_PUSH_TTL=1h"})
	if err != nil {
		t.Fatal(err)
	}
	if p := c.Push; strings.Join(p.AllowedHosts, " ") != "push.example.net *.push.example.org" || p.MaxDevices != 3 || p.TTL.Duration != time.Hour {
		t.Errorf("env not applied: %+v", p)
	}
	for _, tc := range []struct {
		max int
		ttl time.Duration
		bad bool
	}{{1, 0, false}, {0, time.Hour, true}, {5, -time.Second, true}} {
		c := Default()
		c.Push.MaxDevices, c.Push.TTL.Duration = tc.max, tc.ttl
		err := c.Validate()
		if got := err != nil && strings.Contains(err.Error(), "push:"); got != tc.bad {
			t.Errorf("max %d ttl %s: error %v, want refused=%v", tc.max, tc.ttl, err, tc.bad)
		}
	}
}

func TestEnvBeatsFile(t *testing.T) {
	p := writeTOML(t, "[smtp]\nmax_recipients = 50\nmax_line_length = 2000\n[org]\nname = \"File Clinic\"\ndomains = [\"file.example\"]\n[session]\nidle_timeout = \"5m\"\n")
	c, err := Load(p, []string{"PHIGATE_SMTP_MAX_RECIPIENTS=9", "PHIGATE_ORG_DOMAINS=env.example", "PHIGATE_SESSION_IDLE_TIMEOUT=25m"})
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTP.MaxRecipients != 9 || !reflect.DeepEqual(c.Org.Domains, []string{"env.example"}) || c.Session.IdleTimeout.Duration != 25*time.Minute {
		t.Errorf("env did not win: %+v %+v %v", c.SMTP, c.Org, c.Session.IdleTimeout)
	}
	if c.SMTP.MaxLineLength != 2000 || c.Org.Name != "File Clinic" {
		t.Errorf("file settings lost: %+v %+v", c.SMTP, c.Org)
	}
}

func TestEnvErrors(t *testing.T) {
	cases := []struct {
		name, kv string
		want     []string
	}{
		{"unknown variable", "PHIGATE_SMTP_MAX_RCPTS=5", []string{"PHIGATE_SMTP_MAX_RCPTS", "no such setting"}},
		{"unknown section", "PHIGATE_NOPE_NAME=x", []string{"PHIGATE_NOPE_NAME"}},
		{"dev is not settable", "PHIGATE_DEV=true", []string{"PHIGATE_DEV"}},
		{"bad int", "PHIGATE_SMTP_MAX_RECIPIENTS=ten", []string{"PHIGATE_SMTP_MAX_RECIPIENTS"}},
		{"bad bool", "PHIGATE_SMARTHOST_IMPLICIT_TLS=perhaps", []string{"PHIGATE_SMARTHOST_IMPLICIT_TLS"}},
		{"bad duration", "PHIGATE_SESSION_IDLE_TIMEOUT=10", []string{"PHIGATE_SESSION_IDLE_TIMEOUT"}},
		{"uint overflow", "PHIGATE_KEYS_PASSWORD_THREADS=300", []string{"PHIGATE_KEYS_PASSWORD_THREADS"}},
		{"negative uint", "PHIGATE_KEYS_PASSWORD_TIME=-1", []string{"PHIGATE_KEYS_PASSWORD_TIME"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load("", []string{"PHIGATE_ORG_NAME=ok", c.kv})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	// Non-PHIGATE variables are none of our business.
	if _, err := Load("", []string{"PHIGATEWAY=1", "XPHIGATE_SMTP_X=1", "NOEQUALS"}); err != nil {
		t.Errorf("foreign variables: %v", err)
	}
}

func TestValidate(t *testing.T) {
	ok := func() Config { c := Default(); c.Fill(); return c }
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"idle 30m is the ceiling", func(c *Config) { c.Session.IdleTimeout.Duration = 30 * time.Minute }, ""},
		{"idle above 30m", func(c *Config) { c.Session.IdleTimeout.Duration = 30*time.Minute + time.Second }, "session.idle_timeout"},
		{"idle 1h", func(c *Config) { c.Session.IdleTimeout.Duration = time.Hour }, "session.idle_timeout"},
		{"idle zero", func(c *Config) { c.Session.IdleTimeout.Duration = 0 }, "session.idle_timeout"},
		{"idle negative", func(c *Config) { c.Session.IdleTimeout.Duration = -time.Minute }, "session.idle_timeout"},
		{"no data dir", func(c *Config) { c.Server.DataDir = "" }, "server.data_dir"},
		{"no domains", func(c *Config) { c.Org.Domains = nil }, "org.domains"},
		{"no recipients", func(c *Config) { c.SMTP.MaxRecipients = 0 }, "smtp.max_recipients"},
		{"tiny messages", func(c *Config) { c.SMTP.MaxMessageBytes = 100 }, "smtp.max_message_bytes"},
		{"other driver", func(c *Config) { c.Database.Driver = "mysql" }, "database.driver"},
		{"http public url", func(c *Config) { c.Server.PublicURL = "http://clinic.example" }, "server.public_url"},
		{"short line limit", func(c *Config) { c.SMTP.MaxLineLength = 999 }, "smtp.max_line_length"},
		{"unknown log format", func(c *Config) { c.Log.Format = "xml" }, "log.format"},
		{"unknown log level", func(c *Config) { c.Log.Level = "verbose" }, "log.level"},
		{"zero claim ttl", func(c *Config) { c.Portal.ClaimTTL.Duration = 0 }, "portal.claim_ttl"},
		{"zero argon2 threads", func(c *Config) { c.Keys.PasswordThreads = 0 }, "keys.password_threads"},
		{"no hash queue wait", func(c *Config) { c.Keys.PasswordQueueWait.Duration = 0 }, "keys.password_queue_wait"},
		{"no waiters per client", func(c *Config) { c.Keys.PasswordQueuePerClient = 0 }, "password_queue_per_client"},
		{"no waiters in all", func(c *Config) { c.Keys.PasswordQueueTotal = -1 }, "password_queue_total"},
		{"no http listener", func(c *Config) { c.Server.HTTPAddr = "" }, "server.http_addr"},
		{"unbounded bodies", func(c *Config) { c.Portal.MaxBodyBytes = 0 }, "portal.max_body_bytes"},
		{"unbounded reply", func(c *Config) { c.Portal.MaxReplyBodyBytes = -1 }, "max_reply_body_bytes"},
		{"no header timeout", func(c *Config) { c.Portal.ReadHeaderTimeout.Duration = 0 }, "portal.read_header_timeout"},
		{"no connection cap", func(c *Config) { c.Portal.MaxConns = 0 }, "portal.max_conns"},
		{"per-address cap off (behind a proxy)", func(c *Config) { c.Portal.MaxConnsPerIP = 0 }, ""},
		{"negative per-address cap", func(c *Config) { c.Portal.MaxConnsPerIP = -1 }, "portal.max_conns_per_ip"},
		{"no redis timeout", func(c *Config) { c.Redis.Timeout.Duration = 0 }, "redis.timeout"},
		{"no redis probe interval", func(c *Config) { c.Redis.ProbeInterval.Duration = -time.Second }, "redis.probe_interval"},
		{"postgres store", func(c *Config) { c.Store.URL = "postgres://phigate@db.example/phigate?sslmode=verify-full" }, ""},
		{"postgresql store", func(c *Config) { c.Store.URL = "postgresql://db.example/phigate" }, ""},
		{"other store", func(c *Config) { c.Store.URL = "mysql://u:hunter2@db.example/p" }, "store.url"},
		{"notify email only", func(c *Config) { c.Notify.DefaultChannels = "email" }, ""},
		{"notify sms", func(c *Config) { c.Notify.DefaultChannels = "sms" }, "notify.default_channels"},
		{"no batching", func(c *Config) { c.Notify.BatchWindow.Duration = 0 }, ""},
		{"negative batch window", func(c *Config) { c.Notify.BatchWindow.Duration = -time.Minute }, "notify.batch_window"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := ok()
			c.mutate(&cfg)
			err := cfg.Validate()
			if c.want == "" {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want one naming %s", err, c.want)
			}
		})
	}
	// A store URL may hold a password: never in the error.
	bad := ok()
	bad.Store.URL = "mysql://u:hunter2@db.example/p"
	if err := bad.Validate(); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("store.url error: %v", err)
	}
	// The file route: idle_timeout > 30m loads but does not validate.
	c, err := Load(writeTOML(t, "[session]\nidle_timeout = \"45m\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Fill()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "at most 30m") {
		t.Errorf("45m idle: %v", err)
	}
}

func TestValidateProduction(t *testing.T) {
	exists := func(string) bool { return true }
	// Defaults: everything unsafe is named, each on its own.
	c := Default()
	err := c.ValidateProduction(exists)
	if err == nil {
		t.Fatal("defaults pass production validation")
	}
	for _, name := range []string{"tls.cert_file", "smarthost.addr", "keys.escrow_public_key_file", "keys.master_key_file", "security.officer_email"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	if strings.Contains(err.Error(), "keys.escrow_private_key_file") {
		t.Errorf("escrow private key named though not set:\n%v", err)
	}

	good := func() Config {
		c := Default()
		c.TLS.CertFile, c.TLS.KeyFile = "/etc/phigate/cert.pem", "/etc/phigate/key.pem"
		c.Smarthost.Addr = "relay.clinic.example:587"
		c.Keys.EscrowPublicKeyFile = "/etc/phigate/escrow.asc"
		c.Keys.MasterKeyFile = "/etc/phigate/master.key"
		c.Security.OfficerEmail = "privacy.officer@clinic.example"
		return c
	}
	g := good()
	if err := g.ValidateProduction(exists); err != nil {
		t.Fatalf("safe config refused: %v", err)
	}
	g.Keys.MasterKeyFile, g.Keys.MasterKey = "", "base64key"
	if err := g.ValidateProduction(exists); err != nil {
		t.Errorf("master key from environment refused: %v", err)
	}

	cases := []struct {
		name   string
		mutate func(*Config)
		exists func(string) bool
		want   string
	}{
		{"no cert", func(c *Config) { c.TLS.CertFile = "" }, exists, "tls.cert_file"},
		{"no tls key", func(c *Config) { c.TLS.KeyFile = "" }, exists, "tls.cert_file"},
		{"cert missing on disk", func(*Config) {}, func(p string) bool { return p != "/etc/phigate/cert.pem" }, "/etc/phigate/cert.pem"},
		{"no smarthost", func(c *Config) { c.Smarthost.Addr = "" }, exists, "smarthost.addr"},
		{"escrow private key on gateway", func(c *Config) { c.Keys.EscrowPrivateKeyFile = "/etc/phigate/escrow-private.asc" }, exists, "keys.escrow_private_key_file"},
		{"no escrow public key", func(c *Config) { c.Keys.EscrowPublicKeyFile = "" }, exists, "keys.escrow_public_key_file"},
		{"no master key", func(c *Config) { c.Keys.MasterKeyFile = "" }, exists, "keys.master_key_file"},
		{"loopback public url", func(c *Config) { c.Fill() }, exists, "server.public_url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mutate(&c)
			err := c.ValidateProduction(tc.exists)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one naming %s", err, tc.want)
			}
		})
	}
	// Everything unsafe at once: each is named.
	bad := good()
	bad.TLS.CertFile, bad.Smarthost.Addr, bad.Keys.EscrowPrivateKeyFile, bad.Keys.EscrowPublicKeyFile, bad.Keys.MasterKeyFile =
		"", "", "/x", "", ""
	err = bad.ValidateProduction(exists)
	for _, name := range []string{"tls.cert_file", "smarthost.addr", "keys.escrow_private_key_file", "keys.escrow_public_key_file", "keys.master_key_file"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestFill(t *testing.T) {
	cases := []struct {
		httpAddr, hostname, publicURL, want string
	}{
		{"127.0.0.1:8443", "localhost", "", "https://127.0.0.1:8443"},
		{"0.0.0.0:8443", "mail.clinic.example", "", "https://mail.clinic.example:8443"},
		{"[::]:8443", "mail.clinic.example", "", "https://mail.clinic.example:8443"},
		{":8443", "mail.clinic.example", "", "https://mail.clinic.example:8443"},
		{"0.0.0.0:443", "mail.clinic.example", "", "https://mail.clinic.example"},
		{"portal.clinic.example:443", "x", "", "https://portal.clinic.example"},
		{"[::1]:8443", "x", "", "https://[::1]:8443"},
		{"0.0.0.0:443", "x", "https://portal.clinic.example/", "https://portal.clinic.example"},
		{"0.0.0.0:443", "x", "https://portal.clinic.example/secure//", "https://portal.clinic.example/secure"},
	}
	for _, tc := range cases {
		c := Default()
		c.Server.HTTPAddr, c.Server.Hostname, c.Server.PublicURL = tc.httpAddr, tc.hostname, tc.publicURL
		c.Fill()
		if c.Server.PublicURL != tc.want {
			t.Errorf("http_addr %q hostname %q public_url %q: got %q, want %q", tc.httpAddr, tc.hostname, tc.publicURL, c.Server.PublicURL, tc.want)
		}
	}
	c := Default()
	c.Server.DataDir = "/srv/pg"
	c.Org.Domains = []string{"  Clinic.EXAMPLE "}
	c.Fill()
	if c.Database.DSN != filepath.Join("/srv/pg", "phigate.db") || c.Keys.GatewayKeyFile != filepath.Join("/srv/pg", "gateway-key.wrapped") {
		t.Errorf("derived paths: dsn %q gateway %q", c.Database.DSN, c.Keys.GatewayKeyFile)
	}
	if c.Org.Domains[0] != "clinic.example" {
		t.Errorf("domain %q", c.Org.Domains[0])
	}
	// An explicit DSN is kept.
	c = Default()
	c.Database.DSN = "/elsewhere/db.sqlite"
	c.Fill()
	if c.Database.DSN != "/elsewhere/db.sqlite" {
		t.Errorf("dsn %q", c.Database.DSN)
	}
}

func TestApplyDev(t *testing.T) {
	c := Default()
	c.Server.DataDir = "/tmp/pgdev"
	c.ApplyDev()
	if !c.Dev || c.Keys.MasterKeyFile != "/tmp/pgdev/master.key" || c.Keys.EscrowPublicKeyFile != "/tmp/pgdev/escrow-public.asc" ||
		c.TLS.CertFile != "/tmp/pgdev/tls-cert.pem" || c.TLS.KeyFile != "/tmp/pgdev/tls-key.pem" || c.Log.Format != "text" {
		t.Errorf("dev config %+v", c)
	}
	// Dev never places the escrow private key path in the config.
	if c.Keys.EscrowPrivateKeyFile != "" {
		t.Errorf("escrow private key file set in dev: %q", c.Keys.EscrowPrivateKeyFile)
	}
	// Explicit settings survive dev mode.
	c = Default()
	c.TLS.CertFile, c.TLS.KeyFile, c.Keys.MasterKeyFile = "/a/c.pem", "/a/k.pem", "/a/m.key"
	c.ApplyDev()
	if c.TLS.CertFile != "/a/c.pem" || c.TLS.KeyFile != "/a/k.pem" || c.Keys.MasterKeyFile != "/a/m.key" {
		t.Errorf("dev overrode explicit settings: %+v %+v", c.TLS, c.Keys)
	}
}

func TestDurationText(t *testing.T) {
	var d Duration
	if err := d.UnmarshalText([]byte("1h30m")); err != nil || d.Duration != 90*time.Minute {
		t.Errorf("%v %v", d, err)
	}
	b, err := d.MarshalText()
	if err != nil || string(b) != "1h30m0s" {
		t.Errorf("%q %v", b, err)
	}
	if err := d.UnmarshalText([]byte("soon")); err == nil {
		t.Error("bad duration accepted")
	}
}
