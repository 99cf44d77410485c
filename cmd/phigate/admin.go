package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// userAdmin runs the account life-cycle commands: disable, enable, role,
// recover, list.
func userAdmin(cmd string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("user "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	email := fs.String("email", "", "the account's email `address`")
	role := fs.String("role", "", "new role (with role): staff, admin, security or patient")
	escrowFile := fs.String("escrow-key", "", "armored escrow private key `file` (with recover)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if cmd != "list" && *email == "" {
		fmt.Fprintf(stderr, "phigate user %s: --email is required\n", cmd)
		return 2
	}
	g, err := openAdmin(cf, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phigate user %s: %v\n", cmd, err)
		return 1
	}
	defer g.Store.Close()
	ctx := context.Background()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "phigate user %s: %v\n", cmd, strings.TrimPrefix(err.Error(), "identity: "))
		return 1
	}
	if cmd == "list" {
		users, err := g.Store.ListUsers(ctx, store.RoleStaff, store.RoleAdmin, store.RoleSecurity)
		if err != nil {
			return fail(err)
		}
		for _, u := range users {
			addr, _ := g.Identity.Email(&u)
			fmt.Fprintf(stdout, "%s\t%s\t%s\t2fa=%v\t%s\n", u.ID, addr, u.Role, len(u.TOTPSecretEnc) > 0, u.Status)
		}
		return 0
	}
	u, err := g.Identity.UserByEmail(ctx, *email)
	if errors.Is(err, store.ErrNotFound) {
		return fail(fmt.Errorf("no account for %s", *email))
	}
	if err != nil {
		return fail(err)
	}
	switch cmd {
	case "disable", "enable":
		st := store.StatusDisabled
		if cmd == "enable" {
			st = store.StatusActive
		}
		if _, err := g.Identity.SetStatus(ctx, u.ID, st); err != nil {
			return fail(err)
		}
		recordCLI(g, "user."+cmd, "user", u.ID, nil)
		if cmd == "disable" {
			// Sessions end at their next request or within seconds on open
			// pages: every node checks the account's status.
			fmt.Fprintf(stdout, "disabled %s: app passwords revoked, portal sessions end now\n", *email)
		} else {
			fmt.Fprintf(stdout, "enabled %s (app passwords stay revoked)\n", *email)
		}
	case "role":
		if _, err := g.Identity.SetRole(ctx, u.ID, *role); err != nil {
			return fail(err)
		}
		recordCLI(g, "user.role", "user", u.ID, map[string]string{"role": *role})
		if *role == store.RoleAdmin {
			recordCLI(g, "user.role.admin", "user", u.ID, nil)
		}
		fmt.Fprintf(stdout, "%s is now %s; their sessions end at the next request\n", *email, *role)
	case "recover":
		if *escrowFile == "" {
			fmt.Fprintln(stderr, "phigate user recover: --escrow-key FILE is required, and the passphrase on standard input")
			return 2
		}
		armored, err := os.ReadFile(*escrowFile)
		if err != nil {
			return fail(err)
		}
		pass, _ := bufio.NewReader(stdin).ReadString('\n')
		escrow, err := g.Identity.UnlockEscrow(armored, []byte(strings.TrimRight(pass, "\r\n")))
		if err != nil {
			return fail(err)
		}
		n, err := g.Identity.Recover(ctx, u.ID, escrow)
		if err != nil {
			return fail(err)
		}
		recordCLI(g, "account.recover", "user", u.ID, map[string]string{"messages": fmt.Sprint(n)})
		fmt.Fprintf(stdout, "recovered %s for %s\n", web.Count(n, "message"), *email)
	default:
		fmt.Fprintf(stderr, "phigate user: unknown subcommand %q\n", cmd)
		return 2
	}
	return 0
}
