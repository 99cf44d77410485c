package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/phigate/phigate/gateway"
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
	role := fs.String("role", "", "new role (with role): staff, admin, security or patient; with list, the roles to list, comma-separated, or all")
	escrowFile := fs.String("escrow-key", "", "armored escrow private key `file` (with recover)")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
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
		roles, err := listRoles(*role)
		if err != nil {
			fmt.Fprintf(stderr, "phigate user list: %v\n", err)
			return 2
		}
		return userList(g, roles, stdout, stderr)
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

// listRoles reads user list's --role: comma-separated roles ("recipient"
// is taken for patient), "all" for every role; staff, admin and security
// when empty (the accounts admins manage).
func listRoles(flagValue string) ([]string, error) {
	if flagValue == "" {
		return []string{store.RoleStaff, store.RoleAdmin, store.RoleSecurity}, nil
	}
	var roles []string
	for r := range strings.SplitSeq(flagValue, ",") {
		switch r = strings.ToLower(strings.TrimSpace(r)); r {
		case "all":
			return []string{store.RoleStaff, store.RoleAdmin, store.RoleSecurity, store.RolePatient}, nil
		case "recipient", "patients", "recipients":
			r = store.RolePatient
		case store.RoleStaff, store.RoleAdmin, store.RoleSecurity, store.RolePatient:
		default:
			return nil, fmt.Errorf("unknown role %q (staff, admin, security, patient or all)", r)
		}
		if !slices.Contains(roles, r) {
			roles = append(roles, r)
		}
	}
	return roles, nil
}

// userList prints one line per account: id, address, role, 2FA, status.
// Addresses are shown to the operator at the console; listing patients is
// an access to their addresses, so every listing is audited (which roles,
// how many, never an address), as audit export is.
func userList(g *gateway.Gateway, roles []string, stdout, stderr io.Writer) int {
	users, err := g.Store.ListUsers(context.Background(), roles...)
	if err != nil {
		fmt.Fprintf(stderr, "phigate user list: %v\n", err)
		return 1
	}
	if err := recordCLI(g, "user.list", "user", "", map[string]string{"roles": strings.Join(roles, ","), "count": fmt.Sprint(len(users))}); err != nil {
		// No listing without its entry in the trail.
		fmt.Fprintf(stderr, "phigate user list: %v\n", err)
		return 1
	}
	for _, u := range users {
		addr, _ := g.Identity.Email(&u)
		fmt.Fprintf(stdout, "%s\t%s\t%s\t2fa=%v\t%s\n", u.ID, addr, u.Role, len(u.TOTPSecretEnc) > 0, u.Status)
	}
	return 0
}
