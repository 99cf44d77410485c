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
	"strings"
	"text/tabwriter"
	"time"

	"github.com/phigate/phigate/backup"
	"github.com/phigate/phigate/config"
	pcrypto "github.com/phigate/phigate/crypto"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/keys"
	"github.com/phigate/phigate/web"
)

const backupUsage = `phigate backup create [--out DIR] | list [--dir DIR] | verify FILE
phigate backup restore FILE --escrow-key FILE [--passphrase-file FILE]   (else the passphrase on standard input)
phigate backup drill FILE --escrow-key FILE [--passphrase-file FILE] [--max-messages N]   (restore drill recorded in the live trail)
  every subcommand also takes --data DIR | --config FILE`

// backupCmd runs `phigate backup create|list|verify|restore` (issue 14).
func backupCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, backupUsage)
		return 2
	}
	switch args[0] {
	case "create":
		return backupCreate(args[1:], stdout, stderr)
	case "list":
		return backupList(args[1:], stdout, stderr)
	case "verify":
		return backupVerify(args[1:], stdout, stderr)
	case "restore":
		return backupRestore(args[1:], stdin, stdout, stderr)
	case "drill":
		return backupDrill(args[1:], stdin, stdout, stderr)
	}
	fmt.Fprintf(stderr, "phigate backup: unknown subcommand %q\n%s\n", args[0], backupUsage)
	return 2
}

// parseWithFile parses flags that may come before or after one positional
// FILE argument.
func parseWithFile(fs *flag.FlagSet, args []string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return "", errors.New("a backup FILE is required")
	}
	file := rest[0]
	if err := fs.Parse(rest[1:]); err != nil {
		return "", err
	}
	if fs.NArg() != 0 {
		return "", fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return file, nil
}

func backupCreate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	out := fs.String("out", "", "write the backup into `DIR` (default backup.dir)")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	g, err := openAdmin(cf, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phigate backup create: %v\n", err)
		return 1
	}
	defer g.Store.Close()
	defer g.Trail.Close()
	info, err := g.BackupOnce(gateway.WithActor(context.Background(), cliActor()), *out)
	if err != nil {
		fmt.Fprintf(stderr, "phigate backup create: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s\nid %s, %d bytes, encrypted to %s, signed by %s\n", info.Path, info.ID, info.Size,
		info.RecipientFPR, info.GatewayFingerprint)
	return 0
}

// trustedKey returns this gateway's signing key when the data folder (or
// configuration) has one, so a backup is checked against it; nil when
// there is none to check against (after a loss, before a restore).
func trustedKey(cf commonFlags) (*pcrypto.Key, config.Config, error) {
	cfg, err := cf.load(cf.config == "", nil)
	if err != nil {
		return nil, cfg, err
	}
	for _, f := range []string{cfg.Keys.GatewayKeyFile, cfg.Keys.EscrowPublicKeyFile} {
		if _, err := os.Stat(f); err != nil {
			return nil, cfg, nil
		}
	}
	if _, err := os.Stat(cfg.Keys.MasterKeyFile); cfg.Keys.MasterKey == "" && err != nil {
		return nil, cfg, nil
	}
	ring, err := keys.Load(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return nil, cfg, err
	}
	return withKeyHistory(cfg, ring), cfg, nil // issue 14.3: earlier signing keys too
}

func signerNote(trusted *pcrypto.Key) string {
	if trusted != nil {
		return "this gateway's key"
	}
	return "the key the backup names (no gateway key here to compare with: check the fingerprint)"
}

func backupVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	file, err := parseWithFile(fs, args)
	if err != nil {
		fmt.Fprintf(stderr, "phigate backup verify: %v\n", err)
		return 2
	}
	trusted, _, err := trustedKey(cf)
	if err != nil {
		fmt.Fprintf(stderr, "phigate backup verify: %v\n", err)
		return 1
	}
	m, err := backup.Verify(file, trusted)
	if err != nil {
		fmt.Fprintf(stdout, "FAILED: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "OK: backup %s taken %s, %d payload bytes intact, signed by %s (%s), encrypted to %s\n",
		m.ID, m.Created.Format(time.RFC3339), m.PayloadSize, m.GatewayFingerprint, signerNote(trusted), m.RecipientFPR)
	return 0
}

