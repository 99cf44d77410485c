package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/backup"
	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/store"
)

// BackupFiles maps the names of the files a backup holds (besides the
// database) to their paths under cfg: the key files as stored (wrapped
// under the master key), the escrow public key and the audit checkpoints.
// The master key is never among them.
func BackupFiles(cfg config.Config) (state, ifAbsent map[string]string) {
	state = map[string]string{
		"gateway-key.wrapped":     cfg.Keys.GatewayKeyFile,
		"vapid-key.wrapped":       cfg.Keys.VAPIDKeyFile,
		"dkim-key.wrapped":        cfg.Keys.DKIMKeyFile,
		"audit-checkpoints.jsonl": DataPath(cfg, "audit-checkpoints.jsonl"),
	}
	return state, map[string]string{"escrow-public.asc": cfg.Keys.EscrowPublicKeyFile}
}

// ConfigDigest is the SHA-256 of the effective configuration (the inline
// master key left out), so a restore can tell whether it runs with the
// configuration the backup was taken under.
func ConfigDigest(cfg config.Config) string {
	cfg.Keys.MasterKey = ""
	b, _ := json.Marshal(cfg)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// backupRecipient is backup.recipient_key when set, else the escrow key.
func (g *Gateway) backupRecipient() (*pcrypto.Key, error) {
	if g.Cfg.Backup.RecipientKey == "" {
		return g.Keys.Escrow, nil
	}
	b, err := os.ReadFile(g.Cfg.Backup.RecipientKey)
	if err != nil {
		return nil, fmt.Errorf("backup.recipient_key: %w", err)
	}
	if pcrypto.ContainsPrivateKey(b) {
		return nil, errors.New("backup.recipient_key holds a private key: give the gateway only the public half")
	}
	k, err := pcrypto.ReadKey(b)
	if err != nil {
		return nil, fmt.Errorf("backup.recipient_key: %w", err)
	}
	return k.Public(), nil
}

// BackupOnce writes one backup into dir, or into backup.dir when dir is
// empty (and then removes the oldest there beyond backup.keep; another
// folder, such as an archive, is never pruned), and records backup.create.
func (g *Gateway) BackupOnce(ctx context.Context, dir string) (backup.Info, error) {
	prune := dir == ""
	if prune {
		dir = g.Cfg.Backup.Dir
	}
	info, err := g.backupTo(ctx, dir)
	details := map[string]string{}
	outcome := "ok"
	if err != nil {
		outcome, details["reason"] = "failed", "backup not written" // the error goes to the log, not the trail
	} else {
		details["size"] = fmt.Sprint(info.Size)
		details["recipient"] = info.RecipientFPR
	}
	rec := audit.Recorder(g.Trail)
	if g.Audit != nil {
		rec = g.Audit
	}
	if aerr := rec.Record(ctx, audit.Entry{Actor: actorOf(ctx), Action: "backup.create", ObjectType: "backup",
		ObjectID: info.ID, Outcome: outcome, Details: details}); aerr != nil && err == nil {
		// No backup without its entry: the file goes.
		os.Remove(info.Path)
		err = fmt.Errorf("backup not kept: its audit entry was not written: %w", aerr)
	}
	if err != nil || !prune {
		return info, err
	}
	if removed, perr := backup.Prune(dir, g.Cfg.Backup.Keep); perr != nil {
		g.Log.ErrorContext(ctx, "backup: removing old backups", "err", perr)
	} else if len(removed) > 0 {
		g.Log.InfoContext(ctx, "backup: removed old backups", "count", len(removed))
	}
	return info, nil
}

func (g *Gateway) backupTo(ctx context.Context, dir string) (backup.Info, error) {
	to, err := g.backupRecipient()
	if err != nil {
		return backup.Info{}, err
	}
	files, conf := BackupFiles(g.Cfg)
	for k, v := range conf {
		files[k] = v
	}
	src := backup.Source{Files: files, ConfigDigest: ConfigDigest(g.Cfg), Signer: g.Keys.Gateway, Recipient: to}
	if store.IsPostgresURL(g.Cfg.Store.URL) {
		src.Dump = func(ctx context.Context, w io.Writer) error { _, err := g.Store.Dump(ctx, w); return err }
	} else {
		src.DB = g.Store.DB()
	}
	return backup.Create(ctx, dir, src)
}

type actorKey struct{}

// WithActor names who asked for a backup (the CLI's user); the periodic
// job is "system".
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

func actorOf(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok {
		return a
	}
	return "system"
}

// backupPeriodic takes a backup every backup.interval while serving.
func (g *Gateway) backupPeriodic(ctx context.Context) {
	every(ctx, g.Cfg.Backup.Interval.Duration, false, func(ctx context.Context, _ time.Time) {
		info, err := g.BackupOnce(ctx, "")
		if err != nil {
			if ctx.Err() == nil {
				g.Log.ErrorContext(ctx, "backup failed", "err", err)
			}
			return
		}
		g.Log.InfoContext(ctx, "backup written", "file", info.Path, "bytes", info.Size)
	})
}

// startBackups runs the periodic backup (backup.interval; 0: off).
func (g *Gateway) startBackups(ctx context.Context) {
	if g.Cfg.Backup.Interval.Duration > 0 {
		g.goRun(func() { g.backupPeriodic(ctx) })
	}
}

// RestoreTargets says where a restore into cfg puts each part: the SQLite
// file, or the PostgreSQL store at store.url (opened here, migrated, and
// closed by the returned func), and the key and checkpoint files.
func RestoreTargets(ctx context.Context, cfg config.Config) (backup.Targets, func(), error) {
	state, ifAbsent := BackupFiles(cfg)
	t := backup.Targets{Files: state, IfAbsent: ifAbsent, Temp: cfg.Server.DataDir}
	if !store.IsPostgresURL(cfg.Store.URL) {
		t.DB = cfg.Database.DSN
		return t, func() {}, nil
	}
	st, err := store.OpenPostgres(ctx, cfg.Store.URL)
	if err != nil {
		return t, nil, err
	}
	t.Load = func(r io.Reader) error { _, err := st.Load(ctx, r); return err }
	t.Empty = func() (bool, error) { return st.Empty(ctx) }
	var once sync.Once
	return t, func() { once.Do(func() { st.Close() }) }, nil
}

// AuditRestore opens the gateway restored at cfg: the master key must
// open the restored gateway key, which must be the key that signed the
// backup; the audit chain must verify; then backup.restore (by actor) goes
// into the restored trail. It returns the number of entries verified.
func AuditRestore(ctx context.Context, cfg config.Config, r backup.Restored, actor string, log *slog.Logger) (int64, error) {
	g, err := Open(ctx, cfg, log)
	if err != nil {
		return 0, err
	}
	defer g.Store.Close()
	defer g.Trail.Close()
	if fp := g.Keys.Gateway.Fingerprint(); fp != r.GatewayFingerprint {
		return 0, fmt.Errorf("the restored gateway key is %s, the backup was signed by %s", fp, r.GatewayFingerprint)
	}
	n, err := g.Trail.Verify(ctx)
	if err != nil {
		return n, fmt.Errorf("audit verify: %w", err)
	}
	err = g.Trail.Record(ctx, audit.Entry{Actor: actor, Action: "backup.restore", ObjectType: "backup", ObjectID: r.ID,
		Outcome: "ok", Details: map[string]string{"taken": r.Created.Format(time.RFC3339), "entries_verified": fmt.Sprint(n)}})
	return n, err
}
