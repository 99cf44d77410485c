// Command seed fills a `--dev` data folder with a realistic store for the
// cost-growth benchmark (issue 12, goal 5; docs/perf.md, "Cost growth"):
// -messages portal messages from the staff account dr.lee to -accounts
// recipients, each delivered through the gateway's own intake (policy,
// detectors, sign + encrypt body and summary to the recipient's and the
// escrow key, the recipient's pending account and blind index created on
// its first message, the notice in the outbox, the audit entries in the
// same group-committed transaction). Concurrent deliveries share commits,
// so the store fills at the intake's full speed, and every row is what a
// real delivery writes: valid ciphertext, blind indexes, and an audit chain
// of matching length. The notices go to the dev maildrop and are sent
// before seed exits (then deleted from the maildrop: only the outbox rows
// matter here).
//
// Each message is a multipart message of about -size bytes (text, HTML and
// a small attachment), different per message. It runs in-process, with no
// network listener reachable from outside (loopback port 0).
//
//	go run ./bench/seed -data /tmp/seeded -messages 100000 -accounts 10000
//
// An existing folder is extended (dr.lee is created only when missing).
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/phigate/phigate/config"
	"github.com/phigate/phigate/gateway"
	"github.com/phigate/phigate/intake"
	"github.com/phigate/phigate/store"
)

// Staff is the sending account seed creates, and the benchmarks use.
const Staff = "dr.lee@clinic.example"

func main() {
	data := flag.String("data", "", "data folder to fill (created if missing)")
	msgs := flag.Int("messages", 100000, "portal messages to deliver")
	accts := flag.Int("accounts", 10000, "distinct recipients (pending accounts), patient00000@example.net upwards")
	size := flag.Int("size", 8192, "approximate size of each message in bytes")
	workers := flag.Int("workers", 16, "concurrent deliveries (they share commits)")
	flag.Parse()
	if *data == "" || *msgs < 1 || *accts < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*data, *msgs, *accts, *size, *workers); err != nil {
		fmt.Fprintln(os.Stderr, "seed:", err)
		os.Exit(1)
	}
}

// seedConfig is the dev configuration seed runs the gateway with (the
// cost-growth benchmark, gateway/growth_bench_test.go, uses the same): loopback port-0 listeners, no metrics
// listener, the sending limits lifted (one account sends everything),
// each message its own notice.
func seedConfig(dir string) config.Config {
	cfg := config.Default()
	cfg.Server.DataDir = dir
	cfg.Server.SMTPAddr, cfg.Server.SMTPSAddr, cfg.Server.HTTPAddr = "127.0.0.1:0", "", "127.0.0.1:0"
	cfg.Metrics.Addr = ""
	cfg.Log.Level = "warn"
	cfg.SMTP.Senders.MessagesPerHour, cfg.SMTP.Senders.ConcurrentTxns, cfg.SMTP.Senders.MaxStoredBytes = 0, 0, 0
	cfg.Notify.BatchWindow = config.Duration{}
	cfg.ApplyDev()
	return cfg
}

