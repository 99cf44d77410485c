// Package gateway wires phigate's parts together from a Config: keys, store,
// identity, intake, SMTP listeners, notification dispatcher and portal. The
// serve command and the end-to-end tests both start the gateway through it.
package gateway

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/phigate/phigate/alert"
	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/events"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/internal/redisconn"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/limiter"
	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/metrics"
	"github.com/phigate/phigate/notify"
	"github.com/phigate/phigate/outbound"
	"github.com/phigate/phigate/password"
	"github.com/phigate/phigate/policy"
	"github.com/phigate/phigate/portal"
	"github.com/phigate/phigate/session"
	"github.com/phigate/phigate/smtpd"
	"github.com/phigate/phigate/store"
	"github.com/redis/go-redis/v9"
)

type Gateway struct {
	Cfg            config.Config
	Log            *slog.Logger
	Keys           *keys.Ring
	Store          *store.SQL
	Identity       *identity.Service
	Intake         *intake.Intake
	Dispatcher     *notify.Dispatcher
	Push           *notify.Pusher // the Web Push channel (push.go)
	PushClient     *http.Client   // posts to push services; nil: the default (tests set a stand-in's)
	Sessions       *session.Manager
	Limiter        *limiter.Limiter
	Bus            events.Bus
	Redis          *redis.Client    // nil without redis.url
	RedisGuard     *redisconn.Guard // nil without redis.url
	Portal         *portal.Server
	Metrics        *metrics.M
	Trail          *audit.Trail
	Alerts         *alert.Alerter
	Audit          audit.Recorder
	Refusals       *audit.Coalescer // repeated sign-in refusals once per window (issue 8.3); flushed on Close
	metricsLn      net.Listener
	Policy         *policy.Engine
	PolicyVersions *policy.Versions
	TLS            *tls.Config

	smtp, smtps, http net.Listener
	httpSrv           *http.Server
	smtpSrv           *smtpd.Server
	smtpServers       []*smtp.Server
	drain             *smtpDrain
	health            *readiness    // /healthz and /readyz (health.go)
	dispatched        chan struct{} // closed when the dispatcher has stopped
	cancel            context.CancelFunc
	wg                sync.WaitGroup
	closeOnce         sync.Once
}

// DataPath returns a path inside the data folder.
func DataPath(cfg config.Config, parts ...string) string {
	return filepath.Join(append([]string{cfg.Server.DataDir}, parts...)...)
}

// OpenLogger returns the logger for cfg: stderr, plus in dev mode (or when
// log.file is set) a file, so an operator can look back at a dev session.
func OpenLogger(cfg config.Config, stderr io.Writer) (*slog.Logger, io.Closer, error) {
	path := cfg.Log.File
	if path == "" && cfg.Dev {
		path = DataPath(cfg, "logs", "phigate.log")
	}
	if path == "" {
		return logx.New(stderr, cfg.Log.Format, cfg.Log.Level), io.NopCloser(nil), nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("log.file: %w", err)
	}
	return logx.New(io.MultiWriter(stderr, f), cfg.Log.Format, cfg.Log.Level), f, nil
}

