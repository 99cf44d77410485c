// Command wsload holds many authenticated portal websockets open on two
// phigate nodes that share one Redis and one database, and measures what
// they cost and how fast a message event reaches them (issue 10.2):
//
//   - it starts a private redis-server (or uses -redis) and two gateway
//     nodes, each a child process of its own (this binary with -node), on
//     one data folder; the first creates a staff account and -users
//     patient accounts;
//   - it signs every patient in (one session each; the portal allows
//     portal.DefaultWSPerUser websockets per account and node) and opens -n
//     websockets over TLS with the session cookie, each account's pages
//     alternately on node A and node B, from many loopback source
//     addresses;
//   - it reads each node's resident memory (/proc/<pid>/status) before and
//     after, and its CPU time while the connections are held idle;
//   - it sends -messages messages over SMTP to node A, one recipient at a
//     time, and times every "new-message" frame each of that recipient's
//     pages receives, on both nodes, against the client's end of DATA and
//     against the 250.
//
// Loopback only; see docs/perf.md for the command and the figures.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/gorilla/websocket"
	"github.com/phigate/phigate/portal"
)

type options struct {
	n, users, messages, workers int
	redisURL                    string
	hold, redisTimeout          time.Duration
	keep                        bool
}

func main() {
	var o options
	node := flag.Bool("node", false, "internal: run one gateway node")
	data := flag.String("data", "", "internal: the node's data folder")
	flag.IntVar(&o.n, "n", 20000, "websockets to open (half on each node)")
	flag.IntVar(&o.users, "users", 0, "patient accounts (default: n / portal.DefaultWSPerUser, rounded up)")
	flag.IntVar(&o.messages, "messages", 200, "messages to send for the fan-out latency")
	flag.IntVar(&o.workers, "workers", 32, "websockets opened in parallel")
	flag.StringVar(&o.redisURL, "redis", "", "Redis URL shared by the nodes (default: start a private redis-server)")
	flag.DurationVar(&o.hold, "hold", 10*time.Second, "how long the connections are held idle while CPU time is measured")
	flag.BoolVar(&o.keep, "keep", false, "keep the data folder")
	flag.DurationVar(&o.redisTimeout, "redis-timeout", 0, "the nodes' redis.timeout (0: the default)")
	flag.Parse()
	if *node {
		if err := runNode(*data, o.redisURL, o.users, o.redisTimeout); err != nil {
			fmt.Fprintln(os.Stderr, "wsload node:", err)
			os.Exit(1)
		}
		return
	}
	if o.users == 0 {
		o.users = (o.n + portal.DefaultWSPerUser - 1) / portal.DefaultWSPerUser
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "wsload:", err)
		os.Exit(1)
	}
}

// child is one node process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	nodeReady
}

func startNode(o options, data string, users int) (*child, error) {
	cmd := exec.Command(os.Args[0], "-node", "-data", data, "-redis", o.redisURL, "-users", strconv.Itoa(users),
		"-redis-timeout", o.redisTimeout.String())
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	c := &child{cmd: cmd, stdin: in}
	if err := json.NewDecoder(bufio.NewReader(out)).Decode(&c.nodeReady); err != nil {
		cmd.Process.Kill()
		return nil, fmt.Errorf("node did not start: %w", err)
	}
	return c, nil
}

func (c *child) stop() {
	c.stdin.Close()
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		c.cmd.Process.Kill()
	}
}

