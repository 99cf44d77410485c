package main

// Issue 14.3: phigate keys status | rotate-master | rotate-signing |
// rewrap-escrow (docs/operations.md "Key rotation").

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

const keysUsage = `Usage:
  phigate keys status                      (master key epochs, a rotation under way, signing keys)
  phigate keys rotate-master [--batch N] [--limit N]
                                           (stop every phigate serve first; run again to resume)
  phigate keys rotate-signing              (new gateway signing key; old public keys kept)
  phigate keys export-signing              (the gateway's public signing keys, current and earlier, for gpg --import)
  phigate keys rewrap-escrow --old-escrow-key FILE [--passphrase-file FILE] [--batch N]
                                           (after pointing keys.escrow_public_key_file at the new key;
                                            passphrase of the OLD key, else on standard input)
`

func keysCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		out := stderr
		code := 2
		if len(args) > 0 {
			out, code = stdout, 0
		}
		fmt.Fprint(out, keysUsage)
		return code
	}
	cmd := args[0]
	switch cmd {
	case "status", "rotate-master", "rotate-signing", "rewrap-escrow", "export-signing":
	default:
		fmt.Fprintf(stderr, "phigate keys: unknown subcommand %q\n\n%s", cmd, keysUsage)
		return 2
	}
	fs := flag.NewFlagSet("keys "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	batch := fs.Int("batch", 200, "values re-sealed (rotate-master) or messages re-wrapped (rewrap-escrow) per transaction")
	limit := fs.Int("limit", 0, "rotate-master: stop after re-sealing this many values (0: no limit); run again to continue")
	oldEscrow := fs.String("old-escrow-key", "", "rewrap-escrow: the OLD escrow key's armored private key `file`")
	passFile := fs.String("passphrase-file", "", "rewrap-escrow: `file` holding the OLD escrow key's passphrase (else standard input)")
	if code, done := parseFlags(fs, args[1:], stdout, stderr); done {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "phigate keys %s: %v\n", cmd, err)
		return 1
	}
	var escrowKey *pcrypto.Key
	if cmd == "rewrap-escrow" {
		if *oldEscrow == "" {
			fmt.Fprintln(stderr, "phigate keys rewrap-escrow: --old-escrow-key FILE is required")
			return 2
		}
		k, err := unlockOldEscrow(*oldEscrow, *passFile, stdin)
		if err != nil {
			return fail(err)
		}
		escrowKey = k
	}
	g, err := openAdmin(cf, stderr)
	if err != nil {
		return fail(err)
	}
	defer g.Store.Close()
	defer g.Trail.Close()
	ctx := context.Background()
	rot := &keys.Rotation{Cfg: g.Cfg, Ring: g.Keys, Store: g.Store, Audit: g.Trail, Actor: cliActor(),
		Log: g.Log, Batch: *batch, Limit: *limit}
	switch cmd {
	case "status":
		return keysStatus(ctx, g, stdout, stderr)
	case "export-signing":
		b, err := g.Keys.SigningKeysArmored()
		if err != nil {
			return fail(err)
		}
		stdout.Write(b)
	case "rotate-master":
		res, err := rot.RotateMaster(ctx)
		if errors.Is(err, keys.ErrPaused) {
			fmt.Fprintf(stdout, "paused after re-sealing %s under master key %s (epoch %d): run phigate keys rotate-master again to continue\n",
				web.Count(res.Resealed, "value"), res.To, res.Epoch)
			return 3
		}
		if err != nil {
			fmt.Fprintf(stderr, "phigate keys rotate-master: %v\n(the rotation is resumable: fix the cause and run the command again; keep %s)\n",
				err, keys.NextMasterFile(g.Cfg))
			return 1
		}
		verb := "rotated"
		if res.Resumed {
			verb = "finished the rotation"
		}
		fmt.Fprintf(stdout, "%s: master key %s is active (epoch %d); %s re-sealed by this run", verb, res.To, res.Epoch, web.Count(res.Resealed, "value"))
		if res.Counts != nil {
			fmt.Fprintf(stdout, "; re-keyed: %s, %s, %s, %s, %s",
				web.Count(res.Counts["users"], "blind index", "blind indexes"), web.Count(res.Counts["app_passwords"], "app password"),
				web.Count(res.Counts["recovery_codes"], "recovery code"), web.Count(res.Counts["passcodes"], "passcode"),
				web.Count(res.Counts["recipient_keys"], "recipient key"))
		}
		fmt.Fprintf(stdout, "\nthe old master key no longer opens the database; keep it only with the backups taken before now\n")
	case "rotate-signing":
		res, err := rot.RotateSigning(ctx)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "gateway signing key %s replaces %s; the old public key is kept, so messages it signed still verify\n", res.New, res.Old)
	case "rewrap-escrow":
		res, err := rot.RewrapEscrow(ctx, escrowKey)
		if err != nil {
			return fail(fmt.Errorf("%w (%s re-wrapped before the error; run again to continue)", err, web.Count(res.Rewrapped, "message")))
		}
		fmt.Fprintf(stdout, "re-wrapped %s and %s from escrow key %s to %s (%s had no packet for the old key)\n",
			web.Count(res.Rewrapped, "message"), web.Count(res.Copies, "message copy", "message copies"), res.Old, res.New, web.Count(res.Skipped, "message"))
	}
	return 0
}