// Open loads keys and state for cfg (already filled and validated). It
// starts nothing: Start does.
func Open(ctx context.Context, cfg config.Config, log *slog.Logger) (*Gateway, error) {
	if err := os.MkdirAll(cfg.Server.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server.data_dir: %w", err)
	}
	ring, err := keys.Load(cfg, log)
	if err != nil {
		return nil, err
	}
	logx.SetPseudonymKey(ring.PseudonymKey())
	// store.url (PostgreSQL) when set, else the embedded SQLite file.
	st, err := store.Open(ctx, cfg.Store.URL, cfg.Database.DSN)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	// Issue 14.3: the database says which master key is active and keeps
	// earlier epochs' and signing keys' parts (keys/epoch.go).
	if err := ring.Bind(ctx, st); err != nil {
		st.Close()
		return nil, err
	}
	logx.SetPseudonymKey(ring.PseudonymKey())
	pcrypto.SetHashQueue(pcrypto.HashQueueConfig{Slots: cfg.Keys.MaxConcurrentPassword, Wait: cfg.Keys.PasswordQueueWait.Duration,
		PerClient: cfg.Keys.PasswordQueuePerClient, Total: cfg.Keys.PasswordQueueTotal})
	g := &Gateway{Cfg: cfg, Log: log, Keys: ring, Store: st}
	if err := g.openTrail(); err != nil {
		st.Close()
		return nil, err
	}
	g.Identity = &identity.Service{Store: st, Keys: ring, Password: pcrypto.PasswordParams{
		Time: cfg.Keys.PasswordTime, MemoryKiB: cfg.Keys.PasswordMemoryKiB, Threads: cfg.Keys.PasswordThreads},
		Policy: password.DefaultPolicy(), OrgName: cfg.Org.Name, PublicURL: cfg.Server.PublicURL,
		ResetTTL: cfg.Security.ResetTTL.Duration, CheckKey: checkKey}
	return g, nil
}

func (g *Gateway) sender() (outbound.Sender, error) {
	if g.Cfg.Smarthost.Addr != "" {
		return outbound.NewSmarthost(g.Cfg.Smarthost, g.Cfg.Server.Hostname)
	}
	if !g.Cfg.Dev {
		return nil, errors.New("smarthost.addr is required outside --dev")
	}
	return &outbound.Maildrop{Dir: DataPath(g.Cfg, "maildrop")}, nil
}

