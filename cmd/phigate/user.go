package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/gateway"
)

const userUsage = `phigate user — manage portal accounts

Usage:
  phigate user add --email ADDR --role ROLE --password-stdin
  phigate user app-password --email ADDR (--name NAME | --revoke NAME)
  phigate user list [--role ROLE[,ROLE]]   (default staff,admin,security; patient or all for patients too)
  phigate user disable | enable --email ADDR
  phigate user role --email ADDR --role ROLE
  phigate user recover --email ADDR --escrow-key FILE   (escrow passphrase on standard input)

Every subcommand takes --data DIR or --config FILE. Roles: staff, admin,
security, patient. Run "phigate user SUBCOMMAND -h" for its flags.
`

func user(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, userUsage)
		return 0
	case "add":
		return userAdd(args[1:], stdin, stdout, stderr)
	case "app-password":
		return userAppPassword(args[1:], stdout, stderr)
	case "disable", "enable", "role", "recover", "list":
		return userAdmin(args[0], args[1:], stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "phigate user: unknown subcommand %q\n\n%s", args[0], userUsage)
	return 2
}

// parseFlags parses a subcommand's flags. Asked for with -h, the flags go
// to standard output and the command ends with 0 (done); a wrong flag is
// told on standard error with exit 2.
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, done bool) {
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		code = 0
	case err != nil:
		code = 2
	default:
		return 0, false
	}
	fmt.Fprintf(fs.Output(), "Usage of phigate %s:\n", fs.Name())
	fs.PrintDefaults()
	fs.SetOutput(stderr)
	return code, true
}

// openAdmin opens keys and store for an admin command. Without --config the
// data folder is taken to have the --dev layout.
func openAdmin(cf commonFlags, stderr io.Writer) (*gateway.Gateway, error) {
	cfg, err := cf.load(cf.config == "", nil)
	if err != nil {
		return nil, err
	}
	// A mistyped --data must not silently create a second gateway with
	// fresh keys: admin commands only open an existing data folder.
	if _, err := os.Stat(cfg.Keys.MasterKeyFile); cfg.Keys.MasterKey == "" && err != nil {
		return nil, fmt.Errorf("no phigate data folder at %s (no %s): start the gateway once (phigate serve --dev, or with --config) or give the right --data/--config",
			cfg.Server.DataDir, filepath.Base(cfg.Keys.MasterKeyFile))
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return gateway.Open(context.Background(), cfg, log)
}

func userAdd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("user add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	email := fs.String("email", "", "the account's email `address`")
	role := fs.String("role", "staff", "staff, admin, security or patient")
	pwStdin := fs.Bool("password-stdin", false, "read the portal password from standard input (first line)")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if *email == "" || !*pwStdin {
		fmt.Fprintln(stderr, "phigate user add: --email and --password-stdin are required")
		return 2
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(stderr, "phigate user add: no password on standard input")
		return 2
	}
	pw := strings.TrimRight(line, "\r\n")
	g, err := openAdmin(cf, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phigate user add: %v\n", err)
		return 1
	}
	defer g.Store.Close()
	u, err := g.Identity.AddUser(context.Background(), *email, *role, pw)
	if err != nil {
		fmt.Fprintf(stderr, "phigate user add: %v\n", strings.TrimPrefix(err.Error(), "identity: "))
		return 1
	}
	if err := recordCLI(g, "user.create", "user", u.ID, map[string]string{"role": u.Role, "email": *email}); err != nil {
		fmt.Fprintf(stderr, "phigate user add: %v\n", err)
		return 1
	}
	if u.Role == "admin" {
		recordCLI(g, "user.role.admin", "user", u.ID, nil)
	}
	fmt.Fprintf(stdout, "created %s account %s (id %s)\n", u.Role, *email, u.ID)
	return 0
}

func userAppPassword(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("user app-password", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	email := fs.String("email", "", "the account's email `address`")
	name := fs.String("name", "", "a label for the device or client, e.g. laptop")
	revoke := fs.String("revoke", "", "revoke the app password called `NAME` instead of creating one")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	if *email == "" || (*name == "") == (*revoke == "") {
		fmt.Fprintln(stderr, "phigate user app-password: --email and one of --name or --revoke are required")
		return 2
	}
	g, err := openAdmin(cf, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phigate user app-password: %v\n", err)
		return 1
	}
	defer g.Store.Close()
	ctx := context.Background()
	if *revoke != "" {
		if err := g.Identity.RevokeAppPassword(ctx, *email, *revoke); err != nil {
			fmt.Fprintf(stderr, "phigate user app-password: %v\n", err)
			return 1
		}
		recordCLI(g, "user.app-password.revoke", "user", "", map[string]string{"email": *email, "name": *revoke})
		fmt.Fprintf(stdout, "revoked app password %q of %s\n", *revoke, *email)
		return 0
	}
	secret, err := g.Identity.AddAppPassword(ctx, *email, *name)
	if err != nil {
		fmt.Fprintf(stderr, "phigate user app-password: %v\n", err)
		return 1
	}
	recordCLI(g, "user.app-password.create", "user", "", map[string]string{"email": *email, "name": *name})
	fmt.Fprintf(stdout, "App password %q for %s (shown once; use it as the SMTP password):\n%s\n", *name, *email, secret)
	return 0
}

// cliActor names the operator in the audit trail: "cli:" and the login
// name, reduced to characters the trail accepts in the clear.
func cliActor() string {
	u := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return -1
	}, os.Getenv("USER"))
	if u == "" {
		u = "unknown"
	}
	return "cli:" + u
}

// recordCLI writes an admin command's audit entry; changes of access made
// from the command line are in the trail like those made in the portal.
func recordCLI(g *gateway.Gateway, action, objType, objID string, details map[string]string) error {
	err := g.Trail.Record(context.Background(), audit.Entry{Actor: cliActor(), Action: action, ObjectType: objType,
		ObjectID: objID, Outcome: "ok", Details: details})
	if err != nil {
		return fmt.Errorf("writing the audit entry: %w", err)
	}
	return nil
}
