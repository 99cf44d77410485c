// Command slowhttps opens many slow HTTPS clients (slowloris: TLS
// handshake, then request headers trickled one byte at a time and never
// finished) against a running portal, and reports what they cost the
// gateway: its resident memory and open file descriptors (read from
// /proc/<pid>) before, while they are held, and after the gateway has
// dropped them; and whether a legitimate request is served meanwhile.
//
// Clients come from several loopback addresses (127.0.0.2, 127.0.0.3, ...;
// -per-ip each) so that a per-address cap does not hide the cost. Only
// loopback targets are accepted. See bench/README.md and docs/perf.md.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/bench/procstat"
)

type config struct {
	addr     string
	n        int
	perIP    int
	pid      int
	workers  int
	trickle  time.Duration
	maxWait  time.Duration
	settle   time.Duration
	loginURL string
}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:8443", "the portal's HTTPS address (loopback only)")
	flag.IntVar(&c.n, "n", 2000, "slow clients to open")
	flag.IntVar(&c.perIP, "per-ip", 50, "slow clients per source address (127.0.0.2 upwards)")
	flag.IntVar(&c.pid, "pid", 0, "the gateway's process id, to read its memory and descriptors from /proc (0: skip)")
	flag.IntVar(&c.workers, "workers", 64, "connections opened in parallel")
	flag.DurationVar(&c.trickle, "trickle", time.Second, "interval between the header bytes each client sends")
	flag.DurationVar(&c.maxWait, "max-wait", 3*time.Minute, "how long to wait for the gateway to drop the clients")
	flag.DurationVar(&c.settle, "settle", 2*time.Second, "pause before reading /proc after the clients are open")
	flag.Parse()
	if err := loopbackOnly(c.addr); err != nil {
		fmt.Fprintln(os.Stderr, "slowhttps:", err)
		os.Exit(2)
	}
	c.loginURL = "https://" + c.addr + "/login"
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "slowhttps:", err)
		os.Exit(1)
	}
}

func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address: only load servers you run here", addr)
	}
	return nil
}

func run(c config) error {
	before := procstat.Read(c.pid)
	fmt.Printf("gateway before:        %s\n", before)

	stop := make(chan struct{})
	var held, refused, dropped atomic.Int64
	var wg sync.WaitGroup
	jobs := make(chan int)
	start := time.Now()
	for range c.workers {
		go func() {
			for i := range jobs {
				from := net.IPv4(127, 0, 0, byte(2+i/c.perIP))
				conn, err := open(c.addr, from)
				if err != nil {
					refused.Add(1)
					wg.Done()
					continue
				}
				held.Add(1)
				go func() {
					defer wg.Done()
					trickle(conn, c.trickle, stop)
					held.Add(-1)
					dropped.Add(1)
				}()
			}
		}()
	}
	for i := range c.n {
		wg.Add(1)
		jobs <- i
	}
	close(jobs)
	opened := time.Since(start)
	time.Sleep(c.settle)
	during := procstat.Read(c.pid)
	fmt.Printf("slow clients:          %d held, %d refused by the gateway, opened in %s\n", held.Load(), refused.Load(), opened.Round(time.Millisecond))
	fmt.Printf("gateway while held:    %s\n", during)
	if before.OK && during.OK {
		fmt.Printf("cost per held client:  %.1f KiB, %.2f fds\n",
			float64(during.RSSKiB-before.RSSKiB)/float64(max(held.Load(), 1)), float64(during.FDs-before.FDs)/float64(max(held.Load(), 1)))
	}
	st, took, err := legit(c.loginURL)
	if err != nil {
		fmt.Printf("legitimate request:    failed: %v\n", err)
	} else {
		fmt.Printf("legitimate request:    %d in %s\n", st, took.Round(time.Millisecond))
	}

	waitStart := time.Now()
	for held.Load() > 0 && time.Since(waitStart) < c.maxWait {
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("dropped by the gateway: %d, the last %s after they were all open\n", dropped.Load(), (time.Since(waitStart) + c.settle).Round(100*time.Millisecond))
	close(stop)
	wg.Wait()
	time.Sleep(c.settle)
	fmt.Printf("gateway after:         %s\n", procstat.Read(c.pid))
	return nil
}

// open connects from the address from, completes TLS (HTTP/1.1) and sends
// the start of a request.
func open(addr string, from net.IP) (*tls.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 30 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(ctx); err != nil {
		raw.Close()
		return nil, err
	}
	if _, err := io.WriteString(conn, "GET /login HTTP/1.1\r\nHost: portal\r\nX-Slow: "); err != nil {
		raw.Close()
		return nil, err
	}
	return conn, nil
}

// trickle sends one header byte per interval until the gateway closes the
// connection or stop is closed.
func trickle(conn *tls.Conn, every time.Duration, stop <-chan struct{}) {
	defer conn.Close()
	closed := make(chan struct{})
	go func() { io.Copy(io.Discard, conn); close(closed) }()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-closed:
			return
		case <-stop:
			return
		case <-t.C:
			if _, err := conn.Write([]byte("a")); err != nil {
				return
			}
		}
	}
}

// legit does one ordinary request from 127.0.0.1 on a new connection.
func legit(url string) (int, time.Duration, error) {
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	start := time.Now()
	resp, err := hc.Get(url)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, time.Since(start), nil
}