func backupList(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	dir := fs.String("dir", "", "the backup `DIR` (default backup.dir)")
	if code, done := parseFlags(fs, args, stdout, stderr); done {
		return code
	}
	trusted, cfg, err := trustedKey(cf)
	if err != nil {
		fmt.Fprintf(stderr, "phigate backup list: %v\n", err)
		return 1
	}
	if *dir == "" {
		*dir = cfg.Backup.Dir
	}
	ls, err := backup.List(*dir, trusted)
	if err != nil {
		fmt.Fprintf(stderr, "phigate backup list: %v\n", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTAKEN\tBYTES\tVERIFIED")
	bad := 0
	for _, l := range ls {
		v := "yes"
		if l.Err != nil {
			v, bad = "NO: "+l.Err.Error(), bad+1
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", l.Name, l.Created.Format(time.RFC3339), l.Size, v)
	}
	tw.Flush()
	if bad > 0 {
		return 1
	}
	return 0
}

// readPassphrase reads the first line of file, or of stdin when file is
// empty: never a flag value, which other users can see in the process list.
func readPassphrase(file string, stdin io.Reader) ([]byte, error) {
	r := stdin
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if line = strings.TrimRight(line, "\r\n"); line == "" {
		return nil, errors.New("no passphrase given")
	}
	return []byte(line), nil
}

func backupRestore(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	escrowFile := fs.String("escrow-key", "", "the escrow (or backup) private key `FILE`, passphrase-protected")
	passFile := fs.String("passphrase-file", "", "read its passphrase from `FILE` (default: standard input)")
	file, err := parseWithFile(fs, args)
	if err != nil || *escrowFile == "" {
		fmt.Fprintf(stderr, "phigate backup restore: a backup FILE and --escrow-key FILE are required\n%s\n", backupUsage)
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "phigate backup restore: "+format+"\n", a...)
		return 1
	}
	cfg, err := cf.load(cf.config == "", nil)
	if err != nil {
		return fail("%v", err)
	}
	if _, err := os.Stat(cfg.Keys.MasterKeyFile); cfg.Keys.MasterKey == "" && err != nil {
		return fail("no master key at %s: a backup never holds it; put the master key there (or set keys.master_key) first", cfg.Keys.MasterKeyFile)
	}
	ctx := context.Background()
	targets, closeStore, err := gateway.RestoreTargets(ctx, cfg)
	if err != nil {
		return fail("%v", err)
	}
	defer closeStore()
	if err := targets.CheckEmpty(); err != nil {
		return fail("refused: %v (restore only into an empty data folder)", err)
	}
	if _, err := backup.Verify(file, nil); err != nil {
		return fail("%v", err)
	}
	// Unlocked before anything is written: a wrong passphrase leaves the
	// target as it was.
	escrow, err := unlockKeyFile(*escrowFile, *passFile, stdin)
	if err != nil {
		return fail("%v; nothing was written", err)
	}
	r, err := backup.Restore(file, escrow, nil, targets)
	if err != nil {
		return fail("%v", err)
	}
	closeStore()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	n, err := gateway.AuditRestore(ctx, cfg, r, cliActor(), log)
	if err != nil {
		return fail("the files of backup %s are in place, but: %v", r.ID, err)
	}
	note := ""
	if r.ConfigDigest != gateway.ConfigDigest(cfg) {
		note = " The configuration differs from the one the backup was taken under: check the settings before serving."
	}
	fmt.Fprintf(stdout, "restored backup %s (taken %s) into %s: audit chain verified (%s), restore audited.%s\n",
		r.ID, r.Created.Format(time.RFC3339), cfg.Server.DataDir, web.Count(int(n), "entry", "entries"), note)
	return 0
}

func unlockKeyFile(keyFile, passFile string, stdin io.Reader) (*pcrypto.Key, error) {
	armored, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	pass, err := readPassphrase(passFile, stdin)
	if err != nil {
		return nil, err
	}
	k, err := pcrypto.UnlockArmored(armored, pass)
	clear(pass)
	if errors.Is(err, pcrypto.ErrBadPassphrase) {
		return nil, errors.New("wrong passphrase for the escrow key")
	}
	return k, err
}
