// Command phigate is the secure messaging gateway: `phigate serve` runs it,
// the other subcommands administer it.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `phigate — HIPAA-safe secure messaging gateway

Usage:
  phigate serve [--dev] [--config FILE] [--data DIR] [--smtp ADDR] [--smtps ADDR] [--http ADDR]
  phigate user add --email ADDR --role ROLE --password-stdin [--data DIR | --config FILE]
  phigate user app-password --email ADDR (--name NAME | --revoke NAME) [--data DIR | --config FILE]
  phigate user list [--role ROLE[,ROLE] | --role all]   (default staff,admin,security; patient lists patients)
  phigate user disable | enable --email ADDR [--data DIR | --config FILE]
  phigate user role --email ADDR --role ROLE
  phigate user recover --email ADDR --escrow-key FILE   (escrow passphrase on standard input)

  phigate policy show [--version N] | apply [--note TEXT] FILE | history | diff A B | rollback N
  phigate policy explain --from ADDR --to ADDR[,ADDR] [--message FILE]
  phigate recipient-key add --email ADDR --file KEY.asc | remove --email ADDR
  phigate dkim show                         (the DNS TXT records for the notices' DKIM keys)
  phigate notices check-templates [--dir DIR]
  phigate notices reference CODE            (check a notice's reference a patient reads out)
  phigate healthcheck [--timeout 5s] [--ca FILE] URL   (exit 0 on a 2xx answer: container health checks)
  phigate store upgrade [--url URL]        (run the schema migrations; URL default $PHIGATE_STORE_URL)
  phigate store migrate --from sqlite:PATH --to postgres://...   (copy an SQLite store into an empty PostgreSQL one)
  phigate backup create [--out DIR] | list [--dir DIR] | verify FILE   (encrypted backups; see docs/operations.md)
  phigate backup restore FILE --escrow-key FILE [--passphrase-file FILE]   (into an empty data folder; passphrase else on stdin)
  phigate keys status | rotate-master | rotate-signing | rewrap-escrow --old-escrow-key FILE | export-signing   (key rotation; see docs/operations.md)
  phigate audit verify | export [--format csv|json] [--user ID] [--action A] [--message ID] [--from D] [--to D]
  phigate compliance report [--json]        (HIPAA safeguards, settings and live checks; exit 1 if a check fails)

Run "phigate COMMAND -h" for the flags of one command, "phigate user --help" for accounts.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stdout, stderr)
	case "user":
		return user(args[1:], stdin, stdout, stderr)
	case "policy":
		return policyCmd(args[1:], stdout, stderr)
	case "recipient-key":
		return recipientKeyCmd(args[1:], stdout, stderr)
	case "audit":
		return auditCmd(args[1:], stdout, stderr)
	case "dkim":
		return dkimCmd(args[1:], stdout, stderr)
	case "store":
		return storeCmd(args[1:], stdout, stderr)
	case "notices":
		return noticesCmd(args[1:], stdout, stderr)
	case "healthcheck":
		return healthcheck(args[1:], stdout, stderr)
	case "backup":
		return backupCmd(args[1:], stdin, stdout, stderr)
	case "compliance":
		return complianceCmd(args[1:], stdout, stderr)
	case "keys":
		return keysCmd(args[1:], stdin, stdout, stderr)
	case "help", "-h", "--help":
		if len(args) > 1 && args[1] == "user" {
			fmt.Fprint(stdout, userUsage)
			return 0
		}
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "phigate: unknown command %q\n\n%s", args[0], usage)
	return 2
}