// Start opens the listeners and runs every service until Close.
func (g *Gateway) Start(ctx context.Context) error {
	cfg := g.Cfg
	tlsCfg, err := keys.LoadTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.Server.Hostname, cfg.Dev, g.Log)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	g.TLS = tlsCfg
	snd, err := g.sender()
	if err != nil {
		return err
	}
	// The gateway runs until Close, not until ctx ends: a stop signal ends
	// the caller's ctx, and Close then lets work under way finish.
	ctx, g.cancel = context.WithCancel(context.WithoutCancel(ctx))
	g.Metrics = metrics.New()
	g.Alerts = alert.New(alert.Config{IPFailures: cfg.Alerts.IPFailures, OpensPerUser: cfg.Alerts.OpensPerUser,
		Window: cfg.Alerts.Window.Duration, MaxPerWindow: cfg.Alerts.MaxPerWindow}, alertMailer{g}, nil)
	g.Audit = fanout{trail: g.Trail, alerts: g.Alerts, metrics: g.Metrics}
	g.Identity.Audit = g.Audit // account.claim commits with the claim
	g.Dispatcher = &notify.Dispatcher{Store: g.Store, Keys: g.Keys, Sender: snd, Org: cfg.Org,
		Hostname: cfg.Server.Hostname, Log: g.Log, Metrics: g.Metrics, Audit: g.Audit,
		MaxRelayAge: cfg.Smarthost.MaxRetry.Duration, Workers: cfg.Smarthost.Connections,
		Probe: cfg.Smarthost.ProbeInterval.Duration}
	if cfg.Redis.URL != "" {
		// Redis means several nodes share the database.
		g.Dispatcher.Lease = 5 * time.Minute
	}
	if err := g.noticeMail(); err != nil {
		return fmt.Errorf("notices: %w", err)
	}
	if g.Push, err = g.pusher(); err != nil {
		return fmt.Errorf("push: %w", err)
	}
	g.Dispatcher.Push = g.Push
	if err := g.loadPolicy(ctx); err != nil {
		return fmt.Errorf("policy: %w", err)
	}
	g.Intake = &intake.Intake{Store: g.Store, Keys: g.Keys, Identity: g.Identity, Policy: g.Policy,
		RecipientKeys: g.recipientKeys(), Detector: g.detector(), PGP: g.pgpBuilder(), Audit: g.Audit,
		Notifier: g.Dispatcher, Log: g.Log, Opts: intake.Options{Expiry: cfg.Portal.MessageExpiry.Duration,
			ClaimTTL: cfg.Portal.ClaimTTL.Duration, PublicURL: cfg.Server.PublicURL,
			NotifyFrom: cfg.Org.NotifyFrom, Hostname: cfg.Server.Hostname, Zone: cfg.Org.Location()}}
	if err := g.shared(ctx); err != nil {
		return err
	}
	g.Intake.Events = g.Bus // live portal events (issue 10.1)
	g.Intake.Push = g.Push
	g.Intake.Prefs = &notify.Prefs{Store: g.Store, Default: cfg.Notify.DefaultChannels,
		RequireEmail: cfg.Notify.RequireEmail, Window: cfg.Notify.BatchWindow.Duration}
	if err := g.senderLimits(ctx); err != nil {
		return err
	}
	g.smtpSrv = &smtpd.Server{Intake: g.Intake, Identity: g.Identity, Log: g.Log, Metrics: g.Metrics, Audit: g.Audit, Opts: smtpd.Options{
		Hostname: cfg.Server.Hostname, MaxMessageBytes: cfg.SMTP.MaxMessageBytes, MaxRecipients: cfg.SMTP.MaxRecipients,
		MaxLineLength: cfg.SMTP.MaxLineLength, ReadTimeout: cfg.SMTP.ReadTimeout.Duration,
		WriteTimeout: cfg.SMTP.WriteTimeout.Duration, TLS: tlsCfg, Limits: g.smtpLimits(), Auth: smtpd.AuthLimits{
			FailureDelay: cfg.SMTP.AuthFailureDelay.Duration, MaxPerConn: cfg.SMTP.AuthMaxFailures,
			MaxPerIP: cfg.Security.IPMaxFailures, Window: cfg.Security.IPWindow.Duration}}}
	ps := &portal.Server{Store: g.Store, Identity: g.Identity, Sessions: g.Sessions, Limiter: g.Limiter, Bus: g.Bus,
		Gateway: g.Keys.Verifier(), Org: cfg.Org, Log: g.Log, PublicURL: cfg.Server.PublicURL,
		RequirePatient2FA: cfg.Security.RequirePatient2FA, OfficerEmail: cfg.Security.OfficerEmail,
		PolicyVersions: g.PolicyVersions, Intake: g.Intake, Metrics: g.Metrics, Audit: g.Audit, Trail: g.Trail, Alerts: g.Alerts,
		Push: g.Push, Compliance: g.ComplianceReport}
	g.Refusals = audit.NewCoalescer(g.Audit, audit.CoalescerOptions{OnError: func(err error) { g.Log.Error("audit summary", "err", err) }})
	ps.Refusals = g.Refusals

	if err := g.listen(); err != nil {
		return err
	}
	if strings.HasSuffix(g.Cfg.Server.PublicURL, ":0") {
		// Port 0 (tests): links must name the port actually bound.
		_, port, _ := net.SplitHostPort(g.http.Addr().String())
		g.Cfg.Server.PublicURL = strings.TrimSuffix(g.Cfg.Server.PublicURL, "0") + port
		g.Intake.Opts.PublicURL = g.Cfg.Server.PublicURL
		g.Identity.PublicURL = g.Cfg.Server.PublicURL
		ps.PublicURL = g.Cfg.Server.PublicURL
		g.Push.PublicURL = g.Cfg.Server.PublicURL
	}
	g.Portal = ps
	ps.Limits = portal.Limits{Body: cfg.Portal.MaxBodyBytes, Reply: cfg.Portal.MaxReplyBodyBytes, Upload: cfg.Portal.MaxUploadBytes}
	g.health = g.newReadiness(ctx)
	g.httpSrv = g.httpsServer(g.withHealth(ps.Handler()), tlsCfg)

	if err := g.serveMetrics(ctx); err != nil {
		g.closeListeners()
		return err
	}
	g.dispatched = make(chan struct{})
	g.goRun(func() { defer close(g.dispatched); g.Dispatcher.Run(ctx) })
	g.goRun(func() { g.Alerts.Run(ctx) })
	g.goRun(func() { g.smtpSrv.Run(ctx) })
	g.watchRedis(ctx, ps)
	g.goRun(func() { g.purge(ctx) })
	g.goRun(func() { g.verifyDaily(ctx) })
	g.startBackups(ctx)
	if mem, ok := g.Sessions.Store.(*session.Memory); ok {
		g.goRun(func() { g.sweep(ctx, mem) })
	}
	g.drain = newSMTPDrain(cfg.Server.Hostname)
	for _, l := range []struct {
		name     string
		ln       net.Listener
		implicit bool
	}{{"smtp", g.smtp, false}, {"smtps", g.smtps, true}} {
		if l.ln == nil {
			continue
		}
		srv := g.smtpSrv.NewSMTPServer()
		srv.Backend = g.drain.backend(srv.Backend)
		g.smtpServers = append(g.smtpServers, srv)
		g.goRun(func() {
			logServe(l.name, g.Log, srv.Serve(g.smtpSrv.WrapListener(g.drain.listener(l.ln), l.implicit)))
		})
	}
	g.goRun(func() { logServe("https", g.Log, g.httpSrv.ServeTLS(g.capHTTPS(g.http), "", "")) })
	return nil
}

