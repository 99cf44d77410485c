package gateway

import (
	"github.com/phigate/phigate/connlimit"
	"github.com/phigate/phigate/smtpd"
)

// smtpLimits are the SMTP abuse controls from [smtp]. The connection cap
// shared by both SMTP listeners is kept within a quarter of the process's
// file descriptors: the portal may use half (capHTTPS), and the database,
// logs and outbound connections need the rest.
func (g *Gateway) smtpLimits() smtpd.Limits {
	c := g.Cfg.SMTP
	fds := connlimit.FDLimit()
	max, lowered := connlimit.FitFDLimit(c.MaxConnections, fds-fds/4)
	if lowered {
		g.Log.Warn("smtp.max_connections lowered to fit the file-descriptor limit", "configured", c.MaxConnections,
			"used", max, "fd_limit", fds)
	}
	return smtpd.Limits{MaxConns: max, MaxConnsPerIP: c.MaxConnectionsPerIP, HandshakeTimeout: c.HandshakeTimeout.Duration,
		CommandTimeout: c.CommandTimeout.Duration, DrainTimeout: c.DrainTimeout.Duration}
}
