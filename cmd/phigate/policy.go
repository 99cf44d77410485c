package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/policy"
)

// policyCmd runs `phigate policy show|apply|history|diff|rollback|explain`.
func policyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "phigate policy: show | apply FILE | history | diff A B | rollback N | explain --from ADDR --to ADDR[,ADDR] [--message FILE]")
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("policy "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	note := fs.String("note", "", "what the change is for (recorded with the version)")
	from := fs.String("from", "", "sender address (explain)")
	to := fs.String("to", "", "comma-separated recipients (explain)")
	msgFile := fs.String("message", "", "a sample RFC 5322 message file (explain)")
	version := fs.Int64("version", 0, "version to show (default: active)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	g, err := openAdmin(cf, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phigate policy: %v\n", err)
		return 1
	}
	defer g.Store.Close()
	ctx := context.Background()
	v := &policy.Versions{Store: g.Store, Engine: &policy.Engine{}, Detectors: gateway.DetectorNames(), OrgDomains: g.Cfg.Org.Domains}
	if err := v.Load(ctx); err != nil {
		fmt.Fprintf(stderr, "phigate policy: %v\n", err)
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "phigate policy %s: %v\n", cmd, err)
		return 1
	}
	switch cmd {
	case "show":
		pv, err := g.Store.LatestPolicyVersion(ctx)
		if *version > 0 {
			pv, err = g.Store.PolicyVersionByID(ctx, *version)
		}
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "# version %d, %s by %s: %s\n%s", pv.ID, pv.CreatedAt.Format("2006-01-02 15:04"), pv.AuthorID, pv.Note, pv.Body)
	case "apply":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "phigate policy apply: give the policy FILE")
			return 2
		}
		text, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		id, err := v.Apply(ctx, cliActor(), string(text), *note)
		if err != nil {
			fmt.Fprintf(stderr, "phigate policy apply: %s is not valid:\n%v\n", fs.Arg(0), err)
			return 1
		}
		recordCLI(g, "policy.apply", "policy", fmt.Sprint(id), map[string]string{"note": *note})
		fmt.Fprintf(stdout, "applied as version %d (running gateways switch within 5 seconds)\n", id)
	case "history":
		list, err := g.Store.ListPolicyVersions(ctx)
		if err != nil {
			return fail(err)
		}
		for _, p := range list {
			fmt.Fprintln(stdout, policy.Summary(p))
		}
	case "diff":
		if fs.NArg() != 2 {
			fmt.Fprintln(stderr, "phigate policy diff: give two version numbers")
			return 2
		}
		a, _ := strconv.ParseInt(fs.Arg(0), 10, 64)
		b, _ := strconv.ParseInt(fs.Arg(1), 10, 64)
		d, err := v.Diff(ctx, a, b)
		if err != nil {
			return fail(err)
		}
		fmt.Fprint(stdout, d)
	case "rollback":
		if fs.NArg() != 1 {
			fmt.Fprintln(stderr, "phigate policy rollback: give the version number to go back to")
			return 2
		}
		n, _ := strconv.ParseInt(fs.Arg(0), 10, 64)
		id, err := v.Rollback(ctx, cliActor(), n)
		if err != nil {
			return fail(err)
		}
		recordCLI(g, "policy.rollback", "policy", fmt.Sprint(id), map[string]string{"to": fmt.Sprint(n)})
		fmt.Fprintf(stdout, "version %d is active again, as version %d\n", n, id)
	case "explain":
		var raw []byte
		if *msgFile != "" {
			if raw, err = os.ReadFile(*msgFile); err != nil {
				return fail(err)
			}
		}
		in := g.AdminIntake(v.Engine)
		out, err := in.Explain(ctx, *from, strings.Split(*to, ","), raw)
		if err != nil {
			return fail(err)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	default:
		fmt.Fprintf(stderr, "phigate policy: unknown subcommand %q\n", cmd)
		return 2
	}
	return 0
}