// listen binds the configured addresses; an empty SMTP address disables
// that listener (never "listen anywhere").
func (g *Gateway) listen() error {
	cfg := g.Cfg.Server
	var err error
	for _, l := range []struct {
		addr, setting string
		dst           *net.Listener
	}{{cfg.SMTPAddr, "server.smtp_addr", &g.smtp}, {cfg.SMTPSAddr, "server.smtps_addr", &g.smtps}, {cfg.HTTPAddr, "server.http_addr", &g.http}} {
		if l.addr == "" {
			continue
		}
		if *l.dst, err = net.Listen("tcp", l.addr); err != nil {
			g.closeListeners()
			return fmt.Errorf("%s: %w", l.setting, err)
		}
	}
	return nil
}

func (g *Gateway) closeListeners() {
	for _, l := range []net.Listener{g.smtp, g.smtps, g.http} {
		if l != nil {
			l.Close()
		}
	}
}

func (g *Gateway) goRun(f func()) {
	g.wg.Add(1)
	go func() { defer g.wg.Done(); f() }()
}

func logServe(name string, log *slog.Logger, err error) {
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
		log.Error("listener stopped", "listener", name, "err", err)
	}
}

// sweep ends idle in-process sessions on time, so their wrapped keys don't
// linger, and announces each end like any other.
func (g *Gateway) sweep(ctx context.Context, m *session.Memory) {
	idle := g.Sessions.Idle
	every(ctx, min(idle/2, time.Minute), false, func(ctx context.Context, now time.Time) {
		for _, r := range m.SweepEnded(now, idle) {
			g.Sessions.Announce(ctx, r.UserID, r.ID, session.ReasonIdle)
		}
	})
}

// every calls f each period until ctx ends, and once at the start when
// atStart is set. Each call gets its own correlation id for its log lines.
func every(ctx context.Context, period time.Duration, atStart bool, f func(ctx context.Context, now time.Time)) {
	t := time.NewTicker(period)
	defer t.Stop()
	if atStart {
		f(logx.WithCorrelation(ctx, logx.NewCorrelationID()), time.Now())
	}
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			f(logx.WithCorrelation(ctx, logx.NewCorrelationID()), now)
		}
	}
}

