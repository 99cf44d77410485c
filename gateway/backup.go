package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/backup"
	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/store"
)

// ErrPostgresBackup: backups cover the embedded SQLite store only (issue
// 14.1); a PostgreSQL store is backed up with the server's own tools.
var ErrPostgresBackup = errors.New("backup of a PostgreSQL store is not supported yet: use pg_dump")

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

// BackupOnce writes one backup into dir (backup.dir when empty), removes
// the oldest beyond backup.keep, and records backup.create.
func (g *Gateway) BackupOnce(ctx context.Context, dir string) (backup.Info, error) {
	if dir == "" {
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
		err = fmt.Errorf("backup written but its audit entry was not: %w", aerr)
	}
	if err != nil {
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
	if store.IsPostgresURL(g.Cfg.Store.URL) {
		return backup.Info{}, ErrPostgresBackup
	}
	to, err := g.backupRecipient()
	if err != nil {
		return backup.Info{}, err
	}
	files, conf := BackupFiles(g.Cfg)
	for k, v := range conf {
		files[k] = v
	}
	return backup.Create(ctx, dir, backup.Source{DB: g.Store.DB(), Files: files, ConfigDigest: ConfigDigest(g.Cfg),
		Signer: g.Keys.Gateway, Recipient: to})
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

// startBackups runs the periodic backup (backup.interval; 0: off). A
// PostgreSQL store is said once at start instead of failing every day.
func (g *Gateway) startBackups(ctx context.Context) {
	switch {
	case g.Cfg.Backup.Interval.Duration <= 0:
	case store.IsPostgresURL(g.Cfg.Store.URL):
		g.Log.Warn("periodic backups are off: " + ErrPostgresBackup.Error())
	default:
		g.goRun(func() { g.backupPeriodic(ctx) })
	}
}
