package main

import (
	"context"
	"flag"
	"fmt"
	"io"
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
	// The same report as the admin page (gateway.ComplianceReport).
	r, err := g.ComplianceReport(context.Background())
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
