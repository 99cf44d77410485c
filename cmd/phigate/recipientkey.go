package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/phigate/phigate/keys"
)

// recipientKeyCmd runs `phigate recipient-key add|remove`.
func recipientKeyCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "add" && args[0] != "remove") {
		fmt.Fprintln(stderr, "phigate recipient-key: add --email ADDR --file KEY.asc | remove --email ADDR")
		return 2
	}
	cmd := args[0]
	fs := flag.NewFlagSet("recipient-key "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	email := fs.String("email", "", "the recipient's email `address`")
	file := fs.String("file", "", "armored OpenPGP public key `file`")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *email == "" || (cmd == "add" && *file == "") {
		fmt.Fprintf(stderr, "phigate recipient-key %s: --email%s required\n", cmd, map[bool]string{true: " and --file are", false: " is"}[cmd == "add"])
		return 2
	}
	g, err := openAdmin(cf, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phigate recipient-key: %v\n", err)
		return 1
	}
	defer g.Store.Close()
	ctx := context.Background()
	if cmd == "remove" {
		if err := g.Store.DeleteRecipientKey(ctx, g.Keys.EmailIndex(keys.NormalizeAddr(*email))); err != nil {
			fmt.Fprintf(stderr, "phigate recipient-key remove: no key registered for %s\n", *email)
			return 1
		}
		recordCLI(g, "key.remove", "key", "", map[string]string{"email": *email})
		fmt.Fprintf(stdout, "removed the key of %s\n", *email)
		return 0
	}
	armored, err := os.ReadFile(*file)
	if err != nil {
		fmt.Fprintf(stderr, "phigate recipient-key add: %v\n", err)
		return 1
	}
	fpr, err := g.Identity.RegisterRecipientKey(ctx, *email, armored, cliActor())
	if err != nil {
		fmt.Fprintf(stderr, "phigate recipient-key add: refused: %s\n", strings.TrimPrefix(err.Error(), "identity: "))
		return 1
	}
	recordCLI(g, "key.register", "key", fpr, map[string]string{"email": *email})
	fmt.Fprintf(stdout, "registered key %s for %s\n", fpr, *email)
	return 0
}
