// Command smtpidle floods a running gateway's SMTP port with idle
// connections (connect, read the greeting, then say nothing) and reports
// what they cost the gateway: resident memory and open file descriptors,
// read from /proc/<pid>, before, while the flood is held and after; how
// many connections the gateway refused (421) or closed to make room; and
// whether a legitimate client (STARTTLS, EHLO, and AUTH plus one message if
// credentials are given) and the portal are served meanwhile.
//
// Connections come from many loopback addresses (127.0.x.y, -per-ip each)
// so that the per-address cap does not hide the cost. Only loopback
// targets are accepted. See docs/perf.md for the command and the figures.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/bench/procstat"
)

type config struct {
	addr, portal   string
	n, perIP, pid  int
	workers        int
	settle         time.Duration
	user, passFile string
	// -active: sessions in a slow transaction beside the idle ones (active.go)
	active, activeSize int
	trickle            time.Duration
}

func main() {
	var c config
	flag.StringVar(&c.addr, "addr", "127.0.0.1:2587", "the gateway's STARTTLS SMTP address (loopback only)")
	flag.StringVar(&c.portal, "portal", "", "a portal URL to fetch during the flood (e.g. https://127.0.0.1:8443/login)")
	flag.IntVar(&c.n, "n", 20000, "idle connections to open")
	flag.IntVar(&c.perIP, "per-ip", 20, "connections per source address (127.0.0.2 upwards)")
	flag.IntVar(&c.pid, "pid", 0, "the gateway's process id, to read its memory and descriptors from /proc (0: skip)")
	flag.IntVar(&c.workers, "workers", 64, "connections opened in parallel")
	flag.DurationVar(&c.settle, "settle", 2*time.Second, "pause before measuring once the connections are open")
	flag.StringVar(&c.user, "user", "", "account for the legitimate client's AUTH and message (optional)")
	flag.StringVar(&c.passFile, "pass-file", "", "file holding that account's app password")
	flag.IntVar(&c.active, "active", 0, "sessions that AUTH and then send one message slowly, held with the idle ones (needs -user)")
	flag.IntVar(&c.activeSize, "active-size", 20480, "bytes of each active session's message")
	flag.DurationVar(&c.trickle, "trickle", time.Second, "an active session sends one body line per trickle while held")
	flag.Parse()
	if err := loopbackOnly(c.addr); err != nil {
		fmt.Fprintln(os.Stderr, "smtpidle:", err)
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "smtpidle:", err)
		os.Exit(1)
	}
}

func loopbackOnly(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("%s is not a loopback address: only flood servers you run here", addr)
	}
	return nil
}

// source is the i-th client's address: 127.0.0.2 upwards, perIP each.
func source(i, perIP int) net.IP {
	n := 2 + i/perIP
	return net.IPv4(127, byte(n>>16), byte(n>>8), byte(n))
}

