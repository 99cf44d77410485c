package gateway

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/phigate/phigate/compliance"
	"github.com/phigate/phigate/keys"
)

// ComplianceReport builds the compliance report (issue 14.5) from this
// gateway's configuration and state: what `phigate compliance report`
// prints and the admin page /admin/compliance shows.
func (g *Gateway) ComplianceReport(ctx context.Context) (*compliance.Report, error) {
	cfg := g.Cfg
	// The configuration the listeners get, loaded the same way (never
	// creating a certificate: a missing one is a finding).
	tlsCfg, tlsErr := keys.LoadTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.Server.Hostname, false,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	return compliance.Build(ctx, compliance.Sources{Config: cfg, Users: g.Store, Trail: g.Trail,
		TLS: tlsCfg, TLSErr: tlsErr, GatewayKey: g.Keys.Gateway.Fingerprint(), Retention: g.Store, Now: time.Now()})
}
