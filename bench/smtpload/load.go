package main

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// maxKinds bounds the number of distinct failure texts kept per category.
const maxKinds = 10

// heloName is the name sent in EHLO. go-smtp sends "localhost" before
// STARTTLS; use the same afterwards for consistency.
const heloName = "localhost"

// Config is the load generator configuration (see parseFlags for the flags).
type Config struct {
	Addr        string
	ImplicitTLS bool
	AllowRemote bool
	Conns       int
	N           int
	Duration    time.Duration
	Size        int
	User        string
	Pass        string
	From        string
	To          []string
	GenRcpts    bool
	RcptsPerMsg int
	Insecure    bool
	PerConn     int
	MaxRetries  int
	Timeout     time.Duration

	// RetryBackoff is the initial delay before reconnecting after a failed
	// connection attempt; it doubles per consecutive failure, capped at 2s.
	RetryBackoff time.Duration
}

// DefaultConfig returns the flag defaults.
func DefaultConfig() Config {
	return Config{
		Addr:         "127.0.0.1:2587",
		Conns:        32,
		N:            2000,
		Size:         20480,
		To:           []string{"patient@example.net"},
		RcptsPerMsg:  1,
		Insecure:     true,
		PerConn:      50,
		MaxRetries:   5,
		Timeout:      60 * time.Second,
		RetryBackoff: 200 * time.Millisecond,
	}
}

// Validate checks the configuration and fills in derived defaults.
func (c *Config) Validate() error {
	if err := checkAddr(c.Addr, c.AllowRemote); err != nil {
		return err
	}
	switch {
	case c.Conns < 1:
		return errors.New("-conns must be >= 1")
	case c.N < 1:
		return errors.New("-n must be >= 1 (it always bounds the run; combine with -duration for a time limit)")
	case c.Duration < 0:
		return errors.New("-duration must be >= 0")
	case c.Size < 0:
		return errors.New("-size must be >= 0")
	case c.PerConn < 1:
		return errors.New("-per-conn must be >= 1")
	case c.RcptsPerMsg < 1:
		return errors.New("-rcpts-per-msg must be >= 1")
	case c.MaxRetries < 0:
		return errors.New("-max-retries must be >= 0")
	case c.Timeout <= 0:
		return errors.New("-timeout must be > 0")
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 200 * time.Millisecond
	}
	if c.User != "" && c.Pass == "" {
		return errors.New("-user given but no password (-pass or -pass-file)")
	}
	if c.From == "" {
		c.From = c.User
	}
	if c.From == "" {
		c.From = "smtpload@example.com"
	}
	if err := checkMailbox(c.From); err != nil {
		return fmt.Errorf("-from: %w", err)
	}
	if !c.GenRcpts {
		if len(c.To) == 0 {
			return errors.New(`-to: no recipients (give addresses or "gen")`)
		}
		for _, a := range c.To {
			if err := checkMailbox(a); err != nil {
				return fmt.Errorf("-to: %w", err)
			}
		}
	}
	if c.Conns > c.N {
		c.Conns = c.N
	}
	return nil
}

func checkMailbox(a string) error {
	if strings.ContainsAny(a, "<>\r\n\t ,") || strings.Count(a, "@") != 1 ||
		strings.HasPrefix(a, "@") || strings.HasSuffix(a, "@") {
		return fmt.Errorf("%q is not a plain local@domain address", a)
	}
	return nil
}