func run(c config) error {
	before := procstat.Read(c.pid)
	fmt.Printf("gateway before:         %s\n", before)
	var act *active
	if c.active > 0 {
		var err error
		if act, err = startActive(c); err != nil {
			return err
		}
		fmt.Printf("active sessions:        %d of %d in DATA, trickling\n", act.inData.Load(), c.active)
	}
	var held, refused, failed, closedByGateway atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	jobs := make(chan int)
	start := time.Now()
	for range c.workers {
		go func() {
			for i := range jobs {
				conn, greeting, err := open(c.addr, source(i, c.perIP))
				switch {
				case err != nil:
					failed.Add(1)
					wg.Done()
				case strings.HasPrefix(greeting, "421"):
					refused.Add(1)
					conn.Close()
					wg.Done()
				default:
					held.Add(1)
					go func() {
						defer wg.Done()
						if idle(conn, stop) {
							closedByGateway.Add(1)
						}
						held.Add(-1)
					}()
				}
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
	fmt.Printf("idle connections:       %d attempted in %s: %d held now, %d closed by the gateway to make room or on timeout, %d refused with 421, %d failed to connect\n",
		c.n, opened.Round(time.Millisecond), held.Load(), closedByGateway.Load(), refused.Load(), failed.Load())
	fmt.Printf("gateway while flooded:  %s\n", during)
	if act != nil {
		fmt.Printf("active sessions:        %d in DATA now\n", act.inData.Load())
	}
	if sessions := held.Load() + inData(act); before.OK && during.OK && sessions > 0 {
		fmt.Printf("per held session:       %.1f KiB of RSS (%d sessions)\n", float64(during.RSSKiB-before.RSSKiB)/float64(sessions), sessions)
	}
	legitSMTP(c)
	if c.portal != "" {
		legitPortal(c.portal)
	}
	if act != nil {
		act.finish()
	}
	close(stop)
	wg.Wait()
	time.Sleep(c.settle)
	fmt.Printf("gateway after:          %s\n", procstat.Read(c.pid))
	return nil
}

// open connects from the address from and reads the greeting.
func open(addr string, from net.IP) (net.Conn, string, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}, Timeout: 30 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil && line == "" {
		conn.Close()
		return nil, "", err
	}
	conn.SetReadDeadline(time.Time{})
	return conn, line, nil
}

// idle holds conn without sending until the gateway closes it (true) or
// stop is closed (false).
func idle(conn net.Conn, stop <-chan struct{}) bool {
	closed := make(chan struct{})
	go func() { io.Copy(io.Discard, conn); close(closed) }()
	defer conn.Close()
	select {
	case <-closed:
		return true
	case <-stop:
		return false
	}
}

// legitSMTP is one well-behaved client from 127.0.0.1 during the flood.
func legitSMTP(c config) {
	start := time.Now()
	report := func(what string, err error) {
		if err != nil {
			fmt.Printf("legitimate SMTP client: failed at %s: %v\n", what, err)
			return
		}
		fmt.Printf("legitimate SMTP client: %s in %s\n", what, time.Since(start).Round(time.Millisecond))
	}
	conn, greeting, err := open(c.addr, net.IPv4(127, 0, 0, 1))
	if err != nil || !strings.HasPrefix(greeting, "220") {
		report("connect", fmt.Errorf("%v %q", err, greeting))
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	s := &session{conn: conn, r: bufio.NewReader(conn)}
	for _, cmd := range []string{"EHLO bench.example", "STARTTLS"} {
		if err := s.cmd(cmd, "2"); err != nil {
			report(cmd, err)
			return
		}
	}
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
	s.conn, s.r = tc, bufio.NewReader(tc)
	if err := s.cmd("EHLO bench.example", "250"); err != nil {
		report("EHLO after STARTTLS", err)
		return
	}
	if c.user == "" {
		report("STARTTLS and EHLO", nil)
		s.cmd("QUIT", "221")
		return
	}
	pass, err := os.ReadFile(c.passFile)
	if err != nil {
		report("reading -pass-file", err)
		return
	}
	auth := base64.StdEncoding.EncodeToString([]byte("\x00" + c.user + "\x00" + strings.TrimSpace(string(pass))))
	msg := "From: " + c.user + "\r\nTo: " + c.user + "\r\nSubject: smtpidle\r\n\r\nsent during an idle flood\r\n."
	for _, step := range [][2]string{{"AUTH PLAIN " + auth, "235"}, {"MAIL FROM:<" + c.user + ">", "250"},
		{"RCPT TO:<" + c.user + ">", "250"}, {"DATA", "354"}, {msg, "250"}} {
		if err := s.cmd(step[0], step[1]); err != nil {
			report(strings.Fields(step[0])[0], err)
			return
		}
	}
	report("STARTTLS, AUTH and one message accepted", nil)
	s.cmd("QUIT", "221")
}

type session struct {
	conn net.Conn
	r    *bufio.Reader
}

// cmd sends line and checks that the reply starts with want.
func (s *session) cmd(line, want string) error {
	if _, err := io.WriteString(s.conn, line+"\r\n"); err != nil {
		return err
	}
	for {
		reply, err := s.r.ReadString('\n')
		if err != nil {
			return err
		}
		if len(reply) >= 4 && reply[3] == '-' {
			continue
		}
		if !strings.HasPrefix(reply, want) {
			return fmt.Errorf("%s", strings.TrimSpace(reply))
		}
		return nil
	}
}

// legitPortal fetches one portal page on a new connection.
func legitPortal(url string) {
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	start := time.Now()
	resp, err := hc.Get(url)
	if err != nil {
		fmt.Printf("portal:                 failed: %v\n", err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	fmt.Printf("portal:                 %d in %s\n", resp.StatusCode, time.Since(start).Round(time.Millisecond))
}
