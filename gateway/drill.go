package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/phigate/phigate/backup"
	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
)

// DrillConfig is the live configuration pointed at a scratch folder for a
// restore drill (issue 14.5): the database and every key file the backup
// holds go to dir; the master key stays the live one, read only, since a
// backup never holds it and the drill must show the key kept apart still
// opens it. scratchURL is an empty PostgreSQL database for a backup of a
// PostgreSQL store ("" for SQLite).
func DrillConfig(live config.Config, dir, scratchURL string) config.Config {
	c := live
	c.Server.DataDir = dir
	c.Store.URL = scratchURL
	c.Database.DSN = filepath.Join(dir, "phigate.db")
	c.Keys.GatewayKeyFile = filepath.Join(dir, "gateway-key.wrapped")
	c.Keys.VAPIDKeyFile = filepath.Join(dir, "vapid-key.wrapped")
	c.Keys.DKIMKeyFile = filepath.Join(dir, "dkim-key.wrapped")
	c.Keys.EscrowPublicKeyFile = filepath.Join(dir, "escrow-public.asc")
	c.Keys.EscrowPrivateKeyFile = ""
	c.Backup.Dir = filepath.Join(dir, "backups")
	c.Log.File = ""
	return c
}

// DrillResult is what a drill checked.
type DrillResult struct {
	Entries  int64 // audit entries verified
	Messages int   // messages opened with the escrow key, signature verified
	Disposed int   // messages without content (disposed of before the backup)
}

// DrillCheck opens the gateway restored at cfg (DrillConfig) and checks
// it as a restore would be checked: the restored gateway key is the one
// that signed the backup, the audit chain verifies, and every message
// (at most max; 0: all) opens with the escrow key and carries a valid
// gateway signature. It writes nothing to any trail: the caller records
// the drill in the live one.
func DrillCheck(ctx context.Context, cfg config.Config, r backup.Restored, escrow *pcrypto.Key, max int, log *slog.Logger) (DrillResult, error) {
	var res DrillResult
	g, err := Open(ctx, cfg, log)
	if err != nil {
		return res, fmt.Errorf("the restored gateway does not open: %w", err)
	}
	defer g.Store.Close()
	defer g.Trail.Close()
	if fp := g.Keys.Gateway.Fingerprint(); fp != r.GatewayFingerprint {
		return res, fmt.Errorf("the restored gateway key is %s, the backup was signed by %s", fp, r.GatewayFingerprint)
	}
	if res.Entries, err = g.Trail.Verify(ctx); err != nil {
		return res, fmt.Errorf("audit verify: %w", err)
	}
	rows, err := g.Store.DB().QueryContext(ctx, `SELECT id, key_packets, body FROM messages ORDER BY id`)
	if err != nil {
		return res, err
	}
	defer rows.Close()
	verifier := g.Keys.Verifier()
	for rows.Next() {
		var id string
		var kp, body []byte
		if err := rows.Scan(&id, &kp, &body); err != nil {
			return res, err
		}
		if len(body) == 0 {
			res.Disposed++
			continue
		}
		if max > 0 && res.Messages >= max {
			return res, nil
		}
		// One message in memory at a time.
		_, sig, err := pcrypto.Open(&pcrypto.Sealed{KeyPackets: kp, Data: body}, escrow, verifier)
		if err != nil {
			return res, fmt.Errorf("message %s does not open with the escrow key: %w", id, err)
		}
		if sig != pcrypto.SigVerified {
			return res, fmt.Errorf("message %s: gateway signature %s", id, sig)
		}
		res.Messages++
	}
	return res, rows.Err()
}
