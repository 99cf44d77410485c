package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/phigate/phigate/store"
	"github.com/phigate/phigate/web"
)

// storeCmd runs `phigate store upgrade|migrate` (issue 11.1).
func storeCmd(args []string, stdout, stderr io.Writer) int {
	const use = "phigate store: upgrade [--url URL] | migrate --from sqlite:PATH --to postgres://..."
	if len(args) == 0 || (args[0] != "upgrade" && args[0] != "migrate") {
		fmt.Fprintln(stderr, use)
		return 2
	}
	fs := flag.NewFlagSet("store "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", os.Getenv("PHIGATE_STORE_URL"), "the store to bring to this version's schema (upgrade)")
	from := fs.String("from", "", "the SQLite store to copy, sqlite:PATH (migrate)")
	to := fs.String("to", "", "the empty PostgreSQL database to copy it into, postgres://... (migrate)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx := context.Background()
	if args[0] == "upgrade" {
		if !store.IsPostgresURL(*url) && !strings.HasPrefix(*url, "sqlite:") {
			fmt.Fprintln(stderr, "phigate store upgrade: --url (or PHIGATE_STORE_URL) must be postgres://... or sqlite:PATH")
			return 2
		}
		s, err := store.Open(ctx, *url, "")
		if err != nil {
			fmt.Fprintf(stderr, "phigate store upgrade: %v\n", err)
			return 1
		}
		s.Close()
		fmt.Fprintln(stdout, "OK: the schema is current")
		return 0
	}
	if !strings.HasPrefix(*from, "sqlite:") || !store.IsPostgresURL(*to) {
		fmt.Fprintln(stderr, use)
		return 2
	}
	n, err := migrateStore(ctx, strings.TrimPrefix(*from, "sqlite:"), *to)
	if err != nil {
		fmt.Fprintf(stderr, "phigate store migrate: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "OK: %s copied; set store.url and run phigate audit verify\n", n)
	return 0
}

// migrateStore copies the SQLite store at path into the PostgreSQL one at
// url and describes what it copied.
func migrateStore(ctx context.Context, path, url string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		// OpenSQLite would create an empty database here.
		return "", err
	}
	src, err := store.OpenSQLite(ctx, path)
	if err != nil {
		return "", err
	}
	defer src.Close()
	dst, err := store.OpenPostgres(ctx, url)
	if err != nil {
		return "", err
	}
	defer dst.Close()
	counts, err := store.CopyAll(ctx, src, dst)
	if err != nil {
		return "", err
	}
	return web.Count(counts["users"], "user") + ", " + web.Count(counts["messages"], "message") + ", " + web.Count(counts["audit_log"], "audit entry", "audit entries"), nil
}