func run(dir string, n, accounts, size, workers int) error {
	cfg := seedConfig(dir)
	cfg.Fill()
	if err := cfg.Validate(); err != nil {
		return err
	}
	log, closer, err := gateway.OpenLogger(cfg, os.Stderr)
	if err != nil {
		return err
	}
	defer closer.Close()
	ctx := context.Background()
	g, err := gateway.Open(ctx, cfg, log)
	if err != nil {
		return err
	}
	if err := g.Start(ctx); err != nil {
		return err
	}
	defer g.Close()
	sender, err := g.Identity.UserByEmail(ctx, Staff)
	if errors.Is(err, store.ErrNotFound) {
		if _, err = g.Identity.AddUser(ctx, Staff, store.RoleStaff, "maple harbor lantern 17"); err == nil {
			sender, err = g.Identity.UserByEmail(ctx, Staff)
		}
	}
	if err != nil {
		return fmt.Errorf("staff account: %w", err)
	}
	start := time.Now()
	var next, done atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var buf bytes.Buffer
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				rcpt := fmt.Sprintf("patient%05d@example.net", i%accounts)
				raw := messageBytes(&buf, i, rcpt, size)
				env := intake.Envelope{IP: "127.0.0.1", Sender: sender, From: Staff, To: []string{rcpt}}
				if _, err := g.Intake.Accept(ctx, env, raw); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("message %d: %w", i, err) })
					next.Store(int64(n))
					return
				}
				if d := done.Add(1); d%5000 == 0 {
					el := time.Since(start)
					fmt.Printf("%d messages in %s (%.0f/s)\n", d, el.Round(time.Second), float64(d)/el.Seconds())
				}
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	el := time.Since(start)
	fmt.Printf("delivered %d messages to %d accounts in %s (%.0f/s)\n", done.Load(), min(n, accounts), el.Round(time.Second),
		float64(done.Load())/el.Seconds())
	// Let the dispatcher send every notice, so the outbox is as after a
	// normal day (sent rows, none due).
	for {
		depth, _, err := g.Store.OutboxStats(ctx, time.Now())
		if err != nil {
			return err
		}
		if depth == 0 {
			break
		}
		fmt.Printf("waiting for %d notices\n", depth)
		time.Sleep(5 * time.Second)
		clearMaildrop(cfg)
	}
	clearMaildrop(cfg)
	seq, _, err := g.Trail.Head(ctx)
	if err != nil {
		return err
	}
	checked, err := g.Trail.Verify(ctx)
	if err != nil {
		return fmt.Errorf("audit chain: %w", err)
	}
	fmt.Printf("audit chain: head %d, %d entries verified\n", seq, checked)
	return nil
}

// clearMaildrop removes the dev notices already written (100,000 files
// would only slow the folder down).
func clearMaildrop(cfg config.Config) {
	files, _ := filepath.Glob(filepath.Join(gateway.DataPath(cfg, "maildrop"), "*.eml"))
	for _, f := range files {
		os.Remove(f)
	}
}

var words = strings.Fields(`patient seen today for follow up of blood pressure reports no chest pain results of the
	lipid panel attached continue the current dose book a visit in three months glucose normal renal function stable
	referral to cardiology discussed with the family medication list reviewed allergy none known`)

// messageBytes builds message i (different text each time) in buf.
func messageBytes(buf *bytes.Buffer, i int, rcpt string, size int) []byte {
	buf.Reset()
	fmt.Fprintf(buf, "From: Dr Lee <%s>\r\nTo: %s\r\nSubject: Follow-up %d\r\nDate: %s\r\nMessage-ID: <seed-%d-%d@clinic.example>\r\nMIME-Version: 1.0\r\n",
		Staff, rcpt, i, time.Now().Format(time.RFC1123Z), i, time.Now().UnixNano())
	buf.WriteString("Content-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n")
	buf.WriteString("--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	body := size * 2 / 3
	for j := 0; buf.Len() < body; j++ {
		buf.WriteString(words[(i*7+j*13)%len(words)])
		if j%12 == 11 {
			buf.WriteString("\r\n")
		} else {
			buf.WriteByte(' ')
		}
	}
	fmt.Fprintf(buf, "\r\n--alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Follow-up <b>%d</b></p>\r\n--alt--\r\n", i)
	att := make([]byte, max(size/5, 64))
	for j := range att {
		att[j] = byte(i*31 + j*7)
	}
	buf.WriteString("--outer\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"note.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	enc := base64.StdEncoding.EncodeToString(att)
	for j := 0; j < len(enc); j += 76 {
		buf.WriteString(enc[j:min(j+76, len(enc))])
		buf.WriteString("\r\n")
	}
	buf.WriteString("--outer--\r\n")
	return bytes.Clone(buf.Bytes())
}