// startRedis runs a private, unpersisted redis-server on a free port.
func startRedis(dir string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--maxclients", "10000")
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "redis://" + addr + "/0", func() { cmd.Process.Kill(); cmd.Wait() }, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	return "", nil, errors.New("redis-server did not start")
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "wsload-")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	if o.redisURL == "" {
		url, stop, err := startRedis(dir)
		if err != nil {
			return err
		}
		defer stop()
		o.redisURL = url
	}
	data := filepath.Join(dir, "data")
	began := time.Now()
	a, err := startNode(o, data, o.users) // creates keys, database and accounts
	if err != nil {
		return err
	}
	defer a.stop()
	b, err := startNode(o, data, 0)
	if err != nil {
		return err
	}
	defer b.stop()
	fmt.Printf("nodes up with %d accounts in %s (A pid %d %s, B pid %d %s)\n", o.users, time.Since(began).Round(time.Millisecond),
		a.PID, a.HTTPS, b.PID, b.HTTPS)

	tokens, err := signIn(a.HTTPS, o.users, 4) // about the number of password-hash slots
	if err != nil {
		return err
	}
	nodes := []*child{a, b}
	before := []int64{rss(a.PID), rss(b.PID)}
	l := newLoad(tokens)
	opened := l.open(o, nodes)
	time.Sleep(2 * time.Second)
	after := []int64{rss(a.PID), rss(b.PID)}
	fmt.Printf("websockets open: %d of %d (A %d, B %d), refused or failed: %d (%s)\n", opened, o.n,
		l.perNode[0].Load(), l.perNode[1].Load(), l.failed.Load(), l.firstErr())
	for i := range nodes {
		n := l.perNode[i].Load()
		per := int64(0)
		if n > 0 {
			per = (after[i] - before[i]) / n
		}
		fmt.Printf("node %c: resident %d MiB -> %d MiB with %d websockets: %.1f KiB per connection\n",
			'A'+i, before[i]>>20, after[i]>>20, n, float64(per)/1024)
	}
	cpu0 := []float64{cpuSeconds(a.PID), cpuSeconds(b.PID)}
	time.Sleep(o.hold)
	for i, c := range nodes {
		fmt.Printf("node %c: %.2f CPU cores while holding them idle for %s (state reports every 5 s, pings)\n",
			'A'+i, (cpuSeconds(c.PID)-cpu0[i])/o.hold.Seconds(), o.hold)
	}
	fmt.Printf("still open after holding: %d (%s)\n", l.live.Load(), l.closes())
	if err := l.fanout(o, a); err != nil {
		return err
	}
	l.report()
	fmt.Printf("still open at the end: %d (%s)\n", l.live.Load(), l.closes())
	l.closeAll()
	return nil
}

// signIn opens one session per patient through the API; it returns the
// session cookies.
func signIn(https string, users, workers int) ([]string, error) {
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		MaxIdleConnsPerHost: workers}, Timeout: 60 * time.Second}
	tokens := make([]string, users)
	var next atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	began := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= users {
					return
				}
				var err error
				tokens[i], err = signInOne(hc, https, i)
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, err)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	fmt.Printf("%d sessions in %s\n", users, time.Since(began).Round(time.Millisecond))
	return tokens, firstErr
}

