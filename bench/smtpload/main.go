// Command smtpload drives many concurrent authenticated SMTP submissions
// against a running gateway (phigate by default on 127.0.0.1:2587) and
// reports throughput and accept latency.
//
// Each connection does EHLO, STARTTLS (or implicit TLS), EHLO, AUTH PLAIN
// once, then submits -per-conn messages (MAIL/RCPT/DATA, RSET between
// messages) before reconnecting. Accept latency is measured per message from
// the start of MAIL FROM to the 250 reply after the DATA terminator.
//
// By default only loopback targets are accepted; see -allow-remote.
//
// See bench/README.md for examples.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain parses args, runs the load and prints the result. It returns the
// process exit code: 0 if every message was accepted, 1 if any failed (or
// none were accepted), 2 on usage/configuration errors.
func realMain(args []string, stdout, stderr io.Writer) int {
	cfg, asJSON, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "smtpload: %v\n", err)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "smtpload: %v\n", err)
		return 2
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			fmt.Fprintf(stderr, "smtpload: %v\n", err)
			return 2
		}
	} else {
		printText(stdout, res)
	}
	if res.Failed > 0 || res.OK == 0 {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (Config, bool, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("smtpload", flag.ContinueOnError)
	fs.SetOutput(stderr)

	var (
		to       string
		passFile string
		asJSON   bool
		noAuth   bool
	)
	fs.StringVar(&cfg.Addr, "addr", cfg.Addr, "gateway submission address host:port (loopback only unless -allow-remote)")
	fs.BoolVar(&cfg.ImplicitTLS, "implicit-tls", cfg.ImplicitTLS, "use implicit TLS (submissions, like port 465) instead of STARTTLS")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", cfg.AllowRemote, "allow a non-loopback -addr (only load servers you operate)")
	fs.IntVar(&cfg.Conns, "conns", cfg.Conns, "concurrent connections")
	fs.IntVar(&cfg.N, "n", cfg.N, "total messages to attempt (always bounds the run)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "stop starting new messages after this long, e.g. 30s (0 = only -n); whichever comes first")
	fs.IntVar(&cfg.Size, "size", cfg.Size, "approximate message size in bytes (headers+body)")
	fs.StringVar(&cfg.User, "user", cfg.User, "AUTH PLAIN username (empty = no AUTH)")
	fs.StringVar(&cfg.Pass, "pass", cfg.Pass, "AUTH PLAIN password (visible in ps; prefer -pass-file)")
	fs.StringVar(&passFile, "pass-file", "", "read the AUTH PLAIN password from this file (first line)")
	fs.BoolVar(&noAuth, "no-auth", false, "STARTTLS (or implicit TLS) but no AUTH, for an MTA that relays for loopback (e.g. bench/ratio.sh's Postfix); refuses -user/-pass")
	fs.StringVar(&cfg.From, "from", cfg.From, "envelope and header sender (default: -user)")
	fs.StringVar(&to, "to", "patient@example.net", `recipient(s), comma separated; "gen" generates load-<conn>-<i>@example.net`)
	fs.IntVar(&cfg.RcptsPerMsg, "rcpts-per-msg", cfg.RcptsPerMsg, `recipients per message when -to is "gen"`)
	fs.BoolVar(&cfg.Insecure, "insecure", cfg.Insecure, "skip TLS certificate verification (dev certs are self-signed); -insecure=false to verify")
	fs.IntVar(&cfg.PerConn, "per-conn", cfg.PerConn, "messages per connection before reconnecting")
	fs.IntVar(&cfg.MaxRetries, "max-retries", cfg.MaxRetries, "consecutive failed connection attempts per worker before it gives up")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "dial/TLS/per-command timeout")
	fs.BoolVar(&asJSON, "json", false, "print results as JSON")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: smtpload [flags]\n\nDrives concurrent SMTP submissions (TLS, AUTH PLAIN unless -no-auth) against a server and\nreports throughput and accept latency (MAIL FROM .. 250 after DATA).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}

	// -no-auth says outright what an empty -user implies, so a script
	// cannot send AUTH by accident from a stray -user.
	if noAuth && (cfg.User != "" || cfg.Pass != "" || passFile != "") {
		return cfg, false, errors.New("-no-auth cannot be combined with -user, -pass or -pass-file")
	}
	if passFile != "" {
		if cfg.Pass != "" {
			return cfg, false, errors.New("use either -pass or -pass-file, not both")
		}
		b, err := os.ReadFile(passFile)
		if err != nil {
			return cfg, false, fmt.Errorf("reading -pass-file: %w", err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		cfg.Pass = strings.TrimRight(line, "\r")
	}

	if strings.EqualFold(strings.TrimSpace(to), "gen") {
		cfg.GenRcpts = true
		cfg.To = nil
	} else {
		cfg.To = nil
		for _, a := range strings.Split(to, ",") {
			if a = strings.TrimSpace(a); a != "" {
				cfg.To = append(cfg.To, a)
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, false, err
	}
	return cfg, asJSON, nil
}

func printText(w io.Writer, r Result) {
	mode := "STARTTLS"
	if r.Config.ImplicitTLS {
		mode = "implicit TLS"
	}
	fmt.Fprintf(w, "target        %s (%s, auth=%v)\n", r.Config.Addr, mode, r.Config.Auth)
	fmt.Fprintf(w, "load          %d conns, %d msgs max, %d per conn, ~%d bytes/msg, %d rcpt/msg",
		r.Config.Conns, r.Config.N, r.Config.PerConn, r.MsgBytes, r.Config.RcptsPerMsg)
	if r.Config.Duration != "" {
		fmt.Fprintf(w, ", duration %s", r.Config.Duration)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "stopped       %s\n", r.StopReason)
	fmt.Fprintf(w, "messages ok   %d\n", r.OK)
	fmt.Fprintf(w, "failed        %d\n", r.Failed)
	for _, f := range r.Failures {
		fmt.Fprintf(w, "  %6d  %s\n", f.Count, f.Reply)
	}
	if r.Aborted > 0 {
		fmt.Fprintf(w, "aborted       %d (in flight when interrupted)\n", r.Aborted)
	}
	setup := "connect+TLS+EHLO"
	if r.Config.Auth {
		setup += "+AUTH"
	}
	fmt.Fprintf(w, "sessions      %d (setup mean %.2f ms: %s)\n", r.Sessions, r.SetupMeanMs, setup)
	if r.ConnErrors > 0 {
		fmt.Fprintf(w, "conn errors   %d\n", r.ConnErrors)
		for _, f := range r.ConnErrorKinds {
			fmt.Fprintf(w, "  %6d  %s\n", f.Count, f.Reply)
		}
	}
	fmt.Fprintf(w, "wall time     %.3f s\n", r.WallSeconds)
	fmt.Fprintf(w, "throughput    %.1f msg/s (%.2f MB/s)\n", r.MsgsPerSec, r.MsgsPerSec*float64(r.MsgBytes)/1e6)
	l := r.LatencyMs
	fmt.Fprintf(w, "latency ms    p50 %.2f  p90 %.2f  p99 %.2f  max %.2f  (mean %.2f, n=%d)\n",
		l.P50, l.P90, l.P99, l.Max, l.Mean, l.Count)
}
