package gateway

import (
	"context"
	"errors"
	"log/slog"
	"time"

	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/identity"
	"github.com/phigate/phigate/logx"
	"github.com/phigate/phigate/pgpmime"

	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/policy"
	"github.com/phigate/phigate/store"
)

// recipientKeys answers "does this address have a usable registered
// OpenPGP key": a key that expired or was revoked since it was registered
// counts as none, so the policy's fallback decides.
type recipientKeys struct {
	store    store.Store
	keys     *keys.Ring
	identity *identity.Service
	log      *slog.Logger
}

func (r recipientKeys) HasKey(ctx context.Context, rcpt string) (bool, error) {
	_, err := r.store.RecipientKeyByIndex(ctx, r.keys.EmailIndex(rcpt))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if _, err := r.identity.RecipientKey(ctx, rcpt); err != nil {
		var refused *pcrypto.KeyRefusedError
		if errors.As(err, &refused) {
			r.log.WarnContext(ctx, "registered key no longer usable", "recipient", logx.Addr(rcpt), "why", refused.Reason)
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// pgpBuilder makes PGP/MIME (RFC 3156) for a recipient's registered key,
// signed by the gateway key; the outbound queue sends it.
type pgpBuilder struct {
	identity *identity.Service
	gateway  *pcrypto.Key
	hostname string
}

func (p pgpBuilder) BuildPGP(ctx context.Context, from, to string, raw []byte) ([]byte, error) {
	k, err := p.identity.RecipientKey(ctx, to)
	if err != nil {
		return nil, err
	}
	return pgpmime.Encrypt(raw, pgpmime.Options{From: from, To: to, Hostname: p.hostname}, p.gateway, k)
}

// checkKey adapts pgpmime's checks for identity.
func checkKey(armored []byte, address string) (*pcrypto.Key, error) {
	return pgpmime.CheckRecipientKey(armored, address, time.Now())
}

// loadPolicy activates the newest policy version (installing the shipped
// default on a fresh database) and keeps following versions applied by
// other nodes or the CLI.
func (g *Gateway) loadPolicy(ctx context.Context) error {
	g.Policy = &policy.Engine{}
	g.PolicyVersions = &policy.Versions{Store: g.Store, Engine: g.Policy, Detectors: DetectorNames(),
		OrgDomains: g.Cfg.Org.Domains}
	if err := g.PolicyVersions.Load(ctx); err != nil {
		return err
	}
	g.goRun(func() {
		every(ctx, 5*time.Second, false, func(ctx context.Context, _ time.Time) {
			if changed, err := g.PolicyVersions.Refresh(ctx); err != nil && ctx.Err() == nil {
				g.Log.ErrorContext(ctx, "policy refresh", "err", err)
			} else if changed {
				_, v := g.Policy.Current()
				g.Log.InfoContext(ctx, "policy version activated", "version", v)
			}
		})
	})
	return nil
}
