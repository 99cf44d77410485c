package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/phigate/phigate/audit"
	"github.com/phigate/phigate/backup"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// backupDrill runs `phigate backup drill FILE --escrow-key K` (issue
// 14.5): the restore drill that counts. It restores FILE into an
// owner-only scratch folder inside the live data folder, checks it (the
// gateway key that signed it, the audit chain, every message opened with
// the escrow key and its signature verified), scrubs the folder, and
// records backup.drill with the outcome in the LIVE audit trail, which
// the compliance report reads. A PostgreSQL gateway's backup is restored
// into a scratch database made on the live server for the drill
// (phigate_drill_<random>; the role needs CREATEDB) and dropped after it,
// also when the drill fails or is interrupted. Exit 0 when the drill passed, 1 when it
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
	// Ctrl-C or SIGTERM cancels the drill's queries but lets the deferred
	// cleanup (the scratch folder, the scratch database) run.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// record writes the outcome into the live trail; a drill that cannot
	// be recorded did not count.
	record := func(id, outcome string, details map[string]string) error {
		// Recorded after an interruption too: the drill did not pass.
		return g.Trail.Record(context.WithoutCancel(ctx), audit.Entry{Actor: cliActor(), Action: "backup.drill", ObjectType: "backup",
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
	// A PostgreSQL gateway's backup goes into a scratch database made on
	// the same server for this drill and dropped after it, whatever the
	// outcome.
	var sdb *scratchDB
	if store.IsPostgresURL(g.Cfg.Store.URL) {
		if sdb, err = newScratchDB(ctx, g.Store.DB(), g.Cfg.Store.URL, stderr); err != nil {
			return fail(m.ID, "scratch database", err, nil)
		}
		defer func() {
			if err := sdb.drop(); err != nil {
				fmt.Fprintf(stderr, "phigate backup drill: %v\n", err)
			}
		}()
	}
	scratchURL := ""
	if sdb != nil {
		scratchURL = sdb.url
	}
	dcfg := gateway.DrillConfig(g.Cfg, scratch, scratchURL)
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
	where := "a scratch folder"
	if sdb != nil {
		if err := sdb.drop(); err != nil {
			return fail(r.ID, "drop scratch database", err, details)
		}
		details["scratch_database"] = "dropped"
		where = "a scratch folder and scratch database " + sdb.name + " (dropped)"
	}
	if err := record(r.ID, audit.OK, details); err != nil {
		fmt.Fprintf(stderr, "phigate backup drill: the drill passed but could not be recorded: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "drill passed: backup %s (taken %s) restored into %s, audit chain verified (%s), %s opened with the escrow key and verified, scratch folder wiped; recorded as backup.drill in the live audit trail.\n",
		r.ID, r.Created.Format(time.RFC3339), where, web.Count(int(res.Entries), "entry", "entries"), web.Count(res.Messages, "message"))
	return 0
}
