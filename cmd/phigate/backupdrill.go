package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/backup"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/web"
)

// backupDrill runs `phigate backup drill FILE --escrow-key K` (issue
// 14.5): the restore drill that counts. It restores FILE into an
// owner-only scratch folder inside the live data folder, checks it (the
// gateway key that signed it, the audit chain, every message opened with
// the escrow key and its signature verified), scrubs the folder, and
// records backup.drill with the outcome in the LIVE audit trail, which
// the compliance report reads. Exit 0 when the drill passed, 1 when it
// failed (and was recorded as failed), 2 on bad usage.
func backupDrill(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backup drill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	escrowFile := fs.String("escrow-key", "", "the escrow (or backup) private key `FILE`, passphrase-protected")
	passFile := fs.String("passphrase-file", "", "read its passphrase from `FILE` (default: standard input)")
	maxMsgs := fs.Int("max-messages", 0, "open at most `N` messages (0: every one)")
	file, err := parseWithFile(fs, args)
	if err != nil || *escrowFile == "" || *maxMsgs < 0 {
		fmt.Fprintf(stderr, "phigate backup drill: a backup FILE and --escrow-key FILE are required\n%s\n", backupUsage)
		return 2
	}
	g, err := openAdmin(cf, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phigate backup drill: %v\n", err)
		return 1
	}
	defer g.Store.Close()
	defer g.Trail.Close()
	ctx := context.Background()
	if g.Cfg.Store.URL != "" {
		fmt.Fprintln(stderr, "phigate backup drill: this gateway runs on PostgreSQL: a drill needs a scratch PostgreSQL database, "+
			"which phigate backup drill does not make yet. Restore into an empty database with phigate backup restore instead (docs/operations.md).")
		return 1
	}

	// record writes the outcome into the live trail; a drill that cannot
	// be recorded did not count.
	record := func(id, outcome string, details map[string]string) error {
		return g.Trail.Record(ctx, audit.Entry{Actor: cliActor(), Action: "backup.drill", ObjectType: "backup",
			ObjectID: id, Outcome: outcome, Details: details})
	}
	fail := func(id, stage string, err error, details map[string]string) int {
		if details == nil {
			details = map[string]string{}
		}
		details["failed_at"] = stage // words of ours only: no error text (paths) in the trail
		if rerr := record(id, audit.Failed, details); rerr != nil {
			fmt.Fprintf(stderr, "phigate backup drill: could not record the failed drill: %v\n", rerr)
		}
		fmt.Fprintf(stderr, "phigate backup drill: FAILED at %s: %v (recorded as backup.drill failed)\n", stage, err)
		return 1
	}

	m, err := backup.Verify(file, g.Keys.Verifier())
	if err != nil {
		return fail("", "verify", err, nil)
	}
	escrow, err := unlockKeyFile(*escrowFile, *passFile, stdin)
	if err != nil {
		// Not the backup's fault: nothing is recorded for a mistyped passphrase.
		fmt.Fprintf(stderr, "phigate backup drill: %v; no drill was run\n", err)
		return 1
	}
	scratch, err := backup.PrivateTemp(g.Cfg.Server.DataDir)
	if err != nil {
		fmt.Fprintf(stderr, "phigate backup drill: scratch folder: %v\n", err)
		return 1
	}
	defer backup.Scrub(scratch)
	dcfg := gateway.DrillConfig(g.Cfg, scratch, "")
	targets, closeStore, err := gateway.RestoreTargets(ctx, dcfg)
	if err != nil {
		return fail(m.ID, "restore", err, nil)
	}
	defer closeStore()
	start := time.Now()
	r, err := backup.Restore(file, escrow, g.Keys.Verifier(), targets)
	if err != nil {
		return fail(m.ID, "restore", err, nil)
	}
	closeStore()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := gateway.DrillCheck(ctx, dcfg, r, escrow, *maxMsgs, log)
	details := map[string]string{"taken": r.Created.Format(time.RFC3339), "entries_verified": strconv.FormatInt(res.Entries, 10),
		"messages_opened": strconv.Itoa(res.Messages), "messages_disposed": strconv.Itoa(res.Disposed),
		"seconds": strconv.FormatFloat(time.Since(start).Seconds(), 'f', 1, 64)}
	if err != nil {
		return fail(r.ID, "check", err, details)
	}
	backup.Scrub(scratch) // before the entry: "wiped" must be true when it is written
	details["scratch"] = "wiped"
	if err := record(r.ID, audit.OK, details); err != nil {
		fmt.Fprintf(stderr, "phigate backup drill: the drill passed but could not be recorded: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "drill passed: backup %s (taken %s) restored into a scratch folder, audit chain verified (%s), %s opened with the escrow key and verified, scratch folder wiped; recorded as backup.drill in the live audit trail.\n",
		r.ID, r.Created.Format(time.RFC3339), web.Count(int(res.Entries), "entry", "entries"), web.Count(res.Messages, "message"))
	return 0
}