// signInOne signs patient i in, waiting and retrying while every
// password-hash slot is busy (429 with Retry-After).
func signInOne(hc *http.Client, https string, i int) (string, error) {
	body, _ := json.Marshal(map[string]string{"email": patientAddr(i), "password": benchPW})
	for {
		resp, err := hc.Post("https://"+https+"/api/v1/login", "application/json", strings.NewReader(string(body)))
		if err != nil {
			return "", err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			secs, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
			time.Sleep(time.Duration(max(secs, 1)) * 20 * time.Millisecond)
			continue
		}
		for _, c := range resp.Cookies() {
			if c.Name == portal.CookieName {
				return c.Value, nil
			}
		}
		return "", fmt.Errorf("sign-in %d: HTTP %d", i, resp.StatusCode)
	}
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// load is the client side: every open websocket and the frames they hear.
type load struct {
	tokens  []string
	perNode [2]atomic.Int64
	live    atomic.Int64 // open now
	failed  atomic.Int64
	closed  map[string]int // why open websockets ended
	errMu   sync.Mutex
	errs    map[string]int
	connsMu sync.Mutex
	conns   []*websocket.Conn
	byUser  map[int]int // open websockets per account

	sendMu  sync.Mutex
	pending map[int]*sendRec // account -> the message in flight to it
	done    []*sendRec
}

// sendRec is one message: when the client finished DATA, when the 250
// came, and when each page heard of it.
type sendRec struct {
	dataEnd, accepted time.Time
	frames            []time.Time
	node              []int
	want              int
	all               chan struct{}
}

func newLoad(tokens []string) *load {
	return &load{tokens: tokens, errs: map[string]int{}, closed: map[string]int{}, byUser: map[int]int{}, pending: map[int]*sendRec{}}
}

func (l *load) noteErr(err error) {
	l.failed.Add(1)
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i > 0 && len(msg) > 80 {
		msg = msg[i+2:]
	}
	l.errMu.Lock()
	l.errs[msg]++
	l.errMu.Unlock()
}

func (l *load) firstErr() string {
	l.errMu.Lock()
	defer l.errMu.Unlock()
	var parts []string
	for k, v := range l.errs {
		parts = append(parts, fmt.Sprintf("%d× %s", v, k))
	}
	slices.Sort(parts)
	if len(parts) > 5 {
		parts = parts[:5]
	}
	return strings.Join(parts, "; ")
}

// open dials o.n websockets with o.workers in parallel; websocket i
// belongs to account i % users and goes to node (i / users) % 2, from
// source address 127.0.1.(i % 200 + 1).
func (l *load) open(o options, nodes []*child) int64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	began := time.Now()
	cache := tls.NewLRUClientSessionCache(1024)
	stopAfter := int64(o.n / 20) // give up after this many failures (descriptor or cap limits)
	for w := 0; w < o.workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= o.n || l.failed.Load() > stopAfter {
					return
				}
				// An account's websockets alternate between the nodes.
				user, node := i%len(l.tokens), (i/len(l.tokens))%2
				local := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(i%200+1))}
				d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ClientSessionCache: cache},
					HandshakeTimeout: 30 * time.Second, NetDial: (&net.Dialer{LocalAddr: local, Timeout: 30 * time.Second}).Dial,
					ReadBufferSize: 512, WriteBufferSize: 512}
				hdr := http.Header{}
				hdr.Set("Origin", "https://"+nodes[node].HTTPS)
				hdr.Set("Cookie", portal.CookieName+"="+l.tokens[user])
				conn, resp, err := d.Dial("wss://"+nodes[node].HTTPS+"/ws", hdr)
				if err != nil {
					if resp != nil {
						err = fmt.Errorf("%w (HTTP %d)", err, resp.StatusCode)
					}
					l.noteErr(err)
					continue
				}
				conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				var f struct{ Type string }
				if err := conn.ReadJSON(&f); err != nil || f.Type != "state" {
					conn.Close()
					l.noteErr(fmt.Errorf("first frame %q: %v", f.Type, err))
					continue
				}
				conn.SetReadDeadline(time.Time{})
				l.connsMu.Lock()
				l.conns = append(l.conns, conn)
				l.byUser[user]++
				l.connsMu.Unlock()
				l.perNode[node].Add(1)
				l.live.Add(1)
				go l.listen(conn, user, node)
			}
		}()
	}
	wg.Wait()
	n := l.perNode[0].Load() + l.perNode[1].Load()
	fmt.Printf("opened %d websockets in %s\n", n, time.Since(began).Round(time.Millisecond))
	return n
}

// listen reads one page's frames (answering pings) and times message
// frames against the message in flight to its account.
func (l *load) listen(conn *websocket.Conn, user, node int) {
	for {
		_, b, err := conn.ReadMessage()
		if err != nil {
			l.gone(user, err)
			return
		}
		now := time.Now()
		var f struct{ Type, Event string }
		if json.Unmarshal(b, &f) != nil || f.Type != "message" || f.Event != "new-message" {
			continue
		}
		l.sendMu.Lock()
		if r := l.pending[user]; r != nil {
			r.frames = append(r.frames, now)
			r.node = append(r.node, node)
			if len(r.frames) == r.want {
				close(r.all)
			}
		}
		l.sendMu.Unlock()
	}
}

// gone notes a websocket that ended; a message in flight to its account
// no longer waits for it.
func (l *load) gone(user int, err error) {
	l.live.Add(-1)
	why := "closed by the client"
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		why = fmt.Sprintf("close %d %s", ce.Code, ce.Text)
	}
	l.connsMu.Lock()
	l.byUser[user]--
	l.connsMu.Unlock()
	l.sendMu.Lock()
	l.closed[why]++
	if r := l.pending[user]; r != nil {
		r.want--
		if len(r.frames) == r.want {
			close(r.all)
		}
	}
	l.sendMu.Unlock()
}