// checkAddr refuses non-loopback targets unless allowRemote is set. The host
// must be a loopback IP literal (127.0.0.0/8, ::1) or "localhost"; other names
// are refused without resolving them. The dialer re-checks the peer address.
func checkAddr(addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	if port == "" {
		return fmt.Errorf("-addr %q: missing port", addr)
	}
	if allowRemote || isLoopbackHost(host) {
		return nil
	}
	return fmt.Errorf("-addr %q is not a loopback address (127.0.0.0/8, ::1, localhost); refusing to load a server that may not be yours (pass -allow-remote if you operate it)", addr)
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ReplyCount is one distinct failure (stage and first reply line) and how
// often it occurred.
type ReplyCount struct {
	Reply string `json:"reply"`
	Count int64  `json:"count"`
}

// Latency holds accept-latency statistics in milliseconds over accepted
// messages.
type Latency struct {
	Count int     `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// ConfigSummary is the part of Config echoed in the result (no secrets).
type ConfigSummary struct {
	Addr        string `json:"addr"`
	ImplicitTLS bool   `json:"implicit_tls"`
	Auth        bool   `json:"auth"`
	Conns       int    `json:"conns"`
	N           int    `json:"n"`
	Duration    string `json:"duration,omitempty"`
	Size        int    `json:"size"`
	PerConn     int    `json:"per_conn"`
	RcptsPerMsg int    `json:"rcpts_per_msg"`
}

// Result is what run reports.
type Result struct {
	Config     ConfigSummary `json:"config"`
	StopReason string        `json:"stop_reason"`

	OK       int64        `json:"ok"`
	Failed   int64        `json:"failed"`
	Failures []ReplyCount `json:"failures,omitempty"`
	// Aborted counts messages in flight when the context was cancelled
	// (e.g. Ctrl-C); they are neither ok nor failed.
	Aborted int64 `json:"aborted,omitempty"`

	Sessions       int64        `json:"sessions"`
	SetupMeanMs    float64      `json:"setup_mean_ms"`
	ConnErrors     int64        `json:"conn_errors"`
	ConnErrorKinds []ReplyCount `json:"conn_error_kinds,omitempty"`

	WallSeconds float64 `json:"wall_seconds"`
	MsgsPerSec  float64 `json:"msgs_per_sec"`
	MsgBytes    int     `json:"msg_bytes"`
	LatencyMs   Latency `json:"latency_ms"`
}

// kindCounter counts occurrences per distinct key, keeping at most maxKinds
// keys; the rest are lumped into one "(other)" bucket.
type kindCounter struct {
	mu    sync.Mutex
	total int64
	m     map[string]int64
	other int64
}

func (k *kindCounter) add(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.total++
	if k.m == nil {
		k.m = make(map[string]int64)
	}
	if _, ok := k.m[key]; ok || len(k.m) < maxKinds {
		k.m[key]++
		return
	}
	k.other++
}

func (k *kindCounter) count() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.total
}

func (k *kindCounter) list() []ReplyCount {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]ReplyCount, 0, len(k.m)+1)
	for r, n := range k.m {
		out = append(out, ReplyCount{Reply: r, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Reply < out[j].Reply
	})
	if k.other > 0 {
		out = append(out, ReplyCount{Reply: fmt.Sprintf("(other: more than %d distinct replies)", maxKinds), Count: k.other})
	}
	return out
}

type runner struct {
	ctx      context.Context
	cfg      Config
	tlsCfg   *tls.Config
	runID    string
	n        int64
	deadline time.Time // zero = none

	claimed  atomic.Int64
	ok       atomic.Int64
	failed   atomic.Int64
	aborted  atomic.Int64
	sessions atomic.Int64
	setupNs  atomic.Int64

	failures kindCounter
	connErrs kindCounter
}

// run drives the load described by cfg and returns the aggregated result.
// Cancelling ctx aborts in-flight work (connections are closed) and returns
// the partial result; -n and -duration stop the run gracefully.
func run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.Validate(); err != nil {
		return Result{}, err
	}
	host, _, _ := net.SplitHostPort(cfg.Addr)
	var idb [4]byte
	for i := range idb {
		idb[i] = byte(rand.Uint32())
	}
	r := &runner{
		ctx:   ctx,
		cfg:   cfg,
		runID: hex.EncodeToString(idb[:]),
		n:     int64(cfg.N),
		tlsCfg: &tls.Config{
			ServerName:         strings.TrimSuffix(host, "."),
			InsecureSkipVerify: cfg.Insecure, //nolint:gosec // opt-out flag for self-signed dev certs
			MinVersion:         tls.VersionTLS12,
		},
	}

	start := time.Now()
	if cfg.Duration > 0 {
		r.deadline = start.Add(cfg.Duration)
	}

	workers := make([]*worker, cfg.Conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := newWorker(r, i)
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop()
		}()
	}
	wg.Wait()
	wall := time.Since(start)

	var lats []time.Duration
	var bytes, nb int
	for _, w := range workers {
		lats = append(lats, w.lat...)
		bytes += w.msg.size()
		nb++
	}

	res := Result{
		Config: ConfigSummary{
			Addr:        cfg.Addr,
			ImplicitTLS: cfg.ImplicitTLS,
			Auth:        cfg.User != "",
			Conns:       cfg.Conns,
			N:           cfg.N,
			Size:        cfg.Size,
			PerConn:     cfg.PerConn,
			RcptsPerMsg: len(workers[0].rcpts),
		},
		OK:             r.ok.Load(),
		Failed:         r.failed.Load(),
		Failures:       r.failures.list(),
		Aborted:        r.aborted.Load(),
		Sessions:       r.sessions.Load(),
		ConnErrors:     r.connErrs.count(),
		ConnErrorKinds: r.connErrs.list(),
		WallSeconds:    wall.Seconds(),
		LatencyMs:      latencyStats(lats),
	}
	if cfg.Duration > 0 {
		res.Config.Duration = cfg.Duration.String()
	}
	if nb > 0 {
		res.MsgBytes = bytes / nb
	}
	if res.Sessions > 0 {
		res.SetupMeanMs = float64(r.setupNs.Load()) / float64(res.Sessions) / 1e6
	}
	if wall > 0 {
		res.MsgsPerSec = float64(res.OK) / wall.Seconds()
	}
	switch {
	case ctx.Err() != nil:
		res.StopReason = "interrupted"
	case r.claimed.Load() >= r.n:
		res.StopReason = "message count reached (-n)"
	case !r.deadline.IsZero() && !time.Now().Before(r.deadline):
		res.StopReason = "duration reached (-duration)"
	default:
		res.StopReason = "all connections gave up after repeated connection errors (-max-retries)"
	}
	return res, nil
}

// latencyStats computes nearest-rank percentiles over a sorted copy.
func latencyStats(lats []time.Duration) Latency {
	if len(lats) == 0 {
		return Latency{}
	}
	s := append([]time.Duration(nil), lats...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Latency{
		Count: len(s),
		Mean:  ms(sum) / float64(len(s)),
		P50:   ms(percentile(s, 50)),
		P90:   ms(percentile(s, 90)),
		P99:   ms(percentile(s, 99)),
		Max:   ms(s[len(s)-1]),
	}
}

// percentile returns the nearest-rank p-th percentile of an ascending slice.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

func (r *runner) pastDeadline() bool {
	return !r.deadline.IsZero() && !time.Now().Before(r.deadline)
}

// more reports whether it is worth (re)connecting.
func (r *runner) more() bool {
	return r.ctx.Err() == nil && !r.pastDeadline() && r.claimed.Load() < r.n
}

// claim reserves one message of the -n budget.
func (r *runner) claim() bool {
	if r.ctx.Err() != nil || r.pastDeadline() {
		return false
	}
	return r.claimed.Add(1) <= r.n
}

type worker struct {
	r     *runner
	id    int
	rcpts []string
	msg   *message
	seq   int
	lat   []time.Duration
}

func newWorker(r *runner, id int) *worker {
	w := &worker{r: r, id: id}
	if r.cfg.GenRcpts {
		for i := 0; i < r.cfg.RcptsPerMsg; i++ {
			w.rcpts = append(w.rcpts, fmt.Sprintf("load-%d-%d@example.net", id, i))
		}
	} else {
		w.rcpts = r.cfg.To
	}
	rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(id)))
	w.msg = buildMessage(rng, r.cfg.From, w.rcpts, r.runID, id, r.cfg.Size, time.Now())
	return w
}

// sessionError records the protocol stage at which an error happened.
type sessionError struct {
	stage string
	err   error
}

func (e *sessionError) Error() string { return e.stage + ": " + e.err.Error() }
func (e *sessionError) Unwrap() error { return e.err }

func (w *worker) loop() {
	r := w.r
	failures := 0 // consecutive failed connection attempts
	for r.more() {
		c, closeConn, err := w.connect()
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			r.connErrs.add(errKey(err))
			failures++
			if failures > r.cfg.MaxRetries {
				return
			}
			if !w.sleep(backoff(r.cfg.RetryBackoff, failures)) {
				return
			}
			continue
		}
		failures = 0
		w.session(c)
		closeConn()
	}
}

func backoff(base time.Duration, attempt int) time.Duration {
	d := base
	for i := 1; i < attempt && d < 2*time.Second; i++ {
		d *= 2
	}
	return min(d, 2*time.Second)
}

// sleep waits d, returning false if the run should stop instead.
func (w *worker) sleep(d time.Duration) bool {
	r := w.r
	if !r.deadline.IsZero() {
		if left := time.Until(r.deadline); left < d {
			d = max(left, 0)
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return false
	case <-t.C:
		return r.more()
	}
}

// connect dials and performs EHLO, STARTTLS (or implicit TLS), EHLO and
// AUTH PLAIN. The returned func closes the connection (QUIT is the caller's).
func (w *worker) connect() (*smtp.Client, func(), error) {
	r := w.r
	cfg := &r.cfg
	start := time.Now()

	d := net.Dialer{Timeout: cfg.Timeout}
	dctx, cancel := context.WithTimeout(r.ctx, cfg.Timeout)
	defer cancel()
	raw, err := d.DialContext(dctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, nil, &sessionError{"connect", err}
	}
	if !cfg.AllowRemote {
		if ta, ok := raw.RemoteAddr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			raw.Close()
			return nil, nil, &sessionError{"connect", fmt.Errorf("%s resolved to non-loopback peer %v; refusing", cfg.Addr, raw.RemoteAddr())}
		}
	}
	// Abort promptly on cancellation; also bound the whole setup phase, as
	// go-smtp's STARTTLS helper uses its own 5-minute default timeouts.
	stopAbort := context.AfterFunc(r.ctx, func() { raw.Close() })
	watchdog := time.AfterFunc(cfg.Timeout, func() { raw.Close() })
	closeConn := func() {
		stopAbort()
		raw.Close()
	}
	fail := func(stage string, err error) (*smtp.Client, func(), error) {
		watchdog.Stop()
		closeConn()
		return nil, nil, &sessionError{stage, err}
	}

	var c *smtp.Client
	if cfg.ImplicitTLS {
		tc := tls.Client(raw, r.tlsCfg)
		if err := tc.HandshakeContext(dctx); err != nil {
			return fail("TLS", err)
		}
		c = smtp.NewClient(tc)
	} else {
		c, err = smtp.NewClientStartTLS(raw, r.tlsCfg)
		if err != nil {
			return fail("EHLO/STARTTLS", err)
		}
	}
	c.CommandTimeout = cfg.Timeout
	c.SubmissionTimeout = cfg.Timeout
	if err := c.Hello(heloName); err != nil {
		return fail("EHLO", err)
	}
	if _, ok := c.TLSConnectionState(); !ok {
		return fail("TLS", errors.New("connection is not encrypted")) // never send AUTH in clear
	}
	if cfg.User != "" {
		if !c.SupportsAuth(sasl.Plain) {
			return fail("AUTH", errors.New("server does not advertise AUTH PLAIN after TLS"))
		}
		if err := c.Auth(sasl.NewPlainClient("", cfg.User, cfg.Pass)); err != nil {
			return fail("AUTH", err)
		}
	}
	if !watchdog.Stop() {
		return fail("setup", os.ErrDeadlineExceeded)
	}
	r.sessions.Add(1)
	r.setupNs.Add(int64(time.Since(start)))
	return c, closeConn, nil
}

// session submits up to PerConn messages over an established connection.
func (w *worker) session(c *smtp.Client) {
	r := w.r
	for i := 0; i < r.cfg.PerConn; i++ {
		if i > 0 {
			if !r.more() {
				break
			}
			// RSET between messages (outside the timed window). go-smtp's
			// Reset forgets the EHLO state and would silently re-send EHLO
			// before the next MAIL, so do that explicitly here too.
			if err := c.Reset(); err != nil {
				w.connErr("RSET", err)
				return
			}
			if err := c.Hello(heloName); err != nil {
				w.connErr("EHLO", err)
				return
			}
		}
		if !r.claim() {
			break
		}
		if err := w.send(c); err != nil {
			if r.ctx.Err() != nil {
				r.aborted.Add(1)
				return
			}
			r.failed.Add(1)
			r.failures.add(errKey(err))
			if fatal(err) {
				return
			}
			continue
		}
		r.ok.Add(1)
	}
	_ = c.Quit()
}

func (w *worker) connErr(stage string, err error) {
	if w.r.ctx.Err() == nil {
		w.r.connErrs.add(errKey(&sessionError{stage, err}))
	}
}

// send submits one message and records its accept latency.
func (w *worker) send(c *smtp.Client) error {
	w.seq++
	id := fmt.Sprintf("%s.%d.%d@smtpload.localhost", w.r.runID, w.id, w.seq)

	// SIZE= is only sent if the server advertises SIZE (as MUAs do).
	opts := &smtp.MailOptions{Size: int64(len(w.msg.head) + len(id) + len(w.msg.tail))}

	start := time.Now()
	if err := c.Mail(w.r.cfg.From, opts); err != nil {
		return &sessionError{"MAIL", err}
	}
	for _, rc := range w.rcpts {
		if err := c.Rcpt(rc, nil); err != nil {
			return &sessionError{"RCPT", err}
		}
	}
	wc, err := c.Data()
	if err != nil {
		return &sessionError{"DATA", err}
	}
	if err := w.msg.write(wc, id); err != nil {
		return &sessionError{"DATA body", err}
	}
	if _, err := wc.CloseWithResponse(); err != nil {
		return &sessionError{"end of DATA", err}
	}
	w.lat = append(w.lat, time.Since(start))
	return nil
}

// fatal reports whether the connection must be dropped after err: anything
// that is not an SMTP reply, and 421 (service closing).
func fatal(err error) bool {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return se.Code == 421
	}
	return true
}

// errKey renders err as a short, stable failure kind: the stage plus the
// first line of the SMTP reply, or a normalised network error (no ports).
func errKey(err error) string {
	stage := ""
	var sErr *sessionError
	if errors.As(err, &sErr) {
		stage = sErr.stage + ": "
		err = sErr.err
	}
	var text string
	var se *smtp.SMTPError
	var opErr *net.OpError
	switch {
	case errors.As(err, &se):
		msg, _, _ := strings.Cut(se.Message, "\n")
		if se.EnhancedCode != (smtp.EnhancedCode{}) && se.EnhancedCode != smtp.NoEnhancedCode {
			text = fmt.Sprintf("%d %d.%d.%d %s", se.Code, se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2], msg)
		} else {
			text = fmt.Sprintf("%d %s", se.Code, msg)
		}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		text = "connection closed by server (EOF)"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		text = "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		text = "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		text = "connection reset by peer"
	case errors.Is(err, syscall.EPIPE):
		text = "broken pipe"
	case errors.Is(err, net.ErrClosed):
		text = "connection closed (local timeout)"
	case errors.As(err, &opErr) && opErr.Err != nil:
		text = opErr.Op + ": " + opErr.Err.Error()
	default:
		text = err.Error()
	}
	text, _, _ = strings.Cut(text, "\n")
	if len(text) > 200 {
		text = text[:200] + "..."
	}
	return stage + strings.TrimSpace(text)
}

// message is a pre-rendered RFC 5322 message split around the Message-ID
// value, so each submission only substitutes a fresh ID.
type message struct {
	head  []byte // up to and including "Message-ID: <"
	tail  []byte // from ">\r\n" to the end
	idLen int    // typical Message-ID length, for size()
}

func (m *message) size() int { return len(m.head) + m.idLen + len(m.tail) }

func (m *message) write(w io.Writer, id string) error {
	for _, b := range [][]byte{m.head, []byte(id), m.tail} {
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

var words = strings.Fields(`patient referral follow-up appointment clinic results
laboratory blood pressure medication dosage history allergy assessment plan
diagnosis imaging report consult discharge summary therapy outpatient review
symptoms stable improved monitor weekly daily twice morning evening please
contact office schedule next visit cardiology dermatology radiology nursing
prescription renewal pharmacy insurance authorization secure message attached
the and for with of to in on at as per regarding noted recommend continue`)

// buildMessage renders a multipart/mixed message (multipart/alternative with
// text/plain and a small text/html, plus a base64 PDF-like attachment) padded
// with random words so the total is about size bytes.
func buildMessage(rng *rand.Rand, from string, to []string, runID string, conn, size int, now time.Time) *message {
	const crlf = "\r\n"
	mixed := fmt.Sprintf("=_mixed_%s_%d_%016x", runID, conn, rng.Uint64())
	alt := fmt.Sprintf("=_alt_%s_%d_%016x", runID, conn, rng.Uint64())
	idLen := len(fmt.Sprintf("%s.%d.%d@smtpload.localhost", runID, conn, 100))

	var h strings.Builder
	fmt.Fprintf(&h, "From: \"Load Test\" <%s>%s", from, crlf)
	h.WriteString("To: ")
	for i, a := range to {
		if i > 0 {
			h.WriteString("," + crlf + " ")
		}
		fmt.Fprintf(&h, "<%s>", a)
	}
	h.WriteString(crlf)
	fmt.Fprintf(&h, "Subject: Load test %s/%d: referral and lab results%s", runID, conn, crlf)
	fmt.Fprintf(&h, "Date: %s%s", now.Format(time.RFC1123Z), crlf)
	h.WriteString("Message-ID: <")
	head := h.String()

	var t strings.Builder
	t.WriteString(">" + crlf)
	t.WriteString("MIME-Version: 1.0" + crlf)
	fmt.Fprintf(&t, "X-Smtpload-Run: %s%s", runID, crlf)
	fmt.Fprintf(&t, "Content-Type: multipart/mixed; boundary=\"%s\"%s", mixed, crlf)
	t.WriteString(crlf)
	t.WriteString("This is a multi-part message in MIME format." + crlf)
	fmt.Fprintf(&t, "--%s%s", mixed, crlf)
	fmt.Fprintf(&t, "Content-Type: multipart/alternative; boundary=\"%s\"%s%s", alt, crlf, crlf)
	fmt.Fprintf(&t, "--%s%s", alt, crlf)
	t.WriteString("Content-Type: text/plain; charset=utf-8" + crlf)
	t.WriteString("Content-Transfer-Encoding: 7bit" + crlf + crlf)
	textAt := t.Len()
	t.WriteString(crlf)
	fmt.Fprintf(&t, "--%s%s", alt, crlf)
	t.WriteString("Content-Type: text/html; charset=utf-8" + crlf)
	t.WriteString("Content-Transfer-Encoding: 7bit" + crlf + crlf)
	t.WriteString("<html><body><p>Dear colleague,</p>" + crlf +
		"<p>Please find the <b>lab results</b> attached. Full notes are in the plain-text part.</p>" + crlf +
		"<p>Regards,<br>Load Test</p></body></html>" + crlf)
	fmt.Fprintf(&t, "--%s--%s", alt, crlf)
	fmt.Fprintf(&t, "--%s%s", mixed, crlf)
	fmt.Fprintf(&t, "Content-Type: application/pdf; name=\"lab-results-%d.pdf\"%s", conn, crlf)
	fmt.Fprintf(&t, "Content-Disposition: attachment; filename=\"lab-results-%d.pdf\"%s", conn, crlf)
	t.WriteString("Content-Transfer-Encoding: base64" + crlf + crlf)

	// Attachment: about a third of the target size once base64-encoded.
	raw := make([]byte, max(size/4, 48))
	copy(raw, "%PDF-1.4\n%")
	for i := 10; i < len(raw); i++ {
		raw[i] = byte(rng.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 76 {
		t.WriteString(enc[:76] + crlf)
		enc = enc[76:]
	}
	t.WriteString(enc + crlf)
	fmt.Fprintf(&t, "--%s--%s", mixed, crlf)
	tail := t.String()

	// Pad the text/plain part to reach the target size.
	budget := size - len(head) - idLen - len(tail)
	text := randomText(rng, max(budget, 200))
	tail = tail[:textAt] + text + tail[textAt:]

	return &message{head: []byte(head), tail: []byte(tail), idLen: idLen}
}

// randomText returns about n bytes of CRLF-terminated lines (<= ~72 chars)
// of random words in paragraphs.
func randomText(rng *rand.Rand, n int) string {
	var b strings.Builder
	b.Grow(n + 80)
	b.WriteString("Dear colleague," + "\r\n\r\n")
	line, lines := 0, 0
	for b.Len() < n {
		wd := words[rng.IntN(len(words))]
		if line > 0 && line+1+len(wd) > 72 {
			b.WriteString("\r\n")
			line = 0
			lines++
			if lines%6 == 0 {
				b.WriteString("\r\n")
			}
			continue
		}
		if line > 0 {
			b.WriteByte(' ')
			line++
		}
		b.WriteString(wd)
		line += len(wd)
	}
	if line > 0 {
		b.WriteString("\r\n")
	}
	return b.String()
}
