package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// healthcheck fetches a health URL and exits 0 on a 2xx answer, 1
// otherwise: the container image has no shell or curl (distroless), so
// docker compose's healthcheck runs the binary itself (docs/deploy.md).
//
// The portal's certificate names the public host, not the loopback address
// a container checks itself on. So without --ca the certificate is not
// verified, but only for a loopback host: the check carries no secret and
// reads only the status. Any other host needs --ca or the system roots.
func healthcheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	caFile := fs.String("ca", "", "PEM file of the certificate (or its CA) to trust")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: phigate healthcheck [--timeout 5s] [--ca FILE] URL   (e.g. https://127.0.0.1:8443/readyz)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	u, err := url.Parse(fs.Arg(0))
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		fmt.Fprintln(stderr, "healthcheck: the URL must be http(s)://HOST[:PORT]/PATH")
		return 2
	}
	tlsCfg, err := healthTLS(u.Hostname(), *caFile)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 2
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprintf(stdout, "%d %s", resp.StatusCode, body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return 1
	}
	return 0
}

// healthTLS trusts caFile if given; otherwise the system roots, or, for a
// loopback host only, any certificate.
func healthTLS(host, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case caFile != "":
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no certificates found", caFile)
		}
		cfg.RootCAs = pool
	case isLoopback(host):
		cfg.InsecureSkipVerify = true
	}
	return cfg, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