func unlockOldEscrow(keyFile, passFile string, stdin io.Reader) (*pcrypto.Key, error) {
	armored, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	var pass []byte
	if passFile != "" {
		if pass, err = os.ReadFile(passFile); err != nil {
			return nil, err
		}
	} else if pass, err = io.ReadAll(io.LimitReader(stdin, 4096)); err != nil {
		return nil, err
	}
	line, _, _ := strings.Cut(string(pass), "\n")
	k, err := pcrypto.UnlockArmored(armored, []byte(strings.TrimRight(line, "\r")))
	if err != nil {
		return nil, fmt.Errorf("the old escrow key does not open with that passphrase: %w", err)
	}
	return k, nil
}

func keysStatus(ctx context.Context, g *gateway.Gateway, stdout, stderr io.Writer) int {
	eps, err := g.Store.KeyEpochs(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "phigate keys status: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "master key: %s (active)\n", g.Keys.KeyID())
	if len(eps) == 0 {
		fmt.Fprintln(stdout, "  never rotated (epoch 1)")
	}
	for _, e := range eps {
		line := fmt.Sprintf("  epoch %d  key %s  %s", e.Epoch, e.KeyID, e.State)
		if e.RotatedAt != nil {
			line += "  since " + e.RotatedAt.Format(time.RFC3339)
		}
		if e.State != "rotating" && e.AuditFromSeq > 0 {
			line += fmt.Sprintf("  audit entries from %d", e.AuditFromSeq)
		}
		if e.State == "rotating" {
			line += fmt.Sprintf("  UNDER WAY: %s re-sealed so far; run phigate keys rotate-master to finish", web.Count(int(e.Resealed), "value"))
		}
		fmt.Fprintln(stdout, line)
	}
	fmt.Fprintf(stdout, "gateway signing key: %s\n", g.Keys.Gateway.Fingerprint())
	for _, k := range g.Keys.GatewayHistory() {
		fmt.Fprintf(stdout, "  earlier (verifies only): %s\n", k.Fingerprint())
	}
	fmt.Fprintf(stdout, "escrow key: %s\n", g.Keys.Escrow.Fingerprint())
	return 0
}

// withKeyHistory is the gateway key's public half, accepting also the
// earlier gateway keys recorded in the database (a backup taken before a
// signing-key rotation is signed by one of them). Without a database
// (after a loss) it is the current key alone; nothing is created.
func withKeyHistory(cfg config.Config, ring *keys.Ring) *pcrypto.Key {
	ctx := context.Background()
	url := cfg.Store.URL
	if url == "" {
		if _, err := os.Stat(cfg.Database.DSN); err != nil {
			return ring.Gateway.Public()
		}
	}
	st, err := store.Open(ctx, url, cfg.Database.DSN)
	if err != nil {
		return ring.Gateway.Public()
	}
	defer st.Close()
	if err := ring.Bind(ctx, st); err != nil {
		return ring.Gateway.Public()
	}
	return ring.Verifier()
}