func (l *load) closes() string {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	var parts []string
	for k, v := range l.closed {
		parts = append(parts, fmt.Sprintf("%d× %s", v, k))
	}
	slices.Sort(parts)
	if len(parts) == 0 {
		return "none closed"
	}
	return "closed: " + strings.Join(parts, "; ")
}

// fanout sends o.messages messages over SMTP to node A, each to one
// account with open websockets, and waits for every page of that account.
func (l *load) fanout(o options, a *child) error {
	var users []int
	l.connsMu.Lock()
	for u, n := range l.byUser {
		if n > 0 {
			users = append(users, u)
		}
	}
	l.connsMu.Unlock()
	if len(users) == 0 {
		return errors.New("no websocket open")
	}
	c, err := smtp.DialStartTLS(a.SMTP, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Auth(sasl.NewPlainClient("", benchStaff, a.AppPassword)); err != nil {
		return err
	}
	missed := 0
	for m := 0; m < o.messages; m++ {
		user := users[rand.IntN(len(users))]
		l.connsMu.Lock()
		want := l.byUser[user]
		l.connsMu.Unlock()
		if want <= 0 {
			continue
		}
		r := &sendRec{want: want, all: make(chan struct{})}
		l.sendMu.Lock()
		l.pending[user] = r
		l.sendMu.Unlock()
		if err := sendOne(c, patientAddr(user), r); err != nil {
			return fmt.Errorf("message %d: %w", m, err)
		}
		select {
		case <-r.all:
		case <-time.After(10 * time.Second):
			missed++
		}
		l.sendMu.Lock()
		delete(l.pending, user)
		l.done = append(l.done, r)
		l.sendMu.Unlock()
	}
	if missed > 0 {
		fmt.Printf("%d messages did not reach every open page of their recipient within 10 s\n", missed)
	}
	return c.Quit()
}

func sendOne(c *smtp.Client, to string, r *sendRec) error {
	if err := c.Mail(benchStaff, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: Dr Bench <%s>\r\nTo: <%s>\r\nSubject: Your results\r\nDate: %s\r\nMessage-ID: <%d@wsload>\r\n\r\nResults are in.\r\n",
		benchStaff, to, time.Now().Format(time.RFC1123Z), time.Now().UnixNano())
	r.dataEnd = time.Now()
	if err := w.Close(); err != nil { // returns after the 250
		return err
	}
	r.accepted = time.Now()
	return nil
}

func (l *load) report() {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	var fromData, from250 []time.Duration
	before250, frames := 0, 0
	var perNode [2]int
	for _, r := range l.done {
		for i, f := range r.frames {
			frames++
			perNode[r.node[i]]++
			fromData = append(fromData, f.Sub(r.dataEnd))
			d := f.Sub(r.accepted)
			if d < 0 {
				before250++
			}
			from250 = append(from250, d)
		}
	}
	slices.Sort(fromData)
	slices.Sort(from250)
	fmt.Printf("fan-out: %d messages over SMTP on node A, %d frames (node A %d, node B %d); %d frames came before the client read the 250\n",
		len(l.done), frames, perNode[0], perNode[1], before250)
	fmt.Printf("  frame after end of DATA: p50 %s p99 %s max %s\n", pct(fromData, 50), pct(fromData, 99), pct(fromData, 100))
	fmt.Printf("  frame after the 250:     p50 %s p99 %s max %s\n", pct(from250, 50), pct(from250, 99), pct(from250, 100))
}

// pct is the nearest-rank percentile.
func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	i := (len(d)*p + 99) / 100
	return d[max(i-1, 0)].Round(10 * time.Microsecond)
}

func (l *load) closeAll() {
	l.connsMu.Lock()
	defer l.connsMu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

// rss is a process's resident memory in bytes (/proc/<pid>/status).
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpuSeconds is a process's user + system CPU time (/proc/<pid>/stat).
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	k, _ := strconv.ParseFloat(f[12], 64)
	return (u + k) / 100 // clock ticks (USER_HZ = 100 on Linux)
}
