package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/phigate/phigate/compliance"
	"github.com/phigate/phigate/keys"
)

const complianceUsage = "phigate compliance report [--json] [--data DIR | --config FILE]"

// complianceCmd runs `phigate compliance report` (issue 14.5): exit 0 when
// every check passes, 1 when one fails or the state cannot be read, 2 on
// bad usage, so operators can alert on it.
func complianceCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "report" {
		fmt.Fprintln(stderr, complianceUsage)
		return 2
	}
	fs := flag.NewFlagSet("compliance report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	g, err := openAdmin(cf, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phigate compliance: %v\n", err)
		return 1
	}
	defer g.Store.Close()
	defer g.Trail.Close()
	cfg := g.Cfg
	// The configuration the listeners get, loaded the same way (never
	// creating a certificate: a missing one is a finding).
	tlsCfg, tlsErr := keys.LoadTLS(cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.Server.Hostname, false,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	r, err := compliance.Build(context.Background(), compliance.Sources{Config: cfg, Users: g.Store, Trail: g.Trail,
		TLS: tlsCfg, TLSErr: tlsErr, GatewayKey: g.Keys.Gateway.Fingerprint(), Now: time.Now()})
	if err != nil {
		fmt.Fprintf(stderr, "phigate compliance: %v\n", err)
		return 1
	}
	if *asJSON {
		err = r.WriteJSON(stdout)
	} else {
		err = r.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "phigate compliance: %v\n", err)
		return 1
	}
	if !r.OK {
		return 1
	}
	return 0
}
