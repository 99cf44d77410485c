package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/gateway"
)

// commonFlags are the settings every command can take from the command line.
type commonFlags struct {
	config, data string
	dev          bool
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", os.Getenv("PHIGATE_CONFIG"), "TOML configuration `file` (production)")
	fs.StringVar(&c.data, "data", "", "data folder (default ./phigate-data)")
}

// load builds the effective configuration: defaults, file, environment,
// then the command line.
func (c *commonFlags) load(dev bool, override func(*config.Config)) (config.Config, error) {
	env := os.Environ()
	cfg, err := config.Load(c.config, env)
	if err != nil {
		return cfg, err
	}
	if c.data != "" {
		cfg.Server.DataDir = c.data
	}
	if override != nil {
		override(&cfg)
	}
	if dev {
		cfg.ApplyDev()
	}
	cfg.Fill()
	return cfg, cfg.Validate()
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf commonFlags
	cf.register(fs)
	fs.BoolVar(&cf.dev, "dev", false, "development mode: generate keys, certificate and folders; notices go to DATA/maildrop")
	smtpAddr := fs.String("smtp", "", "SMTP submission (STARTTLS) listen `address` (default 127.0.0.1:2587)")
	smtpsAddr := fs.String("smtps", "", "SMTP implicit TLS listen `address` (default 127.0.0.1:2465)")
	httpAddr := fs.String("http", "", "HTTPS portal listen `address` (default 127.0.0.1:8443)")
	metricsAddr := fs.String("metrics", "", "Prometheus metrics listen `address` (default 127.0.0.1:9464; loopback only unless metrics.allow_remote)")
	debugPprof := fs.Bool("debug-pprof", false, "also serve Go's profiler at /debug/pprof/ on the metrics listener (refused unless its address is loopback)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !cf.dev && cf.config == "" {
		fmt.Fprintln(stderr, "phigate serve: give --config FILE for production, or --dev to try it out")
		return 2
	}
	cfg, err := cf.load(cf.dev, func(c *config.Config) {
		if *smtpAddr != "" {
			c.Server.SMTPAddr = *smtpAddr
		}
		if *smtpsAddr != "" {
			c.Server.SMTPSAddr = *smtpsAddr
		}
		if *httpAddr != "" {
			c.Server.HTTPAddr = *httpAddr
		}
		if *metricsAddr != "" {
			c.Metrics.Addr = *metricsAddr
		}
		c.Metrics.Pprof = *debugPprof
	})
	if err == nil && !cf.dev {
		err = cfg.ValidateProduction(fileExists)
	}
	if err == nil && cfg.Metrics.Pprof && cfg.Metrics.Addr == "" {
		err = errors.New("--debug-pprof: the profiler is served on the metrics listener, and metrics.addr is empty")
	}
	if err != nil {
		fmt.Fprintf(stderr, "phigate serve: refusing to start:\n  %v\n", indent(err))
		return 1
	}
	log, closer, err := gateway.OpenLogger(cfg, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "phigate serve: %v\n", err)
		return 1
	}
	defer closer.Close()
	cfg.Runtime.Apply()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g, err := gateway.Open(ctx, cfg, log)
	if err == nil {
		err = g.Start(ctx)
	}
	if err != nil {
		log.Error("cannot start", "err", err)
		fmt.Fprintf(stderr, "phigate serve: %v\n", err)
		return 1
	}
	smtp, smtps, https := g.Addrs()
	mode := "production"
	if cfg.Dev {
		mode = "DEV MODE (not for real patient data)"
	}
	fmt.Fprintf(stdout, "phigate is running, %s\n", mode)
	fmt.Fprintf(stdout, "  data folder:            %s\n", cfg.Server.DataDir)
	fmt.Fprintf(stdout, "  SMTP submission (STARTTLS): %s\n", smtp)
	fmt.Fprintf(stdout, "  SMTP implicit TLS:      %s\n", smtps)
	fmt.Fprintf(stdout, "  HTTPS portal:           https://%s  (links use %s)\n", https, cfg.Server.PublicURL)
	if a := g.MetricsAddr(); a != "" {
		fmt.Fprintf(stdout, "  metrics (Prometheus):   http://%s/metrics\n", a)
		if cfg.Metrics.Pprof {
			fmt.Fprintf(stdout, "  profiler (debug):       http://%s/debug/pprof/\n", a)
		}
	}
	if cfg.Dev {
		fmt.Fprintf(stdout, "  WARNING dev escrow PRIVATE key and passphrase are in the data folder (%s, %s): never do this with real patient data\n",
			gateway.DataPath(cfg, "escrow-private.asc"), gateway.DataPath(cfg, "escrow-passphrase.txt"))
	}
	if cfg.Dev && cfg.Smarthost.Addr == "" {
		fmt.Fprintf(stdout, "  notices and onward mail: %s\n", gateway.DataPath(cfg, "maildrop"))
	}
	<-ctx.Done()
	// A second SIGTERM or Ctrl-C ends the process at once (as kill -9
	// would: nothing answered 250 is lost).
	stop()
	log.Info("shutting down: finishing transactions and notice sends under way", "grace", cfg.Server.ShutdownGrace.Duration)
	if err := g.Close(); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("shutdown", "err", err)
		return 1
	}
	return 0
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func indent(err error) string {
	s := err.Error()
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		out = append(out, s[i])
		if s[i] == '\n' {
			out = append(out, ' ', ' ')
		}
	}
	return string(out)
}