// shared sets up what nodes share: sessions, lock-out counters and live
// events, in Redis when redis.url is set, in this process otherwise.
func (g *Gateway) shared(ctx context.Context) error {
	cfg := g.Cfg
	lc := limiter.Config{MaxFailures: cfg.Security.LockoutFailures, Lockout: cfg.Security.LockoutDuration.Duration,
		IPMaxFailures: cfg.Security.IPMaxFailures, IPWindow: cfg.Security.IPWindow.Duration}
	var store session.Store
	if cfg.Redis.URL == "" {
		store, g.Bus, g.Limiter = session.NewMemory(), events.NewMemory(), limiter.NewMemory(lc, nil)
	} else {
		opt, err := redis.ParseURL(cfg.Redis.URL)
		if err != nil {
			return fmt.Errorf("redis.url: %w", err)
		}
		if err := redisFiles(opt, cfg.Redis); err != nil {
			return err
		}
		g.openRedis(opt)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := g.Redis.Ping(pctx).Err(); err != nil {
			return fmt.Errorf("redis.url: %w", err)
		}
		p := cfg.Redis.Prefix
		store = session.NewRedis(g.Redis, p+"sess:")
		g.Bus = events.NewRedis(g.Redis, p+"events")
		g.Limiter = limiter.NewRedis(g.Redis, p+"lim:", lc)
	}
	g.Sessions = &session.Manager{Store: store, Idle: cfg.Session.IdleTimeout.Duration,
		Absolute: cfg.Session.AbsoluteLifetime.Duration, Bus: g.Bus, MACKey: g.Keys.SessionMACKey(),
		OnEnd: func(ctx context.Context, userID, id, reason string) {
			g.Log.InfoContext(ctx, "logoff", "reason", reason, "user", userID, "session", id[:min(8, len(id))])
			if g.Audit != nil {
				g.Audit.Record(ctx, audit.Entry{Actor: userID, Action: "auth.logoff", ObjectType: "session",
					ObjectID: id[:min(8, len(id))], Outcome: "ok", Details: map[string]string{"reason": reason}})
			}
		},
		// Someone who can write to the session store changed a record
		// (session.Record.Seal); the user id it claims is not trusted.
		OnTamper: func(ctx context.Context, id, claimedUserID string) {
			g.Log.WarnContext(ctx, "session record tampered with: refused", "session", id[:min(8, len(id))],
				"claimed_user", claimedUserID)
			if g.Audit != nil {
				g.Audit.Record(ctx, audit.Entry{Actor: "system", Action: "session.tampered", ObjectType: "session",
					ObjectID: id[:min(8, len(id))], Outcome: "failed", Details: map[string]string{"claimed_user": claimedUserID}})
			}
		}}
	return nil
}

// verifyDaily walks the audit chain once a day (HIPAA 164.308(a)(1):
// regular review); a broken chain is audited, which alerts the security
// officer.
func (g *Gateway) verifyDaily(ctx context.Context) {
	every(ctx, 24*time.Hour, false, func(ctx context.Context, _ time.Time) {
		n, err := g.Trail.Verify(ctx)
		var be *audit.BrokenError
		outcome, objID, details := "ok", "", map[string]string{"checked": fmt.Sprint(n)}
		switch {
		case errors.As(err, &be):
			outcome, objID, details["reason"] = "failed", fmt.Sprint(be.Seq), be.Reason
			g.Log.ErrorContext(ctx, "audit chain broken", "first", be.Seq, "reason", be.Reason)
		case err != nil:
			g.Log.ErrorContext(ctx, "audit verify", "err", err)
			return
		}
		g.Audit.Record(ctx, audit.Entry{Actor: "system", Action: "audit.verify", ObjectType: "audit", ObjectID: objID,
			Outcome: outcome, Details: details})
	})
}

// purge disposes of what is past its retention every
// retention.purge_interval (and at start): see retention.go. Message rows
// stay, without ciphertext, for status and history.
func (g *Gateway) purge(ctx context.Context) {
	every(ctx, g.purgeInterval(), true, func(ctx context.Context, now time.Time) {
		if n, err := g.PurgeOnce(ctx, now); err != nil && ctx.Err() == nil {
			g.Log.ErrorContext(ctx, "purge", "err", err)
		} else if n > 0 {
			g.Log.InfoContext(ctx, "purged message ciphertext", "messages", n)
		}
	})
}

