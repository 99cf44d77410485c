package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/policy"
	"github.com/phigate/phigate/store"
)

// recipientKeys answers "does this address have a registered OpenPGP key".
type recipientKeys struct {
	store store.Store
	keys  *keys.Ring
}

func (r recipientKeys) HasKey(ctx context.Context, rcpt string) (bool, error) {
	_, err := r.store.RecipientKeyByIndex(ctx, r.keys.EmailIndex(rcpt))
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
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
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if changed, err := g.PolicyVersions.Refresh(ctx); err != nil && ctx.Err() == nil {
					g.Log.Error("policy refresh", "err", err)
				} else if changed {
					_, v := g.Policy.Current()
					g.Log.Info("policy version activated", "version", v)
				}
			}
		}
	})
	return nil
}