// serveMetrics starts the Prometheus listener (metrics.addr; "" disables)
// and the gauges that are read from state.
func (g *Gateway) serveMetrics(ctx context.Context) error {
	g.Metrics.SessionsFunc(func() int {
		n, _ := g.Sessions.Store.Count(context.Background())
		return n
	})
	g.goRun(func() {
		every(ctx, 15*time.Second, true, func(ctx context.Context, now time.Time) {
			if n, oldest, err := g.Store.OutboxStats(ctx, now); err == nil {
				age := time.Duration(0)
				if !oldest.IsZero() {
					age = now.Sub(oldest)
				}
				g.Metrics.SetQueue(n, age)
			}
		})
	})
	if g.Cfg.Metrics.Addr == "" {
		return nil
	}
	ln, err := metrics.Serve(ctx, g.Cfg.Metrics.Addr, g.Cfg.Metrics.AllowRemote, g.Metrics, metrics.WithPprof(g.Cfg.Metrics.Pprof))
	if err != nil {
		return fmt.Errorf("metrics.addr: %w", err)
	}
	g.metricsLn = ln
	return nil
}

// MetricsAddr is the bound metrics address ("" when disabled).
func (g *Gateway) MetricsAddr() string {
	if g.metricsLn == nil {
		return ""
	}
	return g.metricsLn.Addr().String()
}

// Addrs returns the bound listener addresses (useful with port 0); a
// disabled listener is "".
func (g *Gateway) Addrs() (smtp, smtps, https string) {
	addr := func(l net.Listener) string {
		if l == nil {
			return ""
		}
		return l.Addr().String()
	}
	return addr(g.smtp), addr(g.smtps), addr(g.http)
}

// Close stops the gateway gracefully (issue 9.1): it stops accepting,
// lets SMTP transactions in DATA finish and get their reply (other
// sessions get 421), lets notice sends under way finish and HTTPS requests
// complete, all within server.shutdown_grace; what is still running then is
// cut (notices are handed back). Then it closes the store. Only the first
// call does anything.
func (g *Gateway) Close() error {
	var err error
	g.closeOnce.Do(func() { err = g.close() })
	return err
}

func (g *Gateway) close() error {
	g.drainFirst()
	start := time.Now()
	grace, cancel := context.WithTimeout(context.Background(), cmp.Or(g.Cfg.Server.ShutdownGrace.Duration, 30*time.Second))
	defer cancel()
	var wg sync.WaitGroup
	// No new SMTP connections from here on (Shutdown closes them too, but
	// in its own goroutine).
	for _, l := range []net.Listener{g.smtp, g.smtps} {
		if l != nil {
			l.Close()
		}
	}
	for _, s := range g.smtpServers {
		wg.Add(1)
		// Shutdown waits for every session to end.
		go func() { defer wg.Done(); s.Shutdown(grace) }()
	}
	if g.drain != nil {
		g.drain.begin()
	}
	if g.dispatched != nil {
		g.Dispatcher.Stop()
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-g.dispatched:
			case <-grace.Done():
			}
		}()
	}
	if g.httpSrv != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if g.httpSrv.Shutdown(grace) != nil {
				g.httpSrv.Close()
			}
		}()
	}
	wg.Wait()
	cut := 0
	if g.drain != nil && grace.Err() != nil {
		// The grace period is over. A DATA body already read gets a few
		// seconds to commit, so the store is not closed under it.
		commit, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cut = g.drain.cutAll(commit)
		cancel()
	}
	if g.cancel != nil {
		// Ends the periodic jobs, and cuts notice sends still under way
		// (the dispatcher hands them back).
		g.cancel()
	}
	g.wg.Wait()
	g.Log.Info("stopped", "took", time.Since(start).Round(time.Millisecond), "smtp_connections_cut", cut)
	if g.Redis != nil {
		g.Redis.Close()
	}
	if g.Refusals != nil {
		g.Refusals.Flush(context.Background()) // the open windows' counts, before the trail closes
	}
	// The trail's closing checkpoint reads the head: before the store.
	if g.Trail != nil {
		g.Trail.Close()
	}
	return g.Store.Close()
}
